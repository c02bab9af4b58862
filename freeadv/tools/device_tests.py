"""Device acceptance tests (marker ``gpu``): the library's training and attack code on the device
that will make the paper-scale numbers, against CPU fp32 references. Tiny: small_cnn, synthetic data.

Why a module of the package and not a file of the repository's tests/: ``freeadv gpucheck`` runs
these tests on the machine it checks, and that machine may hold only the installed package (a
wheel, a ``pip install`` without the repository). Shipped here, the tests are found by module name,
``python -m pytest --pyargs freeadv.tools.device_tests`` (freeadv.tools.gpucheck_pytest), from any
working directory; tests/test_gpu.py imports them, so the repository's own test run collects them
too. They stay pytest tests (fixtures, ``tmp_path``, ``monkeypatch``, JUnit XML for the report)
rather than a runner of their own. Only pytest imports this module, so the library itself does not
need pytest; pytest comes with the test extra (``pip install 'freeadv[test]'``), and gpucheck
says so in one line where it is missing.

The device is ``$FREEADV_TEST_DEVICE`` (default ``cuda``); without CUDA every test here is skipped
with that reason, so the plain ``python3 -m pytest -q`` on a CPU-only machine skips them.
``freeadv gpucheck`` runs them with the device it checks; ``--device cpu`` sets ``cpu``, so the
same code runs on a CPU (a CPU "device" is then compared with a CPU reference: the checks still
run, with CPU tolerances). ``$FREEADV_TEST_QUICK=1`` (gpucheck ``--quick``) skips the
torch.compile test on a CPU, where compiling alone costs about a minute.

What each test guards:

- a Free-m step on the device in strict fp32 computes what fp32 on the CPU computes (weights,
  perturbation): the device's kernels and channels_last do not change Algorithm 1;
- TF32 convolutions (the CUDA default) flip only a few of the perturbation's signs, and keep the loss;
- a run interrupted mid-replay and resumed on the device ends where an uninterrupted one does;
- PGD with a seeded generator is reproducible on the device (evaluations can be rerun);
- bf16 autocast, the faster option, agrees with fp32 on a Free step (loss, delta signs);
- fp16 autocast with its GradScaler (``amp: fp16``) agrees with fp32 the same way, and a run trains;
- a torch.compile'd Free step equals the eager one (``compile: true``);
- a process group starts with the device's backend (NCCL on CUDA, gloo on CPU) and DDP runs a step.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import pytest
import torch
import torch.distributed as dist

from .. import config as cfg
from .. import methods
from ..attacks import AttackSpec
from ..runs.evaluation import worst_case
from ..checkpoints import load_tensors
from ..data import load_data
from ..methods import build_method
from ..training import Trainer, make_optimizer, model_for, place_batch, place_model, setup_runtime
from ..training.runtime import fp16_available

pytestmark = pytest.mark.gpu

DEVICE = os.environ.get("FREEADV_TEST_DEVICE", "cuda")
QUICK = os.environ.get("FREEADV_TEST_QUICK") == "1"
CPU = torch.device("cpu")

TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 32, "batch_size": 32,
        "iterations": 16, "method": "free", "replay": 2, "eval_n": None, "robust_eval_n": 0, "log_every": 4,
        "checkpoint_every": 6}

# Tolerances of a device against the CPU fp32 reference, TF32 off (strict fp32): measured on one
# H200 (2026-11-27) the weights after two Free steps differ by 6e-8 and the perturbation is identical;
# a bug in the step (sign, clip, buffer) moves a weight by lr * grad ~ 1e-3.
STRICT_WEIGHT_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
# Two runs on one device with the same kernels (compiled vs eager, resumed vs not).
WEIGHT_TOLERANCE = {"rtol": 2e-3, "atol": 2e-4}
# TF32 convolutions (PyTorch's default on CUDA, as training runs) round inputs to 10 bits of mantissa:
# on that H200, with channels_last, 6% of the perturbation's signs flipped (where the input gradient
# is ~0), so the first convolution's weights moved by 1e-3 after two steps; the loss agreed to 2e-5.
TF32_SIGN_AGREEMENT = 0.90
TF32_LOSS_RTOL = 1e-3
DELTA_AGREEMENT = 0.98
# bf16 keeps 8 bits of mantissa: the input gradient's sign agrees with fp32's on most elements
# (measured on CPU, small_cnn width 8: 0.955); the loss to ~1e-3 (measured: 2e-4).
BF16_SIGN_AGREEMENT = 0.90
BF16_LOSS_RTOL = 0.01


@pytest.fixture(scope="module", params=[DEVICE])
def device(request) -> torch.device:
    name = request.param
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"CUDA is not available (FREEADV_TEST_DEVICE={name}); `freeadv gpucheck --device cpu --quick` "
                    "or FREEADV_TEST_DEVICE=cpu runs these tests on the CPU")
    return torch.device(name)


def tiny_config(**overrides) -> dict:
    return cfg.resolve({**TINY, **overrides})


def tiny_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch of the synthetic set (on the CPU, augmented as training does)."""
    data = load_data("synthetic", ".", n_train=n, n_test=0)
    return next(iter(data.train_batches(n, epoch=0, seed=0, device="cpu")))


def free_steps(config: dict, dev: torch.device, channels_last: bool, *, replays: int, autocast=None,
               compile: bool = False, scaler=None) -> dict:
    """``replays`` Free steps on one minibatch from the seed-0 initial weights: what the engine runs."""
    x, y = tiny_batch(config["batch_size"])
    torch.manual_seed(0)
    model = place_model(model_for(config), dev, channels_last).train()
    optimizer = make_optimizer(model, config)
    method = build_method(config, autocast=autocast)
    method.scaler = scaler
    step_model = torch.compile(model) if compile else model
    xb, yb = place_batch(x.to(dev), channels_last), y.to(dev)
    losses = [float(method.step(step_model, optimizer, xb, yb)) for _ in range(replays)]
    return {"weights": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "delta": method.delta.detach().cpu(), "losses": losses}


def assert_weights_close(got: dict, want: dict, **tolerance) -> None:
    assert got.keys() == want.keys()
    for key in want:
        if want[key].is_floating_point():
            torch.testing.assert_close(got[key], want[key], msg=lambda m, key=key: f"{key}: {m}", **tolerance)
        else:
            assert torch.equal(got[key], want[key]), key


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().le(1e-6).float().mean())


@contextmanager
def backend_flags(*settings: tuple[object, str, object]) -> Iterator[None]:
    """Set torch backend flags by assignment and put the old values back. Several are computed
    attributes (``torch.backends.cuda.matmul.allow_tf32`` is a property), which
    ``MonkeyPatch.setattr`` cannot restore."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in settings]
    try:
        for owner, name, value in settings:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def strict_fp32():
    """TF32 off for convolutions and matrix products, for the ``with`` block."""
    return backend_flags((torch.backends.cudnn, "allow_tf32", False),
                         (torch.backends.cuda.matmul, "allow_tf32", False))


def test_free_step_on_the_device_matches_cpu_fp32(device):
    """In strict fp32 the device computes Algorithm 1 as the CPU does, to rounding."""
    config = tiny_config(device=str(device))
    with strict_fp32():
        reference = free_steps(config, CPU, channels_last=False, replays=2)
        on_device = free_steps(config, device, channels_last=True, replays=2)
    assert_weights_close(on_device["weights"], reference["weights"], **STRICT_WEIGHT_TOLERANCE)
    share = agreement(on_device["delta"], reference["delta"])
    assert share >= DELTA_AGREEMENT, f"perturbation agrees with the CPU's on {share:.4f} of its elements"
    assert on_device["losses"] == pytest.approx(reference["losses"], rel=1e-5)


def test_tf32_free_step_agrees_with_strict_fp32(device):
    """PyTorch's default (TF32 convolutions on CUDA; on a CPU the same as strict) flips only the
    perturbation's near-zero-gradient signs and leaves the loss where strict fp32 has it."""
    config = tiny_config(device=str(device))
    default = free_steps(config, device, channels_last=True, replays=2)
    with strict_fp32():
        strict = free_steps(config, device, channels_last=True, replays=2)
    share = agreement(default["delta"], strict["delta"])
    assert share >= TF32_SIGN_AGREEMENT, f"TF32 perturbation agrees with fp32's on {share:.4f} of its elements"
    assert default["losses"] == pytest.approx(strict["losses"], rel=TF32_LOSS_RTOL)


class Interrupt(Exception):
    pass


def test_resume_on_the_device_equals_an_uninterrupted_run(device, tmp_path, monkeypatch):
    # same algorithms in both runs, and deterministic ones (a no-op on the CPU)
    with backend_flags((torch.backends.cudnn, "deterministic", True)):
        config = tiny_config(device=str(device))
        Trainer(config, tmp_path / "straight", progress=False).run()
        original = methods.Free.step
        calls = {"n": 0}

        def dying_step(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 10:    # after the checkpoint at 6, mid-replay (m=2)
                raise Interrupt
            return original(self, *args, **kwargs)

        monkeypatch.setattr(methods.Free, "step", dying_step)
        with pytest.raises(Interrupt):
            Trainer(config, tmp_path / "resumed", progress=False).run()
        monkeypatch.setattr(methods.Free, "step", original)
        result = Trainer(config, tmp_path / "resumed", progress=False).run()
        assert result["resumes"] == 1 and result["iterations"] == config["iterations"]
        straight = load_tensors(tmp_path / "straight" / "model.pt")
        resumed = load_tensors(tmp_path / "resumed" / "model.pt")
        if device.type == "cpu":
            assert all(torch.equal(straight[k], resumed[k]) for k in straight)
        else:   # bitwise where cuDNN is deterministic; a resume bug moves weights by far more than this
            assert_weights_close(resumed, straight, rtol=1e-4, atol=1e-5)


def test_seeded_pgd_is_reproducible_on_the_device(device):
    # as `freeadv attack` runs: cuDNN's default algorithm choice (a no-op on the CPU)
    with backend_flags((torch.backends.cudnn, "benchmark", False)):
        config = tiny_config(device=str(device))
        x, y = tiny_batch()
        torch.manual_seed(0)
        model = place_model(model_for(config), device, True).eval()
        x, y = place_batch(x.to(device), True), y.to(device)
        spec = AttackSpec("pgd", 5, 8.0, 2.0, 2)   # PGD-5, eps 8, step 2, 2 restarts

        def attack():
            return worst_case(model, x, y, spec, torch.Generator(device=device).manual_seed(0))

        (first, robust_first), (second, robust_second) = attack(), attack()
        assert torch.equal(first, second), f"x_adv differs on {(first != second).float().mean():.2e} of its elements"
        assert torch.equal(robust_first, robust_second)
        assert (first - x).abs().max() > 0     # it did perturb


def test_the_evaluations_device_settings_give_the_reference_flags(device):
    """PGD in the evaluation's own settings (freeadv.runs.eval_device: cuDNN autotuner off, the
    training layout on CUDA) flags the same images as NCHW with the autotuner as training left
    it; ``auto`` picks a batch that fits, and one attack step at that batch runs."""
    from ..runs.eval_device import CUDA_BATCH_CAP, eval_channels_last, evaluation_settings, resolve_batch_size
    from ..runs.evaluation import evaluate
    config = tiny_config(device=str(device))
    x, y = tiny_batch()
    torch.manual_seed(0)
    model = place_model(model_for(config), device, False).eval()
    x, y = x.to(device), y.to(device)
    spec = AttackSpec("pgd", 5, 8.0, 2.0, 1)
    reference = evaluate(model, [(x, y)], spec, seed=0)
    channels_last = eval_channels_last("auto", device)
    with evaluation_settings(model, device, channels_last):
        own = evaluate(model, [(place_batch(x, channels_last), y)], spec, seed=0)
    assert own["per_image"]["clean"] == reference["per_image"]["clean"]
    assert abs(own["robust_correct"] - reference["robust_correct"]) <= 1   # TF32 and layout rounding
    chosen = resolve_batch_size("auto", model, x[:1], device)
    assert 1 <= chosen <= max(CUDA_BATCH_CAP, 500)
    big = x[:1].expand(min(chosen, 256), *x.shape[1:]).clone().requires_grad_(True)
    torch.autograd.grad(model(big).sum(), big)


def test_bf16_free_step_agrees_with_fp32(device):
    config = tiny_config(device=str(device))
    _, bf16_autocast, _ = setup_runtime({**config, "amp": "bf16"})
    fp32 = free_steps(config, device, channels_last=True, replays=1)
    bf16 = free_steps(config, device, channels_last=True, replays=1, autocast=bf16_autocast)
    moved = fp32["delta"] != 0
    share = float((bf16["delta"].sign() == fp32["delta"].sign())[moved].float().mean())
    assert share >= BF16_SIGN_AGREEMENT, f"bf16 delta signs agree with fp32's on {share:.3f} of the elements"
    assert bf16["losses"][0] == pytest.approx(fp32["losses"][0], rel=BF16_LOSS_RTOL)


def test_fp16_free_step_agrees_with_fp32_and_an_fp16_run_trains(device, tmp_path):
    if not fp16_available(device):
        pytest.skip(f"torch {torch.__version__} has no fp16 autocast on {device.type}")
    config = tiny_config(device=str(device))
    _, fp16_autocast, _ = setup_runtime({**config, "amp": "fp16"})
    fp32 = free_steps(config, device, channels_last=True, replays=1)
    # a first scale that cannot overflow here, so the one step is taken (skipping is tested on the CPU)
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0 ** 10)
    fp16 = free_steps(config, device, channels_last=True, replays=1, autocast=fp16_autocast, scaler=scaler)
    moved = fp32["delta"] != 0
    share = float((fp16["delta"].sign() == fp32["delta"].sign())[moved].float().mean())
    assert share >= BF16_SIGN_AGREEMENT, f"fp16 delta signs agree with fp32's on {share:.3f} of the elements"
    assert fp16["losses"][0] == pytest.approx(fp32["losses"][0], rel=BF16_LOSS_RTOL)
    result = Trainer(tiny_config(device=str(device), amp="fp16"), tmp_path / "fp16", progress=False).run()
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in result["loss_history"])


def test_compiled_free_step_equals_eager(device):
    if device.type == "cpu" and QUICK:
        pytest.skip("torch.compile on a CPU costs about a minute; skipped in gpucheck --quick")
    config = tiny_config(device=str(device))
    eager = free_steps(config, device, channels_last=True, replays=2)
    compiled = free_steps(config, device, channels_last=True, replays=2, compile=True)
    assert_weights_close(compiled["weights"], eager["weights"], **WEIGHT_TOLERANCE)
    share = agreement(compiled["delta"], eager["delta"])
    assert share >= DELTA_AGREEMENT, f"compiled perturbation agrees with eager on {share:.4f} of its elements"
    assert compiled["losses"] == pytest.approx(eager["losses"], rel=1e-3)


def test_one_process_group_runs_an_all_reduce_and_a_ddp_step(device, tmp_path):
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":   # set_device needs an index: torch.device("cuda") has none
        torch.cuda.set_device(device.index if device.index is not None else torch.cuda.current_device())
    dist.init_process_group(backend, store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        value = torch.arange(4.0, device=device)
        dist.all_reduce(value)
        assert value.tolist() == [0.0, 1.0, 2.0, 3.0]    # a sum over one rank
        config = tiny_config(device=str(device))
        alone = free_steps(config, device, channels_last=True, replays=1)
        x, y = tiny_batch(config["batch_size"])
        torch.manual_seed(0)
        model = place_model(model_for(config), device, True).train()
        optimizer = make_optimizer(model, config)
        device_ids = [torch.cuda.current_device()] if device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        build_method(config).step(ddp, optimizer, place_batch(x.to(device), True), y.to(device))
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        assert_weights_close(weights, alone["weights"], rtol=1e-5, atol=1e-6)   # gradients averaged over 1 rank
    finally:
        dist.destroy_process_group()
