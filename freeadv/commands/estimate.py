"""``freeadv estimate``: the command line of :mod:`freeadv.tools.estimate`."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import config as cfg
from ..errors import UserError
from ..experiments.layout import RESULTS_ROOT
from ..experiments.scales import build_plan, plan_inputs
from ..provenance import device_info
from ..tools import estimate as tool
from ..tools.estimate import CPU_PROBE_BATCH, estimate, format_estimate, load_step_costs
from ..training import resolve_device
from . import DEFAULT_SCALE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="expected wall time of a table's or figure's jobs on this device",
                       description=tool.__doc__)
    p.add_argument("target", help="a table or figure (table1 ... table5, yopo, trials, fast, figure1 ... figure4), "
                                  "or all")
    p.add_argument("--scale", default=DEFAULT_SCALE, help=f"scale of config/config.yaml (default {DEFAULT_SCALE})")
    p.add_argument("--config", default="config/config.yaml", help="workflow config (default config/config.yaml)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--probe-batch", type=int, help="time steps at this batch and scale linearly "
                                                   f"(default: the job's batch on CUDA, {CPU_PROBE_BATCH} on CPU)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per step (default 3)")
    p.add_argument("--costs", type=Path, metavar="FILE",
                   help="take the train and attack step costs from FILE instead of timing them here: a "
                        "freeadv gpucheck JSON (e.g. results/gpu/2026-11-27-h200/nvidia-h200.json) or any JSON "
                        "with a step_costs list")
    p.add_argument("--results", type=Path, help="the scale's results, whose AutoAttack evaluations give the "
                                                "share of images each sub-attack attacks (default results/<scale>)")
    p.set_defaults(func=cmd_estimate)


def cmd_estimate(args: argparse.Namespace) -> int:
    for name in ("probe_batch", "reps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} has bad value {value}: expected an integer >= 1")
    workflow_config = cfg.load_yaml(Path(args.config))
    plan = build_plan(**plan_inputs(workflow_config, args.scale))
    if args.target not in [*plan.targets, "all"]:
        raise UserError(f"target '{args.target}' is unknown: choose one of {', '.join(plan.targets)} or all")
    costs = load_step_costs(args.costs) if args.costs is not None else None
    results = args.results if args.results is not None else Path(RESULTS_ROOT) / args.scale
    result = estimate(plan, args.target, device=args.device, probe_batch=args.probe_batch, reps=args.reps,
                      step_costs=costs, results=results)
    device_name = costs["device"] if costs is not None else device_info(resolve_device(args.device))["name"]
    print(format_estimate(result, device_name))
    return 0
