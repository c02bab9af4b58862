"""Evaluate any model, not only a run folder's: a module the user built, or a factory named as
``PKG.MODULE:FACTORY`` (or ``FILE.py:FACTORY``) with an optional state_dict file.

The model takes [0, 1] images and returns logits: the attacks perturb pixels, so a model that
expects normalised inputs carries its normalisation as its first layer (``freeadv.models.Normalize``,
as every model freeadv trains does). The eval JSON is the one ``freeadv attack --run`` writes, with
the model's name, weights file and dataset in place of the run folder and its config.

    import freeadv
    records = freeadv.evaluate(my_model, dataset="cifar10", attacks=["pgd20", "autoattack"], n=1000,
                               out_dir="evals")   # evals/pgd20-eps8-step2-n1000.json, ...
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .. import config as cfg
from ..attacks import ATTACKS, AttackError, AttackSpec
from ..attacks.spec import for_model
from ..checkpoints import load_tensors
from ..data import DATASETS, load_data
from ..errors import UserError
from ..io import check_output_file
from ..perturb import eval_mode
from .eval_device import AUTO, check_batch_size
from .evaluation import measure, state_file, write_eval
from .opening import open_device

SHORT_NAME = re.compile(r"^(?P<kind>.+?)(?P<steps>\d*)$")   # 'pgd20', 'autoattack': a kind and its steps


class ModelError(UserError):
    """A model named or given for evaluation that cannot be built, loaded or attacked: one line
    naming the value (the option, the module, the file) and what is wrong with it."""


def load_factory(source: str, flag: str = "--model") -> Callable[[], Any]:
    """The callable ``source`` names: ``PKG.MODULE:FACTORY`` (a module on sys.path) or
    ``FILE.py:FACTORY`` (a file, imported under its stem); FACTORY may be dotted (``Class.build``)."""
    module_name, _, attribute = source.rpartition(":")
    if not module_name or not attribute:
        raise ModelError(f"{flag} '{source}' is not PKG.MODULE:FACTORY (or FILE.py:FACTORY)")
    module = _import(module_name, source, flag)
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ModelError(f"{flag} '{source}': module '{module_name}' has no attribute '{attribute}'")
        found = getattr(found, part)
    if not callable(found):
        raise ModelError(f"{flag} '{source}': '{attribute}' is an object of type {type(found).__name__}, not a "
                         "callable that returns a model")
    return found


def _import(module_name: str, source: str, flag: str):
    """The module of ``source``; an ImportError (its name, or a package it imports) is a bad value
    told in one line, an error inside the module's own code keeps its traceback: it is the
    module's bug, not the option's."""
    path = Path(module_name)
    if module_name.endswith(".py") and not path.is_file():
        raise ModelError(f"{flag} '{source}': file '{path}' does not exist")
    try:
        if not module_name.endswith(".py"):
            return importlib.import_module(module_name)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, module)   # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
        return module
    except ImportError as err:
        hint = "" if module_name.endswith(".py") else " (a module on sys.path: set PYTHONPATH, or name its FILE.py)"
        raise ModelError(f"{flag} '{source}': module '{module_name}' cannot be imported: {err}{hint}") from None


ROBUSTBENCH = "robustbench:"   # a source naming a RobustBench model: robustbench:Shafahi2019Adversarial
ROBUSTBENCH_DIR = "models/robustbench"   # where RobustBench's loader keeps the checkpoints it downloads


def robustbench_model(name: str, dataset: str, model_dir: str | Path = ROBUSTBENCH_DIR) -> nn.Module:
    """RobustBench's model ``name`` (L-inf) for ``dataset``'s family, through the robustbench package,
    which downloads its checkpoint on first use. Its models take [0, 1] images, as freeadv's do."""
    family = DATASETS.pick(dataset, "--dataset").paper_family
    if family is None:
        raise ModelError(f"--robustbench '{name}': RobustBench's models are of cifar10, cifar100 or imagenet, "
                         f"and --dataset '{dataset}' is none of them")
    try:
        from robustbench.utils import load_model as load_robustbench
    except ImportError:
        raise ModelError(f"--robustbench '{name}' needs the robustbench package (pip install robustbench; it "
                         "downloads the checkpoint, so it needs the network once)") from None
    try:
        model = load_robustbench(model_name=name, dataset=family, threat_model="Linf", model_dir=str(model_dir))
    except Exception as err:   # the package's own errors: unknown name, no network, a bad download
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"--robustbench '{name}' ({family}, Linf) cannot be loaded: {why}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"--robustbench '{name}' gave an object of type {type(model).__name__}, not a torch.nn.Module")
    return model


def load_model(source: str, weights: str | Path | None = None, *, flag: str = "--model",
               weights_flag: str = "--weights", dataset: str = "cifar10") -> nn.Module:
    """The module ``source``'s factory returns (``robustbench:NAME``: RobustBench's model for
    ``dataset``), with the state_dict in ``weights`` (a file, loaded ``weights_only``) when
    given; each problem is one line naming the option's value."""
    if source.startswith(ROBUSTBENCH):
        made = robustbench_model(source[len(ROBUSTBENCH):], dataset)
    else:
        made = load_factory(source, flag)()
    if not isinstance(made, nn.Module):
        raise ModelError(f"{flag} '{source}' returned an object of type {type(made).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights(made, weights, f"{weights_flag} '{weights}'", f"the model of {flag} '{source}'")
    return made


def load_weights(model: nn.Module, path: str | Path, label: str, model_label: str) -> None:
    """Load the state_dict file ``path`` into ``model``, refusing, in one line, a file that is not
    there, not a state_dict, or whose names or shapes differ from the model's."""
    if not Path(path).is_file():
        raise ModelError(f"{label} does not exist" if not Path(path).exists() else f"{label} is not a file")
    state = load_tensors(path)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelError(f"{label} is not a state_dict (a dict of tensors): save model.state_dict()")
    expected = model.state_dict()
    problems = [f"{what} {_names(names)}" for what, names in (
        ("missing", [k for k in expected if k not in state]),
        ("unexpected", [k for k in state if k not in expected]),
        ("other shape", [k for k in expected if k in state and state[k].shape != expected[k].shape]))
        if names]
    if problems:
        raise ModelError(f"{label} does not fit {model_label}: {'; '.join(problems)}")
    model.load_state_dict(state)


def _names(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(f"'{n}'" for n in names[:shown]) + more


def model_name(model: nn.Module | str) -> str:
    """What an eval JSON calls the model: its ``MODULE:FACTORY``, else its class's full name."""
    return model if isinstance(model, str) else f"{type(model).__module__}.{type(model).__qualname__}"


def dataset_default(dataset: str, key: str) -> Any:
    """A config key's default for ``dataset`` (its schedule's value, else the library's): the
    eps and data root a model of that dataset is evaluated with when none is given."""
    return DATASETS[dataset].train_defaults.get(key, cfg.KEYS[key].default)


def for_dataset(spec: AttackSpec, dataset: str, eps: float | None = None) -> AttackSpec:
    """``spec`` with ``eps`` (None: the dataset's default) and the dataset's paper step where it
    has none of its own: how a model that no run describes is attacked."""
    eps = dataset_default(dataset, "eps") if eps is None else eps
    return for_model(spec, {"eps": eps, "dataset": dataset})


def attack_spec(name: str | AttackSpec) -> AttackSpec:
    """An attack of the Python API: an AttackSpec, an id (``pgd20-eps8-step2``, ``autoattack100-eps8``,
    ``clean``) or a short name, KIND[STEPS], meaning what ``freeadv attack --attack KIND [--steps
    STEPS]`` runs: ``pgd20``, ``cw100``, ``autoattack`` (its 100 iterations), ``apgd``, ``noise``.
    eps and step are left unset for the model's dataset to fill (:func:`freeadv.attacks.spec.for_model`)."""
    if isinstance(name, AttackSpec):
        return name
    try:
        return AttackSpec.parse(name)
    except AttackError as err:
        short = SHORT_NAME.match(name)
        if not short or short["kind"] not in ATTACKS:
            raise AttackError(f"{err}; or a short name, KIND[STEPS] (pgd20, autoattack), of a kind of: "
                              f"{', '.join(ATTACKS)}") from None
        kind = ATTACKS[short["kind"]]
        return AttackSpec(short["kind"], int(short["steps"]) if short["steps"] else kind.default_steps)


def check_logits(model: nn.Module, data, label: str, device: torch.device) -> None:
    """One forward pass on two test images before the attack: a model of another input size or
    class count fails here, in one line, rather than in the middle of the evaluation."""
    x, _ = next(iter(data.test_batches(2, device=device)))
    shape = tuple(x.shape[1:])
    try:
        with eval_mode(model), torch.no_grad():
            logits = model(x)
    except (RuntimeError, ValueError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"{label} fails on {data.name}'s {shape} images: {first}") from None
    if not torch.is_tensor(logits) or tuple(logits.shape) != (len(x), data.num_classes):
        got = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ModelError(f"{label} returns {got} for {len(x)} of {data.name}'s {shape} images, not logits "
                         f"of shape ({len(x)}, {data.num_classes})")


def first_test_images(dataset: str, data_root: str | Path | None, n: int | None):
    """The first ``n`` test images of ``dataset`` (None: all) in their fixed order, from
    ``data_root`` (None: the folder a run of that dataset reads)."""
    root = dataset_default(dataset, "data_root") if data_root is None else data_root
    return load_data(dataset, root, n_test=n, augment=False)


def attack_model(model: nn.Module, spec: AttackSpec, data, *, name: str, weights: str | Path | None,
                 device: torch.device, batch_size: int | str = AUTO, seed: int = 0, progress: bool = False,
                 state_path: str | Path | None = None) -> dict:
    """The eval JSON of ``model`` (on ``device``) under ``spec`` (eps and step bound) on ``data``'s
    test subset: what :func:`freeadv.runs.run_attack` records of a run, with the model's name,
    weights file and dataset in place of the run's. The model is checked first (:func:`check_logits`)."""
    check_logits(model, data, f"model {name}", device)
    measured = measure(model, data, spec, batch_size=batch_size, seed=seed, device=device, progress=progress,
                       state_path=state_path)
    return {**measured, "model": name, "weights_file": None if weights is None else str(weights),
            "dataset": data.name}


def given_model(model: nn.Module | str, weights: str | Path | None, dataset: str = "cifar10") -> nn.Module:
    """The Python API's ``model`` (a module, a factory named ``PKG.MODULE:FACTORY``, or
    ``robustbench:NAME``) with ``weights`` loaded into it when given."""
    if isinstance(model, str):
        return load_model(model, weights, flag="model", weights_flag="weights", dataset=dataset)
    if not isinstance(model, nn.Module):
        raise ModelError(f"model is a {type(model).__name__}, not a torch.nn.Module (or 'PKG.MODULE:FACTORY')")
    if weights is not None:
        load_weights(model, weights, f"weights '{weights}'", f"the {model_name(model)}")
    return model


def evaluate_model(model: nn.Module | str, dataset: str = "cifar10",
                   attacks: Sequence[str | AttackSpec] = ("pgd20", "autoattack"), n: int | None = 1000,
                   out_dir: str | Path | None = None, *, data_root: str | Path | None = None,
                   device: str = "auto", weights: str | Path | None = None, eps: float | None = None,
                   batch_size: int | str = AUTO, seed: int = 0, progress: bool = False) -> list[dict]:
    """Clean and robust accuracy of any model under each of ``attacks`` on the first ``n`` test
    images of ``dataset`` (None: all), as ``freeadv attack`` measures a trained run.

    ``model``: an nn.Module taking [0, 1] images (moved to ``device``), or ``"PKG.MODULE:FACTORY"``;
    ``weights``: a state_dict file loaded into it. ``attacks``: ids or short names
    (:func:`attack_spec`), at ``eps`` (None: the dataset's default, 8; ImageNet 4) with the
    paper's step for the dataset. ``batch_size``: an integer or ``auto`` (freeadv.runs.eval_device).
    Returns the eval records in the order of ``attacks``; with
    ``out_dir``, each is also written to ``out_dir/<attack id>.json`` (checked to be writable
    before any attack runs), where AutoAttack also keeps its progress and resumes from it.
    """
    specs = [attack_spec(a) for a in ([attacks] if isinstance(attacks, (str, AttackSpec)) else attacks)]
    DATASETS.pick(dataset, "dataset")
    check_batch_size(batch_size, "batch_size")
    specs = [for_dataset(replace(s, n=s.n or n), dataset, eps) for s in specs]
    outs = [None if out_dir is None else check_output_file(Path(out_dir) / f"{s.id}.json", flag="out_dir")
            for s in specs]
    name, dev = model_name(model), open_device(device)
    model = given_model(model, weights, dataset).to(dev)
    records, loaded = [], {}
    for spec, out in zip(specs, outs):
        if spec.n not in loaded:
            loaded[spec.n] = first_test_images(dataset, data_root, spec.n)
        state = None if out is None or not spec.attack.whole_set else state_file(out)
        record = attack_model(model, spec, loaded[spec.n], name=name, weights=weights, device=dev,
                              batch_size=batch_size, seed=seed, progress=progress, state_path=state)
        if out is not None:
            write_eval(out, record, state)
        records.append(record)
    return records


evaluate = evaluate_model   # freeadv.evaluate: the package's one entry point for any model
