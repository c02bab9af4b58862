"""Validation images for the checks during training, and keep_best: the checks attack training
images the run does not train on (never the test split unless asked), and model_best.pt holds the
weights of the best check, through a kill and a resume, for `freeadv attack --weights best`."""
import json

import pytest
import torch
from test_data import accept_fake_cifar_md5, write_fake_cifar10, write_image_folder  # noqa: F401 (a fixture)

from freeadv import config as cfg
from freeadv.checkpoints import load_tensors
from freeadv.cli import main
from freeadv.data import DataError, TensorBundle, load_data, make_synthetic, train_subset_indices
from freeadv.data.subsets import subset_bundle
from freeadv.training import Trainer, data_for, load_trained_model, robust
from freeadv.training.folder import same_config

# free m=2 over 4 batches of 64: 8 iterations a pass; a check every 4 iterations (4, 8, 12, 16) on
# 32 validation images; constant learning rate
TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 64, "batch_size": 64,
        "iterations": 16, "log_every": 4, "checkpoint_every": 4, "eval_n": 32, "device": "cpu", "method": "free",
        "replay": 2, "robust_eval_n": 32, "robust_eval_steps": 2, "robust_eval_every": 4, "lr_milestones": [],
        "keep_best": True}
# The checks' robust accuracies, scripted by iteration on top of real checks (a tiny run's own are
# near chance and often tie): the best is 8; 12 ties with it and must lose (the earlier check wins).
SCRIPT = {4: 20.0, 8: 35.0, 12: 35.0, 16: 30.0}
BEST = 8
CLEAN: dict[int, float] = {}   # the checks' clean accuracies, scripted too: 50% unless a test says otherwise


def tiny(**overrides):
    return cfg.resolve({**TINY, **overrides})


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class ReadTestImage(AssertionError):
    pass


def refuse_test_images(patcher):
    """Make any read of a bundle's test split fail, as a run that must not see it."""
    def refuse(*args, **kwargs):
        raise ReadTestImage("a test image was read during training")
    patcher.setattr(TensorBundle, "test_batches", refuse)
    patcher.setattr(TensorBundle, "test_tensors", refuse)


def scripted_training(patcher, seen: dict):
    """robust.check with SCRIPT's robust accuracies; ``seen`` gets each check's weights (CPU copies)."""
    original = robust.check

    def check(config, setup, iteration, *args, **kwargs):
        record = original(config, setup, iteration, *args, **kwargs)
        seen[iteration] = robust.cpu_copy(setup.model.state_dict())
        return {**record, "heldout_robust_acc": SCRIPT[iteration], "heldout_clean_acc": CLEAN.get(iteration, 50.0)}

    patcher.setattr(robust, "check", check)


@pytest.fixture(scope="module")
def best_run(tmp_path_factory):
    """A finished keep_best run (scripted checks, the test split unreadable) and each check's weights."""
    run_dir, seen = tmp_path_factory.mktemp("validation") / "best", {}
    with pytest.MonkeyPatch.context() as patcher:
        scripted_training(patcher, seen)
        refuse_test_images(patcher)
        result = Trainer(tiny(), run_dir, progress=False).run()
    return run_dir, result, seen


# --- keep_best -----------------------------------------------------------------------------------

def test_keep_best_writes_the_weights_of_the_best_check(best_run):
    run_dir, result, seen = best_run
    assert sorted(seen) == [4, 8, 12, 16]
    assert_same_weights(load_tensors(run_dir / "model_best.pt"), seen[BEST])
    assert_same_weights(load_tensors(run_dir / "model.pt"), seen[16])          # model.pt: the final weights
    assert any(not torch.equal(seen[BEST][k], seen[16][k]) for k in seen[BEST])
    check = next(c for c in result["robust_checks"] if c["iteration"] == BEST)
    expected = {"iteration": 8, "pass": 1, "epochs_natural": 2.0, "robust_acc": 35.0,
                "clean_acc": check["heldout_clean_acc"]}
    assert result["best"] == expected
    assert json.loads((run_dir / "train.json").read_text())["best"] == expected
    for record in result["robust_checks"]:   # every check says when (in passes and natural epochs) and on what
        assert record["epochs_natural"] == record["iteration"] / 8 * 2 and record["robust_eval_source"] == "validation"
    assert result["n_validation"] == 32 and result["n_train"] == 256


def test_no_test_image_is_read_while_training_with_validation_checks(best_run, tmp_path, monkeypatch):
    """best_run trained with the test split unreadable (checks, pass-end clean accuracy, keep_best);
    the same run checking test images does read it, so the guard is real."""
    assert best_run[1]["clean_acc_eval_source"] == "validation"
    assert all(e["clean_acc_eval_n"] is not None for e in best_run[1]["log"] if "clean_acc_eval_n" in e)
    refuse_test_images(monkeypatch)
    with pytest.raises(ReadTestImage):
        Trainer(tiny(robust_eval_source="test", keep_best=False), tmp_path / "test", progress=False).run()


@pytest.mark.slow
def test_keep_best_survives_a_kill_and_resume(best_run, tmp_path, monkeypatch):
    """Killed at iteration 10 (after the checkpoint at 8, which holds the best weights so far): the
    resumed run keeps 8 as the best (12 only ties it) and writes the same model_best.pt."""
    from freeadv import methods
    run_dir, straight, _ = best_run
    scripted_training(monkeypatch, {})
    original, calls = methods.Free.step, {"n": 0}

    class Interrupt(Exception):
        pass

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:
            raise Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(methods.Free, "step", dying_step)
    with pytest.raises(Interrupt):
        Trainer(tiny(), tmp_path / "resumed", progress=False).run()
    saved = load_tensors(tmp_path / "resumed" / "checkpoint.pt")   # weights_only
    assert saved["iteration"] == 8 and saved["best"]["iteration"] == BEST and type(saved["best_model"]) is dict
    monkeypatch.setattr(methods.Free, "step", original)
    resumed = Trainer(tiny(), tmp_path / "resumed", progress=False).run()
    assert resumed["resumes"] == 1 and resumed["best"] == straight["best"]
    assert (tmp_path / "resumed" / "model_best.pt").read_bytes() == (run_dir / "model_best.pt").read_bytes()
    assert_same_weights(load_tensors(tmp_path / "resumed" / "model.pt"), load_tensors(run_dir / "model.pt"))


def test_attack_evaluates_the_chosen_weights_and_records_them(best_run, tmp_path, capsys):
    run_dir = best_run[0]
    common = ["attack", "--run", str(run_dir), "--attack", "pgd", "--steps", "1", "--n", "32", "--device", "cpu",
              "--no-progress"]
    results = {}
    for weights in ("best", "final"):
        out = tmp_path / f"{weights}.json"
        assert main([*common, "--weights", weights, "--out", str(out)]) == 0
        results[weights] = json.loads(out.read_text())
    assert main([*common, "--out", str(tmp_path / "default.json")]) == 0
    assert json.loads((tmp_path / "default.json").read_text())["weights"] == "final"
    x, y = load_data("synthetic", ".", n_train=1, n_test=32).test_tensors()
    for weights, name in (("best", "model_best.pt"), ("final", "model.pt")):
        model, _ = load_trained_model(run_dir, weights=weights)
        assert_same_weights(model.state_dict(), load_tensors(run_dir / name))
        with torch.no_grad():
            clean = 100.0 * float((model(x).argmax(1) == y).float().mean())
        assert results[weights]["weights"] == weights and results[weights]["clean_acc"] == pytest.approx(clean)
    assert results["best"]["clean_acc"] != results["final"]["clean_acc"]   # measured: 9.4% and 21.9%


def test_best_weights_of_a_run_without_keep_best_are_a_one_line_error(trained_run, tmp_path, capsys):
    code = main(["attack", "--run", str(trained_run), "--weights", "best", "--device", "cpu", "--n", "8",
                 "--out", str(tmp_path / "e.json"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "model_best.pt" in err and "keep_best" in err and len(err.splitlines()) == 1


# --- which images --------------------------------------------------------------------------------

def image_keys(images):
    return {bytes(image.flatten().tolist()) for image in images}


@pytest.mark.parametrize("n_train,trained", [(600, 600), (None, 900)])
def test_validation_images_are_neither_training_nor_test_images(n_train, trained):
    """A fixed split (synthetic images standing in for CIFAR's, every one distinct): below the
    split the validation images come from the images the subset leaves out, at the full split
    they are held out of it. Disjoint by index and by pixels, and seeded by the data seed."""
    train_x, train_y, test_x, test_y = make_synthetic(1000, 200, data_seed=3)
    assert len(image_keys(torch.cat([train_x, test_x]))) == 1200
    bundle = subset_bundle("cifar10", train_x, train_y, test_x, test_y, n_train=n_train, n_test=None,
                           data_seed=5, augment=False, n_validation=100)
    train, held_out = set(bundle.train_indices.tolist()), set(bundle.validation_indices.tolist())
    assert (bundle.n_train, bundle.n_validation, len(train), len(held_out)) == (trained, 100, trained, 100)
    assert not train & held_out and train | held_out <= set(range(1000))
    if n_train is not None:   # holding validation images out leaves the training subset as it was
        assert torch.equal(bundle.train_indices, train_subset_indices(1000, n_train, 5))
    validation = torch.cat([x for x, _ in bundle.validation_batches(64, device="cpu")])
    assert torch.equal((validation * 255).round().to(torch.uint8), train_x[bundle.validation_indices])
    keys = image_keys(bundle.validation_x)
    assert len(keys) == 100 and not keys & image_keys(bundle.train_x) and not keys & image_keys(bundle.test_x)
    again = subset_bundle("cifar10", train_x, train_y, test_x, test_y, n_train=n_train, n_test=None, data_seed=5,
                          augment=False, n_validation=100)
    other = subset_bundle("cifar10", train_x, train_y, test_x, test_y, n_train=n_train, n_test=None, data_seed=6,
                          augment=False, n_validation=100)
    assert torch.equal(again.validation_indices, bundle.validation_indices)
    assert not torch.equal(other.validation_indices, bundle.validation_indices)


def test_synthetic_validation_images_are_a_draw_of_their_own():
    plain = load_data("synthetic", None, n_train=300, n_test=60)
    data = load_data("synthetic", None, n_train=300, n_test=60, n_validation=50)
    assert torch.equal(data.train_x, plain.train_x) and torch.equal(data.test_x, plain.test_x)
    assert data.n_validation == 50 and plain.n_validation == 0
    keys = image_keys(data.validation_x)
    assert len(keys) == 50 and not keys & image_keys(data.train_x) and not keys & image_keys(data.test_x)
    assert data.validation_y.bincount().tolist() == [5] * 10
    with pytest.raises(DataError, match="no validation images"):
        plain.validation_batches(8, device="cpu")


def test_full_cifar_split_trains_on_the_rest_when_validation_is_used(tmp_path, accept_fake_cifar_md5):
    """The config's path: n_train unset, checks on validation images, validation_n of them held out
    of the 100 images of a fake CIFAR-10; checks off, all 100 train."""
    write_fake_cifar10(tmp_path)
    base = {"dataset": "cifar10", "data_root": str(tmp_path), "arch": "small_cnn", "batch_size": 8,
            "robust_eval_n": 16}
    data = data_for(cfg.resolve({**base, "validation_n": 20}))
    assert (data.n_train, data.n_validation) == (80, 20)
    assert not set(data.train_indices.tolist()) & set(data.validation_indices.tolist())
    keys = image_keys(data.validation_x)
    assert not keys & image_keys(data.train_x) and not keys & image_keys(data.test_x)
    assert data_for(cfg.resolve({**base, "robust_eval_source": "first_train_batch"})).n_train == 100
    assert data_for(cfg.resolve({**base, "robust_eval_source": "test"})).n_validation == 0
    assert data_for(cfg.resolve({**base, "eval_n": 24})).n_validation == 16   # null: robust_eval_n
    with pytest.raises(DataError, match=r"n_train=90 plus 20 validation images \(validation_n\)") as err:
        data_for(cfg.resolve({**base, "validation_n": 20, "n_train": 90}))
    assert len(str(err.value).splitlines()) == 1


def test_imagenet_holds_validation_images_out_of_its_training_folder(tmp_path):
    write_image_folder(tmp_path)
    data = load_data("imagenet", tmp_path, n_validation=3, num_workers=0)
    assert (data.n_train, data.n_validation) == (7, 3)
    assert not set(data.train_indices.tolist()) & set(data.validation_indices.tolist())
    batches = list(data.validation_batches(2, device="cpu"))
    assert [x.shape for x, _ in batches] == [(2, 3, 224, 224), (1, 3, 224, 224)]
    labels = [data.train_folder.samples[i][1] for i in data.validation_indices.tolist()]
    assert torch.cat([y for _, y in batches]).tolist() == labels


# --- config --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,extra,says", [
    ("keep_best", True, {"robust_eval_n": 0}, "robust_eval_n"),
    ("keep_best", True, {"robust_eval_n": None}, "robust_eval_n"),
    ("keep_best", True, {"robust_eval_source": "test"}, "test images"),
    ("keep_best", True, {"robust_eval_source": "heldout"}, "test images"),
    ("keep_best", True, {"robust_eval_source": "first_train_batch", "robust_eval_every": None}, "another batch"),
    ("early_stop", True, {"robust_eval_source": "test", "keep_best": False}, "test images"),
    ("keep_best", "yes", {}, "true or false"),
    ("validation_n", 16, {}, "at least robust_eval_n=32"),
    ("validation_n", 0, {}, "an integer >= 1 or null"),
    ("robust_eval_source", "holdout", {}, "validation, test or first_train_batch"),
])
def test_invalid_combinations_are_one_line_config_errors(key, value, extra, says):
    with pytest.raises(cfg.ConfigError, match=f"config key '{key}' has bad value {value!r}: expected") as err:
        tiny(**{key: value, **extra})
    assert says in str(err.value) and len(str(err.value).splitlines()) == 1


def test_heldout_is_read_as_test_so_earlier_runs_still_load():
    old = tiny(robust_eval_source="heldout", keep_best=False)
    assert old["robust_eval_source"] == "test" and old == tiny(robust_eval_source="test", keep_best=False)
    saved = {**TINY, "keep_best": False, "robust_eval_source": "heldout"}
    assert same_config(saved, tiny(robust_eval_source="test", keep_best=False))
    assert not same_config(saved, tiny(keep_best=False))   # the default source, validation: another run
    assert cfg.validation_size(tiny()) == 32 and cfg.validation_size(old) == 0
    assert cfg.validation_size(tiny(validation_n=40)) == 40


def test_a_tie_in_robust_accuracy_goes_to_the_better_clean_check_and_a_full_tie_to_the_earlier():
    """A natural model's robust checks are all 0%: its best weights are those of its best clean check,
    not of its first check."""
    best = robust.best_record({"iteration": 4, "pass": 1, "epochs_natural": 1.0,
                               "heldout_robust_acc": 0.0, "heldout_clean_acc": 40.0})
    check = {"heldout_robust_acc": 0.0, "heldout_clean_acc": 55.0}
    assert robust.better(check, best)
    assert not robust.better({**check, "heldout_clean_acc": 40.0}, best)    # a full tie keeps the earlier
    assert not robust.better({"heldout_robust_acc": 0.0, "heldout_clean_acc": 39.0}, best)
    assert robust.better({"heldout_robust_acc": 0.1, "heldout_clean_acc": 10.0}, best)   # robustness first
