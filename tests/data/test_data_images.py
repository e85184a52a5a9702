"""Image loaders: IDX parsing, MNIST from IDX files, TFDS under mock_data, digits, errors."""

from __future__ import annotations

import numpy as np
import pytest

from jaxebm.data import images


@pytest.mark.parametrize("arr", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([3, 1, 4, 1, 5], dtype=np.uint8),
    np.array([-7, 0, 7], dtype=np.int8),
    np.arange(6, dtype=np.int16).reshape(3, 2) - 3,
    np.array([[1, -2**31]], dtype=np.int32),
    np.array([0.5, -1.25], dtype=np.float32),
    np.array([[[1e300]]], dtype=np.float64),
], ids=lambda a: f"{a.dtype}{a.shape}")
def test_idx_round_trip(arr):
    out = images.parse_idx(images.encode_idx(arr))
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_idx_known_bytes():
    # LeCun's header: magic 0x00000801 (ubyte, 1 dim), size 3 big-endian, then the bytes
    raw = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])
    np.testing.assert_array_equal(images.parse_idx(raw), [7, 8, 9])
    assert images.encode_idx(np.array([7, 8, 9], np.uint8)) == raw


@pytest.mark.parametrize("raw,match", [
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 0]), "magic"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 0]), "element type"),
    (bytes([0, 0, 8, 2, 0, 0]), "truncated"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]), "payload"),
])
def test_idx_errors(raw, match):
    with pytest.raises(ValueError, match=match):
        images.parse_idx(raw, source="f.idx")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx(tmp_path, gz, write_mnist_idx):
    arrays = write_mnist_idx(tmp_path, gz=gz)
    splits = images.load_images("mnist", tmp_path, validation_size=4)
    np.testing.assert_array_equal(splits["train"]["x"][..., 0], arrays["train", "x"][:8])
    np.testing.assert_array_equal(splits["validation"]["x"][..., 0], arrays["train", "x"][8:])
    np.testing.assert_array_equal(splits["test"]["y"], arrays["test", "y"])
    for s in splits.values():
        assert s["x"].dtype == np.uint8 and s["x"].shape[1:] == (28, 28, 1)
        assert s["y"].dtype == np.int32


def test_validation_size_checked(tmp_path, write_mnist_idx):
    write_mnist_idx(tmp_path)
    with pytest.raises(ValueError, match="validation_size 12"):
        images.load_images("mnist", tmp_path, validation_size=12)


def test_missing_data_dir():
    with pytest.raises(FileNotFoundError, match="does not exist.*tfds build cifar10"):
        images.load_images("cifar10", "/nonexistent/jaxebm-data")


@pytest.fixture(scope="module")
def tfds():
    return pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "svhn"])
def test_tfds_mock(tfds, name):
    with tfds.testing.mock_data(num_examples=9):
        splits = images.load_images(name, None, validation_size=2)
    shape = images.IMAGE_SHAPES[name]
    assert [s["x"].shape[0] for s in splits.values()] == [7, 2, 9]
    for s in splits.values():
        assert s["x"].dtype == np.uint8 and s["x"].shape[1:] == shape
        assert s["y"].dtype == np.int32
        assert s["y"].min() >= 0 and s["y"].max() < images.NUM_CLASSES[name]


@pytest.mark.parametrize("name", ["svhn", "cifar100"])
def test_test_images_read_only_the_test_split(tfds, name, monkeypatch):
    requested = []
    real = tfds.data_source

    def spy(*args, split, **kwargs):
        requested.append(split)
        return real(*args, split=split, **kwargs)

    with tfds.testing.mock_data(num_examples=9):
        full = images.load_images(name, None, validation_size=0)["test"]
        monkeypatch.setattr(tfds, "data_source", spy)
        test = images.load_test_images(name, None, limit=4)
    assert requested == ["test"]
    np.testing.assert_array_equal(test["x"], full["x"][:4])
    np.testing.assert_array_equal(test["y"], full["y"][:4])


def test_test_images_from_idx(tmp_path, write_mnist_idx):
    arrays = write_mnist_idx(tmp_path)
    test = images.load_test_images("mnist", tmp_path, limit=3)
    np.testing.assert_array_equal(test["x"][..., 0], arrays["test", "x"][:3])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        images.load_test_images("svhn", "/nonexistent/jaxebm-data")


def test_tfds_not_prepared_is_a_clear_error(tfds, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        images.load_images("mnist", tmp_path)
    msg = str(info.value)
    assert "pip install 'jaxebm[tfds]'" in msg and "tfds build mnist" in msg and "IDX" in msg
    assert not any(tmp_path.iterdir())  # nothing downloaded or prepared


def test_digits():
    splits = images.load_digits_splits()
    sizes = [s["x"].shape[0] for s in splits.values()]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 179
    for s in splits.values():
        assert s["x"].dtype == np.uint8 and s["x"].shape[1:] == (8, 8, 1)
        assert s["x"].max() <= 16 and s["y"].dtype == np.int32
    assert splits["train"]["x"].max() == 16  # n_bins = 17 levels, 0..16
    np.testing.assert_array_equal(images.load_digits_splits()["test"]["y"], splits["test"]["y"])


def test_digits_cross_validation_folds_tile_the_data_and_never_train_on_held_out_images():
    """Over folds 0..K-1 the held-out blocks (validation + test) cover every image once, each
    fold trains on the rest, and bad fold settings fail clearly."""
    fixed = images.load_digits_splits()
    every = np.concatenate([fixed[s]["x"] for s in ("train", "validation", "test")])
    labels = np.concatenate([fixed[s]["y"] for s in ("train", "validation", "test")])
    k = 5
    held_x, held_y = [], []
    for fold in range(k):
        splits = images.load_digits_splits(k, fold)
        held = np.concatenate([splits["validation"]["x"], splits["test"]["x"]])
        assert splits["train"]["x"].shape[0] + held.shape[0] == 1797
        assert abs(held.shape[0] - 1797 / k) < 1
        # no training image equals (as bytes, with its label) a held-out one of the same fold
        train_keys = {a.tobytes() + bytes([b]) for a, b in zip(splits["train"]["x"], splits["train"]["y"])}
        held_keys = {a.tobytes() + bytes([b]) for a, b in
                     zip(held, np.concatenate([splits["validation"]["y"], splits["test"]["y"]]))}
        assert not train_keys & held_keys
        held_x.append(held)
        held_y.append(np.concatenate([splits["validation"]["y"], splits["test"]["y"]]))
    # in fold order, the held-out blocks are the fixed permuted order itself
    np.testing.assert_array_equal(np.concatenate(held_x), every)
    np.testing.assert_array_equal(np.concatenate(held_y), labels)
    for folds, fold in ((1, 0), (5, 5), (5, -1), (2.5, 0)):
        with pytest.raises(ValueError, match="cv_fold"):
            images.load_digits_splits(folds, fold)


def test_cross_validation_folds_are_only_for_digits():
    from jaxebm import data

    from types import SimpleNamespace

    cfg = SimpleNamespace(name="moons", batch_size=8, cv_folds=5, cv_fold=0)
    with pytest.raises(ValueError, match="'digits' set, not 'moons'"):
        data.load(cfg, seed=0)
