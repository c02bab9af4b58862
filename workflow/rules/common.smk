# Helpers of the workflow: config checks, the plan of the chosen scale, and the input / params /
# resources functions the rules use. The experiments themselves (which models, which attacks,
# which result files each table and figure reads) come from freeadv/experiments/ via the plan;
# where each file lives from freeadv/experiments/layout.py. Nothing imported here imports torch.

import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, REPO_ROOT)  # the freeadv package of this checkout (REPO_ROOT: workflow/Snakefile)
from freeadv.plugins import PluginError, load_plugins  # noqa: E402

try:  # the user's methods, models, datasets and targets (FREEADV_PLUGINS, entry points), before the plan
    load_plugins()
except PluginError as err:
    raise WorkflowError(str(err)) from None
from freeadv.attacks import AttackSpec  # noqa: E402
from freeadv.data.catalog import DataError  # noqa: E402
from freeadv.data.custom import register_custom  # noqa: E402
from freeadv.data import DATASETS  # noqa: E402
from freeadv.report.claims import CLAIMS_NEED  # noqa: E402
from freeadv.report.cost import JOB_KINDS, plan_jobs  # noqa: E402
from freeadv.experiments import deps, layout  # noqa: E402
from freeadv.experiments.scales import PlanError, build_plan, plan_inputs  # noqa: E402


# --- config: the scale first (one line), then the schema ---------------------------------------

# A scale's name names its folders (results/<scale>/, ...) and goes into job commands: an
# identifier, the schema's pattern for `scale` and the keys of `scales`, checked here first for a
# message that says so (a name is one line: `$` of a pattern also matches before a final newline).
with open(os.path.join(workflow.basedir, "schemas", "config.schema.yaml")) as _schema:
    SCALE_NAME = yaml.safe_load(_schema)["properties"]["scale"]["pattern"]
SCALES = list(config.get("scales") or {})
SCALE = str(config.get("scale"))
for _name in [SCALE, *SCALES]:
    if not re.search(SCALE_NAME, str(_name)) or "\n" in str(_name):
        raise WorkflowError(
            f"scale name {str(_name)!r} is not an identifier: a scale's name starts with a letter and has "
            "only letters, digits, '_' and '-' (it names the scale's folders and goes into job commands)"
        )
if SCALE not in SCALES:
    raise WorkflowError(
        f"unknown scale '{SCALE}': choose one of {', '.join(SCALES)} (e.g. --config scale=smoke)"
    )


def _schema_message(err):
    """The jsonschema error behind snakemake's WorkflowError, as one line: where and what (for a
    value that matches none of a key's forms, why each one refuses it)."""
    cause = err.__context__
    if hasattr(cause, "absolute_path") and hasattr(cause, "message"):
        where = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
        why = "; ".join(sub.message for sub in getattr(cause, "context", None) or [])
        return f"config key '{where}': {cause.message}" + (f" ({why})" if why else "")
    return str(err).splitlines()[0]


try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError as err:
    raise WorkflowError(
        f"config does not match workflow/schemas/config.schema.yaml: {_schema_message(err)}"
    ) from None


# --- the plan of this scale ----------------------------------------------------------------------

try:  # datasets of the user's own, described under `data` (freeadv.data.custom), before the plan
    for _name, _keys in (config.get("data") or {}).items():
        if (_keys or {}).get("dataset_spec") is not None:
            register_custom(_name, _keys["dataset_spec"])
except DataError as err:
    raise WorkflowError(f"config key 'data.{_name}.dataset_spec': {err}") from None

try:
    PLAN_INPUTS = plan_inputs(config, SCALE)
    PLAN = build_plan(**PLAN_INPUTS)
except PlanError as err:
    raise WorkflowError(f"scale '{SCALE}': {err}") from None

LAYOUT = layout.ScaleLayout(SCALE)
SETTINGS = config["scales"][SCALE]
TABLE_NAMES = [name for name, target in PLAN.targets.items() if target.kind == "table"]
FIGURE_NAMES = [name for name, target in PLAN.targets.items() if target.kind == "figure"]
AVAILABLE = PLAN.available_targets()


def result(relative):
    """A path of the plan (relative to results/<scale>) as the workflow sees it; also a pattern
    when ``relative`` holds wildcards, e.g. result(layout.eval_path("{model}", "{attack}"))."""
    return LAYOUT.result(relative)


def code(command):
    """The library files a command module imports (freeadv/experiments/deps.py): a job's `code`
    input, so that editing one of them reruns the jobs that run it."""
    return [os.path.join(REPO_ROOT, f) for f in deps.closure(command, root=REPO_ROOT)]


TRAIN_CODE = code("freeadv.commands.train")
ATTACK_CODE = code("freeadv.commands.attack")
ANALYSIS_CODE = code("freeadv.commands.analysis")
REPORT_CODE = code("freeadv.commands.report")  # plan, table, figure and claims
COST_CODE = code("freeadv.commands.cost")
BENCH_CODE = code("freeadv.commands.bench")


# --- models, attacks, analyses -------------------------------------------------------------------

ANALYSES = {
    (a.model, a.id): a for entry in PLAN.targets.values() for a in entry.analyses
}


def model_config(model):
    if model not in PLAN.models:
        raise WorkflowError(
            f"model '{model}' is not in the plan of scale '{SCALE}' (freeadv plan --config config/config.yaml "
            f"--scale {SCALE} lists them)"
        )
    return PLAN.config(model)


def train_overrides(wildcards):
    """The model's training config as `freeadv train --set key=value` arguments (values in JSON)."""
    settings = model_config(wildcards.model)
    return " ".join(f"--set {shlex.quote(f'{key}={json.dumps(value)}')}" for key, value in settings.items())


def training_data(wildcards):
    """The stamp of the model's dataset, which the data rule writes once it has fetched or checked
    the files, before any training job reads them (none for generated data); fail before any job
    runs when ImageNet is needed and its folder is not configured."""
    settings = model_config(wildcards.model)
    if settings["dataset"] == "imagenet":
        root = settings.get("data_root")
        if not root or not (Path(root) / "train").is_dir() or not (Path(root) / "val").is_dir():
            raise WorkflowError(
                f"model '{wildcards.model}' trains on ImageNet, but data.imagenet.data_root is "
                f"{root!r}: it must be a folder with train/ and val/ (ImageFolder layout); set it with "
                "--config 'data={imagenet: {data_root: /path/to/imagenet}}'"
            )
    return data_stamp(settings["dataset"])


def attack_arguments(wildcards):
    """The attack's `freeadv attack` arguments, each quoted for the shell."""
    return " ".join(shlex.quote(arg) for arg in AttackSpec.parse(wildcards.attack).cli_args())


def analysis_arguments(wildcards):
    key = (wildcards.model, wildcards.analysis)
    if key not in ANALYSES:
        raise WorkflowError(f"analysis '{wildcards.analysis}' of model '{wildcards.model}' is not in the plan")
    return " ".join(shlex.quote(arg) for arg in ANALYSES[key].args)


# --- datasets: fetched or checked once per scale (rule data) ----------------------------------------

def _data_sources():
    """Dataset -> (data_root, download) of the plan's models, for every dataset with files (a
    generated one has nothing to fetch). One folder per dataset: the data job checks that one."""
    sources = {}
    for model in PLAN.models:
        settings = PLAN.config(model)
        if DATASETS[settings["dataset"]].files:
            sources.setdefault(settings["dataset"], set()).add(
                (settings.get("data_root"), bool(settings.get("download"))))
    for dataset, found in sources.items():
        if len(found) > 1:
            raise WorkflowError(
                f"scale '{SCALE}': the models on {dataset} read different data roots "
                f"({', '.join(sorted(str(root) for root, _ in found))}); give data.{dataset}.data_root once"
            )
    return {dataset: found.pop() for dataset, found in sources.items()}


DATA_SOURCES = _data_sources()


def data_stamp(dataset):
    """The data job's stamp as a training job's input, or none (generated data). ancient(): a
    dataset checked again later (its job rerun) does not rerun the models trained on it."""
    return [ancient(result(f"data/{dataset}.txt"))] if dataset in DATA_SOURCES else []


def data_arguments(wildcards):
    root, download = DATA_SOURCES[wildcards.dataset]
    return (f"--data-root {shlex.quote(str(root))}" if root is not None else "") + (" --download" if download else "")


# --- GPU slots: each GPU job its own GPUs on a machine with several (freeadv gpu-slot) -------------

# Snakemake's --resources gpu=N runs N GPU jobs at once but gives them no device; with
# gpus_per_machine: N each one takes free ids of 0..N-1 (a lock per id) as CUDA_VISIBLE_DEVICES.
# 0 (the default) leaves the devices to the environment: one GPU, or a scheduler that sets them.
GPUS_PER_MACHINE = int(config.get("gpus_per_machine") or 0)


def gpu_slot(kind, model=None):
    """params: `freeadv gpu-slot ... -- ` before the command of a GPU job when gpus_per_machine is
    set, else nothing. ``model``: the job's model when it is no wildcard (cost_bench)."""

    def prefix(wildcards):
        gpus = int(_job_settings(kind, model() if callable(model) else wildcards.get("model"))["gpu"])
        if GPUS_PER_MACHINE < 1 or gpus < 1:
            return ""
        if gpus > GPUS_PER_MACHINE:
            raise WorkflowError(
                f"a {kind} job asks for {gpus} GPUs but gpus_per_machine is {GPUS_PER_MACHINE}: no machine "
                "slot can hold it; raise gpus_per_machine or lower the scale's resources"
            )
        return f"freeadv gpu-slot --gpus {gpus} --slots {GPUS_PER_MACHINE} -- "

    return prefix


# --- resources ---------------------------------------------------------------------------------------

def _job_settings(kind, model):
    job = dict(SETTINGS["resources"][kind])
    if model is not None and model_config(model)["dataset"] == "imagenet":
        job.update(SETTINGS["resources"].get("imagenet", {}).get(kind, {}))
    return job


def train_launcher(wildcards):
    """`freeadv`, or torchrun with one data-parallel process per GPU when the job's `gpu` resource
    (scales.<scale>.resources in the config) asks for several."""
    gpus = int(_job_settings("train", wildcards.model)["gpu"])
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m freeadv"
    return "freeadv"


def job_threads(kind):
    return lambda wildcards: _job_settings(kind, wildcards.get("model"))["threads"]


def job_resource(kind, name):
    return lambda wildcards: _job_settings(kind, wildcards.get("model"))[name]


def job_runtime(kind):
    """The job's runtime (minutes) times its attempt: a job killed at its time limit is retried
    (profiles/slurm: retries) with more time. Measured on the test cluster: a training job that
    finished its work just before the limit was killed in Snakemake's epilogue, its outputs
    deleted, and the next attempt, at the same limit, could not redo it (tests/test_slurm.py)."""
    return lambda wildcards, attempt: _job_settings(kind, wildcards.get("model"))["runtime"] * attempt


# --- cost per job (benchmark: files, freeadv cost-table) -----------------------------------------

COST_JOBS = plan_jobs(PLAN)  # every train, attack and analysis job of `all`


def job_benchmark(kind, *wildcards):
    """A rule's benchmark: file, named after its job, e.g. job_benchmark("attack", "{model}", "{attack}")."""
    assert kind in JOB_KINDS, kind
    return result(layout.benchmark_path(kind, *wildcards))


def cost_benchmarks(wildcards):
    """Input function of the cost rule: the benchmark file of every job of `all`."""
    return [result(job.benchmark) for job in COST_JOBS]


def cost_resources():
    """What each job of `all` asks for, from the settings that give its rule its threads and
    resources: JSON kind -> model -> {threads, gpu, mem_mb, runtime} for freeadv cost-table."""
    asked = {}
    for job in COST_JOBS:
        asked.setdefault(job.kind, {})[job.model] = _job_settings(job.kind, job.model)
    return json.dumps(asked, sort_keys=True)


# --- targets -------------------------------------------------------------------------------------

def results(files):
    return [result(f) for f in files]


def target_results(name):
    """Input function: every result file one table or figure reads (clear error if not at this scale)."""

    def inputs(wildcards):
        if not PLAN.targets[name].available:
            raise WorkflowError(PLAN.unavailable_message(name))
        return results(PLAN.target_files(name))

    return inputs


def target_outputs(name):
    """Input function of the named target rule: the table's or the figure's files."""

    def outputs(wildcards):
        if not PLAN.targets[name].available:
            raise WorkflowError(PLAN.unavailable_message(name))
        if name in TABLE_NAMES:   # a table comes with its training curves
            return LAYOUT.table_files(name) + LAYOUT.figure_files(layout.curves_name(name))
        return LAYOUT.figure_files(name)

    return outputs


def table_train_results(name):
    """The train.json of every model of a table (what its training curves are drawn from)."""
    if not PLAN.targets[name].available:
        raise WorkflowError(PLAN.unavailable_message(name))
    return results(sorted({layout.train_path(row.model) for row in PLAN.targets[name].trained_rows()}))


def claims_results(wildcards):
    """Input function of the claims rule: the result files of the targets the claims read."""
    missing = [name for name in CLAIMS_NEED if not PLAN.targets[name].available]
    if missing:
        raise WorkflowError(PLAN.unavailable_message(missing[0]) + " (the claims read it)")
    files = {f for name in CLAIMS_NEED for f in PLAN.target_files(name)}
    return results(sorted(files | ({PLAN.cost_bench.file} if PLAN.cost_bench else set())))


def all_outputs(wildcards):
    """Every available table and figure, the cost table of their jobs, and the claims where their
    targets are available."""
    outputs = [f for name in AVAILABLE for f in target_outputs(name)(wildcards)] + LAYOUT.cost_files()
    if set(CLAIMS_NEED) <= set(AVAILABLE):
        outputs += [LAYOUT.claims_text, LAYOUT.claims_json]
    return outputs
