"""Algorithm 1 and the baselines, checked against hand-derived gradients of a linear model."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from freeadv.methods import FGSMRandomStart, Free, Natural, PGDTraining, frozen_bn_statistics


def linear_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def batch(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 2, 2, generator=g) * 0.8 + 0.1, torch.randint(0, 3, (n,), generator=g)


def hand_gradients(weight, bias, x, y):
    """Gradients of mean cross-entropy of logits = W x + b, written out by hand:
    dL/dz = (softmax(z) - onehot(y)) / B;  dL/dW = dz^T x;  dL/db = sum dz;  dL/dx = dz W."""
    flat = x.flatten(1)
    dz = (torch.softmax(flat @ weight.T + bias, 1) - F.one_hot(y, 3).float()) / len(y)
    return dz.T @ flat, dz.sum(0), (dz @ weight).view_as(x)


def test_free_step_updates_theta_and_delta_from_one_backward_exactly_as_algorithm_1():
    model = linear_model()
    x, y = batch()
    eps, lr = 8 / 255, 0.1
    method = Free(eps=eps, step_size=eps, replay=2)
    method.delta = torch.full_like(x, 0.01)   # a warm-started perturbation from an earlier batch
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    w0, b0 = model[1].weight.detach().clone(), model[1].bias.detach().clone()
    delta0 = method.delta.clone()

    calls = []
    model.register_full_backward_hook(lambda *a: calls.append(1))
    method.step(model, optimizer, x, y)

    gw, gb, gx = hand_gradients(w0, b0, (x + delta0).clamp(0, 1), y)
    assert len(calls) == 1, "Free-m must use exactly one backward pass per replay"
    torch.testing.assert_close(model[1].weight.detach(), w0 - lr * gw)
    torch.testing.assert_close(model[1].bias.detach(), b0 - lr * gb)
    torch.testing.assert_close(method.delta, (delta0 + eps * gx.sign()).clamp(-eps, eps))


def test_free_delta_carries_over_to_next_minibatch_and_smaller_batch_uses_first_rows():
    model = linear_model()
    eps = 8 / 255
    method = Free(eps=eps, step_size=eps, replay=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)   # freeze theta: isolate delta's dynamics
    x1, y1 = batch(4, seed=1)
    method.step(model, optimizer, x1, y1)
    after_first = method.delta.clone()
    assert after_first.abs().max() > 0 and after_first.abs().max() <= eps + 1e-7
    x2, y2 = batch(2, seed=2)      # a smaller last batch
    method.step(model, optimizer, x2, y2)
    _, _, gx = hand_gradients(model[1].weight.detach(), model[1].bias.detach(),
                              (x2 + after_first[:2]).clamp(0, 1), y2)
    torch.testing.assert_close(method.delta[:2], (after_first[:2] + eps * gx.sign()).clamp(-eps, eps))
    torch.testing.assert_close(method.delta[2:], after_first[2:])   # untouched rows keep their state


def test_free_delta_never_leaves_eps_ball_and_model_input_stays_in_unit_box():
    model = linear_model()
    eps = 8 / 255
    method = Free(eps=eps, step_size=eps, replay=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    model[0].register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    x = torch.cat([torch.zeros(2, 3, 2, 2), torch.ones(2, 3, 2, 2)])
    y = torch.tensor([0, 1, 2, 0])
    for _ in range(10):
        method.step(model, optimizer, x, y)
        assert method.delta.abs().max() <= eps + 1e-7
    assert all(s.min() >= 0 and s.max() <= 1 for s in seen)


def test_natural_step_matches_hand_sgd():
    model = linear_model()
    x, y = batch()
    w0, b0 = model[1].weight.detach().clone(), model[1].bias.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    Natural(replay=3).step(model, optimizer, x, y)
    gw, gb, _ = hand_gradients(w0, b0, x, y)
    torch.testing.assert_close(model[1].weight.detach(), w0 - 0.2 * gw)
    torch.testing.assert_close(model[1].bias.detach(), b0 - 0.2 * gb)


def test_pgd_and_fgsm_training_inputs_stay_in_ball_and_box():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x, y = batch(8)
    eps = 8 / 255
    for method in (PGDTraining(eps=eps, step_size=2 / 255, steps=7), FGSMRandomStart(eps=eps, step_size=1.25 * eps)):
        x_adv = method.adversarial_input(model, x, y, torch.Generator().manual_seed(0))
        assert (x_adv - x).abs().max() <= eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert (x_adv - x).abs().max() > eps / 2     # it actually moved


def test_frozen_training_attack_does_not_move_batchnorm_running_statistics():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).train()
    x, y = batch(8)
    before = model[2].running_mean.clone()
    PGDTraining(eps=8 / 255, step_size=2 / 255, steps=3, attack_bn="frozen").adversarial_input(model, x, y, None)
    torch.testing.assert_close(model[2].running_mean, before)
    PGDTraining(eps=8 / 255, step_size=2 / 255, steps=3).adversarial_input(model, x, y, None)   # update: the default
    assert not torch.equal(model[2].running_mean, before)
    assert model[2].momentum == 0.1
    with frozen_bn_statistics(model):
        assert model[2].momentum == 0.0


# --- the registry -------------------------------------------------------------------------------

from freeadv import config as cfg  # noqa: E402
from freeadv.methods import METHODS, Key, Method, StepCost, register_method  # noqa: E402
from freeadv.keys import INT_POS  # noqa: E402


def _declared(name, **attrs):
    body = {"name": name, "title": classmethod(lambda cls, p: name), "id_fragment": classmethod(lambda cls, p: name),
            "cost": classmethod(lambda cls, c: StepCost()), "from_config": classmethod(lambda cls, c, a=None: cls()),
            "adversarial_input": lambda self, model, x, y, g: x}
    body.update(attrs)
    return type(f"M_{name}", (Method,), body)


@pytest.mark.parametrize("missing", ["title", "id_fragment", "cost", "from_config"])
def test_a_half_declared_method_is_refused_at_registration(missing):
    cls = _declared("halfway")
    delattr(cls, missing)
    with pytest.raises(TypeError, match=f"does not define {missing}"):
        register_method(cls)
    assert "halfway" not in METHODS


def test_a_method_that_never_perturbs_or_clashes_is_refused():
    with pytest.raises(TypeError, match="neither adversarial_input nor step"):
        register_method(_declared("lazy", adversarial_input=Method.adversarial_input))
    with pytest.raises(TypeError, match="already taken"):
        register_method(_declared("free"))
    with pytest.raises(TypeError, match="pgd_steps.*declared differently"):
        register_method(_declared("other", keys={"pgd_steps": Key(3, INT_POS, "x")}))
    with pytest.raises(TypeError, match="must be a freeadv.keys.Key"):
        register_method(_declared("other2", keys={"other_steps": 3}))


def test_config_reads_the_registry():
    for name, cls in METHODS.items():
        config = cfg.resolve({"dataset": "synthetic", "method": name})
        assert config["replay"] == (cls.replay_default or 1)
        for key, declared in cls.keys.items():
            assert config[key] == declared.default
    with pytest.raises(cfg.ConfigError, match="'replay' has bad value 8: expected 1"):
        cfg.resolve({"dataset": "synthetic", "method": "fgsm_rs", "replay": 8})
    with pytest.raises(cfg.ConfigError, match="'pgd_steps' has bad value 0"):
        cfg.resolve({"dataset": "synthetic", "method": "pgd", "pgd_steps": 0})


def test_randomness_is_declared_by_the_methods_that_draw_it():
    assert {n for n, c in METHODS.items() if c.needs_randomness} >= {"pgd", "fgsm_rs"}
    assert not METHODS["free"].needs_randomness and not METHODS["natural"].needs_randomness
