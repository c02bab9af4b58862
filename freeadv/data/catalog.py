"""Facts about the datasets, one record each, and the error every data problem raises.

Each dataset is one :class:`DatasetSpec` in :data:`DATASETS`: its name, title, classes,
normalisation, split sizes, input size, the paper's attack step, the training defaults of its
schedule, where its files live and which function loads it. Config, the experiment plan, doctor,
bench and estimate read these records, so a new dataset is one :func:`register_dataset` call plus
its loader.

Deliberately free of torch, torchvision, numpy and PIL: the experiment plan and the Snakefile read
these names at parse time, where importing torch would cost seconds (and may not be installed).
``freeadv.models`` takes its default normalisation from here too, so each number exists once.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..errors import UserError
from ..registry import Registry


class DataError(UserError):
    """One-line, user-facing message: names the dataset, the path looked at, what to do."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the library knows about one dataset before its files are read.

    ``loader`` is ``"module:function"``, imported on the first load so that reading the record
    costs no torch: ``function(spec, root, options)`` returns a ``DataBundle`` (freeadv.data.bundle;
    ``root`` is the data root as a Path, or None where a caller of generated data gives none;
    ``options`` is a :class:`LoadOptions`). A dataset has fixed ``split_sizes``; or, when its
    images are generated, ``default_sizes``: the (train, test) images of a run that sets neither
    ``n_train`` nor ``n_test``; or, a user's dataset (freeadv.data.custom), ``sized_by_files``: as
    many as its files hold, known once they are read.
    """
    name: str
    title: str                                   # the tables' word for it: "CIFAR-10 (JPEG q75)"
    num_classes: int
    mean: tuple[float, ...]                      # per-channel statistics of the training images,
    std: tuple[float, ...]                       # applied by the model's input layer
    loader: str
    split_sizes: tuple[int, int] | None = None   # (train, test) images of the full splits
    default_sizes: tuple[int, int] | None = None
    input_size: int = 32                         # the side of the square images the model sees
    paper_step: float = 2.0                      # the paper's attack step, pixels /255
    paper_family: str | None = None              # the paper's dataset it is, or stands in for
    # Training config defaults of the dataset's schedule, over freeadv.config.KEYS.
    train_defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # What ``freeadv doctor`` looks for under data_root: any one of ``files``, or every one of them
    # when ``layout`` names the layout they make up; none: the loader reads no files.
    files: tuple[str, ...] = ()
    layout: str | None = None
    download: bool = False                       # torchvision fetches it into data_root on request
    archive_check: str | None = None             # "module:function" checking files[0], an archive
    sized_by_files: bool = False                 # neither sizes: its files decide (freeadv.data.custom)

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.mean, self.std


@dataclass(frozen=True)
class LoadOptions:
    """What a run asks of a loader besides the data root (load_data's keywords, documented there)."""
    n_train: int | None = None
    n_test: int | None = None
    data_seed: int = 0
    augment: bool = True
    download: bool = False
    num_workers: int = 2
    n_validation: int = 0


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def import_function(path: str) -> Callable[..., Any]:
    """The function at ``"module:function"``, importing its module now: a record names its loader
    and archive check by path, so reading the catalog imports no torch."""
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to DATASETS after the checks a record can fail before any file is read, so a
    bad record fails where it is declared rather than in the first run that trains on it."""
    def bad(what: str) -> TypeError:
        return TypeError(f"dataset {spec.name!r}: {what}")

    if spec.num_classes < 2:
        raise bad(f"num_classes must be at least 2, got {spec.num_classes}")
    if not spec.mean or len(spec.mean) != len(spec.std):
        raise bad(f"mean {spec.mean} and std {spec.std} need one value per channel each")
    module, _, function = spec.loader.partition(":")
    if not module or not function:
        raise bad(f"loader {spec.loader!r} is not 'module:function'")
    if [spec.split_sizes is not None, spec.default_sizes is not None, spec.sized_by_files].count(True) != 1:
        raise bad("give split_sizes (fixed splits), default_sizes (generated images) or sized_by_files, one of them")
    if spec.layout is not None and not spec.files:
        raise bad(f"layout {spec.layout!r} names no files")
    return DATASETS.add(spec.name, spec)


class _Column(Mapping):
    """One fact of every registered dataset, by name, read from DATASETS on each access: a dataset
    registered after import appears in it too. Datasets whose fact is None are left out."""

    def __init__(self, fact: Callable[[DatasetSpec], Any]) -> None:
        self._fact = fact

    def __getitem__(self, name: str) -> Any:
        value = self._fact(DATASETS[name])
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name, spec in DATASETS.items() if self._fact(spec) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


def dataset_facts(fact: Callable[[DatasetSpec], Any]) -> Mapping[str, Any]:
    """``fact(spec)`` of each registered dataset by name, kept current as datasets register."""
    return _Column(fact)


# Per-channel statistics of the training images, applied by the model's input layer.
# CIFAR-10's red std is 0.2470: every committed run was trained with it (``freeadv train`` builds
# the model from ``MEAN_STD`` of its dataset), and the model zoo's builders default to it too.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CIFAR_SIZES = (50_000, 10_000)

register_dataset(DatasetSpec(
    "cifar10", "CIFAR-10", 10, CIFAR10_MEAN, CIFAR10_STD, "freeadv.data.cifar:load_cifar",
    split_sizes=_CIFAR_SIZES, paper_family="cifar10", files=("cifar-10-batches-py",), download=True))
register_dataset(DatasetSpec(
    "cifar100", "CIFAR-100", 100, CIFAR100_MEAN, CIFAR100_STD, "freeadv.data.cifar:load_cifar",
    split_sizes=_CIFAR_SIZES, paper_family="cifar100", files=("cifar-100-python",), download=True))
register_dataset(DatasetSpec(
    "cifar10-jpeg", "CIFAR-10 (JPEG q75)", 10, CIFAR10_MEAN, CIFAR10_STD, "freeadv.data.jpeg:load_jpeg",
    split_sizes=_CIFAR_SIZES, paper_family="cifar10", train_defaults={"data_root": "../shared/data"},
    files=("cifar10-jpeg.tar.gz", "cifar10-jpeg"), archive_check="freeadv.data.jpeg:check_archive"))
register_dataset(DatasetSpec(
    "imagenet", "ImageNet", 1000, IMAGENET_MEAN, IMAGENET_STD, "freeadv.data.imagenet:load_imagenet",
    split_sizes=(1_281_167, 50_000), input_size=224, paper_step=1.0, paper_family="imagenet",
    # the paper's section 7; the official ImageNet code's SGD(model.parameters(), weight_decay=1e-4)
    # decays BN and biases too (weight_decay_all)
    train_defaults={"arch": "resnet50", "batch_size": 256, "iterations": None, "epochs": 90,
                    "lr_step_epochs": 30, "weight_decay": 1e-4, "eps": 4.0, "pgd_step_size": 1.0,
                    "weight_decay_all": True},
    files=("train", "val"), layout="ImageFolder layout"))
register_dataset(DatasetSpec(
    "synthetic", "synthetic", 10, CIFAR10_MEAN, CIFAR10_STD, "freeadv.data.synthetic:load_synthetic",
    default_sizes=(2000, 500),
    # smoke runs and tests: passes of a few batches, where 512-image PGD-10 checks would cost 5x the training
    train_defaults={"arch": "small_cnn", "iterations": 400, "batch_size": 64, "log_every": 50,
                    "checkpoint_every": 100, "robust_eval_n": 64}))

# The facts by dataset name, for the modules that read one fact of many datasets.
NUM_CLASSES: Mapping[str, int] = dataset_facts(lambda spec: spec.num_classes)
MEAN_STD: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = dataset_facts(lambda spec: spec.mean_std)
# (train, test) images of each real dataset's full splits; generated datasets have no fixed size.
SPLIT_SIZES: Mapping[str, tuple[int, int]] = dataset_facts(lambda spec: spec.split_sizes)
SYNTHETIC_DEFAULT_SIZES = DATASETS["synthetic"].default_sizes   # (train, test) when n_train / n_test are None

# torchvision's order, which is also the sorted class-folder names of the cifar10-jpeg archive.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The published cifar10-jpeg archive (../shared/data/README.md): its digest and size. A file of this
# size with another digest is a damaged copy; any other archive is checked by its gzip CRC and layout.
CIFAR10_JPEG_SHA256 = "a20f75dab73b9c5c6f54e35c84da477e385f34a4615399fdbaef48b0e1e1c437"
CIFAR10_JPEG_BYTES = 19_437_034
