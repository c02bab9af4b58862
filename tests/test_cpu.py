"""freeadv.cpu: the heap setting must actually stop the per-step page faults it exists for."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

FAULTS_PER_STEP = """
import json, resource, sys, torch
from freeadv import config as cfg, cpu
from freeadv.methods import build_method
from freeadv.training import make_optimizer, model_for
if sys.argv[1] == "tuned":
    cpu.tune(torch.device("cpu"))
config = cfg.resolve({"dataset": "synthetic", "arch": "small_cnn", "width": 16, "batch_size": 128,
                      "iterations": 1, "device": "cpu"})
torch.manual_seed(0)
model = model_for(config).train()
optimizer, method = make_optimizer(model, config), build_method(config)
x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 10, (128,))
for _ in range(3):
    method.step(model, optimizer, x, y)
per_step = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    method.step(model, optimizer, x, y)
    per_step.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"faults": sorted(per_step)[len(per_step) // 2], "per_step": per_step,
                  "settings": cpu.settings()}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout)


@pytest.mark.slow
@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_retained_heap_stops_per_step_page_faults():
    default, tuned = _run("default"), _run("tuned")
    assert default["settings"]["heap"] == "default" and tuned["settings"] == {"flush_denormal": True,
                                                                              "heap": "retained"}
    # A natural small-CNN step (8 MiB activations) faults in fresh pages thousands of times when
    # glibc hands its freed buffers back to the kernel; with the heap retained almost never. The
    # median step: a retained heap still grows now and then (one step with ~1,000-4,000 faults
    # in a dozen), which is a one-off cost, not a per-step one. Whether the default heap faults
    # depends on the machine (glibc's dynamic mmap threshold, its tunables, the allocator in use):
    # one CI machine saw a median of 0 with the default heap. What freeadv owns is the tuned side,
    # so that is asserted everywhere, and the cut wherever the default heap shows the problem.
    assert tuned["faults"] < 100, tuned
    if default["faults"] > 1000:
        assert tuned["faults"] < default["faults"] / 10, (default, tuned)


def test_tune_leaves_a_gpu_process_alone():
    import torch

    from freeadv import cpu
    before = cpu.settings()
    cpu.tune(torch.device("cuda"))      # never touches CUDA: only checks the device type
    assert cpu.settings() == before


DENORMAL_SURVIVES = """
import sys, torch
from freeadv import cpu
cpu.tune(torch.device("cpu"), flush_denormal=sys.argv[1] == "train")
print(float(torch.tensor([1e-40]) * 1.0) != 0.0)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode,survives", [("train", False), ("attack", True)])
def test_attacks_keep_denormal_gradients(mode, survives):
    """Training flushes denormals for speed; evaluation must not, or a sign-gradient attack would
    stall on the tiny gradients of very confident examples."""
    out = subprocess.run([sys.executable, "-c", DENORMAL_SURVIVES, mode], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(survives)
