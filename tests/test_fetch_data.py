"""Each dataset fetched or checked once before any training job (freeadv/data/fetch.py, `freeadv
fetch-data`, the workflow's rule data): what it finds, one line naming the folder to fill when a
dataset is missing and cannot be downloaded, and one data job per dataset of a scale."""
import pytest
import torchvision

from freeadv.cli import main
from freeadv.data import DataError
from freeadv.data.fetch import fetch_dataset
from test_data import accept_fake_cifar_md5, write_fake_cifar10, write_image_folder, write_jpeg_archive  # noqa: F401
from test_workflow import job_counts, output, snakemake


@pytest.fixture
def offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)


def test_offline_and_missing_fails_once_in_one_line_naming_the_folder(tmp_path, capsys, offline):
    stamp = tmp_path / "stamp.txt"
    code = main(["fetch-data", "cifar10", "--data-root", str(tmp_path / "data"), "--download", "--stamp", str(stamp)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"'{tmp_path / 'data' / 'cifar-10-batches-py'}' is missing" in err
    assert "the download failed (network is unreachable)" in err and "fill" in err
    assert not stamp.exists()


def test_present_cifar_is_checked_and_stamped(tmp_path, capsys, accept_fake_cifar_md5, offline):
    write_fake_cifar10(tmp_path)
    stamp = tmp_path / "stamps" / "cifar10.txt"
    assert main(["fetch-data", "cifar10", "--data-root", str(tmp_path), "--download", "--stamp", str(stamp)]) == 0
    assert "100 train and 15 test images" in stamp.read_text()


def test_download_off_says_so(tmp_path):
    with pytest.raises(DataError, match=r"download is off \(data.cifar100.download: false\)"):
        fetch_dataset("cifar100", tmp_path, download=False)


def test_jpeg_archive_is_checked_and_its_absence_names_the_folder(tmp_path):
    root = write_jpeg_archive(tmp_path)
    assert "gzip CRC ok" in fetch_dataset("cifar10-jpeg", root)
    with pytest.raises(DataError) as error:
        fetch_dataset("cifar10-jpeg", tmp_path / "empty")
    message = str(error.value)
    assert f"'{tmp_path / 'empty'}' lacks cifar10-jpeg.tar.gz or cifar10-jpeg" in message and "\n" not in message


def test_imagenet_needs_both_folders_and_generated_data_nothing(tmp_path):
    write_image_folder(tmp_path, splits=("train",))
    with pytest.raises(DataError, match="lacks train/ and val/ \\(ImageFolder layout\\)"):
        fetch_dataset("imagenet", tmp_path)
    assert "generated" in fetch_dataset("synthetic", None)


@pytest.mark.slow
def test_paper_dry_run_has_one_data_job_per_dataset_and_smoke_none(tmp_path):
    imagenet = tmp_path / "imagenet"
    (imagenet / "train").mkdir(parents=True)
    (imagenet / "val").mkdir()
    dry = snakemake("all", "-n", "-p", "--config", f"data={{imagenet: {{data_root: {imagenet}}}}}", workdir=tmp_path)
    assert dry.returncode == 0, output(dry)[-3000:]
    text = output(dry)
    assert job_counts(text)["data"] == 3 and job_counts(text)["train"] == 64
    assert "freeadv fetch-data cifar10 --data-root data --download --stamp results/paper/data/cifar10.txt" in text
    assert f"freeadv fetch-data imagenet --data-root {imagenet} --stamp" in text
    smoke = snakemake("all", "-n", "--config", "scale=smoke", workdir=tmp_path)
    assert smoke.returncode == 0 and "data" not in job_counts(output(smoke)), output(smoke)[-3000:]


@pytest.mark.slow
def test_missing_offline_dataset_stops_the_workflow_with_the_one_line(tmp_path):
    empty = tmp_path / "empty"
    offline = tmp_path / "offline.yaml"   # a file: --config would pass `false` as a string
    offline.write_text(f"data:\n  cifar10: {{data_root: '{empty}', download: false}}\n")
    run = snakemake("results/paper/data/cifar10.txt", "--cores", "1", "--configfile", str(offline),
                    workdir=tmp_path, timeout=300)
    assert run.returncode != 0
    assert (f"freeadv fetch-data: error: cifar10: '{empty / 'cifar-10-batches-py'}' is missing or incomplete "
            "and download is off") in output(run)
    assert not (tmp_path / "results/paper/data/cifar10.txt").exists()

