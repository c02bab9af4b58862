"""``freeadv adv-examples | loss-surface``: the figure data computed from a trained model.

  freeadv adv-examples --run RUN_DIR --out X.json                 (Figure 2 data)
  freeadv loss-surface --run RUN_DIR --plane adv-rad --out X.json (Figure 3 data)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..io import check_output_file, write_json


def register(sub: argparse._SubParsersAction) -> None:
    _register_adv_examples(sub)
    _register_loss_surface(sub)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--run, --device and --out: which model, where it runs, where the figure data goes."""
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a finished training run folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, required=True, metavar="X.json")


def _register_adv_examples(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adv-examples", help="Figure 2 data: BIM examples of the last test images",
                       description="The last N test images (in the dataset's fixed order) and their BIM (PGD "
                                   "without random start) adversarial examples, as uint8 pixels, with predictions.")
    _add_run_arguments(p)
    p.add_argument("--eps", type=float, default=30, help="L-inf bound in pixels /255 (default 30)")
    p.add_argument("--step-size", type=float, default=2, help="BIM step in pixels /255 (default 2)")
    p.add_argument("--steps", type=int, default=50, help="BIM iterations (default 50)")
    p.add_argument("--last", type=int, default=9, help="how many of the last test images (default 9)")
    p.set_defaults(func=cmd_adv_examples)


def _register_loss_surface(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loss-surface", help="Figure 3 data: loss on a plane through the first test images",
                       description="Cross-entropy at x + a*d1 + b*d2 on a grid of a, b in [-span, span]/255. "
                                   "adv-rad: d1 = sign of the input gradient, d2 Rademacher; rad-rad: both Rademacher. "
                                   "Defaults as the authors' surface script: no clipping, directions shared by all images.")
    _add_run_arguments(p)
    p.add_argument("--images", type=int, default=2, help="first N test images (default 2)")
    p.add_argument("--plane", default="adv-rad", choices=["adv-rad", "rad-rad"])
    p.add_argument("--grid", type=int, default=21, help="points per axis (default 21)")
    p.add_argument("--span", type=float, default=16, help="half-width of each axis in pixels /255 (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Rademacher directions (default 0)")
    p.add_argument("--batch-size", type=int, default=512, help="grid points per forward pass (default 512)")
    p.add_argument("--clip", action="store_true", help="clip every grid point to [0, 1] (the authors' script does not)")
    p.add_argument("--directions", default="shared", choices=["shared", "per-image"],
                   help="Rademacher directions drawn once for all images (default, as the authors' script) or per image")
    p.set_defaults(func=cmd_loss_surface)


def check_out(args: argparse.Namespace) -> None:
    """Before the model is loaded: --out is writable and none of the run folder's own files (the
    weights, train.json, the checkpoints...) nor the folder itself."""
    from ..training.folder import RUN_FILES   # local: torch
    from ..training.lock import LOCK

    check_output_file(args.out, inputs=tuple(args.run / name for name in (*RUN_FILES, LOCK)) + (args.run,))


def cmd_adv_examples(args: argparse.Namespace) -> int:
    from ..runs.analysis import adv_examples   # local: torch (~2 s), which only the analysis commands need

    check_out(args)
    result = adv_examples(args.run, eps=args.eps, step_size=args.step_size, steps=args.steps, last=args.last,
                          device=args.device)
    write_json(args.out, result)
    wrong = sum(p != y for p, y in zip(result["adversarial_predictions"], result["labels"]))
    print(f"[freeadv] {args.run}: BIM-{args.steps} eps {args.eps:g} on the last {args.last} test images: "
          f"{wrong}/{args.last} misclassified -> {args.out}")
    return 0


def cmd_loss_surface(args: argparse.Namespace) -> int:
    from ..runs.analysis import loss_surface   # local: torch (~2 s), which only the analysis commands need

    check_out(args)
    result = loss_surface(args.run, images=args.images, plane=args.plane, grid=args.grid, span=args.span,
                          seed=args.seed, batch_size=args.batch_size, device=args.device, clip=args.clip,
                          directions=args.directions)
    write_json(args.out, result)
    print(f"[freeadv] {args.run}: {args.plane} loss surface of {args.images} images, {args.grid}x{args.grid} "
          f"grid, span {args.span:g} -> {args.out}")
    return 0
