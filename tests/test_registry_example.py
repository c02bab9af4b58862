"""The documented example of adding a training method (docs/extending.md) works as written: registering one class is
enough for config, engine, CLI help, bench and the plan's titles and model ids to know it."""
import re
import subprocess
import sys
from pathlib import Path

EXTENDING = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def readme_example() -> str:
    section = EXTENDING.read_text().split("### Adding a training method or an attack", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_method_trains_and_is_known_everywhere(tmp_path):
    (tmp_path / "gauss_method.py").write_text(readme_example())
    check = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
from freeadv import config as cfg   # imported before the method registers: config reads the registry per call
import gauss_method
from freeadv.tools import bench
from freeadv.commands.train import _method_help
from freeadv.methods import METHODS, method_params
from freeadv.training import Trainer
assert "gauss" in METHODS and "gauss" in bench.STEPS and "gauss_sigma" in _method_help()
config = cfg.resolve({{"dataset": "synthetic", "arch": "small_cnn", "width": 4, "n_train": 128, "n_test": 32,
                      "batch_size": 32, "iterations": 4, "method": "gauss", "eval_n": None, "device": "cpu"}})
result = Trainer(config, {str(tmp_path / 'run')!r}, progress=False).run()
assert result["iterations"] == 4 and result["config"]["gauss_sigma"] == 8.0
assert METHODS["gauss"].id_fragment(method_params("gauss", {{}})) == "gauss8"
"""
    subprocess.run([sys.executable, "-c", check], check=True)
