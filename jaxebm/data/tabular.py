"""Tabular density-estimation benchmarks with the MAF preprocessing (Papamakarios et al. 2017).

Files are the standard preprocessed ones of the MAF data archive (zenodo record 1161203,
``data.tar.gz``), extracted into a data directory:

    <dir>/power/data.npy  <dir>/gas/ethylene_CO.pickle  <dir>/hepmass/1000_{train,test}.csv
    <dir>/miniboone/data.npy  <dir>/BSDS300/BSDS300.hdf5

Preprocessing, as the MAF code does it ("tail split" below means: test = last floor(0.1 N) rows,
validation = last floor(0.1 N') rows of the remaining N' rows, train = the rest):

* POWER (D=6): shuffle rows with RandomState(42); delete column 3 then column 1; add uniform
  noise from the same RandomState: U[0, .001) to column 0, U[0, .01) to column 1, U[0, 1) to
  columns 2-4, none to the last column (time); tail split; standardize every split with the
  mean / population std of train + validation.
* GAS (D=8): pandas pickle; drop Meth, Eth, Time; repeatedly drop the first column that has a
  correlation > 0.98 with another column; standardize with mean / sample std (ddof 1) of all
  rows; tail split (no shuffle).
* HEPMASS (D=21): keep rows whose first column (label) is 1 and drop it; the test csv carries one
  trailing column more than train, which is dropped; standardize both with the train mean /
  sample std; drop every feature whose *smallest* value occurs more than 5 times in train (MAF's
  Counter test, faithfully including its looking at the smallest value); validation = last 10%
  of train.
* MINIBOONE (D=43): tail split; standardize with mean / population std of train + validation.
* BSDS300 (D=63): the 'train', 'validation', 'test' datasets of the hdf5 file, unchanged.

Offline default ``tabular_default``: scikit-learn's bundled breast-cancer features (569 x 30),
a fixed permutation (default_rng(0)), 80/10/10 split, standardized with train mean / std.
All loaders return float32 splits {'x': (n, D)}.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import numpy as np

from jaxebm.data.base import validate_array

Splits = dict[str, dict[str, np.ndarray]]

MAF_ARCHIVE_HINT = (
    "download the MAF data archive `data.tar.gz` from https://zenodo.org/record/1161203 and "
    "extract it so that the dataset folders (power/, gas/, hepmass/, miniboone/, BSDS300/) "
    "sit directly in the data directory (config field data.dir)")

TABULAR_FILES: dict[str, tuple[str, ...]] = {
    "power": ("power/data.npy",),
    "gas": ("gas/ethylene_CO.pickle",),
    "hepmass": ("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
    "miniboone": ("miniboone/data.npy",),
    "bsds300": ("BSDS300/BSDS300.hdf5",),
}


def _require_files(name: str, data_dir: str | os.PathLike | None) -> list[str]:
    if data_dir is None or os.fspath(data_dir) == "":
        raise FileNotFoundError(
            f"dataset {name!r} needs a data directory (data.dir is unset): {MAF_ARCHIVE_HINT}")
    paths = [os.path.join(os.fspath(data_dir), rel) for rel in TABULAR_FILES[name]]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"dataset {name!r}: file not found: {path}. To get it, {MAF_ARCHIVE_HINT}")
    return paths


def _tail_split(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_test = int(0.1 * data.shape[0])
    test = data[data.shape[0] - n_test:]
    rest = data[:data.shape[0] - n_test]
    n_val = int(0.1 * rest.shape[0])
    return rest[:rest.shape[0] - n_val], rest[rest.shape[0] - n_val:], test


def _finish(name: str, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> Splits:
    out = {}
    for split, arr in (("train", train), ("validation", val), ("test", test)):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        validate_array(name, arr, rank=2, what=f"{split} x")
        out[split] = {"x": arr}
    return out


def _standardize_by(train: np.ndarray, val: np.ndarray, test: np.ndarray,
                    ref: np.ndarray, ddof: int) -> tuple[np.ndarray, ...]:
    mu = ref.mean(axis=0)
    sd = ref.std(axis=0, ddof=ddof)
    return tuple((a - mu) / sd for a in (train, val, test))


def load_power(data_dir: str | os.PathLike | None) -> Splits:
    (path,) = _require_files("power", data_dir)
    data = np.load(path).astype(np.float64)
    validate_array("power", data, rank=2, what=f"contents of {path}")
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    # The noise draws happen in this order in MAF: voltage first, then gap, then sub-metering.
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    time_noise = np.zeros((n, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    train, val, test = _tail_split(data)
    train, val, test = _standardize_by(train, val, test, np.vstack((train, val)), ddof=0)
    return _finish("power", train, val, test)


def _gas_correlation_counts(frame) -> np.ndarray:
    # Number of columns (itself included) each column correlates with above 0.98.
    return (frame.corr() > 0.98).to_numpy().sum(axis=1)


def load_gas(data_dir: str | os.PathLike | None) -> Splits:
    import pandas as pd

    (path,) = _require_files("gas", data_dir)
    frame = pd.read_pickle(path)
    missing = [c for c in ("Meth", "Eth", "Time") if c not in frame.columns]
    if missing:
        raise ValueError(f"dataset 'gas': {path} lacks the columns {missing}")
    frame = frame.drop(columns=["Meth", "Eth", "Time"])
    counts = _gas_correlation_counts(frame)
    while np.any(counts > 1):
        frame = frame.drop(columns=frame.columns[int(np.where(counts > 1)[0][0])])
        counts = _gas_correlation_counts(frame)
    frame = (frame - frame.mean()) / frame.std()
    data = frame.to_numpy(dtype=np.float64)
    return _finish("gas", *_tail_split(data))


def load_hepmass(data_dir: str | os.PathLike | None) -> Splits:
    import pandas as pd

    train_path, test_path = _require_files("hepmass", data_dir)
    train = pd.read_csv(train_path, index_col=False).to_numpy(dtype=np.float64)
    test = pd.read_csv(test_path, index_col=False).to_numpy(dtype=np.float64)
    train = train[train[:, 0] == 1][:, 1:]
    test = test[test[:, 0] == 1][:, 1:]
    # MAF: "the data set is messed up": the test file has one trailing column too many.
    if test.shape[1] == train.shape[1] + 1:
        test = test[:, :-1]
    if test.shape[1] != train.shape[1]:
        raise ValueError(f"dataset 'hepmass': {test_path} has {test.shape[1]} features after "
                         f"dropping the label, {train_path} has {train.shape[1]}")
    validate_array("hepmass", train, rank=2, what=f"contents of {train_path}")
    validate_array("hepmass", test, rank=2, what=f"contents of {test_path}")
    mu = train.mean(axis=0)
    sd = train.std(axis=0, ddof=1)
    train = (train - mu) / sd
    test = (test - mu) / sd
    keep = []
    for j in range(train.shape[1]):
        counts = Counter(train[:, j].tolist())
        if counts[min(counts)] <= 5:  # MAF removes the feature when this count exceeds 5
            keep.append(j)
    train = train[:, keep]
    test = test[:, keep]
    n_val = int(0.1 * train.shape[0])
    return _finish("hepmass", train[:train.shape[0] - n_val], train[train.shape[0] - n_val:],
                   test)


def load_miniboone(data_dir: str | os.PathLike | None) -> Splits:
    (path,) = _require_files("miniboone", data_dir)
    data = np.load(path).astype(np.float64)
    validate_array("miniboone", data, rank=2, what=f"contents of {path}")
    train, val, test = _tail_split(data)
    train, val, test = _standardize_by(train, val, test, np.vstack((train, val)), ddof=0)
    return _finish("miniboone", train, val, test)


def load_bsds300(data_dir: str | os.PathLike | None) -> Splits:
    import h5py

    (path,) = _require_files("bsds300", data_dir)
    with h5py.File(path, "r") as f:
        missing = [k for k in ("train", "validation", "test") if k not in f]
        if missing:
            raise ValueError(f"dataset 'bsds300': {path} lacks the datasets {missing}")
        arrays = [np.asarray(f[k]) for k in ("train", "validation", "test")]
    return _finish("bsds300", *arrays)


def load_tabular_default(data_dir: str | os.PathLike | None = None) -> Splits:
    """Offline tabular set: breast-cancer features, fixed 80/10/10 split, train-standardized."""
    del data_dir  # bundled with scikit-learn
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data.astype(np.float64)
    data = data[np.random.default_rng(0).permutation(data.shape[0])]
    n = data.shape[0]
    n_test = n_val = int(0.1 * n)
    n_train = n - n_val - n_test
    train, val, test = data[:n_train], data[n_train:n_train + n_val], data[n_train + n_val:]
    train, val, test = _standardize_by(train, val, test, train, ddof=0)
    return _finish("tabular_default", train, val, test)


TABULAR_LOADERS: dict[str, Callable[[str | os.PathLike | None], Splits]] = {
    "power": load_power,
    "gas": load_gas,
    "hepmass": load_hepmass,
    "miniboone": load_miniboone,
    "bsds300": load_bsds300,
    "tabular_default": load_tabular_default,
}
