"""The Snakemake workflow: the smoke DAG end to end (every table with every row and column of the
paper, every figure a real PNG/PDF, the cost of every job, the report), the paper-scale DAG shape,
lint, clear errors for an unknown scale, a config failing the schema and missing datasets, parsing
without torch, the library files of each rule derived from the import graph (what an edit reruns),
and the catalog layout: workflow/Snakefile found from the repository root, with its profile."""
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from freeadv.config import load_yaml
from freeadv.report.cost import plan_jobs
from freeadv.experiments.plan import load_plan
from freeadv.experiments import design, layout, scales
from freeadv.experiments.paper_values import paper_values

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = Path("workflow") / "Snakefile"   # the Snakemake workflow catalog's layout
SMOKE_TIMEOUT_S = 900


def snakemake(*args: str, workdir: Path, timeout: int = 120, repo: Path = REPO,
              path_first: Path | None = None, snakefile: bool = True,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the Snakefile of ``repo`` with its outputs under ``workdir``; jobs use ``repo``'s freeadv.
    ``path_first``: a folder put before everything else on PYTHONPATH; ``snakefile=False``: let
    Snakemake find the Snakefile itself; ``cwd``: where it runs (default ``repo``)."""
    executable = shutil.which("snakemake")
    command = [executable] if executable else [sys.executable, "-m", "snakemake"]
    command += (["-s", str(repo / SNAKEFILE)] if snakefile else []) + ["--directory", str(workdir), *args]
    path = [str(path_first) if path_first else None, str(repo), os.environ.get("PYTHONPATH")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd or repo, env=env)


def snapshot(destination: Path) -> Path:
    """A copy of the workflow and the library, so edits made to the checkout while the smoke DAG
    runs (the library's files are inputs of its jobs) cannot change or rerun it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("freeadv", "workflow", "config", "profiles"):
        shutil.copytree(REPO / name, destination / name, ignore=ignore)
    return destination


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run: rule -> number of jobs."""
    lines = text[text.index("Job stats:"):].splitlines()[3:]
    counts = {}
    for line in lines:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


# --- the smoke DAG end to end ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    repo = snapshot(tmp_path_factory.mktemp("repo"))
    workdir = tmp_path_factory.mktemp("smoke")
    run = snakemake("all", "--cores", "2", "--config", "scale=smoke", workdir=workdir, timeout=SMOKE_TIMEOUT_S,
                    repo=repo)
    assert run.returncode == 0, output(run)[-6000:]
    return workdir, repo


@pytest.mark.slow
def test_smoke_tables_have_every_paper_row_and_column(smoke):
    workdir, _ = smoke
    values = paper_values()
    for name in design.TABLES:
        folder = workdir / "results" / "smoke" / "tables"
        for ext in ("csv", "md", "tex"):
            assert (folder / f"{name}.{ext}").stat().st_size > 200, (name, ext)
        frame = pd.read_csv(folder / f"{name}.csv").set_index("row")
        metrics = [m.key for m in design.TARGETS[name].metrics]
        expected = values[values["table"] == name]
        for row, metric, value in expected[["row", "metric", "value"]].itertuples(index=False):
            assert row in frame.index, (name, row)
            assert frame.loc[row, f"{metric}_paper"] == pytest.approx(value), (name, row, metric)
        for metric in metrics:
            assert {f"{metric}_ours", f"{metric}_paper", f"{metric}_diff"} <= set(frame.columns), (name, metric)
        trained = frame[frame["model"].notna()]
        assert len(trained) >= 1, name
        for metric in design.TARGETS[name].metrics:   # every cell a metric applies to has a number
            rows = [r.key for r in design.TARGETS[name].rows if r.cell and metric.applies_to(r)]
            assert all(math.isfinite(v) for v in trained.loc[trained.index.isin(rows), f"{metric.key}_ours"]), \
                (name, metric.key)
        if "aa" in metrics:   # AutoAttack beside PGD-20 for every adversarially trained row
            assert trained["aa_ours"].notna().sum() >= 1, name
        assert set(trained["dataset"]) == {"synthetic"} and set(frame["scale"]) == {"smoke"}
        assert (trained["images_per_second"] > 0).all()
        assert "stand-ins" in (folder / f"{name}.md").read_text()
    fast = pd.read_csv(workdir / "results/smoke/tables/fast.csv").set_index("row")
    assert fast.loc["free_m8", "pgd20_paper"] == 46.82
    assert list(fast.index) == ["fgsm_rs", "fgsm_rs_wong", "trades", "free_m8", "pgd7"]
    assert fast.loc["fgsm_rs_wong", "robustbench_aa"] == 43.21


@pytest.mark.slow
def test_smoke_figures_are_real_png_and_pdf(smoke):
    workdir, _ = smoke
    for name in design.FIGURES:
        png = (workdir / "figures" / "smoke" / f"{name}.png").read_bytes()
        pdf = (workdir / "figures" / "smoke" / f"{name}.pdf").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name
        assert pdf[:5] == b"%PDF-" and len(pdf) > 5_000, name
    for name in design.TABLES:   # each table's training curves
        png = (workdir / "figures" / "smoke" / f"curves_{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name


@pytest.mark.slow
def test_smoke_cost_table_has_every_job_of_the_plan_with_its_measured_cost(smoke):
    workdir, repo = smoke
    plan = load_plan(workdir / "results/smoke/plan.json")
    jobs = plan_jobs(plan)
    assert {job.kind for job in jobs} == {"train", "attack", "analysis"}
    cost = pd.read_csv(workdir / "results/smoke/tables/cost.csv").set_index("job")
    assert list(cost.index) == [job.name for job in jobs]
    assert (cost["wall_s"] > 0).all() and (cost["gpus"] == 0).all()
    trained = cost[cost["kind"] == "train"]
    assert trained["max_rss_mb"].notna().all() and (trained["max_rss_mb"] > 0).all()
    assert trained["cpu_s"].notna().all() and (trained["cpu_s"] > 0).all()
    resources = load_yaml(repo / "config" / "config.yaml")["scales"]["smoke"]["resources"]
    for kind in ("train", "attack", "analysis"):
        asked = cost[cost["kind"] == kind]
        assert (asked["threads"] == resources[kind]["threads"]).all(), kind
        assert (asked["mem_mb"] == resources[kind]["mem_mb"]).all(), kind
    for job in jobs:   # each row traces to its job's benchmark file
        assert (workdir / "results/smoke" / job.benchmark).is_file(), job.name
    md = (workdir / "results/smoke/tables/cost.md").read_text()
    assert f"**total train** ({len(trained)} jobs)" in md and f"**total** ({len(jobs)} jobs)" in md


@pytest.mark.slow
def test_smoke_outputs_stay_in_their_scale_and_nothing_reruns(smoke):
    workdir, repo = smoke
    assert sorted(p.name for p in (workdir / "results").iterdir()) == ["smoke"]
    assert sorted(p.name for p in (workdir / "figures").iterdir()) == ["smoke"]
    assert (workdir / "logs" / "smoke" / "train").is_dir()
    again = snakemake("all", "-n", "--config", "scale=smoke", workdir=workdir, repo=repo)
    assert again.returncode == 0 and "Nothing to be done" in output(again), output(again)[-3000:]


@pytest.mark.slow
def test_smoke_claims_are_checked_and_printed(smoke):
    workdir, _ = smoke
    text = (workdir / "results" / "smoke" / "claims.txt").read_text()
    for claim in ("C1", "C2", "C3", "C4a", "C4b", "C5", "C6"):
        assert sum(line.startswith(tuple(f"{claim} {status} " for status in ("PASS", "FAIL", "INCONCLUSIVE")))
                   for line in text.splitlines()) == 1, (claim, text)
    assert "synthetic" in text and "of 7 claims pass" in text
    assert "has no per-image results" not in text   # every evaluation of the run records them
    assert "[-" in text or "[+" in text or "[0" in text   # intervals are printed


@pytest.mark.slow
def test_regenerate_needs_only_the_json_results(smoke, tmp_path):
    """What a fresh clone of committed results can do: same tables, figures and claims, no model."""
    workdir, _ = smoke
    source = workdir / "results" / "smoke"
    shutil.copytree(source, tmp_path / "results" / "smoke",
                    ignore=shutil.ignore_patterns("*.pt", "checkpoint*", "tables", "claims.*"))
    assert not list((tmp_path / "results").rglob("*.pt"))
    run = subprocess.run([sys.executable, "-m", "freeadv", "regenerate", "--scale", "smoke"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in design.TABLES:
        rebuilt = pd.read_csv(tmp_path / "results/smoke/tables" / f"{name}.csv")
        pd.testing.assert_frame_equal(rebuilt, pd.read_csv(source / "tables" / f"{name}.csv"))
    for name in design.FIGURES:
        assert (tmp_path / "figures/smoke" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for ext in ("csv", "md"):   # the cost table from the benchmark files and the resources record
        assert (tmp_path / "results/smoke/tables" / f"cost.{ext}").read_bytes() == \
            (source / "tables" / f"cost.{ext}").read_bytes(), ext
    assert (tmp_path / "results/smoke/claims.txt").read_text().splitlines()[1:] == \
        (source / "claims.txt").read_text().splitlines()[1:]


@pytest.mark.slow
def test_claims_and_regenerate_on_a_results_folder_with_bad_json(smoke, tmp_path):
    """A train.json that is `[]` or cut short: one line naming the file, no traceback."""
    workdir, _ = smoke
    shutil.copytree(workdir / "results" / "smoke", tmp_path / "smoke",
                    ignore=shutil.ignore_patterns("model.pt", "checkpoint*"))
    plan = load_plan(tmp_path / "smoke" / "plan.json")
    natural = next(r.model for r in plan.targets["table1"].rows if r.key == "natural")
    train_json = tmp_path / "smoke" / layout.train_path(natural)   # claim C3 reads it
    for text, argv, culprits in (
            ("[]", ["claims", "--results", tmp_path, "--scale", "smoke", "--out", tmp_path / "c.txt"], ["train.json"]),
            ('{"config": \n', ["regenerate", "--results", tmp_path, "--scale", "smoke", "--figures", tmp_path / "f"],
             ["train.json", "not valid JSON"])):
        train_json.write_text(text)
        run = subprocess.run([sys.executable, "-m", "freeadv", *map(str, argv)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        errors = [line for line in run.stderr.splitlines() if line.startswith("freeadv ")]
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert len(errors) == 1 and all(c in errors[0] for c in culprits), run.stderr


@pytest.mark.slow
def test_smoke_report_builds(smoke):
    workdir, repo = smoke
    report = snakemake("--report", "report.html", "--config", "scale=smoke", workdir=workdir, timeout=300, repo=repo)
    assert report.returncode == 0, output(report)[-3000:]
    html = workdir / "report.html"
    assert html.stat().st_size > 50_000
    assert "filename=cost.csv" in html.read_text()   # the cost table is in the report


# --- the DAG at paper scale, lint, errors --------------------------------------------------------

def test_paper_table1_dry_run_trains_six_models_and_attacks_each(tmp_path):
    dry = snakemake("table1", "-n", workdir=tmp_path)
    assert dry.returncode == 0, output(dry)[-3000:]
    counts = job_counts(output(dry))
    assert counts["train"] == 6
    # PGD-20, PGD-100, CW-100, 10-restart PGD-20, and the sanity pair: uniform noise, PGD-20 at eps 64
    # ... and AutoAttack on all six (Table 1 includes the natural model: AutoAttack finds it at ~0% too)
    assert counts["attack"] == 6 * (4 + 2) + 6
    assert "results/paper/runs/cifar10-wrn32_10-natural-s0/evals/autoattack100-eps8.json" in output(dry)
    assert "results/paper/runs/cifar10-wrn32_10-free-m8-eps8-s0/evals/autoattack100-eps8.json" in output(dry)
    assert counts["curves"] == 1
    assert "results/paper/runs/cifar10-wrn32_10-natural-s0/evals/noise-eps8.json" in output(dry)
    assert "results/paper/runs/cifar10-wrn32_10-natural-s0/evals/pgd20-eps64-step8.json" in output(dry)
    assert counts["table"] == 1 and counts["plan"] == 1
    assert "results/paper/runs/cifar10-wrn32_10-free-m8-eps8-s0/evals/cw100-eps8-step2.json" in output(dry)


@pytest.mark.slow
def test_paper_all_trains_each_model_once(tmp_path):
    imagenet = tmp_path / "imagenet"
    (imagenet / "train").mkdir(parents=True)
    (imagenet / "val").mkdir()
    dry = snakemake("all", "-n", "--config", f"data={{imagenet: {{data_root: {imagenet}}}}}", workdir=tmp_path)
    assert dry.returncode == 0, output(dry)[-3000:]
    counts = job_counts(output(dry))
    settings = {"datasets": {d: d for d in design.PAPER_DATASETS},
                "architectures": {a: {"arch": a} for a in design.PAPER_ARCHS}}
    assert counts["train"] == len(scales.build_plan("paper", settings).models) == 64
    assert counts["table"] == len(design.TABLES) == counts["curves"] and counts["figure"] == len(design.FIGURES)


@pytest.mark.slow
def test_snakemake_runs_workflow_snakefile_from_the_root_with_the_default_profile(tmp_path):
    """The catalog's layout: plain `snakemake` in the repository root finds workflow/Snakefile
    (a root Snakefile would win, so there must be none) and loads profiles/default."""
    assert not [name for name in ("Snakefile", "snakefile") if (REPO / name).exists()]
    dry = snakemake("all", "-n", "--config", "scale=smoke", workdir=tmp_path, snakefile=False)
    assert dry.returncode == 0, output(dry)[-3000:]
    assert "Using workflow specific profile profiles/default" in output(dry)
    assert job_counts(output(dry))["cost"] == 1   # a rule that only workflow/Snakefile has


@pytest.mark.slow
def test_default_profile_is_found_beside_workflow_snakefile_from_elsewhere(tmp_path):
    """`snakemake -s <repo>/workflow/Snakefile` from another folder looks for profiles/default next
    to the Snakefile: workflow/profiles/default is a link to the one profile."""
    linked = REPO / "workflow" / "profiles" / "default"
    assert linked.resolve() == (REPO / "profiles" / "default").resolve()
    dry = snakemake("all", "-n", "--config", "scale=smoke", workdir=tmp_path, cwd=tmp_path)
    assert dry.returncode == 0, output(dry)[-3000:]
    assert f"Using workflow specific profile {linked}" in output(dry)


def test_lint_is_clean(tmp_path):
    lint = snakemake("--lint", workdir=tmp_path)
    assert lint.returncode == 0, output(lint)
    assert "Lints for" not in output(lint)


def test_unknown_scale_names_it_and_the_known_ones(tmp_path):
    run = snakemake("-n", "--config", "scale=huge", workdir=tmp_path)
    assert run.returncode != 0
    assert "unknown scale 'huge': choose one of paper, mini, mini1600, smoke" in output(run)


def test_config_failing_the_schema_says_where(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scale: smoke\nscales:\n  smoke:\n    attack_batch_size: 0\n")
    run = snakemake("-n", "--configfile", str(bad), workdir=tmp_path)
    assert run.returncode != 0
    assert ("config does not match workflow/schemas/config.schema.yaml: config key "
            "'scales.smoke.attack_batch_size': 0 is not valid under any of the given schemas "
            "(0 is less than the minimum of 1; 'auto' was expected)") in output(run)


def test_unknown_training_key_fails_before_any_job(tmp_path):
    run = snakemake("-n", "--config", "scale=smoke", "scales={smoke: {train: {iterationz: 3}}}", workdir=tmp_path)
    assert run.returncode != 0 and "training key 'iterationz'" in output(run)


@pytest.mark.slow
def test_mini_all_is_cifar10_only_and_other_targets_say_why(tmp_path):
    dry = snakemake("all", "-n", "--config", "scale=mini", workdir=tmp_path)
    assert dry.returncode == 0, output(dry)[-3000:]
    text = output(dry)
    assert "figures/mini/figure2.png" in text and "results/mini/tables/table1.csv" in text
    assert "figures/mini/figure3.png" in text and "figures/mini/figure3_surfaces.png" in text   # slices + 3-D
    assert "table2" not in text and "figure4" not in text
    assert "figures/mini/figure1.png" in text and "results/mini/claims.txt" in text   # Figure 1's CIFAR-10 panel
    assert "natural-m16" in text and "model=cifar100" not in text
    assert "cifar10-jpeg-wrn32_k-w1" in text and "cost/interleaved.json" in text
    assert "-n1000.json" in text and "-trades" not in text   # the robust subset; no TRADES model at mini
    run = snakemake("table2", "-n", "--config", "scale=mini", workdir=tmp_path)
    assert run.returncode != 0 and "needs the cifar100 dataset(s), which scale 'mini' does not provide" in output(run)


def test_runs_that_keep_their_best_weights_get_attack_jobs_on_model_best(tmp_path):
    keep = tmp_path / "keep_best.yaml"
    keep.write_text("scales:\n  mini1600:\n    train:\n      keep_best: true\n")
    dry = snakemake("table1", "-n", "--config", "scale=mini1600", "--configfile", str(keep), workdir=tmp_path)
    assert dry.returncode == 0, output(dry)[-3000:]
    counts, text = job_counts(output(dry)), output(dry)
    assert counts["train"] == 6 and counts["attack_best"] == 6 * 2   # clean and PGD-20 on each model_best.pt
    model = "results/mini1600/runs/cifar10-jpeg-wrn32_k-w1-free-m8-eps8-s0"
    assert f"{model}/evals/best/pgd20-eps8-step2-n1000.json" in text
    assert f"--weights best --out {model}/evals/best/pgd20-eps8-step2-n1000.json" in text
    assert f"--weights final --out {model}/evals/pgd20-eps8-step2-n1000.json" in text


def test_imagenet_without_a_folder_fails_before_any_job(tmp_path):
    run = snakemake("table3", "-n", workdir=tmp_path)
    assert run.returncode != 0
    assert "data.imagenet.data_root" in output(run) and "train/ and val/" in output(run)


@pytest.mark.slow
def test_train_jobs_with_several_gpus_run_under_torchrun(tmp_path):
    several = tmp_path / "gpus.yaml"
    several.write_text("scales:\n  smoke:\n    resources:\n"
                       "      train: {threads: 1, gpu: 4, mem_mb: 1000, runtime: 10}\n")
    dry = snakemake("table1", "-n", "-p", "--config", "scale=smoke", "--configfile", str(several), workdir=tmp_path)
    assert dry.returncode == 0, output(dry)[-3000:]
    assert "torchrun --standalone --nproc_per_node=4 -m freeadv train" in output(dry)
    plain = snakemake("table1", "-n", "-p", "--config", "scale=smoke", workdir=tmp_path)
    assert "torchrun" not in output(plain) and "OMP_NUM_THREADS=1 freeadv train" in output(plain)


# --- parse time and code inputs -------------------------------------------------------------------

@pytest.mark.slow
def test_snakefile_parses_without_torch(tmp_path):
    """The Snakefile builds the plan at parse time (on every job of a cluster run): no torch there."""
    stub = tmp_path / "stub"
    (stub / "torch").mkdir(parents=True)
    (stub / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    blocked = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(stub)))
    assert "torch is blocked in this test" in blocked.stderr
    workdir = tmp_path / "work"
    workdir.mkdir()
    dry = snakemake("-n", "all", "--config", "scale=smoke", workdir=workdir, path_first=stub)
    assert dry.returncode == 0, output(dry)[-3000:]
    assert job_counts(output(dry))["train"] == 26


def _edit(path: Path) -> None:
    """A change of content (Snakemake 9 skips an input whose mtime moved but whose checksum did not)."""
    path.write_text(path.read_text() + "\n# edited by test_workflow\n")


@pytest.mark.slow
def test_editing_a_library_file_reruns_the_jobs_that_import_it(tmp_path):
    repo = snapshot(tmp_path / "repo")
    workdir = tmp_path / "work"
    workdir.mkdir()
    smoke = ("all", "--config", "scale=smoke")
    summary = snakemake(*smoke, "--summary", workdir=workdir, repo=repo)
    assert summary.returncode == 0, output(summary)[-3000:]
    plan = scales.build_plan(**scales.plan_inputs(load_yaml(repo / "config" / "config.yaml"), "smoke"))
    benchmarks = [f"results/smoke/{job.benchmark}" for job in plan_jobs(plan)]   # --summary leaves them out
    for name in [line.split("\t")[0] for line in summary.stdout.splitlines()[1:]] + benchmarks:
        path = workdir / name   # every output of the DAG, faked, then dated in DAG order
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    touched = snakemake(*smoke, "--touch", "--cores", "1", workdir=workdir, repo=repo)
    assert touched.returncode == 0, output(touched)[-3000:]

    def dry_run() -> subprocess.CompletedProcess:
        dry = snakemake(*smoke, "-n", "--rerun-triggers", "mtime", workdir=workdir, repo=repo)
        assert dry.returncode == 0, output(dry)[-3000:]
        return dry

    assert "Nothing to be done" in output(dry_run())
    for unused in ("tools/doctor.py", "tools/estimate.py", "commands/doctor.py", "cli.py"):   # no rule's command imports them
        _edit(repo / "freeadv" / unused)
    assert "Nothing to be done" in output(dry_run())
    _edit(repo / "freeadv" / "tools" / "bench.py")   # the interleaved cost job, and the claims that read it
    assert job_counts(output(dry_run())) == {"cost_bench": 1, "claims": 1, "all": 1, "total": 3}
    _edit(repo / "freeadv" / "sanity.py")   # read by freeadv attack (check_eval) and the tables (check_model)
    counts = job_counts(output(dry_run()))
    attacks = {f for name in plan.available_targets() for f in plan.target_files(name) if "/evals/" in f}
    assert counts["attack"] == len(attacks) and counts["table"] == len(design.TABLES), counts
    assert "train" not in counts and counts["cost"] == 1, counts   # new attack benchmarks: a new cost table

