"""No change moves a number unnoticed: tiny natural, natural-replay, Free, K-PGD and FGSM-RS runs
end with the weights recorded in tests/data/reference_weights.json (``record`` writes it).

The runs train in float64 (torch's default dtype set to float64: images, weights, losses and
Free's perturbation all follow it; freeadv.precision). In float32 the same code gives weights
that differ by ~1e-6 relative from one CPU to another (an AMD EPYC against an Intel Xeon with the
same torch), because ATen and oneDNN pick other SIMD kernels, and so other summation orders, for
each instruction set; a sign method then flips the perturbation's near-zero signs. In float64 the
rounding is 2^29 times finer. Measured on a 2-core AMD EPYC (AVX2, no AVX-512): ATen's ``default``
and ``avx2`` kernels (``ATEN_CPU_CAPABILITY``) give fingerprints within 1.2e-14 relative of each
other, and capping oneDNN at ``SSE41`` or ``AVX2`` (``ONEDNN_MAX_CPU_ISA``) changes nothing. The
tolerance, 1e-9, sits five orders of magnitude above that spread and far below what one changed
update does: Free with a step of 7/255 instead of 8/255 moves the fingerprints by up to 12%
(median 2.5%). The tests below check that the comparison catches that and one skipped replay.

A fingerprint per tensor (float64 sum and sum of squares) is compared, not the bytes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from freeadv import config as cfg
from freeadv import methods
from freeadv.checkpoints import load_tensors
from freeadv.training import Trainer

REFERENCE = Path(__file__).with_name("data") / "reference_weights.json"
TOLERANCE = 1e-9   # relative and absolute; see the module docstring for the measured spread
BASE = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 64,
        "batch_size": 64, "iterations": 24, "log_every": 8, "checkpoint_every": 8, "eval_n": 64,
        "device": "cpu", "seed": 3}
RUNS = {
    "natural": {"method": "natural"},
    "natural_m4": {"method": "natural", "replay": 4},
    "free_m4": {"method": "free", "replay": 4, "eps": 8},
    "pgd3": {"method": "pgd", "pgd_steps": 3, "pgd_step_size": 2, "eps": 8},
    "pgd3_bn_frozen": {"method": "pgd", "pgd_steps": 3, "pgd_step_size": 2, "eps": 8, "attack_bn": "frozen"},
    "fgsm_rs": {"method": "fgsm_rs", "eps": 8},
}


def fingerprint(run_dir: Path) -> dict:
    state = load_tensors(run_dir / "model.pt")
    return {name: [float(t.double().sum()), float(t.double().square().sum())]
            for name, t in sorted(state.items()) if t.is_floating_point()}


def train(run_dir: Path, overrides: dict) -> dict:
    """One tiny run in float64 on one thread (one reduction order); the fingerprint of its weights."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        Trainer(cfg.resolve({**BASE, **overrides}), run_dir, progress=False).run()
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
    return fingerprint(run_dir)


def mismatches(got: dict, want: dict, tolerance: float = TOLERANCE) -> list[str]:
    """The tensors whose fingerprint differs from the reference by more than ``tolerance``."""
    if sorted(got) != sorted(want):
        return [f"tensor names differ: {sorted(set(got) ^ set(want))}"]
    return [f"{name}: {got[name]} vs {want[name]}" for name in sorted(want)
            if got[name] != pytest.approx(want[name], rel=tolerance, abs=tolerance)]


def reference(name: str) -> dict:
    return json.loads(REFERENCE.read_text())[name]


SLOW_RUNS = ("fgsm_rs", "pgd3", "pgd3_bn_frozen")   # 7-15 s each in float64; the others 3-6 s


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_RUNS else name
                                  for name in sorted(RUNS)])
def test_weights_equal_the_recorded_reference(tmp_path, name):
    assert not mismatches(train(tmp_path / name, RUNS[name]), reference(name))


def test_a_different_step_size_is_caught(tmp_path):
    got = train(tmp_path / "free", {**RUNS["free_m4"], "free_step": 7})
    assert mismatches(got, reference("free_m4"), tolerance=1e-4)


def test_one_skipped_replay_is_caught(tmp_path, monkeypatch):
    original, calls = methods.Free.step, {"n": 0}

    def step_skipping_the_tenth(self, model, optimizer, x, y, generator=None):
        calls["n"] += 1
        if calls["n"] == 10:   # the second replay of the third batch does nothing
            return torch.zeros((), dtype=x.dtype)
        return original(self, model, optimizer, x, y, generator)

    monkeypatch.setattr(methods.Free, "step", step_skipping_the_tenth)
    got = train(tmp_path / "free", RUNS["free_m4"])
    assert calls["n"] == 24
    assert mismatches(got, reference("free_m4"), tolerance=1e-4)


@pytest.mark.slow
def test_the_reference_holds_under_other_cpu_kernels(tmp_path):
    """AVX2 kernels in ATen and oneDNN (every x86-64 CPU this suite runs on has them), whatever
    the CPU would pick by itself; the environment variables are read when torch loads, hence the
    subprocess."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, __file__, "check", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(RUNS)} runs match" in done.stdout


def record(folder: Path) -> None:
    """Write the reference, deliberately, after a change that is meant to move the numbers."""
    REFERENCE.write_text(json.dumps({name: train(folder / name, o) for name, o in RUNS.items()},
                                    indent=1, sort_keys=True) + "\n")


def check(folder: Path) -> int:
    """Train every run, print what differs from the reference; 0 when nothing does."""
    bad = [f"{name}: {line}" for name, overrides in RUNS.items()
           for line in mismatches(train(folder / name, overrides), reference(name))]
    print("\n".join(bad) if bad else f"{len(RUNS)} runs match the reference")
    return 1 if bad else 0


if __name__ == "__main__":   # python tests/test_reference_weights.py record|check FOLDER
    action, where = sys.argv[1], Path(sys.argv[2])
    sys.exit(record(where) if action == "record" else check(where))
