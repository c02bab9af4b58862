"""Shared fixtures: a tiny trained run that several tests attack or inspect."""
import pytest

from freeadv import config as cfg
from freeadv.training import Trainer

TINY_RUN = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 64,
            "batch_size": 64, "iterations": 16, "method": "natural", "replay": 1, "eval_n": 64,
            "log_every": 8, "checkpoint_every": 8, "device": "cpu"}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A finished (natural, 16-iteration) synthetic run folder."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    Trainer(cfg.resolve(TINY_RUN), run_dir, progress=False).run()
    return run_dir
