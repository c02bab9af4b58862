"""A dataset is one DatasetSpec in freeadv.data.DATASETS plus its loader: registering one record is
enough for config, the bench command line, titles, estimate and the training engine to know it."""
import subprocess
import sys

import pytest

from freeadv.data import DATASETS, DatasetSpec, register_dataset

# A three-class dataset of 16x16 images, one colour per class plus noise, registered from its own
# module as a user's dataset would be; its loader returns the library's in-memory bundle.
TINY_DATASET = '''
import torch
from freeadv.data import DatasetSpec, TensorBundle, register_dataset


def _draw(count, seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    colours = torch.tensor([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=torch.float32)
    noise = 30 * torch.randn(count, 3, 16, 16, generator=generator)
    images = (colours[labels][:, :, None, None] + noise).clamp(0, 255).round().to(torch.uint8)
    return images, labels


def load_tiny(spec, root, options):
    n_train, n_test = options.n_train or spec.default_sizes[0], options.n_test
    n_test = spec.default_sizes[1] if n_test is None else n_test
    train_x, train_y = _draw(n_train + options.n_validation, options.data_seed)
    test_x, test_y = _draw(n_test, options.data_seed + 1)
    validation = (train_x[n_train:], train_y[n_train:])
    return TensorBundle(spec.name, train_x[:n_train], train_y[:n_train], test_x, test_y,
                        augment=options.augment, validation=validation)


register_dataset(DatasetSpec("tiny", "Tiny colours", 3, (0.5, 0.5, 0.5), (0.3, 0.3, 0.3), "tiny_dataset:load_tiny",
                             default_sizes=(96, 48), input_size=16, paper_step=1.5,
                             train_defaults={"arch": "small_cnn", "robust_eval_n": 16}))
'''


def test_a_registered_dataset_configures_benches_and_trains(tmp_path):
    """In a subprocess, so the registry of this test process keeps only the library's datasets."""
    (tmp_path / "tiny_dataset.py").write_text(TINY_DATASET)
    check = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
from freeadv import config as cfg   # imported before the dataset registers: config reads the registry per call
import tiny_dataset
from freeadv.attacks.spec import default_step
from freeadv.cli import build_parser
from freeadv.data import NUM_CLASSES
from freeadv.experiments.titles import dataset_title
from freeadv.tools.estimate import split_size
from freeadv.training import Trainer

config = cfg.resolve({{"dataset": "tiny", "width": 4, "n_train": 64, "batch_size": 32, "iterations": 4,
                      "eval_n": None, "device": "cpu", "robust_eval_steps": 2}})
assert config["arch"] == "small_cnn" and config["robust_eval_n"] == 16   # the spec's train_defaults
assert NUM_CLASSES["tiny"] == 3 and dataset_title("tiny") == "Tiny colours" and default_step("tiny") == 1.5
assert split_size(config, "test") == 48
bench = build_parser()._subparsers._group_actions[0].choices["bench"]
assert "tiny" in next(a for a in bench._actions if a.dest == "dataset").choices
assert build_parser().parse_args(["bench", "--dataset", "tiny"]).dataset == "tiny"
result = Trainer(config, {str(tmp_path / 'run')!r}, progress=False).run()
assert result["iterations"] == 4 and result["config"]["dataset"] == "tiny"
"""
    subprocess.run([sys.executable, "-c", check], check=True, cwd=tmp_path)


def test_a_taken_name_is_refused():
    before = dict(DATASETS)
    with pytest.raises(TypeError, match="dataset 'cifar10' is already registered"):
        register_dataset(DatasetSpec("cifar10", "another CIFAR-10", 10, (0.5,) * 3, (0.25,) * 3,
                                     "freeadv.data.cifar:load_cifar", split_sizes=(50_000, 10_000)))
    assert DATASETS == before and DATASETS["cifar10"].title == "CIFAR-10"


@pytest.mark.parametrize("change, message", [
    ({"loader": "load_tiny"}, "is not 'module:function'"),
    ({"split_sizes": (10, 5), "default_sizes": (10, 5)}, "one of them"),
    ({"num_classes": 1}, "num_classes must be at least 2"),
])
def test_a_bad_record_fails_where_it_is_declared(change, message):
    fields = {"name": "bad", "title": "bad", "num_classes": 3, "mean": (0.5,) * 3, "std": (0.25,) * 3,
              "loader": "tiny_dataset:load_tiny", "default_sizes": (10, 5), **change}
    with pytest.raises(TypeError, match=message):
        register_dataset(DatasetSpec(**fields))
    assert "bad" not in DATASETS


def test_the_library_datasets_keep_their_facts():
    """The numbers every committed run and result was made with."""
    facts = {name: (spec.num_classes, spec.split_sizes, spec.input_size, spec.paper_step, spec.paper_family)
             for name, spec in DATASETS.items()}
    assert facts == {"cifar10": (10, (50_000, 10_000), 32, 2.0, "cifar10"),
                     "cifar100": (100, (50_000, 10_000), 32, 2.0, "cifar100"),
                     "cifar10-jpeg": (10, (50_000, 10_000), 32, 2.0, "cifar10"),
                     "imagenet": (1000, (1_281_167, 50_000), 224, 1.0, "imagenet"),
                     "synthetic": (10, None, 32, 2.0, None)}
    assert DATASETS["synthetic"].default_sizes == (2000, 500)
