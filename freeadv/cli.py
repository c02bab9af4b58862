"""Command line: ``freeadv COMMAND`` (also ``python -m freeadv``).

Every subcommand validates its input before any long work starts and exits with one clear line on
bad input (exit code 2). Each module in COMMANDS defines ``register(sub)``.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

from . import __version__
from .errors import UserError

EXAMPLES = """examples:
  freeadv train --set dataset=synthetic --set arch=small_cnn --set iterations=200 --set method=free --set replay=4 --out-dir runs/free4
  freeadv attack --run runs/free4 --attack pgd --steps 20 --restarts 1 --out runs/free4/pgd20.json
  freeadv export --run runs/free4 --eval runs/free4/pgd20.json --out-dir export/free4
  freeadv claims --scale mini          # the paper's claims checked on results/mini (PASS / FAIL)
"""

# The modules that register subcommands, in the order `freeadv --help` lists them.
COMMANDS = tuple(f"freeadv.commands.{name}" for name in (
    "train", "attack", "bench", "report", "cost", "estimate", "doctor", "analysis", "export", "gpucheck",
    "fetch_data", "slots"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="freeadv", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"freeadv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def one_line(err: BaseException) -> str:
    """A user error as one line that names the culprit: the file of an OSError (disk full, read-only,
    a folder where a file was expected), the file and position of a YAML error."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.strerror}: '{err.filename}'"
    mark = getattr(err, "problem_mark", None)
    if mark is not None:   # yaml.MarkedYAMLError
        return f"'{mark.name}' is not valid YAML (line {mark.line + 1}, column {mark.column + 1}: {err.problem})"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or `kill`'s stop), raised where Python raises KeyboardInterrupt for
    SIGINT, so that both unwind the same way: files are written whole or not at all."""
    signum = signal.SIGTERM


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated while a command runs (in the main thread; else left as it is)."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:   # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(command: str, stop: KeyboardInterrupt) -> int:
    """One line for a stopped command (the note the command attached, e.g. where training stopped
    and that it resumes); the shell's exit code for the signal: 128 + its number."""
    note = getattr(stop, "note", None) or "interrupted"
    print(f"freeadv {command}: {note}", file=sys.stderr)
    return 128 + int(getattr(stop, "signum", signal.SIGINT))


def main(argv: list[str] | None = None) -> int:
    """Run one command. User errors (freeadv.errors.UserError and its subclasses ConfigError,
    DataError, CheckpointError, OutputError...; OSError; YAML errors) end in one line and exit
    code 2; SIGINT (Ctrl-C) and SIGTERM in one line and exit code 130 or 143; anything else is a
    bug and keeps its traceback."""
    import yaml

    from .plugins import PluginError, load_plugins

    try:
        load_plugins()   # before the parsers: a plugin's method keys and names are in the help
    except PluginError as err:
        print(f"freeadv: error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_raises():
            return args.func(args)
    except KeyboardInterrupt as stop:
        return interrupted(args.command, stop)
    except (UserError, OSError, yaml.YAMLError) as err:
        print(f"freeadv {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
