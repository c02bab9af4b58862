"""Every file a report reads is validated (freeadv.schemas): impossible numbers, missing keys and
undecodable bytes end in one line naming the file and the key, never in a table, a claim, a
model_info.json or a traceback; `freeadv regenerate` fails on a target it cannot build and leaves no
stale output of it."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from freeadv import schemas
from freeadv.report import claims
from freeadv.cli import main
from freeadv.report.cost import CostError, read_benchmark
from freeadv.report.evidence import Evidence
from freeadv.io import write_json
from freeadv.report.results import BadResult, read_result

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "results" / "mini1600"   # the committed results of a completed CPU run
RUN = "runs/cifar10-jpeg-wrn32_k-w1-free-m8-eps8-s0"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def mini_file(relative: str) -> dict:
    return json.loads((MINI / relative).read_text())


def one_line_error(capsys, argv: list, *culprits: str) -> str:
    """Run the CLI; it must refuse with exit 2 and one stderr line naming every culprit."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("freeadv ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(c in lines[0] for c in culprits), lines[0]
    return lines[0]


# --- every committed file validates ----------------------------------------------------------------

def _kind_of(path: Path) -> str | None:
    return {"plan.json": "plan", "interleaved.json": "bench"}.get(path.name)


@pytest.mark.skipif(not MINI.is_dir(), reason="no committed mini results")
def test_every_committed_file_validates():
    files = [p for p in MINI.rglob("*.json") if p.name not in ("claims.json", "resources.json")]
    assert len(files) > 100
    for path in files:
        schemas.read_checked(path, _kind_of(path))
    tsvs = list((MINI / "benchmarks").rglob("*.tsv"))
    assert tsvs
    for path in tsvs:
        assert read_benchmark(path)["wall_s"] > 0


def test_the_committed_kinds_are_the_ones_the_writers_declare():
    kinds = {schemas.read_checked(p).get("kind") for p in MINI.glob("runs/*/*/*.json")}
    assert {"eval", "loss-surface", "adv-examples"} <= kinds
    assert mini_file(f"{RUN}/train.json")["kind"] == "train"


# --- numbers a writer cannot produce -------------------------------------------------------------------

@pytest.mark.parametrize("key, value, says", [
    ("robust_acc", 250.0, "robust_acc = 250.0: must be at most 100"),
    ("clean_acc", -3.0, "clean_acc = -3.0: must be at least 0"),
    ("n", 0, "n = 0: must be at least 1"),
    ("n", 2.5, "n = 2.5: must be an integer"),
    ("wall_seconds", -1.0, "wall_seconds = -1.0: must be greater than 0"),
    ("robust_acc", float("nan"), "robust_acc = nan: must be a finite number"),
    ("clean_acc", float("inf"), "clean_acc = inf: must be a finite number"),
])
def test_an_eval_with_an_impossible_number_is_refused(tmp_path, key, value, says):
    ev = {**mini_file(f"{RUN}/evals/pgd20-eps8-step2-n1000.json"), key: value}
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "e.json").write_text(json.dumps(ev))   # json writes NaN / Infinity as Python reads them
    with pytest.raises(BadResult) as err:
        read_result(tmp_path, "evals/e.json")
    assert says in str(err.value) and str(tmp_path / "evals" / "e.json") in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("change, says", [
    (lambda t: t.pop("config"), "key config is missing"),
    (lambda t: t.update(config=[1, 2]), "key config = [1, 2]: must be an object"),
    (lambda t: t.update(train_minutes="5"), "key train_minutes = \"5\": must be a number"),
    (lambda t: t.update(train_minutes=0.0), "train_minutes = 0.0: must be greater than 0"),
    (lambda t: t["log"][2].update(heldout_robust_acc=101.0), "key log[2].heldout_robust_acc = 101.0"),
    (lambda t: t["log"][0].update(train_seconds=-5.0), "key log[0].train_seconds = -5.0: must be at least 0"),
])
def test_a_malformed_train_json_names_the_file_and_the_key(tmp_path, change, says):
    train = mini_file(f"{RUN}/train.json")
    change(train)
    write_json(tmp_path / "train.json", train)
    with pytest.raises(BadResult) as err:
        read_result(tmp_path, "train.json")
    assert says in str(err.value) and f"'{tmp_path / 'train.json'}'" in str(err.value)


def test_a_file_of_another_kind_is_refused(tmp_path):
    shutil.copy(MINI / RUN / "train.json", tmp_path / "e.json")
    with pytest.raises(BadResult, match="is a train file .*not a eval file"):
        read_result(tmp_path, "e.json", "eval")


# --- C3: times -----------------------------------------------------------------------------------------

def _c3_evidence(root: Path, natural_s: float) -> Evidence:
    from test_claims import interleaved_plan, write_results   # the claims' synthetic scale

    ev = interleaved_plan(write_results(root), root)
    data = json.loads((root / "cost" / "interleaved.json").read_text())
    data["rows"][0]["median_s"] = natural_s
    write_json(root / "cost" / "interleaved.json", data)
    return ev


@pytest.mark.parametrize("natural_s", [-0.1, 0.0])
def test_c3_refuses_a_step_time_that_is_not_positive(tmp_path, natural_s):
    ev = _c3_evidence(tmp_path, natural_s)
    with pytest.raises(BadResult, match=r"interleaved\.json'.*rows\[0\]\.median_s = -?0\.\d?.*greater than 0"):
        claims.c3_cost(ev)


@pytest.mark.slow
@pytest.mark.parametrize("minutes", [-10.0, 0.0])
def test_c3_refuses_a_training_time_that_is_not_positive(tmp_path, capsys, minutes):
    results = tmp_path / "results" / "mini1600"
    shutil.copytree(MINI, results, ignore=shutil.ignore_patterns("tables", "claims.*", "benchmarks"))
    natural = results / "runs" / "cifar10-jpeg-wrn32_k-w1-natural-s0" / "train.json"
    write_json(natural, {**json.loads(natural.read_text()), "train_minutes": minutes})
    one_line_error(capsys, ["claims", "--results", tmp_path / "results", "--scale", "mini1600"],
                   str(natural), f"key train_minutes = {minutes}: must be greater than 0")
    assert "PASS" not in capsys.readouterr().out


# --- cost ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wall", ["1e308", "inf", "nan", "-1"])
def test_a_cost_benchmark_value_that_cannot_be_summed_is_refused(tmp_path, wall):
    path = tmp_path / "job.tsv"
    path.write_text(HEADER + f"{wall}\t0:00:01\t10\t10\t10\t10\t0\t0\t1\t1.0\n")
    with pytest.raises(CostError) as err:
        read_benchmark(path)
    assert f"'{path}'" in str(err.value) and "column 's'" in str(err.value)


def test_undecodable_bytes_name_the_file(tmp_path):
    tsv, result = tmp_path / "job.tsv", tmp_path / "train.json"
    tsv.write_bytes(b"\xff\xfe" + HEADER.encode())
    result.write_bytes(b'{"config": "\xff"}')
    with pytest.raises(CostError, match=re.escape(f"benchmark file '{tsv}' is not UTF-8 text (byte 0xff")):
        read_benchmark(tsv)
    with pytest.raises(BadResult, match=re.escape(f"result file '{result}' is not UTF-8 text (byte 0xff")):
        read_result(tmp_path, "train.json")


# --- figures and C6: a surface without images ---------------------------------------------------------

def test_a_surface_without_images_is_refused(tmp_path):
    from test_claims import write_results

    surface = mini_file(f"{RUN}/analysis/loss-surface-adv-rad-img2-grid21-span16.json")
    (tmp_path / "s.json").write_text(json.dumps({**surface, "images": []}))
    with pytest.raises(BadResult, match="key images = \\[\\]: must not be empty"):
        read_result(tmp_path, "s.json")
    ev = write_results(tmp_path / "scale")
    write_json(tmp_path / "scale" / "runs" / "free_m8-s0" / "analysis" / "surface.json", {"axis": [0.0], "images": []})
    with pytest.raises(BadResult, match="surface.json': key images"):
        claims.c6_adversarial_direction(ev)   # never PASS on the other robust model alone


# --- export --------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("clean", [float("nan"), 250.0, -3.0])
def test_export_refuses_an_impossible_clean_accuracy(trained_run, tmp_path, capsys, clean):
    from freeadv.attacks import AttackSpec
    from freeadv.runs import run_attack

    ev = run_attack(trained_run, AttackSpec("none", n=16), device="cpu")
    ev["clean_acc"] = clean
    path = tmp_path / "clean.json"
    path.write_text(json.dumps(ev))
    one_line_error(capsys, ["export", "--run", trained_run, "--eval", path, "--out", tmp_path / "out"],
                   str(path), "clean_acc")
    assert not (tmp_path / "out").exists()


# --- through the CLI: one line, no traceback ---------------------------------------------------------

@pytest.mark.parametrize("name, text, culprit", [
    ("train.json", "[]", "holds a JSON list"),
    ("train.json", '{"config": {}}', "key train_minutes is missing"),
    ("train.json", "\xff", "not UTF-8"),
    ("eval", '{"n": "many", "clean_acc": 50}', "key n = \"many\""),
    ("eval", '{"n": 100}', "key clean_acc is missing"),
    ("eval", '{"n": 100, "clean_acc": 50, "per_image": {"n": 100, "clean": 1, "robust": "AA"}}',
     "key per_image.clean = 1: must be a string"),
])
def test_malformed_results_end_in_one_line_through_the_cli(tmp_path, capsys, name, text, culprit):
    results = tmp_path / "results" / "mini1600"
    shutil.copytree(MINI, results, ignore=shutil.ignore_patterns("tables", "claims.*", "benchmarks"))
    target = results / RUN / ("train.json" if name == "train.json" else "evals/pgd20-eps8-step2-n1000.json")
    target.write_bytes(text.encode("latin-1"))
    one_line_error(capsys, ["table", "table1", "--results", results, "--out-dir", tmp_path / "t"],
                   str(target), culprit)


# --- regenerate ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_regenerate_without_an_input_fails_and_leaves_no_stale_output(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results" / "mini1600"
    shutil.copytree(MINI, results)
    monkeypatch.chdir(tmp_path)
    (results / "tables" / "stale-marker.txt").write_text("not a target's output\n")
    missing = results / RUN / "evals" / "noise-eps8-n1000.json"   # a sanity evaluation of Table 1's free_m8
    missing.unlink()
    assert main(["regenerate", "--scale", "mini1600"]) == 1
    err = capsys.readouterr().err
    not_built = [line for line in err.splitlines() if line.startswith("[freeadv] not built: ")]
    assert any(line.startswith("[freeadv] not built: table1: ") and "noise-eps8-n1000.json' is missing" in line
               for line in not_built), err
    assert "[freeadv] not built: claims: table1 was not built" in err
    for stale in ("tables/table1.csv", "tables/table1.md", "tables/table1.tex", "claims.txt", "claims.json"):
        assert not (results / stale).exists(), stale
    assert not (tmp_path / "figures" / "mini1600" / "curves_table1.png").exists()
    assert (results / "tables" / "stale-marker.txt").exists()   # only a target's own files are removed
    assert (results / "tables" / "cost.csv").exists()
