"""One spelling per concept across the commands, and the former spellings still accepted but
hidden from --help."""
import argparse

import pytest
import yaml

from freeadv.cli import build_parser, main
from freeadv.commands import DEFAULT_SCALE

FORMER = {"bench": {"--batch": "--batch-size"}, "gpucheck": {"--data": "--data-root"},
          "train": {"--out": "--out-dir"}, "export": {"--out": "--out-dir"}, "doctor": {"--out": "--out-dir"}}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_no_command_spells_a_concept_another_way():
    options = {flag for p in subparsers().values() for a in p._actions if a.help != argparse.SUPPRESS
               for flag in a.option_strings}
    assert not options & {"--batch", "--data", "--data_root", "--batch_size", "--outdir"}
    for command, renamed in FORMER.items():
        help_text = subparsers()[command].format_help()
        for old, new in renamed.items():
            assert new in help_text and f"{old} " not in help_text.replace(new, "")


@pytest.mark.parametrize("command", ["claims", "regenerate", "estimate", "plan"])
def test_every_scale_option_has_the_same_default(command):
    scale = next(a for a in subparsers()[command]._actions if "--scale" in a.option_strings)
    assert scale.default == DEFAULT_SCALE


def test_a_former_spelling_sets_the_same_value():
    parsers = subparsers()
    assert parsers["bench"].parse_args(["--batch", "64"]).batch_size == 64
    assert parsers["bench"].parse_args([]).batch_size == 128
    assert parsers["gpucheck"].parse_args(["--data", "x"]).data_root == "x"
    assert str(parsers["export"].parse_args(["--run", "r", "--out", "e"]).out_dir) == "e"
    assert parsers["doctor"].parse_args(["--out", "a", "--out-dir", "b"]).out_dir == ["a", "b"]


def test_train_takes_the_data_root_and_the_device_as_flags(capsys):
    assert main(["train", "--set", "dataset=synthetic", "--data-root", "/data/here", "--device", "cpu",
                 "--print-config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data_root"] == "/data/here" and config["device"] == "cpu"


def test_train_without_a_run_folder_is_one_line(capsys):
    assert main(["train", "--set", "dataset=synthetic"]) == 2
    assert capsys.readouterr().err.strip() == \
        "freeadv train: error: --out-dir is required: the run folder to train into (or resume)"
