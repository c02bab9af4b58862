"""ImageNet-style ``root/train`` and ``root/val`` ImageFolders, read through a DataLoader with
per-sample seeded augmentation (so passes keep the determinism contract of ``freeadv.data.bundle``).

The validation split is read in a fixed order whose first 5,000 images are RobustBench's ImageNet
subset when the real validation files are there (freeadv.data.subsets.imagenet_test_order), so
``n_test`` and an attack's first n follow RobustBench's protocol.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import torch
import torch.utils.data
from torch import Tensor

from .bundle import DataBundle, mix_seed
from .catalog import DATASETS, DatasetSpec, DataError, LoadOptions
from .subsets import check_subset_size, imagenet_test_order, split_indices

IMAGENET_SIZE = DATASETS["imagenet"].input_size   # the side of the crops the model sees


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
                 augment: bool, num_workers: int, validation_indices: Tensor | None = None,
                 test_order: list[int] | None = None, test_subset: str = "ImageFolder order") -> None:
        from torchvision import transforms

        super().__init__(name, image_size=IMAGENET_SIZE, n_train=len(train_indices), n_test=n_test)
        self.train_indices = train_indices
        empty = torch.empty(0, dtype=torch.int64)
        self.validation_indices = empty if validation_indices is None else validation_indices
        self.n_validation = len(self.validation_indices)
        self.num_workers = num_workers
        self.test_order = list(range(len(test_folder))) if test_order is None else test_order
        self.test_subset = test_subset   # a one-line account of which images the first 5,000 are
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
        batches = [[(int(self.train_indices[position]), mix_seed(seed, epoch, batch_index, slot))
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
        """The first ``n_test`` validation images in the split's fixed order (``test_order``),
        center-cropped."""
        device = torch.device(device)
        indices = self.test_order[:self.n_test]
        batches = [indices[start:start + batch_size] for start in range(0, self.n_test, batch_size)]
        for x, y in self._loader(self.test_folder, batches, device):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def validation_batches(self, batch_size: int, *, device) -> Iterator[tuple[Tensor, Tensor]]:
        """The validation images (held out of the training folder) in their fixed order, center-cropped
        as the test images are."""
        if not self.n_validation:
            return super().validation_batches(batch_size, device=device)
        return self._validation_batches(batch_size, torch.device(device))

    def _validation_batches(self, batch_size: int, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        keys = [(int(index), 0) for index in self.validation_indices]   # the eval transform draws nothing
        batches = [keys[start:start + batch_size] for start in range(0, len(keys), batch_size)]
        dataset = _SeededAugmentation(self.train_folder, self.eval_transform)
        for x, y in self._loader(dataset, batches, device):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def load_imagenet(spec: DatasetSpec, root: Path, options: LoadOptions) -> ImageFolderBundle:
    """``root/train`` and ``root/val`` (the spec's files) as an ``ImageFolderBundle``, checked to
    share their classes; ``n_validation`` images of ``train`` held out as validation images
    (freeadv.data.subsets)."""
    from torchvision.datasets import ImageFolder

    name, folders = spec.name, {}
    train_name, test_name = spec.files
    for split in (train_name, test_name):
        path = root / split
        if not path.is_dir():
            raise DataError(f"{name}: missing folder '{path}'; expected ImageFolder layout {root}/{train_name}/<wnid>/"
                            f"*.JPEG and {root}/{test_name}/<wnid>/*.JPEG (set data_root to their parent)")
        try:
            folders[split] = ImageFolder(str(path))
        except (FileNotFoundError, OSError) as err:
            raise DataError(f"{name}: cannot read '{path}' as an ImageFolder ({err})") from err
    train, test = folders[train_name], folders[test_name]
    if train.classes != test.classes:
        raise DataError(f"{name}: class folders of '{root / train_name}' and '{root / test_name}' differ; "
                        f"both need the same <wnid> subfolders")
    check_subset_size(name, "train", options.n_train, len(train), minimum=1)
    check_subset_size(name, "test", options.n_test, len(test), minimum=0)
    train_indices, validation_indices = split_indices(name, len(train), options.n_train, options.n_validation,
                                                      options.data_seed)
    order = imagenet_test_order([path for path, _ in test.samples], list(test.targets))
    if not order.robustbench:   # the AutoAttack evaluation is then not RobustBench's: say so once
        warnings.warn(f"{name}: test order of '{root / test_name}': {order.account}", stacklevel=2)
    return ImageFolderBundle(name, train, test, train_indices, len(test) if options.n_test is None else options.n_test,
                             options.augment, options.num_workers, validation_indices, order.order, order.account)
