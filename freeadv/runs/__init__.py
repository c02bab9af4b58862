"""Jobs on a finished run folder: the attack evaluation, the analyses behind Figure 2 and the
loss surfaces, and the export for others. Each starts from :func:`open_run`. The attack
evaluation also takes any model (freeadv.runs.any_model).

    from freeadv.runs import run_attack, evaluate
    result = run_attack("results/mini/runs/<model>", AttackSpec.parse("pgd20-eps8-step2"))
    result = evaluate(any_model, batches, spec)   # any nn.Module taking [0, 1] images, batch by batch
    records = evaluate_model(any_model, "cifar10", ["pgd20", "autoattack"], n=1000, out_dir="evals")
    model = load_model("my_pkg.models:build", "weights.pt")   # a factory named as `freeadv attack --model` names it

``evaluate_model`` is also ``freeadv.evaluate``.
"""
from __future__ import annotations

from ..lazy import lazy_attributes
from .opening import OpenRun, open_run

_TORCH_NAMES = {
    **dict.fromkeys(("worst_case", "evaluate", "run_attack"), "evaluation"),
    **dict.fromkeys(("adv_examples", "loss_surface"), "analysis"),
    **dict.fromkeys(("export_run", "load_exported"), "export"),
    **dict.fromkeys(("evaluate_model", "load_model", "ModelError"), "any_model"),
}

__all__ = ["OpenRun", "open_run", *_TORCH_NAMES]

__getattr__ = lazy_attributes(__name__, _TORCH_NAMES)
