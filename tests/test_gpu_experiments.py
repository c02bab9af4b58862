"""freeadv gpucheck --experiment: the bridge experiment's plan (the paper's recipe), its stages
within a time budget (a fake clock), its files after every stage, and its --quick run on a CPU."""
import dataclasses
import json
import time

import pytest
import torch

from freeadv import config as cfg
from freeadv.tools import bridge_plan as bp
from freeadv.tools import bridge_report as br
from freeadv.tools import bridge_stages as bs
from freeadv.tools import gpu_experiments as gx
from freeadv import stats
from freeadv.cli import main
from freeadv.training import schedule as lr_schedule

QUICK_BOUND_S = 90   # the quick bridge takes ~15 s on 2 cores; generous for a busy CI machine
TRAIN_KEYS = {"stage", "status", "seconds", "iterations", "passes", "natural_epochs", "train_images_per_s",
              "train_seconds", "weights_digest", "provenance", "train", "lr_milestones"}
EVAL_KEYS = {"stage", "status", "seconds", "n", "clean_acc", "robust_acc", "weights_digest",
             "same_weights_as_training", "eval", "attack"}


# --- the plan ----------------------------------------------------------------------------------

def test_the_full_plan_resolves_to_the_papers_recipe():
    plan = bp.bridge_plan(False, "/data")
    free, pgd7 = (cfg.resolve(bp.train_config(plan, m, torch.device("cuda"))) for m in ("free", "pgd7"))
    for config in (free, pgd7):
        assert (config["arch"], config["width"], config["batch_size"]) == ("wrn32_10", None, 128)
        assert (config["amp"], config["compile"], config["eps"]) == ("bf16", True, 8.0)
        assert (config["dataset"], config["data_root"], config["n_train"], config["data_seed"]) == (
            "cifar10-jpeg", "/data", 4000, 0)
        assert config["iterations"] == 3200 and config["n_test"] is None and not config["robust_eval_n"]
        assert lr_schedule.schedule(config, 31) == (3200, [1600, 2400]) and config["lr"] == 0.1
    assert (free["method"], free["replay"], free["free_step"]) == ("free", 8, None)   # step = eps
    assert (pgd7["method"], pgd7["replay"], pgd7["pgd_steps"], pgd7["pgd_step_size"]) == ("pgd", 1, 7, 2.0)
    assert 3200 * 128 / 4000 == pytest.approx(102.4)   # natural epochs; Free m=8: 12.8 passes
    assert (plan.pgd_n, plan.apgd_n, plan.apgd_steps) == (None, 500, 100)
    assert [s.name for s in bs.bridge_stages()] == list(bp.STAGE_NAMES)


def test_the_pgd7_training_is_expected_from_frees_steady_rate():
    train = {"seconds_per_iteration": 9.0, "log": [
        {"pass": 1, "iteration": 100, "train_seconds": 70.0},    # 60 s of compile, then 0.1 s an iteration
        {"pass": 2, "iteration": 200, "train_seconds": 80.0}, {"pass": 3, "iteration": 300, "train_seconds": 90.0}]}
    rate, warmup = bs.steady_seconds_per_iteration(train)
    assert rate == pytest.approx(0.1) and warmup == pytest.approx(60.0)
    plan = bp.bridge_plan(False, "/data")
    records = {"train-free": {"status": "done", "steady_seconds_per_iteration": rate,
                              "first_pass_extra_seconds": warmup}}
    assert bs._pgd7_training(plan, records) == pytest.approx(0.1 * 3200 * bs.PGD7_OVER_FREE + 60)
    assert bs._pgd7_training(plan, {}) == plan.expected_s["train-pgd7"]


# --- stages within a budget (a fake clock) -----------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _stage(name, clock, seconds, expected, needs=(), fail=False, seen=None, out=None):
    def run(ctx, records):
        if seen is not None:    # what is on disk while this stage runs
            seen[name] = sorted(p.name for p in out.iterdir())
        clock.now += seconds
        if fail:
            raise RuntimeError(f"{name} broke")
        return {"iterations": 1}
    return bs.Stage(name, name, run, lambda plan, records: expected, needs=needs)


def _header():
    return {"experiment": "bridge", "quick": True, "plan": {"model": {"arch": "m", "width": None}, "data": {
        "n_train": 1, "dataset": "d", "data_seed": 0}, "iterations": 1, "batch_size": 1, "amp": "off",
        "compile": False}, "device": {"name": "cpu"}, "git": {"commit": "abc", "dirty": False},
        "versions": {"torch": "x"}}


def test_a_stage_that_would_overrun_the_budget_is_skipped_and_recorded(tmp_path):
    clock, seen = FakeClock(), {}
    stages = [_stage("a", clock, 60, 50, seen=seen, out=tmp_path),
              _stage("b", clock, 50, 50, seen=seen, out=tmp_path),         # 60 + 50 > 100: skipped
              _stage("c", clock, 5, 5, needs=("b",)),                      # needs b: skipped
              _stage("d", clock, 5, 30, fail=True, seen=seen, out=tmp_path),   # 60 + 30 <= 100: runs, fails
              _stage("e", clock, 5, 10, needs=("a",))]
    ctx = bs.Context(bp.bridge_plan(True, None), torch.device("cpu"), tmp_path)
    result = bs.run_stages(stages, ctx, 100.0, tmp_path, _header(), clock)
    status = {name: r["status"] for name, r in result["stages"].items()}
    assert status == {"a": "done", "b": "skipped", "c": "skipped", "d": "failed", "e": "done"}
    assert result["stages"]["b"]["reason"] == "60 s spent + 50 s expected > the 100 s budget"
    assert result["stages"]["c"]["reason"] == "needs b, which is skipped"
    assert result["stages"]["d"]["error"] == "RuntimeError: d broke" and result["stages"]["d"]["seconds"] == 5
    assert "b" not in seen and result["elapsed_seconds"] == 70 and result["finished"]
    assert seen["a"] == [] and {"a.json", "b.json", "c.json", "bridge.json"} <= set(seen["d"])   # written as each ends
    for name in status:
        assert json.loads((tmp_path / f"{name}.json").read_text())["status"] == status[name]
    markdown = (tmp_path / "bridge.md").read_text()
    assert "- b: skipped: 60 s spent + 50 s expected > the 100 s budget" in markdown
    assert "- d: failed: RuntimeError: d broke" in markdown


def test_a_stage_needing_a_missing_package_is_skipped():
    stage = bs.Stage("x", "x", None, None, requires=("freeadv_no_such_package",))
    assert bs.skip_reason(stage, {}, 0.0, 1.0, 100.0) == "freeadv_no_such_package is not installed"
    assert [s.requires for s in bs.bridge_stages() if s.name.startswith("apgd")] == [("pyautoattack",)] * 2


def test_the_paired_comparison_is_freeadv_stats_on_the_per_image_flags():
    a, b = [True] * 6 + [False] * 4, [True] * 3 + [False] * 7
    record = lambda flags: {"first": 0, "n": 10, "clean": stats.pack_flags([True] * 10),  # noqa: E731
                            "robust": stats.pack_flags(flags)}
    found = br.paired(record(a), record(b))
    expected = stats.paired_difference(a, b, br.COMPARISON_CONFIDENCE)
    assert found["robust"]["estimate"] == pytest.approx(30.0) == expected.estimate
    assert (found["robust"]["low"], found["robust"]["high"]) == (expected.low, expected.high)
    assert found["clean"]["estimate"] == 0.0 and found["clean"]["low"] < 0 < found["clean"]["high"]
    with pytest.raises(ValueError, match="different images"):
        br.paired(record(a), {**record(b), "n": 8})


@pytest.mark.parametrize("value", ["brdge", "bridge-gpu", "eval_speed"])
def test_a_bad_experiment_is_one_line_naming_the_value_and_the_choices(capsys, value):
    assert main(["gpucheck", "--experiment", value, "--quick", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--experiment has bad value '{value}': expected one of full, bridge, bridge-cpu, eval-speed" in err


def test_the_bridge_needs_a_cuda_device_without_quick(tmp_path, capsys):
    (tmp_path / "cifar10-jpeg.tar.gz").touch()
    assert main(["gpucheck", "--experiment", "bridge", "--device", "cpu", "--data", str(tmp_path)]) == 2
    assert "experiment bridge needs a CUDA device" in capsys.readouterr().err


# --- the quick run -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_bridge(tmp_path_factory):
    out = tmp_path_factory.mktemp("bridge")
    threads = torch.get_num_threads()
    start = time.perf_counter()
    code = main(["gpucheck", "--experiment", "bridge", "--device", "cpu", "--quick", "--out-dir", str(out)])
    assert torch.get_num_threads() == threads
    return code, time.perf_counter() - start, out


@pytest.mark.slow
def test_the_quick_bridge_writes_every_stage(quick_bridge):
    code, seconds, out = quick_bridge
    assert code == 0 and seconds < QUICK_BOUND_S
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.json" for n in bp.STAGE_NAMES]
                                                           + ["bridge.json", "bridge.md"])
    result = json.loads((out / "bridge.json").read_text())
    assert result["finished"] and result["quick"] and result["budget_seconds"] == gx.BRIDGE_BUDGET_S
    assert [r["status"] for r in result["stages"].values()] == ["done"] * len(bp.STAGE_NAMES)
    for name in bp.STAGE_NAMES:
        record = json.loads((out / f"{name}.json").read_text())
        assert record == result["stages"][name]
        assert (TRAIN_KEYS if name.startswith("train") else EVAL_KEYS) <= set(record), name
        assert record["seconds"] > 0


@pytest.mark.slow
def test_the_quick_bridge_numbers_are_consistent(quick_bridge):
    _, _, out = quick_bridge
    stages = json.loads((out / "bridge.json").read_text())["stages"]
    free, pgd7 = stages["train-free"], stages["train-pgd7"]
    assert free["iterations"] == pgd7["iterations"] == 64
    assert free["passes"] == pytest.approx(pgd7["passes"] / 8)    # the same updates: 1/8 of the passes
    assert free["train_images_per_s"] > 0 and free["weights_digest"] != pgd7["weights_digest"]
    for name in ("pgd20-free", "pgd20-pgd7", "apgd-free", "apgd-pgd7"):
        record = stages[name]
        assert 0 <= record["robust_acc"] <= record["clean_acc"] <= 100, name
        assert record["same_weights_as_training"] and record["eval"]["per_image"]["n"] == record["n"]
    assert stages["pgd20-free"]["n"] == 48 and stages["apgd-free"]["n"] == 16
    assert [s["attack"] for s in stages["apgd-free"]["sub_attacks"]] == ["apgd-ce", "apgd-t"]
    comparison = json.loads((out / "bridge.json").read_text())["comparisons"]["pgd20"]
    assert comparison["n"] == 48 and comparison["robust"]["low"] <= comparison["robust"]["estimate"]
    markdown = (out / "bridge.md").read_text()
    assert "## Free m=8 minus 7-PGD" in markdown and "PGD-20 on 48 test images, robust accuracy: **" in markdown


# --- one call per method: --stages and --prior ----------------------------------------------

def test_stages_are_chosen_by_name_in_the_experiments_order():
    assert [s.name for s in gx.select_stages("pgd20-pgd7, train-pgd7")] == ["train-pgd7", "pgd20-pgd7"]
    assert [s.name for s in gx.select_stages(None)] == list(bp.STAGE_NAMES)
    for bad in ("train-pgd7,pgdx", " , "):
        with pytest.raises(ValueError, match=f"--stages has bad value '{bad}'"):
            gx.select_stages(bad)


def _prior_file(tmp_path, plan, **changes):
    records = {"train-free": {"stage": "train-free", "status": "done", "weights_digest": "w"},
               "pgd20-free": {"stage": "pgd20-free", "status": "done"},
               "apgd-free": {"stage": "apgd-free", "status": "skipped"}}
    earlier = {"experiment": "bridge", "plan": {**dataclasses.asdict(plan), **changes}, "stages": records}
    path = tmp_path / "bridge.json"
    path.write_text(json.dumps(earlier))
    return path


def test_an_earlier_calls_finished_records_stand_for_the_stages_not_run(tmp_path):
    plan = bp.bridge_plan(False, "/here")
    earlier = dataclasses.replace(plan, data={**plan.data, "data_root": "/there"}, expected_s={})
    stages = gx.select_stages("train-pgd7,pgd20-pgd7,pgd20-free")
    prior = gx.load_prior(str(_prior_file(tmp_path, earlier)), plan, stages)
    assert sorted(prior) == ["train-free"] and prior["train-free"]["prior"] == str(tmp_path / "bridge.json")
    with pytest.raises(ValueError, match="its plan is not this call's plan"):
        gx.load_prior(str(_prior_file(tmp_path, plan, iterations=1600)), plan, stages)
    with pytest.raises(ValueError, match="--prior has bad value .*not a readable bridge.json"):
        gx.load_prior(str(tmp_path / "missing.json"), plan, stages)


def test_a_stage_whose_input_ran_in_an_earlier_call_is_skipped():
    stage = gx.select_stages("apgd-free")[0]
    records = {"train-free": {"status": "done", "prior": "old/bridge.json"}}
    assert bs.skip_reason(stage, records, 0.0, 1.0, 100.0) == \
        "needs train-free, which ran in an earlier call (its weights are not kept)"
    assert bs.skip_reason(stage, {"train-free": {"status": "done"}}, 0.0, 1.0, 100.0) in (
        None, "pyautoattack is not installed")


# --- bridge-cpu: the recipe at WRN-32 width 1, resumed across calls --------------------------

def test_the_cpu_plan_is_the_bridges_recipe_at_width_1():
    gpu = bp.bridge_plan(False, "/data")
    for bf16, amp in ((True, "bf16"), (False, "off")):
        plan = bp.cpu_bridge_plan(False, "/data", bf16=bf16)
        assert plan.model == {"arch": "wrn32_k", "width": 1} and plan.amp == amp and not plan.compile
        assert (plan.data, plan.iterations, plan.batch_size, plan.pgd_n, plan.apgd_n) == (
            gpu.data, gpu.iterations, gpu.batch_size, gpu.pgd_n, gpu.apgd_n)
        config = cfg.resolve(bp.train_config(plan, "pgd7", torch.device("cpu")))
        assert config["checkpoint_every"] == 100 and config["width"] == 1
    assert cfg.resolve(bp.train_config(gpu, "free", torch.device("cuda")))["checkpoint_every"] == gpu.iterations


def test_bf16_instructions_are_read_from_the_cpu_flags(monkeypatch, tmp_path):
    from freeadv import cpu
    import builtins
    real_open = builtins.open
    for flags, found in (("fpu sse avx2", False), ("fpu avx512f avx512_bf16", True), ("fpu amx_bf16", True)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(
            info if path == "/proc/cpuinfo" else path, *a, **k))
        assert cpu.has_bf16_instructions() is found, flags


@pytest.mark.slow
def test_the_quick_cpu_bridge_resumes_from_its_folders(tmp_path, capsys):
    """A second call runs only the stages the first did not finish, and keeps the finished ones."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["gpucheck", "--experiment", "bridge-cpu", "--quick", "--out-dir", str(out), "--work-dir", str(runs)]
    assert main(argv) == 0
    first = json.loads((out / "bridge-cpu.json").read_text())
    assert first["finished"] and [r["status"] for r in first["stages"].values()] == ["done"] * 6
    began = sorted(first["stages"], key=lambda name: first["stages"][name]["started_at_s"])
    assert began == list(gx.CPU_STAGE_ORDER)     # model by model
    assert {p.name for p in runs.iterdir()} == {"free", "pgd7"}
    kept = {k: v for k, v in first["stages"].items() if k != "pgd20-pgd7"}
    (out / "bridge-cpu.json").write_text(json.dumps({**first, "stages": kept, "finished": False}))
    capsys.readouterr()
    assert main(argv) == 0
    assert "resuming: apgd-free, apgd-pgd7, pgd20-free, train-free, train-pgd7 finished" in capsys.readouterr().out
    second = json.loads((out / "bridge-cpu.json").read_text())
    assert {k: v for k, v in second["stages"].items() if k != "pgd20-pgd7"} == kept
    assert second["stages"]["pgd20-pgd7"]["status"] == "done"
    assert second["stages"]["pgd20-pgd7"]["weights_digest"] == kept["train-pgd7"]["weights_digest"]
    assert second["comparisons"]["pgd20"] == first["comparisons"]["pgd20"]


def test_a_cpu_bridge_folder_of_another_plan_is_refused(tmp_path, capsys):
    plan = bp.cpu_bridge_plan(True, None, bf16=False)
    other = {"experiment": "bridge-cpu", "plan": {**dataclasses.asdict(plan), "iterations": 7}, "stages": {}}
    (tmp_path / "bridge-cpu.json").write_text(json.dumps(other))
    argv = ["gpucheck", "--experiment", "bridge-cpu", "--quick", "--out-dir", str(tmp_path),
            "--work-dir", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out-dir has bad value" in err and "its plan is not this call's plan" in err
    assert not (tmp_path / "runs").exists()
    assert main([*argv, "--prior", str(tmp_path / "bridge-cpu.json")]) == 2
    assert "bridge-cpu resumes from --out-dir" in capsys.readouterr().err
    assert main(["gpucheck", "--experiment", "bridge", "--quick", "--device", "cpu", "--work-dir", "x"]) == 2
    assert "--work-dir is for --experiment bridge-cpu" in capsys.readouterr().err


def test_eval_speed_quick_on_the_cpu_writes_every_stage(tmp_path):
    """The eval-speed experiment's stand-in: PGD-20 rates for both layouts and cudnn.benchmark
    settings, cold and warm, and each AutoAttack sub-attack's seconds per 100 images."""
    pytest.importorskip("pyautoattack")
    from freeadv.tools.eval_speed import SUB_ATTACKS, run_eval_speed, speed_plan
    result = run_eval_speed(torch.device("cpu"), speed_plan(quick=True), None, 300.0, tmp_path)
    rows = result["stages"]["pgd20"]["result"]
    assert {(r["layout"], r["cudnn_benchmark"]) for r in rows} == {
        (layout, flag) for layout in ("nchw", "channels_last") for flag in (False, True)}
    assert all(r["images_per_s_cold"] > 0 and r["images_per_s_warm"] > 0 for r in rows)
    for name in SUB_ATTACKS:
        assert result["stages"][name]["result"]["seconds_per_100_images"] > 0
        assert json.loads((tmp_path / f"{name}.json").read_text())["status"] == "done"
    assert json.loads((tmp_path / "eval-speed.json").read_text())["experiment"] == "eval-speed"
