"""The loaders of a user's dataset (freeadv.data.custom): an ImageFolder root, or a file of tensors.

Both return the splits as uint8 ``(N, 3, S, S)`` images and int64 labels, checked against the
description before any training: image size, channel count and label range, each with a one-line
DataError naming the file. The test split keeps a fixed order (sorted paths, or the file's order),
so ``n_test`` and the attacks' first-n subsets are the same images in every run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .bundle import DataBundle
from .catalog import DataError, DatasetSpec, LoadOptions
from .subsets import bundle_of_splits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
TEST_FOLDERS = ("test", "val")      # the held-out split's folder: the first that exists
SPLIT_KEYS = ("train_x", "train_y", "test_x", "test_y")


def _checked(spec: DatasetSpec, where: str, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Images as uint8 (N, 3, S, S) and labels as int64 in [0, num_classes), or one line saying why not."""
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)   # (N, H, W, 3), as image libraries write them
    size = spec.input_size
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise DataError(f"{spec.name}: {where} holds images of shape {tuple(images.shape)}: expected "
                        f"(N, 3, {size}, {size}) or (N, {size}, {size}, 3) (input_size {size}, RGB)")
    if images.dtype != torch.uint8:
        raise DataError(f"{spec.name}: {where} holds {images.dtype} images: expected uint8 pixels 0-255")
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.is_floating_point:
        raise DataError(f"{spec.name}: {where} has {tuple(labels.shape)} {labels.dtype} labels for {len(images)} "
                        "images: expected one integer label per image")
    labels = labels.long()
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{spec.name}: {where} has labels from {int(labels.min())} to {int(labels.max())}: expected "
                        f"0 to {spec.num_classes - 1} (num_classes {spec.num_classes})")
    return images.contiguous(), labels


def _read_tensor_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            return {key: torch.from_numpy(np.asarray(arrays[key])) for key in arrays.files}
    if path.suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(data, dict):
            return {key: torch.as_tensor(value) for key, value in data.items()}
    raise DataError(f"'{path}' is not a .npz file or a .pt file of a dict of tensors")


def load_tensors(spec: DatasetSpec, root: Path | None, options: LoadOptions) -> DataBundle:
    """``data_root`` is a .npz or .pt file holding train_x, train_y, test_x and test_y."""
    if root is None or not root.is_file():
        raise DataError(f"{spec.name}: data_root '{root}' is not a file: expected a .npz or .pt file holding "
                        f"{', '.join(SPLIT_KEYS)}")
    arrays = _read_tensor_file(root)
    missing = [key for key in SPLIT_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{spec.name}: '{root}' has no '{missing[0]}' (it holds {', '.join(sorted(arrays)) or 'nothing'})")
    train = _checked(spec, f"'{root}' (train_x, train_y)", arrays["train_x"], arrays["train_y"])
    test = _checked(spec, f"'{root}' (test_x, test_y)", arrays["test_x"], arrays["test_y"])
    return bundle_of_splits(spec.name, (*train, *test), options)


def _read_folder(spec: DatasetSpec, folder: Path, classes: list[str]) -> tuple[Tensor, Tensor]:
    """Every image under ``folder/<class>/``, in sorted path order, with its class index."""
    from PIL import Image

    images, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
            except OSError as err:
                raise DataError(f"{spec.name}: '{path}' is not a readable image ({err})") from None
            if pixels.shape[:2] != (spec.input_size, spec.input_size):
                raise DataError(f"{spec.name}: '{path}' is {pixels.shape[1]}x{pixels.shape[0]}: expected "
                                f"{spec.input_size}x{spec.input_size} (input_size)")
            images.append(pixels)
            labels.append(index)
    if not images:
        raise DataError(f"{spec.name}: no images ({', '.join(IMAGE_SUFFIXES)}) under '{folder}/<class>/'")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


def load_imagefolder(spec: DatasetSpec, root: Path | None, options: LoadOptions) -> DataBundle:
    """``data_root`` holds train/<class>/ and test/<class>/ (or val/): the class folders, sorted,
    are the class indices, and both splits must have the same ones."""
    test_folder = next((root / name for name in TEST_FOLDERS if root is not None and (root / name).is_dir()), None)
    if root is None or not (root / "train").is_dir() or test_folder is None:
        raise DataError(f"{spec.name}: data_root '{root}' needs train/<class>/ and test/<class>/ (or val/) folders")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    held_out = sorted(p.name for p in test_folder.iterdir() if p.is_dir())
    if len(classes) != spec.num_classes or held_out != classes:
        raise DataError(f"{spec.name}: '{root / 'train'}' has {len(classes)} class folders and '{test_folder}' "
                        f"{len(held_out)}: expected the same {spec.num_classes} (num_classes) in both")
    train = _checked(spec, f"'{root / 'train'}'", *_read_folder(spec, root / "train", classes))
    test = _checked(spec, f"'{test_folder}'", *_read_folder(spec, test_folder, classes))
    return bundle_of_splits(spec.name, (*train, *test), options)
