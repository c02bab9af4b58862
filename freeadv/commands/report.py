"""``freeadv plan | table | figure | claims | regenerate``: the plan of a scale and everything drawn
from JSON results alone.

  freeadv plan --config config/config.yaml --scale mini          (print what a scale trains)
  freeadv table table1 --results results/mini --out-dir results/mini/tables
  freeadv figure figure1 --results results/mini --out figures/mini/figure1.png
  freeadv curves table1 --results results/mini --out figures/mini/curves_table1.png
  freeadv claims --scale mini          (the paper's claims checked on results/mini: PASS / FAIL)
  freeadv regenerate --scale mini      (every table, figure and the claims, from committed results,
                                        and the cost table where the run recorded benchmarks)

Tables, figures and claims read only the JSON result files under --results (and the plan saved
there), so they regenerate without any model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..report import claims
from ..config import load_yaml
from ..report.cost import CostError, write_cost_table
from ..experiments.layout import (
    BENCHMARKS_DIR,
    COST_TABLE,
    FIGURES_ROOT,
    PLAN_FILE,
    RESULTS_ROOT,
    TABLES_DIR,
    ScaleLayout,
    curves_name,
)
from ..experiments.plan import Plan, load_plan
from ..experiments.scales import build_plan, plan_inputs
from ..io import OutputError, atomic_write_text, check_distinct_outputs, check_output_file, write_json
from ..report.tables import write_table
from ..errors import UserError
from . import DEFAULT_SCALE


def register(sub: argparse._SubParsersAction) -> None:
    _register_plan(sub)
    _register_table(sub)
    _register_figure(sub)
    _register_curves(sub)
    _register_claims(sub)
    _register_regenerate(sub)


def _register_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="realise the paper's tables and figures at one scale: model ids, configs, files",
                       description="Build the plan of one scale: every model (id and training config) and every "
                                   "result file each table and figure reads.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="workflow config YAML (config/config.yaml), read at --scale")
    source.add_argument("--inputs", help="JSON {scale, settings, data} as the Snakefile passes it")
    p.add_argument("--scale", default=DEFAULT_SCALE,
                   help=f"scale name in the workflow config (default {DEFAULT_SCALE}; with --config)")
    p.add_argument("--out", type=Path, help="write the plan JSON here (default: print a summary)")
    p.set_defaults(func=cmd_plan)


def _add_results_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    """NAME, --results and --plan: what a table or a figure is drawn from. NAME is checked against
    the plan's targets, which hold every registered one (the paper's and the user's)."""
    p.add_argument("name", help=f"a {kind} of the plan (e.g. {'table1' if kind == 'table' else 'figure1'})")
    p.add_argument("--results", type=Path, required=True, help="results/<scale> (holds plan.json and runs/)")
    p.add_argument("--plan", type=Path, help="plan JSON (default: RESULTS/plan.json)")


def _register_table(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="build a table (csv, md, tex) from JSON results: ours, paper, difference")
    _add_results_arguments(p, "table")
    p.add_argument("--out-dir", type=Path, help="where NAME.{csv,md,tex} go (default: RESULTS/tables)")
    p.set_defaults(func=cmd_table)


def _register_figure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("figure", help="draw a figure (png and pdf) from JSON results")
    _add_results_arguments(p, "figure")
    p.add_argument("--out", type=Path, required=True, help="figure path; .png and .pdf are both written")
    p.set_defaults(func=cmd_figure)


def _register_curves(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curves", help="draw a table's training curves (held-out clean and PGD accuracy vs iteration)")
    _add_results_arguments(p, "table")
    p.add_argument("--out", type=Path, required=True, help="figure path; .png and .pdf are both written")
    p.set_defaults(func=cmd_curves)


def _register_claims(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claims", help="check the paper's claims (C1-C6) on results/<scale>: PASS / FAIL",
                       description=claims.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default=DEFAULT_SCALE, help=f"scale whose results/<scale>/ to read (default {DEFAULT_SCALE})")
    p.add_argument("--results", default=RESULTS_ROOT, help=f"results root (default {RESULTS_ROOT})")
    p.add_argument("--out", help="also write what is printed to this file")
    p.add_argument("--json", help="also write the verdicts as JSON to this file")
    p.add_argument("--strict", action="store_true", help="exit 1 when a claim fails")
    p.set_defaults(func=cmd_claims)


def _register_regenerate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regenerate", help="rebuild every table and figure of a scale (its claims and cost table) "
                                          "from the committed JSON results and benchmarks, without models",
                       description="Tables, figures and claims of results/<scale> from its plan.json and result "
                                   "files alone: what a fresh clone can do without retraining or re-attacking "
                                   "(Snakemake would retrain there, since the models are not committed).")
    p.add_argument("--scale", default=DEFAULT_SCALE, help=f"scale to rebuild (default {DEFAULT_SCALE})")
    p.add_argument("--results", type=Path, default=Path(RESULTS_ROOT), help=f"results root (default {RESULTS_ROOT})")
    p.add_argument("--figures", type=Path, default=Path(FIGURES_ROOT), help=f"figures root (default {FIGURES_ROOT})")
    p.set_defaults(func=cmd_regenerate)


PLAN_INPUT_KEYS = {"scale", "settings", "data"}   # build_plan's arguments


# --- handlers ------------------------------------------------------------------------------------

def _plan_inputs(args: argparse.Namespace) -> dict[str, Any]:
    if args.inputs is not None:
        try:
            inputs = json.loads(args.inputs)
        except json.JSONDecodeError as err:
            raise UserError(f"--inputs is not valid JSON: {err}") from None
        if not isinstance(inputs, dict) or not {"scale", "settings"} <= set(inputs) or set(inputs) - PLAN_INPUT_KEYS:
            raise UserError(f"--inputs must be a JSON object with keys scale, settings (and optionally data), "
                             f"got {sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__}")
        return inputs
    return plan_inputs(load_yaml(args.config), args.scale)


def cmd_plan(args: argparse.Namespace) -> int:
    inputs = _plan_inputs(args)
    plan = build_plan(inputs["scale"], inputs["settings"], inputs.get("data"))
    if args.out:
        write_json(args.out, plan.to_json())
        print(f"[freeadv] plan of scale '{plan.scale}': {len(plan.models)} models -> {args.out}")
        return 0
    print(f"scale {plan.scale}: {len(plan.models)} models; targets of 'all': {', '.join(plan.available_targets())}")
    for name, entry in plan.targets.items():
        if entry.available:
            print(f"  {name}: {len(entry.files())} result files")
        else:
            print(f"  {name}: not at this scale (needs {', '.join(entry.missing_datasets)})")
    for model in plan.models:
        print(f"  model {model}")
    return 0


def _load_plan(args: argparse.Namespace) -> Plan:
    path = args.plan or args.results / PLAN_FILE
    if not path.exists():
        raise FileNotFoundError(f"plan '{path}' does not exist; run snakemake (rule plan) or freeadv plan --out {path}")
    return load_plan(path)


def cmd_table(args: argparse.Namespace) -> int:
    paths = write_table(_load_plan(args), args.name, args.results, args.out_dir or args.results / TABLES_DIR)
    print(f"[freeadv] {args.name} -> {', '.join(str(p) for p in paths)}")
    return 0


def check_figure_out(out: Path) -> None:
    """A figure's --out ends in .png or .pdf (both are written) or has no suffix; another suffix
    (x.v2) is refused, as neither file written would be the one named."""
    from ..report.plotting import FORMATS, figure_paths

    if out.suffix and out.suffix not in FORMATS:
        raise OutputError(f"--out '{out}' ends in '{out.suffix}': a figure is written as .png and .pdf; "
                          f"name it {out.name}.png")
    for path in figure_paths(out):
        check_output_file(path)


def cmd_figure(args: argparse.Namespace) -> int:
    from ..report.figures import write_figure   # local: matplotlib, ~1 s that every other freeadv command would pay

    check_figure_out(args.out)
    paths = write_figure(_load_plan(args), args.name, args.results, args.out)
    print(f"[freeadv] {args.name} -> {', '.join(str(p) for p in paths)}")
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from ..report.curves import write_curves   # local: matplotlib

    for path in write_curves(_load_plan(args), args.name, args.results, args.out):
        print(f"[freeadv] {path}")
    return 0


def claims_inputs(results: Path) -> tuple[Path, ...]:
    """What the claims read: the scale's plan and every result file it names."""
    plan_path = results / PLAN_FILE
    if not plan_path.is_file():
        return (plan_path,)
    plan = load_plan(plan_path)
    return (plan_path, *(results / f for target in plan.targets.values() for f in target.files()))


def check_claims_outputs(args: argparse.Namespace, results: Path) -> None:
    """--out and --json: writable, distinct, and none of the files the claims are checked on."""
    check_distinct_outputs({"--out": args.out, "--json": args.json})
    inputs = claims_inputs(results)
    for flag, out in (("--out", args.out), ("--json", args.json)):
        if out:
            check_output_file(out, inputs=inputs, flag=flag)


def cmd_claims(args: argparse.Namespace) -> int:
    results = Path(ScaleLayout(args.scale, args.results).results)
    check_claims_outputs(args, results)
    verdicts = claims.check_claims(results)
    text = claims.claims_text(results, verdicts)
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)
    if args.json:
        write_json(args.json, claims.claims_record(results, verdicts))
    return 1 if args.strict and not all(v.passed for v in verdicts) else 0


def _metric_files(plan: Plan, table: str) -> set[str]:
    """The eval files of a table's metric cells (not its train.json or sanity evaluations)."""
    rows = plan.targets[table].rows
    return {m.file for row in rows for m in row.metrics.values() if m.attack is not None}


def one_line(err: BaseException) -> str:
    """An error as the one line the CLI prints for it (an OSError: its reason and file)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.strerror}: '{err.filename}'"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _regenerate_cost(plan: Plan, layout: ScaleLayout) -> tuple[list[Path], str | None, bool]:
    """The cost table again from the committed benchmark files and resources record; the reason it
    cannot be rebuilt otherwise, and whether that is a failure (a run that predates per-job
    benchmarks never had a cost table: not one)."""
    if not (Path(layout.results) / BENCHMARKS_DIR).is_dir():
        return [], f"no {BENCHMARKS_DIR}/ folder: the run predates per-job benchmarks", False
    try:
        return write_cost_table(plan, layout.results, layout.tables), None, False
    except CostError as err:
        return [], one_line(err), True


def _missing_inputs(plan: Plan, name: str, layout: ScaleLayout, scale: str) -> tuple[str | None, bool]:
    """Why target ``name`` cannot be built (None: it can), and whether its table is built with gaps."""
    needed = plan.target_files(name)
    missing = [f for f in needed if not Path(layout.result(f)).exists()]
    # A table whose models were all trained is rebuilt even when a column came later than the
    # run (its cells stay '-' and the table says so).
    is_table = plan.targets[name].kind == "table"
    later_columns = bool(is_table and missing and set(missing) <= _metric_files(plan, name))
    # a figure of analyses draws those computed and names the others in its caption
    some_analyses = (not is_table and missing and len(missing) < len(needed)
                     and set(missing) <= {a.file for a in plan.targets[name].analyses})
    if missing and len(missing) == len(needed):   # the run did not build this target (e.g. `yopo` at mini)
        return f"the run did not build it: none of its {len(needed)} result files exist", False
    if missing and not (later_columns or some_analyses):
        more = f" and {len(missing) - 1} more of its {len(needed)} inputs" if len(missing) > 1 else ""
        return (f"'{layout.result(missing[0])}' is missing{more}; build it with: "
                f"snakemake {name} --config scale={scale}"), False
    return None, later_columns


def _outputs(name: str, layout: ScaleLayout, tables: set[str]) -> list[Path]:
    """Every file regenerate writes for target ``name`` (a table: its formats and training curves)."""
    from ..report.plotting import figure_paths

    if name == "claims":
        return [Path(layout.claims_text), Path(layout.claims_json)]
    if name == COST_TABLE:
        return [Path(p) for p in layout.cost_files()]
    if name in tables:
        return [Path(p) for p in layout.table_files(name)] + figure_paths(layout.figure(curves_name(name)))
    return figure_paths(layout.figure(name))


def remove_stale(names: list[str], layout: ScaleLayout, tables: set[str]) -> list[Path]:
    """Delete the earlier outputs of targets not rebuilt. Deleted rather than renamed (``.stale``):
    a renamed file still sits in the tables and figures folders where globs, reports and ``git add``
    pick it up as a result, while the committed version stays in git history either way."""
    removed = [path for name in names for path in _outputs(name, layout, tables) if path.is_file()]
    for path in removed:
        path.unlink()
    return removed


def _build(plan: Plan, name: str, layout: ScaleLayout, later_columns: bool) -> list[Path]:
    from ..report.curves import write_curves
    from ..report.figures import write_figure   # local: matplotlib, ~1 s that every other freeadv command would pay

    results = Path(layout.results)
    if name == "claims":
        return claims.write_claims(results, layout.claims_text, layout.claims_json)
    if plan.targets[name].kind == "table":
        return (write_table(plan, name, results, layout.tables, allow_missing=later_columns)
                + write_curves(plan, name, results, layout.figure(curves_name(name))))
    return write_figure(plan, name, results, layout.figure(name))


NOT_RUN = "the run did not build it"   # a target none of whose inputs exist: skipped, not a failure


def cmd_regenerate(args: argparse.Namespace) -> int:
    """Every available target of the scale, then the claims (they need table1) and the cost table.
    A target that cannot be built (an input missing or refused) is named on one line, its earlier
    outputs are removed (:func:`remove_stale`) and the command fails: exit 1, or the first refused
    file's one-line error (exit 2). A target the run never built (none of its inputs exist) is
    skipped, saying so, and its outputs are removed too; that alone does not fail."""
    layout = ScaleLayout(args.scale, args.results, args.figures)
    if not Path(layout.plan).exists():
        raise FileNotFoundError(f"no plan at '{layout.plan}': scale '{args.scale}' has no results here")
    plan = load_plan(layout.plan)
    written, not_built, errors = [], {}, []
    available = plan.available_targets()
    targets = available + (["claims"] if "table1" in available else [])
    for name in targets:
        why, later_columns = _missing_inputs(plan, name, layout, args.scale) if name != "claims" else (None, False)
        if name == "claims" and "table1" in not_built:   # a claim without its inputs says INCONCLUSIVE
            why = f"{NOT_RUN}: table1 was not" if not_built["table1"].startswith(NOT_RUN) else "table1 was not built"
        if why is None:
            try:
                written += _build(plan, name, layout, later_columns)
            except (ValueError, OSError) as err:   # a refused or unreadable input (one line, names the file)
                why = one_line(err)
                errors.append(err)
        if why is not None:
            not_built[name] = why
    cost_written, why, failed = _regenerate_cost(plan, layout)
    written += cost_written
    if why and failed:
        not_built[COST_TABLE] = why
    removed = remove_stale(list(not_built), layout, {n for n, t in plan.targets.items() if t.kind == "table"})
    for path in written:
        print(f"[freeadv] {path}")
    skipped = {name: reason for name, reason in not_built.items() if reason.startswith(NOT_RUN)}
    if why and not failed:
        skipped[COST_TABLE] = why
    for name, reason in skipped.items():
        print(f"[freeadv] skipped {name} ({reason})")
    failures = {name: reason for name, reason in not_built.items() if name not in skipped}
    for name, reason in failures.items():
        print(f"[freeadv] not built: {name}: {reason}", file=sys.stderr)
    for path in removed:
        print(f"[freeadv] removed stale {path}", file=sys.stderr)
    print(f"[freeadv] regenerated {len(written)} files of scale '{args.scale}' from {layout.results} (no model loaded)")
    if errors:
        raise errors[0]
    return 1 if failures else 0
