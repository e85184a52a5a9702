"""MAF tabular preprocessing on tiny files of the standard formats, and the offline default."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import pytest

from jaxebm.data import tabular


def _tail_sizes(n):
    n_test = int(0.1 * n)
    n_val = int(0.1 * (n - n_test))
    return n - n_test - n_val, n_val, n_test


def _sizes(splits):
    return tuple(splits[s]["x"].shape[0] for s in ("train", "validation", "test"))


def _assert_standardized(x, ddof):
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(0, ddof=ddof), 1.0, atol=1e-5)


def write_power(root, n=230):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n, 8))
    data[:, 7] = np.arange(n)  # a distinctive last (time) column: MAF adds no noise to it
    os.makedirs(root / "power")
    np.save(root / "power" / "data.npy", data)
    return data


def test_power(tmp_path):
    raw = write_power(tmp_path)
    splits = tabular.load_power(tmp_path)
    assert _sizes(splits) == _tail_sizes(230)
    assert all(s["x"].shape[1] == 6 and s["x"].dtype == np.float32 for s in splits.values())
    _assert_standardized(np.vstack([splits["train"]["x"], splits["validation"]["x"]]), 0)
    # rows are shuffled by RandomState(42); the time column is an affine image of the raw one
    t = np.concatenate([splits[s]["x"][:, -1] for s in ("train", "validation", "test")])
    order = raw[:, 7].copy()
    np.random.RandomState(42).shuffle(order)
    slope, icpt = np.polyfit(order, t, 1)
    np.testing.assert_allclose(slope * order + icpt, t, atol=1e-5)
    # deterministic
    np.testing.assert_array_equal(tabular.load_power(tmp_path)["test"]["x"], splits["test"]["x"])


def test_gas_drops_correlated_columns(tmp_path):
    rng = np.random.default_rng(1)
    n = 150
    cols = {c: rng.normal(size=n) for c in ("Time", "Meth", "Eth", "A", "B", "C", "D")}
    cols["E"] = cols["B"] * 2.0 + 1e-3 * rng.normal(size=n)  # corr(B, E) > 0.98: B goes
    os.makedirs(tmp_path / "gas")
    pd.DataFrame(cols).to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    splits = tabular.load_gas(tmp_path)
    assert _sizes(splits) == _tail_sizes(n)
    allx = np.vstack([splits[s]["x"] for s in ("train", "validation", "test")])
    assert allx.shape[1] == 4  # A, C, D, E
    _assert_standardized(allx, 1)
    # no shuffle: the first training row is the first raw row, standardized
    a = cols["A"]
    assert splits["train"]["x"][0, 0] == pytest.approx((a[0] - a.mean()) / a.std(ddof=1),
                                                       abs=1e-5)


def test_hepmass(tmp_path):
    rng = np.random.default_rng(2)
    n_tr, n_te = 120, 40
    def frame(n, extra):
        label = (np.arange(n) % 3 != 0).astype(float)  # two thirds positive
        feats = rng.normal(size=(n, 4))
        positive = np.flatnonzero(label == 1)
        feats[positive[:7], 1] = -9.0  # smallest value of feature 1 repeats 7 > 5 times: gone
        feats[positive[:3], 2] = -9.0  # repeats 3 times: kept
        cols = {"# label": label, **{f"f{i}": feats[:, i] for i in range(4)}}
        if extra:
            cols["junk"] = rng.normal(size=n)
        return pd.DataFrame(cols)
    os.makedirs(tmp_path / "hepmass")
    tr = frame(n_tr, False)
    tr.to_csv(tmp_path / "hepmass" / "1000_train.csv", index=False)
    frame(n_te, True).to_csv(tmp_path / "hepmass" / "1000_test.csv", index=False)
    splits = tabular.load_hepmass(tmp_path)
    n_pos_tr, n_pos_te = int((tr["# label"] == 1).sum()), int(n_te - (n_te + 2) // 3)
    n_val = int(0.1 * n_pos_tr)
    assert _sizes(splits) == (n_pos_tr - n_val, n_val, n_pos_te)
    assert all(s["x"].shape[1] == 3 for s in splits.values())
    _assert_standardized(np.vstack([splits["train"]["x"], splits["validation"]["x"]]), 1)


def test_miniboone(tmp_path):
    os.makedirs(tmp_path / "miniboone")
    np.save(tmp_path / "miniboone" / "data.npy",
            np.random.default_rng(3).gamma(2.0, size=(101, 5)))
    splits = tabular.load_miniboone(tmp_path)
    assert _sizes(splits) == _tail_sizes(101)
    _assert_standardized(np.vstack([splits["train"]["x"], splits["validation"]["x"]]), 0)


def test_bsds300(tmp_path):
    os.makedirs(tmp_path / "BSDS300")
    rng = np.random.default_rng(4)
    arrays = {k: rng.normal(size=(n, 63)) for k, n in
              (("train", 30), ("validation", 8), ("test", 9))}
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    splits = tabular.load_bsds300(tmp_path)
    for k, v in arrays.items():
        np.testing.assert_allclose(splits[k]["x"], v.astype(np.float32))


@pytest.mark.parametrize("name", ["power", "gas", "hepmass", "miniboone", "bsds300"])
def test_missing_file_says_how_to_get_it(tmp_path, name):
    with pytest.raises(FileNotFoundError) as info:
        tabular.TABULAR_LOADERS[name](tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and "1161203" in msg and "data.tar.gz" in msg
    for unset in (None, ""):
        with pytest.raises(FileNotFoundError, match="data.dir is unset"):
            tabular.TABULAR_LOADERS[name](unset)


def test_nan_in_file_is_reported(tmp_path):
    raw = write_power(tmp_path)
    raw[5, 2] = np.nan
    np.save(tmp_path / "power" / "data.npy", raw)
    with pytest.raises(ValueError, match="'power'.*NaN"):
        tabular.load_power(tmp_path)


def test_tabular_default():
    splits = tabular.load_tabular_default()
    assert _sizes(splits) == (569 - 2 * 56, 56, 56)
    assert splits["train"]["x"].shape[1] == 30
    _assert_standardized(splits["train"]["x"], 0)
