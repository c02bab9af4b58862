"""Figures 2 and 3 (and Figure 3's 3-D supplement) from hand-written analysis JSON: Figure 3's
slices are the surface grid's lines through the image, on one y-scale, with the eps-ball edge
marked; Figure 2 names its images by their test-split indices; titles say what was trained and
captions (not titles) where it comes from; the supplement says whether its points were clipped."""
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from freeadv.experiments import scales
from freeadv.report.figures import figure2, write_figure
from freeadv.report.loss_figures import figure3, figure3_surfaces, slices

from test_tables import SMALL_SCALE

AXIS = [-16.0, -8.0, 0.0, 8.0, 16.0]


def _surface(plane, model, scale, clip=False, eps=8.0, method="free"):
    """A loss-surface JSON: the loss rises along d1 by ``scale`` per pixel unit, is flat along d2."""
    images = [{"index": i, "label": 3, "clean_loss": 1.0 + i,
               "losses": [[1.0 + i + scale * a + 0.001 * b for b in AXIS] for a in AXIS]} for i in range(2)]
    return {"kind": "loss-surface", "plane": plane, "axis": AXIS, "span": 16.0, "grid": 5, "clip": clip,
            "train_config": {"method": method, "eps": eps}, "images": images,
            "git": {"commit": "0123456789abcdef", "dirty": False}, "run": model}


def _write_surfaces(tmp_path, plan, clip=False):
    for name in ("figure3", "figure3_surfaces"):
        for k, analysis in enumerate(plan.targets[name].analyses):
            method = "natural" if "natural" in analysis.model else "free"
            scale = (0.1 * (k + 1)) if analysis.options["plane"] == "adv-rad" else 0.0
            path = tmp_path / analysis.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_surface(analysis.options["plane"], analysis.model, scale, clip,
                                                method=method)))


@pytest.fixture
def plan():
    return scales.build_plan("small", SMALL_SCALE)


def test_slices_are_the_grid_lines_through_the_image():
    data = _surface("adv-rad", "m", 0.5)
    axis, along_adv, along_rad = slices(data, 1)
    assert list(axis) == AXIS
    assert list(along_adv) == pytest.approx([2.0 + 0.5 * a for a in AXIS])     # losses[:, centre]
    assert list(along_rad) == pytest.approx([2.0 + 0.001 * b for b in AXIS])   # losses[centre, :]
    with pytest.raises(ValueError, match="odd --grid"):
        slices(dict(data, axis=[-1.0, 1.0], images=[{"losses": [[0, 0], [0, 0]]}]), 0)


def test_figure3_overlays_every_model_on_one_y_scale_and_marks_the_eps_ball(tmp_path, plan):
    _write_surfaces(tmp_path, plan)
    fig = figure3(plan, tmp_path)
    models = [a.label for a in plan.targets["figure3"].analyses]
    assert len(fig.axes) == 4   # 2 images x (adversarial, Rademacher)
    assert len({ax.get_ylim() for ax in fig.axes}) == 1
    for ax in fig.axes:
        assert [l.get_label() for l in ax.get_lines() if not l.get_gid()] == models
        assert sorted(l.get_xdata()[0] for l in ax.get_lines() if l.get_gid() == "eps-ball") == [-8.0, 8.0]
        assert all(t.get_fontsize() >= 8 for t in ax.get_xticklabels() + ax.get_yticklabels())
    assert "adversarial" in fig.axes[0].get_title() and "Rademacher" in fig.axes[1].get_title()
    assert "test image 1" in fig.axes[2].get_title()
    assert fig.get_figwidth() == pytest.approx(7.0)
    footer = "\n".join(t.get_text() for t in fig.texts)
    assert "not clipped" in footer and "commit 0123456" in footer
    plt.close(fig)


def test_the_supplement_says_whether_its_surfaces_are_clipped(tmp_path, plan):
    _write_surfaces(tmp_path, plan, clip=False)
    fig = figure3_surfaces(plan, tmp_path)
    heading = fig._suptitle.get_text()
    assert "not clipped to [0, 1]" in heading and "clip(" not in heading
    assert len(fig.axes) == 2 * len(plan.targets["figure3_surfaces"].analyses)
    plt.close(fig)
    _write_surfaces(tmp_path, plan, clip=True)
    fig = figure3_surfaces(plan, tmp_path)
    assert "clipped to [0, 1]" in fig._suptitle.get_text() and "not clipped" not in fig._suptitle.get_text()
    plt.close(fig)
    paths = write_figure(plan, "figure3_surfaces", tmp_path, tmp_path / "figures" / "figure3_surfaces.png")
    assert [p.name for p in paths] == ["figure3_surfaces.png", "figure3_surfaces.pdf"]


def test_figure2_names_its_images_by_their_test_split_indices(tmp_path, plan):
    image = np.zeros((3, 4, 4), dtype=int).tolist()
    for analysis in plan.targets["figure2"].analyses:
        data = {"indices": [97, 98, 99], "labels": [0, 1, 2], "class_names": ["a", "b", "c"],
                "clean_images": [image] * 3, "adversarial_images": [image] * 3, "adversarial_predictions": [1, 1, 2],
                "test_split_size": 100, "attack": {"eps": 30, "step_size": 2, "steps": 50},
                "git": {"commit": "0123456789abcdef"}}
        path = tmp_path / analysis.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    fig = figure2(plan, tmp_path)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image 97", "image 98", "image 99"]
    heading = fig._suptitle.get_text()
    assert "last 9" not in heading and "small CNN width 4" in heading and "WRN-32-10" not in heading
    footer = "\n".join(t.get_text() for t in fig.texts)
    assert "test images 97-99" in footer and "100-image test split" in footer
    plt.close(fig)


@pytest.mark.parametrize("name", ["figure1", "figure4"])
def test_figures_1_and_4_title_what_was_trained_and_caption_where_it_comes_from(tmp_path, plan, name):
    from test_tables import fake_results
    fake_results(tmp_path, plan, name, lambda row, metric: 50.0)
    paths = write_figure(plan, name, tmp_path, tmp_path / f"{name}.png")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    from freeadv.report.figures import FIGURES
    fig = FIGURES[name](plan, tmp_path)
    heading = fig._suptitle.get_text()
    assert "small CNN width 4" in heading and "(256 training images, 20 iterations)" in heading
    assert "Scale small" not in heading and "WRN-32-10" not in heading and "ResNet-50" not in heading
    footer = "\n".join(t.get_text() for t in fig.texts)
    assert "Scale small: synthetic for" in footer and "commit abcdef0" in footer
    plt.close(fig)
