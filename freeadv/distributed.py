"""Data-parallel training under ``torchrun``: one process per GPU (or CPU process with gloo).

Semantics, so that W ranks are the single-process run with per-shard batch statistics:
every rank draws the same global minibatch (same seeded order and augmentation) and keeps its
contiguous shard of rows; DistributedDataParallel averages the parameter gradients; Free-m keeps
one perturbation buffer per rank, for the rows of its shard (the input gradient is local, so no
communication is added to Free's single backward). A checkpoint holds the whole buffer, gathered
in rank order, so a run resumes exactly and could resume on another world size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend}


def from_environment() -> Context:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    return Context(rank=int(os.environ["RANK"]), world_size=world_size,
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def initialise(context: Context, device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group (NCCL on CUDA, gloo on CPU); each rank gets its own GPU."""
    if not context.enabled:
        return context, device
    if device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank {context.rank} needs GPU {context.local_rank}, but this node has "
                               f"{torch.cuda.device_count()}")
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Context(context.rank, context.world_size, context.local_rank, backend), device


def wrap(model: nn.Module, context: Context, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the model when there is more than one rank."""
    if not context.enabled:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper: attack steps run on it, so that forward passes without a
    parameter backward do not leave DDP waiting for a gradient reduction."""
    inner = getattr(model, "_orig_mod", model)    # a torch.compile'd wrapper
    return inner.module if isinstance(inner, nn.parallel.DistributedDataParallel) else model


def shard_rows(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    """This rank's contiguous rows of a global batch (``tensor_split``: sizes differ by at most 1)."""
    return tensor.tensor_split(context.world_size)[context.rank] if context.enabled else tensor


def gather_rows(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    """Every rank's rows, concatenated in rank order (all ranks must call it; equal shapes)."""
    if not context.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(context.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def mean_over_ranks(value: torch.Tensor, context: Context) -> torch.Tensor:
    if not context.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / context.world_size


def barrier(context: Context) -> None:
    if context.enabled:
        dist.barrier()


def finish(context: Context) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
