"""What each job of a scale cost: Snakemake's benchmark files beside the resources the job asked for.

Every train, attack and analysis rule has a ``benchmark:`` file (``results/<scale>/benchmarks/<job>.tsv``,
freeadv/experiments/layout.py), written by Snakemake itself: wall seconds (``s``), peak resident memory
(``max_rss``, MB) and CPU seconds (``cpu_time``) of the job's processes. This module lists the jobs of a
plan, reads their files and writes ``tables/cost.csv`` (one row per job) and ``cost.md`` (the same with
totals per kind of job), so that ``resources`` in config/config.yaml can be sized from measurements.

The resources a job asked for come from the workflow (the same helpers that set its rule's
``threads`` and ``resources``) and are recorded in ``benchmarks/resources.json``: the measurements and
the requests travel together, and ``freeadv regenerate`` rebuilds the same table from the two.

Torch-free and pandas-free: Snakemake imports it while it parses the workflow.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..experiments.layout import COST_FORMATS, COST_TABLE, benchmark_path, job_name, resources_path, table_file
from ..experiments.plan import FINAL, Plan, Planned, PlanTarget
from ..io import atomic_write_text, write_json
from ..schemas import benchmark_value, read_text
from ..errors import UserError

# The rules whose jobs are measured, in the order the table lists them (also the keys of a scale's
# `resources` in the workflow config).
JOB_KINDS = ("train", "attack", "analysis")
# Columns of Snakemake's benchmark TSV that the table reads; "NA" marks a job that ended before
# Snakemake's first sample of its processes (memory and CPU time unknown, wall time still measured).
WALL, RSS, CPU = "s", "max_rss", "cpu_time"
MISSING = "NA"
# The resources of a job the table shows beside what it used.
ASKED = ("threads", "gpu", "mem_mb", "runtime")
CSV_COLUMNS = ("job", "kind", "model", "wall_s", "cpu_s", "max_rss_mb",
               "threads", "gpus", "mem_mb", "runtime_min")
MD_HEADER = ("job", "model", "wall (s)", "CPU (s)", "CPU / wall", "max RSS (MB)",
             "threads", "GPUs", "mem_mb asked", "runtime asked (min)")


class CostError(UserError):
    """A benchmark or resources file that is missing or does not say what it should."""


@dataclass(frozen=True)
class Job:
    """One job of the workflow: its rule (kind), its model and the rest of its wildcards."""
    kind: str
    model: str
    rest: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return job_name(self.kind, self.model, *self.rest)

    @property
    def benchmark(self) -> str:
        """Its benchmark file, relative to results/<scale>."""
        return benchmark_path(self.kind, self.model, *self.rest)


# --- the jobs of a plan --------------------------------------------------------------------------

def attack_job(model: str, planned: Planned) -> Job:
    """The attack job of one planned evaluation; on the best weights its wildcards start with
    ``best`` (job attack/<model>/best/<attack>, as the workflow's attack_best rule names it)."""
    rest = (planned.attack,) if planned.weights == FINAL else (planned.weights, planned.attack)
    return Job("attack", model, rest)


def _target_jobs(entry: PlanTarget) -> set[Job]:
    """The train, attack and analysis jobs one target's result files come from."""
    jobs: set[Job] = set()
    for row in entry.trained_rows():
        jobs.add(Job("train", row.model))
        jobs.update(attack_job(row.model, e) for e in row.evaluations())
    for analysis in entry.analyses:
        jobs.add(Job("train", analysis.model))
        jobs.add(Job("analysis", analysis.model, (analysis.id,)))
    return jobs


def job_outputs(plan: Plan) -> dict[Job, str]:
    """The result file each attack and analysis job writes (relative to results/<scale>)."""
    outputs: dict[Job, str] = {}
    for entry in plan.targets.values():
        for row in entry.trained_rows():
            for e in row.evaluations():
                outputs[attack_job(row.model, e)] = e.file
        for analysis in entry.analyses:
            outputs[Job("analysis", analysis.model, (analysis.id,))] = analysis.file
    return outputs


def plan_jobs(plan: Plan, targets: list[str] | None = None) -> list[Job]:
    """Every job the named targets (default: those of ``all``, the available ones) need, once each,
    in table order: by kind (train, attack, analysis), then by name."""
    names = plan.available_targets() if targets is None else targets
    jobs = set().union(*(_target_jobs(plan.targets[name]) for name in names))
    return sorted(jobs, key=lambda job: (JOB_KINDS.index(job.kind), job.name))


# --- reading -------------------------------------------------------------------------------------

def _number(path: Path, column: str, text: str) -> float | None:
    """A benchmark value: a number >= 0 and bounded (so every sum of them stays finite), None for NA."""
    return benchmark_value(path, column, text, missing=MISSING, error=CostError)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def read_benchmark(path: str | Path) -> dict[str, float | None]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one benchmark file; the mean over its rows when
    the rule repeats the job (``repeat()``). One-line CostError naming the file on anything else."""
    path = Path(path)
    if not path.is_file():
        raise CostError(f"benchmark file '{path}' does not exist (the job ran without a benchmark, "
                        "e.g. before benchmarks were recorded: rerun it with snakemake --forcerun)")
    reader = csv.DictReader(io.StringIO(read_text(path, label="benchmark file", error=CostError)), delimiter="\t")
    missing = [c for c in (WALL, RSS, CPU) if c not in (reader.fieldnames or [])]
    if missing:
        raise CostError(f"benchmark file '{path}' is not a Snakemake benchmark TSV "
                        f"(no column {', '.join(repr(c) for c in missing)})")
    rows = list(reader)
    if not rows:
        raise CostError(f"benchmark file '{path}' has a header but no measured run")
    if any(None in row.values() or None in row for row in rows):
        raise CostError(f"benchmark file '{path}': a row has a different number of fields than the header")
    wall = [_number(path, WALL, row[WALL]) for row in rows]
    if None in wall:
        raise CostError(f"benchmark file '{path}': column '{WALL}' (wall seconds) is {MISSING}")
    return {"wall_s": _mean(wall),
            "cpu_s": _mean([_number(path, CPU, row[CPU]) for row in rows]),
            "max_rss_mb": _mean([_number(path, RSS, row[RSS]) for row in rows])}


def read_resources(path: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The resources record: kind -> model -> {threads, gpu, mem_mb, runtime}."""
    path = Path(path)
    if not path.is_file():
        raise CostError(f"resources record '{path}' does not exist: the workflow's cost rule writes it "
                        "(snakemake all), or pass --resources")
    try:
        return json.loads(read_text(path, label="resources record", error=CostError))
    except json.JSONDecodeError as err:
        raise CostError(f"resources record '{path}' is not valid JSON: {err}") from None


def parse_resources(text: str) -> dict[str, dict[str, dict[str, Any]]]:
    """--resources as the workflow passes it: JSON kind -> model -> {threads, gpu, mem_mb, runtime}."""
    try:
        resources = json.loads(text)
    except json.JSONDecodeError as err:
        raise CostError(f"--resources is not valid JSON: {err}") from None
    if not isinstance(resources, dict) or not all(isinstance(v, dict) for v in resources.values()):
        raise CostError("--resources must map each kind of job to {model: {threads, gpu, mem_mb, runtime}}")
    return resources


def _asked(resources: dict[str, Any], job: Job, source: str) -> dict[str, Any]:
    try:
        asked = resources[job.kind][job.model]
        return {key: asked[key] for key in ASKED}
    except (KeyError, TypeError):
        raise CostError(f"{source} gives no {', '.join(ASKED)} for job '{job.name}'") from None


# --- the table -----------------------------------------------------------------------------------

def cost_rows(results: str | Path, jobs: list[Job], resources: dict[str, Any],
              source: str = "the resources") -> list[dict[str, Any]]:
    """One row per job: what it used (its benchmark file under ``results``) and what it asked for."""
    rows = []
    for job in jobs:
        used = read_benchmark(Path(results) / job.benchmark)
        asked = _asked(resources, job, source)
        rows.append({"job": job.name, "kind": job.kind, "model": job.model, **used,
                     "threads": asked["threads"], "gpus": asked["gpu"], "mem_mb": asked["mem_mb"],
                     "runtime_min": asked["runtime"]})
    return rows


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows([_csv_value(row[c]) for c in CSV_COLUMNS] for row in rows)
    return out.getvalue()


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(cpu: float | None, wall: float | None) -> str:
    """CPU seconds per wall second: the cores a job kept busy on average, to compare with its threads."""
    return "-" if cpu is None or not wall else f"{cpu / wall:.2f}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _job_line(row: dict[str, Any]) -> str:
    return _md_row([f"`{row['job']}`", f"`{row['model']}`", _fmt(row["wall_s"]), _fmt(row["cpu_s"]),
                    _ratio(row["cpu_s"], row["wall_s"]), _fmt(row["max_rss_mb"], 0), str(row["threads"]),
                    str(row["gpus"]), str(row["mem_mb"]), str(row["runtime_min"])])


def _total(rows: list[dict[str, Any]], label: str) -> str:
    """Sum of wall and CPU seconds (a job with unknown CPU time adds none) and the largest peak RSS."""
    wall = sum(r["wall_s"] for r in rows)
    cpu = sum(r["cpu_s"] or 0.0 for r in rows)
    rss = max((r["max_rss_mb"] for r in rows if r["max_rss_mb"] is not None), default=None)
    count = f"{len(rows)} job" + ("" if len(rows) == 1 else "s")
    cells = [f"**{label}** ({count})", "", _fmt(wall), _fmt(cpu), _ratio(cpu, wall),
             _fmt(rss, 0), "", "", "", ""]
    return _md_row(cells)


def to_markdown(rows: list[dict[str, Any]], scale: str, not_run: list[str] = ()) -> str:
    lines = [f"# Cost per job, scale {scale}", "",
             "Measured by Snakemake's `benchmark:` files (wall and CPU seconds, peak resident memory of the "
             "job's processes), beside the resources each job asked for (`scales." + scale + ".resources` "
             "in config/config.yaml). CPU / wall is the number of cores a job kept busy on average.", "",
             _md_row(list(MD_HEADER)), _md_row(["---"] * len(MD_HEADER))]
    lines += [_job_line(row) for row in rows]
    lines += [_total([r for r in rows if r["kind"] == kind], f"total {kind}")
              for kind in JOB_KINDS if any(r["kind"] == kind for r in rows)]
    if rows:
        lines.append(_total(rows, "total"))
    lines += ["", "Totals: the sum of the jobs' wall seconds (as if they ran one after another) and CPU "
                  "seconds (a job that ended before Snakemake's first sample adds none); max RSS is the "
                  "largest job's."]
    if not_run:
        lines += ["", f"Planned but not run ({len(not_run)}, not in the totals): "
                      + ", ".join(f"`{name}`" for name in not_run) + "."]
    return "\n".join(lines) + "\n"


def write_cost_table(plan: Plan, results: str | Path, out_dir: str | Path,
                     resources: dict[str, Any] | None = None) -> list[Path]:
    """Write ``<out_dir>/cost.{csv,md}`` for the jobs of ``all`` at the plan's scale.

    ``resources`` (from the workflow) is recorded in results/<scale>/benchmarks/resources.json;
    without it the record is read back, which is how ``freeadv regenerate`` rebuilds the table."""
    record = Path(results) / resources_path()
    if resources is None:
        resources, source = read_resources(record), f"resources record '{record}'"
    else:
        source = "--resources"
    jobs, not_run = plan_jobs(plan), []
    if source != "--resources":   # rebuilt later: jobs planned after the run, with no output and no benchmark
        outputs = job_outputs(plan)
        not_run = [job for job in jobs if job in outputs and not (Path(results) / outputs[job]).exists()
                   and not (Path(results) / job.benchmark).exists()]
        jobs = [job for job in jobs if job not in not_run]
    rows = cost_rows(results, jobs, resources, source)
    if source == "--resources":
        write_json(record, resources)
    csv_path, md_path = (Path(out_dir) / table_file(COST_TABLE, ext) for ext in COST_FORMATS)
    atomic_write_text(csv_path, to_csv(rows))
    atomic_write_text(md_path, to_markdown(rows, plan.scale, [job.name for job in not_run]))
    return [csv_path, md_path]
