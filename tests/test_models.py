"""CPU tests for freeadv.models: every registered architecture, plus the details of the
paper's WRN-32-10 that are easy to get subtly wrong."""

import math

import pytest
import torch
from torch import nn

from freeadv.models import (
    MODELS,
    Normalize,
    PerImageStandardize,
    PixelClassifier,
    PoolPadShortcut,
    PreActBlock,
    PreActResNet,
    build_model,
    count_parameters,
)

IMAGENET_ARCHS = {"resnet50", "resnet101", "resnet152"}
EXPECTED_ARCHS = {"wrn32_10", "wrn32_k", "wrn34_10", "preact_resnet18", "small_cnn"} | IMAGENET_ARCHS

# Computed once from this implementation and cross-checked against the literature:
# Madry et al.'s WRN-32-10 "~46M" (45.9M), WRN-34-10 46.2M (TRADES), PreAct ResNet-18 11.2M.
EXPECTED_PARAMS_10_CLASSES = {
    "wrn32_10": 45_901_914,
    "wrn34_10": 46_160_474,
    "preact_resnet18": 11_172_170,
}
PUBLISHED_PARAMS = {"wrn32_10": 46.0e6, "wrn34_10": 46.2e6, "preact_resnet18": 11.2e6}


def _input_for(arch: str, batch: int = 2) -> torch.Tensor:
    size = 64 if arch in IMAGENET_ARCHS else 32
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def built_models():
    """Build each model once per test module; the WRNs and ResNet-152 take ~1 s each."""
    torch.manual_seed(0)
    return {arch: build_model(arch, 10) for arch in sorted(MODELS)}


def test_registry_has_all_architectures():
    assert EXPECTED_ARCHS <= set(MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(EXPECTED_ARCHS))
def test_forward_and_backward_reach_input_and_every_parameter(arch, built_models):
    model = built_models[arch].train()
    model.zero_grad(set_to_none=True)
    x = _input_for(arch).requires_grad_()
    logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()

    nn.functional.cross_entropy(logits, torch.tensor([1, 7])).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["small_cnn", "preact_resnet18", "wrn32_10"])
def test_channels_last_and_bf16_autocast(arch, built_models):
    model = built_models[arch].eval()
    x = _input_for(arch)
    reference = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    try:
        x_cl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        torch.testing.assert_close(model_cl(x_cl), reference, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model_cl(x_cl)
        assert logits.shape == (2, 10) and torch.isfinite(logits.float()).all()
        logits.float().sum().backward()
        assert x_cl.grad is not None and torch.isfinite(x_cl.grad).all()
    finally:
        model.to(memory_format=torch.contiguous_format)


@pytest.mark.parametrize("arch", sorted(EXPECTED_PARAMS_10_CLASSES))
def test_parameter_counts(arch, built_models):
    count = count_parameters(built_models[arch])
    assert count == pytest.approx(EXPECTED_PARAMS_10_CLASSES[arch], rel=0.01)
    assert count == pytest.approx(PUBLISHED_PARAMS[arch], rel=0.01)


def test_count_parameters_ignores_buffers_and_frozen():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))  # 16 + 8 trainable, 9 buffers
    assert count_parameters(model) == 24
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 12


# ----------------------------------------------------------------------------- WRN-32-10


def test_wrn32_10_structure_follows_madry(built_models):
    model = built_models["wrn32_10"]
    assert isinstance(model.preprocess, PerImageStandardize)
    net = model.net
    assert net.stem.in_channels == 3 and net.stem.out_channels == 16
    assert net.stem.kernel_size == (3, 3) and net.stem.stride == (1, 1)

    assert len(net.stages) == 3
    for stage, width, stride in zip(net.stages, (160, 320, 640), (1, 2, 2)):
        assert len(stage) == 5
        assert all(isinstance(block, PreActBlock) for block in stage)
        assert all(block.conv2.out_channels == width for block in stage)
        assert stage[0].conv1.stride == (stride, stride)
        assert all(block.conv1.stride == (1, 1) for block in stage[1:])
        # Width-changing units use the parameter-free avg-pool + zero-pad shortcut.
        first = stage[0]
        assert isinstance(first.shortcut, PoolPadShortcut)
        assert sum(p.numel() for p in first.shortcut.parameters()) == 0
        assert all(block.shortcut is None for block in stage[1:])

    # activate_before_residual=[True, False, False]: only unit_1_0 branches after BN-act.
    flags = [block.shortcut_from_activation for stage in net.stages for block in stage]
    assert flags == [True] + [False] * 14

    activations = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    assert len(activations) == 2 * 15 + 1
    assert all(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in activations)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert net.fc.in_features == 640


def test_wrn34_10_uses_projection_shortcuts(built_models):
    net = built_models["wrn34_10"].net
    first_units = [stage[0] for stage in net.stages]
    assert all(isinstance(block.shortcut, nn.Conv2d) for block in first_units)
    assert [block.shortcut.kernel_size for block in first_units] == [(1, 1)] * 3
    assert not any(isinstance(m, nn.LeakyReLU) for m in net.modules())


def test_pool_pad_shortcut_matches_tf_semantics():
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    out = PoolPadShortcut(4, 8, stride=2)(x)
    assert out.shape == (2, 8, 2, 2)
    assert torch.equal(out[:, :2], torch.zeros(2, 2, 2, 2))
    assert torch.equal(out[:, 6:], torch.zeros(2, 2, 2, 2))
    torch.testing.assert_close(out[:, 2:6], nn.functional.avg_pool2d(x, 2, 2))
    # 16 -> 160 at stride 1 (unit_1_0): pure channel padding, 72 zeros on each side.
    y = torch.randn(1, 16, 3, 3)
    padded = PoolPadShortcut(16, 160, stride=1)(y)
    assert torch.equal(padded[:, 72:88], y) and padded[:, :72].abs().sum() == 0
    with pytest.raises(ValueError):
        PoolPadShortcut(16, 33, stride=1)


# ----------------------------------------------------------------------------- input layers


def test_per_image_standardize_matches_tf_formula():
    varied = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [8.0, 2.0]]]).unsqueeze(0)
    constant = torch.full((1, 2, 2, 2), 0.75)  # exact in fp32, so its mean is too
    images = torch.cat([varied, constant])  # (2, 2, 2, 2): N = 8 values per image
    out = PerImageStandardize()(images)

    values = varied.flatten().tolist()
    mean = sum(values) / 8  # 2.5
    population_std = math.sqrt(sum((v - mean) ** 2 for v in values) / 8)
    expected = (varied - mean) / max(population_std, 1 / math.sqrt(8))
    torch.testing.assert_close(out[0:1], expected)
    # Constant image: std is 0, so the 1/sqrt(N) floor applies (no 0/0) and the result is 0.
    assert torch.equal(out[1], torch.zeros(2, 2, 2))
    # A near-constant image (std 3.3e-5) is divided by the floor, not by its tiny std; the floor is
    # TF's 1/sqrt(N) on 0-255 pixels, i.e. 1/(255 sqrt(N)) on these [0, 1] pixels.
    nearly = torch.full((1, 2, 2, 2), 0.5)
    nearly[0, 0, 0, 0] += 1e-4
    torch.testing.assert_close(
        PerImageStandardize()(nearly), (nearly - nearly.mean()) * 255 * math.sqrt(8)
    )


def test_per_image_standardize_is_per_image():
    x = torch.rand(3, 3, 8, 8)
    batched = PerImageStandardize()(x)
    single = torch.cat([PerImageStandardize()(img[None]) for img in x])
    torch.testing.assert_close(batched, single)


def test_normalize_per_channel():
    x = torch.rand(2, 3, 4, 4)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.25, 0.5)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    layer = Normalize(mean, std)
    torch.testing.assert_close(layer(x), expected)
    assert {name for name, _ in layer.named_buffers()} == {"mean", "std"}
    assert not list(layer.parameters())
    with pytest.raises(ValueError):
        Normalize((0.5, 0.5, 0.5), (0.2, 0.0, 0.2))


@pytest.mark.parametrize("arch", ["small_cnn", "preact_resnet18"])
def test_normalize_is_inside_model_so_input_gradient_is_in_pixel_space(arch):
    mean, std = (0.3, 0.4, 0.5), (0.1, 0.2, 0.4)
    model = build_model(arch, 10, mean=mean, std=std).eval()
    assert isinstance(model.preprocess, Normalize)
    torch.testing.assert_close(model.preprocess.std.flatten(), torch.tensor(std))

    pixels = torch.rand(2, 3, 32, 32).requires_grad_()
    normalized = ((pixels.detach() - torch.tensor(mean).view(1, 3, 1, 1))
                  / torch.tensor(std).view(1, 3, 1, 1)).requires_grad_()
    model(pixels).sum().backward()
    model.net(normalized).sum().backward()
    # Chain rule through the model's own Normalize: d/dpixel = d/dnormalized / std.
    torch.testing.assert_close(
        pixels.grad, normalized.grad / torch.tensor(std).view(1, 3, 1, 1), rtol=1e-4, atol=1e-6
    )


# ----------------------------------------------------------------------------- build_model API


# ----------------------------------------------------------------------------- WRN-32-k


def _wrn32_10_as_built_before_wrn32_k() -> nn.Module:
    """The wrn32_10 recipe as it was written before the width-k family existed: the reference
    that wrn32_k at k=10 must reproduce."""
    from freeadv.models.preact import _init_like_wrn_reference, _init_uniform_unit_scaling

    net = PreActResNet(
        10,
        stem_width=16,
        stage_widths=(160, 320, 640),
        stage_strides=(1, 2, 2),
        blocks_per_stage=5,
        make_activation=lambda: nn.LeakyReLU(0.1, inplace=True),
        shortcut_kind="pool_pad",
    )
    _init_like_wrn_reference(net)
    _init_uniform_unit_scaling(net.fc)
    return PixelClassifier(PerImageStandardize(), net)


@pytest.mark.slow
def test_wrn32_k_at_10_equals_wrn32_10_parameter_for_parameter():
    built = {}
    for name, build in [
        ("reference", _wrn32_10_as_built_before_wrn32_k),
        ("wrn32_10", lambda: build_model("wrn32_10", 10)),
        ("wrn32_k", lambda: build_model("wrn32_k", 10, width=10)),
    ]:
        torch.manual_seed(0)
        built[name] = build().state_dict()
    reference = built.pop("reference")
    for name, state in built.items():
        assert list(state) == list(reference), name
        for key, tensor in reference.items():
            assert state[key].shape == tensor.shape and torch.equal(state[key], tensor), (name, key)
    assert count_parameters(build_model("wrn32_k", 10, width=10)) == EXPECTED_PARAMS_10_CLASSES["wrn32_10"]


@pytest.mark.parametrize("k, params", [(1, 464_154), (2, 1_844_826), (4, 7_357_146)])
def test_wrn32_k_stage_widths_and_parameters(k, params):
    model = build_model("wrn32_k", 10, width=k)
    widths = [stage[0].conv2.out_channels for stage in model.net.stages]
    assert widths == [16 * k, 32 * k, 64 * k] and model.net.stem.out_channels == 16
    assert count_parameters(model) == params
    assert model(_input_for("wrn32_k")).shape == (2, 10)


@pytest.mark.parametrize("bad_width", [0, -1, 1.5, True])
def test_bad_wrn32_k_width_is_a_one_line_value_error(bad_width):
    with pytest.raises(ValueError) as info:
        build_model("wrn32_k", 10, width=bad_width)
    assert repr(bad_width) in str(info.value) and "\n" not in str(info.value)


def test_unknown_arch_is_a_one_line_value_error():
    with pytest.raises(ValueError) as info:
        build_model("resnet9000", 10)
    message = str(info.value)
    assert "'resnet9000'" in message and "\n" not in message
    assert all(name in message for name in EXPECTED_ARCHS)


def test_width_on_other_arch_is_a_one_line_value_error():
    with pytest.raises(ValueError) as info:
        build_model("preact_resnet18", 10, width=16)
    message = str(info.value)
    assert "preact_resnet18" in message and "16" in message and "\n" not in message


@pytest.mark.parametrize("bad_width", [0, -8, 2.5, True])
def test_bad_small_cnn_width_is_a_one_line_value_error(bad_width):
    with pytest.raises(ValueError) as info:
        build_model("small_cnn", 10, width=bad_width)
    assert repr(bad_width) in str(info.value) and "\n" not in str(info.value)


def test_small_cnn_width_changes_size_and_default_is_32():
    counts = {w: count_parameters(build_model("small_cnn", 10, width=w)) for w in (16, 32, 48, 64)}
    assert counts[16] < counts[32] < counts[48] < counts[64]
    assert count_parameters(build_model("small_cnn", 10)) == counts[32]
    assert build_model("small_cnn", 10, width=48).net.features[0][0].out_channels == 48


def test_small_cnn_accepts_224x224_and_other_class_counts():
    model = build_model("small_cnn", 100, width=16)
    for size in (32, 224):
        logits = model(torch.rand(2, 3, size, size))
        assert logits.shape == (2, 100) and torch.isfinite(logits).all()


def test_imagenet_resnets_get_num_classes_and_normalize():
    model = build_model("resnet50", 1000, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert isinstance(model.preprocess, Normalize)
    assert model.net.fc.out_features == 1000
    assert count_parameters(model) == 25_557_032  # torchvision's published ResNet-50 size


def test_public_names_stay_importable():
    import freeadv.models

    assert {name for name in freeadv.models.__all__ if not hasattr(freeadv.models, name)} == set()


def test_default_normalisation_is_the_data_catalogs():
    """One definition per constant: the builders' default is the data catalog's CIFAR-10 entry
    (std 0.2470, what every trained model used through MEAN_STD)."""
    import freeadv.models
    from freeadv.data import MEAN_STD

    assert (freeadv.models.CIFAR10_MEAN, freeadv.models.CIFAR10_STD) == MEAN_STD["cifar10"]
    assert (freeadv.models.IMAGENET_MEAN, freeadv.models.IMAGENET_STD) == MEAN_STD["imagenet"]
    model = build_model("small_cnn", 10, width=4)
    torch.testing.assert_close(model.preprocess.std.flatten(), torch.tensor(MEAN_STD["cifar10"][1]))
    torch.testing.assert_close(model.preprocess.mean.flatten(), torch.tensor(MEAN_STD["cifar10"][0]))


@pytest.mark.slow
def test_train_and_attack_jobs_do_not_import_torchvision():
    """torchvision's import pulls in torch._dynamo (1.2 s), paid by each of the smoke DAG's 162 jobs;
    the ResNets import it when built (above), provenance reads its version from package metadata."""
    import subprocess
    import sys

    code = ("import sys, freeadv.commands.train, freeadv.commands.attack, freeadv.provenance as p; "
            "p.library_versions(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
