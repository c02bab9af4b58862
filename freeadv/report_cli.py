"""Subcommands used by the Snakemake workflow: the plan, figure data, tables, figures.

  freeadv plan --config config/config.yaml --scale mini          (print what a scale trains)
  freeadv adv-examples --run RUN_DIR --out X.json                 (Figure 2 data)
  freeadv loss-surface --run RUN_DIR --plane adv-rad --out X.json (Figure 3 data)
  freeadv table table1 --results results/mini --out-dir results/mini/tables
  freeadv figure figure1 --results results/mini --out figures/mini/figure1.png
  freeadv regenerate --scale mini      (every table, figure and the claims, from committed results)

Tables and figures read only the JSON result files under --results (and the plan saved there),
so they regenerate without any model.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _add_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="realise the paper's tables and figures at one scale: model ids, configs, files",
                       description="Build the plan of one scale: every model (id and training config) and every "
                                   "result file each table and figure reads.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="workflow config YAML (config/config.yaml); needs --scale")
    source.add_argument("--inputs", help="JSON {scale, settings, data} as the Snakefile passes it")
    p.add_argument("--scale", help="scale name in the workflow config (paper, mini, smoke)")
    p.add_argument("--out", type=Path, help="write the plan JSON here (default: print a summary)")
    p.set_defaults(func=cmd_plan)


def _add_adv_examples(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adv-examples", help="Figure 2 data: BIM examples of the last test images",
                       description="The last N test images (in the dataset's fixed order) and their BIM (PGD "
                                   "without random start) adversarial examples, as uint8 pixels, with predictions.")
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a finished training run folder")
    p.add_argument("--eps", type=float, default=30, help="L-inf bound in pixels /255 (default 30)")
    p.add_argument("--step-size", type=float, default=2, help="BIM step in pixels /255 (default 2)")
    p.add_argument("--steps", type=int, default=50, help="BIM iterations (default 50)")
    p.add_argument("--last", type=int, default=9, help="how many of the last test images (default 9)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, required=True, metavar="X.json")
    p.set_defaults(func=cmd_adv_examples)


def _add_loss_surface(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loss-surface", help="Figure 3 data: loss on a plane through the first test images",
                       description="Cross-entropy at clip(x + a*d1 + b*d2) on a grid of a, b in [-span, span]/255. "
                                   "adv-rad: d1 = sign of the input gradient, d2 Rademacher; rad-rad: both Rademacher.")
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a finished training run folder")
    p.add_argument("--images", type=int, default=2, help="first N test images (default 2)")
    p.add_argument("--plane", default="adv-rad", choices=["adv-rad", "rad-rad"])
    p.add_argument("--grid", type=int, default=21, help="points per axis (default 21)")
    p.add_argument("--span", type=float, default=16, help="half-width of each axis in pixels /255 (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Rademacher directions (default 0)")
    p.add_argument("--batch-size", type=int, default=512, help="grid points per forward pass (default 512)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, required=True, metavar="X.json")
    p.set_defaults(func=cmd_loss_surface)


def _add_table(sub: argparse._SubParsersAction) -> None:
    from .paper import TABLES
    p = sub.add_parser("table", help="build a table (csv, md, tex) from JSON results: ours, paper, difference")
    p.add_argument("name", choices=TABLES)
    p.add_argument("--results", type=Path, required=True, help="results/<scale> (holds plan.json and runs/)")
    p.add_argument("--plan", type=Path, help="plan JSON (default: RESULTS/plan.json)")
    p.add_argument("--out-dir", type=Path, help="where NAME.{csv,md,tex} go (default: RESULTS/tables)")
    p.set_defaults(func=cmd_table)


def _add_figure(sub: argparse._SubParsersAction) -> None:
    from .paper import FIGURES
    p = sub.add_parser("figure", help="draw a figure (png and pdf) from JSON results")
    p.add_argument("name", choices=FIGURES)
    p.add_argument("--results", type=Path, required=True, help="results/<scale> (holds plan.json and runs/)")
    p.add_argument("--plan", type=Path, help="plan JSON (default: RESULTS/plan.json)")
    p.add_argument("--out", type=Path, required=True, help="figure path; .png and .pdf are both written")
    p.set_defaults(func=cmd_figure)


def _add_regenerate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regenerate", help="rebuild every table and figure of a scale (and its claims) from the "
                                          "committed JSON results, without models",
                       description="Tables, figures and claims of results/<scale> from its plan.json and result "
                                   "files alone: what a fresh clone can do without retraining or re-attacking "
                                   "(Snakemake would retrain there, since the models are not committed).")
    p.add_argument("--scale", default="mini", help="scale to rebuild (default mini)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root (default results)")
    p.add_argument("--figures", type=Path, default=Path("figures"), help="figures root (default figures)")
    p.set_defaults(func=cmd_regenerate)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands; each parser sets ``func`` to its handler."""
    _add_plan(sub)
    _add_adv_examples(sub)
    _add_loss_surface(sub)
    _add_table(sub)
    _add_figure(sub)
    _add_regenerate(sub)


# --- handlers ------------------------------------------------------------------------------------

def _plan_inputs(args: argparse.Namespace) -> dict[str, Any]:
    if args.inputs is not None:
        try:
            return json.loads(args.inputs)
        except json.JSONDecodeError as err:
            raise ValueError(f"--inputs is not valid JSON: {err}") from None
    from .config import load_yaml
    from .paper import plan_inputs
    return plan_inputs(load_yaml(args.config), args.scale)


def cmd_plan(args: argparse.Namespace) -> int:
    from .io import write_json
    from .paper import available_targets, build_plan, target_files

    inputs = _plan_inputs(args)
    plan = build_plan(inputs["scale"], inputs["settings"], inputs.get("data"))
    if args.out:
        write_json(args.out, plan)
        print(f"[freeadv] plan of scale '{plan['scale']}': {len(plan['models'])} models -> {args.out}")
        return 0
    print(f"scale {plan['scale']}: {len(plan['models'])} models; targets of 'all': {', '.join(available_targets(plan))}")
    for name, entry in plan["targets"].items():
        if entry["available"]:
            print(f"  {name}: {len(target_files(plan, name))} result files")
        else:
            print(f"  {name}: not at this scale (needs {', '.join(entry['missing_datasets'])})")
    for model in plan["models"]:
        print(f"  model {model}")
    return 0


def cmd_adv_examples(args: argparse.Namespace) -> int:
    from .analysis import adv_examples
    from .io import write_json

    result = adv_examples(args.run, eps=args.eps, step_size=args.step_size, steps=args.steps, last=args.last,
                          device=args.device)
    write_json(args.out, result)
    wrong = sum(p != y for p, y in zip(result["adversarial_predictions"], result["labels"]))
    print(f"[freeadv] {args.run}: BIM-{args.steps} eps {args.eps:g} on the last {args.last} test images: "
          f"{wrong}/{args.last} misclassified -> {args.out}")
    return 0


def cmd_loss_surface(args: argparse.Namespace) -> int:
    from .analysis import loss_surface
    from .io import write_json

    result = loss_surface(args.run, images=args.images, plane=args.plane, grid=args.grid, span=args.span,
                          seed=args.seed, batch_size=args.batch_size, device=args.device)
    write_json(args.out, result)
    print(f"[freeadv] {args.run}: {args.plane} loss surface of {args.images} images, {args.grid}x{args.grid} "
          f"grid, span {args.span:g} -> {args.out}")
    return 0


def _load_plan(args: argparse.Namespace) -> dict[str, Any]:
    from .paper import load_plan
    path = args.plan or args.results / "plan.json"
    if not path.exists():
        raise FileNotFoundError(f"plan '{path}' does not exist; run snakemake (rule plan) or freeadv plan --out {path}")
    return load_plan(path)


def cmd_table(args: argparse.Namespace) -> int:
    from .tables import write_table

    paths = write_table(_load_plan(args), args.name, args.results, args.out_dir or args.results / "tables")
    print(f"[freeadv] {args.name} -> {', '.join(str(p) for p in paths)}")
    return 0


def cmd_figure(args: argparse.Namespace) -> int:
    from .figures import write_figure

    paths = write_figure(_load_plan(args), args.name, args.results, args.out)
    print(f"[freeadv] {args.name} -> {', '.join(str(p) for p in paths)}")
    return 0


def cmd_regenerate(args: argparse.Namespace) -> int:
    from .claims import CLAIMS_NEED, write_claims
    from .figures import write_figure
    from .paper import TABLES, available_targets, load_plan, target_files
    from .tables import write_table

    results = args.results / args.scale
    plan_path = results / "plan.json"
    if not plan_path.exists():
        raise FileNotFoundError(f"no plan at '{plan_path}': scale '{args.scale}' has no results here")
    plan = load_plan(plan_path)
    written, skipped = [], {}
    available = available_targets(plan)
    for name in available:
        needed = target_files(plan, name)
        missing = [f for f in needed if not (results / f).exists()]
        if missing:   # a target this scale's run did not build (e.g. `yopo` at mini)
            skipped[name] = (f"{len(missing)} of {len(needed)} result files missing; "
                             f"build it with: snakemake {name} --config scale={args.scale}")
        elif name in TABLES:
            written += write_table(plan, name, results, results / "tables")
        else:
            written += write_figure(plan, name, results, args.figures / args.scale / f"{name}.png")
    if all(name in available and name not in skipped for name in CLAIMS_NEED):
        written += write_claims(results, results / "claims.txt", results / "claims.json")
    for path in written:
        print(f"[freeadv] {path}")
    for name, why in skipped.items():
        print(f"[freeadv] skipped {name} ({why})")
    print(f"[freeadv] regenerated {len(written)} files of scale '{args.scale}' from {results} (no model loaded)")
    return 0
