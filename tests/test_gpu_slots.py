"""GPU slots of one machine (freeadv/slots.py, `freeadv gpu-slot`), checked on the CPU with fake GPU
ids: concurrent jobs never share an id, all of them finish, a killed holder's slot comes free, a
scheduler's CUDA_VISIBLE_DEVICES stands, and the workflow puts the slot before GPU jobs only."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from freeadv.slots import SlotError, acquire, release, try_acquire
from test_workflow import REPO, output, snakemake

# A job that marks its GPU id in use for a while: a second holder of the same id at the same time
# finds the mark (O_EXCL) and leaves a collision file.
JOB = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    marks, seconds = Path(sys.argv[1]), float(sys.argv[2])
    gpu = os.environ["CUDA_VISIBLE_DEVICES"]
    try:
        os.close(os.open(marks / f"inuse-{gpu}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        (marks / f"collision-{gpu}-{os.getpid()}").touch()
        sys.exit(3)
    others = [p.name for p in marks.glob("inuse-*") if p.name != f"inuse-{gpu}"]
    with open(marks / "log", "a") as log:
        log.write(f"{gpu} {'overlap' if others else 'alone'}\\n")
    time.sleep(seconds)
    os.unlink(marks / f"inuse-{gpu}")
""")


def in_slot(command: list[str], gpus: int, slots: int, folder: Path, env: dict | None = None) -> subprocess.Popen:
    """A process that takes its slots (polling every 50 ms) and then becomes ``command``."""
    start = ("import sys; from pathlib import Path; from freeadv.slots import exec_in_slot; "
             f"exec_in_slot(sys.argv[1:], {gpus}, {slots}, Path({str(folder)!r}), poll_s=0.05)")
    base = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env = dict(base, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen([sys.executable, "-c", start, *command], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_four_jobs_on_two_slots_never_share_a_gpu_and_all_finish(tmp_path):
    job = tmp_path / "job.py"
    job.write_text(JOB)
    marks = tmp_path / "marks"
    marks.mkdir()
    procs = [in_slot([sys.executable, str(job), str(marks), "1.5"], 1, 2, tmp_path / "slots") for _ in range(4)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0] * 4, [p.stderr.read() for p in procs]
    assert not list(marks.glob("collision-*"))
    lines = (marks / "log").read_text().split()
    ids = lines[0::2]
    assert sorted(ids) == ["0", "0", "1", "1"]          # both GPUs, each twice
    assert "overlap" in lines[1::2]                      # two jobs did run at once, on different ids
    assert try_acquire(2, 2, tmp_path / "slots") is not None   # every slot free again


@pytest.mark.slow
def test_a_killed_holder_releases_its_slot(tmp_path):
    folder = tmp_path / "slots"
    holder = in_slot(["sleep", "60"], 1, 1, folder)
    deadline = time.monotonic() + 30
    while not (folder / "gpu0.lock").exists() or "sleep" not in (folder / "gpu0.lock").read_text():
        assert time.monotonic() < deadline and holder.poll() is None, holder.stderr.read()
        time.sleep(0.05)
    assert try_acquire(1, 1, folder) is None             # held by the running job
    os.kill(holder.pid, signal.SIGKILL)                  # the job itself: exec made it the holder
    holder.wait(timeout=10)
    held = acquire(1, 1, folder, poll_s=0.05)            # comes free without any cleanup
    assert list(held) == [0]
    release(held)


def test_a_job_with_its_devices_set_keeps_them_and_takes_no_slot(tmp_path):
    folder = tmp_path / "slots"
    show = [sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]
    job = in_slot(show, 1, 2, folder, env={"CUDA_VISIBLE_DEVICES": "7"})
    out, err = job.communicate(timeout=60)
    assert job.returncode == 0 and out.strip() == "7", err
    assert "set by the environment" in err
    assert not folder.exists()


def test_a_job_asking_more_gpus_than_slots_is_one_line(tmp_path):
    with pytest.raises(SlotError) as error:
        acquire(3, 2, tmp_path)
    assert "asks for 3 GPU(s)" in str(error.value) and "\n" not in str(error.value)


def test_the_lowest_free_ids_are_taken_all_or_nothing(tmp_path):
    first = try_acquire(1, 3, tmp_path)
    assert list(first) == [0]
    pair = try_acquire(2, 3, tmp_path)
    assert list(pair) == [1, 2]
    assert try_acquire(1, 3, tmp_path) is None
    release(pair)
    assert list(again := try_acquire(2, 3, tmp_path)) == [1, 2]
    release(again)
    release(first)


@pytest.mark.slow
def test_freeadv_gpu_slot_sets_the_device_and_runs_the_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    run = subprocess.run([sys.executable, "-m", "freeadv", "gpu-slot", "--slots", "2", "--dir", str(tmp_path),
                          "--", sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"],
                         capture_output=True, text=True, env=dict(env, PYTHONPATH=str(REPO)), cwd=REPO, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "0", run.stderr
    assert "gpu-slot: CUDA_VISIBLE_DEVICES=0" in run.stderr


@pytest.mark.slow
def test_workflow_puts_gpu_jobs_in_slots_only_when_gpus_per_machine_is_set(tmp_path):
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text("scales:\n  smoke:\n    resources:\n"
                    "      train: {threads: 1, gpu: 1, mem_mb: 1000, runtime: 10}\n")
    args = ("table1", "-n", "-p", "--configfile", str(gpus), "--config", "scale=smoke")
    slotted = snakemake(*args, "gpus_per_machine=2", workdir=tmp_path)
    assert slotted.returncode == 0, output(slotted)[-3000:]
    text = output(slotted)
    assert "OMP_NUM_THREADS=1 freeadv gpu-slot --gpus 1 --slots 2 -- freeadv train" in text
    assert "OMP_NUM_THREADS=1 freeadv attack" in text    # gpu: 0 jobs run as before
    plain = snakemake(*args, workdir=tmp_path)
    assert "gpu-slot" not in output(plain) and "OMP_NUM_THREADS=1 freeadv train" in output(plain)
    gpus.write_text(gpus.read_text().replace("gpu: 1", "gpu: 4"))
    too_many = snakemake(*args, "gpus_per_machine=2", workdir=tmp_path)
    assert too_many.returncode != 0
    assert "asks for 4 GPUs but gpus_per_machine is 2" in output(too_many)
