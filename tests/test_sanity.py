"""Each sanity check fires on an evaluation built to trip it, and stays quiet on a sound one."""
import pytest
import torch
from torch import nn

from freeadv.attacks import AttackSpec
from freeadv.runs import evaluate
from freeadv.sanity import check_eval, check_model


def ev(kind, steps, acc, clean=80.0, eps=8.0, restarts=1):
    """An eval record as freeadv attack writes it: the kind's flags come with its attack entry."""
    return {"attack": {**AttackSpec(kind, steps, eps, restarts=restarts).record(), "eps": eps},
            "clean_acc": clean, "robust_acc": acc}


SOUND = [ev("pgd", 20, 45.0), ev("pgd", 100, 44.5), ev("cw", 100, 45.2), ev("pgd", 20, 44.8, restarts=10),
         ev("noise", 0, 78.0)]


def test_sound_evaluation_has_no_warnings():
    assert check_model(SOUND) == []


def test_an_attack_without_the_kinds_flags_is_not_taken_for_a_gradient_attack():
    """sanity reads the kind from the record, not from the registry: a record without the flags
    (or of a kind this library does not know) is left out of the checks that need them."""
    bare = {**ev("cw", 100, 43.0), "attack": {"kind": "cw", "steps": 100, "eps": 8.0, "restarts": 1}}
    assert check_model([ev("pgd", 20, 40.0), bare]) == []
    assert any("cw-100" in w for w in check_model([ev("pgd", 20, 40.0), ev("cw", 100, 43.0)]))


def test_robust_above_clean():
    assert "above clean accuracy" in check_eval(ev("pgd", 20, 85.0, clean=80.0))[0]


def test_more_steps_raising_accuracy():
    warnings = check_model([ev("pgd", 20, 40.0), ev("pgd", 100, 44.0)])
    assert any("stronger attack should not do worse" in w for w in warnings)


def test_cw_above_pgd20():
    warnings = check_model([ev("pgd", 20, 40.0), ev("cw", 100, 43.0)])
    assert any("cw-100" in w for w in warnings)


def test_restarts_raising_accuracy():
    warnings = check_model([ev("pgd", 20, 40.0), ev("pgd", 20, 43.0, restarts=10)])
    assert any("restarts must not raise accuracy" in w for w in warnings)


def test_noise_below_gradient_attack():
    warnings = check_model([ev("pgd", 20, 50.0), ev("noise", 0, 45.0)])
    assert any("uniform noise" in w for w in warnings)


class MaskedModel(nn.Module):
    """Classifies through a rounding step: correct outputs, zero input gradients (gradient masking)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(12, 3)

    def forward(self, x):
        return self.linear((torch.round(x * 2) / 2).flatten(1))   # round has zero gradient


def test_unbounded_attack_on_gradient_masking_model_is_flagged():
    torch.manual_seed(0)
    model = MaskedModel().eval()
    x = torch.rand(64, 3, 2, 2)
    y = model(x).argmax(1)                       # labels the model gets right
    result = evaluate(model, [(x, y)], AttackSpec("pgd", eps=128, step_size=16, steps=10))
    assert result["robust_acc"] > 50             # PGD is blind: the gradient is zero everywhere
    warnings = check_eval({"attack": AttackSpec("pgd", 10, 128.0, 2.0).record(), **result})
    assert any("gradient masking" in w for w in warnings)


def test_autoattack_above_pgd20_by_more_than_one_standard_error_is_flagged():
    from freeadv.sanity import check_model, standard_error

    def ev(kind, steps, robust, n=1000, step=2.0):
        return {"attack": AttackSpec(kind, steps, 8.0, step).record(),
                "clean_acc": 80.0, "robust_acc": robust, "n": n}
    se = standard_error(40.0, 1000)
    assert se == pytest.approx(100 * (0.4 * 0.6 / 1000) ** 0.5)
    assert check_model([ev("pgd", 20, 40.0), ev("autoattack", 100, 40.0 + 0.9 * se, step=None)]) == []
    flagged = check_model([ev("pgd", 20, 40.0), ev("autoattack", 100, 40.0 + 1.1 * se, step=None)])
    assert len(flagged) == 1 and "by over one standard error" in flagged[0]
    # AutoAttack is not held to the generic 'more steps must not do worse' rule (1 point) twice
    assert check_model([ev("pgd", 20, 40.0, n=100), ev("autoattack", 100, 41.5, n=100, step=None)]) == []
