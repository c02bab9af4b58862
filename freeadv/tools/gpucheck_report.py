"""The ``.md`` summary of a ``freeadv gpucheck`` result: one table of the four parts, then each
part's numbers and every failure. It reads only the result's JSON form, so a committed
``results/gpu/*/<device>.json`` renders the same way as a fresh result."""
from __future__ import annotations

from typing import Any

PART_TITLES = (("tests", "1 device tests"), ("bench", "2 bench"), ("train", "3 training + PGD-20"),
               ("estimate", "4 estimate"))


def _fmt(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _percent(value: float | None) -> str:
    return _fmt(value and 100 * value, ".1f", "%")


def is_skipped(part: dict[str, Any]) -> bool:
    """A part that did not run, for a reason that is no failure (the estimate without a workflow
    config). The tests part's ``skipped`` is a count of skipped tests, hence a field of its own."""
    return part.get("status") == "skipped"


def part_status(part: dict[str, Any]) -> str:
    """PASS, FAIL or SKIP: a skipped part (``status`` "skipped", its ``reason``) does not fail the check."""
    if is_skipped(part):
        return "SKIP"
    return "PASS" if part["ok"] else "FAIL"


def _part_summary(name: str, part: dict[str, Any]) -> str:
    if is_skipped(part):
        return f"skipped: {part['reason']}"
    if not part["ok"] and "error" in part and name != "tests":
        return part["error"]
    if name == "tests":
        return (f"{part.get('passed', 0)} passed, {part.get('failed', 0)} failed, {part.get('skipped', 0)} skipped"
                + (f"; {part['error']}" if not part["ok"] else ""))
    if name == "bench":
        return f"{len(part['configs'])} configurations, {len(part['skipped'])} skipped for time"
    if name == "train":
        return (f"{part['iterations']} iterations, clean {part['clean_acc']:.1f}%, "
                f"PGD-20 {part['robust_acc']:.1f}% (n={part['eval_n']})")
    return f"table1 at paper scale: {part['total']}"


def _header(result: dict[str, Any]) -> list[str]:
    device, git = result["device"], result["git"]
    lines = [f"# freeadv gpucheck: {device['name']}{' (quick)' if result['quick'] else ''}", "",
             f"{'PASS' if result['ok'] else 'FAIL'} in {result['wall_seconds'] / 60:.1f} min. Commit "
             f"{str(git['commit'])[:12]}{' (dirty)' if git['dirty'] else ''}, torch {result['versions']['torch']}"
             f"{', CUDA ' + str(device['cuda']) if device.get('cuda') else ''}, host {device['host']}.", "",
             "| part | result | seconds | summary |", "|---|---|---|---|"]
    for name, title in PART_TITLES:
        part = result["parts"][name]
        lines.append(f"| {title} | {part_status(part)} | {part['seconds']:.0f} | {_part_summary(name, part)} |")
    return lines


def _bench_lines(bench: dict[str, Any]) -> list[str]:
    if not bench.get("configs"):
        return []
    lines = ["", f"## Bench (batch {bench['batch']}; median step time; MFU against the dense datasheet peak)", "",
             "| model | arch | precision | compile | ms/iter (natural) | images/s | Free m=8 / natural | "
             "7-PGD / natural | TFLOP/s | MFU natural | MFU Free | MFU 7-PGD |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in bench["configs"]:
        lines.append(f"| {c['stands_for']} | {c['arch']}{' w' + str(c['width']) if c['width'] else ''} | "
                     f"{c['precision']} | {'yes' if c['compile'] else 'no'} | {c['ms_per_iter']:.1f} | "
                     f"{c['images_per_s']:.0f} | {c['free_over_natural']:.2f} | {c['pgd7_over_natural']:.2f} | "
                     f"{c['tflop_per_s']:.3g} | {_percent(c['mfu'])} | {_percent(c['mfu_free'])} | "
                     f"{_percent(c['mfu_pgd7'])} |")
    peak = bench["configs"][0]["peak"]
    if peak["tflops"] is None:
        lines += ["", f"MFU: {peak['reason']}."]
    for s in bench["skipped"]:
        lines.append(f"\nSkipped: {s['arch']} amp={s['amp']} compiled: {s['reason']}.")
    return lines


def _train_lines(train: dict[str, Any]) -> list[str]:
    if not train["ok"]:
        return []
    return ["", "## Training and PGD-20", "",
            f"{train['model']} {train['method']} m={train['replay']} on {train['dataset']}, batch "
            f"{train['batch_size']}, fp32: {train['iterations']} iterations ({train['passes']:.2f} passes) in "
            f"{train['train_seconds']:.0f} s, {train['train_images_per_s']:.0f} images/s, final loss "
            f"{train['final_loss']:.3f}. {train['attack']} on the first {train['eval_n']} test images: clean "
            f"{train['clean_acc']:.2f}%, robust {train['robust_acc']:.2f}%, {train['eval_images_per_s']:.0f} "
            f"images/s."]


def _estimate_lines(est: dict[str, Any]) -> list[str]:
    if is_skipped(est):
        return ["", "## Estimate", "", f"Skipped: {est['reason']}."]
    if not est["ok"]:
        return []
    stand_in = (f" (step costs of a stand-in, {est['stand_in']['arch']} width {est['stand_in']['width']})"
                if est["stand_in"] else "")
    config = f" Workflow config: `{est['workflow_config']}`." if est.get("workflow_config") else ""
    return ["", "## Estimate", "",
            f"`table1` at paper scale on this device, one job at a time: **{est['total']}**{stand_in}; "
            f"{len(est['jobs'])} jobs.{config}"]


def _failure_lines(parts: dict[str, dict[str, Any]]) -> list[str]:
    failed = [(name, part) for name, part in parts.items() if not part["ok"]]
    if not failed:
        return []
    lines = ["", "## Failures", ""]
    for name, part in failed:
        lines.append(f"- {name}: {part.get('error', 'failed')}")
        for test_id in part.get("failing", []):
            message = part.get("failure_messages", {}).get(test_id, "").splitlines()
            lines.append(f"  - {test_id}" + (f": {message[0]}" if message else ""))
    return lines


def format_markdown(result: dict[str, Any]) -> str:
    parts = result["parts"]
    lines = (_header(result) + _bench_lines(parts["bench"]) + _train_lines(parts["train"])
             + _estimate_lines(parts["estimate"]) + _failure_lines(parts))
    return "\n".join(lines) + "\n"
