"""Where the files of a scale live: the one results layout, for the plan, tables, figures, claims,
``freeadv regenerate`` and the Snakemake rules (which call the path functions with wildcards,
e.g. ``eval_path("{model}", "{attack}")``)::

    results/<scale>/plan.json                            freeadv plan
    results/<scale>/runs/<model>/train.json, model.pt    freeadv train
    results/<scale>/runs/<model>/evals/<attack>.json     freeadv attack
    results/<scale>/runs/<model>/evals/best/<attack>.json   freeadv attack --weights best (keep_best runs)
    results/<scale>/runs/<model>/analysis/<id>.json      freeadv adv-examples / loss-surface
    results/<scale>/tables/<name>.{csv,md,tex}           freeadv table
    results/<scale>/tables/cost.{csv,md}                 freeadv cost-table (what each job cost)
    results/<scale>/benchmarks/<job>.tsv                 Snakemake's benchmark of one job, e.g.
                                                         benchmarks/attack/<model>/<attack>.tsv
    results/<scale>/benchmarks/resources.json            what each job asked for (freeadv cost-table)
    results/<scale>/claims.{txt,json}                    freeadv claims
    figures/<scale>/<name>.{png,pdf}                     freeadv figure
    figures/<scale>/curves_<table>.{png,pdf}             freeadv curves (a table's training curves)
    logs/<scale>/...                                     the workflow's job logs

The module-level functions give paths *relative to* ``results/<scale>``: the plan stores those,
so a scale's results folder can be moved (or committed and cloned) as a whole.
:class:`ScaleLayout` adds the roots, relative to the working directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

RESULTS_ROOT = "results"
FIGURES_ROOT = "figures"
LOGS_ROOT = "logs"
TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("png", "pdf")
PLAN_FILE = "plan.json"
TABLES_DIR = "tables"
CLAIMS_TEXT = "claims.txt"
CLAIMS_JSON = "claims.json"
# Benchmarks live with the results (not the logs) so that a committed scale keeps what its jobs cost.
BENCHMARKS_DIR = "benchmarks"
BENCHMARK_EXT = "tsv"
RESOURCES_FILE = "resources.json"
COST_TABLE = "cost"
COST_FORMATS = ("csv", "md")


# --- inside results/<scale> ------------------------------------------------------------------------

def run_dir(model: str) -> str:
    return f"runs/{model}"


def train_path(model: str) -> str:
    return f"{run_dir(model)}/train.json"


def model_path(model: str) -> str:
    return f"{run_dir(model)}/model.pt"


def eval_path(model: str, attack_id: str, weights: str = "final") -> str:
    """An attack's result on the run's final weights, or (``weights="best"``) on model_best.pt."""
    folder = "evals" if weights == "final" else f"evals/{weights}"
    return f"{run_dir(model)}/{folder}/{attack_id}.json"


def analysis_path(model: str, analysis_id: str) -> str:
    return f"{run_dir(model)}/analysis/{analysis_id}.json"


def job_name(rule: str, *wildcards: str) -> str:
    """A workflow job as one readable name, its rule then its wildcards: ``attack/<model>/<attack>``."""
    return "/".join((rule, *wildcards))


def benchmark_path(rule: str, *wildcards: str) -> str:
    """Snakemake's benchmark file of one job, named after the job so that each file traces to it."""
    return f"{BENCHMARKS_DIR}/{job_name(rule, *wildcards)}.{BENCHMARK_EXT}"


def cost_bench_path() -> str:
    """Table 1's training steps timed interleaved in one process (``freeadv bench``): what claim C3 reads."""
    return "cost/interleaved.json"


def resources_path() -> str:
    """The record of the resources each job asked for, beside the benchmarks that say what it used."""
    return f"{BENCHMARKS_DIR}/{RESOURCES_FILE}"


def table_file(name: str, ext: str) -> str:
    """A table's file name inside the tables folder."""
    return f"{name}.{ext}"


def curves_name(table: str) -> str:
    """The figure name of a table's training curves (``freeadv curves``), drawn beside the table."""
    return f"curves_{table}"


def figure_file(name: str, ext: str) -> str:
    """A figure's file name inside figures/<scale>."""
    return f"{name}.{ext}"


# --- one scale ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleLayout:
    """The folders and files of one scale, as paths relative to the working directory."""
    scale: str
    results_root: str | os.PathLike = RESULTS_ROOT
    figures_root: str | os.PathLike = FIGURES_ROOT
    logs_root: str | os.PathLike = LOGS_ROOT

    @classmethod
    def of_plan(cls, plan: str | os.PathLike) -> "ScaleLayout":
        """The layout whose plan file is ``plan`` (figures and logs at their default roots): the
        workflow's rules derive their folders from their input files, as Snakemake's lint asks."""
        results = os.path.dirname(os.fspath(plan))
        return cls(os.path.basename(results), os.path.dirname(results))

    @property
    def results(self) -> str:
        return os.path.join(self.results_root, self.scale)

    @property
    def figures(self) -> str:
        return os.path.join(self.figures_root, self.scale)

    @property
    def logs(self) -> str:
        return os.path.join(self.logs_root, self.scale)

    def result(self, relative: str) -> str:
        """A path of the plan (relative to results/<scale>) from the working directory."""
        return os.path.join(self.results, relative)

    @property
    def plan(self) -> str:
        return self.result(PLAN_FILE)

    @property
    def tables(self) -> str:
        return self.result(TABLES_DIR)

    def table(self, name: str, ext: str) -> str:
        return os.path.join(self.tables, table_file(name, ext))

    def table_files(self, name: str) -> list[str]:
        return [self.table(name, ext) for ext in TABLE_FORMATS]

    def figure(self, name: str, ext: str = FIGURE_FORMATS[0]) -> str:
        return os.path.join(self.figures, figure_file(name, ext))

    def figure_files(self, name: str) -> list[str]:
        return [self.figure(name, ext) for ext in FIGURE_FORMATS]

    def cost_table(self, ext: str) -> str:
        """The per-job cost table (``freeadv cost-table``), one of :data:`COST_FORMATS`."""
        return self.table(COST_TABLE, ext)

    def cost_files(self) -> list[str]:
        return [self.cost_table(ext) for ext in COST_FORMATS]

    @property
    def claims_text(self) -> str:
        return self.result(CLAIMS_TEXT)

    @property
    def claims_json(self) -> str:
        return self.result(CLAIMS_JSON)

    def log(self, *parts: str) -> str:
        """A job log, e.g. ``log("train", "{model}.log")`` -> logs/<scale>/train/{model}.log."""
        return os.path.join(self.logs, *parts)
