"""Data-parallel training under torchrun, on CPU with gloo and 2 processes: one Free-m run equals
its single-process equivalent (per-shard batch statistics, parameter gradients averaged over the
shards, one perturbation buffer per shard), and a killed 2-process run resumes exactly."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from freeadv import config as cfg
from freeadv.checkpoints import load_tensors
from freeadv.io import read_json
from freeadv.methods import frozen_bn_statistics
from freeadv.training import data_for, make_optimizer, model_for, place_model, setup_runtime
from freeadv.units import to_unit
from freeadv.training import schedule as lr_schedule

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
SETTINGS = {"dataset": "synthetic", "arch": "small_cnn", "width": 4, "method": "free", "replay": 2,
            "n_train": 64, "n_test": 32, "batch_size": 32, "iterations": 8, "eval_n": None, "log_every": 2,
            "checkpoint_every": 3, "device": "cpu", "seed": 3}
ARGS = [a for key, value in SETTINGS.items()
        for a in ("--set", f"{key}={'null' if value is None else value}")] + ["--no-progress"]

# torchrun runs this file: `freeadv train`, SIGKILLing rank 1 at its N-th Free step when N > 0.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from freeadv import methods
    from freeadv.cli import main

    n, args = int(sys.argv[1]), sys.argv[2:]
    if n > 0 and os.environ["RANK"] == "1":
        step, seen = methods.Free.step, {"n": 0}
        def dying_step(self, *a, **k):
            seen["n"] += 1
            if seen["n"] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(self, *a, **k)
        methods.Free.step = dying_step
    sys.exit(main(args))
""")


def torchrun(tmp_path: Path, out: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
    script = tmp_path / "train_ddp.py"
    script.write_text(KILLER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               str(script), str(kill_at), "train", *ARGS, "--out", str(out)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def single_process_equivalent(settings: dict = SETTINGS, world: int = WORLD) -> dict[str, torch.Tensor]:
    """Algorithm 1 (Free-m, ``settings``) in one process on the whole minibatch, with what DDP
    with ``world`` processes changes made explicit: each shard of the batch is its own forward
    (its own BN batch statistics; only rank 0's updates the running averages, which DDP
    broadcasts), and the loss is the mean of the shards' losses. tests/test_slurm.py uses it too."""
    config = cfg.resolve(settings)
    device, _, channels_last = setup_runtime(config)
    torch.manual_seed(config["seed"])
    data = data_for(config)
    model = place_model(model_for(config, data), device, channels_last)
    optimizer = make_optimizer(model, config)
    total, milestones = lr_schedule.schedule(config, data.num_train_batches(config["batch_size"]))
    free_step = config["free_step"] if config["free_step"] is not None else config["eps"]   # Algorithm 1: eps
    eps, step = to_unit(config["eps"]), to_unit(free_step)
    delta = torch.zeros(config["batch_size"], 3, 32, 32)
    iteration, epoch = 0, 0
    model.train()
    while iteration < total:
        for x, y in data.train_batches(config["batch_size"], epoch=epoch, seed=config["seed"], device=device):
            for _ in range(config["replay"]):
                for group in optimizer.param_groups:
                    group["lr"] = lr_schedule.learning_rate(config, milestones, iteration)
                leaf = delta[: len(x)].clone().requires_grad_(True)
                x_adv = (x + leaf).clamp(0, 1).contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                losses = []
                for rank, (xs, ys) in enumerate(zip(x_adv.tensor_split(world), y.tensor_split(world))):
                    if rank == 0:
                        losses.append(F.cross_entropy(model(xs), ys))
                    else:
                        with frozen_bn_statistics(model):
                            losses.append(F.cross_entropy(model(xs), ys))
                torch.stack(losses).mean().backward()
                optimizer.step()
                with torch.no_grad():
                    delta[: len(x)] = (delta[: len(x)] + step * leaf.grad.sign()).clamp(-eps, eps)
                iteration += 1
                if iteration == total:
                    break
            if iteration == total:
                break
        epoch += 1
    return model.state_dict()


def assert_same_weights(actual: dict, expected: dict) -> None:
    for name, value in expected.items():
        if name.endswith("num_batches_tracked"):   # counts forwards, which the emulation doubles
            continue
        torch.testing.assert_close(actual[name], value, atol=2e-5, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_two_process_free_training_equals_the_single_process_equivalent(tmp_path):
    run = torchrun(tmp_path, tmp_path / "ddp")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = read_json(tmp_path / "ddp" / "train.json")
    assert summary["distributed"] == {"world_size": WORLD, "backend": "gloo"}
    assert summary["iterations"] == SETTINGS["iterations"]
    ddp = load_tensors(tmp_path / "ddp" / "model.pt")
    expected = single_process_equivalent()
    assert_same_weights(ddp, expected)
    # and the comparison can fail: one process on the whole batch (one BN statistic) differs
    first_weight = next(k for k, v in expected.items() if v.ndim == 4 and k.endswith("weight"))
    whole = subprocess.run([sys.executable, "-m", "freeadv", "train", *ARGS, "--out", str(tmp_path / "one")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert not torch.allclose(load_tensors(tmp_path / "one" / "model.pt")[first_weight], ddp[first_weight], atol=1e-4)


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_same_weights(tmp_path):
    reference = torchrun(tmp_path, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = torchrun(tmp_path, tmp_path / "killed", kill_at=6)   # after the checkpoint at iteration 3
    assert killed.returncode != 0
    checkpoint = load_tensors(tmp_path / "killed" / "checkpoint.pt")
    assert checkpoint["iteration"] == 3
    assert checkpoint["method"]["delta"].shape[0] == SETTINGS["batch_size"]   # both ranks' rows
    resumed = torchrun(tmp_path, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert read_json(tmp_path / "killed" / "train.json")["resumes"] == 1
    assert_same_weights(load_tensors(tmp_path / "killed" / "model.pt"),
                        load_tensors(tmp_path / "reference" / "model.pt"))


def test_batch_not_divisible_by_the_processes_is_refused(tmp_path, monkeypatch):
    from freeadv.training import Trainer
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(cfg.ConfigError, match="'batch_size' has bad value 32: with 3 data-parallel processes"):
        Trainer(cfg.resolve(SETTINGS), tmp_path / "run").run()
