"""The cluster path on a real SLURM: the workflow run through snakemake-executor-plugin-slurm with
profiles/slurm, on the one-node cluster `bash .ci/slurm start` brings up (slurmctld, slurmd,
slurmdbd + MariaDB, munge; two fake GPUs as GRES). Nothing here is mocked: sbatch, the scheduler's
GPU allocation, its time limit and sacct are SLURM's own.

- A training job with gpu: 2 is ONE SLURM task that sees both GPUs, in which torchrun starts 2 CPU
  (gloo) ranks; its weights equal the single-process equivalent; its attacks and table follow.
- A training job killed by SLURM at its time limit is retried (the profile's `retries`), resumes
  from its checkpoint and ends with the weights of an uninterrupted run.

Skipped where no cluster answers, except when FREEADV_REQUIRE_SLURM=1 (.ci/run sets it, so CI
cannot pass by skipping). FREEADV_SLURM_PROFILE names another profile folder to test (e.g. the
profile before its multi-GPU fix)."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from freeadv.checkpoints import load_tensors
from freeadv.config import load_yaml
from freeadv.experiments import layout
from freeadv.io import read_json
from test_distributed import assert_same_weights, single_process_equivalent

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = os.environ.get("FREEADV_SLURM_ACCOUNT", "ci")        # what .ci/slurm creates
PARTITION = os.environ.get("FREEADV_SLURM_PARTITION", "ci")
PROFILE = Path(os.environ.get("FREEADV_SLURM_PROFILE", REPO / "profiles" / "slurm"))
DDP_SCALE, KILL_SCALE = "slurmddp", "slurmkill"
TARGET = "yopo"             # one model (Free m=10, batch 256), four attacks, one table
GPUS = 2
KILL_LIMIT_MIN = 1          # SLURM kills at 60-90 s past the start (its time-limit check runs every 30 s)
KILL_TRAIN_S = 100          # the killed job's training alone: past the latest kill (beside the reference run, slower)



def snapshot(destination: Path) -> Path:
    """A copy of the workflow and the library (edits to the checkout while jobs run change nothing)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("freeadv", "workflow", "config", "profiles"):
        shutil.copytree(REPO / name, destination / name, ignore=ignore)
    return destination


def _cluster_answers() -> bool:
    if not shutil.which("sbatch"):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return ping.returncode == 0 and "UP" in ping.stdout


@pytest.fixture(scope="module")
def cluster():
    if not _cluster_answers():
        if os.environ.get("FREEADV_REQUIRE_SLURM") == "1":
            pytest.fail("FREEADV_REQUIRE_SLURM=1 but no SLURM cluster answers: run `bash .ci/slurm start` as root")
        pytest.skip("no SLURM cluster (bash .ci/slurm start brings up a one-node one as root)")
    versions = subprocess.run([sys.executable, "-m", "pip", "list", "--format=json"], capture_output=True,
                              text=True, timeout=60).stdout
    plugins = {p["name"]: p["version"] for p in json.loads(versions) if "slurm" in p["name"]}
    print(f"\n[slurm] {subprocess.run(['sinfo', '-V'], capture_output=True, text=True).stdout.strip()}; {plugins}")
    return plugins


def cluster_profile(tmp_path: Path) -> Path:
    """profiles/slurm as a user fills it in (account and partitions), plus short status polls."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    profile["default-resources"].update(slurm_account=ACCOUNT, slurm_partition=PARTITION)
    for resources in (profile.get("set-resources") or {}).values():
        if "slurm_partition" in resources:
            resources["slurm_partition"] = PARTITION
    profile["slurm-init-seconds-before-status-checks"] = 2   # the default 40 s is for big clusters
    profile["latency-wait"] = 5                                # one node, one file system
    profile["slurm-keep-successful-logs"] = True               # their names are the SLURM job ids
    folder = tmp_path / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def test_profile_sets_resources_only_for_rules_the_workflow_has(tmp_path):
    """Snakemake ignores a set-resources entry whose rule does not exist, so a renamed rule would
    silently lose its partition and its one-task setting; and the filled-in profile the cluster
    tests use keeps no placeholder. Needs no cluster."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    sources = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    rules = {name for path in sources for name in re.findall(r"^rule (\w+):", path.read_text(), re.M)}
    assert set(profile["set-resources"]) <= rules, set(profile["set-resources"]) - rules
    assert profile["set-resources"]["train"]["tasks"] == 0
    filled = (cluster_profile(tmp_path) / "config.yaml").read_text()
    assert "<your" not in filled and f"slurm_partition: {PARTITION}" in filled


def cluster_config(tmp_path: Path, kill_iterations: int) -> Path:
    """The smoke scale twice: once with training jobs asking for 2 GPUs, once with a training job
    long enough for SLURM's time limit to kill it (checkpoints every ~4 s of training)."""
    config = load_yaml(REPO / "config" / "config.yaml")
    smoke = config["scales"]["smoke"]
    ddp = json.loads(json.dumps(smoke))
    ddp["resources"]["train"].update(gpu=GPUS, threads=1)
    kill = json.loads(json.dumps(smoke))
    every = max(1, kill_iterations // 30)
    kill["train"].update(iterations=kill_iterations, checkpoint_every=every, log_every=every)
    kill["resources"]["train"].update(runtime=KILL_LIMIT_MIN, threads=1)
    config["scales"].update({DDP_SCALE: ddp, KILL_SCALE: kill})
    path = tmp_path / "slurm-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(repo: Path, workdir: Path, profile: Path, configfile: Path, scale: str, *targets: str,
              timeout: int) -> subprocess.CompletedProcess:
    """The workflow of ``repo`` through the SLURM executor; jobs import ``repo``'s freeadv."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "snakemake", *targets, "--directory", str(workdir),
               "--workflow-profile", str(profile), "--configfile", str(configfile), "--config", f"scale={scale}"]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)


def plan_models(configfile: Path, scale: str, tmp_path: Path) -> dict:
    out = tmp_path / f"plan-{scale}.json"
    subprocess.run([sys.executable, "-m", "freeadv", "plan", "--config", str(configfile), "--scale", scale,
                    "--out", str(out)], check=True, capture_output=True, timeout=120)
    return read_json(out)["models"]


def slurm_jobs(workdir: Path, rule: str) -> list[str]:
    """The SLURM job ids of one rule's jobs, from the plugin's log files (one per submission)."""
    logs = sorted((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob("*.log"))
    return [log.stem for log in logs]


def sacct(job: str, *fields: str, steps: bool = False) -> list[dict[str, str]]:
    command = ["sacct", "-n", "-P", "-j", job, "-o", ",".join(fields)] + ([] if steps else ["-X"])
    lines = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    return [dict(zip(fields, line.split("|"))) for line in lines if line]


def failed(run: subprocess.CompletedProcess) -> str:
    return (run.stdout + run.stderr)[-6000:]


@pytest.mark.slurm
@pytest.mark.slow
def test_multi_gpu_training_job_is_one_task_running_torchrun_once(cluster, tmp_path):
    repo = snapshot(tmp_path / "repo")
    workdir = tmp_path / "work"
    configfile = cluster_config(tmp_path, kill_iterations=1)
    run = snakemake(repo, workdir, cluster_profile(tmp_path), configfile, DDP_SCALE, TARGET, timeout=900)
    assert run.returncode == 0, failed(run)
    (model, entry), = [(m, e) for m, e in plan_models(configfile, DDP_SCALE, tmp_path).items() if "bs256" in m]
    results = workdir / layout.ScaleLayout(DDP_SCALE).result("")

    summary = read_json(results / layout.train_path(model))
    assert summary["distributed"] == {"world_size": GPUS, "backend": "gloo"}
    # one SLURM task, given both GPUs (with the defect: 2 tasks, each seeing one GPU)
    assert summary["scheduler"]["slurm_step_tasks"] == "1", summary["scheduler"]
    assert summary["scheduler"]["visible_gpus"] == "0,1", summary["scheduler"]
    jobs = slurm_jobs(workdir, "train")
    assert len(jobs) == 1, jobs
    allocation, = sacct(jobs[0], "AllocTRES", "State")
    assert f"gres/gpu={GPUS}" in allocation["AllocTRES"] and allocation["State"] == "COMPLETED", allocation
    job_steps = [s for s in sacct(jobs[0], "JobID", "NTasks", steps=True) if s["JobID"].partition(".")[2].isdigit()]
    assert [s["NTasks"] for s in job_steps] == ["1"], job_steps   # one srun step, one task: torchrun ran once

    settings = {**entry["config"], "device": "cpu"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # as each rank ran (the job's OMP_NUM_THREADS): then equal to the bit
    try:
        expected = single_process_equivalent(settings, GPUS)
    finally:
        torch.set_num_threads(threads)
    assert_same_weights(load_tensors(results / layout.model_path(model)), expected)
    # its attacks ran as SLURM jobs too, and the table was built from them
    assert len(slurm_jobs(workdir, "attack")) == 4
    assert (workdir / layout.ScaleLayout(DDP_SCALE).table_files(TARGET)[0]).is_file()


def calibrated_iterations(tmp_path: Path, settings: dict) -> int:
    """Iterations that take about KILL_TRAIN_S of training on this machine, at one thread."""
    probe = {**settings, "iterations": 60, "checkpoint_every": 1000, "log_every": 60}
    train(probe, tmp_path / "probe").check_returncode()
    per_iteration = read_json(tmp_path / "probe" / "train.json")["seconds_per_iteration"]
    return math.ceil(KILL_TRAIN_S / per_iteration)


def train(settings: dict, out: Path, wait: bool = True):
    args = [a for key, value in settings.items() for a in ("--set", f"{key}={json.dumps(value)}")]
    command = [sys.executable, "-m", "freeadv", "train", *args, "--out", str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slurm
@pytest.mark.slow
def test_training_job_killed_at_its_time_limit_resumes_to_the_uninterrupted_weights(cluster, tmp_path):
    repo = snapshot(tmp_path / "repo")
    workdir = tmp_path / "work"
    probe_config = cluster_config(tmp_path, kill_iterations=60)
    (model, entry), = [(m, e) for m, e in plan_models(probe_config, KILL_SCALE, tmp_path).items() if "bs256" in m]
    iterations = calibrated_iterations(tmp_path, entry["config"])
    configfile = cluster_config(tmp_path, kill_iterations=iterations)
    (model, entry), = [(m, e) for m, e in plan_models(configfile, KILL_SCALE, tmp_path).items() if "bs256" in m]

    reference = train(entry["config"], tmp_path / "uninterrupted", wait=False)   # beside the cluster run
    results = workdir / layout.ScaleLayout(KILL_SCALE).result("")
    started = time.monotonic()
    run = snakemake(repo, workdir, cluster_profile(tmp_path), configfile, KILL_SCALE,
                    layout.ScaleLayout(KILL_SCALE).result(layout.model_path(model)), timeout=1200)
    assert reference.wait(timeout=900) == 0, reference.stderr.read()[-3000:]
    assert run.returncode == 0, failed(run)
    attempts = [sacct(job, "State", "Elapsed")[0] for job in slurm_jobs(workdir, "train")]
    print(f"[slurm] {iterations} iterations with a {KILL_LIMIT_MIN}-min limit: {time.monotonic() - started:.0f} s, "
          f"attempts {attempts}")

    states = [attempt["State"] for attempt in attempts]
    assert states[0] == "TIMEOUT" and states[-1] == "COMPLETED", states   # killed by SLURM, then retried
    summary = read_json(results / layout.train_path(model))
    assert summary["resumes"] == len(states) - 1 >= 1
    assert summary["iterations"] == iterations
    expected = load_tensors(tmp_path / "uninterrupted" / "model.pt")
    actual = load_tensors(results / layout.model_path(model))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
