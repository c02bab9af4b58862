"""Subcommands used by the Snakemake workflow: figure data, tables, figures."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands; each parser sets ``func`` to its handler."""
