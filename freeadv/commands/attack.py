"""``freeadv attack``: clean and robust accuracy of a finished run, or of any model a factory
builds (``--model PKG.MODULE:FACTORY``), under one registered attack."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..attacks import ATTACKS, AttackError, AttackSpec
from ..runs.any_model import ROBUSTBENCH, attack_model, first_test_images, for_dataset, load_model
from ..runs.eval_device import check_batch_size
from ..runs.evaluation import run_attack, state_file, write_eval
from ..runs.opening import open_device
from ..data import DATASETS
from ..config import check_device
from ..io import check_output_file
from ..training.folder import RUN_FILES
from ..training.lock import LOCK
from ..errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    kinds = "; ".join(f"{name}: {(type(kind).__doc__ or '').strip().splitlines()[0]}" for name, kind in ATTACKS.items())
    p = sub.add_parser("attack", help=f"evaluate a trained run or any model under {' / '.join(ATTACKS)}",
                       description="Clean and robust accuracy of RUN_DIR/model.pt (or, --weights best, "
                                   "model_best.pt), or of the model --model builds, on the test split. Sizes in "
                                   "pixel units /255 like the paper. Defaults: eps = the training eps (--model: "
                                   "the dataset's, 8 or ImageNet 4), step 2 (CIFAR) or 1 (ImageNet).")
    p.add_argument("--run", type=Path, metavar="RUN_DIR", help="a finished training run folder")
    p.add_argument("--model", metavar="PKG.MODULE:FACTORY",
                   help="instead of --run: a callable (or FILE.py:FACTORY) returning an nn.Module that takes "
                        "[0, 1] images and returns logits; a model expecting normalised inputs puts "
                        "freeadv.models.Normalize(mean, std) first")
    p.add_argument("--robustbench", metavar="NAME", help="RobustBench's L-inf model NAME for --dataset's family, "
                                                         "e.g. Shafahi2019Adversarial (needs the robustbench "
                                                         "package and, once, the network)")
    p.add_argument("--dataset", metavar="NAME", help=f"with --model: the test split to attack ({', '.join(DATASETS)})")
    p.add_argument("--data-root", metavar="DIR", help="with --model: the folder holding the dataset's files "
                                                      "(default: the one a run of that dataset reads)")
    p.add_argument("--attack", default="pgd", choices=list(ATTACKS), help=kinds)
    p.add_argument("--steps", type=int, help="attack iterations K (default 20; autoattack and apgd: 100, "
                                             "their standard setting)")
    restarting = ", ".join(name for name, kind in ATTACKS.items() if kind.uses_restarts)
    p.add_argument("--restarts", type=int, default=1, help=f"random restarts R ({restarting} only); an example "
                                                             "counts as robust only if it survives all of them "
                                                             "(default 1)")
    p.add_argument("--eps", type=float, help="L-inf bound in pixel units (default: the run's training eps)")
    p.add_argument("--step-size", type=float, help="attack step in pixel units (default 2, ImageNet 1)")
    p.add_argument("--n", type=int, help="first N test images (default: the run's n_test, else all)")
    p.add_argument("--batch-size", default="auto",
                   help="attack batch size, AutoAttack's chunk size: an integer, or auto (default): 500 on a "
                        "CPU, on CUDA what fits half the free memory (at most 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts (default 0)")
    p.add_argument("--weights", help="with --run, final: RUN_DIR/model.pt, the paper's protocol (default); best: "
                                     "RUN_DIR/model_best.pt, the weights of the run's best robust check on its "
                                     "validation images (trained with keep_best). With --model: a state_dict file "
                                     "(torch.load weights_only) loaded into the model (default: none)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, required=True, metavar="EVAL.json", help="where to write the result JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_attack)


def spec_of(args: argparse.Namespace, steps: int) -> AttackSpec:
    """The options as the one AttackSpec they describe; a bad field is named by its option."""
    try:
        return AttackSpec(args.attack, steps, args.eps, args.step_size, args.restarts, n=args.n)
    except AttackError as err:
        if err.field is None:
            raise
        raise UserError(f"--{err.field.replace('_', '-')} has bad value {err.value}: {err.expected}") from None


def check_source(args: argparse.Namespace) -> None:
    """--run or --model (or --robustbench, a model too), one of them, each with the options that
    belong to it."""
    if args.robustbench is not None:
        if args.model is not None:
            raise UserError("give --model or --robustbench, not both")
        args.model = f"{ROBUSTBENCH}{args.robustbench}"
    if (args.run is None) == (args.model is None):
        raise UserError("give --run RUN_DIR or --model PKG.MODULE:FACTORY" + (", not both" if args.run else ""))
    if args.run is not None:
        for flag, value in (("--dataset", args.dataset), ("--data-root", args.data_root)):
            if value is not None:
                raise UserError(f"{flag} has bad value {value}: a run's data is its config's (use it with --model)")
        if args.weights not in (None, "final", "best"):
            raise UserError(f"--weights has bad value {args.weights}: with --run, expected final or best")
    elif args.dataset is None:
        raise UserError("--dataset is required with --model: the test split to attack")
    else:
        DATASETS.pick(args.dataset, "--dataset")


def attack_run(args: argparse.Namespace, spec: AttackSpec, state: Path | None) -> dict:
    if not args.run.is_dir():
        raise FileNotFoundError(f"--run '{args.run}' is not a folder; give a finished training run folder")
    # before the attack, not after it: an unwritable --out would lose the whole evaluation
    check_output_file(args.out, inputs=tuple(args.run / name for name in (*RUN_FILES, LOCK)) + (args.run,))
    return run_attack(args.run, spec, batch_size=args.batch_size, seed=args.seed, device=args.device,
                      progress=not args.no_progress, state_path=state, weights=args.weights or "final")


def attack_any_model(args: argparse.Namespace, spec: AttackSpec, state: Path | None) -> dict:
    check_output_file(args.out, inputs=() if args.weights is None else (args.weights,))
    device = open_device(args.device)
    model = load_model(args.model, args.weights, dataset=args.dataset).to(device)
    return attack_model(model, for_dataset(spec, args.dataset), first_test_images(args.dataset, args.data_root, spec.n),
                        name=args.model, weights=args.weights, device=device, batch_size=args.batch_size,
                        seed=args.seed, progress=not args.no_progress, state_path=state)


def cmd_attack(args: argparse.Namespace) -> int:
    kind = ATTACKS[args.attack]
    spec = spec_of(args, kind.default_steps if args.steps is None else args.steps)
    args.batch_size = check_batch_size(args.batch_size)
    check_device(args.device, "--device")
    check_source(args)
    state = state_file(args.out) if kind.whole_set else None
    result = (attack_run if args.run is not None else attack_any_model)(args, spec, state)
    write_eval(args.out, result, state)
    for warning in result["warnings"] + result.get("autoattack_warnings", []):
        print(f"[freeadv] WARNING: {warning}", file=sys.stderr)
    a = result["attack"]
    print(f"[freeadv] {args.run or args.model} {a['kind']}-{a['steps']} x{a['restarts']} eps {a['eps']:g}: clean "
          f"{result['clean_acc']:.2f}%  robust {result['robust_acc']:.2f}%  (n={result['n']}, "
          f"{result['wall_seconds']:.1f} s)")
    return 0
