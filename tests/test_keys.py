"""Config keys are one model: a Key holds a Kind object, checks its own value, and the plan's partial
settings and a resolved config go through the same checks with the same words."""
import pytest

from freeadv import config as cfg
from freeadv import keys
from freeadv.keys import INT_POS, PIXELS, ConfigError, Key, Kind, choice, or_null
from freeadv.methods import METHODS


def _every_declared_key():
    yield from (("config.KEYS", name, declared) for name, declared in cfg.KEYS.items())
    for method, cls in METHODS.items():
        yield from ((method, name, declared) for name, declared in cls.keys.items())


def test_a_key_refuses_a_kind_that_is_not_a_kind():
    for kind in ("int>=1", None, lambda v: True, (lambda v: True, "anything")):
        with pytest.raises(TypeError, match="must be a freeadv.keys.Kind"):
            Key(1, kind, "x")


def test_a_key_refuses_a_default_its_own_kind_refuses():
    with pytest.raises(TypeError, match="default 0 is not of its kind: expected an integer >= 1"):
        Key(0, INT_POS, "x")


@pytest.mark.parametrize("owner, name, declared", list(_every_declared_key()), ids=lambda v: str(v)[:40])
def test_every_declared_default_passes_its_own_kind(owner, name, declared):
    assert isinstance(declared.kind, Kind), (owner, name)
    declared.check(name, declared.default)


def test_a_key_checks_its_own_value_in_the_one_wording():
    with pytest.raises(ConfigError, match=r"^config key 'eps' has bad value 300: expected a number in \(0, 255\]"):
        cfg.KEYS["eps"].check("eps", 300)
    with pytest.raises(ConfigError, match=r"^--device has bad value 'tpu': expected auto, cpu, cuda or cuda:N$"):
        cfg.check_device("tpu", "--device")
    with pytest.raises(ConfigError, match=r"'momentum' has bad value 1: expected a number in \[0, 1\)$"):
        cfg.check_values({"momentum": 1})


def test_choices_say_their_values_as_a_config_writes_them_and_compare_by_value():
    assert choice("step", "cyclic").allowed == "step or cyclic"
    assert keys.AUTO_OR_BOOL.allowed == "auto, true or false"
    assert choice("validation", "test", "first_train_batch").allowed == "validation, test or first_train_batch"
    assert choice("update", "frozen") == choice("update", "frozen") != choice("frozen", "update")
    assert or_null(INT_POS).allowed == "an integer >= 1 or null" and or_null(INT_POS).test(None)
    assert Key(2.0, PIXELS, "x") == Key(2.0, PIXELS, "x")
    with pytest.raises(TypeError):
        choice("alone")


def test_partial_settings_and_a_resolved_config_get_the_same_words():
    """check_values (the plan's path) and resolve (validate's path) refuse the same value alike."""
    for key, value in [("eps", 0), ("pgd_steps", 0), ("lr_schedule", "linear"), ("attack_bn", "off"),
                       ("channels_last", "yes"), ("lr_milestones", [0.5, 1.5]), ("seed", 2**32)]:
        with pytest.raises(ConfigError) as partial:
            cfg.check_values({key: value})
        with pytest.raises(ConfigError) as resolved:
            cfg.resolve({"dataset": "synthetic", "method": "pgd", key: value})
        assert str(partial.value) == str(resolved.value)
        assert str(partial.value).startswith(f"config key '{key}' has bad value {value!r}: expected ")


def test_check_values_leaves_unknown_keys_to_its_caller():
    cfg.check_values({"not_a_key": object(), "eps": 8})


def test_combinations_of_partial_settings_read_their_dataset_schedule():
    """The plan checks a scale's settings over the defaults resolve uses, its dataset's included:
    synthetic checks 64 images, so 100 validation images are enough there."""
    settings = {"dataset": "synthetic", "validation_n": 100}
    cfg.check_combinations(settings)
    assert cfg.resolve(settings)["validation_n"] == 100
    with pytest.raises(ConfigError, match="'validation_n' has bad value 100: expected null or at least robust_eval_n=512"):
        cfg.check_combinations({"dataset": "cifar10", "validation_n": 100})


def test_validate_names_a_missing_key_and_a_non_name():
    config = cfg.resolve({"dataset": "synthetic"})
    with pytest.raises(ConfigError, match="config lacks key 'eps'"):
        cfg.validate({k: v for k, v in config.items() if k != "eps"})
    with pytest.raises(ConfigError, match=r"'arch' has bad value \[1\]: expected one of"):
        cfg.validate({**config, "arch": [1]})
    with pytest.raises(ConfigError, match=r"'method' has bad value \[1\]: expected one of"):
        cfg.resolve({"dataset": "synthetic", "method": [1]})


def test_defaults_are_the_declared_defaults_in_declared_order():
    assert list(cfg.defaults()) == list(cfg.declared_keys())
    assert list(cfg.defaults())[:len(cfg.KEYS)] == list(cfg.KEYS)
    assert cfg.DEFAULTS == {name: declared.default for name, declared in cfg.KEYS.items()}
    assert all(cfg.defaults()[name] == declared.default for _, name, declared in _every_declared_key())
