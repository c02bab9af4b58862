"""Command line: ``freeadv train | attack`` (also ``python -m freeadv``).

Every subcommand validates its input before any long work starts and exits with one clear line on
bad input (exit code 2).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  freeadv train --config config/smoke.yaml --set method=free --set replay=4 --out runs/free4
  freeadv attack --run runs/free4 --attack pgd --steps 20 --restarts 1 --out runs/free4/pgd20.json
  freeadv claims --scale mini          # the paper's claims checked on results/mini (PASS / FAIL)
"""


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model (natural, free, pgd or fgsm_rs); resumes a killed run",
                       description="Train one model. Config = defaults < --config YAML < --set overrides. "
                                   "Re-running on a RUN_DIR with a checkpoint resumes it; a finished run is not retrained.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--config", type=Path, help="YAML file of config keys (see freeadv/config.py for every key)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, value parsed as YAML (repeatable), e.g. --set replay=8")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR",
                   help="run folder: config.yaml, checkpoint.pt, model.pt, log.jsonl, train.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_train)


def _add_attack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="evaluate a trained run under PGD / CW / BIM / noise",
                       description="Clean and robust accuracy of RUN_DIR/model.pt on the test split. Sizes in "
                                   "pixel units /255 like the paper. Defaults: eps = the training eps, step 2 "
                                   "(CIFAR) or 1 (ImageNet).")
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a finished training run folder")
    p.add_argument("--attack", default="pgd", choices=["pgd", "cw", "bim", "noise", "none"],
                   help="pgd: cross-entropy PGD with random start; cw: CW margin loss; bim: PGD without "
                        "random start; noise: uniform noise of the same eps (a sanity baseline)")
    p.add_argument("--steps", type=int, default=20, help="attack iterations K (default 20)")
    p.add_argument("--restarts", type=int, default=1, help="random restarts R; an example counts as robust "
                                                             "only if it survives all of them (default 1)")
    p.add_argument("--eps", type=float, help="L-inf bound in pixel units (default: the run's training eps)")
    p.add_argument("--step-size", type=float, help="attack step in pixel units (default 2, ImageNet 1)")
    p.add_argument("--n", type=int, help="first N test images (default: the run's n_test, else all)")
    p.add_argument("--batch-size", type=int, default=500, help="attack batch size (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, required=True, metavar="EVAL.json", help="where to write the result JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_attack)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="freeadv", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_attack(sub)
    from . import bench, claims, doctor, estimate, report_cli   # timing; claims; environment; analysis, figures
    bench.add_command(sub)
    claims.add_command(sub)
    estimate.add_command(sub)
    doctor.add_command(sub)
    report_cli.add_commands(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from . import config as cfg
    from .distributed import from_environment
    from .training import Trainer

    user = cfg.load_yaml(args.config) if args.config else {}
    config = cfg.resolve(user, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=True), end="")
        return 0
    result = Trainer(config, args.out, progress=not args.no_progress).run()
    if not from_environment().is_main:   # under torchrun, rank 0 reports
        return 0
    print(f"[freeadv] trained {args.out}: {result['iterations']} iterations, {result['train_minutes']:.2f} min, "
          f"{result['images_per_second']:.0f} images/s, final loss {result['final_loss']:.4f}")
    return 0


def attack_spec_from_args(args: argparse.Namespace, train_config: dict[str, Any]):
    from .attacks import AttackSpec

    eps = args.eps if args.eps is not None else train_config["eps"]
    step = args.step_size if args.step_size is not None else (1.0 if train_config["dataset"] == "imagenet" else 2.0)
    for name, value in (("--eps", eps), ("--step-size", step)):
        if not 0 < value <= 255:
            raise ValueError(f"{name} has bad value {value}: expected a number in (0, 255] (pixel units)")
    if args.steps < 0:
        raise ValueError(f"--steps has bad value {args.steps}: expected an integer >= 0")
    if args.restarts < 1:
        raise ValueError(f"--restarts has bad value {args.restarts}: expected an integer >= 1")
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n has bad value {args.n}: expected an integer >= 1")
    return AttackSpec(kind=args.attack, eps=eps / 255, step_size=step / 255, steps=args.steps,
                      restarts=args.restarts), eps, step


def cmd_attack(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import cpu
    from .attacks import evaluate
    from .io import write_json
    from .provenance import stamp
    from .sanity import check_eval
    from .training import data_for, load_trained_model, resolve_device

    device = resolve_device(args.device)
    cpu.tune(device, flush_denormal=False)
    model, train_config = load_trained_model(args.run, device)
    spec, eps, step = attack_spec_from_args(args, train_config)
    data_config = dict(train_config, augment=False, n_train=None)
    if args.n is not None:
        data_config["n_test"] = args.n
    data = data_for(data_config)
    start = time.perf_counter()
    with tqdm(total=data.n_test, disable=args.no_progress, unit="img", desc=f"{args.attack}-{args.steps}") as bar:
        metrics = evaluate(model, data.test_batches(args.batch_size, device=device), spec, seed=args.seed,
                           progress=bar.update)
    seconds = time.perf_counter() - start
    result = {
        "kind": "eval", "run": str(args.run), "train_config": train_config, "seed": args.seed,
        "attack": {"kind": args.attack, "eps": eps, "step_size": step, "steps": args.steps,
                   "restarts": args.restarts, "n": metrics["n"], "batch_size": args.batch_size},
        **metrics, "wall_seconds": seconds, "images_per_second": metrics["n"] / seconds if seconds else None,
        **stamp(device),
    }
    result["warnings"] = check_eval(result)
    write_json(args.out, result)
    for warning in result["warnings"]:
        print(f"[freeadv] WARNING: {warning}", file=sys.stderr)
    print(f"[freeadv] {args.run} {args.attack}-{args.steps} x{args.restarts} eps {eps:g}: clean "
          f"{metrics['clean_acc']:.2f}%  robust {metrics['robust_acc']:.2f}%  (n={metrics['n']}, {seconds:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .io import CheckpointError
    try:
        from .data import DataError
    except ImportError:  # pragma: no cover
        DataError = ConfigError
    try:
        return args.func(args)
    except (ConfigError, DataError, CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"freeadv {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
