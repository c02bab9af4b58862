"""Reading the result files of a run: each validated against its schema, tied to its run's weights.

Tables, figures, curves and claims read every number through :func:`read_result`, so a damaged or
hand-edited file, or a result of other weights, is refused in one line naming the file before it
can reach a table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..attacks import ATTACKS
from ..attacks.spec import kind_flags
from ..schemas import BadFile, read_checked
from ..stats import wilson


class MissingResult(FileNotFoundError):
    """A result file a table or figure needs does not exist (yet)."""


class BadResult(BadFile):
    """A result file that parses but cannot be a freeadv result (one line: the file, the key, the value)."""


def result_kind(relative: str | Path) -> str | None:
    """The kind of result a path of the layout holds: train.json, an eval under ``evals/``; None
    elsewhere (the file's own ``kind`` then names its schema)."""
    parts = Path(relative).parts
    if parts and parts[-1] == "train.json":
        return "train"
    return "eval" if "evals" in parts[:-1] else None


def read_result(results_dir: str | Path, relative: str, kind: str | None = None,
                require: tuple[str, ...] = ()) -> dict[str, Any]:
    """A result JSON, validated against its schema (:mod:`freeadv.schemas`; ``kind`` or the one its
    path implies): every accuracy (``*_acc``) a percentage in [0, 100] or null, times positive, no
    NaN, the keys the readers use (and ``require``) present, so a damaged or hand-edited file
    cannot put an impossible number into a table, a figure or a claim."""
    path = Path(results_dir) / relative
    if not path.exists():
        raise MissingResult(f"result file '{path}' is missing; build it with snakemake (it is an input of this target)")
    return read_checked(path, kind or result_kind(relative), error=BadResult, require=require)


def with_kind_flags(ev: dict[str, Any]) -> dict[str, Any]:
    """An eval record without the kind's flags in its ``attack`` entry gets them from the
    registry, so its sanity checks still run."""
    attack = ev["attack"]
    if "gradient" in attack or attack["kind"] not in ATTACKS:
        return ev
    return {**ev, "attack": {**attack, **kind_flags(attack["kind"])}}


def check_weights(result: dict[str, Any], train: dict[str, Any] | None, file: str | Path) -> None:
    """Refuse a result computed on other weights than its run's: the result's ``weights_digest``
    against the train.json digest of the weights it names (``weights``: final or best). A side
    without a digest (results written before digests were recorded) cannot be checked and passes."""
    if not train:
        return
    key = "best_weights_digest" if result.get("weights") == "best" else "weights_digest"
    ours, runs = result.get("weights_digest"), train.get(key)
    if ours and runs and ours != runs:
        raise BadResult(f"result file '{file}' was computed on weights {str(ours)[:12]}, not on those its run's "
                        f"train.json records ({key} {str(runs)[:12]}); compute it again on the run's weights")


def metric_value(result: dict[str, Any], field: str) -> float:
    value = result.get(field)
    return float("nan") if value is None else float(value)


def accuracy_interval(result: dict[str, Any], field: str) -> tuple[float, float]:
    """The 95% Wilson interval, in points, of an accuracy field of an eval on its n images.

    Wilson rather than the binomial SE: robust accuracies of natural models sit at 0 and clean ones
    near 100, where sqrt(p(1-p)/n) reads "0.00 +- 0.00"; 0/1,000 is [0, 0.38] instead. The count
    comes from the eval's ``*_correct`` field (older evals: the accuracy times n, rounded)."""
    n, value = result.get("n"), result.get(field)
    if not n or value is None:
        return float("nan"), float("nan")
    correct = result.get(field.replace("_acc", "_correct"))
    return wilson(int(correct) if correct is not None else round(float(value) * n / 100), int(n))
