"""freeadv: natural, Free-m, K-PGD and FGSM-RS adversarial training, PGD/CW attacks and the
reproduction of 'Adversarial Training for Free!' (Shafahi et al., NeurIPS 2019).

    import freeadv
    records = freeadv.evaluate(my_model, dataset="cifar10", attacks=["pgd20", "autoattack"], n=1000,
                               out_dir="evals")   # any nn.Module taking [0, 1] images

``freeadv.evaluate`` (freeadv.runs.any_model.evaluate_model) imports torch on first use, so that
``import freeadv`` stays light for the workflow, which reads the package at parse time.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def evaluate(*args: Any, **kwargs: Any) -> Any:
    """Evaluate any model taking [0, 1] images: :func:`freeadv.runs.any_model.evaluate_model`."""
    from .runs.any_model import evaluate_model
    return evaluate_model(*args, **kwargs)
