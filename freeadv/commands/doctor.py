"""``freeadv doctor``: the command line of :mod:`freeadv.tools.doctor`."""
from __future__ import annotations

import argparse

from pathlib import Path

from ..tools import doctor as tool
from ..tools.doctor import run_checks
from . import alias


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check versions, devices, data roots and write access before a long run",
                       description=tool.__doc__)
    p.add_argument("--config", default="config/config.yaml" if Path("config/config.yaml").exists() else None,
                   help="workflow config whose data roots to check (default config/config.yaml if present)")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="another folder that should hold datasets (repeatable), e.g. ../shared/data")
    alias(p, "--out", "out_dir", action="append")
    p.add_argument("--out-dir", action="append", default=None, metavar="DIR",
                   help="folder that must be writable (repeatable; default results, figures, logs)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(args.config, args.data_root, args.out_dir or ["results", "figures", "logs"])
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.status == "FAIL"]
    print(f"{len(checks)} checks: {len(failed)} failed, {sum(c.status == 'WARN' for c in checks)} warnings")
    return 1 if failed else 0
