"""Wong et al.'s FGSM-RS recipe options: the cyclic learning rate (torch's CyclicLR triangle, a
pure function of the iteration) and weight decay on every parameter."""
import pytest
import torch

from freeadv import config as cfg
from freeadv.training import Trainer, make_optimizer, model_for
from freeadv.training import schedule as lr_schedule

TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 64, "batch_size": 64,
        "iterations": 16, "log_every": 1, "checkpoint_every": 8, "eval_n": None, "robust_eval_n": None,
        "device": "cpu", "method": "natural"}


def tiny(**overrides):
    return cfg.resolve({**TINY, **overrides})


def test_cyclic_rate_is_torchs_triangle_zero_peak_zero():
    config, total = tiny(lr_schedule="cyclic", lr=0.2), 100
    rates = [lr_schedule.learning_rate(config, [], t, total) for t in range(total + 1)]
    assert rates[0] == 0.0 and rates[50] == pytest.approx(0.2) and rates[100] == 0.0
    assert rates[25] == pytest.approx(0.1) and rates[75] == pytest.approx(0.1)
    assert rates[99] == pytest.approx(0.2 / 50)
    rises, falls = [b - a for a, b in zip(rates[:50], rates[1:51])], [b - a for a, b in zip(rates[50:], rates[51:])]
    assert rises == pytest.approx([0.2 / 50] * 50) and falls == pytest.approx([-0.2 / 50] * 50)   # linear
    # torch's CyclicLR, base 0, step_size_up = step_size_down = total / 2, stepped once per iteration
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    cyclic = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=0.0, max_lr=0.2, step_size_up=50,
                                               step_size_down=50, cycle_momentum=False)
    theirs = []
    for _ in range(total):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        cyclic.step()
    assert rates[:total] == pytest.approx(theirs, abs=1e-12)


def test_cyclic_schedule_has_no_milestones_and_needs_the_total():
    config = tiny(lr_schedule="cyclic")
    assert lr_schedule.schedule(config, 4) == (16, [])
    assert lr_schedule.schedule(tiny(), 4) == (16, [8, 12])   # the step schedule is unchanged
    with pytest.raises(ValueError, match="total"):
        lr_schedule.learning_rate(config, [], 3)


def test_training_uses_the_cyclic_rate_at_every_iteration(tmp_path):
    result = Trainer(tiny(lr_schedule="cyclic", lr=0.1), tmp_path / "run", progress=False).run()
    logged = [(h["iteration"], h["lr"]) for h in result["loss_history"]]   # after update i: its rate, at i - 1
    assert logged == [(i, pytest.approx(0.1 * (1 - abs(2 * (i - 1) / 16 - 1)))) for i in range(1, 17)]
    assert result["lr_milestones"] == []


def groups_by_parameter(config):
    model = model_for(config)
    optimizer = make_optimizer(model, config)
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    return model, optimizer, decay


def test_weight_decay_all_decays_every_parameter():
    model, optimizer, decay = groups_by_parameter(tiny(weight_decay_all=True, weight_decay=5e-4))
    assert len(optimizer.param_groups) == 1
    assert set(decay) == {id(p) for p in model.parameters()}
    assert set(decay.values()) == {5e-4}


def test_weight_decay_default_keeps_kernels_only():
    model, optimizer, decay = groups_by_parameter(tiny(weight_decay=5e-4))
    assert len(optimizer.param_groups) == 2 and set(decay) == {id(p) for p in model.parameters()}
    assert any(p.ndim <= 1 for p in model.parameters())   # BN scales / biases exist, so the split matters
    for p in model.parameters():
        assert decay[id(p)] == (5e-4 if p.ndim > 1 else 0.0)


@pytest.mark.parametrize("key,value", [("lr_schedule", "cosine"), ("lr_schedule", None),
                                       ("weight_decay_all", "yes"), ("weight_decay_all", 1)])
def test_bad_recipe_values_name_the_value(key, value):
    with pytest.raises(cfg.ConfigError, match=f"'{key}' has bad value {value!r}"):
        tiny(**{key: value})
