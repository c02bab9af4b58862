"""Natural training; with replay m > 1 it is Figure 1's natural training with minibatch replay."""
from __future__ import annotations

from . import Method, StepCost, register_method


@register_method
class Natural(Method):
    """Natural training (no perturbation); replay m > 1 replays each minibatch m times (Figure 1)."""

    name = "natural"
    replay_default = 1

    @classmethod
    def title(cls, params):
        return "Natural" if params["replay"] == 1 else f"Natural m={params['replay']}"

    @classmethod
    def id_fragment(cls, params):
        return "natural" + (f"-m{params['replay']}" if params["replay"] > 1 else "")

    @classmethod
    def cost(cls, config):
        return StepCost(train=1)

    @classmethod
    def from_config(cls, config, autocast=None):
        return cls(replay=config["replay"], autocast=autocast)
