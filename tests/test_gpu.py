"""The device acceptance tests (marker ``gpu``) in the repository's test run. They live in the
package, freeadv.tools.device_tests, because ``freeadv gpucheck`` runs them where only the
installed package may be; importing them here collects them with the rest of the suite: on a
machine without CUDA they are skipped with that reason, ``FREEADV_TEST_DEVICE=cpu python3 -m pytest
-m gpu tests/test_gpu.py`` runs them on the CPU, and ``-m "not gpu"`` leaves them out.

Their asserts are rewritten as in any test file (pytest's detailed failure messages): the module
is registered for rewriting before it is imported."""
import pytest

pytest.register_assert_rewrite("freeadv.tools.device_tests")

from freeadv.tools.device_tests import *   # noqa: F403  (the tests, the device fixture and pytestmark)


def test_every_device_test_is_collected_here():
    """The star import brings every test, the device fixture and the gpu mark: a test added to the
    module runs in this suite without an edit here."""
    from freeadv.tools import device_tests
    tests = {name for name in vars(device_tests) if name.startswith("test_")}
    assert tests and tests <= set(globals()) and "device" in globals()
    assert globals()["pytestmark"].name == "gpu"
