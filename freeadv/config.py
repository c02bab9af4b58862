"""Training configuration: the paper's hyperparameters in one commented place, plus validation.

A run is fully described by one flat dict (the *resolved config*). It is built from, in order:
the defaults below, the dataset's defaults (the ``train_defaults`` of its DatasetSpec in
freeadv.data.catalog: the paper's schedules of section 5 and 7), the per-method defaults, a YAML file, then
``--set key=value`` overrides. The resolved dict is saved next to every output so a number can be
traced back to exactly what produced it.

Perturbation sizes (``eps``, step sizes) are written in 0-255 pixel units, as the paper writes
them: ``eps: 8`` means 8/255 in the [0, 1] pixel space the models see.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from .data import DATASETS
from .data.custom import register_custom
from .io import atomic_write_text
from .keys import (AMP, AUTO_OR_BOOL, BOOL, DEVICE, FRACTION, FRACTIONS, INT_NONNEG, INT_NONNEG_OR_NULL, INT_POS,
                   INT_POS_OR_NULL, MAPPING_OR_NULL, MOMENTUM, NAME, NUMBER_NONNEG, NUMBER_POS, PATH, PIXELS, SEED,
                   ConfigError, Key, bad_value, choice)
from .methods import METHODS, default_replay, get_method, method_keys


# --- The keys every run has: each declared once, with its default, its kind and what it means --
# (each registered training method declares its own keys the same way, on its class in
# freeadv/methods/; a dataset's schedule overrides defaults in its record, freeadv.data.DATASETS)
KEYS: dict[str, Key] = {
    # data
    "dataset": Key("cifar10", NAME, "a registered dataset (freeadv.data.DATASETS): cifar10, cifar100, "
                                      "cifar10-jpeg, ..."),
    "data_root": Key("data", PATH, "folder holding the dataset files (or the cifar10-jpeg archive)"),
    "dataset_spec": Key(None, MAPPING_OR_NULL, "a dataset of your own: {format: imagefolder | tensors, num_classes, "
                                               "input_size, mean, std} (freeadv.data.custom); null: a registered one"),
    "download": Key(False, BOOL, "let torchvision download CIFAR when missing"),
    "n_train": Key(None, INT_POS_OR_NULL, "deterministic subset of the training split (None = all)"),
    "n_test": Key(None, INT_POS_OR_NULL, "first N of the test split in its fixed order (None = all)"),
    "data_seed": Key(0, SEED, "picks the n_train subset; independent of the training seed"),
    "augment": Key(True, BOOL, "CIFAR: 2-pixel pad + random 32 crop + flip; ImageNet: RRC(224) + flip"),
    "num_workers": Key(4, INT_NONNEG, "ImageNet DataLoader workers"),
    # model
    "arch": Key("wrn32_10", NAME, "a registered model (freeadv.models.MODELS)"),
    "width": Key(None, INT_POS_OR_NULL, "small_cnn's width, wrn32_k's factor k (null: the builder's default)"),
    # method (Algorithm 1 and baselines)
    "method": Key("free", NAME, "a name in freeadv.methods.METHODS (freeadv train --help lists them)"),
    "replay": Key(None, INT_POS_OR_NULL, "m: minibatch replays (free, natural); None = the method's default "
                                       "(free 8, natural 1)"),
    "eps": Key(8.0, PIXELS, "perturbation bound, pixel units /255 (also the default attack eps)"),
    # optimisation: SGD + momentum, schedule counted in iterations (freeadv.training.schedule)
    "batch_size": Key(128, INT_POS, "minibatch size"),
    "iterations": Key(80000, INT_POS_OR_NULL, "total parameter updates (CIFAR: 80k); None = derive from epochs"),
    "epochs": Key(None, INT_POS_OR_NULL, "natural-training epoch budget (ImageNet: 90); free runs ceil(epochs/m) "
                                       "passes"),
    "lr": Key(0.1, NUMBER_POS, "the learning rate"),
    "lr_milestones": Key([0.5, 0.75], FRACTIONS, "fractions of the iterations (CIFAR: 40k and 60k of 80k)"),
    "lr_step_epochs": Key(None, INT_POS_OR_NULL, "ImageNet: decay every ceil(lr_step_epochs/m) passes (overrides "
                                               "lr_milestones)"),
    "lr_gamma": Key(0.1, FRACTION, "the step schedule's factor at each milestone"),
    "lr_schedule": Key("step", choice("step", "cyclic"), "step: the milestones above | cyclic: 0 -> lr -> 0, "
                                                         "linear, peak at half the iterations (Wong et al. 2020; "
                                                         "lr_milestones, lr_step_epochs unused)"),
    "momentum": Key(0.9, MOMENTUM, "SGD momentum"),
    "weight_decay": Key(2e-4, NUMBER_NONNEG, "SGD weight decay"),
    "weight_decay_all": Key(False, BOOL, "true: decay every parameter (Wong et al.'s and the official "
                                           "ImageNet code)"),
    # execution
    "seed": Key(0, SEED, "the training seed: initialisation, data order, random starts"),
    "device": Key("auto", DEVICE, "auto | cpu | cuda | cuda:N"),
    "amp": Key("off", AMP, "off: fp32, as the authors trained | bf16: bf16 autocast (training only; attacks "
                             "always run in fp32) | fp16: fp16 autocast with a GradScaler (training only) | "
                             "auto: bf16 on CUDA, fp32 on CPU (older runs)"),
    "channels_last": Key("auto", AUTO_OR_BOOL, "auto (= true) | true | false"),
    "compile": Key(False, BOOL, "torch.compile the model"),
    "compile_mode": Key("default", choice("default", "reduce-overhead", "max-autotune"),
                        "torch.compile's mode when compile is true (reduce-overhead: CUDA graphs)"),
    "sgd_impl": Key("auto", choice("auto", "foreach", "fused"),
                    "SGD's implementation: auto = fused on CUDA, foreach elsewhere (on the CPU the same "
                    "weights as torch's per-parameter loop; freeadv.training.runtime.sgd_flags)"),
    "log_every": Key(100, INT_POS, "iterations between loss reads (the only host syncs in the loop)"),
    "logger": Key("none", choice("none", "tensorboard"), "none: log.jsonl only | tensorboard: also its records as "
                                                         "TensorBoard scalars in <run>/tensorboard/ (needs the "
                                                         "tensorboard package: freeadv[tracking])"),
    "checkpoint_every": Key(1000, INT_POS, "iterations between resumable checkpoints"),
    "eval_n": Key(500, INT_POS_OR_NULL, "images of the end-of-pass clean accuracy in the log (null = skip): the "
                                      "first eval_n test images, or of the validation images (at most all of "
                                      "them) when the checks attack those"),
    # robust accuracy during training (freeadv.training.robust): PGD-K, the run's eps, the paper's step
    "robust_eval_n": Key(512, INT_NONNEG_OR_NULL, "images per check (null or 0 = no checks)"),
    "robust_eval_every": Key(None, INT_POS_OR_NULL, "the checks' cadence: iterations between checks; null = at "
                                                  "the end of every pass"),
    "robust_eval_steps": Key(10, INT_POS, "K of the check's PGD"),
    "robust_eval_source": Key("validation", choice("validation", "test", "first_train_batch"),
                              "what the checks attack. validation: the first robust_eval_n validation images "
                              "(training images the run does not train on); the pass-end clean accuracy "
                              "(eval_n) reads them too. test: the first robust_eval_n test images ('heldout' "
                              "is read as test); monitoring only: early_stop and keep_best refuse it. "
                              "first_train_batch: Wong et al.: each pass's first training batch, at its start"),
    "validation_n": Key(None, INT_POS_OR_NULL, "validation images (source validation); null = robust_eval_n. "
                                             "Drawn by data_seed from the training images n_train leaves unused; "
                                             "with n_train null they are held out of the whole split, so the run "
                                             "trains on (split - validation_n) images: 49,488 of CIFAR's 50,000 "
                                             "by default"),
    "early_stop": Key(False, BOOL, "stop at catastrophic overfitting, keeping the last check's weights before "
                                     "it"),
    "keep_best": Key(False, BOOL, "also write model_best.pt: the weights of the check with the highest "
                                    "robust accuracy (the earlier on a tie; robust_eval_source validation); "
                                    "model.pt stays the final weights, the paper's protocol"),
}
# The shared keys' defaults as a dict, for the callers that read them so; defaults() adds the methods' keys.
DEFAULTS: dict[str, Any] = {key: declared.default for key, declared in KEYS.items()}
SOURCE_ALIASES = {"heldout": "test"}   # the test-image check's older name, in the configs of earlier runs


def _type_name(value: Any) -> str:
    return type(value).__name__


MAX_CONFIG_BYTES = 1 << 20   # config/config.yaml is 9 KB; a config of megabytes is not a config
# Numbers as people write them: 5e-4 and 1E3 (YAML 1.2). PyYAML's YAML 1.1 rules need a dot
# (5.0e-4) and read these as strings, which the checks then refused.
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _ConfigLoader(yaml.SafeLoader):
    """safe_load, plus YAML 1.2 exponent floats, minus aliases: ``*name`` refers to an ``&name``
    anchor, and a few hundred bytes of nested aliases expand to gigabytes once the config is
    written out (train.json); no config of ours needs them."""

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            raise ConfigError(f"YAML aliases (*{self.peek_event().anchor}) are not accepted in configs; "
                              "write the value out")
        return super().compose_node(parent, index)


_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    """A config text (a file or one --set value) as Python values, by the rules above."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` override; the value is read as YAML (so 8, 0.1, 5e-4, true,
    [0.5, 0.75] work)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    except ConfigError as err:
        raise ConfigError(f"--set {key}: {err}") from None
    return key, value


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a folder; give a YAML file (e.g. {path / 'config.yaml'})")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file '{path}' is {path.stat().st_size:,} bytes; a config is at most "
                          f"{MAX_CONFIG_BYTES:,}")
    try:
        data = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    except ConfigError as err:
        raise ConfigError(f"config file '{path}': {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of key: value, got {_type_name(data)}")
    return data


def declared_keys() -> dict[str, Key]:
    """Every key a config holds: KEYS, then every registered method's own keys (pgd_steps,
    free_step, ...), read from the registry at call time, so a method registered later is included."""
    return {**KEYS, **method_keys()}


def defaults() -> dict[str, Any]:
    """Every declared key with its default (see :func:`declared_keys`)."""
    return {key: declared.default for key, declared in declared_keys().items()}


def _layered(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` over what they resolve against: the library's defaults, then their dataset's
    schedule (its ``train_defaults``). An unregistered dataset adds no schedule; its check names it."""
    dataset = settings.get("dataset", KEYS["dataset"].default)
    schedule = DATASETS[dataset].train_defaults if isinstance(dataset, str) and dataset in DATASETS else {}
    return {**defaults(), **schedule, **settings}


def _merge(user: dict[str, Any] | None, overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    merged: dict[str, Any] = dict(user or {})
    if isinstance(overrides, dict):
        merged.update(overrides)
    else:
        merged.update(dict(parse_override(o) for o in overrides or []))
    known = defaults()
    unknown = sorted(set(merged) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}'; known keys: {', '.join(sorted(known))}")
    return merged


def resolve(user: dict[str, Any] | None = None, overrides: list[str] | dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge defaults, dataset defaults, the method's replay default, the user's values and
    overrides, then validate."""
    merged = _merge(user, overrides)
    dataset = merged.get("dataset", KEYS["dataset"].default)
    if merged.get("dataset_spec") is not None and isinstance(dataset, str):
        register_custom(dataset, merged["dataset_spec"])   # the user's dataset, described in the config
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise ConfigError(f"dataset '{dataset}' is unknown; choose one of: {', '.join(DATASETS)}")
    config = _layered(merged)
    if config["amp"] is False:   # YAML 1.1 reads a bare `amp: off` (and --set amp=off) as false
        config["amp"] = "off"
    if isinstance(config["robust_eval_source"], str):
        config["robust_eval_source"] = SOURCE_ALIASES.get(config["robust_eval_source"], config["robust_eval_source"])
    method = get_method(config["method"])
    if config["replay"] is None:
        config["replay"] = default_replay(method)
    validate(config)
    return config


def check_values(settings: dict[str, Any]) -> None:
    """Each declared key that ``settings`` holds checks its value against its kind: a scale's
    partial settings in the plan, or a whole config in :func:`validate`, with the same words.
    Keys nobody declares are left to the caller, which names them in its own terms. Needs no
    model registry and no torch, so the plan (and Snakemake, while it parses) refuses a bad
    value before any job starts."""
    declared = declared_keys()
    for key, value in settings.items():
        if key in declared:
            declared[key].check(key, value)


def check_device(value: Any, key: str = "device") -> None:
    """auto, cpu, cuda or cuda:N (the devices freeadv runs on), before torch is asked; ``key`` may
    be a command-line option ('--device')."""
    DEVICE.check(key, value)


def validate(config: dict[str, Any]) -> None:
    """Check every value of a resolved config before any work starts; raise ConfigError with one
    line naming the culprit. What only the registries know (the names, a method's replay), then
    each key's kind (:func:`check_values`), then the combinations of keys."""
    missing = [key for key in declared_keys() if key not in config]
    if missing:
        raise ConfigError(f"config lacks key '{missing[0]}'; resolve() fills in every key")
    _check_names(config)
    _check_replay(config)
    check_values(config)
    _check_width(config)
    _check_across(config)


def check_combinations(settings: dict[str, Any]) -> None:
    """The checks across keys (schedule, robust checks, weight selection) of partial settings,
    over the defaults they resolve against, without the model registry (no torch: the workflow's
    plan runs them at parse time)."""
    _check_across(_layered(settings))


def _check_names(config: dict[str, Any]) -> None:
    """dataset, arch and method name registered entries; their kind only refuses what is no name."""
    from .models import MODELS   # local: the model registry imports torch; the plan reads this module without it
    if not isinstance(config["dataset"], str) or config["dataset"] not in DATASETS:
        raise bad_value("dataset", config["dataset"], f"one of {', '.join(DATASETS)}")
    if not isinstance(config["arch"], str) or config["arch"] not in MODELS:
        raise bad_value("arch", config["arch"], f"one of {', '.join(sorted(MODELS))}")
    get_method(config["method"])


def _check_replay(config: dict[str, Any]) -> None:
    """replay is set (resolve fills in the method's default), and above 1 only for a method that replays."""
    method = get_method(config["method"])
    INT_POS.check("replay", config["replay"])
    if method.replay_default is None and config["replay"] != 1:
        replaying = ", ".join(name for name, cls in METHODS.items() if cls.replay_default is not None)
        raise bad_value("replay", config["replay"], f"1 (method {method.name} sees each minibatch once; "
                                                    f"replay is for {replaying})")


def _check_width(config: dict[str, Any]) -> None:
    """width sizes only the architectures whose builder takes one."""
    from .models import MODELS, accepts_width   # local, as in _check_names
    if config["width"] is not None and not accepts_width(config["arch"]):
        raise bad_value("width", config["width"],
                        f"null unless arch is one of {', '.join(sorted(a for a in MODELS if accepts_width(a)))}")


def _check_across(config: dict[str, Any]) -> None:
    """The combinations of keys that cannot work, each key's own kind already checked: a length to
    train, a batch no larger than the training set, the robust checks and the weight selection."""
    if config["iterations"] is None and config["epochs"] is None:
        raise ConfigError("config needs 'iterations' or 'epochs' to know how long to train; both are null")
    if config["n_train"] is not None and config["batch_size"] > config["n_train"]:
        raise ConfigError(f"config key 'batch_size' has bad value {config['batch_size']}: "
                          f"larger than n_train={config['n_train']}")
    source = config["robust_eval_source"]
    if config["robust_eval_every"] is not None and source == "first_train_batch":
        raise bad_value("robust_eval_every", config["robust_eval_every"],
                        "null when robust_eval_source is first_train_batch (that check runs at the start of each pass)")
    _check_selection(config)
    wanted, checked = config["validation_n"], config["robust_eval_n"]
    if uses_validation(config) and wanted is not None and wanted < checked:
        raise bad_value("validation_n", wanted, f"null or at least robust_eval_n={checked} (the checks attack that "
                                                "many validation images)")


def _check_selection(config: dict[str, Any]) -> None:
    """early_stop and keep_best choose weights by the checks: they need checks, and never on test images
    (a number chosen on the test split would be reported as a test result); keep_best also needs
    the same images at every check, which first_train_batch's checks are not."""
    source, checks = config["robust_eval_source"], config["robust_eval_n"]
    for key, why in (("early_stop", "early stopping watches the robust checks"),
                     ("keep_best", "keep_best picks among the robust checks")):
        if config[key] and not checks:
            raise bad_value(key, config[key], f"false when robust_eval_n is {checks!r} ({why})")
        if config[key] and source == "test":
            raise bad_value(key, config[key], "false when robust_eval_source is test (it would choose weights on "
                                              "test images); use robust_eval_source validation")
    if config["keep_best"] and source == "first_train_batch":
        raise bad_value("keep_best", config["keep_best"], "false when robust_eval_source is first_train_batch (each "
                        "check attacks another batch, so their accuracies do not compare); use validation")


def uses_validation(config: dict[str, Any]) -> bool:
    """Whether a run holds validation images out of its training images: its checks attack them."""
    return bool(config["robust_eval_n"]) and config["robust_eval_source"] == "validation"


def validation_size(config: dict[str, Any]) -> int:
    """How many validation images a run holds out (0: none): ``validation_n``, by default as many as
    its checks attack. Not more for a larger eval_n: at the full split every validation image is one
    fewer training image, so the pass-end clean accuracy, a log-only number, makes do with them."""
    if not uses_validation(config):
        return 0
    return config["validation_n"] or config["robust_eval_n"]


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of a resolved config as canonical JSON (sorted keys, no spaces): two runs with the
    same digest trained with the same settings, whatever their folder or model id says."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def save_yaml(config: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=True))
