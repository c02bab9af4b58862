"""Fetch or check a dataset's files once, before any job reads them.

Training jobs that each fetch a dataset on first use race on the same folder and, on compute nodes
without internet, all fail; one check (or download) ahead of them fails once, with the folder to
fill. Generated datasets (no ``files`` in their record) have nothing to fetch.
"""
from __future__ import annotations

from pathlib import Path

from .catalog import DATASETS, DataError, import_function

_TORCHVISION_LOADER = "freeadv.data.cifar:load_cifar"   # the datasets torchvision downloads and checks


def fetch_dataset(name: str, root: Path | None, download: bool = False) -> str:
    """One line on what ``root`` holds of dataset ``name``, after downloading it when its record
    allows and ``download`` asks; DataError (one line naming the folder to fill) when it is missing
    or damaged."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if not spec.files:
        return f"{name}: generated, no files to fetch"
    if root is None:
        raise DataError(f"{name}: no data_root configured; set data.{name}.data_root to the folder holding "
                        f"{' or '.join(spec.files)}")
    if spec.loader == _TORCHVISION_LOADER:
        return _torchvision(name, root, download)
    present = [entry for entry in spec.files if (root / entry).exists()]
    needs_all = spec.layout is not None
    if not present or (needs_all and len(present) < len(spec.files)):
        wanted = (" and ".join(f"{entry}/" for entry in spec.files) + f" ({spec.layout})" if needs_all
                  else " or ".join(spec.files))
        raise DataError(f"{name}: '{root}' lacks {wanted}; fill that folder (set data.{name}.data_root to "
                        f"another one that holds them)")
    first = root / present[0]
    if spec.archive_check and first.is_file():
        return f"{name}: '{first}': {import_function(spec.archive_check)(first)}"
    return f"{name}: '{root}' holds {', '.join(present)}"


def _torchvision(name: str, root: Path, download: bool) -> str:
    """Download into ``root`` when asked and missing, then load both splits (torchvision checks
    every file's md5): a half-downloaded or damaged copy fails here, not in a training job."""
    from .cifar import load_torchvision_cifar

    folder = root / DATASETS[name].files[0]
    try:
        train_x, _, test_x, _ = load_torchvision_cifar(name, root, download)
    except DataError as err:
        cause = err.__cause__
        reason = (str(cause).splitlines() or [type(cause).__name__])[0] if cause else str(err)
        how = f"the download failed ({reason})" if download else f"download is off (data.{name}.download: false)"
        raise DataError(f"{name}: '{folder}' is missing or incomplete and {how}; fill '{root}' with "
                        f"the extracted python-pickle archive (folder {folder.name}/), e.g. on a machine with "
                        f"internet: freeadv fetch-data {name} --data-root {root} --download") from None
    return f"{name}: '{folder}' holds {len(train_x):,} train and {len(test_x):,} test images (md5 checked)"
