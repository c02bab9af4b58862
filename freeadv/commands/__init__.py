"""The subcommands of ``freeadv``: each module defines ``register(sub)``, which adds its
subparsers and sets ``func`` to a ``cmd_<command>`` handler (freeadv.cli lists the modules).

Handlers import only what their command runs, so the library modules a command depends on are
the import closure of its module; the workflow's rules derive their code inputs from that.

One spelling per concept across commands: ``--batch-size``, ``--data-root``, ``--device``,
``--out`` for a file and ``--out-dir`` for a folder, ``--scale`` (default DEFAULT_SCALE).
"""
import argparse

DEFAULT_SCALE = "mini"   # the scale whose plan and results the repository holds


def alias(parser: argparse.ArgumentParser, spelling: str, dest: str, **kwargs) -> None:
    """A former spelling of an option: accepted, hidden from --help."""
    parser.add_argument(spelling, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)

