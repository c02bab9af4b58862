"""Evaluate a model freeadv did not train: a template matcher fitted in closed form, attacked with
PGD and (a cheap variant of) AutoAttack on the synthetic dataset, on the CPU in seconds.

    python examples/evaluate_own_model.py [OUT_DIR]

writes OUT_DIR/pgd10-eps8-step2-n64.json and OUT_DIR/autoattack5-eps8-n64.json (eval JSONs, as
``freeadv attack`` writes them) and OUT_DIR/template_matcher.pt, the weights, which the command
line evaluates the same way:

    freeadv attack --model examples/evaluate_own_model.py:template_matcher \\
        --weights OUT_DIR/template_matcher.pt --dataset synthetic --attack pgd --steps 10 --n 64 \\
        --device cpu --out OUT_DIR/cli-pgd10.json
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

import freeadv
from freeadv.data.synthetic import make_synthetic
from freeadv.schemas import read_checked

NUM_CLASSES, PIXELS = 10, 3 * 32 * 32


class TemplateMatcher(nn.Module):
    """Scores each class by the correlation of the centred image with that class's unit-norm
    template: a linear model that takes [0, 1] images, as every evaluated model must."""

    def __init__(self, sharpness: float = 20.0) -> None:
        super().__init__()
        self.templates = nn.Parameter(torch.zeros(NUM_CLASSES, PIXELS))
        self.sharpness = sharpness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sharpness * (x.flatten(1) - 0.5) @ self.templates.t()


def template_matcher() -> nn.Module:
    """The factory ``freeadv attack --model`` calls; ``--weights`` fills in the templates."""
    return TemplateMatcher()


def fitted(n_train: int = 2000) -> TemplateMatcher:
    """The matcher with each class's mean training image (centred, unit norm) as its template."""
    train_x, train_y, _, _ = make_synthetic(n_train, 0)
    x = train_x.float().div(255).flatten(1) - 0.5
    means = torch.stack([x[train_y == k].mean(0) for k in range(NUM_CLASSES)])
    model = TemplateMatcher()
    with torch.no_grad():
        model.templates.copy_(means / means.norm(dim=1, keepdim=True))
    return model


def main(out_dir: Path) -> None:
    model = fitted()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "template_matcher.pt")
    records = freeadv.evaluate(model, dataset="synthetic", attacks=["pgd10", "autoattack5"], n=64,
                               out_dir=out_dir, device="cpu")
    paths = [out_dir / "pgd10-eps8-step2-n64.json", out_dir / "autoattack5-eps8-n64.json"]   # <attack id>.json
    for path, record in zip(paths, records):
        assert read_checked(path, "eval") == record, path   # each file passes the eval schema
        assert not record["warnings"], record["warnings"]    # freeadv's sanity checks found nothing odd
        print(f"{path.name}: clean {record['clean_acc']:.1f}%  robust {record['robust_acc']:.1f}%")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="freeadv-eval-")))
