"""The paper's numbers: ``paper_values.csv`` next to this module, transcribed once from the paper.

One line per (table, row, metric) with its value, unit and where in the paper it stands. Table and
row keys are those of :mod:`.design` (a figure's reference lines too); tables print every value
next to ours, so a transcription error shows as an odd difference, never as a silent change.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

PAPER_VALUES_CSV = Path(__file__).with_name("paper_values.csv")
COLUMNS = ("table", "row", "metric", "value", "unit", "source")


@lru_cache(maxsize=1)
def _paper_rows() -> tuple[tuple[str, str, str, float, str, str], ...]:
    with PAPER_VALUES_CSV.open(newline="") as handle:
        return tuple((r["table"], r["row"], r["metric"], float(r["value"]), r["unit"], r["source"])
                     for r in csv.DictReader(handle))


def paper_values():
    """All transcribed numbers as a DataFrame (table, row, metric, value, unit, source)."""
    import pandas as pd   # local: pandas costs ~0.5 s, and the plan (Snakemake parse time) needs none
    return pd.DataFrame(list(_paper_rows()), columns=list(COLUMNS))


def paper_value(table: str, row: str, metric: str) -> float | None:
    """The paper's number for one cell, or None where the paper has none."""
    for t, r, m, value, _, _ in _paper_rows():
        if (t, r, m) == (table, row, metric):
            return value
    return None
