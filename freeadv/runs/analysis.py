"""Figure data computed from a trained model: Figure 2's large-eps BIM examples and Figure 3's
loss surfaces. Each function returns a JSON-able dict; the figures are drawn from these files alone.

Sizes are in the paper's pixel units (eps 30 means 30/255) in arguments and in the output.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import weights_digest
from ..attacks import AttackSpec
from ..attacks.spec import for_model, num
from ..perturb import input_gradient, predict
from ..data import CIFAR10_CLASSES
from ..provenance import stamp
from ..units import PIXEL_LEVELS, to_unit
from .opening import open_run
from ..errors import UserError

PLANES = ("adv-rad", "rad-rad")
DIRECTIONS = ("shared", "per-image")   # how loss_surface draws its Rademacher directions


def class_names(dataset: str, num_classes: int) -> list[str]:
    """Human names of the classes where the library knows them, else 'class k'."""
    if dataset in ("cifar10", "cifar10-jpeg") and num_classes == len(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return [f"class {k}" for k in range(num_classes)]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images -> uint8 pixels (round to nearest)."""
    return (x.detach().float().cpu() * PIXEL_LEVELS).round().clamp(0, PIXEL_LEVELS).to(torch.uint8)


def from_uint8(x: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    return x.to(device=device, dtype=torch.float32) / PIXEL_LEVELS


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float,
                         steps: int) -> torch.Tensor:
    """BIM (PGD without random start, cross-entropy) in pixel units; returns uint8 images whose
    distance to the (uint8) clean images is at most eps pixels."""
    spec = AttackSpec("bim", steps, eps, step_size)
    return to_uint8(spec.attack.perturb(model, x, y, spec, None))


def adv_examples(run_dir: str | Path, *, eps: float = 30, step_size: float = 2, steps: int = 50, last: int = 9,
                 device: str = "auto") -> dict[str, Any]:
    """Figure 2: the last ``last`` test images (of the whole test split, in the dataset's fixed order)
    and their BIM adversarial examples against the model of ``run_dir``."""
    run = open_run(run_dir, device, n_test=None)
    model, config, dev = run.model, run.config, run.device
    images, labels = run.data.test_tensors(dev)
    if last < 1 or last > len(labels):
        raise UserError(f"--last has bad value {last}: expected 1..{len(labels)} (the test split's size)")
    first = len(labels) - last
    x, y = images[first:], labels[first:]
    clean = to_uint8(x)
    x = from_uint8(clean, dev)            # attack exactly the images that are stored and shown
    start = time.perf_counter()
    adversarial = adversarial_examples(model, x, y, eps=eps, step_size=step_size, steps=steps)
    seconds = time.perf_counter() - start
    return {
        "kind": "adv-examples", "run": str(run_dir), "weights_digest": weights_digest(model.state_dict()),
        "train_config": config, "dataset": config["dataset"],
        "attack": {"kind": "bim", "eps": eps, "step_size": step_size, "steps": steps, "random_start": False,
                   "loss": "cross-entropy", "units": "pixels /255"},
        "test_split_size": len(labels), "indices": list(range(first, len(labels))),
        "labels": y.tolist(), "class_names": class_names(config["dataset"], run.data.num_classes),
        "clean_images": clean.tolist(), "adversarial_images": adversarial.tolist(),
        "clean_predictions": predict(model, x).tolist(),
        "adversarial_predictions": predict(model, from_uint8(adversarial, dev)).tolist(),
        "max_perturbation_pixels": int((adversarial.int() - clean.int()).abs().max()),
        "image_layout": "uint8 [channel][row][column] (3x32x32 for CIFAR)",
        "wall_seconds": seconds, **stamp(dev),
    }


def rademacher(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A random +-1 tensor."""
    return torch.randint(0, 2, tuple(shape), generator=generator).float() * 2 - 1


def grid_axis(span: float, grid: int) -> torch.Tensor:
    """``grid`` evenly spaced values in [-span, span] (pixel units); 0 is exact when grid is odd."""
    if grid < 2:
        raise UserError(f"--grid has bad value {grid}: expected an integer >= 2")
    half = (grid - 1) / 2
    return (torch.arange(grid, dtype=torch.float64) - half) / half * span


@torch.no_grad()
def loss_grid(model: nn.Module, x: torch.Tensor, y: int, d1: torch.Tensor, d2: torch.Tensor,
              alphas: torch.Tensor, betas: torch.Tensor, batch_size: int = 512, clip: bool = False) -> torch.Tensor:
    """Cross-entropy of ``model`` at x + a*d1 + b*d2 (clipped to [0, 1] with ``clip``) for every
    (a, b) of the grid.

    ``x`` is one image (C, H, W); a and b in [0, 1] units. Returns [len(alphas), len(betas)], row i
    for alphas[i]. The grid is evaluated in batches of ``batch_size`` points.
    """
    a, b = torch.meshgrid(alphas.float().to(x.device), betas.float().to(x.device), indexing="ij")
    a, b = a.reshape(-1, 1, 1, 1), b.reshape(-1, 1, 1, 1)
    target = torch.full((batch_size,), y, dtype=torch.long, device=x.device)
    losses = []
    for start in range(0, a.shape[0], batch_size):
        points = x + a[start:start + batch_size] * d1 + b[start:start + batch_size] * d2
        if clip:
            points = points.clamp(0, 1)
        logits = model(points).float()
        losses.append(F.cross_entropy(logits, target[: len(points)], reduction="none"))
    return torch.cat(losses).reshape(len(alphas), len(betas)).cpu()


def ascent_check(model: nn.Module, x: torch.Tensor, y: int, d1: torch.Tensor, d2: torch.Tensor,
                 axis: torch.Tensor, pgd20: AttackSpec, seed: int, batch_size: int,
                 clipped: torch.Tensor | None = None) -> dict[str, float]:
    """PGD-20's loss at the image beside the largest loss of the plane's grid points inside the
    eps-ball (|a| + |b| <= eps bounds the L-inf distance, as d1 and d2 are +-1; clipped to [0, 1],
    the set PGD searches). A surface point above PGD's loss is an ascent PGD missed: a sign of
    gradient masking, which claim C6 checks for. ``clipped``: the plane's clipped grid where the
    surface already is one (``clip=True``), so it is not computed twice."""
    target = torch.tensor([y], device=x.device)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    x_adv = pgd20.attack.perturb(model, x[None], target, pgd20, generator)
    with torch.no_grad():
        pgd_loss = float(F.cross_entropy(model(x_adv).float(), target))
    if clipped is None:
        clipped = loss_grid(model, x, y, d1, d2, to_unit(axis), to_unit(axis), batch_size, clip=True)
    inside = (axis[:, None].abs() + axis[None, :].abs()) <= pgd20.eps + 1e-9
    return {"pgd20_loss": pgd_loss, "ball_max_loss": float(clipped[inside].max())}


def _rademacher_pair(shape: torch.Size, seed: int, index: int, directions: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two Rademacher directions of image ``index``: drawn once for all images (``shared``, as
    the official surface script draws its directions once at start-up) or per image."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + (0 if directions == "shared" else index * 2))
    return rademacher(shape, generator), rademacher(shape, generator)


def loss_surface(run_dir: str | Path, *, images: int = 2, plane: str = "adv-rad", grid: int = 21,
                 span: float = 16, seed: int = 0, batch_size: int = 512, device: str = "auto",
                 clip: bool = False, directions: str = "shared") -> dict[str, Any]:
    """Figure 3: the loss of the first ``images`` test images on a plane through each image.

    adv-rad: d1 = sign of the input gradient of the loss (the adversarial direction), d2 = a
    Rademacher direction; rad-rad: two Rademacher directions. Both have entries in {-1, 0, +1}, so
    a step of a along d1 moves every pixel by at most a (L-inf). The defaults follow the authors'
    surface script (get_surface.py in their TF code): points are not clipped to [0, 1], and the
    Rademacher directions are drawn once and shared by all images; ``clip`` and
    ``directions="per-image"`` (seeded by (seed, image index), so d2 is the same in both planes)
    are the alternatives.
    """
    if plane not in PLANES:
        raise UserError(f"--plane has bad value '{plane}': choose one of {', '.join(PLANES)}")
    if directions not in DIRECTIONS:
        raise UserError(f"--directions has bad value '{directions}': choose one of {', '.join(DIRECTIONS)}")
    if images < 1:
        raise UserError(f"--images has bad value {images}: expected an integer >= 1")
    run = open_run(run_dir, device)
    model, config, dev = run.model, run.config, run.device
    x_all, y_all = next(iter(run.data.test_batches(images, device=dev)))
    if len(y_all) < images:
        raise UserError(f"--images {images} is more than the {len(y_all)} test images of this run")
    axis = grid_axis(span, grid)
    pgd20 = for_model(AttackSpec("pgd", 20), config)
    results = []
    for index in range(images):
        x, y = x_all[index], int(y_all[index])
        rad1, rad2 = (d.to(dev) for d in _rademacher_pair(x.shape, seed, index, directions))
        if plane == "adv-rad":
            d1 = input_gradient(model, x[None], torch.tensor([y], device=dev)).sign()[0]
        else:
            d1 = rad1
        losses = loss_grid(model, x, y, d1, rad2, to_unit(axis), to_unit(axis), batch_size, clip=clip)
        with torch.no_grad():
            clean_loss = float(F.cross_entropy(model(x[None]).float(), torch.tensor([y], device=dev)))
        results.append({"index": index, "label": y, "clean_loss": clean_loss, "losses": losses.tolist(),
                        **ascent_check(model, x, y, d1, rad2, axis, pgd20, seed * 1_000_003 + index, batch_size,
                                       clipped=losses if clip else None)})
    draw = ("torch.Generator(seed*1000003), shared by all images" if directions == "shared"
            else "torch.Generator(seed*1000003 + 2*index)")
    point = "clip(x + axis[i]/255 * d1 + axis[j]/255 * d2, 0, 1)" if clip else "x + axis[i]/255 * d1 + axis[j]/255 * d2"
    return {
        "kind": "loss-surface", "run": str(run_dir), "weights_digest": weights_digest(model.state_dict()),
        "train_config": config, "dataset": config["dataset"],
        "plane": plane, "seed": seed, "grid": grid, "span": span, "clip": clip, "directions_drawn": directions,
        "axis": axis.tolist(), "axis_units": "pixels /255 along each direction (L-inf step per pixel)",
        "directions": {
            "d1": ("sign(grad_x cross-entropy(model(x), y)) (adversarial)" if plane == "adv-rad"
                   else f"Rademacher +-1, {draw}, first draw"),
            "d2": f"Rademacher +-1, {draw}, second draw",
        },
        "losses_layout": f"losses[i][j] = cross-entropy at {point}",
        "ascent_check": (f"pgd20_loss: the loss at PGD-20's point (eps {num(pgd20.eps)}, step {num(pgd20.step_size)}, "
                         f"one random start); ball_max_loss: the largest loss over the grid points with "
                         f"|axis[i]| + |axis[j]| <= {num(pgd20.eps)} (inside the eps-ball), clipped to [0, 1]"),
        "images": results, **stamp(dev),
    }
