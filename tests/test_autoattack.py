"""AutoAttack through pyautoattack: registered kinds, agreement with PGD, gradient masking caught,
and a killed evaluation that resumes to the same result."""
import json

import pytest
import torch
from torch import nn

from freeadv import config as cfg
from freeadv.attacks import AttackSpec, autoattack
from freeadv.runs import evaluate, run_attack
from freeadv.attacks.kinds import AUTOATTACK_ITERATIONS
from freeadv.cli import main
from freeadv.stats import unpack_flags
from freeadv.training import Trainer, data_for, load_trained_model

RUN = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 2048, "n_test": 96,
       "batch_size": 64, "iterations": 300, "method": "natural", "eval_n": 64, "log_every": 100,
       "checkpoint_every": 100, "device": "cpu"}
CHEAP = 10   # APGD/FAB iterations (Square 500 queries): the smoke variant


@pytest.fixture(scope="module")
def natural_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("aa") / "natural"
    Trainer(cfg.resolve(RUN), run_dir, progress=False).run()
    return run_dir


@pytest.fixture(scope="module")
def test_set(natural_run):
    model, config = load_trained_model(natural_run)
    x, y = next(data_for(dict(config, augment=False)).test_batches(1000, device="cpu"))
    return model, x, y


class Rounded(nn.Module):
    """Gradient masking by construction: the input is quantised (torch.round has a zero gradient
    almost everywhere), so every gradient attack sees a zero input gradient."""

    def __init__(self, model: nn.Module, levels: int = 255) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


def _pgd20(model, x, y, eps):
    return evaluate(model, [(x, y)], AttackSpec("pgd", 20, eps, 2.0))["robust_acc"]


def _autoattack(model, x, y, eps, steps=CHEAP, **options):
    spec = AttackSpec("autoattack", steps, eps)
    return autoattack.evaluate_autoattack(model, x, y, spec, ("apgd-ce", "apgd-t", "fab-t", "square"), **options)


def test_kinds_are_registered_with_ids_costs_and_no_step():
    spec = AttackSpec.parse("autoattack100-eps8")
    assert (spec.kind, spec.steps, spec.eps, spec.step_size) == ("autoattack", AUTOATTACK_ITERATIONS, 8.0, None)
    assert spec.id == "autoattack100-eps8" and "standard" in spec.describe()
    assert AttackSpec.parse("apgd10-eps4").describe().startswith("APGD screen (APGD-CE, APGD-T; cheap")
    assert spec.attack.cost(spec) > AttackSpec.parse("apgd100-eps8").attack.cost(AttackSpec.parse("apgd100-eps8"))


@pytest.mark.slow
def test_autoattack_is_at_most_pgd_and_near_zero_at_a_large_eps(test_set):
    model, x, y = test_set
    clean = 100.0 * float((model(x).argmax(1) == y).float().mean())
    assert clean > 60, "the fixture model must have learnt something for the comparison to mean anything"
    for eps in (2.0, 4.0):
        result = _autoattack(model, x, y, eps)
        assert result["clean_acc"] == pytest.approx(clean)
        assert result["robust_acc"] <= _pgd20(model, x, y, eps) + 1e-9
        accs = [r["robust_acc"] for r in result["sub_attacks"]]
        assert accs == sorted(accs, reverse=True), "each sub-attack runs on the survivors of the previous"
    assert _autoattack(model, x, y, 64.0)["robust_acc"] <= 5.0


@pytest.mark.slow
def test_gradient_masking_fools_pgd_but_not_autoattacks_square(test_set):
    model, x, y = test_set
    masked = Rounded(model).eval()
    clean = 100.0 * float((masked(x).argmax(1) == y).float().mean())
    pgd = _pgd20(masked, x, y, 8.0)
    result = _autoattack(masked, x, y, 8.0)
    by_attack = {r["attack"]: r["robust_acc"] for r in result["sub_attacks"]}
    assert pgd >= 0.5 * clean, f"PGD-20 should be stuck on a zero gradient (clean {clean:.1f}%, PGD {pgd:.1f}%)"
    assert by_attack["fab-t"] >= 0.5 * clean, "the gradient-based sub-attacks should be stuck as well"
    assert by_attack["square"] <= pgd - 30, f"Square should break the masking (PGD {pgd:.1f}%, {by_attack})"
    assert any("zero gradient" in w for w in result["autoattack_warnings"]), result["autoattack_warnings"]


@pytest.mark.slow
def die_on_chunk(monkeypatch, n: int) -> None:
    """The n-th AutoAttack chunk raises KeyboardInterrupt, as a kill would (one adversary is built a chunk)."""
    real, calls = autoattack.build_autoattack, {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(autoattack, "build_autoattack", dies)


def test_killed_evaluation_resumes_from_its_state_file_to_the_same_result(test_set, tmp_path, monkeypatch):
    model, x, y = test_set
    options = {"batch_size": 16, "seed": 0}
    uninterrupted = _autoattack(model, x, y, 2.0, **options)
    state = tmp_path / "eval.state.json"
    die_on_chunk(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        _autoattack(model, x, y, 2.0, state_path=state, **options)
    saved = json.loads(state.read_text())
    assert saved["current"]["chunks_done"] >= 1 and saved["done"] in ([], ["apgd-ce"])
    monkeypatch.undo()   # the kill is over: the real adversary again
    resumed = _autoattack(model, x, y, 2.0, state_path=state, **options)
    assert resumed["flags"] == uninterrupted["flags"]
    assert [(r["robust_correct"], r["robust"]) for r in resumed["sub_attacks"]] == \
        [(r["robust_correct"], r["robust"]) for r in uninterrupted["sub_attacks"]]


@pytest.mark.slow
def test_state_file_of_another_evaluation_is_refused(test_set, tmp_path):
    model, x, y = test_set
    state = tmp_path / "eval.state.json"
    _autoattack(model, x[:16], y[:16], 2.0, state_path=state, batch_size=16)
    with pytest.raises(ValueError, match="belongs to another evaluation"):
        _autoattack(model, x[:32], y[:32], 2.0, state_path=state, batch_size=16)


@pytest.mark.slow
def test_cli_autoattack_writes_sub_attacks_and_removes_its_state(natural_run, tmp_path, capsys):
    out = tmp_path / "aa.json"
    assert main(["attack", "--run", str(natural_run), "--attack", "apgd", "--steps", "5", "--n", "32",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["attack"]["kind"] == "apgd" and result["attack"]["step_size"] is None
    assert [r["attack"] for r in result["sub_attacks"]] == ["apgd-ce", "apgd-t"]
    assert result["library"]["pyautoattack"] and result["n"] == 32
    assert not (tmp_path / "aa.state.json").exists()
    capsys.readouterr()
    assert main(["attack", "--run", str(natural_run), "--attack", "autoattack", "--step-size", "2",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "--step-size has bad value 2" in capsys.readouterr().err


@pytest.mark.slow
def test_run_attack_matches_the_direct_evaluation(natural_run, test_set):
    model, x, y = test_set
    result = run_attack(natural_run, AttackSpec("autoattack", CHEAP, 2.0, n=48), batch_size=16, device="cpu")
    direct = _autoattack(model, x[:48], y[:48], 2.0, batch_size=16)
    assert result["robust_correct"] == direct["robust_correct"] and "flags" not in result
    # per image: the final flags, and each sub-attack's flags after it, bit i = test image i
    assert unpack_flags(result["per_image"]["robust"], 48).tolist() == direct["flags"]["robust"]
    assert unpack_flags(result["per_image"]["clean"], 48).tolist() == direct["flags"]["clean"]
    after = [unpack_flags(r["robust"], 48) for r in result["sub_attacks"]]
    assert all((later <= earlier).all() for earlier, later in zip(after, after[1:]))
    assert after[-1].tolist() == direct["flags"]["robust"]


def test_autoattack_computes_no_weight_gradients_and_leaves_the_model_trainable():
    """FAB-T calls backward() on the model: with the weights frozen for the evaluation, no
    parameter gets a .grad; without it (the control), they do."""
    pytest.importorskip("pyautoattack")
    from freeadv.attacks.autoattack import build_autoattack, evaluate_autoattack
    from freeadv.models import build_model
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, width=4).eval()
    x = torch.rand(8, 3, 32, 32)
    y = model(x).argmax(1).detach()   # every image starts correct: FAB-T attacks all of them
    spec = AttackSpec("autoattack", 2, 8.0)
    evaluate_autoattack(model, x, y, spec, ("fab-t",), batch_size=8)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    build_autoattack(model, spec, ("fab-t",), seed=0, device=torch.device("cpu")).run_standard_evaluation(
        x, y, batch_size=8)
    assert any(p.grad is not None for p in model.parameters())   # the control: unfrozen, FAB-T fills them
