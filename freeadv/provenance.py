"""Where a number came from: git commit, library versions, hardware. Stamped on every result JSON."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import torch

from . import cpu

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def git_commit() -> dict[str, object]:
    """The commit of the freeadv source tree and whether it had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=_PACKAGE_DIR, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", str(_PACKAGE_DIR)))
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    import numpy

    from . import __version__
    # torchvision's version from its metadata: importing it costs 1.2 s (torch._dynamo) per job
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": version("torchvision"), "numpy": numpy.__version__, "freeadv": __version__}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {"type": device.type, "host": socket.gethostname(), "cpu": _cpu_name(),
                               "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
        info["gpu_count"] = torch.cuda.device_count()
    else:
        info["cpu_settings"] = cpu.settings()
    info["name"] = info.get("gpu", info["cpu"])
    return info


AUTOCAST_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def precision(device: torch.device, bf16: bool = False, autocast: torch.dtype | None = None) -> dict[str, object]:
    """The arithmetic a result was computed in: bf16 or fp16 autocast (``bf16``, or ``autocast``:
    its dtype), or fp32; and whether fp32 matrix products and convolutions may use TF32
    (PyTorch's defaults on CUDA: cuDNN convolutions yes, matmuls no; the authors' TF code ran
    plain fp32 on GPUs without TF32)."""
    dtype = torch.bfloat16 if bf16 else autocast
    record: dict[str, object] = {"compute": f"{AUTOCAST_NAMES[dtype]} autocast" if dtype else "fp32",
                                 "autocast_dtype": str(dtype).removeprefix("torch.") if dtype else None,
                                 "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if device.type == "cuda":
        record["cudnn_conv_tf32"] = torch.backends.cudnn.allow_tf32
        record["cuda_matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return record


# The batch system's view of the process, where one launched it: which job and step, how many
# tasks the step started (a multi-GPU training job must be ONE task that torchrun splits into
# ranks; see profiles/slurm), and which GPUs the task was given.
SCHEDULER_ENV = {"slurm_job_id": "SLURM_JOB_ID", "slurm_step_id": "SLURM_STEP_ID",
                 "slurm_step_tasks": "SLURM_STEP_NUM_TASKS", "slurm_job_tasks": "SLURM_NTASKS",
                 "slurm_task": "SLURM_PROCID", "slurm_node": "SLURMD_NODENAME",
                 "slurm_job_name": "SLURM_JOB_NAME",
                 "visible_gpus": "CUDA_VISIBLE_DEVICES"}


def scheduler() -> dict[str, str] | None:
    """The SLURM job, step and task this process runs in, and its visible GPUs; None outside SLURM."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    return {key: os.environ[name] for key, name in SCHEDULER_ENV.items() if name in os.environ}


def stamp(device: torch.device, *, bf16: bool = False, autocast: torch.dtype | None = None) -> dict[str, object]:
    """Everything a result JSON records about how and where it was made (``bf16`` or ``autocast``:
    the result was computed under that autocast; evaluations never are)."""
    return {"git": git_commit(), "versions": library_versions(), "device": device_info(device),
            "precision": precision(device, bf16, autocast), "scheduler": scheduler(), "argv": sys.argv}
