"""freeadv gpucheck on a CPU in --quick mode (every part, real numbers, under a minute, from a
folder outside the checkout), the estimate without a workflow config, bench's --amp / --compile /
MFU records, and the peak table the MFU divides by."""
import json
import os
import time
from pathlib import Path

import pytest
import torch

from freeadv.tools import bench
from freeadv.tools import gpucheck
from freeadv.tools import gpucheck_pytest
from freeadv.tools import processes
from freeadv.tools.gpucheck_settings import settings_for, slug
from freeadv.cli import main
from freeadv.provenance import device_info

QUICK_BOUND_S = 120   # the quick check takes ~20-30 s on 2 cores; generous for a busy CI machine
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_check(tmp_path_factory):
    """The quick check run from an empty folder: nothing it runs is looked up in the working directory."""
    out, elsewhere = tmp_path_factory.mktemp("gpu"), tmp_path_factory.mktemp("elsewhere")
    threads = torch.get_num_threads()
    start = time.perf_counter()
    here = os.getcwd()
    os.chdir(elsewhere)
    try:
        code = main(["gpucheck", "--device", "cpu", "--quick", "--out-dir", str(out),
                     "--workflow-config", str(ROOT / "config" / "config.yaml")])
    finally:
        os.chdir(here)
    seconds = time.perf_counter() - start
    print(f"freeadv gpucheck --device cpu --quick took {seconds:.1f} s")
    assert torch.get_num_threads() == threads    # the quick run's single thread is given back
    return code, seconds, out


@pytest.mark.slow
def test_quick_check_passes_in_under_a_minute_or_so(quick_check):
    code, seconds, out = quick_check
    assert code == 0
    assert seconds < QUICK_BOUND_S, f"gpucheck --quick took {seconds:.0f} s"
    stem = slug(device_info(torch.device("cpu"))["name"]) + "-quick"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.json", f"{stem}.md"]


@pytest.mark.slow
def test_quick_check_records_every_part_with_real_numbers(quick_check):
    _, _, out = quick_check
    result = json.loads(next(out.glob("*.json")).read_text())
    assert result["ok"] and result["quick"] and result["parts_ok"] == dict.fromkeys(
        ("tests", "bench", "train", "estimate"), True)
    assert result["parts_skipped"] == [] and {p["status"] for p in result["parts"].values()} == {"passed"}
    assert result["wall_seconds"] > 0 and result["git"]["commit"] and result["device"]["type"] == "cpu"
    parts = result["parts"]
    tests = parts["tests"]
    assert tests["passed"] > 0 and tests["failed"] == 0 and not tests["failing"]
    assert tests["module"] == "freeadv.tools.device_tests" and "--pyargs" in tests["command"]
    assert all(test_id.startswith("freeadv.tools.device_tests::") for test_id in tests["passed_ids"])
    configs = parts["bench"]["configs"]
    assert {c["precision"] for c in configs} == {"fp32", "bf16 autocast"}
    for c in configs:
        assert c["images_per_s"] > 0 and c["ms_per_iter"] > 0 and c["tflop_per_s"] > 0
        assert c["pgd7_over_natural"] > c["free_over_natural"] > 0
        assert c["mfu"] is None and c["peak"]["reason"].startswith("peak unknown")
    train = parts["train"]
    assert train["iterations"] > 0 and train["train_images_per_s"] > 0 and train["eval_images_per_s"] > 0
    assert 0 <= train["robust_acc"] <= train["clean_acc"] <= 100 and train["eval_n"] == 200
    estimate = parts["estimate"]
    assert estimate["target"] == "table1" and estimate["scale"] == "paper" and estimate["total_seconds"] > 0
    assert estimate["workflow_config"] == str(ROOT / "config" / "config.yaml")
    assert {job["model"] for job in estimate["jobs"]} >= {"cifar10-wrn32_10-free-m8-eps8-s0"}
    for name, part in parts.items():
        assert part["seconds"] > 0, name
    markdown = next(out.glob("*.md")).read_text()
    assert "| 1 device tests | PASS |" in markdown and "table1" in markdown


def _stub_parts(monkeypatch):
    monkeypatch.setattr(gpucheck, "run_device_tests", lambda *args: {"ok": True, "passed": 1, "failed": 0,
                                                                      "skipped": 1, "failing": []})
    monkeypatch.setattr(gpucheck, "run_bench_part", lambda *args: {"ok": True, "configs": [], "skipped": []})
    monkeypatch.setattr(gpucheck, "run_training_part", lambda *args: {"ok": False, "error": "ValueError: x"})


def test_a_failing_part_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("no estimate today")

    monkeypatch.setattr(gpucheck, "run_estimate_part", broken)
    _stub_parts(monkeypatch)
    assert main(["gpucheck", "--device", "cpu", "--quick", "--out-dir", str(tmp_path)]) == 1
    result = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert result["parts_ok"] == {"tests": True, "bench": True, "train": False, "estimate": False}
    assert result["parts"]["estimate"]["error"] == "RuntimeError: no estimate today"
    assert "## Failures" in next(tmp_path.glob("*.md")).read_text()


def test_each_failing_device_test_keeps_its_own_message(tmp_path):
    """The output tail holds only the last traceback: on the first H200 run one of two failures
    was unreadable. The JUnit report's message is kept for each failing test."""
    report = tmp_path / "gpu-tests.xml"
    report.write_text('<testsuites><testsuite>'
                      '<testcase name="test_a[cuda]"><failure message="AssertionError: weights differ"/></testcase>'
                      '<testcase name="test_b[cuda]"><error message="ValueError: no index"/></testcase>'
                      '<testcase name="test_c[cuda]"/></testsuite></testsuites>')
    counts = gpucheck_pytest.junit_counts(report)
    assert counts["passed"] == 1 and counts["failed"] == 2
    module = gpucheck_pytest.DEVICE_TESTS
    assert counts["failure_messages"] == {f"{module}::test_a[cuda]": "AssertionError: weights differ",
                                          f"{module}::test_b[cuda]": "ValueError: no index"}


def test_a_subprocess_past_its_time_is_killed_and_reported(tmp_path):
    start = time.perf_counter()
    code, _ = processes.run_bounded(["sleep", "30"], 0.5, tmp_path)
    assert code is None and time.perf_counter() - start < 10


@pytest.mark.parametrize("args,message", [
    ([], "--data-root is required unless --quick"),
    (["--data-root", "/nonexistent/folder"], "--data-root has bad value '/nonexistent/folder'"),
    (["--data", "/nonexistent/folder"], "--data-root has bad value '/nonexistent/folder'"),
    (["--quick", "--budget-seconds", "0"], "--budget-seconds has bad value 0"),
    (["--quick", "--device", "cpu", "--workflow-config", "/nonexistent/config.yaml"],
     "--workflow-config has bad value '/nonexistent/config.yaml': no such file"),
    (["--device", "cpu", "--data", "."], None),
])
def test_bad_gpucheck_arguments(tmp_path, capsys, args, message):
    if message is None:    # a full check on a CPU
        (tmp_path / "cifar10-jpeg.tar.gz").touch()
        args = ["--device", "cpu", "--data", str(tmp_path)]
        message = "--device has bad value 'cpu': the full check needs a CUDA device"
    assert main(["gpucheck", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bench_bf16_records_its_precision_and_no_mfu_on_a_cpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--width", "4", "--batch", "8", "--reps", "1", "--warmup", "1", "--methods", "free",
                 "--device", "cpu", "--amp", "bf16", "--no-eval", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "bf16 autocast" in table and "MFU" in table and "TFLOP/s" in table
    result = json.loads(out.read_text())
    assert result["precision"]["compute"] == "bf16 autocast" and result["precision"]["autocast_dtype"] == "bfloat16"
    assert result["amp"] == "bf16" and result["compile"] is False
    assert result["peak"]["tflops"] is None and result["peak"]["reason"].startswith("peak unknown")
    assert [row["name"] for row in result["rows"]] == ["Natural", "Free m=8"]   # no eval rows
    natural, free = result["rows"]
    assert result["natural_step_flops"] == natural["flops"] > 0
    assert free["flops"] > natural["flops"]      # Free's backward also computes the input gradient
    for row in result["rows"]:
        assert row["mfu"] is None
        assert row["tflop_per_s"] == pytest.approx(row["flops"] / row["median_s"] / 1e12)


def test_bench_compile_times_the_compiled_model(monkeypatch):
    compiled = []

    def fake_compile(model, **kwargs):     # torch.compile itself costs a minute on a CPU
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = bench.run_bench("small_cnn", 8, width=4, device="cpu", warmup=1, reps=1, methods=("natural", "free"),
                             compile=True, eval_rows=False)
    assert len(compiled) == 2 and result["compile"] is True and result["precision"]["compute"] == "fp32"


@pytest.mark.parametrize("name,entry", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200"),
    ("NVIDIA H200 NVL", "H200 NVL"),
    ("NVIDIA GH200 480GB", None),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
    ("NVIDIA A100 80GB PCIe", "A100 80GB"),
    ("NVIDIA A100-PCIE-40GB", "A100 40GB"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA L40", None),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 4090 D", None),
    ("NVIDIA A10G", "A10G"),
    ("NVIDIA A10", None),
    ("Tesla V100-SXM2-16GB", None),
])
def test_peak_table_lookup(name, entry):
    assert bench.peak_entry(name) == entry


def test_an_h100_runs_against_its_datasheet_peak(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    cuda = torch.device("cuda")
    bf16, fp32 = bench.device_peak(cuda, bf16=True), bench.device_peak(cuda, bf16=False)
    assert bf16["matched"] == "H100 SXM" and bf16["tflops"] == bench.PEAK_TFLOPS["H100 SXM"]["bf16"] == 989.5
    # fp32 steps: cuDNN may use TF32 for the convolutions (PyTorch's default), so TF32's peak
    assert fp32["precision"] == "tf32" and fp32["tflops"] == 494.5
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA B300")
    unknown = bench.device_peak(cuda, bf16=True)
    assert unknown["tflops"] is None and unknown["reason"].startswith("peak unknown")


def test_the_device_tests_are_found_by_module_name_in_the_check_s_own_folder(tmp_path):
    """No path of a checkout: pytest finds the tests in the installed package, with the config
    written in the check's temporary folder (the caller's folder's config and conftest stay out)."""
    command = gpucheck_pytest.pytest_command(tmp_path, tmp_path / "report.xml")
    assert command[command.index("--pyargs") + 1] == "freeadv.tools.device_tests"
    assert command[command.index("-c") + 1] == str(tmp_path / "pytest.ini")
    assert "markers =\n    gpu:" in (tmp_path / "pytest.ini").read_text()
    assert not any("tests/" in part for part in command)


def test_without_pytest_the_device_tests_fail_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(gpucheck_pytest, "PYTEST_MODULE", "freeadv_no_such_package")
    record = gpucheck_pytest.run_device_tests(torch.device("cpu"), settings_for(True, None),
                                              tmp_path)
    assert not record["ok"] and len(record["error"].splitlines()) == 1
    assert record["error"].startswith("freeadv_no_such_package is not installed") and "freeadv[test]" in record["error"]


def test_without_a_workflow_config_the_estimate_is_skipped_with_the_reason(monkeypatch, tmp_path, capsys):
    """Outside a checkout (no config/config.yaml by the package nor in the working directory) the
    other parts decide the check; the estimate says why it did not run."""
    _stub_parts(monkeypatch)
    trained = {"ok": True, "model": "small_cnn", "method": "free", "replay": 8, "dataset": "synthetic", "batch_size": 1,
               "iterations": 1, "passes": 1.0, "train_seconds": 1.0, "train_images_per_s": 1.0, "final_loss": 2.3,
               "attack": "PGD-20", "eval_n": 1, "clean_acc": 1.0, "robust_acc": 0.0, "eval_images_per_s": 1.0}
    monkeypatch.setattr(gpucheck, "run_training_part", lambda *args: trained)
    monkeypatch.setattr(gpucheck, "REPO", tmp_path / "installed")
    monkeypatch.chdir(tmp_path)
    assert main(["gpucheck", "--device", "cpu", "--quick", "--out-dir", str(tmp_path / "out")]) == 0
    result = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    estimate = result["parts"]["estimate"]
    assert result["ok"] and result["parts_ok"]["estimate"] and result["parts_skipped"] == ["estimate"]
    assert estimate["status"] == "skipped" and "--workflow-config not given" in estimate["reason"]
    assert str(tmp_path / "config" / "config.yaml") in estimate["reason"]
    assert result["parts"]["tests"]["status"] == "passed"   # its count of skipped tests is not a skipped part
    markdown = next((tmp_path / "out").glob("*.md")).read_text()
    assert "| 4 estimate | SKIP |" in markdown and "| 1 device tests | PASS |" in markdown
    assert "## Failures" not in markdown
    assert "[gpucheck] 4/4 estimate of table1 at paper scale: SKIP: no workflow config" in capsys.readouterr().out


def test_the_workflow_config_is_looked_for_by_the_package_then_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(gpucheck, "REPO", tmp_path / "checkout")
    monkeypatch.chdir(tmp_path)
    assert gpucheck.find_workflow_config("given.yaml") == (Path("given.yaml"), None)
    path, reason = gpucheck.find_workflow_config()
    assert path is None and reason.startswith("no workflow config")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").touch()
    assert gpucheck.find_workflow_config() == (tmp_path / "config" / "config.yaml", None)
    (tmp_path / "checkout" / "config").mkdir(parents=True)
    (tmp_path / "checkout" / "config" / "config.yaml").touch()
    assert gpucheck.find_workflow_config() == (tmp_path / "checkout" / "config" / "config.yaml", None)
