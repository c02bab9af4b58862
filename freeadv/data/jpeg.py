"""CIFAR-10 (JPEG q75) from its archive (or the extracted folder), decoded once and cached.

Fixed order: within each split images are sorted by (file number NNNN, class index), i.e. the
classes interleave (airplane 0000, automobile 0000, ..., truck 0000, airplane 0001, ...), so the
first N test images are class-balanced and "the last 9" are well defined. Class indices follow
``CIFAR10_CLASSES`` (torchvision's order, which is also the sorted folder names).

Nothing damaged is used silently: the archive's sha256 is computed on every load and must be the
published one when the file has the published size (a flipped byte keeps the size); gzip is read
to its end, so its CRC is checked (tarfile alone stops at the end-of-archive blocks); both splits
must hold all ten classes; a duplicated image, an image that is not 32x32 RGB, or a member over
``MAX_MEMBER_BYTES`` (a decompression bomb) is refused with the member's name.

Decoding 60k JPEGs takes seconds, so the decoded uint8 arrays are cached as .npz in
``cache_dir()``, keyed by the archive's sha256 (or the folder's file listing); the newest
``KEEP_CACHES`` caches are kept, older ones of this dataset removed; only files of the cache's own
name pattern are touched, and a killed writer's partial file is removed by the next write.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .bundle import DataBundle
from .catalog import (CIFAR10_CLASSES, CIFAR10_JPEG_BYTES, CIFAR10_JPEG_SHA256, DATASETS, DatasetSpec, DataError,
                      LoadOptions)
from .subsets import bundle_of_splits
from ..errors import UserError

_JPEG_ARCHIVE, _JPEG_FOLDER = DATASETS["cifar10-jpeg"].files   # cifar10-jpeg.tar.gz, or cifar10-jpeg/ extracted
_JPEG_CACHE_VERSION = 2              # 2: keyed by the archive's sha256
_CACHE_PREFIX = "cifar10-jpeg-v"
# A 32x32 JPEG q75 is about 1 KB (the largest in the archive 1.6 KB); 1 MiB refuses a bomb unread.
MAX_MEMBER_BYTES = 1 << 20
IMAGE_SIZE = (32, 32)
KEEP_CACHES = 2                      # the current archive's and one other (e.g. a test copy)
_JPEG_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)\.jpe?g$", re.IGNORECASE)
_SPLIT_ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def cache_dir() -> Path:
    """Where decoded datasets are cached (``$FREEADV_CACHE``, else ``~/.cache/freeadv``); never the data root."""
    return Path(os.environ.get("FREEADV_CACHE", Path.home() / ".cache" / "freeadv"))


def _decode_jpeg(payload: bytes, name: str) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(payload))   # reads the header only: the size is known before decoding
    except (OSError, SyntaxError, ValueError) as err:   # PIL's errors for a damaged or non-image file
        raise DataError(f"cifar10-jpeg: '{name}' is not a readable JPEG ({err})") from None
    with image:
        if image.size != IMAGE_SIZE:
            raise DataError(f"cifar10-jpeg: '{name}' is {image.size[0]}x{image.size[1]}, not 32x32")
        try:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as err:
            raise DataError(f"cifar10-jpeg: '{name}' is not a readable JPEG ({err})") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(archive: Path) -> tuple[str, bool]:
    """(sha256, whether it is the published archive). A file of the published size with another
    digest is a damaged copy: DataError. Other archives pass here; decoding checks them."""
    digest = file_sha256(archive)
    if digest == CIFAR10_JPEG_SHA256:
        return digest, True
    if archive.stat().st_size == CIFAR10_JPEG_BYTES:
        raise DataError(f"cifar10-jpeg: '{archive}' has the published archive's size but sha256 {digest[:16]}..., "
                        f"not {CIFAR10_JPEG_SHA256[:16]}...: it is damaged; copy it again from ../shared/data")
    return digest, False


def _file_number(stem: str, source: str) -> int:
    digits = re.search(r"\d+", stem)
    if digits is None:
        raise DataError(f"cifar10-jpeg: file name '{stem}' in '{source}' carries no image number; "
                        f"expected <split>/<class>/NNNN.jpg")
    return int(digits.group())


def _read_archive(archive: Path, on_file) -> list[Any]:
    """Call ``on_file(member, tar)`` for every file of a tar(.gz) in stream order, then read the
    compressed stream to its end, so that gzip checks its CRC and length (the tar reader stops at
    the end-of-archive blocks and would never see a damaged tail). Returns the calls' results."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            results = [on_file(member, tar) for member in tar if member.isfile()]
            while tar.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"cifar10-jpeg: cannot read archive '{archive}' ({err}): it is damaged or incomplete; "
                        f"replace it with a complete copy of {_JPEG_ARCHIVE}") from None
    return results


def check_archive(archive: Path) -> str:
    """What `freeadv doctor` says of an archive: its digest verified against the published one, and
    its gzip stream read to the end (CRC). DataError when damaged."""
    digest, published = verify_archive(archive)
    members = len(_read_archive(archive, lambda member, tar: None))
    which = "the published archive" if published else "NOT the published archive: checked by CRC only"
    return f"sha256 {digest[:16]}... ({which}), {members:,} files, gzip CRC ok"


class _JpegCollector:
    """Accumulates decoded images per split keyed by (file number, class index)."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.splits: dict[str, list[tuple[int, int, np.ndarray]]] = {"train": [], "test": []}
        self.seen: dict[tuple[str, int, int], str] = {}

    def add(self, relative_path: str, read_bytes, size: int) -> None:
        match = _JPEG_MEMBER.search(relative_path)
        if match is None:
            return
        split, class_name, stem = match.groups()
        if class_name not in CIFAR10_CLASSES:
            raise DataError(f"cifar10-jpeg: unknown class folder '{class_name}' in '{self.source}'; "
                            f"expected the 10 CIFAR-10 classes {', '.join(CIFAR10_CLASSES)}")
        if size > MAX_MEMBER_BYTES:
            raise DataError(f"cifar10-jpeg: '{relative_path}' in '{self.source}' is {size:,} bytes (a 32x32 JPEG "
                            f"is about 1 KB; limit {MAX_MEMBER_BYTES:,}): refusing to read it")
        key = (split, _file_number(stem, str(self.source)), CIFAR10_CLASSES.index(class_name))
        if key in self.seen:
            raise DataError(f"cifar10-jpeg: '{relative_path}' duplicates '{self.seen[key]}' in '{self.source}' "
                            f"(the same split, class and image number)")
        self.seen[key] = relative_path
        self.splits[split].append((key[1], key[2], _decode_jpeg(read_bytes(), relative_path)))

    def arrays(self) -> dict[str, np.ndarray]:
        """Per split: images (N,3,32,32) uint8 and labels, sorted by (file number, class index)."""
        out = {}
        for split, items in self.splits.items():
            if not items:
                raise DataError(f"cifar10-jpeg: no {split} images found in '{self.source}'; "
                                f"expected {_JPEG_FOLDER}/{split}/<class>/NNNN.jpg")
            missing = [c for i, c in enumerate(CIFAR10_CLASSES) if i not in {item[1] for item in items}]
            if missing:
                raise DataError(f"cifar10-jpeg: the {split} split of '{self.source}' has no images of class "
                                f"{', '.join(missing)}: a damaged or incomplete copy")
            items.sort(key=lambda item: (item[0], item[1]))
            images = np.stack([item[2] for item in items]).transpose(0, 3, 1, 2)
            out[f"{split}_x"] = np.ascontiguousarray(images)
            out[f"{split}_y"] = np.array([item[1] for item in items], dtype=np.int64)
        return out


def _decode_jpeg_archive(archive: Path) -> dict[str, np.ndarray]:
    """Decode every JPEG straight from the tar.gz stream (nothing is extracted to disk), then read
    the compressed stream to its end so that gzip checks its CRC and length."""
    collector = _JpegCollector(archive)
    _read_archive(archive, lambda member, tar: collector.add(member.name, lambda: tar.extractfile(member).read(),
                                                             member.size))
    return collector.arrays()


def _decode_jpeg_folder(folder: Path) -> dict[str, np.ndarray]:
    collector = _JpegCollector(folder)
    for path in folder.rglob("*"):
        if path.is_file():
            collector.add(path.relative_to(folder).as_posix(), path.read_bytes, path.stat().st_size)
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
            digest, _ = verify_archive(archive)
            return archive, f"sha256-{digest[:32]}"
    folder = root / _JPEG_FOLDER
    if folder.is_dir():
        return folder, f"folder-{_folder_fingerprint(folder)}"
    raise DataError(f"cifar10-jpeg: found neither '{root / _JPEG_ARCHIVE}' nor '{folder}'; place {_JPEG_ARCHIVE} "
                    f"(e.g. from ../shared/data) in that folder or set data_root to the folder holding it")


def load_jpeg(spec: DatasetSpec, root: Path, options: LoadOptions) -> DataBundle:
    """The loader of cifar10-jpeg (its DatasetSpec): the decoded splits, subset as asked."""
    return bundle_of_splits(spec.name, load_cifar10_jpeg(root), options)


def load_cifar10_jpeg(root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CIFAR-10 (JPEG q75) from ``root/cifar10-jpeg.tar.gz`` or ``root/cifar10-jpeg/``, in the fixed
    order and through the cache the module docstring describes: train images, train labels, test
    images, test labels as uint8 ``(N, 3, 32, 32)`` and int64."""
    source, key = _jpeg_source(root)
    cache_file = cache_dir() / f"{_CACHE_PREFIX}{_JPEG_CACHE_VERSION}-{key}.npz"
    arrays = _read_cache(cache_file) if cache_file.is_file() else None
    if arrays is None:
        arrays = _decode_jpeg_archive(source) if source.is_file() else _decode_jpeg_folder(source)
        _write_cache(cache_file, arrays)
        _prune_caches(cache_file)
    return tuple(torch.from_numpy(arrays[name]) for name in _SPLIT_ARRAYS)


def _read_cache(cache_file: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (with a warning) when the file cannot be read."""
    try:
        with np.load(cache_file) as cached:
            arrays = {name: cached[name] for name in _SPLIT_ARRAYS}
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
            if images.dtype != np.uint8 or images.shape[1:] != (3, *IMAGE_SIZE) or len(images) != len(labels):
                raise UserError(f"{split} arrays of shape {images.shape} / {labels.shape}")
        return arrays
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(f"ignoring unreadable cache '{cache_file}' ({err}); decoding again")
        return None


# The cache's own files, matched whole: a decoded cache and the partial file of a write in progress
# (``<cache>.<pid>.partial``); a user's file that only shares the prefix is never touched.
_CACHE_FILE = re.compile(re.escape(_CACHE_PREFIX) + r"\d+-(?:sha256-[0-9a-f]{32}|folder-[0-9a-f]{16})\.npz")
_PARTIAL_FILE = re.compile(r"(?P<cache>.+\.npz)\.(?P<pid>\d+)\.partial")


def _own_caches(folder: Path) -> list[Path]:
    return [p for p in folder.glob(f"{_CACHE_PREFIX}*.npz") if _CACHE_FILE.fullmatch(p.name)]


def _stale_partials(folder: Path) -> list[Path]:
    """Partial cache files of writers that are no longer running (a killed decode's leftovers)."""
    stale = []
    for path in folder.glob(f"{_CACHE_PREFIX}*.partial"):
        match = _PARTIAL_FILE.fullmatch(path.name)
        if match and _CACHE_FILE.fullmatch(match["cache"]) and not _process_alive(int(match["pid"])):
            stale.append(path)
    return stale


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):   # no such process (or no such pid at all)
        return False
    except PermissionError:                        # another user's process
        return True
    return True


def _prune_caches(current: Path) -> None:
    """Keep the newest KEEP_CACHES decoded caches of this dataset (ours: the full name pattern),
    remove the rest and the partial files killed writers left."""
    ours = sorted(_own_caches(current.parent), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in [p for p in ours if p != current][KEEP_CACHES - 1:] + _stale_partials(current.parent):
        stale.unlink(missing_ok=True)


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write (temp file + rename) so concurrent runs never read half a cache; failure only
    warns; an interrupted write removes its partial file."""
    partial = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.partial")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, cache_file)
    except OSError as err:
        warnings.warn(f"could not write the dataset cache '{cache_file}' ({err}); set FREEADV_CACHE to a "
                      f"writable folder to avoid decoding again next time")
    finally:
        partial.unlink(missing_ok=True)
