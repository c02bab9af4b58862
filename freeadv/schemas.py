"""JSON Schemas (Draft 2020-12) of every file a report reads, and the one reader that checks them.

Tables, figures, claims, the cost table and export read only files: train.json (``freeadv train``),
eval JSONs (``freeadv attack``), loss-surface and adv-examples JSONs (``freeadv analysis``), the
interleaved step timings (``freeadv bench``, ``cost/interleaved.json``), the plan (``plan.json``)
and Snakemake benchmark TSVs. :func:`read_checked` reads one of them and refuses, in one line that
names the file and the key, anything a writer cannot have produced: an accuracy outside [0, 100], a
time that is not positive, a count that is not a positive integer, a missing key, a NaN or an
infinity (Python's json module reads them), a surface without images, bytes that are not UTF-8.

Each schema requires only the keys its readers use, so files written before a key existed still
validate; a key that is present is checked wherever it sits.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from .errors import UserError


class BadFile(UserError):
    """A file a report reads that cannot be what its writer wrote (one line: the file, the key, why)."""


# --- building blocks ---------------------------------------------------------------------------

ACCURACY = {"type": ["number", "null"], "minimum": 0, "maximum": 100}
PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
POSITIVE_TIME = {"type": "number", "exclusiveMinimum": 0}
TIME = {"type": ["number", "null"], "minimum": 0}           # a duration that may legitimately be 0
RATE = {"type": ["number", "null"], "exclusiveMinimum": 0}   # images per second: null when untimed
COUNT = {"type": "integer", "minimum": 0}
POSITIVE = {"type": "integer", "minimum": 1}
BITMAP = {"type": "string"}                                   # per-image flags (freeadv.stats.pack_flags)
NUMBERS = {"type": "array", "items": {"type": "number"}}
MEMORY = {"type": ["number", "null"], "minimum": 0}         # MiB of device memory: null off CUDA

# Every object of a result, at any level a schema names: accuracies and durations by their key's ending.
RECORD = {"type": "object", "patternProperties": {
    r"_acc$": ACCURACY,
    r"(_seconds|_minutes|^seconds)$": TIME,
}}


def record(required: list[str] = (), **properties: Any) -> dict[str, Any]:
    """An object schema with RECORD's key-ending rules, ``properties`` and ``required`` keys."""
    return {**RECORD, "required": list(required), "properties": properties}


TRAIN = record(
    ["config"],
    kind={"const": "train"}, config={"type": "object"},
    train_minutes=POSITIVE_TIME, train_seconds=POSITIVE_TIME, wall_seconds_this_process=POSITIVE_TIME,
    wall_seconds_last_session=POSITIVE_TIME,   # the same, under its former name in committed results
    train_cpu_seconds=TIME, train_cpu_per_wall={"type": ["number", "null"], "minimum": 0},
    images_per_second=RATE, seconds_per_iteration=TIME,
    final_clean_acc_eval_n=ACCURACY, eval_n=POSITIVE, n_train={"type": ["integer", "null"], "minimum": 1},
    iterations=COUNT, iterations_trained=COUNT, kept_weights_iteration=COUNT, resumes=COUNT,
    device={"type": "object"}, git={"type": ["object", "null"]},
    log={"type": "array", "items": RECORD}, loss_history={"type": "array", "items": RECORD},
    robust_checks={"type": "array", "items": RECORD},
    catastrophic_overfitting={"type": ["object", "null"]}, best={"type": ["object", "null"]},
    peak_memory_mb=MEMORY,
)

SUB_ATTACK = record(["attack"], attack={"type": "string"}, robust=BITMAP, robust_acc=PERCENT,
                    robust_correct=COUNT, seconds=TIME)

EVAL = record(
    ["n", "clean_acc"],
    kind={"const": "eval"}, n=POSITIVE, clean_acc=PERCENT, robust_acc=PERCENT,
    clean_correct=COUNT, robust_correct=COUNT, wall_seconds=POSITIVE_TIME, images_per_second=RATE,
    attack=record(eps={"type": ["number", "null"], "minimum": 0}, steps=COUNT, restarts=POSITIVE,
                  n=POSITIVE, batch_size=POSITIVE, kind={"type": "string"}),
    per_image=record(["n", "clean", "robust"], first=COUNT, n=POSITIVE, clean=BITMAP, robust=BITMAP),
    sub_attacks={"type": "array", "items": SUB_ATTACK},
    train_config={"type": "object"}, warnings={"type": "array"},
)

SURFACE_IMAGE = record(["index", "losses"], index=COUNT, label=COUNT, clean_loss={"type": "number"},
                       pgd20_loss={"type": "number"}, ball_max_loss={"type": "number"},
                       losses={"type": "array", "minItems": 1, "items": {**NUMBERS, "minItems": 1}})

LOSS_SURFACE = record(
    ["axis", "images"],
    kind={"const": "loss-surface"}, axis={**NUMBERS, "minItems": 1},
    images={"type": "array", "minItems": 1, "items": SURFACE_IMAGE},
    grid=POSITIVE, span={"type": "number", "exclusiveMinimum": 0},
)

PIXELS = {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "array", "items": {
    "type": "integer", "minimum": 0, "maximum": 255}}}}    # uint8 [channel][row][column]

ADV_EXAMPLES = record(
    ["indices", "labels", "class_names", "clean_images", "adversarial_images", "adversarial_predictions"],
    kind={"const": "adv-examples"},
    indices={"type": "array", "minItems": 1, "items": COUNT}, labels={"type": "array", "items": COUNT},
    class_names={"type": "array", "items": {"type": "string"}},
    clean_images={"type": "array", "items": PIXELS}, adversarial_images={"type": "array", "items": PIXELS},
    clean_predictions={"type": "array", "items": COUNT}, adversarial_predictions={"type": "array", "items": COUNT},
    wall_seconds=POSITIVE_TIME,
)

BENCH_ROW = record(
    ["kind", "median_s"],
    kind={"type": "string"}, method={"type": "string"}, replay=POSITIVE, reps=POSITIVE,
    median_s=POSITIVE_TIME, min_s=POSITIVE_TIME, max_s=POSITIVE_TIME,
    images_per_s=RATE, relative_to_natural=RATE, tflop_per_s=RATE,
    flops={"type": ["integer", "null"], "minimum": 0}, mfu={"type": ["number", "null"], "minimum": 0},
    peak_memory_mb=MEMORY,
)

BENCH = record(["rows"], kind={"const": "bench"}, rows={"type": "array", "minItems": 1, "items": BENCH_ROW},
               batch=POSITIVE, reps=POSITIVE, warmup=COUNT)

PLAN = record(
    ["models", "targets"],
    scale={"type": "string"},
    models={"type": "object", "additionalProperties": record(["config"], config={"type": "object"})},
    targets={"type": "object", "additionalProperties": record(available={"type": "boolean"},
                                                             rows={"type": "array"}, analyses={"type": "array"})},
    cost_bench=record(["file"], file={"type": "string"}),
)

# A file whose kind is not known (no ``kind`` key, no kind asked): an object with sound accuracies and times.
RESULT = record()

SCHEMAS: dict[str, dict[str, Any]] = {
    "train": TRAIN, "eval": EVAL, "loss-surface": LOSS_SURFACE, "adv-examples": ADV_EXAMPLES,
    "bench": BENCH, "plan": PLAN, "result": RESULT,
}
WRITERS = {"train": "freeadv train", "eval": "freeadv attack", "loss-surface": "freeadv analysis",
           "adv-examples": "freeadv analysis", "bench": "freeadv bench", "plan": "freeadv plan"}
VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in SCHEMAS.items()}

# Snakemake benchmark TSVs: each measured value a number >= 0 (or NA); bounded, so that sums stay finite.
MAX_BENCHMARK_VALUE = 1e9   # seconds (31 years) or MB (a petabyte): no job measures more
BENCHMARK_VALUE = {"type": "number", "minimum": 0, "maximum": MAX_BENCHMARK_VALUE}
BENCHMARK_VALIDATOR = Draft202012Validator(BENCHMARK_VALUE)


# --- reading -----------------------------------------------------------------------------------

def read_text(path: str | Path, *, label: str = "result file", error: type[Exception] = BadFile) -> str:
    """The UTF-8 text of ``path``; one line naming the file when it is unreadable or not UTF-8."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{label} '{path}' does not exist") from None
    except OSError as err:
        raise error(f"{label} '{path}' cannot be read: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{label} '{path}' is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}), "
                    "so not a file freeadv wrote") from None


def load(path: str | Path, *, label: str = "result file", error: type[Exception] = BadFile) -> Any:
    """The JSON in ``path``; one line naming the file when it is unreadable, not UTF-8 or not JSON."""
    text = read_text(path, label=label, error=error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{label} '{path}' is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise error(f"{label} '{path}' nests its JSON too deeply to be a freeadv file") from None


def key_path(parts: Any) -> str:
    """``log[3].train_seconds`` from the path parts of a key."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any) -> str:
    text = json.dumps(value, allow_nan=True) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _non_finite(data: Any, parts: tuple = ()) -> Iterator[tuple[tuple, float]]:
    if isinstance(data, float) and not math.isfinite(data):
        yield parts, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _non_finite(value, parts + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _non_finite(value, parts + (i,))


def _reason(err: ValidationError) -> str:
    word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
            "exclusiveMaximum": "less than"}
    if err.validator in word:
        return f"must be {word[err.validator]} {err.validator_value:g}"
    if err.validator == "type":
        kinds = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        return "must be " + " or ".join(k if k == "null" else ("an " if k[0] in "aeiou" else "a ") + k for k in kinds)
    if err.validator == "minItems":
        return "must not be empty" if err.validator_value == 1 else f"must hold at least {err.validator_value} items"
    if err.validator == "const":
        return f"must be {json.dumps(err.validator_value)}"
    return err.message


def describe(err: ValidationError, file: str | Path, label: str) -> str:
    """One line: the file, the key (its path inside the file), its value and what is wrong with it."""
    where = key_path(err.absolute_path)
    if err.validator == "required":
        missing = next(k for k in err.validator_value if k not in err.instance)
        return f"{label} '{file}': key {key_path([*err.absolute_path, missing])} is missing"
    if not where:
        return f"{label} '{file}' holds a JSON {type(err.instance).__name__}, {_reason(err)}"
    return f"{label} '{file}': key {where} = {_short(err.instance)}: {_reason(err)}"


def check(data: Any, kind: str | None, file: str | Path, *, label: str = "result file",
          error: type[Exception] = BadFile, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """``data`` validated against the schema of ``kind`` (None: the ``kind`` the file declares, if
    known, else the generic result schema) and holding the keys ``require`` names besides the
    schema's (what one reader needs); a file declaring another known kind is refused."""
    if not isinstance(data, dict):
        raise error(f"{label} '{file}' holds a JSON {type(data).__name__}, not a result object")
    declared = data.get("kind")
    if kind is not None and declared in WRITERS and declared != kind:
        raise error(f"{label} '{file}' is a {declared} file ({WRITERS[declared]}), not a {kind} file "
                    f"({WRITERS.get(kind, 'freeadv')})")
    kind = kind or (declared if declared in SCHEMAS else "result")
    for parts, value in _non_finite(data):
        raise error(f"{label} '{file}': key {key_path(parts)} = {value!r}: must be a finite number")
    for key in require:
        if key not in data:
            raise error(f"{label} '{file}': key {key} is missing")
    errors = list(VALIDATORS[kind].iter_errors(data))
    named = [e for e in errors if "patternProperties" not in e.schema_path]   # a key's own rule before its ending's
    err = best_match(named or errors)
    if err is not None:
        raise error(describe(err, file, label))
    return data


def read_checked(path: str | Path, kind: str | None = None, *, label: str = "result file",
                 error: type[Exception] = BadFile, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read and validate one file a report reads (``kind``: a key of :data:`SCHEMAS`, or None for the
    kind the file declares). Raises ``error`` (a :class:`BadFile`) in one line naming the file and
    the key; FileNotFoundError when the file does not exist."""
    return check(load(path, label=label, error=error), kind, path, label=label, error=error, require=require)


def benchmark_value(path: str | Path, column: str, text: str, *, missing: str = "NA",
                    error: type[Exception] = BadFile) -> float | None:
    """One value of a Snakemake benchmark TSV row: a number in [0, MAX_BENCHMARK_VALUE], None for NA."""
    if text == missing:
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise error(f"benchmark file '{path}': column '{column}' holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise error(f"benchmark file '{path}': column '{column}' holds {text!r}, not a finite number")
    err = best_match(BENCHMARK_VALIDATOR.iter_errors(value))
    if err is not None and err.validator == "minimum":
        raise error(f"benchmark file '{path}': column '{column}' holds {text!r}, not a non-negative number")
    if err is not None:
        raise error(f"benchmark file '{path}': column '{column}' holds {text!r}: more than {MAX_BENCHMARK_VALUE:g} "
                    "(seconds or MB), not a measurement")
    return value
