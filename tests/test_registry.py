"""Methods, attack kinds and models register through one Registry: a taken or empty name is
refused, and an unknown name is a one-line user error that names the choices."""
import pytest

from freeadv.attacks import ATTACKS
from freeadv.errors import UserError
from freeadv.methods import METHODS
from freeadv.models.registry import MODELS
from freeadv.registry import Registry


def test_one_registry_serves_every_kind():
    assert all(isinstance(r, Registry) for r in (METHODS, ATTACKS, MODELS))
    assert [r.kind for r in (METHODS, ATTACKS, MODELS)] == ["training method", "attack kind", "model"]
    assert {"natural", "free", "pgd"} <= set(METHODS) and {"pgd", "cw", "autoattack"} <= set(ATTACKS)


def test_a_name_is_taken_once_and_never_empty():
    things = Registry("thing")
    assert things.add("a", 1) == 1 and things == {"a": 1}
    with pytest.raises(TypeError, match="thing 'a' is already registered"):
        things.add("a", 2)
    with pytest.raises(TypeError, match="needs a non-empty name"):
        things.add("", 3)
    assert things == {"a": 1}


def test_an_unknown_name_names_the_value_and_the_choices():
    things = Registry("thing")
    things.add("a", 1), things.add("b", 2)
    assert things.pick("b", "--thing") == 2
    with pytest.raises(UserError, match=r"^--thing has bad value 'c': expected one of a, b$"):
        things.pick("c", "--thing")
