"""The bridge experiment's comparison and summary: Free m=8 minus 7-PGD accuracy, paired image by
image, and the ``bridge.md`` that heads every call's files. It reads stage records only (their
JSON form), so an earlier call's records and this call's pair and render alike."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .. import stats
from ..io import atomic_write_text, write_json
from .bridge_plan import ATTACK_TITLES, STAGE_NAMES

COMPARISON_CONFIDENCE = 0.90


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """acc(a) - acc(b), clean and robust, from two evals' per-image records of the same images."""
    if (a["first"], a["n"]) != (b["first"], b["n"]):
        raise ValueError(f"the evals cover different images ({a['first']}+{a['n']} and {b['first']}+{b['n']})")
    result: dict[str, Any] = {"n": a["n"]}
    for which in ("clean", "robust"):
        interval = stats.paired_difference(stats.unpack_flags(a[which], a["n"]),
                                           stats.unpack_flags(b[which], b["n"]), COMPARISON_CONFIDENCE)
        result[which] = {**dataclasses.asdict(interval), "text": interval.text()}
    return result


def comparisons(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Free m=8 minus 7-PGD for each attack that both models finished."""
    out = {}
    for attack in ATTACK_TITLES:
        a, b = records.get(f"{attack}-free", {}), records.get(f"{attack}-pgd7", {})
        if a.get("status") == "done" and b.get("status") == "done":
            out[attack] = paired(a["eval"]["per_image"], b["eval"]["per_image"])
    return out


def _cell(record: dict[str, Any], key: str, spec: str) -> str:
    value = record.get(key)
    return "-" if value is None else f"{value:{spec}}"


def _stage_rows(stages: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| stage | status | seconds | iterations | passes | train img/s | clean % | robust % | n |",
            "|---|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(STAGE_NAMES)}   # an earlier call's records come first in the dict
    for record in sorted(stages.values(), key=lambda r: order.get(r.get("stage"), len(order))):
        status = record["status"] + (" (earlier call)" if "prior" in record else "")
        rows.append(f"| {record['title']} | {status} | {record['seconds']:.0f} | "
                    f"{_cell(record, 'iterations', 'd')} | {_cell(record, 'passes', '.2f')} | "
                    f"{_cell(record, 'train_images_per_s', '.0f')} | {_cell(record, 'clean_acc', '.2f')} | "
                    f"{_cell(record, 'robust_acc', '.2f')} | {_cell(record, 'n', 'd')} |")
    return rows


def _comparison_lines(result: dict[str, Any]) -> list[str]:
    lines = ["", "## Free m=8 minus 7-PGD, in percentage points (the same test images: paired interval)", ""]
    for attack, title in ATTACK_TITLES.items():
        found = result.get("comparisons", {}).get(attack)
        if found is None:
            lines.append(f"- {title}: not available (both models' {attack} stages must finish)")
        else:
            lines.append(f"- {title} on {found['n']} test images, robust accuracy: **{found['robust']['text']}**; "
                         f"clean accuracy: {found['clean']['text']}")
    return lines


def format_markdown(result: dict[str, Any]) -> str:
    plan, stages, git = result["plan"], result["stages"], result["git"]
    state = "finished" if result["finished"] else "in progress (or cut short)"
    lines = [f"# freeadv gpucheck --experiment {result['experiment']}: {result['device']['name']}"
             f"{' (quick)' if result['quick'] else ''}", "",
             f"{state}: {result.get('elapsed_seconds', 0):.0f} s of the {result['budget_seconds']:.0f} s budget. "
             f"Commit {str(git['commit'])[:12]}{' (dirty)' if git['dirty'] else ''}, torch "
             f"{result['versions']['torch']}.", "",
             f"{plan['model']['arch']}{' width ' + str(plan['model']['width']) if plan['model']['width'] else ''} on "
             f"{plan['data']['n_train']} {plan['data']['dataset']} training images (data_seed "
             f"{plan['data']['data_seed']}), {plan['iterations']} iterations of batch {plan['batch_size']} for "
             f"each method, amp {plan['amp']}, compile {'on' if plan['compile'] else 'off'}; eps 8.", ""]
    lines += _stage_rows(stages)
    lines += _comparison_lines(result)
    unfinished = [r for r in stages.values() if r["status"] != "done"]
    if unfinished:
        lines += ["", "## Skipped and failed", ""]
        lines += [f"- {r['title']}: {r['status']}: {r.get('reason') or r.get('error')}" for r in unfinished]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, result: dict[str, Any]) -> None:
    name = result["experiment"]
    write_json(out_dir / f"{name}.json", result)
    atomic_write_text(out_dir / f"{name}.md", format_markdown(result))
