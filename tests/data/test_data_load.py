"""``jaxebm.data.load``: dispatch by name, config fields, clear errors."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from jaxebm import data
from jaxebm.data import toy


def cfg(**fields):
    return ml_collections.ConfigDict({"dir": None, "batch_size": 32, **fields})


def test_names():
    assert set(data.DATASET_NAMES) == {
        "swissroll", "circles", "rings", "moons", "8gaussians", "pinwheel", "2spirals",
        "checkerboard", "power", "gas", "hepmass", "miniboone", "bsds300", "tabular_default",
        "mnist", "cifar10", "cifar100", "svhn", "digits"}


@pytest.mark.parametrize("name", sorted(toy.TOY_DENSITIES))
def test_toy_load(name):
    ds = data.load(cfg(name=name, eval_size=500), seed=0)
    assert isinstance(ds, data.SampledDataset)
    assert ds.example_shape == (2,) and ds.n_bins is None and ds.num_classes is None
    assert ds.split("test")["x"].shape == (500, 2)
    batch = ds.train_batch(3)
    assert batch["x"].shape == (32, 2) and batch["x"].dtype == np.float32
    np.testing.assert_array_equal(batch["x"], data.load(cfg(name=name), seed=0).train_batch(3)["x"])


def test_eval_size_default_when_field_absent():
    ds = data.load(cfg(name="8gaussians"), seed=1)
    assert ds.split("validation")["x"].shape == (data.DEFAULT_EVAL_SIZE, 2)


@pytest.mark.parametrize("name,shape,n_bins,num_classes,dtype", [
    ("digits", (8, 8, 1), 17, 10, np.uint8),
    ("tabular_default", (30,), None, None, np.float32),
])
def test_offline_sets(name, shape, n_bins, num_classes, dtype):
    ds = data.load(cfg(name=name), seed=2)
    assert (ds.example_shape, ds.n_bins, ds.num_classes) == (shape, n_bins, num_classes)
    batch = ds.train_batch(0)
    assert batch["x"].dtype == dtype and batch["x"].shape == (32, *shape)
    assert ("y" in batch) == (num_classes is not None)
    np.testing.assert_array_equal(batch["x"], data.load(cfg(name=name), seed=2).train_batch(0)["x"])
    assert not np.array_equal(batch["x"], ds.train_batch(1)["x"])


def test_mnist_from_idx_dir(tmp_path, write_mnist_idx):
    write_mnist_idx(tmp_path, n_train=40, n_test=6)
    ds = data.load(cfg(name="mnist", dir=str(tmp_path), batch_size=8, validation_size=10),
                   seed=0)
    assert (ds.example_shape, ds.n_bins, ds.num_classes) == ((28, 28, 1), 256, 10)
    assert ds.split("validation")["x"].shape[0] == 10
    assert ds.train_batch(0)["x"].dtype == np.uint8


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'mnsit'.*8gaussians.*digits"):
        data.load(cfg(name="mnsit"), seed=0)


def test_missing_required_field():
    with pytest.raises(ValueError, match="batch_size"):
        data.load(ml_collections.ConfigDict({"name": "moons"}), seed=0)


@pytest.mark.parametrize("name,err", [("power", "1161203"), ("gas", "1161203"),
                                      ("cifar10", "tfds build cifar10")])
def test_missing_dir(name, err, tmp_path):
    with pytest.raises(FileNotFoundError, match=err):
        data.load(cfg(name=name, dir=str(tmp_path / "absent")), seed=0)


def test_empty_dir_means_unset():
    # the harness's base config has dir="": offline sets ignore it, file sets say it is unset
    assert data.load(cfg(name="digits", dir=""), seed=0).n_bins == 17
    with pytest.raises(FileNotFoundError, match="unset"):
        data.load(cfg(name="miniboone", dir=""), seed=0)
