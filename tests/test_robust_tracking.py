"""Robust accuracy during training: the checks' records, that they change nothing the run trains
and cost no training time, when they run, that resume repeats them, and catastrophic overfitting
(Wong et al. 2020) caught, with early stopping keeping the weights from before the fall."""
import json
import time

import pytest
import torch

from freeadv import config as cfg
from freeadv.checkpoints import load_tensors
from freeadv.training import Trainer, read_robust_checks, robust

# free m=2 over 4 batches: 8 iterations a pass, 2 passes
TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 64, "batch_size": 64,
        "iterations": 16, "log_every": 4, "checkpoint_every": 8, "eval_n": 32, "device": "cpu", "method": "free",
        "replay": 2, "robust_eval_n": 32, "robust_eval_steps": 3}
SECONDS = ("train_seconds", "check_seconds")


def tiny(**overrides):
    return cfg.resolve({**TINY, **overrides})


def train(run_dir, **overrides):
    return Trainer(tiny(**overrides), run_dir, progress=False).run()


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def weights(run_dir):
    return load_tensors(run_dir / "model.pt")


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def without_seconds(entries):
    return [{k: v for k, v in entry.items() if k not in SECONDS} for entry in entries]


def test_checks_are_logged_with_plausible_values(tmp_path):
    result = train(tmp_path / "run")
    log = read_log(tmp_path / "run")
    checked = [entry for entry in log if "heldout_robust_acc" in entry]
    assert [e["iteration"] for e in log] == [8, 16] and checked == log   # one check per pass end, merged
    for entry in checked:
        assert set(robust.CHECK_KEYS) <= set(entry)
        assert 0 <= entry["heldout_robust_acc"] <= entry["heldout_clean_acc"] <= 100
        assert entry["robust_eval_n"] == 32 and entry["robust_eval_source"] == "validation"
        assert entry["robust_eval_steps"] == 3 and entry["check_seconds"] > 0
    assert [e["pass"] for e in checked] == [1, 2]
    on_disk = json.loads((tmp_path / "run" / "train.json").read_text())
    assert on_disk["robust_checks"] == [{k: e[k] for k in robust.CHECK_KEYS} for e in checked]
    assert result["robust_checks"] == on_disk["robust_checks"] == read_robust_checks(tmp_path / "run")
    assert on_disk["catastrophic_overfitting"] is None and on_disk["stopped_early"] is False
    assert on_disk["kept_weights_iteration"] == 16
    assert on_disk["n_validation"] == 32 and on_disk["clean_acc_eval_source"] == "validation"
    assert on_disk["best"] is None and not (tmp_path / "run" / "model_best.pt").exists()   # keep_best is off


def test_checks_only_count_what_a_pgd_attack_leaves():
    """On a model that ignores its input every image is either clean-correct and robust or neither."""
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.tensor([0.0, 1.0]))

        def forward(self, x):
            return self.bias.expand(len(x), 2) + 0 * x.flatten(1).sum(1, keepdim=True)

    x, y = torch.rand(8, 3, 4, 4), torch.tensor([1, 1, 1, 0, 0, 0, 1, 0])
    clean, robust_acc, seen = robust.measure(Constant(), [(x, y)], eps=0.1, step_size=0.05, steps=2,
                                             generator=torch.Generator().manual_seed(0))
    assert (clean, robust_acc, seen) == (50.0, 50.0, 8)


def test_checks_draw_nothing_from_the_training_rng_and_leave_the_model_as_it_was():
    from freeadv import distributed
    config = tiny(robust_eval_n=16)
    setup = Trainer(config, "unused", progress=False)._build(distributed.from_environment())
    setup.model.train()
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    rng = torch.get_rng_state()
    first = robust.check(config, setup, 5, 1)
    assert torch.equal(torch.get_rng_state(), rng)
    assert setup.model.training
    assert_same_weights(before, setup.model.state_dict())
    again = robust.check(config, setup, 5, 1)
    assert without_seconds([first]) == without_seconds([again])   # a pure function of (weights, seed, iteration)


@pytest.mark.slow
def test_checks_do_not_change_the_trained_weights(tmp_path):
    on = train(tmp_path / "on", robust_eval_every=3)
    off = train(tmp_path / "off", robust_eval_n=None)
    assert_same_weights(weights(tmp_path / "on"), weights(tmp_path / "off"))
    assert len(on["robust_checks"]) == 5
    assert off["robust_checks"] == [] and off["catastrophic_overfitting"] is None
    assert not any(key in entry for entry in read_log(tmp_path / "off") for key in robust.CHECK_KEYS
                   if key not in ("iteration", "pass", "epochs_natural"))


@pytest.mark.parametrize("overrides", [{"robust_eval_every": 4}, {"robust_eval_source": "first_train_batch"}])
def test_check_time_is_not_training_time(tmp_path, monkeypatch, overrides):
    """Each check takes 1000 s of a clock that jumps (time.perf_counter, which the engine and the
    check read): train_seconds must leave all of them out, mid-pass, pass-end and pass-start checks
    alike, while check_seconds shows them. The CPU-time clock (time.process_time) jumps too:
    train_cpu_seconds must leave the checks out in the same way."""
    real, real_cpu, jump, offset = time.perf_counter, time.process_time, 1000.0, {"s": 0.0}
    original = robust.measure

    def slow_measure(*args, **kwargs):
        offset["s"] += jump
        return original(*args, **kwargs)

    monkeypatch.setattr(time, "perf_counter", lambda: real() + offset["s"])
    monkeypatch.setattr(time, "process_time", lambda: real_cpu() + offset["s"])
    monkeypatch.setattr(robust, "measure", slow_measure)
    result = train(tmp_path / "run", **overrides)
    checks = result["robust_checks"]
    assert len(checks) >= 2 and all(c["check_seconds"] >= jump for c in checks)
    assert 0 < result["train_seconds"] < jump / 10
    assert 0 < result["train_cpu_seconds"] < jump / 10
    assert result["train_cpu_per_wall"] == pytest.approx(result["train_cpu_seconds"] / result["train_seconds"])


# (iteration, pass, merged into the pass end's entry) of every check; 8 iterations a pass
@pytest.mark.parametrize("overrides,expected", [
    ({"robust_eval_every": 3}, [(3, 1, False), (6, 1, False), (9, 2, False), (12, 2, False), (15, 2, False)]),
    ({"robust_eval_every": 4}, [(4, 1, False), (8, 1, True), (12, 2, False), (16, 2, True)]),
    ({"robust_eval_source": "first_train_batch"}, [(0, 1, False), (8, 2, False)]),   # pass starts, before training
])
@pytest.mark.slow
def test_checks_run_at_the_right_iterations(tmp_path, overrides, expected):
    result = train(tmp_path / "run", **overrides)
    log = read_log(tmp_path / "run")
    checked = [entry for entry in log if "heldout_robust_acc" in entry]
    assert [(e["iteration"], e["pass"], "clean_acc_eval_n" in e) for e in checked] == expected
    assert [(c["iteration"], c["pass"]) for c in result["robust_checks"]] == [(i, p) for i, p, _ in expected]
    pass_ends = [entry for entry in log if "clean_acc_eval_n" in entry]
    assert [e["iteration"] for e in pass_ends] == [8, 16]
    for entry in log:
        assert ("heldout_robust_acc" in entry) == all(key in entry for key in robust.CHECK_KEYS)


class Interrupt(Exception):
    pass


def interrupt_at(monkeypatch, n):
    """Make the n-th training step raise (Free.step), as a killed process would stop."""
    from freeadv import methods
    original, calls = methods.Free.step, {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(methods.Free, "step", dying_step)
    return lambda: monkeypatch.setattr(methods.Free, "step", original)


@pytest.mark.parametrize("overrides", [{"robust_eval_every": 3}, {"robust_eval_source": "first_train_batch"},
                                       {}])
def test_resumed_run_has_the_same_checks_and_weights(tmp_path, monkeypatch, overrides):
    """Killed after the pass-end checkpoint (8) and a mid-pass check (9): the resumed run repeats
    the checks it lost and none it kept."""
    straight = train(tmp_path / "straight", **overrides)
    restore = interrupt_at(monkeypatch, 11)
    with pytest.raises(Interrupt):
        train(tmp_path / "resumed", **overrides)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    restore()
    resumed = train(tmp_path / "resumed", **overrides)
    assert resumed["resumes"] == 1
    assert without_seconds(resumed["robust_checks"]) == without_seconds(straight["robust_checks"])
    assert without_seconds(read_log(tmp_path / "resumed")) == without_seconds(read_log(tmp_path / "straight"))
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


@pytest.mark.parametrize("key,value,extra", [
    ("robust_eval_n", -1, {}), ("robust_eval_n", "all", {}), ("robust_eval_n", 1.5, {}),
    ("robust_eval_every", 0, {}), ("robust_eval_steps", 0, {}), ("robust_eval_steps", None, {}),
    ("robust_eval_source", "holdout", {}), ("early_stop", "yes", {}),
    ("early_stop", True, {"robust_eval_n": None}), ("early_stop", True, {"robust_eval_n": 0}),
    ("robust_eval_every", 4, {"robust_eval_source": "first_train_batch"}),
])
def test_bad_values_name_the_value(key, value, extra):
    with pytest.raises(cfg.ConfigError, match=f"config key '{key}' has bad value {value!r}: expected"):
        tiny(**{key: value, **extra})


def test_checks_can_be_switched_off():
    for off in (None, 0):
        assert not robust.enabled(tiny(robust_eval_n=off))
    assert robust.enabled(tiny())
    assert cfg.DEFAULTS["robust_eval_n"] == 512 and cfg.DEFAULTS["early_stop"] is False
    assert cfg.DEFAULTS["robust_eval_source"] == "validation" and cfg.DEFAULTS["keep_best"] is False


# --- catastrophic overfitting ------------------------------------------------------------------
# FGSM-RS, 4 batches a pass (4 iterations), constant lr so the weights at iteration 8 do not
# depend on the run's length: a run of 8 iterations ends with them. A real tiny FGSM-RS run with a
# large step (eps 8-16, alpha 3 eps, lr 0.2-0.3) on the synthetic data stays at chance instead of
# learning and collapsing, so the checks' robust accuracies are scripted (by iteration, so a
# resumed run sees the same ones) on top of real checks.
FGSM = {"method": "fgsm_rs", "replay": 1, "lr_milestones": [], "checkpoint_every": 4}
SCRIPT = {4: 40.0, 8: 42.0, 12: 10.0, 16: 45.0}   # a fall of 32 points at 12


@pytest.fixture
def scripted(monkeypatch):
    original = robust.check

    def check(*args, **kwargs):
        record = original(*args, **kwargs)
        return {**record, "heldout_robust_acc": SCRIPT[record["iteration"]]}

    monkeypatch.setattr(robust, "check", check)


def test_collapse_is_the_first_fall_of_more_than_twenty_points():
    records = [{"iteration": i, "heldout_robust_acc": a} for i, a in [(1, 50.0), (2, 30.0), (3, 9.5), (4, 0.0)]]
    assert robust.CO_DROP_POINTS == 20.0
    assert robust.collapse(records[:2]) is None                     # exactly 20 points is not more than 20
    assert robust.collapse(records) == {"iteration": 3, "previous_iteration": 2, "robust_before": 30.0,
                                        "robust_after": 9.5}


def test_catastrophic_overfitting_is_recorded_without_early_stop(tmp_path, scripted):
    result = train(tmp_path / "run", **FGSM)
    assert [c["heldout_robust_acc"] for c in result["robust_checks"]] == [40.0, 42.0, 10.0, 45.0]
    assert result["catastrophic_overfitting"] == {"iteration": 12, "previous_iteration": 8,
                                                  "robust_before": 42.0, "robust_after": 10.0}
    assert result["stopped_early"] is False and result["kept_weights_iteration"] == 16
    assert result["iterations_trained"] == 16
    assert json.loads((tmp_path / "run" / "train.json").read_text())["catastrophic_overfitting"]["iteration"] == 12


def test_early_stop_keeps_the_weights_from_before_the_fall(tmp_path, scripted):
    result = train(tmp_path / "stopped", early_stop=True, **FGSM)
    assert result["catastrophic_overfitting"]["iteration"] == 12
    assert result["stopped_early"] is True and result["kept_weights_iteration"] == 8
    assert result["iterations_trained"] == 12
    assert [e["iteration"] for e in read_log(tmp_path / "stopped")] == [4, 8, 12]   # nothing after the stop
    train(tmp_path / "eight", early_stop=True, **{**FGSM, "iterations": 8})
    train(tmp_path / "twelve", **{**FGSM, "iterations": 12})
    kept, twelve = weights(tmp_path / "stopped"), weights(tmp_path / "twelve")
    assert_same_weights(kept, weights(tmp_path / "eight"))
    assert any(not torch.equal(kept[key], twelve[key]) for key in kept)   # not the weights it stopped at
    assert not (tmp_path / "stopped" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_early_stop_resumes_exactly_with_the_kept_weights_in_the_checkpoint(tmp_path, monkeypatch, scripted):
    straight = train(tmp_path / "straight", early_stop=True, **FGSM)
    from freeadv import methods
    original, calls = methods.FGSMRandomStart.step, {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:   # after the checkpoint at 8, before the fall at 12
            raise Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(methods.FGSMRandomStart, "step", dying_step)
    with pytest.raises(Interrupt):
        train(tmp_path / "resumed", early_stop=True, **FGSM)
    saved = load_tensors(tmp_path / "resumed" / "checkpoint.pt")   # weights_only=True
    assert saved["kept_iteration"] == 8 and type(saved["kept_model"]) is dict
    assert all(t.device.type == "cpu" for t in saved["kept_model"].values())
    monkeypatch.setattr(methods.FGSMRandomStart, "step", original)
    resumed = train(tmp_path / "resumed", early_stop=True, **FGSM)
    assert resumed["resumes"] == 1 and resumed["kept_weights_iteration"] == 8 and resumed["stopped_early"]
    assert without_seconds(resumed["robust_checks"]) == without_seconds(straight["robust_checks"])
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


NEW_KEYS = ("robust_eval_n", "robust_eval_every", "robust_eval_steps", "robust_eval_source", "early_stop",
            "lr_schedule", "weight_decay_all", "validation_n", "keep_best")


def test_a_run_finished_before_these_keys_existed_is_still_finished(tmp_path, capsys):
    """Its saved config lacks the new keys; at their defaults it is the same run, not retrained."""
    import yaml
    old = {k: v for k, v in TINY.items() if k not in NEW_KEYS}
    first = Trainer(cfg.resolve({**old, "iterations": 8}), tmp_path / "old", progress=False).run()
    summary = json.loads((tmp_path / "old" / "train.json").read_text())
    summary["config"] = {k: v for k, v in summary["config"].items() if k not in NEW_KEYS}
    (tmp_path / "old" / "train.json").write_text(json.dumps(summary))
    saved = yaml.safe_load((tmp_path / "old" / "config.yaml").read_text())
    (tmp_path / "old" / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in saved.items() if k not in NEW_KEYS}))
    again = Trainer(cfg.resolve({**old, "iterations": 8}), tmp_path / "old", progress=False).run()
    assert again["train_seconds"] == first["train_seconds"] and "not retraining" in capsys.readouterr().out
    with pytest.raises(cfg.ConfigError, match="different config"):
        Trainer(cfg.resolve({**old, "iterations": 8, "robust_eval_n": 32}), tmp_path / "old", progress=False).run()
