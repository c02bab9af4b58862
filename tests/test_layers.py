"""The package stands in floors: a module imports only from floors below its own (or from its own
package), read from the code's imports with ast (freeadv.experiments.deps: import statements
anywhere in a file, relative ones resolved, lazy_import and import_module with a constant name,
and the modules behind the names a package loads on attribute access). So no import runs back up and no two
packages import each other."""
from pathlib import Path

from freeadv.experiments import deps

ROOT = Path(__file__).resolve().parents[1]

# Each unit (a top-level module or a subpackage of freeadv) and its floor, from the ground up.
FLOORS = {
    "freeadv.errors": 0,   # the user's error, which every area's own error subclasses
    # what everything may use: files, statistics, schemas, checks on a record, the machine
    "freeadv.lazy": 1, "freeadv.units": 1, "freeadv.io": 1, "freeadv.keys": 1, "freeadv.stats": 1,
    "freeadv.schemas": 1, "freeadv.sanity": 1, "freeadv.cpu": 1, "freeadv.precision": 1,
    "freeadv.distributed": 1, "freeadv.registry": 1, "freeadv.plugins": 1,
    "freeadv.slots": 1,    # GPU slots of one machine: a lock per GPU id
    # the perturbation primitives, tensors on disk, where a number came from, the datasets
    "freeadv.perturb": 2, "freeadv.checkpoints": 2, "freeadv.provenance": 2, "freeadv.data": 2,
    # training methods and models
    "freeadv.methods": 3, "freeadv.models": 3,
    # evaluation attacks; one training config, checked
    "freeadv.attacks": 4, "freeadv.config": 4,
    # the paper's design and the plan of a scale
    "freeadv.experiments": 5,
    # the training engine; the reports on results (read JSON, load no model)
    "freeadv.training": 6, "freeadv.report": 6,
    # jobs on a finished run
    "freeadv.runs": 7,
    # the tools around the runs: bench, estimate, environment and GPU checks
    "freeadv.tools": 8,
    # every command's argument table, and the command line that gathers them
    "freeadv.commands": 9, "freeadv.cli": 10, "freeadv.__main__": 11,
}


def unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def modules() -> list[str]:
    names = []
    for path in sorted((ROOT / "freeadv").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def edges() -> list[tuple[str, str]]:
    return [(m, other) for m in modules() if m != "freeadv" for other in sorted(deps.direct_imports(m, ROOT))
            if other != "freeadv" and unit(other) != unit(m)]


def test_every_unit_has_a_floor():
    assert sorted({unit(m) for m in modules() if m != "freeadv"} - set(FLOORS)) == []
    assert sorted(set(FLOORS) - {unit(m) for m in modules()}) == []


def test_no_import_runs_back_up_a_floor():
    upward = [f"{a} -> {b} (floor {FLOORS[unit(a)]} -> {FLOORS[unit(b)]})" for a, b in edges()
              if FLOORS[unit(b)] >= FLOORS[unit(a)]]
    assert upward == []


def test_the_graph_is_read_from_every_kind_of_import():
    """The edges the rule depends on are seen: a relative import, a deferred one inside a
    function and a lazy_import string."""
    assert "freeadv.perturb" in deps.direct_imports("freeadv.training.robust", ROOT)        # relative
    assert "freeadv.perturb" in deps.direct_imports("freeadv.methods.pgd", ROOT)            # lazy_import
    assert "freeadv.runs.evaluation" in deps.direct_imports("freeadv.runs.export", ROOT)    # in a function
    assert ("freeadv.tools.bench", "freeadv.training") in {(a, unit(b)) for a, b in edges()}
