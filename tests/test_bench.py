"""freeadv bench: every method timed on one model and batch, costs in the order the paper predicts."""
import json

import pytest

from freeadv.tools.bench import run_bench
from freeadv.cli import main
from freeadv.methods import METHODS, method_params

PAPER_METHODS = ("natural", "free", "pgd", "fgsm_rs")


@pytest.fixture(scope="module")
def tiny_bench():
    return run_bench("small_cnn", 16, width=4, device="cpu", replay=2, warmup=1, reps=3, attack_steps=3)


@pytest.mark.slow
def test_every_method_and_both_pgd_loops_are_timed(tiny_bench):
    names = [row["name"] for row in tiny_bench["rows"]]
    assert names[:6] == ["Natural", "natural + input gradient", "Free m=2", "2-PGD", "7-PGD", "FGSM-RS"]
    assert names[6:-2] == [METHODS[m].title(method_params(m, {})) for m in METHODS if m not in PAPER_METHODS]
    assert names[-2:] == ["PGD-3 eval (freeadv)", "PGD-3 eval (plain autograd loop)"]
    natural = tiny_bench["rows"][0]
    assert natural["relative_to_natural"] == 1.0
    for row in tiny_bench["rows"]:
        assert row["reps"] == 3 and row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["images_per_s"] == pytest.approx(16 / row["median_s"])
    assert tiny_bench["device"]["type"] == "cpu" and tiny_bench["git"]["commit"]


def test_pgd_training_costs_grow_with_its_steps(tiny_bench):
    cost = {row["name"]: row["relative_to_natural"] for row in tiny_bench["rows"]}
    # 7-PGD runs 7 extra forward/backward passes per update; 2-PGD two: even a tiny overhead-bound
    # model cannot hide that.
    assert cost["7-PGD"] > cost["2-PGD"] > 1.2
    assert cost["7-PGD"] > 2.5


def test_cli_writes_the_json_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--width", "4", "--batch", "8", "--reps", "1", "--warmup", "1", "--attack-steps", "1",
                 "--methods", "free", "--device", "cpu", "--out", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "Free m=8" in table and "x natural" in table
    result = json.loads(out.read_text())
    assert [row["name"] for row in result["rows"]][:2] == ["Natural", "Free m=8"]
    assert result["device"]["cpu_settings"]["flush_denormal"] is True


def test_one_free_row_per_replay_in_one_interleaved_run(tmp_path):
    """--replay 2,4 times Free m=2 and m=4 beside natural in one process (the cost job's C3 evidence):
    each row says which method and m it is, so readers match rows without parsing labels."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--width", "4", "--batch", "8", "--reps", "1", "--warmup", "1", "--no-eval",
                 "--methods", "natural,free,pgd7", "--replay", "2,4", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = [(row["name"], row["method"], row["replay"]) for row in result["rows"]]
    assert rows == [("Natural", "natural", 1), ("Free m=2", "free", 2), ("Free m=4", "free", 4),
                    ("7-PGD", "pgd", 1)]
    assert result["replay"] == [2, 4]


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "0"], "--batch-size has bad value 0"),
    (["--batch", "0"], "--batch-size has bad value 0"),   # the former spelling, hidden from --help
    (["--methods", "pgd9"], "--methods has bad value 'pgd9'"),
    (["--replay", "2,0"], "--replay has bad value '0'"),
    (["--replay", "8,x"], "--replay has bad value 'x'"),
    (["--amp", "fp8"], "--amp has bad value 'fp8': expected one of off, bf16, fp16"),
    (["--autoattack-steps", "-1"], "--autoattack-steps has bad value -1"),
])
def test_bad_bench_arguments(capsys, args, message):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_fp16_steps_are_timed_with_the_loss_scaler_and_recorded(tmp_path):
    """--amp fp16 times the steps as amp: fp16 trains them (autocast and a GradScaler)."""
    from freeadv.training.runtime import fp16_available
    import torch
    if not fp16_available(torch.device("cpu")):
        pytest.skip(f"torch {torch.__version__} has no fp16 autocast with a GradScaler on the CPU")
    out = tmp_path / "bench.json"
    assert main(["bench", "--width", "4", "--batch", "8", "--reps", "1", "--warmup", "1", "--no-eval",
                 "--methods", "natural,free", "--amp", "fp16", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["amp"] == "fp16" and result["precision"]["compute"] == "fp16 autocast"
    assert result["peak"]["precision"] == "fp16" and [r["name"] for r in result["rows"]] == ["Natural", "Free m=8"]


@pytest.mark.slow
def test_each_autoattack_sub_attack_gets_a_row_in_seconds_per_100_images(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--width", "4", "--batch", "8", "--reps", "1", "--warmup", "1", "--no-eval",
                 "--methods", "natural", "--autoattack-steps", "1", "--device", "cpu", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())["autoattack_rows"]
    assert [r["attack"] for r in rows] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    for row in rows:
        assert row["kind"] == "autoattack" and row["n"] == 8 and row["steps"] == 1
        assert row["seconds_per_100_images"] == pytest.approx(100 * row["seconds"] / 8) and row["seconds"] > 0
        assert f"AutoAttack {row['attack']} (1 it)" in table
