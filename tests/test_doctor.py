"""`freeadv doctor` reports what is there and fails (exit 1) on what a run would trip over."""
import pytest

from freeadv.cli import main


def doctor(capsys, *args):
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def test_healthy_setup_passes_and_finds_the_data(tmp_path, capsys):
    (tmp_path / "data" / "cifar10-jpeg").mkdir(parents=True)
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  cifar10-jpeg: {{data_root: {tmp_path / 'data'}}}\n  synthetic: {{}}\n")
    code, out = doctor(capsys, "--config", str(config), "--data-root", str(tmp_path / "data"),
                       "--out", str(tmp_path / "results"))
    assert code == 0, out
    assert "OK    torch:" in out and "OK    cpu:" in out
    assert f"OK    data cifar10-jpeg: '{tmp_path / 'data' / 'cifar10-jpeg'}'" in out
    assert f"OK    write {tmp_path / 'results'}: writable (will be created)" in out


@pytest.mark.parametrize("data_yaml,message", [
    ("imagenet: {data_root: MISSING}", "FAIL  data imagenet: data root 'MISSING' does not exist"),
    ("imagenet: {data_root: ROOT}", "FAIL  data imagenet: 'ROOT' needs train/ and val/"),
    ("cifar10-jpeg: {data_root: ROOT}", "FAIL  data cifar10-jpeg: 'ROOT' has none of cifar10-jpeg.tar.gz"),
    ("cifar100: {data_root: ROOT, download: false}", "FAIL  data cifar100: 'ROOT' has none of cifar-100-python"),
])
def test_missing_data_fails_naming_the_folder(tmp_path, capsys, data_yaml, message):
    root, missing = tmp_path / "empty", tmp_path / "nope"
    root.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  " + data_yaml.replace("MISSING", str(missing)).replace("ROOT", str(root)) + "\n")
    code, out = doctor(capsys, "--config", str(config), "--out", str(tmp_path))
    assert code == 1
    assert message.replace("MISSING", str(missing)).replace("ROOT", str(root)) in out


@pytest.mark.slow
def test_unwritable_output_folder_fails(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out = doctor(capsys, "--out", str(blocker / "results"))
    assert code == 1 and f"FAIL  write {blocker / 'results'}: cannot write in '{blocker}'" in out
