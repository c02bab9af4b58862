"""``freeadv export``: a finished run's weights and its RobustBench model_info in one folder, and the
text of RobustBench's "New Model(s)" issue filled in, ready to submit."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from . import alias


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a finished run: model.pt (state_dict) + RobustBench model_info",
                       description="Write OUT/model.pt (the final weights as a plain state_dict, loadable with "
                                   "torch.load(weights_only=True)), OUT/<model id>.json (RobustBench's model_info "
                                   "file: the paper's title as name, link, authors, venue, RobustBench's "
                                   "architecture name, eps, accuracies, footnote) and OUT/model_info.json (the same "
                                   "plus the commit, the evals used and the training config), then print "
                                   "RobustBench's 'New Model(s)' issue filled in. Accuracies come from the --eval "
                                   "files: clean from the one with the largest n, 'reported' from a PGD-20 eval, "
                                   "'autoattack_acc' from an AutoAttack eval, both at the training eps; without "
                                   "--eval the clean accuracy is measured on the run's test split.")
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a finished training run folder")
    p.add_argument("--out-dir", type=Path, metavar="DIR",
                   help="export folder: new, empty, or holding an earlier export (replaced; required)")
    alias(p, "--out", "out_dir", type=Path)
    p.add_argument("--eval", dest="evals", type=Path, action="append", default=[], metavar="EVAL.json",
                   help="an eval JSON of freeadv attack on this run (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (only for the clean pass "
                                                    "without --eval)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if args.out_dir is None:
        raise UserError("--out-dir is required: the export folder")
    from ..runs.export import export_run, new_model_issue   # local: torch, not needed for --help

    info = export_run(args.run, args.out_dir, args.evals, device=args.device)
    numbers = "  ".join(f"{key} {info[key]}" for key in ("clean_acc", "reported", "autoattack_acc")
                        if info[key] is not None)
    print(f"[freeadv] exported {args.run} -> {args.out_dir / info['robustbench_file']}: {info['name']} "
          f"({info['architecture']}, {info['dataset']}, eps {info['eps']}) {numbers}")
    print(f"[freeadv] RobustBench's New Model(s) issue, filled in:\n\n{new_model_issue(info)}")
    return 0
