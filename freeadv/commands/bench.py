"""``freeadv bench``: the command line of :mod:`freeadv.tools.bench`."""
from __future__ import annotations

import argparse

from ..data import DATASETS
from ..errors import UserError
from ..io import write_json
from ..tools import bench as tool
from ..tools.bench import STEPS, format_table, run_bench
from . import alias


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time every registered training method's step and PGD evaluation side by side",
                       description=tool.__doc__)
    p.add_argument("--arch", default="small_cnn", help="model from the registry (default small_cnn)")
    p.add_argument("--width", type=int, help="small_cnn width or wrn32_k factor k")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    alias(p, "--batch", "batch_size", type=int)
    p.add_argument("--dataset", default="cifar10", choices=list(DATASETS),
                   help="decides input size (224 for imagenet) and class count")
    p.add_argument("--replay", default="8", help="m for the free step, or a comma-separated list of m "
                                                 "(one Free row each: 2,4,8,10) (default 8)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--attack-steps", type=int, default=20)
    p.add_argument("--amp", default="off",
                   help="off: fp32, as the authors trained (default); bf16: bf16 autocast, as training with amp: bf16; "
                        "fp16: fp16 autocast with a loss scaler, as training with amp: fp16")
    p.add_argument("--compile", action="store_true", help="torch.compile each timed model, as training with "
                                                           "compile: true (the first warm-up steps compile)")
    p.add_argument("--no-eval", action="store_true", help="skip the PGD evaluation rows")
    p.add_argument("--trainer", action="store_true", help="also run a short Trainer per training row and give "
                                                          "its ms per iteration beside the timed step's")
    p.add_argument("--autoattack-steps", type=int, default=0, metavar="K",
                   help="also time each AutoAttack sub-attack alone at K iterations (100: its standard) on the "
                        "batch: seconds per 100 images (default 0: not timed)")
    p.add_argument("--methods", default=",".join(STEPS),
                   help=f"comma-separated subset of {','.join(STEPS)} (natural is always timed; xgrad is a "
                        "natural step that also computes the input gradient)")
    p.add_argument("--out", help="write the result JSON here")
    p.set_defaults(func=cmd_bench)


def parse_replays(text: str) -> tuple[int, ...]:
    """'2,4,8,10' -> (2, 4, 8, 10); a one-line ValueError naming a bad m."""
    replays = []
    for part in str(text).split(","):
        if not part.strip().isdigit() or int(part) < 1:
            raise UserError(f"--replay has bad value '{part.strip()}': expected integers >= 1, comma-separated")
        replays.append(int(part))
    return tuple(dict.fromkeys(replays))


def cmd_bench(args: argparse.Namespace) -> int:
    args.replay = parse_replays(args.replay)
    if args.autoattack_steps < 0:
        raise UserError(f"--autoattack-steps has bad value {args.autoattack_steps}: expected an integer >= 0")
    for name in ("batch_size", "reps", "attack_steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} has bad value {getattr(args, name)}: expected an integer >= 1")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in STEPS:
            raise UserError(f"--methods has bad value '{m}': expected names from {', '.join(STEPS)}")
    methods = ["natural"] + [m for m in methods if m != "natural"]
    result = run_bench(args.arch, args.batch_size, dataset=args.dataset, device=args.device, replay=args.replay,
                       warmup=args.warmup, reps=args.reps, attack_steps=args.attack_steps, width=args.width,
                       methods=tuple(methods), amp=args.amp, compile=args.compile, eval_rows=not args.no_eval,
                       trainer=args.trainer, autoattack_steps=args.autoattack_steps)
    print(format_table(result))
    if args.out:
        write_json(args.out, result)
    return 0
