"""``freeadv cost-table``: what each train, attack and analysis job of a scale cost (freeadv/report/cost.py).

  freeadv cost-table --results results/mini          (tables/cost.{csv,md} from the benchmark files)

A module of its own so that the workflow's cost rule depends on this code only, not on everything
the tables and figures import.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.layout import PLAN_FILE, TABLES_DIR


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost-table", help="per-job cost (wall, CPU time, peak memory) from Snakemake's "
                                          "benchmark files, beside the resources each job asked for",
                       description="Read results/<scale>/benchmarks/<job>.tsv (Snakemake's benchmark: "
                                   "directive) of every train, attack and analysis job of the scale's 'all' "
                                   "and write cost.csv (one row per job) and cost.md (with totals per kind).")
    p.add_argument("--results", type=Path, required=True, help="results/<scale> (holds plan.json and benchmarks/)")
    p.add_argument("--plan", type=Path, help="plan JSON (default: RESULTS/plan.json)")
    p.add_argument("--resources", help="JSON kind -> model -> {threads, gpu, mem_mb, runtime}, as the workflow "
                                       "passes it (recorded in RESULTS/benchmarks/resources.json); default: "
                                       "read that record")
    p.add_argument("--out-dir", type=Path, help="where cost.csv and cost.md go (default: RESULTS/tables)")
    p.set_defaults(func=cmd_cost_table)


def cmd_cost_table(args: argparse.Namespace) -> int:
    from ..report.cost import parse_resources, write_cost_table
    from ..experiments.plan import load_plan

    plan_path = args.plan or args.results / PLAN_FILE
    if not plan_path.exists():
        raise FileNotFoundError(f"plan '{plan_path}' does not exist; run snakemake (rule plan) or "
                                f"freeadv plan --out {plan_path}")
    resources = None if args.resources is None else parse_resources(args.resources)
    paths = write_cost_table(load_plan(plan_path), args.results, args.out_dir or args.results / TABLES_DIR,
                             resources)
    print(f"[freeadv] cost -> {', '.join(str(p) for p in paths)}")
    return 0
