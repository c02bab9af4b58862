"""ImageNet's test order: RobustBench's 5,000 listed validation images first when the folder holds
them, else the first 5 images of each class; tiny image files in the real ImageNet val layout."""
import hashlib
import json
import io
import warnings
from pathlib import Path

import PIL.Image
import pytest

from freeadv.data import load_data
from freeadv.data.subsets import FALLBACK_PER_CLASS, imagenet_test_order, per_class_prefix, robustbench_imagenet_ids

ROBUSTBENCH_SHA256 = "d4121626d07722a0126c35b1563042e46a546f1a05ce705f2cdc635896d58574"   # the file as shipped


@pytest.fixture(scope="module")
def jpeg_bytes():
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (8, 8), (120, 30, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def wnids():
    """1,000 class folders: the 997 classes RobustBench's list draws from, and three more."""
    listed = sorted({image_id.split("/")[0] for image_id in robustbench_imagenet_ids()})
    return sorted(listed + [f"n9999999{k}" for k in range(1000 - len(listed))])


def write_imagenet(root: Path, wnids, jpeg: bytes, *, per_class: int, listed: list[str] = ()) -> None:
    """train/<wnid>/ with one image and val/<wnid>/ILSVRC2012_val_*.JPEG with ``per_class`` images
    named outside RobustBench's list, plus the ``listed`` ids."""
    number = 60_000   # past the 50,000 real validation images: never a listed name
    for wnid in wnids:
        (root / "train" / wnid).mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_1.JPEG").write_bytes(jpeg)
        (root / "val" / wnid).mkdir(parents=True)
        for _ in range(per_class):
            number += 1
            (root / "val" / wnid / f"ILSVRC2012_val_{number:08d}.JPEG").write_bytes(jpeg)
    for image_id in listed:
        (root / "val" / image_id).write_bytes(jpeg)


def test_the_shipped_list_is_robustbench_s():
    ids = robustbench_imagenet_ids()
    assert hashlib.sha256("\n".join(ids).encode()).hexdigest() == ROBUSTBENCH_SHA256
    assert len(ids) == len(set(ids)) == 5000 and len({i.split("/")[0] for i in ids}) == 997
    assert all(i.split("/")[1].startswith("ILSVRC2012_val_") for i in ids)


def test_per_class_prefix_takes_the_first_images_of_each_class():
    labels = [0, 0, 0, 1, 2, 2, 1, 1, 1]
    assert per_class_prefix(labels, per_class=2) == [0, 1, 3, 6, 4, 5]


def test_without_the_listed_files_every_class_gives_five(tmp_path, wnids, jpeg_bytes):
    write_imagenet(tmp_path, wnids, jpeg_bytes, per_class=FALLBACK_PER_CLASS + 1)
    with pytest.warns(UserWarning, match="first 5 images of each of its 1,000 classes first, not RobustBench's"):
        data = load_data("imagenet", tmp_path, n_test=5000, num_workers=0)
    labels = data.test_folder.targets
    first = [labels[i] for i in data.test_order[:5000]]
    assert sorted(first) == [label for label in range(1000) for _ in range(FALLBACK_PER_CLASS)]
    assert sorted(data.test_order) == list(range(6000)) and "5,000 of them" in data.test_subset
    names = [Path(data.test_folder.samples[i][0]).name for i in data.test_order[:6]]
    assert names == [f"ILSVRC2012_val_{60_001 + k:08d}.JPEG" for k in range(5)] + ["ILSVRC2012_val_00060007.JPEG"]
    small = load_data("imagenet", tmp_path, n_test=6, num_workers=0)
    batches = list(small.test_batches(4, device="cpu"))
    assert [y.tolist() for _, y in batches] == [[0, 0, 0, 0], [0, 1]]


def test_the_listed_files_come_first_in_robustbench_s_order(tmp_path, wnids, jpeg_bytes):
    ids = robustbench_imagenet_ids()
    write_imagenet(tmp_path, wnids, jpeg_bytes, per_class=1, listed=ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the real subset: no notice
        data = load_data("imagenet", tmp_path, n_test=3, num_workers=0)
    samples = data.test_folder.samples
    assert ["/".join(Path(samples[i][0]).parts[-2:]) for i in data.test_order[:5000]] == ids
    assert sorted(data.test_order) == list(range(6000))
    assert data.test_subset.startswith("RobustBench's 5,000 ImageNet images first (robustbench 1.1.1")
    labels = [y for _, y in data.test_batches(2, device="cpu")]
    assert [int(y) for batch in labels for y in batch] == [samples[i][1] for i in data.test_order[:3]]


def test_one_missing_listed_file_falls_back():
    ids = robustbench_imagenet_ids()
    paths = [f"/val/{image_id}" for image_id in ids[1:]]
    classes = {wnid: label for label, wnid in enumerate(sorted({i.split("/")[0] for i in ids}))}
    labels = [classes[i.split("/")[0]] for i in ids[1:]]
    order = imagenet_test_order(paths, labels)
    assert not order.robustbench and "(1 of them are not in the folder)" in order.account
    assert order.order[:5] == per_class_prefix(labels)[:5] and sorted(order.order) == list(range(4999))


def test_an_eval_records_which_images_its_first_n_are():
    """An evaluation on a bundle that says which images lead its test split (ImageNet: RobustBench's
    list, or the fallback) records that sentence; other datasets' evals are as before."""
    import torch
    from freeadv.models import build_model
    from freeadv.runs.evaluation import measure
    from freeadv.attacks import AttackSpec
    from freeadv.schemas import check
    data = load_data("synthetic", None, n_train=32, n_test=16)
    model = build_model("small_cnn", 10, width=4)
    spec = AttackSpec("pgd", 2, 8.0, 2.0)
    plain = measure(model, data, spec, batch_size=16, seed=0, device=torch.device("cpu"), progress=False,
                    state_path=None)
    assert "test_subset" not in plain
    data.test_subset = "the first 5 images of each of its 1,000 classes first, not RobustBench's 5,000"
    record = measure(model, data, spec, batch_size=16, seed=0, device=torch.device("cpu"), progress=False,
                     state_path=None)
    assert record["test_subset"] == data.test_subset
    check(json.loads(json.dumps(record)), "eval", "eval.json")   # as a file of it would be read
