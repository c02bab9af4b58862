"""PGD / CW / BIM: stay in the ball and the box, restarts only help the attacker, and a natural
model falls to a large-eps attack."""
import subprocess
import sys

import pytest
import torch
from torch import nn

from freeadv.attacks import ATTACKS, AttackError, AttackSpec
from freeadv.perturb import cw_margin, pgd
from freeadv.runs import evaluate, worst_case
from freeadv.attacks.spec import for_model
from freeadv.stats import unpack_flags
from freeadv.cli import main


def trained_toy_model():
    """A small MLP trained naturally on two well separated Gaussian blobs in image space."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(4, 3, 4, 4, generator=g) * 0.5 + 0.25
    y = torch.randint(0, 4, (512,), generator=g)
    x = (centers[y] + 0.05 * torch.randn(512, 3, 4, 4, generator=g)).clamp(0, 1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x[:200], y[:200]


@pytest.fixture(scope="module")
def toy():
    return trained_toy_model()


@pytest.mark.parametrize("loss,random_start", [("ce", True), ("cw", True), ("ce", False)])
def test_pgd_stays_in_eps_ball_and_unit_box(toy, loss, random_start):
    model, x, y = toy
    eps = 8 / 255
    x_adv = pgd(model, x, y, eps=eps, step_size=2 / 255, steps=10, loss=loss, random_start=random_start,
                generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() >= eps - 1e-6     # the budget is used


def test_pgd_raises_the_loss(toy):
    model, x, y = toy
    x_adv = pgd(model, x, y, eps=16, step_size=2, steps=10)
    ce = nn.functional.cross_entropy
    assert ce(model(x_adv), y) > 10 * ce(model(x), y)
    assert cw_margin(model(x_adv), y) > cw_margin(model(x), y)


def test_large_eps_pgd_drives_natural_model_accuracy_to_zero(toy):
    model, x, y = toy
    clean = evaluate(model, [(x, y)], AttackSpec("none"))
    assert clean["clean_acc"] > 95
    attacked = evaluate(model, [(x, y)], AttackSpec("pgd", eps=128, step_size=16, steps=20))
    assert attacked["robust_acc"] < 2


def test_more_restarts_never_raise_robust_accuracy(toy):
    model, x, y = toy
    accs = []
    for restarts in (1, 3, 6):
        spec = AttackSpec("pgd", eps=48, step_size=12, steps=2, restarts=restarts)
        accs.append(evaluate(model, [(x, y)], spec, seed=0)["robust_acc"])
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[2] < accs[0]     # restarts find examples a single run missed
    assert 0 < accs[0] < 100     # the test is informative: the attack is neither hopeless nor trivial


def test_per_image_flags_name_each_image_in_order_across_batches(toy):
    """The eval's bitmaps: bit i is image i over all batches; they sum to the counts, the robust
    ones are a subset of the clean ones, and they match an attack run on each image's own batch."""
    model, x, y = toy
    spec = AttackSpec("pgd", eps=48, step_size=12, steps=2)
    result = evaluate(model, [(x[:70], y[:70]), (x[70:], y[70:])], spec, seed=0)
    record = result["per_image"]
    clean, robust = unpack_flags(record["clean"], len(y)), unpack_flags(record["robust"], len(y))
    assert record["first"] == 0 and record["n"] == len(y) == result["n"]
    assert clean.sum() == result["clean_correct"] and robust.sum() == result["robust_correct"]
    assert not (robust & ~clean).any() and 0 < robust.sum() < clean.sum()
    assert clean.tolist() == (model(x).argmax(1) == y).tolist()
    first_batch = evaluate(model, [(x[:70], y[:70])], spec, seed=0)["per_image"]
    assert unpack_flags(first_batch["robust"], 70).tolist() == robust[:70].tolist()


def test_worst_case_keeps_adversarial_example_that_fooled(toy):
    model, x, y = toy
    spec = AttackSpec("pgd", eps=12, step_size=2, steps=3, restarts=2)
    x_adv, robust = worst_case(model, x, y, spec, torch.Generator().manual_seed(1))
    fooled = model(x_adv).argmax(1) != y
    assert torch.equal(fooled, ~robust)
    assert (x_adv - x).abs().max() <= 12 / 255 + 1e-6


def test_attack_uses_eval_mode_and_restores_training_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)).train()
    x, y = torch.rand(6, 3, 2, 2), torch.randint(0, 3, (6,))
    modes = []
    model[2].register_forward_pre_hook(lambda mod, inp: modes.append(mod.training))
    evaluate(model, [(x, y)], AttackSpec("pgd", steps=2, eps=8, step_size=2))
    assert modes and not any(modes)
    assert model.training


def test_attack_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown attack 'fgsmx'"):
        AttackSpec("fgsmx")
    with pytest.raises(ValueError, match="attack pgd has bad restarts 0: expected an integer >= 1"):
        AttackSpec("pgd", restarts=0)


@pytest.mark.parametrize("fields, field, value", [
    ({"steps": -1}, "steps", -1), ({"restarts": 0}, "restarts", 0), ({"n": 0}, "n", 0),
    ({"eps": 300.0}, "eps", 300.0), ({"step_size": 0.0}, "step_size", 0.0),
    ({"kind": "cw", "steps": 10, "restarts": 1, "n": -3}, "n", -3),
])
def test_a_spec_names_the_field_it_refuses(fields, field, value):
    """The spec checks every field once; the command line names its own option from ``field``."""
    with pytest.raises(AttackError) as caught:
        AttackSpec(**{"kind": "pgd", "steps": 20, **fields})
    assert (caught.value.field, caught.value.value) == (field, value)


def test_the_command_line_names_the_option_of_a_bad_spec_field(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for argv, text in ((["--attack", "autoattack", "--step-size", "2"], "--step-size has bad value 2: autoattack "
                        "chooses its own steps"), (["--restarts", "0"], "--restarts has bad value 0: expected"),
                       (["--eps", "300"], "--eps has bad value 300.0: expected a number in (0, 255]")):
        assert main(["attack", "--run", str(run), *argv, "--out", str(tmp_path / "e.json")]) == 2
        assert text in capsys.readouterr().err


@pytest.mark.parametrize("attack_id", ["clean", "noise-eps8", "pgd20-eps8-step2", "pgd20-eps8-step2-r10",
                                       "cw100-eps8-step2", "bim50-eps30-step2", "pgd10-eps2-step1"])
def test_attack_ids_round_trip_through_the_registry(attack_id):
    spec = AttackSpec.parse(attack_id)
    assert spec.id == attack_id
    assert spec.kind in ATTACKS


def test_unknown_attack_id_names_the_known_forms():
    with pytest.raises(AttackError, match="pgd-twenty.*<steps>-eps<E>"):
        AttackSpec.parse("pgd-twenty")


def test_unbound_attack_says_what_is_missing():
    with pytest.raises(AttackError, match="no eps"):
        AttackSpec("pgd", steps=2).eps_unit


def test_spec_is_in_pixel_units_and_for_model_fills_the_training_eps():
    spec = for_model(AttackSpec("pgd", 20), {"eps": 4.0, "dataset": "imagenet"})
    assert (spec.eps, spec.step_size) == (4.0, 1.0)
    assert spec.eps_unit == pytest.approx(4 / 255)
    assert for_model(AttackSpec("pgd", 20), {"eps": 8, "dataset": "cifar10"}).step_size == 2.0


def test_attack_registry_imports_no_torch():
    code = ("import sys, freeadv.attacks, freeadv.methods, freeadv.config, freeadv.sanity; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')], 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
