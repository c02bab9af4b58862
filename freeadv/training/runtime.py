"""What a training or timing process runs on: device, mixed precision, memory format, the model
of a config, its data, its optimizer, and the per-step random generator.

``place_model`` / ``place_batch`` are the one way to put a model or a batch on the device in the
memory format the runtime chose (training, bench and estimate must agree, or timings would
measure a different layout than training uses).
"""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from functools import partial
from typing import Any

import torch
from torch import nn

from .. import config as cfg
from .. import cpu
from ..data import MEAN_STD, NUM_CLASSES, DataBundle, load_data
from ..models import build_model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise cfg.ConfigError(f"config key 'device' has bad value '{name}': CUDA is not available here")
    return torch.device(name)


def uses_bf16(config: dict[str, Any], device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: ``amp: bf16``, or the older ``amp: auto`` on CUDA.
    The default, ``off``, is fp32 as the authors trained: bf16 stays an explicit choice until a
    GPU run shows it reproduces the fp32 numbers."""
    return config["amp"] == "bf16" or (config["amp"] == "auto" and device.type == "cuda")


def autocast_dtype(config: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """What training's autocast computes in: bf16 (:func:`uses_bf16`), fp16 (``amp: fp16``, with
    a GradScaler: freeadv.precision.make_scaler), or None (fp32, no autocast)."""
    if uses_bf16(config, device):
        return torch.bfloat16
    if config["amp"] == "fp16":
        if not fp16_available(device):
            raise cfg.ConfigError(f"config key 'amp' has bad value 'fp16': torch {torch.__version__} has no fp16 "
                                  f"autocast with a GradScaler on {device.type}; use bf16 or off")
        return torch.float16
    return None


def fp16_available(device: torch.device) -> bool:
    """Whether this torch runs fp16 autocast and a GradScaler on ``device``'s type (CUDA always;
    the CPU since torch 2.3; older ones warn and fall back to fp32, which would be a silent lie)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            with torch.autocast(device.type, dtype=torch.float16):
                pass
            torch.amp.GradScaler(device.type)
        except (RuntimeError, UserWarning, AttributeError, TypeError):
            return False
    return True


def setup_runtime(config: dict[str, Any]) -> tuple[torch.device, Any, bool]:
    """Device, autocast context factory and channels_last flag for this config."""
    device = resolve_device(str(config["device"]))
    dtype = autocast_dtype(config, device)
    autocast = partial(torch.autocast, device_type=device.type, dtype=dtype) if dtype is not None else nullcontext
    # channels_last is faster for these conv nets on both cuDNN and oneDNN (measured: small_cnn
    # 1.1x, preact_resnet18 1.2x on a 2-core EPYC), so "auto" turns it on everywhere.
    channels_last = config["channels_last"] in (True, "auto")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cpu.tune(device)   # flush denormals, keep freed memory in the heap (why: freeadv.cpu)
    return device, autocast, channels_last


def place_model(model: nn.Module, device: torch.device | str, channels_last: bool) -> nn.Module:
    """The model on ``device``, its 4-d weights in channels_last memory format if asked."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def place_batch(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """An image batch (already on its device) in the memory format the model was placed in."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def model_for(config: dict[str, Any], data: DataBundle | None = None) -> nn.Module:
    """Build the architecture named in a config (classes and normalisation from the dataset)."""
    if data is not None:
        num_classes, (mean, std) = data.num_classes, (data.mean, data.std)
    else:
        num_classes, (mean, std) = NUM_CLASSES[config["dataset"]], MEAN_STD[config["dataset"]]
    return build_model(config["arch"], num_classes, mean=mean, std=std, width=config["width"])


def data_for(config: dict[str, Any]) -> DataBundle:
    """The run's data, with the validation images its checks attack held out of its training images."""
    return load_data(config["dataset"], config["data_root"], n_train=config["n_train"], n_test=config["n_test"],
                     data_seed=config["data_seed"], augment=config["augment"], download=config["download"],
                     num_workers=config["num_workers"], n_validation=cfg.validation_size(config))


def make_optimizer(model: nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum; weight decay on conv/linear weights only, as in Madry et al.'s code
    (their L2 term covers the 'DW' kernels, not BN scales or biases), or on every parameter with
    ``weight_decay_all`` (one group), as Wong et al.'s and the official ImageNet code's
    ``SGD(model.parameters(), weight_decay=...)``."""
    if config["weight_decay_all"]:
        groups = [{"params": list(model.parameters()), "weight_decay": config["weight_decay"]}]
    else:
        groups = [{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": config["weight_decay"]},
                  {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    device = next(model.parameters()).device
    return torch.optim.SGD(groups, lr=config["lr"], momentum=config["momentum"], **sgd_flags(config, device))


def sgd_flags(config: dict[str, Any], device: torch.device) -> dict[str, bool]:
    """SGD's implementation (``sgd_impl``) as its keyword. auto: fused on CUDA (one kernel for
    every parameter; under ``amp: fp16`` it also takes the GradScaler's scale and inf flag
    itself, where the other implementations make ``scaler.step`` read the flag on the host each
    step), foreach elsewhere. On the CPU foreach gives bit for bit the weights of torch's default
    (a loop per parameter) in half the time (measured on a 2-core EPYC: wrn32_k width 1, 95
    tensors, 2.3 -> 1.2 ms a step); fused is faster still (0.44 ms) but rounds differently, so it
    stays an explicit choice there."""
    impl = config["sgd_impl"]
    if impl == "auto":
        impl = "fused" if device.type == "cuda" and fused_sgd_available(device) else "foreach"
    if impl == "fused" and not fused_sgd_available(device):
        raise cfg.ConfigError(f"config key 'sgd_impl' has bad value 'fused': torch {torch.__version__} has no fused "
                              f"SGD on {device.type}; use foreach or auto")
    return {impl: True}


def fused_sgd_available(device: torch.device) -> bool:
    """Whether this torch builds a fused SGD for parameters on ``device``."""
    try:
        torch.optim.SGD([torch.zeros(1, device=device, requires_grad=True)], lr=0.1, fused=True)
    except (RuntimeError, TypeError, ValueError, AssertionError):   # AssertionError: a torch without CUDA
        return False
    return True


def compile_model(model: nn.Module, config: dict[str, Any]) -> nn.Module:
    """``model`` torch.compile'd in the config's ``compile_mode`` when ``compile`` is true (its
    default mode is torch's own: compile(model) as before the key existed), else ``model``."""
    if not config["compile"]:
        return model
    mode = config["compile_mode"]
    return torch.compile(model, mode=None if mode == "default" else mode)


def step_generator(device: torch.device, seed: int, iteration: int, rank: int = 0) -> torch.Generator:
    """Randomness of one training step (attack random starts) as a function of (seed, iteration,
    rank): each data-parallel rank draws its own starts for its own rows."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + iteration + rank * 7_777_777_777) % (2**63))


@torch.no_grad()
def clean_accuracy(model: nn.Module, data: DataBundle, n: int, device: torch.device, batch_size: int = 500,
                   split: str = "test") -> float:
    """Percent correct on the first ``n`` images of the ``split`` (test or validation) images."""
    was_training = model.training
    model.eval()
    correct = seen = 0
    batches = data.validation_batches if split == "validation" else data.test_batches
    for x, y in batches(batch_size, device=device):
        x, y = x[: n - seen], y[: n - seen]
        correct += int((model(x).argmax(1) == y).sum())
        seen += len(y)
        if seen >= n:
            break
    model.train(was_training)
    return 100.0 * correct / max(seen, 1)
