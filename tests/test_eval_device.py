"""An evaluation's own device settings: cuDNN's autotuner off while it runs, the training layout on
CUDA, the clean pass run once, and the ``auto`` batch size (AutoAttack's chunk) per device."""
import json

import pytest
import torch
from torch import nn

from freeadv.attacks import AttackSpec
from freeadv.cli import main
from freeadv.errors import UserError
from freeadv.runs import evaluate
from freeadv.runs import eval_device as ed
from freeadv.runs.evaluation import _batch_size


def conv_model(classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, classes)).eval()


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("500", 500), (64, 64), ("1", 1)])
def test_a_batch_size_is_a_positive_integer_or_auto(value, expected):
    assert ed.check_batch_size(value) == expected


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5", "", None, 0])
def test_a_bad_batch_size_is_one_line_naming_it(value):
    with pytest.raises(UserError, match=r"--batch-size has bad value .*: expected an integer >= 1 or 'auto'"):
        ed.check_batch_size(value)


def test_the_attack_command_refuses_a_bad_batch_size_before_any_work(tmp_path, capsys):
    code = main(["attack", "--run", str(tmp_path / "missing"), "--attack", "pgd", "--batch-size", "many",
                 "--out", str(tmp_path / "eval.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--batch-size has bad value 'many'" in err


def test_the_evaluation_layout_is_the_training_layout_on_cuda_only():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert ed.eval_channels_last("auto", cuda) and ed.eval_channels_last(True, cuda)
    assert not ed.eval_channels_last(False, cuda)
    assert not any(ed.eval_channels_last(flag, cpu) for flag in ("auto", True, False))


def test_the_settings_turn_the_autotuner_off_and_restore_it_and_the_layout():
    model = conv_model()
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True
        with ed.evaluation_settings(model, torch.device("cuda"), channels_last=True):
            assert torch.backends.cudnn.benchmark is False
            assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
            assert not model[0].weight.is_contiguous()
        assert torch.backends.cudnn.benchmark is True and model[0].weight.is_contiguous()
        model.to(memory_format=torch.channels_last)   # a model that comes in channels_last leaves so
        with ed.evaluation_settings(model, torch.device("cuda"), channels_last=True):
            pass
        assert not model[0].weight.is_contiguous()
        model.to(memory_format=torch.contiguous_format)
        with pytest.raises(RuntimeError), ed.evaluation_settings(model, torch.device("cuda"), channels_last=False):
            raise RuntimeError("an attack failed")
        assert torch.backends.cudnn.benchmark is True
        with ed.evaluation_settings(model, torch.device("cpu"), channels_last=False):
            assert torch.backends.cudnn.benchmark is True   # a CPU evaluation leaves cuDNN alone
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize("free,per_image,expected", [
    (80e9, 20e6, 2000),      # room for 2,000: the cap
    (16e9, 20e6, 400),       # 0.5 * 16 GB / 20 MB = 400
    (16e9, 30e6, 200),       # 266 -> a multiple of 100
    (1e9, 20e6, 25),         # under 100: as it is
    (1e6, 20e6, 1),          # never 0
])
def test_the_auto_chunk_fits_half_the_free_memory(free, per_image, expected):
    assert ed.chunk_for(free, per_image) == expected


def test_auto_on_a_cpu_is_the_cpu_batch_and_a_resumed_state_keeps_its_chunk(tmp_path):
    model, image = conv_model(), torch.rand(1, 3, 8, 8)
    assert ed.resolve_batch_size("auto", model, image, torch.device("cpu")) == ed.CPU_BATCH
    assert ed.resolve_batch_size(64, model, image, torch.device("cpu")) == 64

    class Data:
        def test_batches(self, batch_size, device):
            yield torch.rand(batch_size, 3, 8, 8), torch.zeros(batch_size, dtype=torch.long)
    state = tmp_path / "eval.state.json"
    assert _batch_size("auto", model, Data(), torch.device("cpu"), state) == ed.CPU_BATCH
    state.write_text(json.dumps({"batch_size": 250}))
    assert _batch_size("auto", model, Data(), torch.device("cpu"), state) == 250
    assert _batch_size(100, model, Data(), torch.device("cpu"), state) == 100   # a given size is the user's


class Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_the_clean_pass_runs_once_per_batch():
    """PGD-K with one restart: one clean forward, K attack steps, one forward to judge the result."""
    model = Counting(conv_model())
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 3, (16,))
    with torch.no_grad():
        y = model.inner(x).argmax(1)    # every image starts correct, so every image is attacked
    spec = AttackSpec("pgd", 3, 1.0, 0.5, 1)
    result = evaluate(model, [(x, y)], spec, seed=0)
    assert result["clean_correct"] == 16
    assert model.calls == 1 + 3 + 1


def test_autoattack_runs_nchw_because_its_library_cannot_take_a_channels_last_gradient():
    """Why eval_channels_last is False for AutoAttack on any device: pyautoattack's APGD-T views
    gradients as contiguous, and channels_last images make it raise. If this stops raising,
    AutoAttack may follow the training layout too."""
    pytest.importorskip("pyautoattack")
    from freeadv.attacks.autoattack import build_autoattack
    assert not ed.eval_channels_last("auto", torch.device("cuda"), whole_set=True)
    model = conv_model(classes=10)   # APGD-T attacks 9 target classes
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(1)
    adversary = build_autoattack(model, AttackSpec("autoattack", 1, 8.0), ("apgd-t",), seed=0, device="cpu")
    adversary.verbose = False
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        adversary.run_standard_evaluation(x.contiguous(memory_format=torch.channels_last), y, batch_size=16)
    adversary.run_standard_evaluation(x, y, batch_size=16)   # NCHW images run
