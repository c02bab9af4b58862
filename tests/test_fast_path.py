"""The GPU fast path, checked on the CPU with tiny models: bf16 autocast (training only; the
perturbation buffer, its sign step and clipping, and every attack at evaluation or in a robust
check stay fp32), ``torch.compile`` (inductor's CPU backend) and channels_last give the weights and
attack results of the plain fp32 path."""
import copy
import json
import shutil
from contextlib import contextmanager
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from freeadv import config as cfg
from freeadv.runs import opening as run_opening
from freeadv.perturb import eval_mode, pgd
from freeadv.checkpoints import load_tensors
from freeadv.cli import main
from freeadv.methods import Free, build_method
from freeadv.provenance import stamp
from freeadv.training import (Trainer, data_for, load_trained_model, make_optimizer, model_for, place_batch,
                              place_model, robust, setup_runtime, uses_bf16)
from freeadv.training import engine
from freeadv.units import to_unit

BF16 = partial(torch.autocast, device_type="cpu", dtype=torch.bfloat16)

# bf16 training: natural small_cnn, 60 iterations of batch 32 (loss measured 2.30 -> 1.79; ~1 s a run)
NATURAL = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 64,
           "batch_size": 32, "iterations": 60, "log_every": 10, "checkpoint_every": 1000, "eval_n": None,
           "robust_eval_n": 16, "robust_eval_every": 30, "robust_eval_steps": 2,
           "method": "natural", "replay": 1, "device": "cpu"}
# compile and channels_last: runs of a few iterations of a width-4 net on 2 batches of 32
SMALL = {"dataset": "synthetic", "arch": "small_cnn", "width": 4, "n_train": 64, "n_test": 32,
         "batch_size": 32, "log_every": 1, "checkpoint_every": 2, "eval_n": None, "robust_eval_n": 0,
         "device": "cpu"}
ATTACK_EPS = 2.0   # pixel units: the tiny natural models keep some robust accuracy at this eps
FREE = {**SMALL, "method": "free", "replay": 2, "iterations": 4}
KPGD = {**SMALL, "method": "pgd", "pgd_steps": 2, "iterations": 2}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for this module (restored after). Measured on the 2-core CI machine
    while another process kept one core busy: a 60-iteration run took 45 s with torch's 2 OpenMP
    threads (each waits at every barrier for the other, descheduled one) and 1.1 s with one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(run_dir, config):
    return Trainer(cfg.resolve(config), run_dir, progress=False).run()


def weights(run_dir):
    return load_tensors(run_dir / "model.pt")


class DtypeRecorder:
    """Forward hooks on every conv and linear layer, recording the dtype of their outputs under the
    current ``phase`` label: what precision the layers actually computed in."""

    def __init__(self, phase="train"):
        self.phase = phase
        self.seen: dict[str, set[torch.dtype]] = {}
        self.handles = []

    def attach(self, model):
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                self.handles.append(module.register_forward_hook(self._hook))
        return model

    def detach(self):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _hook(self, module, inputs, output):
        self.seen.setdefault(self.phase, set()).add(output.dtype)


# --- bf16 autocast ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """A natural run under ``amp: bf16`` with two robust checks; returns (run_dir, result, dtypes
    its layers computed in: 'train' for training forwards, 'check' inside the robust checks)."""
    run_dir = tmp_path_factory.mktemp("fast") / "bf16"
    recorder = DtypeRecorder()
    measure = robust.measure

    def recorded_measure(model, *args, **kwargs):
        recorder.phase = "check"
        try:
            return measure(model, *args, **kwargs)
        finally:
            recorder.phase = "train"

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "place_model", lambda *a, **k: recorder.attach(place_model(*a, **k)))
        mp.setattr(robust, "measure", recorded_measure)
        result = train(run_dir, {**NATURAL, "amp": "bf16"})
    recorder.detach()
    return run_dir, result, recorder.seen


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fast") / "fp32"
    return run_dir, train(run_dir, {**NATURAL, "amp": "off"})


@pytest.mark.slow
def test_bf16_training_learns_and_is_stamped(bf16_run, fp32_run):
    run_dir, result, seen = bf16_run
    losses = [entry["loss"] for entry in result["loss_history"]]
    print("bf16 losses", [round(loss, 3) for loss in losses])
    assert len(losses) == 6
    early, late = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert late < 0.9 * early, losses                # measured 2.24 -> 1.82 (0.81x)
    on_disk = json.loads((run_dir / "train.json").read_text())
    assert on_disk["precision"]["compute"] == "bf16 autocast"
    assert on_disk["precision"]["autocast_dtype"] == "bfloat16"
    assert seen["train"] == {torch.bfloat16}         # the training forwards really ran in bf16

    fp32_dir, fp32_result = fp32_run
    fp32_disk = json.loads((fp32_dir / "train.json").read_text())
    assert fp32_disk["precision"]["compute"] == "fp32" and fp32_disk["precision"]["autocast_dtype"] is None
    # bf16 follows the fp32 loss curve (measured: within 0.006 at every read)
    fp32_losses = [entry["loss"] for entry in fp32_result["loss_history"]]
    print("fp32 losses", [round(loss, 3) for loss in fp32_losses])
    assert max(abs(a - b) for a, b in zip(losses, fp32_losses)) < 0.05


def test_robust_checks_during_bf16_training_run_in_fp32(bf16_run):
    run_dir, result, seen = bf16_run
    assert [check["iteration"] for check in result["robust_checks"]] == [30, 60]
    assert seen["check"] == {torch.float32}


def test_robust_check_measure_is_fp32_inside_an_autocast(bf16_run):
    run_dir = bf16_run[0]
    model, config = load_trained_model(run_dir)
    data = data_for({**config, "augment": False})
    recorder = DtypeRecorder("check")
    recorder.attach(model)
    with BF16():
        robust.measure(model, [next(data.test_batches(16, device="cpu"))], eps=to_unit(8), step_size=to_unit(2),
                       steps=2, generator=torch.Generator().manual_seed(0))
        recorder.phase = "autocast"
        model(next(data.test_batches(4, device="cpu"))[0])   # the recorder sees bf16 where there is
    recorder.detach()
    assert recorder.seen == {"check": {torch.float32}, "autocast": {torch.bfloat16}}


def test_attack_of_a_bf16_run_is_fp32(bf16_run, tmp_path, monkeypatch):
    run_dir = bf16_run[0]
    recorder = DtypeRecorder("attack")
    load = run_opening.load_trained_model
    monkeypatch.setattr(run_opening, "load_trained_model",
                        lambda *a, **k: (lambda model, config: (recorder.attach(model), config))(*load(*a, **k)))
    out = tmp_path / "eval.json"
    assert main(["attack", "--run", str(run_dir), "--steps", "3", "--n", "32", "--device", "cpu",
                 "--out", str(out), "--no-progress"]) == 0
    recorder.detach()
    assert recorder.seen == {"attack": {torch.float32}}
    result = json.loads(out.read_text())
    assert result["n"] == 32
    assert result["precision"]["compute"] == "fp32" and result["precision"]["autocast_dtype"] is None
    assert result["train_config"]["amp"] == "bf16"


def test_amp_values_on_the_cpu():
    """bf16 is opt-in: off and the older auto train in fp32 on the CPU; bf16 autocasts."""
    cpu = torch.device("cpu")
    for amp, bf16 in (("off", False), ("auto", False), ("bf16", True)):
        config = cfg.resolve({**FREE, "amp": amp})
        assert uses_bf16(config, cpu) is bf16
        autocast = setup_runtime(config)[1]
        with autocast():
            assert torch.is_autocast_enabled("cpu") is bf16
        assert stamp(cpu, bf16=bf16)["precision"]["compute"] == ("bf16 autocast" if bf16 else "fp32")
    assert cfg.resolve(FREE)["amp"] == "off"


def test_free_delta_stays_fp32_in_a_bf16_run(tmp_path, monkeypatch):
    """Through the engine: every step of a bf16 Free run leaves delta float32, on the fp32 lattice
    of eps-steps (free_step = eps: {-eps, 0, eps} in fp32, not bf16's rounding of eps)."""
    original, dtypes, values = Free.step, set(), set()

    def recording_step(self, model, *args, **kwargs):
        assert torch.is_autocast_enabled("cpu") is False     # autocast is the method's, around the forward
        loss = original(self, model, *args, **kwargs)
        dtypes.add(self.delta.dtype)
        values.update(self.delta.unique().tolist())
        return loss

    monkeypatch.setattr(Free, "step", recording_step)
    result = train(tmp_path / "run", {**FREE, "amp": "bf16"})
    assert result["precision"]["compute"] == "bf16 autocast"
    eps = float(torch.tensor(to_unit(result["config"]["eps"]), dtype=torch.float32))
    assert dtypes == {torch.float32}
    assert {-eps, eps} <= values <= {-eps, 0.0, eps}
    assert eps != float(torch.tensor(eps).bfloat16())


def _model_and_batch(config, channels_last=True, weights_from=None, n=64):
    torch.manual_seed(0)
    data = data_for(config)
    model = model_for(config, data)
    if weights_from is not None:
        model.load_state_dict(load_tensors(weights_from / "model.pt"))
    model = place_model(model, "cpu", channels_last).train()
    x, y = next(iter(data.train_batches(n, epoch=0, seed=0, device="cpu")))
    return model, place_batch(x, channels_last), y


def test_free_delta_steps_and_clips_in_fp32_under_bf16():
    """Steps of 3/255 inside eps 8/255: delta's values are the fp32 lattice {0, +-3, +-6, +-8,
    +-5, +-2, ...}/255 built by the same fp32 add-and-clamp, each step moves every pixel by the
    sign of the input gradient (taken of the same autocast forward) and clips in fp32."""
    config = cfg.resolve({**FREE, "amp": "bf16", "free_step": 3.0, "eps": 8.0, "replay": 8})
    device, autocast, channels_last = setup_runtime(config)
    assert autocast is not None and autocast().fast_dtype == torch.bfloat16
    method = build_method(config, autocast=autocast)
    assert isinstance(method, Free)
    model, x, y = _model_and_batch(config, channels_last)
    optimizer = make_optimizer(model, config)
    eps, step = method.eps, method.step_size

    lattice = torch.zeros(1)
    for _ in range(8):   # every value k fp32 steps (and clips) can reach
        lattice = torch.cat([lattice, lattice.clone().add_(torch.ones(1), alpha=step).clamp_(-eps, eps),
                             lattice.clone().add_(-torch.ones(1), alpha=step).clamp_(-eps, eps)]).unique()
    bf16_lattice = lattice.bfloat16().float()
    assert not torch.equal(lattice, bf16_lattice)   # bf16 rounding would leave the fp32 lattice

    for _ in range(8):
        before = None if method.delta is None else method.delta.clone()
        start = torch.zeros_like(x, dtype=torch.float32) if before is None else before
        # the input gradient of this step, by hand, on a copy of the model as it is now
        leaf = start.clone().requires_grad_(True)
        x_adv = (x.float() + leaf).clamp(0, 1).contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = copy.deepcopy(model)(x_adv)
        F.cross_entropy(logits.float(), y).backward()
        assert leaf.grad.dtype == torch.float32
        expected = (start + step * leaf.grad.sign()).clamp(-eps, eps)

        method.step(model, optimizer, x, y)
        delta = method.delta
        assert delta.dtype == torch.float32
        assert torch.isin(delta, lattice).all()
        assert delta.abs().max() <= torch.tensor(eps, dtype=torch.float32)
        # measured: equal on every pixel of all 8 steps (the same kernels on the same inputs)
        assert torch.equal(delta, expected), f"{int((delta != expected).sum())} pixels differ"
    values = set(delta.unique().tolist())
    assert {float(torch.tensor(eps)), -float(torch.tensor(eps)), 0.0} <= values   # clipped pixels, and back at 0
    assert len(values) > 5


def test_free_step_under_bf16_moves_delta_like_fp32(bf16_run):
    """One Free step from delta = 0, same weights (the bf16 run's) and batch, with and without
    autocast: sign(delta) agrees on the large majority of pixels."""
    config = cfg.resolve({**NATURAL, "method": "free", "replay": 4})
    model, x, y = _model_and_batch(config, weights_from=bf16_run[0])
    deltas = {}
    for name, autocast in (("fp32", None), ("bf16", BF16)):
        copy_ = copy.deepcopy(model)
        method = Free.from_config(config, autocast=autocast)
        method.step(copy_, make_optimizer(copy_, config), x, y)
        assert method.delta.dtype == torch.float32
        deltas[name] = method.delta
    moved = deltas["fp32"] != 0
    same = deltas["fp32"].sign() == deltas["bf16"].sign()
    agree, agree_moved = float(same.float().mean()), float(same[moved].float().mean())
    print(f"sign agreement bf16 vs fp32: {agree:.4f} of all pixels, {agree_moved:.4f} of the "
          f"{float(moved.float().mean()):.4f} that moved in fp32")
    assert float(moved.float().mean()) > 0.8     # measured 0.920: a real step, not a dead gradient
    assert agree >= 0.9                          # measured 0.9857 (1 thread; 0.9826 with 2)
    assert agree_moved >= 0.9                    # measured 0.9845


# --- torch.compile -------------------------------------------------------------------------------
def _cpp_compiler():
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        return get_cpp_compiler()
    except Exception:
        return shutil.which("g++") or shutil.which("c++") or shutil.which("cc")


needs_compiler = pytest.mark.skipif(not _cpp_compiler(), reason="torch.compile's inductor CPU backend needs a C++ "
                                                                 "compiler (g++/c++/cc); none found")


@contextmanager
def strictly_compiled():
    """Training inside runs the torch.compile'd model: the engine did wrap it, dynamo neither fell
    back to eager at the recompile limit nor broke a graph (so every forward ran inductor code)."""
    counters = torch._dynamo.utils.counters
    breaks = sum(counters["graph_break"].values())
    wrapped = []
    compile_ = torch.compile

    def recording_compile(model, *args, **kwargs):
        wrapped.append(model)
        return compile_(model, *args, **kwargs)

    # dynamo's config attributes are computed: patched through its own context manager
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "compile", recording_compile)
        yield
    assert wrapped, "compile: true did not torch.compile the model"
    assert counters["stats"]["unique_graphs"] >= 1
    assert sum(counters["graph_break"].values()) == breaks, f"graph breaks: {dict(counters['graph_break'])}"


def _compare(a, b, **tolerance):
    """assert_close on every tensor of two state dicts; returns the largest absolute difference."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **tolerance, msg=lambda m, key=key: f"{key}: {m}")
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def eager_free(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fast") / "free-eager"
    train(run_dir, FREE)
    return run_dir


@pytest.fixture(scope="module")
def compiled_free(tmp_path_factory):
    if not _cpp_compiler():
        pytest.skip("no C++ compiler for inductor")
    run_dir = tmp_path_factory.mktemp("fast") / "free-compiled"
    with strictly_compiled():
        train(run_dir, {**FREE, "compile": True})
    return run_dir


# Tolerances. Inductor's fused kernels sum in another order than eager (input gradients agree to
# ~3e-6 relative), which is harmless until a first-layer ReLU input lies that close to 0: it flips,
# and the input gradient of its 3x3 patch (~30 pixels) changes by its full size, so ~30 signs of
# delta or x_adv flip and the weights move ~1e-4 apart, a gap later iterations then grow. Training
# moves the weights by ~0.05 (max abs) in these runs: a broken compile (a skipped or doubled
# update, parameters frozen by the attack's requires_grad toggling, BN statistics moved by the
# attack) lands far outside either tolerance.
#   Free m=2, 4 iterations: measured max abs difference 1.3e-6 (no flip; 1 thread and 2) ->
#   atol 1e-3, room for a flip or two on another CPU (at 8 iterations: 4e-5 with 1 thread).
#   K-PGD K=2, 2 iterations: measured 6.9e-4 with 1 thread (32 x_adv pixels flip in the first
#   attack), 5e-7 with 2 threads (no flip) -> atol 3e-3 (4x), still 16x under the 0.048 moved.
#   (4 iterations: 1.6e-3 with 1 thread.)
FREE_COMPILE_TOL = {"rtol": 1e-3, "atol": 1e-3}
PGD_COMPILE_TOL = {"rtol": 1e-3, "atol": 3e-3}


@pytest.mark.slow
@needs_compiler
def test_compiled_free_matches_eager(eager_free, compiled_free):
    worst = _compare(weights(compiled_free), weights(eager_free), **FREE_COMPILE_TOL)
    print("free compiled vs eager: max abs weight difference", worst)


@pytest.mark.slow
@needs_compiler
def test_compiled_pgd_matches_eager(tmp_path):
    train(tmp_path / "eager", KPGD)
    with strictly_compiled():
        train(tmp_path / "compiled", {**KPGD, "compile": True})
    worst = _compare(weights(tmp_path / "compiled"), weights(tmp_path / "eager"), **PGD_COMPILE_TOL)
    print("pgd compiled vs eager: max abs weight difference", worst)


@needs_compiler
def test_compiled_free_resumes_to_the_uninterrupted_weights(compiled_free, tmp_path, monkeypatch):
    original = Free.step
    calls = {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:        # after the checkpoint at 2, before the end at 4, mid-replay (m=2)
            raise Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Free, "step", dying_step)
    with pytest.raises(Interrupt), strictly_compiled():
        train(tmp_path / "resumed", {**FREE, "compile": True})
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.setattr(Free, "step", original)
    with strictly_compiled():
        result = train(tmp_path / "resumed", {**FREE, "compile": True})
    assert result["resumes"] == 1
    # measured: bitwise equal (the same compiled kernels on the same state), as eager resumes are
    worst = _compare(weights(tmp_path / "resumed"), weights(compiled_free), rtol=0, atol=0)
    print("compiled resume vs uninterrupted: max abs weight difference", worst)


# --- channels_last -------------------------------------------------------------------------------
# Layout changes only the order of fp32 sums inside oneDNN's convolutions, with the same caveat:
# a ReLU input that close to 0 flips, and BN spreads the flip over the layer's gradient.
#   Free m=2, 4 iterations (width 4): measured max abs weight difference 1.2e-6 (1 thread; 8
#   iterations with 2 threads: 1.7e-5) -> atol 1e-3, 50x under the 0.054 training moved them.
#   Natural, 60 iterations (width 8): one ReLU flip in the first backward (measured, 2 threads)
#   already gives 1e-5 in the weights and SGD grows it to ~1e-2 by iteration 60, so those runs are
#   compared by what they compute: the loss curve, the robust checks during training and
#   `freeadv attack`, all measured equal (loss to 2e-3).
CL_FREE_TOL = {"rtol": 1e-3, "atol": 1e-3}


def test_channels_last_on_and_off_train_free_alike(eager_free, tmp_path):
    assert cfg.resolve(FREE)["channels_last"] == "auto"       # eager_free trained channels_last
    train(tmp_path / "contiguous", {**FREE, "channels_last": False})
    worst = _compare(weights(tmp_path / "contiguous"), weights(eager_free), **CL_FREE_TOL)
    print("free channels_last on vs off: max abs weight difference", worst)


def test_channels_last_on_and_off_train_and_attack_alike(fp32_run, tmp_path):
    """Natural training with channels_last auto (= on) and false: the same losses, the same robust
    checks during training (each run in its model's layout) and the same `freeadv attack`."""
    on_dir, on_result = fp32_run
    assert on_result["config"]["channels_last"] == "auto"
    off_dir = tmp_path / "contiguous"
    off_result = train(off_dir, {**NATURAL, "amp": "off", "channels_last": False})

    losses = {name: [entry["loss"] for entry in result["loss_history"]]
              for name, result in (("on", on_result), ("off", off_result))}
    gap = max(abs(a - b) for a, b in zip(losses["on"], losses["off"]))
    print("loss gap channels_last on vs off", gap)
    assert gap < 0.01                                             # measured 1.8e-3
    checks = {name: [(c["heldout_clean_acc"], c["heldout_robust_acc"]) for c in result["robust_checks"]]
              for name, result in (("on", on_result), ("off", off_result))}
    print("robust checks", checks)
    assert len(checks["on"]) == len(checks["off"]) == 2
    for (clean_on, robust_on), (clean_off, robust_off) in zip(checks["on"], checks["off"]):  # measured: equal
        assert abs(clean_on - clean_off) <= 100 / 16 + 1e-9     # at most one of the 16 images
        assert abs(robust_on - robust_off) <= 100 / 16 + 1e-9

    evals = {}
    for name, run_dir in (("on", on_dir), ("off", off_dir)):
        out = tmp_path / f"eval-{name}.json"
        assert main(["attack", "--run", str(run_dir), "--steps", "5", "--eps", str(ATTACK_EPS), "--step-size",
                     str(ATTACK_EPS / 4), "--n", "64", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
        evals[name] = json.loads(out.read_text())
    correct = {name: (e["clean_correct"], e["robust_correct"]) for name, e in evals.items()}
    print("attack (clean, robust) correct of 64", correct)
    assert correct["on"][1] > 0                     # the attack leaves something to compare
    assert abs(correct["on"][0] - correct["off"][0]) <= 1    # measured: equal
    assert abs(correct["on"][1] - correct["off"][1]) <= 1


def test_the_same_weights_attacked_in_either_layout_give_the_same_examples(fp32_run):
    model, config = load_trained_model(fp32_run[0])
    data = data_for({**config, "augment": False})
    x, y = next(data.test_batches(64, device="cpu"))
    adversarial, checked = {}, {}
    for layout in (False, True):
        placed = place_model(copy.deepcopy(model), "cpu", layout)
        with eval_mode(placed):
            adversarial[layout] = pgd(placed, place_batch(x, layout), y, eps=to_unit(ATTACK_EPS),
                                      step_size=to_unit(ATTACK_EPS / 4), steps=5,
                                      generator=torch.Generator().manual_seed(0))
        checked[layout] = robust.measure(placed, [(place_batch(x, layout), y)], eps=to_unit(ATTACK_EPS),
                                         step_size=to_unit(ATTACK_EPS / 4), steps=5,
                                         generator=torch.Generator().manual_seed(0))
    assert adversarial[True].is_contiguous(memory_format=torch.channels_last)
    same = float((adversarial[True] == adversarial[False]).float().mean())
    print(f"pgd x_adv identical on {same:.5f} of pixels across layouts; checks {checked}")
    assert same > 0.99                               # measured 1.0
    assert checked[True][2] == checked[False][2] == 64
    for on, off in zip(checked[True][:2], checked[False][:2]):     # measured: equal
        assert abs(on - off) <= 100 / 64 + 1e-9
