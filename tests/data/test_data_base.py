"""ArrayDataset / SampledDataset: determinism per (seed, step), epochs, edge validation."""

from __future__ import annotations

import numpy as np
import pytest

from jaxebm.data.base import ArrayDataset, SampledDataset, validate_array


def _splits(n_train=50, n_eval=7, dim=3):
    rng = np.random.default_rng(0)
    return {s: {"x": rng.normal(size=(n, dim)).astype(np.float32),
                "y": np.arange(n) % 4}
            for s, n in (("train", n_train), ("validation", n_eval), ("test", n_eval))}


def _gauss(rng, n):
    return rng.normal(size=(n, 2))


def _array_ds(seed=1, batch=8):
    return ArrayDataset(_splits(), batch, seed, name="toyarr", num_classes=4)


def _sampled_ds(seed=1, batch=8):
    return SampledDataset(_gauss, batch, seed, eval_size=11, name="gauss")


@pytest.mark.parametrize("make", [_array_ds, _sampled_ds], ids=["array", "sampled"])
def test_train_batch_is_a_function_of_seed_and_step(make):
    a, b = make(seed=3), make(seed=3)
    # a fresh object resumed at step 17 sees the same batch, whatever was drawn before
    for step in (0, 1, 5):
        a.train_batch(step)
    for key in a.train_batch(17):
        np.testing.assert_array_equal(a.train_batch(17)[key], b.train_batch(17)[key])
    assert not np.array_equal(a.train_batch(0)["x"], a.train_batch(1)["x"])
    assert not np.array_equal(make(seed=3).train_batch(0)["x"], make(seed=4).train_batch(0)["x"])


@pytest.mark.parametrize("make", [_array_ds, _sampled_ds], ids=["array", "sampled"])
def test_batch_shapes_and_dtypes(make):
    ds = make()
    batch = ds.train_batch(2)
    assert batch["x"].shape == (ds.batch_size, *ds.example_shape)
    assert batch["x"].dtype == np.float32
    if ds.num_classes is not None:
        assert batch["y"].dtype == np.int32 and batch["y"].shape == (ds.batch_size,)
    for split in ("train", "validation", "test"):
        assert ds.split(split)["x"].shape[1:] == ds.example_shape


def test_array_epochs_sample_without_replacement():
    ds = ArrayDataset({s: {"x": np.arange(20, dtype=np.float32)[:, None]}
                       for s in ("train", "validation", "test")}, 5, seed=7, name="ids")
    for epoch in range(3):
        seen = np.concatenate([ds.train_batch(epoch * 4 + i)["x"][:, 0] for i in range(4)])
        np.testing.assert_array_equal(np.sort(seen), np.arange(20))
    assert not np.array_equal(ds.train_batch(0)["x"], ds.train_batch(4)["x"])


def test_sampled_eval_splits_fixed_and_distinct_from_training():
    ds = _sampled_ds()
    val, test = ds.split("validation")["x"], ds.split("test")["x"]
    assert val.shape == (11, 2)
    np.testing.assert_array_equal(val, _sampled_ds().split("validation")["x"])
    assert not np.array_equal(val, test)
    train_rows = {tuple(r) for s in range(50) for r in ds.train_batch(s)["x"]}
    assert not any(tuple(r) in train_rows for r in np.concatenate([val, test]))


@pytest.mark.parametrize("bad,match", [
    (np.array([[0.0, np.nan]]), "NaN"),
    (np.array([[0.0, np.inf]]), "inf"),
    (np.zeros((2, 2, 2)), "rank 3"),
])
def test_validate_array_errors_name_dataset(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        validate_array("mydata", bad, rank=2)
    assert "mydata" in str(info.value)


def test_array_dataset_rejects_nan_and_mismatches():
    splits = _splits()
    splits["test"]["x"][0, 0] = np.nan
    with pytest.raises(ValueError, match="'toyarr'.*NaN"):
        ArrayDataset(splits, 8, 0, name="toyarr")
    splits = _splits()
    splits["validation"]["y"] = splits["validation"]["y"][:-1]
    with pytest.raises(ValueError, match="examples"):
        ArrayDataset(splits, 8, 0, name="toyarr")
    with pytest.raises(ValueError, match="batch_size 51 exceeds"):
        ArrayDataset(_splits(), 51, 0, name="toyarr")
    with pytest.raises(ValueError, match="missing splits"):
        ArrayDataset({"train": _splits()["train"]}, 8, 0)


def test_sampled_dataset_rejects_nan_sampler_and_bad_args():
    with pytest.raises(ValueError, match="'bad'.*NaN"):
        SampledDataset(lambda rng, n: np.full((n, 2), np.nan), 4, 0, 10, name="bad")
    with pytest.raises(ValueError, match="seed"):
        SampledDataset(_gauss, 4, -1, 10)
    with pytest.raises(ValueError, match="unknown split"):
        _sampled_ds().split("dev")
    with pytest.raises(ValueError, match="step"):
        _array_ds().train_batch(-1)
