"""Part 1 of ``freeadv gpucheck``: the device tests (freeadv.tools.device_tests) under pytest, in a
child process with a timeout, read back from pytest's JUnit XML.

The tests are named by module (``python -m pytest --pyargs freeadv.tools.device_tests``), so the
check runs them wherever the package is installed, from any working directory, with no source
checkout. The child runs in the check's temporary folder with a pytest config written there
(``-c``): it registers the ``gpu`` marker and keeps whatever config, conftest or cache the caller's
working directory holds out of the run. A child, so that a crash or a hang is recorded instead of
ending the check.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch

from .gpucheck_settings import Settings
from .processes import package_env, run_bounded

DEVICE_TESTS = "freeadv.tools.device_tests"
PYTEST_MODULE = "pytest"
FAILURE_MESSAGE_CHARS = 2000   # per failing device test, in the report
PYTEST_CONFIG = """[pytest]
markers =
    gpu: device acceptance tests (freeadv.tools.device_tests) on $FREEADV_TEST_DEVICE
"""


def missing_pytest() -> str | None:
    """Why the device tests cannot run here (one line), or None: pytest is a test extra of the
    package, not one of its dependencies, so an install without it has the tests but no runner."""
    if importlib.util.find_spec(PYTEST_MODULE) is None:
        return (f"{PYTEST_MODULE} is not installed, and the device tests run under it: "
                "pip install pytest (or the package's test extra, freeadv[test])")
    return None


def pytest_command(workdir: Path, report: Path) -> list[str]:
    """The child's command line: the device tests by module name, the config written in ``workdir``."""
    config = workdir / "pytest.ini"
    config.write_text(PYTEST_CONFIG)
    return [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "--pyargs", DEVICE_TESTS, "-c", str(config),
            "--rootdir", str(workdir), "-p", "no:cacheprovider", "-p", "no:xdist", "-rs", f"--junitxml={report}"]


def run_device_tests(device: torch.device, settings: Settings, workdir: Path) -> dict[str, Any]:
    """The device tests on ``device`` in a child process; counts and failing ids from its JUnit XML."""
    reason = missing_pytest()
    if reason is not None:
        print(f"[gpucheck]   {reason}", flush=True)
        return {"ok": False, "error": reason, "module": DEVICE_TESTS}
    report = workdir / "gpu-tests.xml"
    threads = str(torch.get_num_threads() if device.type == "cpu" else max(1, min(8, os.cpu_count() or 1)))
    env = package_env(FREEADV_TEST_DEVICE=str(device), FREEADV_TEST_QUICK="1" if settings.quick else "0",
                      OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env.pop("PYTEST_ADDOPTS", None)
    command = pytest_command(workdir, report)
    code, output = run_bounded(command, settings.test_timeout_s, workdir, env)
    if code is None:
        return {"ok": False, "error": f"the device tests timed out after {settings.test_timeout_s} s (killed)",
                "command": " ".join(command), "module": DEVICE_TESTS, "output_tail": output}
    record: dict[str, Any] = {"command": " ".join(command), "module": DEVICE_TESTS, "returncode": code,
                              "threads": int(threads)}
    if report.is_file():
        record.update(junit_counts(report))
    else:
        record.update(passed=0, failed=0, errors=0, skipped=0, failing=[])
    record["ok"] = code == 0 and record["passed"] > 0 and not record["failing"]
    if not record["ok"]:
        record["error"] = ("no device test ran" if code == 0 else
                           f"pytest exited {code}: {', '.join(record['failing']) or 'see output_tail'}")
        record["output_tail"] = output
    return record


def junit_counts(report: Path) -> dict[str, Any]:
    """Passed, failed and skipped tests of a JUnit XML report, each failure with its own message:
    the output tail holds only the last failure's traceback."""
    passed, failing, skipped, messages = [], [], [], {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{DEVICE_TESTS}::{case.get('name')}"
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        if failure is not None:
            failing.append(test_id)
            messages[test_id] = (failure.get("message") or failure.text or "")[:FAILURE_MESSAGE_CHARS]
        elif case.find("skipped") is not None:
            skipped.append({"id": test_id, "reason": case.find("skipped").get("message", "")})
        else:
            passed.append(test_id)
    return {"passed": len(passed), "failed": len(failing), "skipped": len(skipped), "failing": failing,
            "failure_messages": messages, "passed_ids": passed, "skipped_ids": skipped}
