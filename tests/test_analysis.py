"""Figure data on a toy model trained on synthetic data: loss surfaces (shape, centre = clean loss,
the adversarial direction raises the loss more than a random one) and large-eps BIM examples
(inside the eps ball, uint8 round trip, the stored images give the stored predictions)."""
import json

import pytest
import torch
import torch.nn.functional as F

from freeadv import config as cfg
from freeadv.runs.analysis import adv_examples, from_uint8, grid_axis, loss_surface, rademacher, to_uint8
from freeadv.cli import main
from freeadv.training import Trainer, data_for, load_trained_model

TOY = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 512, "n_test": 100, "batch_size": 64,
       "iterations": 64, "log_every": 16, "checkpoint_every": 1000, "eval_n": 100, "device": "cpu",
       "method": "natural", "replay": 1}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("toy") / "natural"
    Trainer(cfg.resolve(TOY), run_dir, progress=False).run()
    return run_dir


@pytest.fixture(scope="module")
def surfaces(toy_run):
    return {plane: loss_surface(toy_run, images=2, plane=plane, grid=11, span=16, device="cpu")
            for plane in ("adv-rad", "rad-rad")}


def test_grid_axis_is_symmetric_with_an_exact_zero():
    axis = grid_axis(16, 21)
    assert len(axis) == 21 and axis[0] == -16 and axis[-1] == 16 and axis[10] == 0


def test_rademacher_is_plus_minus_one_and_seeded():
    a = rademacher((3, 4, 4), torch.Generator().manual_seed(1))
    b = rademacher((3, 4, 4), torch.Generator().manual_seed(1))
    assert set(a.unique().tolist()) == {-1.0, 1.0} and torch.equal(a, b)


@pytest.mark.slow
def test_loss_surface_shape_and_axis(surfaces):
    result = surfaces["adv-rad"]
    assert result["kind"] == "loss-surface" and result["plane"] == "adv-rad"
    assert len(result["images"]) == 2 and len(result["axis"]) == 11
    assert result["axis"][0] == -16 and result["axis"][5] == 0
    for image in result["images"]:
        losses = torch.tensor(image["losses"])
        assert losses.shape == (11, 11) and torch.isfinite(losses).all() and (losses >= 0).all()
    assert "git" in result and "versions" in result and result["train_config"]["dataset"] == "synthetic"
    json.dumps(result)   # JSON-able as written


def test_centre_of_the_grid_is_the_clean_loss(toy_run, surfaces):
    model, config = load_trained_model(toy_run, "cpu")
    x, y = data_for(dict(config, augment=False)).test_tensors("cpu")
    with torch.no_grad():
        clean = F.cross_entropy(model(x[:2]), y[:2], reduction="none")
    for plane in ("adv-rad", "rad-rad"):
        for index, image in enumerate(surfaces[plane]["images"]):
            assert image["losses"][5][5] == pytest.approx(float(clean[index]), rel=1e-4, abs=1e-5)
            assert image["clean_loss"] == pytest.approx(float(clean[index]), rel=1e-4, abs=1e-5)
            assert image["label"] == int(y[index])


def test_adversarial_direction_raises_the_loss_more_than_a_random_one(surfaces):
    for adv, rad in zip(surfaces["adv-rad"]["images"], surfaces["rad-rad"]["images"]):
        centre = adv["losses"][5][5]
        adv_rise = adv["losses"][10][5] - centre       # +16/255 along sign(gradient), 0 along d2
        rad_rise = max(rad["losses"][10][5], rad["losses"][0][5]) - centre
        assert adv_rise > 0
        assert adv_rise > 2 * max(rad_rise, 0.0)
    # the second direction is the same Rademacher draw in both planes
    for adv, rad in zip(surfaces["adv-rad"]["images"], surfaces["rad-rad"]["images"]):
        assert adv["losses"][5] == pytest.approx(rad["losses"][5], rel=1e-5, abs=1e-6)


def test_ascent_check_puts_pgd20_at_or_above_the_surface_inside_the_ball(toy_run, surfaces):
    """Each image records PGD-20's loss and the largest loss of the grid points inside the eps-ball;
    on an unmasked model PGD's is at least as high, and both are above the clean loss."""
    model, config = load_trained_model(toy_run, "cpu")
    for image in surfaces["adv-rad"]["images"]:
        assert image["pgd20_loss"] >= image["ball_max_loss"] - 1e-4
        assert image["ball_max_loss"] >= image["clean_loss"] - 1e-6
        assert image["pgd20_loss"] > image["clean_loss"]
    axis = surfaces["adv-rad"]["axis"]
    inside = [(i, j) for i, a in enumerate(axis) for j, b in enumerate(axis) if abs(a) + abs(b) <= config["eps"]]
    assert 1 < len(inside) < len(axis) ** 2 and "eps-ball" in surfaces["adv-rad"]["ascent_check"]


def test_unknown_plane_is_refused(toy_run):
    with pytest.raises(ValueError, match="plane"):
        loss_surface(toy_run, plane="adv-adv", device="cpu")


@pytest.fixture(scope="module")
def examples(toy_run):
    return adv_examples(toy_run, eps=30, step_size=2, steps=10, last=9, device="cpu")


def test_adv_examples_are_the_last_test_images_within_eps(examples, toy_run):
    _, config = load_trained_model(toy_run, "cpu")
    x, y = data_for(dict(config, augment=False, n_test=None)).test_tensors("cpu")
    assert examples["indices"] == list(range(len(y) - 9, len(y)))
    assert examples["labels"] == y[-9:].tolist()
    clean = torch.tensor(examples["clean_images"], dtype=torch.int32)
    adversarial = torch.tensor(examples["adversarial_images"], dtype=torch.int32)
    assert clean.shape == adversarial.shape == (9, 3, 32, 32)
    assert torch.equal(clean, to_uint8(x[-9:]).int())
    assert 0 <= int(adversarial.min()) and int(adversarial.max()) <= 255
    assert int((adversarial - clean).abs().max()) <= 30 == int(examples["attack"]["eps"])
    assert examples["max_perturbation_pixels"] > 0
    assert examples["attack"] == {"kind": "bim", "eps": 30, "step_size": 2, "steps": 10, "random_start": False,
                                  "loss": "cross-entropy", "units": "pixels /255"}
    assert examples["class_names"][:2] == ["class 0", "class 1"]


def test_adv_examples_uint8_round_trip_gives_the_stored_predictions(examples, toy_run):
    model, _ = load_trained_model(toy_run, "cpu")
    adversarial = torch.tensor(examples["adversarial_images"], dtype=torch.uint8)
    assert torch.equal(to_uint8(from_uint8(adversarial)), adversarial)
    with torch.no_grad():
        assert model(from_uint8(adversarial)).argmax(1).tolist() == examples["adversarial_predictions"]
        clean = from_uint8(torch.tensor(examples["clean_images"], dtype=torch.uint8))
        assert model(clean).argmax(1).tolist() == examples["clean_predictions"]
    # BIM at eps 30 breaks a naturally trained model on most of these images
    wrong = sum(p != y for p, y in zip(examples["adversarial_predictions"], examples["labels"]))
    assert wrong >= 5


def test_cli_writes_figure_data(toy_run, tmp_path, capsys):
    out = tmp_path / "surface.json"
    assert main(["loss-surface", "--run", str(toy_run), "--images", "1", "--grid", "3", "--span", "4",
                 "--plane", "rad-rad", "--device", "cpu", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["plane"] == "rad-rad" and len(data["images"][0]["losses"]) == 3
    out = tmp_path / "examples.json"
    assert main(["adv-examples", "--run", str(toy_run), "--steps", "2", "--last", "3", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["adversarial_images"]) == 3
    assert main(["adv-examples", "--run", str(toy_run), "--last", "0", "--out", str(out)]) == 2
    assert "--last" in capsys.readouterr().err
