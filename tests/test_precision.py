"""amp: fp16 on the CPU: fp16 autocast with a torch.amp.GradScaler. The weight loss is scaled,
Free's perturbation steps by the sign of the (scaled) input gradient, a step with an inf or nan
gradient leaves weights and perturbation alone, and the scaler's state resumes with the run.
Where this torch has no CPU fp16 autocast, ``amp: fp16`` on the CPU is refused in one line."""
import pytest
import torch

from freeadv import config as cfg
from freeadv import methods, precision
from freeadv.checkpoints import load_checkpoint, load_tensors
from freeadv.methods import build_method
from freeadv.training import Trainer, make_optimizer, model_for, place_model, setup_runtime
from freeadv.training import engine, runtime

FP16_ON_CPU = runtime.fp16_available(torch.device("cpu"))
needs_fp16 = pytest.mark.skipif(not FP16_ON_CPU, reason=f"torch {torch.__version__} has no CPU fp16 autocast")

# a width-4 small_cnn on 2 batches of 32: fp16 on the CPU is emulated and slow (about 0.1 s a step)
TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 4, "n_train": 64, "n_test": 32, "batch_size": 32,
        "iterations": 8, "method": "free", "replay": 2, "eval_n": None, "robust_eval_n": 0, "log_every": 2,
        "checkpoint_every": 3, "device": "cpu", "amp": "fp16"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fp16_is_a_value_of_amp_and_other_values_are_refused():
    assert cfg.resolve({"amp": "fp16"})["amp"] == "fp16"
    with pytest.raises(cfg.ConfigError, match=r"^config key 'amp' has bad value 'fp8': expected auto, bf16, fp16 "
                                              r"or off$"):
        cfg.resolve({"amp": "fp8"})


def test_fp16_without_cpu_support_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(runtime, "fp16_available", lambda device: False)
    with pytest.raises(cfg.ConfigError) as caught:
        setup_runtime(cfg.resolve(TINY))
    assert "'amp' has bad value 'fp16'" in str(caught.value) and "\n" not in str(caught.value)


@needs_fp16
def test_fp16_autocast_computes_in_fp16_and_only_fp16_gets_a_scaler():
    config = cfg.resolve(TINY)
    device, autocast, _ = setup_runtime(config)
    with autocast():
        out = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    assert out.dtype == torch.float16
    assert isinstance(precision.make_scaler("fp16", device), torch.amp.GradScaler)
    assert all(precision.make_scaler(amp, device) is None for amp in ("off", "bf16", "auto"))


def test_signed_step_is_the_sign_unless_the_step_is_skipped():
    grad = torch.tensor([0.5, -2.0, 0.0])
    assert torch.equal(precision.signed_step(grad.clone(), None), torch.tensor([1.0, -1.0, 0.0]))
    assert torch.equal(precision.signed_step(grad.clone(), torch.tensor(0.0)), torch.tensor([1.0, -1.0, 0.0]))
    assert torch.equal(precision.signed_step(grad.clone(), torch.tensor(1.0)), torch.zeros(3))
    assert torch.equal(precision.signed_step(torch.tensor([0.5, float("nan"), 1.0]), torch.tensor(0.0)),
                       torch.zeros(3))


def _fp16_setup(method_name: str, **overrides):
    config = cfg.resolve({**TINY, "method": method_name, "replay": 2 if method_name in ("free", "natural") else 1,
                          "pgd_steps": 2, "trades_steps": 2, **overrides})
    device, autocast, _ = setup_runtime(config)
    torch.manual_seed(0)
    model = place_model(model_for(config), device, False).train()
    method = build_method(config, autocast=autocast)
    method.scaler = precision.make_scaler("fp16", device)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    return model, make_optimizer(model, config), method, x, y


@needs_fp16
@pytest.mark.parametrize("name", ["natural", "free", "pgd", "fgsm_rs", "trades"])
def test_every_method_takes_a_finite_fp16_step(name):
    model, optimizer, method, x, y = _fp16_setup(name)
    before = [p.detach().clone() for p in model.parameters()]
    loss = method.step(model, optimizer, x, y, torch.Generator().manual_seed(1))
    assert torch.isfinite(loss)
    if float(method.skipped) == 0:   # the scaler's first scale (65536) may overflow: then nothing moves
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert method.scaler.get_scale() > 0


@needs_fp16
def test_an_overflowing_fp16_step_moves_neither_weights_nor_perturbation():
    model, optimizer, method, x, y = _fp16_setup("free")
    method.step(model, optimizer, x, y)   # a first step gives delta signs to keep
    method.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 120)   # scaled gradients overflow fp16
    weights, delta = [p.detach().clone() for p in model.parameters()], method.delta.clone()
    method.step(model, optimizer, x, y)
    assert float(method.skipped) > 0 and method.scaler.get_scale() == 2.0 ** 119   # skipped, scale halved
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert torch.equal(method.delta, delta) and delta.abs().sum() > 0


class Interrupt(Exception):
    pass


def cut_short(config: dict, run_dir, failing_call: int, monkeypatch) -> None:
    """Train ``config`` in ``run_dir`` until the ``failing_call``-th Free step raises."""
    original, calls = methods.Free.step, [0]

    def step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == failing_call:
            raise Interrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(methods.Free, "step", step)
        with pytest.raises(Interrupt):
            Trainer(config, run_dir, progress=False).run()


@needs_fp16
def test_an_fp16_run_trains_and_resumes_exactly(tmp_path, monkeypatch):
    # a first scale that overflows: the first steps are skipped while it halves, so a resume
    # that started the scaler afresh would skip steps again and end with other weights
    monkeypatch.setattr(engine, "make_scaler", lambda amp, device: torch.amp.GradScaler("cpu", init_scale=2.0 ** 20))
    config = cfg.resolve(TINY)
    result = Trainer(config, tmp_path / "straight", progress=False).run()
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in result["loss_history"])
    cut_short(config, tmp_path / "resumed", 6, monkeypatch)   # after the checkpoint at 3, mid-replay (m=2)
    saved = load_checkpoint(tmp_path / "resumed")
    assert saved["iteration"] == 3 and saved["scaler"]["scale"] < 2.0 ** 20
    resumed = Trainer(config, tmp_path / "resumed", progress=False).run()
    assert resumed["resumes"] == 1 and resumed["loss_history"] == result["loss_history"]
    straight, again = load_tensors(tmp_path / "straight" / "model.pt"), load_tensors(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_fp32_checkpoints_hold_no_scaler(tmp_path, monkeypatch):
    cut_short(cfg.resolve({**TINY, "amp": "off"}), tmp_path, 4, monkeypatch)   # after the checkpoint at 3
    assert "scaler" not in load_checkpoint(tmp_path)


@needs_fp16
def test_an_fp16_run_records_fp16_autocast_as_its_precision(tmp_path):
    result = Trainer(cfg.resolve(TINY), tmp_path / "run", progress=False).run()
    assert result["precision"]["compute"] == "fp16 autocast" and result["precision"]["autocast_dtype"] == "float16"
