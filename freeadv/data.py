"""Datasets for the reproduction: CIFAR-10/100, CIFAR-10 (JPEG q75), ImageNet and a synthetic set.

Every image reaches the model as float32 in [0, 1]; the per-channel normalisation lives in the
model (``MEAN_STD`` feeds its input layer), so attacks work in pixel space.

CIFAR-sized datasets are held in memory as uint8 tensors ``(N, 3, 32, 32)`` and augmented a whole
batch at a time on the target device: no DataLoader, no per-image Python work. ImageNet goes
through torchvision's ``ImageFolder`` and a ``DataLoader``.

Training batches are a pure function of ``(seed, epoch, batch index)``: the order of a pass comes
from a generator seeded with ``(seed, epoch)`` and the augmentation of batch ``i`` from one seeded
with ``(seed, epoch, i)``. A pass resumed at ``start_batch=k`` therefore yields bit-for-bit the
batches a full pass yields after its first ``k``.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
import tarfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data
from PIL import Image
from torch import Tensor

DATASETS = ("cifar10", "cifar100", "cifar10-jpeg", "imagenet", "synthetic")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "cifar10-jpeg": 10, "imagenet": 1000, "synthetic": 10}

_CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
MEAN_STD = {
    "cifar10": _CIFAR10_MEAN_STD,
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "cifar10-jpeg": _CIFAR10_MEAN_STD,
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "synthetic": _CIFAR10_MEAN_STD,
}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

SYNTHETIC_DEFAULT_SIZES = (2000, 500)  # (train, test) when n_train / n_test are None

CIFAR_PAD = 2  # pixels of zero padding per side before the random 32x32 crop (the paper's code)

_SEED_MODULUS = 2**63


class DataError(ValueError):
    """One-line, user-facing message: names the dataset, the path looked at, what to do."""


def _mix_seed(*parts: int) -> int:
    """Fold integers into one generator seed (``seed * 1_000_003 + epoch`` style), so every
    (seed, epoch[, batch]) tuple gets its own reproducible random stream."""
    mixed = 0
    for part in parts:
        mixed = (mixed * 1_000_003 + int(part)) % _SEED_MODULUS
    return mixed


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(_mix_seed(*parts))


def _to_unit_float(x_uint8: Tensor) -> Tensor:
    return x_uint8.float().div_(255.0)


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

    def __init__(self, name: str, image_size: int, n_train: int, n_test: int) -> None:
        self.name = name
        self.num_classes = NUM_CLASSES[name]
        self.image_size = image_size
        self.n_train = n_train
        self.n_test = n_test
        self.mean, self.std = MEAN_STD[name]

    def num_train_batches(self, batch_size: int) -> int:
        """Batches per pass; the last, smaller batch is kept."""
        return math.ceil(self.n_train / batch_size)

    def _pass_order(self, batch_size: int, epoch: int, seed: int, start_batch: int) -> list[Tensor]:
        """Index batches of one pass, from ``start_batch`` on; the permutation depends on (seed, epoch) only."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= start_batch <= self.num_train_batches(batch_size):
            raise ValueError(f"start_batch must be in [0, {self.num_train_batches(batch_size)}], got {start_batch}")
        order = torch.randperm(self.n_train, generator=_generator(seed, epoch))
        return list(order.split(batch_size))[start_batch:]

    def train_batches(self, batch_size: int, *, epoch: int, seed: int, device,
                      start_batch: int = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def test_tensors(self, device=None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def test_batches(self, batch_size: int, *, device) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
                f"num_classes={self.num_classes}, image_size={self.image_size})")


class TensorBundle(DataBundle):
    """A CIFAR-sized dataset held in memory as uint8 tensors, augmented per batch on the device."""

    def __init__(self, name: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                 augment: bool = True) -> None:
        super().__init__(name, image_size=train_x.shape[-1], n_train=len(train_x), n_test=len(test_x))
        self.train_x, self.train_y = train_x, train_y   # uint8 (N,3,H,W), int64 (N,)
        self.test_x, self.test_y = test_x, test_y
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
        exactly as in a single process (the whole batch is cropped and flipped, then sliced: cheap)."""
        rank, world = shard
        device = _resolve_device(device)
        train_x, train_y = self._train_tensors_on(device)
        for batch_index, indices in enumerate(self._pass_order(batch_size, epoch, seed, start_batch), start_batch):
            indices = indices.to(device)
            x = train_x[indices]
            if self.augment:
                x = random_crop_flip(x, _generator(seed, epoch, batch_index), pad=CIFAR_PAD)
            y = train_y[indices]
            if world > 1:
                x, y = x.tensor_split(world)[rank], y.tensor_split(world)[rank]
            yield _to_unit_float(x), y

    def test_tensors(self, device=None) -> tuple[Tensor, Tensor]:
        """The whole (subset) test split as float [0, 1] images and int64 labels."""
        device = torch.device("cpu") if device is None else torch.device(device)
        return _to_unit_float(self.test_x.to(device)), self.test_y.to(device)

    def test_batches(self, batch_size: int, *, device) -> Iterator[tuple[Tensor, Tensor]]:
        """The test split in its fixed order, unaugmented."""
        for start in range(0, self.n_test, batch_size):
            x = self.test_x[start:start + batch_size].to(device)
            yield _to_unit_float(x), self.test_y[start:start + batch_size].to(device)


def random_crop_flip(x: Tensor, generator: torch.Generator, pad: int = CIFAR_PAD) -> Tensor:
    """Zero-pad by ``pad``, take a random crop of the original size and flip each image
    horizontally with probability 1/2, for a whole batch at once.

    Offsets and flips are drawn on the CPU from ``generator`` (so the result does not depend on the
    device), then applied as one gather over the flattened padded images, with the flip folded
    into the column indices.
    """
    batch, channels, height, width = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator).to(x.device)
    flips = torch.randint(0, 2, (batch,), generator=generator).bool().to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(height, device=x.device)                             # (B, H)
    cols_ascending = torch.arange(width, device=x.device)
    cols = offsets[:, 1, None] + torch.where(flips[:, None], cols_ascending.flip(0), cols_ascending)  # (B, W)
    pixel_index = (rows[:, :, None] * (width + 2 * pad) + cols[:, None, :]).flatten(1)              # (B, H*W)
    crops = padded.flatten(2).gather(2, pixel_index[:, None, :].expand(batch, channels, -1))
    return crops.view(batch, channels, height, width)


# --- Subsets --------------------------------------------------------------------------------------

def _check_subset_size(name: str, split: str, requested: int | None, available: int, minimum: int) -> None:
    if requested is None:
        return
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < minimum:
        raise DataError(f"{name}: n_{split}={requested!r} must be an integer >= {minimum}")
    if requested > available:
        raise DataError(f"{name}: n_{split}={requested} is larger than the {split} split ({available} images); "
                        f"lower n_{split} or leave it unset to use the whole split")


def train_subset_indices(n_available: int, n_train: int | None, data_seed: int) -> Tensor:
    """Sorted indices of the ``n_train`` training images picked by ``data_seed`` (all if None).

    Seeded only by ``data_seed``, so every run with that data seed trains on the same subset
    whatever its training seed.
    """
    if n_train is None or n_train == n_available:
        return torch.arange(n_available)
    chosen = torch.randperm(n_available, generator=_generator(data_seed))[:n_train]
    return chosen.sort().values


def _subset_bundle(name: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                   n_train: int | None, n_test: int | None, data_seed: int, augment: bool) -> TensorBundle:
    _check_subset_size(name, "train", n_train, len(train_x), minimum=1)
    _check_subset_size(name, "test", n_test, len(test_x), minimum=0)
    keep = train_subset_indices(len(train_x), n_train, data_seed)
    n_test = len(test_x) if n_test is None else n_test
    return TensorBundle(name, train_x[keep].contiguous(), train_y[keep].contiguous(),
                        test_x[:n_test].contiguous(), test_y[:n_test].contiguous(), augment=augment)


# --- CIFAR-10 / CIFAR-100 via torchvision --------------------------------------------------------

def _load_torchvision_cifar(name: str, root: Path, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from torchvision import datasets

    dataset_class, folder = {"cifar10": (datasets.CIFAR10, "cifar-10-batches-py"),
                             "cifar100": (datasets.CIFAR100, "cifar-100-python")}[name]
    expected = root / folder
    try:
        train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=False)
    except Exception as err:  # missing/corrupt files, or a download that failed (e.g. no network)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{name}: could not load the dataset from '{expected}' ({reason}); place the extracted "
                        f"python-pickle archive there (folder '{folder}') or use --set download=true") from err

    def as_tensors(split) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(split.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
        return images, torch.as_tensor(split.targets, dtype=torch.int64)

    return (*as_tensors(train), *as_tensors(test))


# --- CIFAR-10 (JPEG q75) archive ------------------------------------------------------------------

_JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
_JPEG_FOLDER = "cifar10-jpeg"
_JPEG_CACHE_VERSION = 1
_JPEG_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)\.jpe?g$", re.IGNORECASE)


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


def _load_cifar10_jpeg(root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CIFAR-10 (JPEG q75) from ``root/cifar10-jpeg.tar.gz`` or ``root/cifar10-jpeg/``.

    Fixed order: within each split images are sorted by (file number NNNN, class index), i.e. the
    classes interleave (airplane 0000, automobile 0000, ..., truck 0000, airplane 0001, ...), so the
    first N test images are class-balanced and "the last 9" are well defined. Class indices follow
    ``CIFAR10_CLASSES`` (torchvision's order, which is also the sorted folder names).

    Decoding 60k JPEGs takes seconds, so the decoded uint8 arrays are cached as .npz in
    ``cache_dir()``, keyed by the archive's size and mtime (or the folder's file listing).
    """
    source, key = _jpeg_source(root)
    cache_file = cache_dir() / f"cifar10-jpeg-v{_JPEG_CACHE_VERSION}-{key}.npz"
    arrays = None
    if cache_file.is_file():
        try:
            with np.load(cache_file) as cached:
                arrays = {name: cached[name] for name in ("train_x", "train_y", "test_x", "test_y")}
        except (OSError, ValueError, KeyError) as err:
            warnings.warn(f"ignoring unreadable cache '{cache_file}' ({err}); decoding again")
    if arrays is None:
        arrays = _decode_jpeg_archive(source) if source.is_file() else _decode_jpeg_folder(source)
        _write_cache(cache_file, arrays)
    return tuple(torch.from_numpy(arrays[name]) for name in ("train_x", "train_y", "test_x", "test_y"))


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


# --- Synthetic ------------------------------------------------------------------------------------

SYNTHETIC_SIGNAL = 0.06        # class template amplitude per pixel (RMS), ~2x eps=8/255
SYNTHETIC_CLUTTER = 0.06       # RMS of the random mix of all templates added to every image
SYNTHETIC_PIXEL_NOISE = 0.04   # i.i.d. per-pixel Gaussian noise
SYNTHETIC_GRID = 4             # templates are random GRIDxGRID colour grids, bilinearly upsampled to 32x32
_SYNTHETIC_BLOCK = 250         # images per independently seeded generation block


def _synthetic_templates(data_seed: int, num_classes: int = 10, size: int = 32) -> Tensor:
    """One smooth random colour pattern per class, scaled to unit RMS."""
    grid = torch.randn(num_classes, 3, SYNTHETIC_GRID, SYNTHETIC_GRID, generator=_generator(data_seed, 0))
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
        generator = _generator(data_seed, split_id, block_index)
        strength = 0.75 + 0.5 * torch.rand(_SYNTHETIC_BLOCK, generator=generator)   # per-image amplitude jitter
        mixing = torch.randn(_SYNTHETIC_BLOCK, num_classes, generator=generator) / math.sqrt(num_classes)
        noise = torch.randn(_SYNTHETIC_BLOCK, *image_shape, generator=generator)
        size = min(_SYNTHETIC_BLOCK, count - start)
        signal = SYNTHETIC_SIGNAL * strength[:size, None, None, None] * templates[labels[start:start + size]]
        clutter = SYNTHETIC_CLUTTER * torch.einsum("nk,kchw->nchw", mixing[:size], templates)
        blocks.append(0.5 + signal + clutter + SYNTHETIC_PIXEL_NOISE * noise[:size])
    images = torch.cat(blocks) if blocks else torch.empty(0, *image_shape)
    return images.clamp_(0, 1).mul_(255).round_().to(torch.uint8), labels


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
    templates = _synthetic_templates(data_seed)
    train_x, train_y = _synthetic_split(templates, n_train, data_seed, split_id=1)
    test_x, test_y = _synthetic_split(templates, n_test, data_seed, split_id=2)
    return train_x, train_y, test_x, test_y


# --- ImageNet -------------------------------------------------------------------------------------

IMAGENET_SIZE = 224


class _SeededAugmentation(torch.utils.data.Dataset):
    """ImageFolder samples addressed as ``(index, sample_seed)``: each random transform runs under
    its own seed, so augmentation does not depend on worker assignment or on where a pass resumed."""

    def __init__(self, folder, transform) -> None:
        self.folder = folder
        self.transform = transform

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, int]:
        index, sample_seed = key
        path, label = self.folder.samples[index]
        image = self.folder.loader(path)
        with torch.random.fork_rng(devices=[]):   # leave the caller's global RNG untouched
            torch.manual_seed(sample_seed)
            return self.transform(image), label


class ImageFolderBundle(DataBundle):
    """ImageNet-style ``root/train`` and ``root/val`` folders read through a DataLoader."""

    def __init__(self, name: str, train_folder, test_folder, train_indices: Tensor, n_test: int,
                 augment: bool, num_workers: int) -> None:
        from torchvision import transforms

        super().__init__(name, image_size=IMAGENET_SIZE, n_train=len(train_indices), n_test=n_test)
        self.train_indices = train_indices
        self.num_workers = num_workers
        self.eval_transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(IMAGENET_SIZE),
                                                  transforms.ToTensor()])
        self.train_folder = train_folder
        self.test_folder = test_folder
        self.test_folder.transform = self.eval_transform
        self.train_transform = (transforms.Compose([transforms.RandomResizedCrop(IMAGENET_SIZE),
                                                    transforms.RandomHorizontalFlip(), transforms.ToTensor()])
                                if augment else self.eval_transform)

    def _loader(self, dataset, batch_sampler, device: torch.device):
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batch_sampler, num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(0))  # fixed worker base seed; keeps the global RNG untouched

    def train_batches(self, batch_size: int, *, epoch: int, seed: int, device,
                      start_batch: int = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[Tensor, Tensor]]:
        """One seeded pass; skipped batches are sliced off the index list, so nothing of them is loaded.
        ``shard`` = (rank, world size): only this rank's contiguous rows of each global batch are
        loaded; per-sample seeds keep their augmentation identical to a single process."""
        rank, world = shard
        device = torch.device(device)
        batches = [[(int(self.train_indices[position]), _mix_seed(seed, epoch, batch_index, slot))
                    for slot, position in enumerate(positions.tolist())]
                   for batch_index, positions in enumerate(self._pass_order(batch_size, epoch, seed, start_batch),
                                                           start_batch)]
        if world > 1:
            batches = [[batch[i] for i in torch.arange(len(batch)).tensor_split(world)[rank].tolist()]
                       for batch in batches]
        dataset = _SeededAugmentation(self.train_folder, self.train_transform)
        for x, y in self._loader(dataset, batches, device):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def test_tensors(self, device=None) -> tuple[Tensor, Tensor]:
        raise DataError(f"{self.name}: test_tensors() holds a whole split in memory and exists for CIFAR-sized "
                        f"datasets only; iterate test_batches() instead")

    def test_batches(self, batch_size: int, *, device) -> Iterator[tuple[Tensor, Tensor]]:
        """The first ``n_test`` validation images in ImageFolder order, center-cropped."""
        device = torch.device(device)
        indices = list(range(self.n_test))
        batches = [indices[start:start + batch_size] for start in range(0, self.n_test, batch_size)]
        for x, y in self._loader(self.test_folder, batches, device):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _load_imagenet(root: Path, n_train: int | None, n_test: int | None, data_seed: int, augment: bool,
                   num_workers: int) -> ImageFolderBundle:
    from torchvision.datasets import ImageFolder

    folders = {}
    for split in ("train", "val"):
        path = root / split
        if not path.is_dir():
            raise DataError(f"imagenet: missing folder '{path}'; expected ImageFolder layout "
                            f"{root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG (set data_root to their parent)")
        try:
            folders[split] = ImageFolder(str(path))
        except (FileNotFoundError, OSError) as err:
            raise DataError(f"imagenet: cannot read '{path}' as an ImageFolder ({err})") from err
    if folders["train"].classes != folders["val"].classes:
        raise DataError(f"imagenet: class folders of '{root / 'train'}' and '{root / 'val'}' differ; "
                        f"both need the same <wnid> subfolders")
    _check_subset_size("imagenet", "train", n_train, len(folders["train"]), minimum=1)
    _check_subset_size("imagenet", "test", n_test, len(folders["val"]), minimum=0)
    return ImageFolderBundle("imagenet", folders["train"], folders["val"],
                             train_subset_indices(len(folders["train"]), n_train, data_seed),
                             len(folders["val"]) if n_test is None else n_test, augment, num_workers)


# --- Entry point ----------------------------------------------------------------------------------

def load_data(name: str, root: str | os.PathLike, *, n_train: int | None = None, n_test: int | None = None,
              data_seed: int = 0, augment: bool = True, download: bool = False, num_workers: int = 2) -> DataBundle:
    """Load dataset ``name`` (one of ``DATASETS``) from ``root``.

    ``n_train`` picks a random training subset seeded by ``data_seed`` alone (so it is the same for
    every training seed); ``n_test`` keeps the first images of the test split in its fixed order.
    ``synthetic`` ignores ``root`` and generates ``n_train`` / ``n_test`` images (default 2000 / 500).
    ``download`` lets torchvision fetch CIFAR-10/100; ``num_workers`` is used by ImageNet only.
    Every user-facing problem raises ``DataError``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    if name == "synthetic":
        default_train, default_test = SYNTHETIC_DEFAULT_SIZES
        _check_subset_size(name, "train", n_train, math.inf, minimum=1)
        _check_subset_size(name, "test", n_test, math.inf, minimum=0)
        tensors = make_synthetic(n_train or default_train, default_test if n_test is None else n_test, data_seed)
        return TensorBundle(name, *tensors, augment=augment)
    root = Path(root).expanduser()
    if name == "imagenet":
        return _load_imagenet(root, n_train, n_test, data_seed, augment, num_workers)
    tensors = _load_cifar10_jpeg(root) if name == "cifar10-jpeg" else _load_torchvision_cifar(name, root, download)
    return _subset_bundle(name, *tensors, n_train=n_train, n_test=n_test, data_seed=data_seed, augment=augment)
