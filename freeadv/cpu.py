"""Process-wide CPU settings that make training and attack steps faster without changing results.

Two costs were measured on the 2-core EPYC these numbers come from (docs/performance.md):

* Denormal floats: gradients of small-loss batches underflow into denormals, which x86 handles
  in microcode. Flushing them to zero removed most of the gap between a Free and a natural step.
* Page faults: glibc hands the multi-megabyte activation buffers of every step back to the
  kernel (``mmap``/``munmap``, heap trimming), so the next step faults them in again, 4 KiB at a
  time: ~2,000-90,000 minor faults per step. Keeping freed memory in the heap for reuse cut
  them to none in a typical step (a step now and then still faults while the heap grows) and
  made a natural step 5-20% faster (small CNN, preact_resnet18). The
  price is that the process keeps its peak memory instead of returning it to the system.

Both are idempotent; ``tune`` is called by every command that runs a model on the CPU; attack
and analysis commands keep denormals (see ``tune``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

import torch

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_state = {"flush_denormal": False, "heap": "default"}

DISABLE_ENV = "FREEADV_KEEP_SYSTEM_MALLOC"


def retain_heap_memory() -> bool:
    """Serve every allocation from the heap and never trim it (glibc only). Returns whether it
    took effect; set FREEADV_KEEP_SYSTEM_MALLOC=1 to leave the allocator alone."""
    if _state["heap"] == "retained":
        return True
    if os.environ.get(DISABLE_ENV) or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
    except (OSError, AttributeError):
        return False
    if done:
        _state["heap"] = "retained"
    return done


def tune(device: torch.device, *, flush_denormal: bool = True) -> None:
    """Apply the CPU settings when ``device`` is the CPU (on a GPU the host allocator is not hot).

    Evaluation passes ``flush_denormal=False``: a sign-gradient attack can still climb on a
    gradient of 1e-40 (a very confident example), and flushing it to zero would stall the attack
    there, a gradient masking the library itself would cause."""
    if device.type != "cpu":
        return
    if flush_denormal:
        _state["flush_denormal"] = bool(torch.set_flush_denormal(True))
    retain_heap_memory()


def settings() -> dict[str, object]:
    """What ``tune`` set in this process, for the provenance stamp of timed results."""
    return dict(_state)


BF16_FLAGS = ("avx512_bf16", "amx_bf16")   # /proc/cpuinfo flags of x86 CPUs with native bf16 arithmetic


def has_bf16_instructions() -> bool:
    """Whether this CPU computes in bf16 natively (Linux x86: its /proc/cpuinfo flags). Without them
    oneDNN emulates bf16, which made WRN-32 width 1's natural step 13x slower than fp32 on an
    AVX2-only EPYC (5,273 against 409 ms at batch 128, measured), so CPU experiments choose fp32."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_FLAGS)
