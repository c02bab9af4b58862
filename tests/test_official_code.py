"""Where the authors' code (and the code it adopts: Madry et al.'s TF CIFAR code, the official
ImageNet PyTorch code, the surface script) decides a detail the paper leaves open, we follow it.
One test per detail; each would fail under the behaviour it replaced."""
import math

import pytest
import torch
from torch import nn

from freeadv import config as cfg
from freeadv.runs.analysis import _rademacher_pair, loss_grid
from freeadv.data.bundle import DataBundle, TensorBundle
from freeadv.experiments.design import TARGETS
from freeadv.methods import build_method
from freeadv.models.layers import PerImageStandardize
from freeadv.training import make_optimizer, model_for
from freeadv.training import schedule as lr_schedule


def _tiny(**overrides):
    return cfg.resolve({"dataset": "synthetic", "arch": "small_cnn", "width": 4, "device": "cpu", **overrides})


# 1. ImageNet: the official code's SGD(model.parameters(), weight_decay=1e-4) decays every parameter.
def test_imagenet_decays_every_parameter_cifar_only_the_kernels():
    imagenet = cfg.resolve({"dataset": "imagenet", "arch": "small_cnn", "width": 4, "method": "free", "replay": 4})
    cifar = cfg.resolve({"dataset": "cifar10", "arch": "small_cnn", "width": 4})
    model = model_for(_tiny())
    decayed = {id(p) for g in make_optimizer(model, imagenet).param_groups if g["weight_decay"] == 1e-4
               for p in g["params"]}
    assert decayed == {id(p) for p in model.parameters()}
    kernels = {id(p) for g in make_optimizer(model, cifar).param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert kernels == {id(p) for p in model.parameters() if p.ndim > 1} != decayed


# 2. CIFAR passes take full batches only (390 of 128 from 50,000); ImageNet keeps its partial batch.
def _cifar_sized(n: int) -> TensorBundle:
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    return TensorBundle("cifar10", x, torch.zeros(n, dtype=torch.long), x[:1], torch.zeros(1, dtype=torch.long),
                        augment=False)


def test_cifar_pass_drops_the_partial_batch():
    assert _cifar_sized(50_000).num_train_batches(128) == 390
    bundle = _cifar_sized(300)
    sizes = [len(y) for _, y in bundle.train_batches(128, epoch=0, seed=0, device="cpu")]
    assert sizes == [128, 128]
    with pytest.raises(ValueError, match="no full batch"):
        _cifar_sized(100).num_train_batches(128)


def test_imagenet_pass_keeps_the_partial_batch():
    bundle = DataBundle("imagenet", image_size=224, n_train=300, n_test=1)
    assert bundle.num_train_batches(128) == 3
    assert [len(b) for b in bundle._pass_order(128, epoch=0, seed=0, start_batch=0)] == [128, 128, 44]


# 3. K-PGD (and FGSM-RS) training: the attack's forward passes move the BN running averages, as in
# Madry et al.'s TF batch norm (updates_collections=None in the training graph).
def _bn_moves_during_step(attack_bn: str, method: str = "pgd") -> int:
    config = _tiny(method=method, attack_bn=attack_bn, batch_size=16, **({"pgd_steps": 3} if method == "pgd" else {}))
    torch.manual_seed(0)
    model = model_for(config).train()
    norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    moves = []

    def watch(module, inputs):
        moves.append(module.running_mean.clone())
    norm.register_forward_pre_hook(watch)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    build_method(config).step(model, make_optimizer(model, config), x, y, torch.Generator().manual_seed(0))
    moves.append(norm.running_mean.clone())
    return sum(not torch.equal(a, b) for a, b in zip(moves, moves[1:]))


def test_kpgd_attack_updates_bn_averages_by_default():
    assert _tiny(method="pgd")["attack_bn"] == "update"
    assert _bn_moves_during_step("update") == 3 + 1      # K attack forwards + the training forward
    assert _bn_moves_during_step("frozen") == 1
    assert _bn_moves_during_step("update", "fgsm_rs") == 1 + 1


def test_attack_bn_is_validated():
    with pytest.raises(cfg.ConfigError, match="attack_bn"):
        _tiny(method="pgd", attack_bn="sometimes")


# 4. Per-image standardisation: TF's floor 1/sqrt(N) applies to 0-255 pixels.
def _tf_per_image_standardization(x255: torch.Tensor) -> torch.Tensor:
    n = x255[0].numel()
    mean = x255.mean(dim=(1, 2, 3), keepdim=True)
    std = x255.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (x255 - mean) / std.clamp(min=1 / math.sqrt(n))


def test_standardisation_floor_is_tf_s_on_0_255_pixels():
    g = torch.Generator().manual_seed(0)
    natural = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    # near-constant: std 0.0005 on [0, 1] (0.13 on 0-255), under a floor of 1/sqrt(3072) = 0.018 on [0, 1]
    flat = 0.5 + 0.0005 * torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    constant = torch.full((1, 3, 32, 32), 0.25, dtype=torch.float64)
    for x in (natural, flat, constant):
        torch.testing.assert_close(PerImageStandardize()(x), _tf_per_image_standardization(255 * x))
    assert PerImageStandardize()(flat).std() > 0.9   # a floor on [0, 1] would shrink this to ~0.03


# 5. The CIFAR step schedule: tf.train.piecewise_constant keeps the old rate through the boundary step.
def test_cifar_rate_changes_after_the_boundary_step():
    config = cfg.resolve({"dataset": "cifar10", "arch": "small_cnn", "width": 4, "method": "free", "replay": 8})
    total, milestones = lr_schedule.schedule(config, 390)
    assert milestones == [40_000, 60_000]
    rates = [lr_schedule.learning_rate(config, milestones, i, total) for i in (39_999, 40_000, 40_001, 60_000, 60_001)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_imagenet_rate_changes_at_the_pass_start():
    config = cfg.resolve({"dataset": "imagenet", "arch": "small_cnn", "width": 4, "method": "free", "replay": 4})
    total, milestones = lr_schedule.schedule(config, 10)
    first = milestones[0]
    assert first == 8 * 4 * 10      # ceil(30 / 4) passes of 10 batches replayed 4 times
    assert lr_schedule.learning_rate(config, milestones, first - 1, total) == pytest.approx(0.1)
    assert lr_schedule.learning_rate(config, milestones, first, total) == pytest.approx(0.01)


# 6. Figure 3: like the authors' get_surface.py, no clipping and one Rademacher pair for all images.
def test_surface_directions_are_shared_by_default():
    shape = torch.Size((3, 8, 8))
    shared = [_rademacher_pair(shape, 0, index, "shared") for index in (0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(*shared))
    own = [_rademacher_pair(shape, 0, index, "per-image") for index in (0, 1)]
    assert not torch.equal(own[0][0], own[1][0])


def test_surface_points_are_not_clipped_by_default():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(len(x), 10)
    x, d = torch.full((3, 4, 4), 0.99), torch.ones(3, 4, 4)
    axis = torch.tensor([0.0, 0.1])
    loss_grid(Recorder(), x, 0, d, d, axis, axis)
    assert seen[-1].max() == pytest.approx(1.19)
    loss_grid(Recorder(), x, 0, d, d, axis, axis, clip=True)
    assert seen[-1].max() == 1.0


# 7. CIFAR-100 2-PGD: Madry et al.'s code step, 2/255 (the paper adopts their code; its numbers
# are a weak adversary's), and the table says why.
def test_cifar100_two_step_pgd_uses_madry_s_step():
    table2 = TARGETS["table2"]
    row = next(r for r in table2.rows if r.key == "pgd2")
    assert dict(row.cell.params)["pgd_step_size"] == 2.0 and "2/255" in " ".join(table2.notes)

