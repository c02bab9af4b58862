"""Data loading: every dataset from files the tests write themselves, the fixed orders, the
seeded subsets, the cache, and the exactness of seeded / resumed training passes."""
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.datasets.cifar

import freeadv.data
from freeadv.data import (CIFAR10_CLASSES, DATASETS, MEAN_STD, NUM_CLASSES, SPLIT_SIZES, DataBundle, DataError,
                          load_data, random_crop_flip)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Keep decoded-dataset caches of the tests out of the user's ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FREEADV_CACHE", str(cache))
    return cache


# --- fake CIFAR in torchvision's python-pickle format ---------------------------------------------

def fake_cifar_images(count: int, offset: int) -> np.ndarray:
    """Rows of 3072 uint8 in CIFAR's channel-major layout; every image and pixel distinguishable."""
    index = np.arange(offset, offset + count)[:, None, None, None]
    channel = np.arange(3)[None, :, None, None]
    row = np.arange(32)[None, None, :, None]
    col = np.arange(32)[None, None, None, :]
    images = (index * 7 + channel * 50 + row * 3 + col) % 256
    return images.astype(np.uint8).reshape(count, 3072)


def write_pickle(path, obj):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


@pytest.fixture
def accept_fake_cifar_md5(monkeypatch):
    """torchvision checks the md5 of the real archive's files; accept any file that exists."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda fpath, md5=None: os.path.isfile(fpath))


def write_fake_cifar10(root, per_batch=20, n_test=15):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in range(5):
        offset = batch * per_batch
        write_pickle(folder / f"data_batch_{batch + 1}",
                     {"data": fake_cifar_images(per_batch, offset),
                      "labels": [(offset + i) % 10 for i in range(per_batch)]})
    write_pickle(folder / "test_batch", {"data": fake_cifar_images(n_test, 1000),
                                         "labels": [(3 * i) % 10 for i in range(n_test)]})
    write_pickle(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES)})


def write_fake_cifar100(root, n_train=30, n_test=12):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    write_pickle(folder / "train", {"data": fake_cifar_images(n_train, 0),
                                    "fine_labels": [(7 * i) % 100 for i in range(n_train)],
                                    "coarse_labels": [i % 20 for i in range(n_train)]})
    write_pickle(folder / "test", {"data": fake_cifar_images(n_test, 500),
                                   "fine_labels": [99 - i for i in range(n_test)],
                                   "coarse_labels": [i % 20 for i in range(n_test)]})
    write_pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                                   "coarse_label_names": [f"s{i}" for i in range(20)]})


def test_cifar10_from_pickle_files(tmp_path, accept_fake_cifar_md5):
    write_fake_cifar10(tmp_path)
    data = load_data("cifar10", tmp_path)
    assert isinstance(data, DataBundle)
    assert (data.name, data.num_classes, data.image_size, data.n_train, data.n_test) == ("cifar10", 10, 32, 100, 15)
    assert (data.mean, data.std) == MEAN_STD["cifar10"]
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (100, 3, 32, 32)
    expected_train = torch.from_numpy(fake_cifar_images(100, 0).reshape(100, 3, 32, 32))
    assert torch.equal(data.train_x, expected_train)
    assert data.train_y.tolist() == [i % 10 for i in range(100)]
    x, y = data.test_tensors()
    assert x.dtype == torch.float32 and x.shape == (15, 3, 32, 32) and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    expected_test = torch.from_numpy(fake_cifar_images(15, 1000).reshape(15, 3, 32, 32)) / 255.0
    assert torch.equal(x, expected_test)
    assert y.tolist() == [(3 * i) % 10 for i in range(15)]   # original test order
    batches = list(data.test_batches(4, device="cpu"))
    assert [len(b[1]) for b in batches] == [4, 4, 4, 3]
    assert torch.equal(torch.cat([b[0] for b in batches]), expected_test)


def test_cifar100_from_pickle_files(tmp_path, accept_fake_cifar_md5):
    write_fake_cifar100(tmp_path)
    data = load_data("cifar100", tmp_path, n_test=5)
    assert (data.num_classes, data.n_train, data.n_test) == (100, 30, 5)
    assert (data.mean, data.std) == MEAN_STD["cifar100"] != MEAN_STD["cifar10"]
    assert data.train_y.tolist() == [(7 * i) % 100 for i in range(30)]
    x, y = data.test_tensors()
    assert x.shape == (5, 3, 32, 32) and y.tolist() == [99, 98, 97, 96, 95]


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_names_the_expected_folder(tmp_path, name, folder):
    with pytest.raises(DataError) as error:
        load_data(name, tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / folder) in message and "download=true" in message and "\n" not in message


def test_failed_cifar_download_is_a_data_error(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    with pytest.raises(DataError, match="cifar-10-batches-py.*network is unreachable"):
        load_data("cifar10", tmp_path, download=True)


# --- subsets ------------------------------------------------------------------------------------

def test_train_subset_is_seeded_by_data_seed_only(tmp_path, accept_fake_cifar_md5):
    write_fake_cifar10(tmp_path)
    full = load_data("cifar10", tmp_path)
    first = load_data("cifar10", tmp_path, n_train=30, n_test=7, data_seed=0)
    again = load_data("cifar10", tmp_path, n_train=30, n_test=7, data_seed=0)
    other = load_data("cifar10", tmp_path, n_train=30, data_seed=1)
    assert first.n_train == 30 and first.n_test == 7
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.train_y, again.train_y)
    assert not torch.equal(first.train_x, other.train_x)
    # a genuine subset of the split, labels kept with their images
    index_of = {bytes(image.numpy()): i for i, image in enumerate(full.train_x)}
    picked = [index_of[bytes(image.numpy())] for image in first.train_x]
    assert len(set(picked)) == 30 and torch.equal(first.train_y, full.train_y[picked])
    # the training seed only reorders, it never changes which images are used
    unaugmented = load_data("cifar10", tmp_path, n_train=30, data_seed=0, augment=False)
    seen = {seed: sorted(bytes(x.mul(255).round().byte().numpy()) for batch, _ in unaugmented.train_batches(
        10, epoch=0, seed=seed, device="cpu") for x in batch) for seed in (0, 5)}
    assert seen[0] == seen[5] == sorted(bytes(image.numpy()) for image in first.train_x)
    assert torch.equal(first.test_tensors()[0], full.test_tensors()[0][:7])  # n_test keeps the first images


def test_too_large_subsets_and_unknown_names_are_data_errors(tmp_path, accept_fake_cifar_md5):
    write_fake_cifar10(tmp_path)
    with pytest.raises(DataError, match=r"n_train=101.*100"):
        load_data("cifar10", tmp_path, n_train=101)
    with pytest.raises(DataError, match=r"n_test=16.*15"):
        load_data("cifar10", tmp_path, n_test=16)
    with pytest.raises(DataError, match=r"n_train=0"):
        load_data("synthetic", tmp_path, n_train=0)
    with pytest.raises(DataError) as error:
        load_data("mnist", tmp_path)
    assert all(name in str(error.value) for name in DATASETS)


# --- cifar10-jpeg --------------------------------------------------------------------------------

JPEG_COUNTS = {"train": 3, "test": 2}


def jpeg_gray_level(split: str, number: int, class_index: int) -> int:
    """Flat images survive JPEG almost exactly, so the level identifies (split, number, class)."""
    return 10 + 120 * (split == "test") + 30 * number + 3 * class_index


def write_jpeg_folder(parent):
    """ImageFolder layout <parent>/cifar10-jpeg/{train,test}/<class>/NNNN.jpg, numbered per class."""
    for split, count in JPEG_COUNTS.items():
        for class_index, class_name in enumerate(CIFAR10_CLASSES):
            folder = parent / "cifar10-jpeg" / split / class_name
            folder.mkdir(parents=True)
            for number in range(count):
                level = jpeg_gray_level(split, number, class_index)
                image = PIL.Image.new("RGB", (32, 32), (level, level, level))
                image.save(folder / f"{number:04d}.jpg", quality=75)
    return parent / "cifar10-jpeg"


def write_jpeg_archive(tmp_path):
    folder = write_jpeg_folder(tmp_path / "source")
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar10-jpeg")   # class-major member order, unlike the loaded order
    return root


def check_jpeg_order(data):
    assert (data.num_classes, data.n_train, data.n_test, data.image_size) == (10, 30, 20, 32)
    for split, images, labels in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        numbers = range(JPEG_COUNTS[split])
        assert labels.tolist() == [c for _ in numbers for c in range(10)]   # interleaved by (number, class)
        expected = torch.tensor([jpeg_gray_level(split, n, c) for n in numbers for c in range(10)]).float()
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
        assert (images.float().mean(dim=(1, 2, 3)) - expected).abs().max() < 3


def test_cifar10_jpeg_archive_order_and_cache(tmp_path, monkeypatch, isolated_cache):
    root = write_jpeg_archive(tmp_path)
    cold = load_data("cifar10-jpeg", root)
    check_jpeg_order(cold)
    assert (cold.mean, cold.std) == MEAN_STD["cifar10"]
    assert sorted(p.name for p in root.iterdir()) == ["cifar10-jpeg.tar.gz"]   # nothing written into root
    assert len(list(isolated_cache.glob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded JPEGs although a cache exists")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    cached = load_data("cifar10-jpeg", root, n_test=10)
    assert torch.equal(cached.train_x, cold.train_x) and torch.equal(cached.test_y, cold.test_y[:10])
    # the cache is keyed by the archive's sha256: a touched archive is not decoded again, a changed one is
    os.utime(root / "cifar10-jpeg.tar.gz", ns=(0, 123_456_789))
    assert torch.equal(load_data("cifar10-jpeg", root).train_x, cold.train_x)
    note = tmp_path / "source" / "NOTE.txt"
    note.write_text("not an image: other archive bytes, the same images")
    with tarfile.open(root / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "source" / "cifar10-jpeg", arcname="cifar10-jpeg")
        tar.add(note, arcname="cifar10-jpeg/NOTE.txt")
    with pytest.raises(AssertionError, match="decoded JPEGs"):
        load_data("cifar10-jpeg", root)


def test_cifar10_jpeg_extracted_folder_matches_archive(tmp_path):
    root = write_jpeg_archive(tmp_path)
    from_archive = load_data("cifar10-jpeg", root)
    from_folder = load_data("cifar10-jpeg", tmp_path / "source")
    check_jpeg_order(from_folder)
    assert torch.equal(from_folder.train_x, from_archive.train_x)
    assert torch.equal(from_folder.test_x, from_archive.test_x)


def test_cifar10_jpeg_missing_names_the_paths(tmp_path):
    with pytest.raises(DataError, match="cifar10-jpeg.tar.gz") as error:
        load_data("cifar10-jpeg", tmp_path)
    assert str(tmp_path) in str(error.value)


# --- imagenet ------------------------------------------------------------------------------------

def write_image_folder(root, splits=("train", "val"), per_class=(5, 2)):
    generator = np.random.default_rng(0)
    for split, count in zip(splits, per_class):
        for class_name in ("n01", "n02"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for number in range(count):
                pixels = generator.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                PIL.Image.fromarray(pixels).save(folder / f"{number}.JPEG")


def test_imagenet_batches_are_deterministic_and_resumable(tmp_path):
    write_image_folder(tmp_path)
    data = load_data("imagenet", tmp_path, num_workers=0)
    assert (data.num_classes, data.image_size, data.n_train, data.n_test) == (1000, 224, 10, 4)
    assert data.num_train_batches(4) == 3
    rng_before = torch.get_rng_state()
    full = list(data.train_batches(4, epoch=1, seed=3, device="cpu"))
    assert torch.equal(torch.get_rng_state(), rng_before)   # the caller's global RNG is left alone
    assert [x.shape for x, _ in full] == [(4, 3, 224, 224), (4, 3, 224, 224), (2, 3, 224, 224)]
    assert all(x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 for x, _ in full)
    assert sorted(torch.cat([y for _, y in full]).tolist()) == [0] * 5 + [1] * 5
    resumed = list(data.train_batches(4, epoch=1, seed=3, device="cpu", start_batch=1))
    assert len(resumed) == 2
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[1:], resumed))
    # augmentation is tied to (seed, epoch, batch, slot), not to which worker loads it
    with_workers = load_data("imagenet", tmp_path, num_workers=2)
    parallel = list(with_workers.train_batches(4, epoch=1, seed=3, device="cpu"))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full, parallel))
    test = list(data.test_batches(3, device="cpu"))
    assert [x.shape[0] for x, _ in test] == [3, 1] and test[0][0].shape[1:] == (3, 224, 224)
    assert torch.cat([y for _, y in test]).tolist() == [0, 0, 1, 1]
    with pytest.raises(DataError):
        data.test_tensors()


def test_imagenet_subset_and_missing_val(tmp_path):
    write_image_folder(tmp_path)
    subset = load_data("imagenet", tmp_path, n_train=6, n_test=3, data_seed=4, num_workers=0)
    assert (subset.n_train, subset.n_test) == (6, 3)
    assert torch.equal(subset.train_indices, load_data("imagenet", tmp_path, n_train=6, data_seed=4).train_indices)
    with pytest.raises(DataError, match="n_train=11"):
        load_data("imagenet", tmp_path, n_train=11)
    only_train = tmp_path / "only_train"
    write_image_folder(only_train, splits=("train",), per_class=(1,))
    with pytest.raises(DataError, match=str(only_train / "val")):
        load_data("imagenet", only_train)


# --- synthetic -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_synthetic():
    return load_data("synthetic", "unused")


def test_synthetic_is_deterministic_and_seeded(default_synthetic):
    data = default_synthetic
    assert (data.n_train, data.n_test, data.num_classes, data.image_size) == (2000, 500, 10, 32)
    assert NUM_CLASSES["synthetic"] == 10 and (data.mean, data.std) == MEAN_STD["cifar10"]
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (2000, 3, 32, 32)
    assert data.train_y.bincount().tolist() == [200] * 10 and data.test_y.bincount().tolist() == [50] * 10
    assert not torch.equal(data.train_x[:500], data.test_x)
    small = load_data("synthetic", None, n_train=300, n_test=60)
    assert torch.equal(small.train_x, data.train_x[:300]) and torch.equal(small.test_x, data.test_x[:60])
    assert torch.equal(small.test_y, data.test_y[:60])
    again = load_data("synthetic", None, n_train=300, n_test=60)
    assert torch.equal(small.train_x, again.train_x) and torch.equal(small.test_x, again.test_x)
    other_seed = load_data("synthetic", None, n_train=300, n_test=60, data_seed=1)
    assert not torch.equal(small.train_x, other_seed.train_x) and not torch.equal(small.test_x, other_seed.test_x)


def test_synthetic_is_learnable_but_not_robust_for_free(default_synthetic):
    """Template matching (nearest class mean, a linear classifier) learns the classes, but its exact
    worst case at eps=8/255 loses much of that accuracy, without falling to zero: eps-8 attacks
    matter on this data and there is robustness for adversarial training to win."""
    data = default_synthetic
    x_train, y_train = data.train_x.float().div(255).flatten(1), data.train_y
    x_test, y_test = data.test_tensors()
    centre = x_train.mean(0)
    class_means = torch.stack([(x_train[y_train == c] - centre).mean(0) for c in range(10)])
    logits = (x_test.flatten(1) - centre) @ class_means.T - class_means.pow(2).sum(1) / 2
    correct = logits.argmax(1) == y_test
    # for a linear model the L-inf worst case against class j lowers the margin by eps * ||w_y - w_j||_1
    margins = logits.gather(1, y_test[:, None]) - logits
    margin_loss = 8 / 255 * (class_means[y_test][:, None, :] - class_means[None]).abs().sum(-1)
    worst_margin = (margins - margin_loss).scatter(1, y_test[:, None], float("inf")).min(1).values
    clean, robust = correct.float().mean().item(), (correct & (worst_margin > 0)).float().mean().item()
    assert clean > 0.75, clean
    assert 0.1 < robust < 0.6 * clean, (clean, robust)


# --- training passes -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_synthetic():
    return load_data("synthetic", None, n_train=100, n_test=20)


def as_list(batches):
    return [(x.clone(), y.clone()) for x, y in batches]


def same_batches(a, b):
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_train_batches_are_a_function_of_seed_and_epoch(small_synthetic):
    data = small_synthetic
    assert data.num_train_batches(32) == 3 and data.num_train_batches(50) == 2
    full = as_list(data.train_batches(32, epoch=2, seed=7, device="cpu"))
    assert [len(y) for _, y in full] == [32, 32, 32]     # full batches only, as the official CIFAR code
    for x, y in full:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == torch.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
    whole = as_list(data.train_batches(50, epoch=2, seed=7, device="cpu"))
    assert sorted(torch.cat([y for _, y in whole]).tolist()) == sorted(data.train_y.tolist())   # one full pass
    assert same_batches(full, as_list(data.train_batches(32, epoch=2, seed=7, device="cpu")))
    for start in (1, 2, 3):
        assert same_batches(full[start:], as_list(data.train_batches(32, epoch=2, seed=7, device="cpu",
                                                                     start_batch=start)))
    next_epoch = as_list(data.train_batches(32, epoch=3, seed=7, device="cpu"))
    other_seed = as_list(data.train_batches(32, epoch=2, seed=8, device="cpu"))
    assert not torch.equal(full[0][1], next_epoch[0][1]) and not torch.equal(full[0][1], other_seed[0][1])


def crop_flip_candidates(image, pad=2):
    """All (2 pad + 1)^2 crops of the zero-padded image, each also flipped."""
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    size = image.shape[-1]
    crops = [padded[:, r:r + size, c:c + size] for r in range(2 * pad + 1) for c in range(2 * pad + 1)]
    return crops + [crop.flip(-1) for crop in crops]


def test_augmentation_is_a_pad_crop_flip_of_each_image(small_synthetic):
    data = small_synthetic
    plain = load_data("synthetic", None, n_train=100, n_test=20, augment=False)
    augmented = as_list(data.train_batches(50, epoch=0, seed=1, device="cpu"))
    originals = as_list(plain.train_batches(50, epoch=0, seed=1, device="cpu"))   # same order, no augmentation
    assert all(torch.equal(ya, yo) for (_, ya), (_, yo) in zip(augmented, originals))
    flipped, offsets = 0, set()
    for (x_aug, _), (x_orig, _) in zip(augmented, originals):
        assert not torch.equal(x_aug, x_orig)
        for image_aug, image_orig in zip(x_aug, x_orig):
            matches = [i for i, candidate in enumerate(crop_flip_candidates(image_orig))
                       if torch.equal(candidate, image_aug)]
            assert len(matches) == 1, "augmented image is not a pad-2 crop (+flip) of its original"
            flipped += matches[0] >= 25
            offsets.add(matches[0] % 25)
    assert 25 <= flipped <= 75 and len(offsets) >= 15   # about half flipped; crops spread over the 25 offsets
    # augment=False hands out the stored pixels exactly
    stored = {bytes(image.numpy()) for image in plain.train_x}
    assert all(bytes(image.mul(255).round().byte().numpy()) in stored for x, _ in originals for image in x)


def test_random_crop_flip_uses_its_generator_only():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    first = random_crop_flip(x, torch.Generator().manual_seed(5))
    assert first.dtype == torch.uint8 and first.shape == x.shape
    assert torch.equal(first, random_crop_flip(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, random_crop_flip(x, torch.Generator().manual_seed(6)))


# --- the package: torch-free facts, torch-heavy names on first use ----------------------------------

def test_dataset_facts_import_without_torch():
    """The experiment plan and the Snakefile read these facts at parse time, where torch costs seconds."""
    code = ("import sys, freeadv.data as d; d.DATASETS, d.NUM_CLASSES, d.MEAN_STD, d.SPLIT_SIZES, d.DataError; "
            "heavy = {'torch', 'torchvision', 'numpy', 'PIL'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_lazy_names_are_the_defining_modules_objects():
    from freeadv.data import bundle, jpeg, loading, subsets, synthetic
    assert freeadv.data.load_data is loading.load_data and DataBundle is bundle.DataBundle
    assert freeadv.data.cache_dir is jpeg.cache_dir and freeadv.data.make_synthetic is synthetic.make_synthetic
    assert freeadv.data.train_subset_indices is subsets.train_subset_indices
    for name in freeadv.data.__all__:
        getattr(freeadv.data, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        freeadv.data.no_such_name


def test_catalog_facts_cover_every_dataset():
    assert set(NUM_CLASSES) == set(MEAN_STD) == set(DATASETS)
    assert set(SPLIT_SIZES) == set(DATASETS) - {"synthetic"}
    assert SPLIT_SIZES["cifar10"] == SPLIT_SIZES["cifar10-jpeg"] == (50_000, 10_000)
    assert MEAN_STD["cifar10"][1][0] == 0.2470   # the value every committed run was trained with
