"""CIFAR-10 (JPEG q75) from its archive (or the extracted folder), decoded once and cached.

Fixed order: within each split images are sorted by (file number NNNN, class index), i.e. the
classes interleave (airplane 0000, automobile 0000, ..., truck 0000, airplane 0001, ...), so the
first N test images are class-balanced and "the last 9" are well defined. Class indices follow
``CIFAR10_CLASSES`` (torchvision's order, which is also the sorted folder names).

Decoding 60k JPEGs takes seconds, so the decoded uint8 arrays are cached as .npz in
``cache_dir()``, keyed by the archive's size and mtime (or the folder's file listing).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .catalog import CIFAR10_CLASSES, DataError

_JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
_JPEG_FOLDER = "cifar10-jpeg"
_JPEG_CACHE_VERSION = 1
_JPEG_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)\.jpe?g$", re.IGNORECASE)
_SPLIT_ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def cache_dir() -> Path:
    """Where decoded datasets are cached (``$FREEADV_CACHE``, else ``~/.cache/freeadv``); never the data root."""
    return Path(os.environ.get("FREEADV_CACHE", Path.home() / ".cache" / "freeadv"))


def _decode_jpeg(payload: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(payload)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _file_number(stem: str, source: str) -> int:
    digits = re.search(r"\d+", stem)
    if digits is None:
        raise DataError(f"cifar10-jpeg: file name '{stem}' in '{source}' carries no image number; "
                        f"expected <split>/<class>/NNNN.jpg")
    return int(digits.group())


class _JpegCollector:
    """Accumulates decoded images per split keyed by (file number, class index)."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.splits: dict[str, list[tuple[int, int, np.ndarray]]] = {"train": [], "test": []}

    def add(self, relative_path: str, read_bytes) -> None:
        match = _JPEG_MEMBER.search(relative_path)
        if match is None:
            return
        split, class_name, stem = match.groups()
        if class_name not in CIFAR10_CLASSES:
            raise DataError(f"cifar10-jpeg: unknown class folder '{class_name}' in '{self.source}'; "
                            f"expected the 10 CIFAR-10 classes {', '.join(CIFAR10_CLASSES)}")
        self.splits[split].append((_file_number(stem, str(self.source)), CIFAR10_CLASSES.index(class_name),
                                   _decode_jpeg(read_bytes())))

    def arrays(self) -> dict[str, np.ndarray]:
        """Per split: images (N,3,32,32) uint8 and labels, sorted by (file number, class index)."""
        out = {}
        for split, items in self.splits.items():
            if not items:
                raise DataError(f"cifar10-jpeg: no {split} images found in '{self.source}'; "
                                f"expected {_JPEG_FOLDER}/{split}/<class>/NNNN.jpg")
            items.sort(key=lambda item: (item[0], item[1]))
            images = np.stack([item[2] for item in items]).transpose(0, 3, 1, 2)
            out[f"{split}_x"] = np.ascontiguousarray(images)
            out[f"{split}_y"] = np.array([item[1] for item in items], dtype=np.int64)
        return out


def _decode_jpeg_archive(archive: Path) -> dict[str, np.ndarray]:
    """Decode every JPEG straight from the tar.gz stream (nothing is extracted to disk)."""
    collector = _JpegCollector(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    collector.add(member.name, lambda: tar.extractfile(member).read())
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"cifar10-jpeg: cannot read archive '{archive}' ({err}); replace it with a "
                        f"complete copy of {_JPEG_ARCHIVE}") from err
    return collector.arrays()


def _decode_jpeg_folder(folder: Path) -> dict[str, np.ndarray]:
    collector = _JpegCollector(folder)
    for path in folder.rglob("*"):
        if path.is_file():
            collector.add(path.relative_to(folder).as_posix(), path.read_bytes)
    return collector.arrays()


def _folder_fingerprint(folder: Path) -> str:
    """Cheap identity of an extracted folder: names, sizes and mtimes of its files."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _jpeg_source(root: Path) -> tuple[Path, str]:
    """The archive (preferred) or extracted folder under ``root``, and the cache key for it."""
    candidates = [root] if root.is_file() else [root / _JPEG_ARCHIVE]
    for archive in candidates:
        if archive.is_file():
            stat = archive.stat()
            return archive, f"archive-{stat.st_size}-{stat.st_mtime_ns}"
    folder = root / _JPEG_FOLDER
    if folder.is_dir():
        return folder, f"folder-{_folder_fingerprint(folder)}"
    raise DataError(f"cifar10-jpeg: found neither '{root / _JPEG_ARCHIVE}' nor '{folder}'; place {_JPEG_ARCHIVE} "
                    f"(e.g. from ../shared/data) in that folder or set data_root to the folder holding it")


def load_cifar10_jpeg(root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CIFAR-10 (JPEG q75) from ``root/cifar10-jpeg.tar.gz`` or ``root/cifar10-jpeg/``, in the fixed
    order and through the cache the module docstring describes: train images, train labels, test
    images, test labels as uint8 ``(N, 3, 32, 32)`` and int64."""
    source, key = _jpeg_source(root)
    cache_file = cache_dir() / f"cifar10-jpeg-v{_JPEG_CACHE_VERSION}-{key}.npz"
    arrays = _read_cache(cache_file) if cache_file.is_file() else None
    if arrays is None:
        arrays = _decode_jpeg_archive(source) if source.is_file() else _decode_jpeg_folder(source)
        _write_cache(cache_file, arrays)
    return tuple(torch.from_numpy(arrays[name]) for name in _SPLIT_ARRAYS)


def _read_cache(cache_file: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (with a warning) when the file cannot be read."""
    try:
        with np.load(cache_file) as cached:
            return {name: cached[name] for name in _SPLIT_ARRAYS}
    except (OSError, ValueError, KeyError) as err:
        warnings.warn(f"ignoring unreadable cache '{cache_file}' ({err}); decoding again")
        return None


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write (temp file + rename) so concurrent runs never read half a cache; failure only warns."""
    partial = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.partial")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, cache_file)
    except OSError as err:
        warnings.warn(f"could not write the dataset cache '{cache_file}' ({err}); set FREEADV_CACHE to a "
                      f"writable folder to avoid decoding again next time")
        partial.unlink(missing_ok=True)
