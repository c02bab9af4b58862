"""Loaded datasets (``DataBundle``), the in-memory CIFAR-sized kind (``TensorBundle``), its batch
augmentation and the seeding every random draw of the data goes through.

Every image reaches the model in [0, 1] as torch's default float dtype (float32 unless set); the per-channel normalisation lives in the
model (``MEAN_STD`` feeds its input layer), so attacks work in pixel space.

CIFAR-sized datasets are held in memory as uint8 tensors ``(N, 3, 32, 32)`` and augmented a whole
batch at a time on the target device: no DataLoader, no per-image Python work. ImageNet goes
through torchvision's ``ImageFolder`` and a ``DataLoader`` (``freeadv.data.imagenet``).

Training batches are a pure function of ``(seed, epoch, batch index)``: the order of a pass comes
from a generator seeded with ``(seed, epoch)`` and the augmentation of batch ``i`` from one seeded
with ``(seed, epoch, i)``. A pass resumed at ``start_batch=k`` therefore yields bit-for-bit the
batches a full pass yields after its first ``k``.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..precision import unit_float
from .catalog import DATASETS, DataError
from ..errors import UserError

CIFAR_PAD = 2  # pixels of zero padding per side before the random 32x32 crop (the paper's code)

_SEED_MODULUS = 2**63


# --- Seeds ----------------------------------------------------------------------------------------

def mix_seed(*parts: int) -> int:
    """Fold integers into one generator seed (``seed * 1_000_003 + epoch`` style), so every
    (seed, epoch[, batch]) tuple gets its own reproducible random stream."""
    mixed = 0
    for part in parts:
        mixed = (mixed * 1_000_003 + int(part)) % _SEED_MODULUS
    return mixed


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded with ``mix_seed(*parts)``."""
    return torch.Generator().manual_seed(mix_seed(*parts))


def _resolve_device(device) -> torch.device:
    """``"cuda"`` and ``"cuda:0"`` name one device; give it one key so data is copied there once."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


# --- Bundles --------------------------------------------------------------------------------------

class DataBundle:
    """A loaded dataset: sizes, normalisation constants and seeded batch iterators."""

    name: str
    num_classes: int
    image_size: int
    n_train: int
    n_test: int
    mean: tuple
    std: tuple
    # Whether a pass drops its last, smaller batch (so every batch has batch_size images).
    drop_last: bool = False
    # Validation images: training images the run does not train on, for the checks during training
    # (freeadv.training.robust), so that choosing weights never reads the test split.
    n_validation: int = 0
    # Positions in the dataset's training split of the training and validation images, where the
    # bundle took a subset of a fixed split (None for generated data).
    train_indices: Tensor | None = None
    validation_indices: Tensor | None = None

    def __init__(self, name: str, image_size: int, n_train: int, n_test: int) -> None:
        spec = DATASETS[name]
        self.name = name
        self.num_classes = spec.num_classes
        self.image_size = image_size
        self.n_train = n_train
        self.n_test = n_test
        self.mean, self.std = spec.mean_std

    def num_train_batches(self, batch_size: int) -> int:
        """Batches per pass: the last, smaller batch is dropped or kept as ``drop_last`` says."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.drop_last and batch_size > self.n_train:
            raise UserError(f"batch_size {batch_size} is larger than the {self.n_train} training images "
                             f"of {self.name}: a pass would have no full batch")
        return self.n_train // batch_size if self.drop_last else math.ceil(self.n_train / batch_size)

    def _pass_order(self, batch_size: int, epoch: int, seed: int, start_batch: int) -> list[Tensor]:
        """Index batches of one pass, from ``start_batch`` on; the permutation depends on (seed, epoch) only."""
        batches = self.num_train_batches(batch_size)   # checks batch_size
        if not 0 <= start_batch <= batches:
            raise ValueError(f"start_batch must be in [0, {batches}], got {start_batch}")
        order = torch.randperm(self.n_train, generator=seeded_generator(seed, epoch))
        return list(order.split(batch_size))[start_batch:batches]

    def train_batches(self, batch_size: int, *, epoch: int, seed: int, device,
                      start_batch: int = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def test_tensors(self, device=None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def test_batches(self, batch_size: int, *, device) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def validation_batches(self, batch_size: int, *, device) -> Iterator[tuple[Tensor, Tensor]]:
        """The validation images in their fixed order, unaugmented."""
        raise DataError(f"{self.name}: no validation images were held out of the training images "
                        f"(load_data's n_validation is 0)")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
                f"n_validation={self.n_validation}, num_classes={self.num_classes}, image_size={self.image_size})")


class TensorBundle(DataBundle):
    """A CIFAR-sized dataset held in memory as uint8 tensors, augmented per batch on the device.

    A pass takes only full batches, as the official CIFAR code does (Madry et al.'s data reader,
    kept by the paper's TF code, reshuffles when fewer than batch_size images are left): 390
    batches of 128 from 50,000 images, and Free's perturbation always has the batch's shape.
    ImageNet keeps its partial last batch, as its official PyTorch code (a DataLoader) does."""

    drop_last = True

    def __init__(self, name: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                 augment: bool = True, validation: tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__(name, image_size=train_x.shape[-1], n_train=len(train_x), n_test=len(test_x))
        self.train_x, self.train_y = train_x, train_y   # uint8 (N,3,H,W), int64 (N,)
        self.test_x, self.test_y = test_x, test_y
        empty = (train_x[:0], train_y[:0])
        self.validation_x, self.validation_y = empty if validation is None else validation
        self.n_validation = len(self.validation_x)
        self.augment = augment
        self._train_on_device: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def _train_tensors_on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """The uint8 training set copied to ``device`` once, so batches are gathered there."""
        if device not in self._train_on_device:
            self._train_on_device[device] = (self.train_x.to(device), self.train_y.to(device))
        return self._train_on_device[device]

    def train_batches(self, batch_size: int, *, epoch: int, seed: int, device,
                      start_batch: int = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[Tensor, Tensor]]:
        """One seeded pass over the training set; see the module docstring for the determinism contract.
        ``shard`` = (rank, world size): this rank's contiguous rows of each global batch, augmented
        exactly as in a single process (the whole batch is cropped and flipped, then sliced: cheap).

        The pass's indices, crop offsets and flips are drawn on the CPU as before (the same numbers
        from the same generators) and copied to the device once per pass, so the per-batch work
        (gather, crop, flip, float) is device work the host queues without waiting: a blocking
        host-to-device copy per batch (three of them) would stall the loop at every batch."""
        rank, world = shard
        device = _resolve_device(device)
        train_x, train_y = self._train_tensors_on(device)
        order = self._pass_order(batch_size, epoch, seed, start_batch)
        if not order:
            return
        indices = torch.stack(order).to(device)   # (batches, batch_size): full batches only (drop_last)
        if self.augment:
            draws = [draw_crop_flip(batch_size, seeded_generator(seed, epoch, i), CIFAR_PAD)
                     for i in range(start_batch, start_batch + len(order))]
            offsets = torch.stack([offset for offset, _ in draws]).to(device)
            flips = torch.stack([flip for _, flip in draws]).to(device)
        for position in range(len(order)):
            x = train_x[indices[position]]
            if self.augment:
                x = crop_flip(x, offsets[position], flips[position], pad=CIFAR_PAD)
            y = train_y[indices[position]]
            if world > 1:
                x, y = x.tensor_split(world)[rank], y.tensor_split(world)[rank]
            yield unit_float(x), y

    def test_tensors(self, device=None) -> tuple[Tensor, Tensor]:
        """The whole (subset) test split as float [0, 1] images and int64 labels."""
        device = torch.device("cpu") if device is None else torch.device(device)
        return unit_float(self.test_x.to(device)), self.test_y.to(device)

    def test_batches(self, batch_size: int, *, device) -> Iterator[tuple[Tensor, Tensor]]:
        """The test split in its fixed order, unaugmented."""
        return _in_order(self.test_x, self.test_y, batch_size, device)

    def validation_batches(self, batch_size: int, *, device) -> Iterator[tuple[Tensor, Tensor]]:
        """The validation images in their fixed order, unaugmented."""
        if not self.n_validation:
            return super().validation_batches(batch_size, device=device)
        return _in_order(self.validation_x, self.validation_y, batch_size, device)


def _in_order(images: Tensor, labels: Tensor, batch_size: int, device) -> Iterator[tuple[Tensor, Tensor]]:
    """uint8 ``images`` and their labels in batches, in their order, as [0, 1] floats on ``device``."""
    for start in range(0, len(images), batch_size):
        yield unit_float(images[start:start + batch_size].to(device)), labels[start:start + batch_size].to(device)


# --- Augmentation ---------------------------------------------------------------------------------

def random_crop_flip(x: Tensor, generator: torch.Generator, pad: int = CIFAR_PAD) -> Tensor:
    """Zero-pad by ``pad``, take a random crop of the original size and flip each image
    horizontally with probability 1/2, for a whole batch at once.

    Offsets and flips are drawn on the CPU from ``generator`` (so the result does not depend on the
    device), then applied as one gather over the flattened padded images, with the flip folded
    into the column indices.
    """
    offsets, flips = draw_crop_flip(len(x), generator, pad)
    return crop_flip(x, offsets.to(x.device), flips.to(x.device), pad)


def draw_crop_flip(batch: int, generator: torch.Generator, pad: int = CIFAR_PAD) -> tuple[Tensor, Tensor]:
    """The random part of :func:`random_crop_flip`, on the CPU: (batch, 2) crop offsets and (batch,) flips."""
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)
    flips = torch.randint(0, 2, (batch,), generator=generator).bool()
    return offsets, flips


def crop_flip(x: Tensor, offsets: Tensor, flips: Tensor, pad: int = CIFAR_PAD) -> Tensor:
    """The crops at ``offsets`` of ``x`` zero-padded by ``pad``, flipped where ``flips``; all on
    ``x``'s device (offsets and flips are there already: no copy, no sync)."""
    batch, channels, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(height, device=x.device)                             # (B, H)
    cols_ascending = torch.arange(width, device=x.device)
    cols = offsets[:, 1, None] + torch.where(flips[:, None], cols_ascending.flip(0), cols_ascending)  # (B, W)
    pixel_index = (rows[:, :, None] * (width + 2 * pad) + cols[:, None, :]).flatten(1)              # (B, H*W)
    crops = padded.flatten(2).gather(2, pixel_index[:, None, :].expand(batch, channels, -1))
    return crops.view(batch, channels, height, width)
