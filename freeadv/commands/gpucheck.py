"""``freeadv gpucheck``: the command line of :mod:`freeadv.tools.gpucheck`."""
from __future__ import annotations

import argparse

from pathlib import Path

import torch

from .. import config as cfg
from ..errors import UserError
from ..io import atomic_write_text, write_json
from ..tools import gpu_experiments
from ..tools import gpucheck as tool
from ..tools.gpucheck import run_gpucheck
from ..tools.gpucheck_report import format_markdown
from ..tools.gpucheck_settings import JPEG_ARCHIVE, settings_for, slug
from ..training import resolve_device
from . import alias


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gpucheck", help="GPU acceptance: device tests, bench with MFU, a timed Free m=8 run "
                                        "with PGD-20, and table1's projected time (at most 8 min on one H100)",
                       description=tool.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", help="cuda or cuda:N (default cuda; bridge-cpu: cpu); cpu with --quick")
    p.add_argument("--data-root", help=f"the folder holding {JPEG_ARCHIVE}, or the archive (required unless --quick)")
    alias(p, "--data", "data_root")
    p.add_argument("--quick", action="store_true", help="tiny stand-ins and synthetic data: checks this command "
                                                        "in about half a minute (on a CPU too)")
    p.add_argument("--out-dir", help="where the .json and .md go (default results/gpu; "
                                     "results/gpu/<experiment> for an experiment)")
    p.add_argument("--budget-seconds", type=float,
                   help="full: training time of part 3 (default 180; --quick caps it at 4); an experiment: "
                        f"its whole time (bridge: default {gpu_experiments.BRIDGE_BUDGET_S:.0f}; bridge-cpu: "
                        f"{gpu_experiments.BRIDGE_CPU_BUDGET_S:.0f})")
    p.add_argument("--workflow-config", metavar="PATH",
                   help="full: the workflow config whose paper scale part 4 estimates (default: config/config.yaml "
                        "of the checkout holding this package, else of the working directory; without one "
                        "part 4 is skipped)")
    p.add_argument("--experiment", default="full",
                   help=f"full (this check, the default) or a prepared experiment: "
                        f"{', '.join(gpu_experiments.EXPERIMENTS)} (freeadv.tools.gpu_experiments)")
    p.add_argument("--stages", help="bridge: the stages this call runs, comma-separated (default all): "
                                    + ", ".join(gpu_experiments.STAGE_NAMES))
    p.add_argument("--prior", help="bridge: an earlier call's bridge.json (the same plan); its finished "
                                   "records stand for the stages this call does not run")
    p.add_argument("--work-dir", help="bridge-cpu: where its run folders (weights, checkpoints) stay between "
                                      "calls, so the same command resumes (default runs/bridge-cpu)")
    p.set_defaults(func=cmd_gpucheck)


def _check_data(path: str) -> str:
    root = Path(path).expanduser()
    if root.is_file() or (root / JPEG_ARCHIVE).is_file() or (root / "cifar10-jpeg").is_dir():
        return str(root)
    raise UserError(f"--data-root has bad value '{path}': expected the folder holding {JPEG_ARCHIVE} (or the archive "
                     "itself); nothing is downloaded")


def _device(args: argparse.Namespace) -> torch.device:
    if args.device is None:
        args.device = gpu_experiments.EXPERIMENTS[args.experiment].device if args.experiment != "full" else "cuda"
    try:
        return resolve_device(args.device)
    except cfg.ConfigError:
        raise UserError(f"--device has bad value '{args.device}': CUDA is not available here "
                         "(--device cpu --quick checks this command on a CPU)") from None


def cmd_gpucheck(args: argparse.Namespace) -> int:
    choices = ("full", *gpu_experiments.EXPERIMENTS)
    if args.experiment not in choices:
        raise UserError(f"--experiment has bad value '{args.experiment}': expected one of {', '.join(choices)}")
    if args.budget_seconds is not None and not args.budget_seconds > 0:
        raise UserError(f"--budget-seconds has bad value {args.budget_seconds:g}: expected a number > 0")
    if args.data_root is None and not args.quick:
        raise UserError(f"--data-root is required unless --quick: the folder holding {JPEG_ARCHIVE}, or the archive")
    data = None if args.quick else _check_data(args.data_root)
    device = _device(args)
    if args.experiment != "full" and gpu_experiments.EXPERIMENTS[args.experiment].device == "cpu":
        if device.type != "cpu":
            raise UserError(f"--device has bad value '{args.device}': experiment {args.experiment} runs on the CPU "
                            "(its device form is --experiment bridge)")
        return gpu_experiments.run_experiment(args, device, data)
    if args.work_dir is not None:
        raise UserError("--work-dir is for --experiment bridge-cpu, whose run folders stay between calls")
    if device.type != "cuda" and not (device.type == "cpu" and args.quick):
        what = "the full check" if args.experiment == "full" else f"experiment {args.experiment}"
        raise UserError(f"--device has bad value '{args.device}': {what} needs a CUDA device "
                         "(on a CPU use --device cpu --quick)")
    if args.experiment != "full":
        return gpu_experiments.run_experiment(args, device, data)
    if args.workflow_config is not None and not Path(args.workflow_config).is_file():
        raise UserError(f"--workflow-config has bad value '{args.workflow_config}': no such file (the workflow "
                        "config, e.g. config/config.yaml of a checkout)")
    args.budget_seconds = 180.0 if args.budget_seconds is None else args.budget_seconds
    args.out_dir = "results/gpu" if args.out_dir is None else args.out_dir
    settings = settings_for(args.quick, data)
    threads = torch.get_num_threads()
    if settings.quick and device.type == "cpu":
        # tiny models gain nothing from more threads, and on a busy machine (CI) two OpenMP threads
        # fighting other jobs for two cores made the quick check 3x slower (measured)
        torch.set_num_threads(1)
    try:
        result = run_gpucheck(device, settings, args.budget_seconds, args.workflow_config)
    finally:
        torch.set_num_threads(threads)
    out_dir = Path(args.out_dir)
    stem = slug(result["device"]["name"]) + ("-quick" if args.quick else "")
    result["files"] = {"json": str(out_dir / f"{stem}.json"), "md": str(out_dir / f"{stem}.md")}
    markdown = format_markdown(result)
    write_json(out_dir / f"{stem}.json", result)
    atomic_write_text(out_dir / f"{stem}.md", markdown)
    print(markdown)
    print(f"[gpucheck] wrote {result['files']['json']} and {result['files']['md']}")
    return 0 if result["ok"] else 1
