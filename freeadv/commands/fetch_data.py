"""``freeadv fetch-data``: fetch or check one dataset's files before any job reads them (freeadv/data/fetch.py).

  freeadv fetch-data cifar10 --data-root data --download       (torchvision's archive, md5 checked)
  freeadv fetch-data cifar10-jpeg --data-root ../shared/data   (the archive's digest and gzip CRC)

The workflow runs it once per dataset of a scale (rule data, on the machine that runs Snakemake)
and every training job waits for its stamp, so no two jobs download into one folder and compute
nodes without internet never need it.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-data", help="fetch (when allowed) or check one dataset's files under a data root",
                       description="Download DATASET into --data-root when its record allows it and --download "
                                   "asks (CIFAR-10/100 via torchvision), else check its files are there (an "
                                   "archive by its digest and CRC); one line on what was found, or one line "
                                   "naming the folder to fill.")
    p.add_argument("dataset", help="a registered dataset: cifar10, cifar100, cifar10-jpeg, imagenet, synthetic, ...")
    p.add_argument("--data-root", type=Path, help="folder holding the dataset's files (none for generated data)")
    p.add_argument("--download", action="store_true", help="download when missing (datasets torchvision fetches)")
    p.add_argument("--stamp", type=Path, help="write the one line here once the dataset is there (the "
                                              "workflow's rule data)")
    p.set_defaults(func=cmd_fetch_data)


def cmd_fetch_data(args: argparse.Namespace) -> int:
    from ..data.fetch import fetch_dataset
    from ..io import atomic_write_text, check_output_file

    if args.stamp is not None:
        check_output_file(args.stamp, flag="--stamp")
    found = fetch_dataset(args.dataset, args.data_root, args.download)
    if args.stamp is not None:
        atomic_write_text(args.stamp, found + "\n")
    print(f"[freeadv] {found}")
    return 0
