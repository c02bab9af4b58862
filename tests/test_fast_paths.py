"""The speed options that must not change what trains: compile_mode, sgd_impl, the data feed that
copies a pass's indices to the device once, and bench's Trainer timing beside its own."""
import json
import pytest
import torch

from freeadv import config as cfg
from freeadv.data import load_data, random_crop_flip
from freeadv.data.bundle import CIFAR_PAD, seeded_generator
from freeadv.tools import bench
from freeadv.training import folder, model_for, runtime

CPU = torch.device("cpu")


def test_new_keys_default_to_what_ran_before_and_old_configs_still_match():
    config = cfg.resolve({})
    assert (config["compile_mode"], config["sgd_impl"]) == ("default", "auto")
    older = {k: v for k, v in config.items() if k not in ("compile_mode", "sgd_impl")}
    assert folder.same_config(older, config)


@pytest.mark.parametrize("key, value, allowed", [
    ("compile_mode", "fast", "default, reduce-overhead or max-autotune"),
    ("sgd_impl", "apex", "auto, foreach or fused")])
def test_bad_values_are_refused_in_one_line(key, value, allowed):
    with pytest.raises(cfg.ConfigError, match=rf"^config key '{key}' has bad value '{value}': expected {allowed}$"):
        cfg.resolve({key: value})


@pytest.mark.parametrize("mode, passed", [("default", None), ("reduce-overhead", "reduce-overhead"),
                                          ("max-autotune", "max-autotune")])
def test_compile_mode_reaches_torch_compile(monkeypatch, mode, passed):
    seen = {}

    def fake_compile(model, mode=None):
        seen["mode"] = mode
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = torch.nn.Linear(2, 2)
    assert runtime.compile_model(model, {"compile": False, "compile_mode": mode}) is model and not seen
    runtime.compile_model(model, {"compile": True, "compile_mode": mode})
    assert seen["mode"] == passed


def _sgd_weights(config: dict, steps: int = 3) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = model_for(config)
    optimizer = runtime.make_optimizer(model, config)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=g)
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_auto_sgd_is_foreach_on_the_cpu_and_gives_the_per_parameter_loops_weights(monkeypatch):
    config = cfg.resolve({"arch": "small_cnn", "width": 4, "device": "cpu"})
    assert runtime.sgd_flags(config, CPU) == {"foreach": True}
    auto = _sgd_weights(config)
    monkeypatch.setattr(runtime, "sgd_flags", lambda config, device: {})   # torch's own default: a loop on the CPU
    loop = _sgd_weights(config)
    assert all(torch.equal(a, b) for a, b in zip(auto, loop))


def test_fused_sgd_is_used_where_torch_has_it_and_refused_where_not(monkeypatch):
    config = cfg.resolve({"arch": "small_cnn", "width": 4, "device": "cpu", "sgd_impl": "fused"})
    if runtime.fused_sgd_available(CPU):
        assert runtime.make_optimizer(model_for(config), config).defaults["fused"] is True
    monkeypatch.setattr(runtime, "fused_sgd_available", lambda device: False)
    with pytest.raises(cfg.ConfigError) as caught:
        runtime.make_optimizer(model_for(config), config)
    assert "'sgd_impl' has bad value 'fused'" in str(caught.value) and "\n" not in str(caught.value)
    assert runtime.sgd_flags({"sgd_impl": "auto"}, torch.device("cuda")) == {"foreach": True}


def _per_batch_reference(data, batch_size, epoch, seed, start_batch, shard):
    """The feed as it was: each batch's indices and augmentation drawn and copied on their own."""
    rank, world = shard
    order = torch.randperm(data.n_train, generator=seeded_generator(seed, epoch))
    for i, indices in enumerate(list(order.split(batch_size))[start_batch:data.n_train // batch_size], start_batch):
        x = random_crop_flip(data.train_x[indices], seeded_generator(seed, epoch, i), pad=CIFAR_PAD)
        x, y = x.float().div_(255.0), data.train_y[indices]
        yield (x.tensor_split(world)[rank], y.tensor_split(world)[rank]) if world > 1 else (x, y)


@pytest.mark.parametrize("epoch, start_batch, shard", [(0, 0, (0, 1)), (3, 2, (0, 1)), (1, 1, (1, 2))])
def test_the_feed_yields_the_batches_of_a_per_batch_copy(epoch, start_batch, shard):
    data = load_data("synthetic", ".", n_train=200, n_test=8)
    got = list(data.train_batches(48, epoch=epoch, seed=5, device="cpu", start_batch=start_batch, shard=shard))
    want = list(_per_batch_reference(data, 48, epoch, 5, start_batch, shard))
    assert len(got) == len(want) == 4 - start_batch
    for (x, y), (rx, ry) in zip(got, want):
        assert torch.equal(x, rx) and torch.equal(y, ry)


def test_a_resumed_pass_past_its_end_yields_nothing():
    data = load_data("synthetic", ".", n_train=64, n_test=8)
    assert list(data.train_batches(32, epoch=0, seed=0, device="cpu", start_batch=2)) == []


def test_bench_reports_the_trainers_ms_per_iteration_beside_its_own():
    result = bench.run_bench("small_cnn", 16, width=4, device="cpu", replay=2, warmup=1, reps=2,
                             methods=("natural", "xgrad", "free"), eval_rows=False, trainer=True)
    rows = {row["step"]: row for row in result["rows"]}
    assert rows["xgrad"]["trainer_ms_per_iter"] is None
    for step in ("natural", "free"):
        assert rows[step]["trainer_ms_per_iter"] > 0
        assert rows[step]["trainer_over_bench"] == pytest.approx(
            rows[step]["trainer_ms_per_iter"] / (1000 * rows[step]["median_s"]))
    table = bench.format_table(result).splitlines()
    assert table[2].endswith("trainer ms") and table[4].endswith("-")


def test_bench_without_the_trainer_keeps_its_table():
    result = bench.run_bench("small_cnn", 16, width=4, device="cpu", warmup=1, reps=2, methods=("natural",),
                             eval_rows=False)
    assert "trainer_ms_per_iter" not in result["rows"][0]
    assert bench.format_table(result).splitlines()[2].endswith("MFU")


def test_bench_trainer_flag_puts_the_trainers_ms_per_iteration_beside_each_training_row(tmp_path):
    from freeadv.cli import main
    out = tmp_path / "bench.json"
    assert main(["bench", "--arch", "small_cnn", "--width", "4", "--batch-size", "16", "--dataset", "synthetic",
                 "--device", "cpu", "--reps", "2", "--warmup", "1", "--no-eval", "--methods", "natural",
                 "--trainer", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(row["trainer_ms_per_iter"] > 0 and row["trainer_over_bench"] > 0 for row in rows)
