"""``freeadv train``: train one model into a run folder; re-running resumes it."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from .. import config as cfg
from ..errors import UserError
from ..methods import METHODS, method_params
from . import alias

EXAMPLES = """examples:
  freeadv train --set dataset=synthetic --set arch=small_cnn --set iterations=200 --set method=free --set replay=4 --out-dir runs/free4
  freeadv train --set dataset=cifar10-jpeg --set method=pgd --set pgd_steps=7 --out-dir runs/pgd7
"""


def _method_help() -> str:
    """Every registered method, its title at the defaults, and its own keys (from the registry)."""
    lines = ["methods (--set method=NAME), shown with their defaults, and their own keys:"]
    for name, cls in METHODS.items():
        replay = f"; replay m, default {cls.replay_default}" if cls.replay_default else ""
        lines.append(f"  {name:<9} {cls.title(method_params(name, {}))}{replay}")
        lines += [f"  {'':<9}   {key}: {declared.doc} (default {declared.default})" for key, declared in cls.keys.items()]
    return "\n".join(lines)


def _as_overrides(flags: dict[str, str]) -> list[str]:
    """``--data-root`` and ``--device`` as the ``--set`` overrides they stand for (after the
    user's own, so the flag wins), each value quoted as YAML would read it back as a string."""
    return [f"{key}={json.dumps(value)}" for key, value in flags.items()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=f"train one model ({', '.join(METHODS)}); resumes a killed run",
                       description="Train one model. Config = defaults < --config YAML < --set overrides. "
                                   "Re-running on a RUN_DIR with a checkpoint resumes it; a finished run is not "
                                   "retrained.\n\n" + _method_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--config", type=Path, help="YAML file of config keys (see freeadv/config.py for every key)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, value parsed as YAML (repeatable), e.g. --set replay=8")
    p.add_argument("--out-dir", type=Path, metavar="RUN_DIR",
                   help="run folder: config.yaml, checkpoint.pt, model.pt, log.jsonl, train.json (required)")
    alias(p, "--out", "out_dir", type=Path)
    p.add_argument("--data-root", help="where the dataset lies (the config key data_root)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (the config key device)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--supersede", action="store_true",
                   help="RUN_DIR holds a run of another config: replace its run files instead of refusing "
                        "(its evals stay, bound to their weights' digest); the workflow passes it for its own folders")
    p.add_argument("--restore-finished", action="store_true",
                   help="restore model.pt and train.json that a scheduler deleted after the run finished, from "
                        "their hard links, if config, training code and weights all match (the workflow passes it "
                        "when it retries a job); otherwise the run trains again")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    flags = {key: getattr(args, key) for key in ("data_root", "device") if getattr(args, key) is not None}
    config = cfg.resolve(cfg.load_yaml(args.config) if args.config else {}, [*args.overrides, *_as_overrides(flags)])
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=True), end="")
        return 0
    if args.out_dir is None:
        raise UserError("--out-dir is required: the run folder to train into (or resume)")
    from ..distributed import from_environment   # local: torch, not needed for --print-config
    from ..training import Trainer

    result = Trainer(config, args.out_dir, progress=not args.no_progress, supersede=args.supersede,
                     restore=args.restore_finished).run()
    if not from_environment().is_main:   # under torchrun, rank 0 reports
        return 0
    print(f"[freeadv] trained {args.out_dir}: {result['iterations']} iterations, {result['train_minutes']:.2f} min, "
          f"{result['images_per_second']:.0f} images/s, final loss {result['final_loss']:.4f}")
    return 0
