"""A deterministic CIFAR-shaped dataset with a learnable but adversarially fragile class signal,
for tests and CPU-sized reproductions (no files needed)."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .bundle import TensorBundle, seeded_generator
from .catalog import DatasetSpec, DataError, LoadOptions
from .subsets import check_subset_size

SYNTHETIC_SIGNAL = 0.06        # class template amplitude per pixel (RMS), ~2x eps=8/255
SYNTHETIC_CLUTTER = 0.06       # RMS of the random mix of all templates added to every image
SYNTHETIC_PIXEL_NOISE = 0.04   # i.i.d. per-pixel Gaussian noise
# CIFAR-10's size is the most any test or smoke run needs; 10**9 images would be ~3 TiB.
SYNTHETIC_MAX_IMAGES = 60_000
SYNTHETIC_GRID = 4             # templates are random GRIDxGRID colour grids, bilinearly upsampled to 32x32
_SYNTHETIC_BLOCK = 250         # images per independently seeded generation block


def _synthetic_templates(data_seed: int, num_classes: int = 10, size: int = 32) -> Tensor:
    """One smooth random colour pattern per class, scaled to unit RMS."""
    grid = torch.randn(num_classes, 3, SYNTHETIC_GRID, SYNTHETIC_GRID, generator=seeded_generator(data_seed, 0))
    smooth = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
    smooth = smooth - smooth.mean(dim=(1, 2, 3), keepdim=True)
    return smooth / smooth.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()


def _synthetic_split(templates: Tensor, count: int, data_seed: int, split_id: int) -> tuple[Tensor, Tensor]:
    """``count`` images drawn in fixed blocks, each from its own seeded generator, so that a smaller
    split is exactly the prefix of a larger one (``n_test`` keeps the first images, as elsewhere)."""
    num_classes, image_shape = len(templates), templates.shape[1:]
    labels = torch.arange(count) % num_classes               # interleaved: every prefix is class-balanced
    blocks = []
    for block_index, start in enumerate(range(0, count, _SYNTHETIC_BLOCK)):
        generator = seeded_generator(data_seed, split_id, block_index)
        strength = 0.75 + 0.5 * torch.rand(_SYNTHETIC_BLOCK, generator=generator)   # per-image amplitude jitter
        mixing = torch.randn(_SYNTHETIC_BLOCK, num_classes, generator=generator) / math.sqrt(num_classes)
        noise = torch.randn(_SYNTHETIC_BLOCK, *image_shape, generator=generator)
        size = min(_SYNTHETIC_BLOCK, count - start)
        signal = SYNTHETIC_SIGNAL * strength[:size, None, None, None] * templates[labels[start:start + size]]
        clutter = SYNTHETIC_CLUTTER * torch.einsum("nk,kchw->nchw", mixing[:size], templates)
        blocks.append(0.5 + signal + clutter + SYNTHETIC_PIXEL_NOISE * noise[:size])
    images = torch.cat(blocks) if blocks else torch.empty(0, *image_shape)
    return images.clamp_(0, 1).mul_(255).round_().to(torch.uint8), labels


def _check_count(name: str, count: int) -> None:
    if count > SYNTHETIC_MAX_IMAGES:
        raise DataError(f"synthetic: {name}={count:,} is more than {SYNTHETIC_MAX_IMAGES:,} images "
                        f"({count * 3 * 32 * 32 / 2**30:.0f} GiB as uint8); synthetic data is for tests and smoke runs")


def make_synthetic(n_train: int, n_test: int, data_seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Deterministic CIFAR-shaped data (3x32x32, 10 classes) with learnable but fragile class signal.

    image = clip(0.5 + a * s * T_y + b * sum_k c_k T_k + sigma * noise), quantised to uint8, where
    ``T_k`` are smooth unit-RMS class templates (upsampled 4x4 colour grids), ``s ~ U(0.75, 1.25)``
    and ``c_k ~ N(0, 1/10)`` (clutter made of all classes' patterns). The class signal ``a = 0.06``
    is only ~2x eps=8/255 per pixel: small_cnn trained naturally for 200-400 steps of batch 64 reaches
    ~85% clean accuracy but only 5-15% under PGD-10 at eps 8/255, while PGD-3 adversarial training
    keeps ~31% (at ~83% clean) and template matching ~40% under its exact eps-8 worst case.

    Templates depend on ``data_seed`` only; train and test are different draws from the same
    distribution, and each split of size n is the first n images of any larger one.
    """
    for name, count in (("n_train", n_train), ("n_test", n_test)):
        _check_count(name, count)
    templates = _synthetic_templates(data_seed)
    train_x, train_y = _synthetic_split(templates, n_train, data_seed, split_id=1)
    test_x, test_y = _synthetic_split(templates, n_test, data_seed, split_id=2)
    return train_x, train_y, test_x, test_y


def synthetic_validation(count: int, data_seed: int = 0) -> tuple[Tensor, Tensor]:
    """``count`` validation images: a third draw from the distribution of :func:`make_synthetic`
    (its own seeded stream), so a run's validation images are none of its training or test images
    and adding them leaves both splits as they were."""
    _check_count("validation_n", count)
    return _synthetic_split(_synthetic_templates(data_seed), count, data_seed, split_id=3)


def load_synthetic(spec: DatasetSpec, root: Path | None, options: LoadOptions) -> TensorBundle:
    """The loader of ``synthetic`` (its DatasetSpec): ``root`` is not read; ``n_train`` / ``n_test``
    images (the spec's default_sizes when unset) and ``n_validation`` more from a stream of their own."""
    default_train, default_test = spec.default_sizes
    check_subset_size(spec.name, "train", options.n_train, math.inf, minimum=1)
    check_subset_size(spec.name, "test", options.n_test, math.inf, minimum=0)
    n_test = default_test if options.n_test is None else options.n_test
    tensors = make_synthetic(options.n_train or default_train, n_test, options.data_seed)
    validation = synthetic_validation(options.n_validation, options.data_seed) if options.n_validation else None
    return TensorBundle(spec.name, *tensors, augment=options.augment, validation=validation)
