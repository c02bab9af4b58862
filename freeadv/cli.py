"""Command line: ``freeadv COMMAND`` (also ``python -m freeadv``).

Every subcommand validates its input before any long work starts and exits with one clear line on
bad input (exit code 2). Each module in COMMANDS defines ``register(sub)``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .keys import ConfigError

EXAMPLES = """examples:
  freeadv train --config config/smoke.yaml --set method=free --set replay=4 --out runs/free4
  freeadv attack --run runs/free4 --attack pgd --steps 20 --restarts 1 --out runs/free4/pgd20.json
  freeadv export --run runs/free4 --eval runs/free4/pgd20.json --out export/free4
  freeadv claims --scale mini          # the paper's claims checked on results/mini (PASS / FAIL)
"""

# The modules that register subcommands, in the order `freeadv --help` lists them.
COMMANDS = ("freeadv.commands.train", "freeadv.commands.attack", "freeadv.bench", "freeadv.commands.report",
            "freeadv.commands.cost", "freeadv.estimate", "freeadv.doctor", "freeadv.commands.analysis",
            "freeadv.commands.export", "freeadv.gpucheck")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="freeadv", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as err:   # DataError, CheckpointError are among them
        print(f"freeadv {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
