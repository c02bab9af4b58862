"""TRADES as the proof of the method registry: one step equals a hand computation of Zhang et
al.'s update, it is selectable by config, and a tiny TRADES model is more robust than a natural one."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from freeadv import config as cfg
from freeadv.attacks import AttackSpec
from freeadv.runs import evaluate
from freeadv.methods import METHODS, build_method
from freeadv.training import Trainer, data_for, load_trained_model


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def hand_trades_step(model, optimizer, x, y, noise, *, eps, step, steps, beta):
    """Zhang et al.'s update written out: eval-mode inner maximisation of the summed KL from
    x + 0.001 N(0, 1), then a train-mode step on CE + beta * KL / batch."""
    model.eval()
    target = F.softmax(model(x), dim=1).detach()
    x_adv = x + 0.001 * noise
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), target, reduction="sum")
        grad, = torch.autograd.grad(kl, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    model.train()
    optimizer.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y) + beta * F.kl_div(F.log_softmax(model(x_adv), dim=1),
                                                        F.softmax(logits, dim=1), reduction="sum") / len(x)
    loss.backward()
    optimizer.step()
    return loss.detach()


def test_one_trades_step_equals_the_hand_computation():
    x = torch.rand(16, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(2))
    config = cfg.resolve({"dataset": "synthetic", "method": "trades", "eps": 8, "trades_steps": 5})
    ours, theirs = tiny_model(), tiny_model()
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    method = build_method(config)
    ours.train()
    loss = method.step(ours, opt_ours, x, y, torch.Generator().manual_seed(7))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    want = hand_trades_step(theirs, opt_theirs, x, y, noise, eps=8 / 255, step=0.007, steps=5, beta=6.0)
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert ours.training   # the inner steps' eval mode is undone


def test_trades_is_registered_with_its_declarations():
    cls = METHODS["trades"]
    config = cfg.resolve({"dataset": "synthetic", "method": "trades"})
    assert (config["trades_beta"], config["trades_steps"], config["replay"]) == (6.0, 10, 1)
    assert cls.needs_randomness and cls.cost(config).attack == 10
    with pytest.raises(cfg.ConfigError, match="trades_beta"):
        cfg.resolve({"dataset": "synthetic", "method": "trades", "trades_beta": -1})
    with pytest.raises(cfg.ConfigError, match="replay"):
        cfg.resolve({"dataset": "synthetic", "method": "trades", "replay": 4})


@pytest.mark.slow
def test_trades_training_beats_natural_under_pgd(tmp_path):
    """Same data and iterations as the Free-vs-natural test (tests/test_training.py), eps 6.

    TRADES runs K=3 inner steps of 2.5 (they reach the eps-6 boundary) instead of the authors' 10 of
    1.785: the KL term is what this checks, and at K=10 the test took 105 s of CI's 25 minutes."""
    common = dict(dataset="synthetic", arch="small_cnn", n_train=1024, n_test=500, iterations=320, width=16,
                  eps=6.0, log_every=40, checkpoint_every=1000, eval_n=None, device="cpu", batch_size=64)
    runs = {"nat": {"method": "natural"}, "trades": {"method": "trades", "trades_steps": 3, "trades_step_size": 2.5}}
    for name, overrides in runs.items():
        Trainer(cfg.resolve({**common, **overrides}), tmp_path / name, progress=False).run()
    spec = AttackSpec("pgd", steps=10, eps=6, step_size=1)
    accs = {}
    for name in ("nat", "trades"):
        model, config = load_trained_model(tmp_path / name)
        data = data_for({**config, "augment": False})
        accs[name] = evaluate(model, data.test_batches(500, device="cpu"), spec)
    assert accs["trades"]["robust_acc"] > accs["nat"]["robust_acc"] + 5, accs
