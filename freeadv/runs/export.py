"""Export a finished run for others: the weights as a plain state_dict and a RobustBench model-info JSON.

    from freeadv.runs.export import export_run, load_exported, new_model_issue
    info = export_run("results/mini/runs/<model>", "export/<model>",
                      evals=["results/mini/runs/<model>/evals/pgd20-eps8-step2.json"])
    model = load_exported("export/<model>")     # a fresh registry model with the exported weights
    print(new_model_issue(info))                # RobustBench's "New Model(s)" issue, filled in

The export folder holds exactly three files:

    model.pt           the final weights, a state_dict of tensors (``torch.load(weights_only=True)``)
    <model id>.json    RobustBench's model_info file, its keys only and in its order, named as
                       RobustBench names its files (model_info/<dataset>/Linf/<name>.json):
                       link, name (the title of the paper whose method the run reproduces),
                       authors, additional_data, number_forward_passes, dataset, venue,
                       architecture (RobustBench's name: "WideResNet-34-10"), eps ("8/255"),
                       clean_acc, reported, footnote, autoattack_acc ("86.11" strings)
    model_info.json    the same fields plus ours: threat_model, model_id, commit, weights_digest,
                       evaluation_n, evals and the resolved training config

Accuracies come from ``freeadv attack`` eval JSONs of this run: clean_acc from the one with the
largest n (or, when none is given, a clean pass over the run's test split at export time),
``reported`` from a PGD-20 (1 restart) eval at the training eps, ``autoattack_acc`` from an eval of
kind ``autoattack`` at the training eps; a number no eval gives is null.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch
import yaml
from torch import nn

from .. import config as cfg
from .. import schemas
from ..attacks.spec import num
from ..checkpoints import load_tensors, save_tensors, weights_digest
from ..experiments.layout import PLAN_FILE   # results/<scale>/plan.json: two folders above runs/<model>
from ..experiments.plan import Plan
from ..experiments.robustbench import PAPERS, Paper
from ..io import atomic_write_text, read_json, write_json
from ..training.folder import CONFIG, MODEL, TRAIN_JSON, load_trained_model
from ..training.runtime import model_for
from ..errors import UserError

MODEL_INFO = "model_info.json"
EXPORT_FILES = (MODEL, MODEL_INFO)   # and the RobustBench file, whose name model_info.json records
ROBUSTBENCH_KEYS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                    "architecture", "eps", "clean_acc", "reported", "footnote", "autoattack_acc")
ROBUSTBENCH_ARCHS = {"wrn34_10": "WideResNet-34-10", "wrn32_10": "WideResNet-32-10", "preact_resnet18": "PreActResNet-18",
                     "resnet50": "ResNet-50", "resnet101": "ResNet-101", "resnet152": "ResNet-152"}
THREAT_MODEL = "Linf"
REPORTED_ATTACK = {"kind": "pgd", "steps": 20, "restarts": 1}   # RobustBench's "reported": our PGD-20
AUTOATTACK = "autoattack"


def eps_string(eps: float) -> str:
    """Pixel units as RobustBench writes them: 8.0 -> '8/255', 2.5 -> '2.5/255'."""
    return f"{num(float(eps))}/255"


def accuracy_string(value: float | None) -> str | None:
    """RobustBench's accuracy format: 86.1111 -> '86.11'."""
    return None if value is None else f"{float(value):.2f}"


def architecture(config: dict[str, Any]) -> str:
    """The architecture as RobustBench names it ('WideResNet-34-10', 'PreActResNet-18'); an
    architecture it has no name for keeps the registry's, with its width where set (as in model
    ids): 'small_cnn-w16'."""
    if config["arch"] == "wrn32_k" and config.get("width"):
        return f"WideResNet-32-{config['width']}"
    if config["arch"] in ROBUSTBENCH_ARCHS and not config.get("width"):
        return ROBUSTBENCH_ARCHS[config["arch"]]
    return config["arch"] + (f"-w{config['width']}" if config.get("width") else "")


def paper_of(method: str) -> Paper:
    """The paper whose method a run reproduces, as RobustBench's model_info names it; a method of
    no known paper gets its own name and RobustBench's empty venue ('Unpublished')."""
    return PAPERS.get(method) or Paper(f"{method} (freeadv training method)", "", "", "")


# --- reading the inputs ---------------------------------------------------------------------------

def _run_config(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder '{run_dir}' does not exist")
    if not (run_dir / MODEL).exists():
        raise FileNotFoundError(f"run folder '{run_dir}' has no {MODEL}; train it first (freeadv train --out {run_dir})")
    if not (run_dir / CONFIG).exists():
        raise FileNotFoundError(f"run folder '{run_dir}' has no {CONFIG}; it is not a freeadv run folder")
    return cfg.resolve(yaml.safe_load((run_dir / CONFIG).read_text()))


def _train_summary(run_dir: Path) -> dict[str, Any]:
    """The run's train.json, validated (freeadv.schemas); {} for a run folder without one."""
    if not (run_dir / TRAIN_JSON).is_file():
        return {}
    return schemas.read_checked(run_dir / TRAIN_JSON, "train", label="train file")


def model_id_of(run_dir: Path, config: dict[str, Any]) -> str | None:
    """The workflow's model id of a run at ``results/<scale>/runs/<id>``: the folder name, when the
    scale's plan lists that id with a training config this run has; else None."""
    plan_path = run_dir.resolve().parent.parent / PLAN_FILE
    try:
        planned = Plan.from_json(read_json(plan_path)).config(run_dir.resolve().name)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if all(config.get(key) == value for key, value in planned.items()):
        return run_dir.resolve().name
    return None


def _read_eval(path: Path, run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """An eval JSON of ``freeadv attack`` on this run (its train_config must be the run's config)."""
    if not path.is_file():
        raise FileNotFoundError(f"eval file '{path}' does not exist")
    try:
        ev = schemas.load(path, label="eval file")
    except (OSError, ValueError) as err:   # ValueError: freeadv.schemas.BadFile (not UTF-8, not JSON)
        raise UserError(f"eval file '{path}' is not readable JSON: {str(err).splitlines()[0]}") from None
    if (not isinstance(ev, dict) or not isinstance(ev.get("attack"), dict)
            or not all(key in ev for key in ("clean_acc", "robust_acc", "n"))):
        raise UserError(f"eval file '{path}' is not an eval JSON of freeadv attack "
                         "(needs clean_acc, robust_acc, n and attack)")
    schemas.check(ev, "eval", path, label="eval file")   # accuracies in [0, 100], n >= 1, finite numbers
    if "train_config" in ev:
        same = ev["train_config"] == config
    else:   # no config recorded: only the run path can tell
        same = "run" in ev and Path(str(ev["run"])).resolve() == run_dir.resolve()
    if not same:
        differ = ""
        if isinstance(ev.get("train_config"), dict):
            keys = sorted(k for k in set(ev["train_config"]) | set(config) if ev["train_config"].get(k) != config.get(k))
            differ = f" (its training config differs in {', '.join(keys[:5])})"
        raise UserError(f"eval file '{path}' is not an evaluation of run '{run_dir}': it evaluates "
                         f"'{ev.get('run', 'another run')}'{differ}")
    return ev


def _check_weights(evals: list[tuple[Path, dict[str, Any]]], digest: str) -> None:
    """Refuse an eval computed on other weights than those exported (the run's model.pt, whose
    ``digest`` is given): its numbers would be published for a model they do not describe. An eval
    without a digest (written before evals recorded one) cannot be checked and passes."""
    for path, ev in evals:
        if ev.get("weights_digest") not in (None, digest):
            raise UserError(f"eval file '{path}' was computed on weights {str(ev['weights_digest'])[:12]}, not on "
                             f"the run's {MODEL} ({digest[:12]}); evaluate the exported weights instead")


def _label(path: Path, run_dir: Path) -> str:
    """An eval file as the footnote names it: relative to the run folder when inside it."""
    try:
        return str(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(path)


def _matches(ev: dict[str, Any], eps: float, **want: Any) -> bool:
    attack = ev["attack"]
    return (all(attack.get(key, 1 if key == "restarts" else None) == value for key, value in want.items())
            and attack.get("eps") is not None and float(attack["eps"]) == float(eps))


def _largest(candidates: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]] | None:
    """The eval with the largest n (the first given among equals)."""
    best = None
    for label, ev in candidates:
        if best is None or ev["n"] > best[1]["n"]:
            best = (label, ev)
    return best


def _earlier_robustbench_file(out_dir: Path) -> str | None:
    """The RobustBench file an earlier export in ``out_dir`` wrote (its model_info.json names it)."""
    try:
        name = read_json(out_dir / MODEL_INFO).get("robustbench_file")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and Path(name).name == name else None


def _check_out(out_dir: Path, run_dir: Path) -> None:
    """Refuse an --out that holds anything but an earlier export (never overwrite other files)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out '{out_dir}' is a file, not a folder")
    if out_dir.resolve() == run_dir.resolve():
        raise UserError(f"--out '{out_dir}' is the run folder itself; export into a new folder")
    if out_dir.is_dir():
        ours = {*EXPORT_FILES, _earlier_robustbench_file(out_dir)}
        others = sorted(p.name for p in out_dir.iterdir()
                        if p.name not in ours and not (p.name.startswith(".") and p.name.endswith(".tmp")))
        if others:
            raise UserError(f"--out '{out_dir}' is not empty and holds no freeadv export "
                             f"(it has {', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
                             "choose a new or empty folder")
        if (out_dir / MODEL).exists() and not (out_dir / MODEL_INFO).exists():
            raise UserError(f"--out '{out_dir}' holds a {MODEL} but no {MODEL_INFO}: not a freeadv export; "
                             "choose a new or empty folder")


# --- the export ------------------------------------------------------------------------------------

def _accuracies_used(loaded: list[tuple[str, dict[str, Any]]], eps: float, run_dir: Path, device: str,
                     batch_size: int) -> tuple[dict[str, tuple[str | None, dict[str, Any]] | None], list[str]]:
    """Which eval gives each exported accuracy (the largest n of its kind at the training eps), and
    the footnote's words on where each came from; without any eval, a clean pass measured here."""
    used: dict[str, tuple[str | None, dict[str, Any]] | None] = {
        "clean_acc": _largest(loaded),
        "reported": _largest([(p, e) for p, e in loaded if _matches(e, eps, **REPORTED_ATTACK)]),
        "autoattack_acc": _largest([(p, e) for p, e in loaded if _matches(e, eps, kind=AUTOATTACK)]),
    }
    notes = []
    if used["clean_acc"] is None:   # no eval given: a clean pass over the run's test split, here
        from ..attacks import AttackSpec
        from .evaluation import run_attack
        clean = run_attack(run_dir, AttackSpec("none"), batch_size=batch_size, device=device)
        used["clean_acc"] = (None, clean)
        notes.append(f"clean_acc measured at export on the first {clean['n']} test images")
    words = {"clean_acc": "clean_acc", "reported": f"reported (PGD-20, eps {num(eps)}/255)",
             "autoattack_acc": f"autoattack_acc (AutoAttack, eps {num(eps)}/255)"}
    for field in ("clean_acc", "reported", "autoattack_acc"):
        if used[field] is None:
            notes.append(f"{words[field]}: no eval given")
        elif used[field][0] is not None:
            notes.append(f"{words[field]} from {used[field][0]} (n={used[field][1]['n']})")
    return used, notes


def _commit(summary: dict[str, Any], loaded: list[tuple[str, dict[str, Any]]]) -> str | None:
    """The commit that trained the run (train.json), else the first one an eval records."""
    commit = (summary.get("git") or {}).get("commit")
    if commit in (None, "unknown"):
        commit = next((e["git"]["commit"] for _, e in loaded if isinstance(e.get("git"), dict)
                       and e["git"].get("commit") not in (None, "unknown")), commit)
    return commit


def _model_info(run_dir: Path, config: dict[str, Any], loaded: list[tuple[str, dict[str, Any]]],
                used: dict[str, Any], notes: list[str], digest: str, commit: str | None) -> dict[str, Any]:
    """RobustBench's model_info fields in its order (``name`` is the paper's title, as in its
    files), then ours; the footnote says the model is a reproduction, not the authors' weights."""
    eps, paper, model_id = float(config["eps"]), paper_of(config["method"]), model_id_of(run_dir, config)
    robustbench_file = f"{model_id or run_dir.resolve().name}.json"
    if robustbench_file in EXPORT_FILES:
        raise UserError(f"run folder '{run_dir}' is named like an export file; rename it before exporting")
    number = {field: (used[field][1][field if field == "clean_acc" else "robust_acc"] if used[field] else None)
              for field in used}
    trained = f"Trained with freeadv{f' at commit {commit[:12]}' if commit and commit != 'unknown' else ''}"
    return {
        "link": paper.link, "name": paper.title, "authors": paper.authors,
        "additional_data": False, "number_forward_passes": 1, "dataset": config["dataset"], "venue": paper.venue,
        "architecture": architecture(config), "eps": eps_string(eps),
        "clean_acc": accuracy_string(number["clean_acc"]), "reported": accuracy_string(number["reported"]),
        "footnote": f"{trained} (a reproduction, not the authors' checkpoint); " + "; ".join(notes) + ".",
        "autoattack_acc": accuracy_string(number["autoattack_acc"]),
        # ours
        "threat_model": THREAT_MODEL,
        "model_id": model_id,
        "robustbench_file": robustbench_file,
        "commit": commit,
        "weights_digest": digest,
        "evaluation_n": {field: (used[field][1]["n"] if used[field] else None) for field in used},
        "evals": [{"file": label, "kind": ev["attack"].get("kind"), "steps": ev["attack"].get("steps"),
                   "restarts": ev["attack"].get("restarts", 1), "eps": ev["attack"].get("eps"),
                   "step_size": ev["attack"].get("step_size"), "n": ev["n"],
                   "used_for": [field for field in used if used[field] and used[field][0] == label]}
                  for label, ev in loaded],
        "config": config,
    }


def export_run(run_dir: str | Path, out_dir: str | Path, evals: Iterable[str | Path] = (), *,
               device: str = "auto", batch_size: int = 500) -> dict[str, Any]:
    """Write ``out_dir/model.pt``, the RobustBench file ``out_dir/<model id>.json`` and
    ``out_dir/model_info.json`` for a finished run; returns the info.

    ``evals``: eval JSONs of ``freeadv attack`` on this run. Without any, clean accuracy is measured
    here on the run's test split (its ``n_test``) with :func:`freeadv.runs.run_attack`.
    Everything is checked before anything is written.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config = _run_config(run_dir)
    _check_out(out_dir, run_dir)
    paths = [Path(p) for p in evals]
    loaded = [(_label(p, run_dir), _read_eval(p, run_dir, config)) for p in paths]
    model, _ = load_trained_model(run_dir, "cpu")   # weights_only load into the registry model
    digest = weights_digest(model.state_dict())
    _check_weights([(p, ev) for p, (_, ev) in zip(paths, loaded)], digest)
    used, notes = _accuracies_used(loaded, float(config["eps"]), run_dir, device, batch_size)
    info = _model_info(run_dir, config, loaded, used, notes, digest, _commit(_train_summary(run_dir), loaded))

    earlier = _earlier_robustbench_file(out_dir) if out_dir.is_dir() else None
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_tensors(out_dir / MODEL, state)       # weights first: model_info.json marks a complete export
    robustbench = {key: info[key] for key in ROBUSTBENCH_KEYS}   # in RobustBench's order, as its files are
    atomic_write_text(out_dir / info["robustbench_file"], json.dumps(robustbench, indent=2) + "\n")
    if earlier and earlier != info["robustbench_file"]:
        (out_dir / earlier).unlink(missing_ok=True)
    write_json(out_dir / MODEL_INFO, info)
    return info


def new_model_issue(info: dict[str, Any]) -> str:
    """The text of RobustBench's "New Model(s)" issue (its .github/ISSUE_TEMPLATE/new-model.md),
    filled in from an export's info: what a submission to its leaderboard asks for. The checkboxes
    stay unticked and the checkpoint URL is left to the submitter, who alone can decide them."""
    model = info["robustbench_file"].removesuffix(".json")
    n = info["evaluation_n"].get("autoattack_acc")
    robust = info["autoattack_acc"] or "(no AutoAttack eval exported)"
    method = f"AutoAttack (standard version) on the first {n} test images" if n else "(none exported)"
    return "\n".join([
        f"[New Model] {model}", "",
        "# Paper Information", "",
        f"- **Paper Title**: {info['name']}", f"- **Paper URL**: {info['link']}",
        f"- **Paper authors**: {info['authors']}", "",
        "# Leaderboard Claim(s)", "",
        "## Model 1", "",
        f"- **Architecture**: {info['architecture']}", f"- **Threat Model**: {info['threat_model']}",
        f"- **eps**: {info['eps']}", f"- **Clean accuracy**: {info['clean_acc']}",
        f"- **Robust accuracy**: {robust}", f"- **Additional data**: {str(info['additional_data']).lower()}",
        f"- **Evaluation method**: {method}; {info['footnote']}",
        f"- **Checkpoint and code**: (URL of {MODEL}); freeadv at commit {info['commit']}", "",
        "# Model Zoo:", "",
        "- [ ] I want to add my models to the Model Zoo (check if true)",
        "- [ ] I use an architecture that is included among those of robustbench/model_zoo/architectures or in "
        "`timm`. If not, I added the link to the architecture implementation so that it can be added.",
        "- [ ] I agree to release my model(s) under MIT license (check if true) **OR** under a custom license, "
        "located here: (URL)",
    ])


def load_exported(export_dir: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A fresh registry model (arch, width, dataset from model_info.json's config) holding the
    exported weights, loaded with ``weights_only=True``; in eval mode on ``device``."""
    export_dir = Path(export_dir)
    for name in EXPORT_FILES:
        if not (export_dir / name).exists():
            raise FileNotFoundError(f"export folder '{export_dir}' has no {name}; run freeadv export --out {export_dir}")
    try:
        config = read_json(export_dir / MODEL_INFO)["config"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"'{export_dir / MODEL_INFO}' is not a freeadv model info (no config)") from None
    model = model_for(cfg.resolve(config))
    model.load_state_dict(load_tensors(export_dir / MODEL))
    return model.to(device).eval()
