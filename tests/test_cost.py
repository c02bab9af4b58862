"""The cost table (freeadv/report/cost.py, `freeadv cost-table`) on hand-written Snakemake benchmark files:
which jobs a plan has, what is read from each TSV (NA, repeats), the CSV and Markdown with totals,
the resources record that `freeadv regenerate` rebuilds from, and one-line errors naming the file."""
import copy
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from freeadv.config import load_yaml
from freeadv.report.cost import CostError, Job, plan_jobs, read_benchmark, write_cost_table
from freeadv.experiments import scales
from freeadv.experiments.plan import Plan, PlanAnalysis
from freeadv.experiments.layout import benchmark_path, resources_path

REPO = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def tsv(wall, rss, cpu):
    """One run as Snakemake writes it (values as text, so that NA can be given)."""
    return f"{wall}\t0:00:01\t{rss}\t900.0\t300.0\t310.0\t0.1\t0.2\t95.0\t{cpu}\n"


def metric(model, attack):
    return {"file": f"runs/{model}/evals/{attack}.json" if attack else f"runs/{model}/train.json",
            "attack": attack}


def row(key, model, metrics, **more):
    return {"key": key, "label": key, "paper_ref": ["table1", key], "model": model, "metrics": metrics, **more}


PLAN = Plan.from_json({
    "scale": "tiny",
    "models": {name: {"config": {}} for name in ("m-nat", "m-free", "m-imagenet")},
    "targets": {
        "table1": {"available": True, "analyses": [], "rows": [
            row("natural", "m-nat", {"pgd20": metric("m-nat", "pgd20"), "train_min": metric("m-nat", None)},
                sanity=[metric("m-nat", "noise")]),
            row("free_m8", "m-free", {"pgd20": metric("m-free", "pgd20")}, sanity=[]),
            row("paper", None, {}),   # a paper-only row: no job
        ]},
        "figure3": {"available": True, "rows": [], "analyses": [
            {"kind": "loss-surface", "label": "Free", "model": "m-free", "id": "surface",
             "file": "runs/m-free/analysis/surface.json"}]},
        "table3": {"available": False, "analyses": [], "rows": [   # not at this scale: no jobs
            row("free_m2", "m-imagenet", {"pgd20": metric("m-imagenet", "pgd20")})]},
        "fast": {"available": True, "analyses": [], "rows": [   # the same job as table1's: listed once
            row("free_m8", "m-free", {"pgd20": metric("m-free", "pgd20")})]},
    },
})
USED = {  # job -> (wall s, max RSS MB, CPU s) as text
    "train/m-free": ("120.50", "800.25", "230.00"),
    "train/m-nat": ("100.00", "700.00", "190.00"),
    "attack/m-free/pgd20": ("30.00", "500.00", "29.00"),
    "attack/m-nat/noise": ("0.40", "NA", "NA"),   # ended before Snakemake's first sample
    "attack/m-nat/pgd20": ("10.00", "450.00", "9.50"),
    "analysis/m-free/surface": ("5.00", "300.00", "4.00"),
}
ASKED = {
    "train": {"m-free": {"threads": 2, "gpu": 0, "mem_mb": 4000, "runtime": 600},
              "m-nat": {"threads": 2, "gpu": 0, "mem_mb": 4000, "runtime": 600}},
    "attack": {"m-free": {"threads": 1, "gpu": 1, "mem_mb": 2000, "runtime": 60},
               "m-nat": {"threads": 1, "gpu": 1, "mem_mb": 2000, "runtime": 60}},
    "analysis": {"m-free": {"threads": 1, "gpu": 0, "mem_mb": 1000, "runtime": 10}},
}


@pytest.fixture
def results(tmp_path):
    """results/tiny with the plan and one benchmark file per job."""
    folder = tmp_path / "results" / "tiny"
    for job, values in USED.items():
        path = folder / benchmark_path(*job.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEADER + tsv(*values))
    (folder / "plan.json").write_text(json.dumps(PLAN.to_json()))
    return folder


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- the jobs of a plan ------------------------------------------------------------------------------

def test_plan_jobs_are_the_available_targets_jobs_once_each_in_table_order():
    names = [job.name for job in plan_jobs(PLAN)]
    assert names == ["train/m-free", "train/m-nat", "attack/m-free/pgd20", "attack/m-nat/noise",
                     "attack/m-nat/pgd20", "analysis/m-free/surface"]
    assert [job.name for job in plan_jobs(PLAN, ["table3"])] == ["train/m-imagenet", "attack/m-imagenet/pgd20"]
    assert Job("attack", "m", ("pgd20",)).benchmark == "benchmarks/attack/m/pgd20.tsv"


def test_smoke_plan_has_a_job_per_model_evaluation_and_analysis():
    plan = scales.build_plan(**scales.plan_inputs(load_yaml(REPO / "config" / "config.yaml"), "smoke"))
    jobs = plan_jobs(plan)
    files = {f for name in plan.available_targets() for f in plan.target_files(name)}
    assert sum(j.kind == "train" for j in jobs) == len({f for f in files if f.endswith("/train.json")}) == 26
    assert sum(j.kind == "attack" for j in jobs) == len({f for f in files if "/evals/" in f})
    assert sum(j.kind == "analysis" for j in jobs) == len({f for f in files if "/analysis/" in f}) > 0


# --- reading one benchmark file --------------------------------------------------------------------

def test_read_benchmark_takes_wall_cpu_and_rss_and_na_as_unknown(tmp_path):
    path = tmp_path / "b.tsv"
    path.write_text(HEADER + tsv("12.34", "456.78", "20.00"))
    assert read_benchmark(path) == {"wall_s": 12.34, "cpu_s": 20.0, "max_rss_mb": 456.78}
    path.write_text(HEADER + tsv("0.40", "NA", "NA"))
    assert read_benchmark(path) == {"wall_s": 0.4, "cpu_s": None, "max_rss_mb": None}


def test_read_benchmark_averages_the_runs_of_a_repeated_job(tmp_path):
    path = tmp_path / "b.tsv"
    path.write_text(HEADER + tsv("10.00", "100.00", "NA") + tsv("20.00", "300.00", "8.00"))
    assert read_benchmark(path) == {"wall_s": 15.0, "cpu_s": 8.0, "max_rss_mb": 200.0}


@pytest.mark.parametrize("text, says", [
    (None, "does not exist"),
    ("", "not a Snakemake benchmark TSV (no column 's', 'max_rss', 'cpu_time')"),
    (HEADER, "has a header but no measured run"),
    ("s\tmax_rss\n1.0\t2.0\n", "no column 'cpu_time'"),
    (HEADER + tsv("fast", "1.00", "1.00"), "column 's' holds 'fast', not a number"),
    (HEADER + tsv("1.00", "-5.00", "1.00"), "column 'max_rss' holds '-5.00', not a non-negative number"),
    (HEADER + tsv("NA", "1.00", "1.00"), "column 's' (wall seconds) is NA"),
    (HEADER + "1.00\t0:00:01\t2.00\n", "different number of fields"),
    (HEADER + tsv("1.00", "1.00", "1.00").replace("\n", "\textra\n"), "different number of fields"),
])
def test_bad_benchmark_file_is_one_line_naming_it(tmp_path, text, says):
    path = tmp_path / "attack" / "m" / "pgd20.tsv"
    if text is not None:
        path.parent.mkdir(parents=True)
        path.write_text(text)
    with pytest.raises(CostError) as err:
        read_benchmark(path)
    message = str(err.value)
    assert says in message and f"'{path}'" in message and "\n" not in message


# --- the table ---------------------------------------------------------------------------------------

def test_cost_table_has_a_row_per_job_with_what_it_used_and_asked(results):
    csv_path, md_path = write_cost_table(PLAN, results, results / "tables", ASKED)
    rows = {row["job"]: row for row in read_csv(csv_path)}
    assert list(rows) == [job.name for job in plan_jobs(PLAN)]
    free = rows["train/m-free"]
    assert (free["kind"], free["model"], free["wall_s"], free["cpu_s"], free["max_rss_mb"]) == \
        ("train", "m-free", "120.50", "230.00", "800.25")
    assert (free["threads"], free["gpus"], free["mem_mb"], free["runtime_min"]) == ("2", "0", "4000", "600")
    assert rows["attack/m-free/pgd20"]["gpus"] == "1"
    assert (rows["attack/m-nat/noise"]["cpu_s"], rows["attack/m-nat/noise"]["max_rss_mb"]) == ("", "")


def test_cost_markdown_totals_wall_and_cpu_per_kind_of_job(results):
    _, md_path = write_cost_table(PLAN, results, results / "tables", ASKED)
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in md_path.read_text().splitlines() if line.startswith("| **total")}
    # cells after the label: model, wall, CPU, CPU / wall, max RSS, ...
    assert lines["**total train** (2 jobs)"][1:5] == ["220.5", "420.0", "1.90", "800"]
    assert lines["**total attack** (3 jobs)"][1:5] == ["40.4", "38.5", "0.95", "500"]   # NA adds no CPU
    assert lines["**total analysis** (1 job)"][1:3] == ["5.0", "4.0"]
    assert lines["**total** (6 jobs)"][1:3] == ["265.9", "462.5"]
    assert "| `attack/m-nat/noise` | `m-nat` | 0.4 | - | - | - | 1 | 1 | 2000 | 60 |" in md_path.read_text()


def test_resources_are_recorded_and_read_back_to_the_same_table(results, tmp_path):
    """What `freeadv regenerate` does: the table again from the TSVs and the record, byte for byte."""
    first = [p.read_bytes() for p in write_cost_table(PLAN, results, results / "tables", ASKED)]
    assert json.loads((results / resources_path()).read_text()) == ASKED
    again = [p.read_bytes() for p in write_cost_table(PLAN, results, tmp_path / "again")]
    assert again == first


def test_rebuilt_table_lists_jobs_planned_after_the_run_as_not_run(results, tmp_path):
    """A job the plan gained after the run (no output, no benchmark) is named as not run, outside
    the totals; one whose output exists but whose benchmark is missing is still an error."""
    first = write_cost_table(PLAN, results, results / "tables", ASKED)
    plan = copy.deepcopy(PLAN)
    plan.targets["figure3"].analyses.append(PlanAnalysis("loss-surface", "Natural", "m-nat", "surface", {}, [],
                                                         "runs/m-nat/analysis/surface.json"))
    again = write_cost_table(plan, results, tmp_path / "again")
    assert again[0].read_bytes() == first[0].read_bytes()    # the CSV: the jobs that ran
    assert "Planned but not run (1, not in the totals): `analysis/m-nat/surface`." in again[1].read_text()
    (results / "runs/m-nat/analysis").mkdir(parents=True)
    (results / "runs/m-nat/analysis/surface.json").write_text("{}")
    with pytest.raises(CostError, match="analysis/m-nat/surface.tsv' does not exist"):
        write_cost_table(plan, results, tmp_path / "again")


def test_a_job_without_a_benchmark_or_resources_fails_naming_it(results):
    (results / benchmark_path("attack", "m-nat", "noise")).unlink()
    with pytest.raises(CostError, match=r"benchmark file '.*attack/m-nat/noise\.tsv' does not exist"):
        write_cost_table(PLAN, results, results / "tables", ASKED)
    with pytest.raises(CostError, match=r"resources record '.*resources\.json' does not exist"):
        write_cost_table(PLAN, results, results / "tables")
    (results / benchmark_path("attack", "m-nat", "noise")).write_text(HEADER + tsv("1", "1", "1"))
    asked = copy.deepcopy(ASKED)
    del asked["analysis"]["m-free"]["gpu"]
    with pytest.raises(CostError, match="--resources gives no threads, gpu, mem_mb, runtime for job "
                                        "'analysis/m-free/surface'"):
        write_cost_table(PLAN, results, results / "tables", asked)


# --- the command -------------------------------------------------------------------------------------

def freeadv(*args, cwd):
    return subprocess.run([sys.executable, "-m", "freeadv", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.mark.slow
def test_cost_table_command_writes_csv_and_md(results):
    run = freeadv("cost-table", "--results", str(results), "--resources", json.dumps(ASKED), cwd=results)
    assert run.returncode == 0, run.stderr
    assert len(read_csv(results / "tables" / "cost.csv")) == len(USED)
    assert (results / "tables" / "cost.md").read_text().startswith("# Cost per job, scale tiny")


@pytest.mark.slow
def test_cost_table_command_on_a_malformed_file_says_which_in_one_line(results):
    bad = results / benchmark_path("train", "m-nat")
    bad.write_text("not\ta benchmark\n")
    run = freeadv("cost-table", "--results", str(results), "--resources", json.dumps(ASKED), cwd=results)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("freeadv cost-table: error: benchmark file")
    assert str(bad) in run.stderr
    run = freeadv("cost-table", "--results", str(results), "--resources", "{train:", cwd=results)
    assert run.returncode == 2 and "--resources is not valid JSON" in run.stderr


@pytest.mark.slow
def test_regenerate_rebuilds_the_cost_table_or_says_why_not(results):
    """`freeadv regenerate` (what a clone of committed results can do): the cost table again from the
    committed benchmark files and resources record; a run without benchmarks is skipped, saying so."""
    first = [p.read_bytes() for p in write_cost_table(PLAN, results, results / "tables", ASKED)]
    for path in (results / "tables").iterdir():
        path.unlink()
    run = freeadv("regenerate", "--scale", "tiny", "--results", str(results.parent), cwd=results)
    assert run.returncode == 0, run.stderr
    assert [(results / "tables" / f"cost.{ext}").read_bytes() for ext in ("csv", "md")] == first
    shutil.rmtree(results / "benchmarks")
    run = freeadv("regenerate", "--scale", "tiny", "--results", str(results.parent), cwd=results)
    assert run.returncode == 0, run.stderr
    assert "skipped cost (no benchmarks/ folder: the run predates per-job benchmarks)" in run.stdout
