"""Image datasets as uint8 NHWC arrays with int32 labels.

* MNIST: raw IDX files in a directory (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
  ``t10k-labels-idx1-ubyte[.gz]``), or else a prepared TFDS dataset ``mnist`` in that directory.
* CIFAR-10, CIFAR-100, SVHN: prepared TFDS datasets ``cifar10``, ``cifar100``, ``svhn_cropped``
  read through ``tfds.data_source`` (random access, array_record files). TFDS never downloads
  here: a dataset that is not prepared raises ``FileNotFoundError`` with instructions.
* digits (offline default): scikit-learn's bundled 8x8 digits, values 0..16, so n_bins = 17.

IDX format (LeCun): a 4-byte big-endian magic 0x0000 TT NN (TT = element type, 0x08 for
unsigned bytes; NN = number of dimensions), then NN big-endian uint32 sizes, then the elements
in C order.

The validation split is the last ``validation_size`` examples of the official training split
(JEM holds out 5000 training images); ``validation_size=0`` leaves it empty.
"""

from __future__ import annotations

import gzip
import os
from typing import Any

import numpy as np

from jaxebm.data.base import validate_array

Splits = dict[str, dict[str, np.ndarray]]

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {np.dtype(v).newbyteorder("=") if v.itemsize > 1 else v: k
              for k, v in _IDX_DTYPES.items()}

TFDS_NAMES = {"mnist": "mnist", "cifar10": "cifar10", "cifar100": "cifar100",
              "svhn": "svhn_cropped"}
IMAGE_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "cifar100": (32, 32, 3),
                "svhn": (32, 32, 3), "digits": (8, 8, 1)}
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10, "digits": 10}
N_BINS = {"mnist": 256, "cifar10": 256, "cifar100": 256, "svhn": 256, "digits": 17}
DEFAULT_VALIDATION_SIZE = 5000

MNIST_IDX_FILES = {
    ("train", "x"): "train-images-idx3-ubyte",
    ("train", "y"): "train-labels-idx1-ubyte",
    ("test", "x"): "t10k-images-idx3-ubyte",
    ("test", "y"): "t10k-labels-idx1-ubyte",
}


# ---------------------------------------------------------------------------------------- IDX

def parse_idx(buf: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file's bytes into a numpy array (native byte order)."""
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0:
        raise ValueError(f"{source}: not an IDX file (bad magic number)")
    code, ndim = buf[2], buf[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{source}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{source}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    count = int(np.prod(shape, dtype=np.int64))
    if len(buf) - header != count * dtype.itemsize:
        raise ValueError(f"{source}: IDX payload has {len(buf) - header} bytes, shape {shape} "
                         f"needs {count * dtype.itemsize}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def encode_idx(arr: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (the inverse of ``parse_idx``)."""
    arr = np.asarray(arr)
    key = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    if key not in _IDX_CODES:
        raise ValueError(f"dtype {arr.dtype} has no IDX element type")
    code = _IDX_CODES[key]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(_IDX_DTYPES[code]).tobytes()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed when the name ends in .gz."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return parse_idx(f.read(), source=path)


def _find_idx(data_dir: str, stem: str) -> str | None:
    for candidate in (stem, stem + ".gz"):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    return None


def _has_mnist_idx(data_dir: str | os.PathLike | None) -> bool:
    return data_dir is not None and all(
        _find_idx(os.fspath(data_dir), stem) is not None for stem in MNIST_IDX_FILES.values())


def load_mnist_idx(data_dir: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Official MNIST train/test from IDX files as {'train'|'test': {'x': NHWC, 'y'}}."""
    out: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    for (split, key), stem in MNIST_IDX_FILES.items():
        path = _find_idx(os.fspath(data_dir), stem)
        if path is None:
            raise FileNotFoundError(f"dataset 'mnist': {os.path.join(data_dir, stem)}[.gz] "
                                    f"not found. {_tfds_hint('mnist')}")
        arr = read_idx(path)
        if key == "x":
            if arr.ndim != 3 or arr.dtype != np.uint8:
                raise ValueError(f"dataset 'mnist': {path} holds {arr.dtype} of shape "
                                 f"{arr.shape}, expected uint8 (n, rows, cols)")
            arr = arr[..., None]
        else:
            validate_array("mnist", arr, rank=1, what=f"labels in {path}")
            arr = arr.astype(np.int32)
        out[split][key] = arr
    return out


# --------------------------------------------------------------------------------------- TFDS

def _tfds_hint(name: str) -> str:
    tfds_name = TFDS_NAMES[name]
    text = (f"Run `pip install 'jaxebm[tfds]'` and `tfds build {tfds_name} --data_dir DIR "
            f"--file_format=array_record`, then set data.dir=DIR")
    if name == "mnist":
        text += (", or point data.dir at a folder with the MNIST IDX files "
                 "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                 "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])")
    return text + "."


def _read_source(source: Any, name: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """The first ``limit`` records (all when None) as uint8 NHWC images and int32 labels."""
    n = len(source) if limit is None else min(len(source), limit)
    chunk = 4096
    images, labels = [], []
    for start in range(0, n, chunk):
        idx = list(range(start, min(n, start + chunk)))
        try:  # batched random access where the source has it (ArrayRecordDataSource)
            records = source.__getitems__(idx)
        except (AttributeError, TypeError):
            records = [source[i] for i in idx]
        for r in records:
            images.append(np.asarray(r["image"], dtype=np.uint8))
            labels.append(int(r["label"]))
    shape = IMAGE_SHAPES[name]
    x = np.stack(images) if images else np.zeros((0, *shape), np.uint8)
    return {"x": x, "y": np.asarray(labels, dtype=np.int32)}


def load_tfds(name: str, data_dir: str | os.PathLike | None, *,
              splits: tuple[str, ...] = ("train", "test"),
              limit: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Official ``splits`` of a prepared TFDS dataset via ``tfds.data_source``, the first
    ``limit`` examples of each (all when None); random access, so nothing else is read; no
    downloads."""
    try:
        import tensorflow_datasets as tfds  # lazy: optional dependency
    except ImportError as e:
        raise ImportError(f"dataset {name!r} needs tensorflow-datasets. "
                          f"{_tfds_hint(name)}") from e
    out = {}
    for split in splits:
        try:
            source = tfds.data_source(TFDS_NAMES[name], split=split,
                                      data_dir=None if data_dir is None else os.fspath(data_dir),
                                      download=False)
        except Exception as e:  # tfds raises many types for "not prepared"; report one clearly
            raise FileNotFoundError(
                f"dataset {name!r}: no prepared TFDS dataset {TFDS_NAMES[name]!r} (split "
                f"{split!r}) in data_dir={data_dir!r} ({type(e).__name__}: {e}). "
                f"{_tfds_hint(name)}") from e
        out[split] = _read_source(source, name, limit)
    return out


# ----------------------------------------------------------------------------- assemble splits

def _with_validation(name: str, official: dict[str, dict[str, np.ndarray]],
                     validation_size: int) -> Splits:
    train = official["train"]
    n = train["x"].shape[0]
    if not 0 <= validation_size < n:
        raise ValueError(f"dataset {name!r}: validation_size {validation_size} must be in "
                         f"[0, {n}) (the number of official training examples)")
    cut = n - validation_size
    splits = {
        "train": {k: v[:cut] for k, v in train.items()},
        "validation": {k: v[cut:] for k, v in train.items()},
        "test": dict(official["test"]),
    }
    for split, arrays in splits.items():
        x = validate_array(name, arrays["x"], rank=4, what=f"{split} images")
        if x.dtype != np.uint8:
            raise ValueError(f"dataset {name!r}: {split} images are {x.dtype}, expected uint8")
        y = arrays["y"]
        if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES[name]):
            raise ValueError(f"dataset {name!r}: {split} labels outside "
                             f"[0, {NUM_CLASSES[name]})")
    return splits


def _official(name: str, data_dir: str | os.PathLike | None, splits: tuple[str, ...],
              limit: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The official ``splits`` of ``name`` (the first ``limit`` examples of each), from MNIST IDX
    files in ``data_dir`` where they are, else from a prepared TFDS dataset."""
    if name not in TFDS_NAMES:
        raise ValueError(f"unknown image dataset {name!r}; valid: {', '.join(TFDS_NAMES)}")
    if data_dir is not None and os.fspath(data_dir) == "":
        data_dir = None
    if name == "mnist" and _has_mnist_idx(data_dir):
        official = load_mnist_idx(data_dir)  # type: ignore[arg-type]
        return {s: {k: v[:limit] for k, v in official[s].items()} for s in splits}
    if data_dir is not None and not os.path.isdir(os.fspath(data_dir)):
        raise FileNotFoundError(f"dataset {name!r}: data directory {data_dir} does not "
                                f"exist. {_tfds_hint(name)}")
    return load_tfds(name, data_dir, splits=splits, limit=limit)


def load_images(name: str, data_dir: str | os.PathLike | None, *,
                validation_size: int = DEFAULT_VALIDATION_SIZE) -> Splits:
    """uint8 NHWC images and int32 labels for 'mnist', 'cifar10', 'cifar100', 'svhn'."""
    return _with_validation(name, _official(name, data_dir, ("train", "test")), validation_size)


def load_test_images(name: str, data_dir: str | os.PathLike | None, *,
                     limit: int | None = None) -> dict[str, np.ndarray]:
    """The first ``limit`` official test images and labels of ``name`` (all when None), without
    reading its training split: what an out-of-distribution set needs."""
    test = _official(name, data_dir, ("test",), limit)["test"]
    x = validate_array(name, test["x"], rank=4, what="test images")
    if x.dtype != np.uint8:
        raise ValueError(f"dataset {name!r}: test images are {x.dtype}, expected uint8")
    return test


def digits_held_out(n: int, folds: int, fold: int) -> np.ndarray:
    """Positions (in the fixed permuted order) that ``fold`` of ``folds``-fold cross-validation
    holds out: the ``fold``-th of ``folds`` near-equal contiguous blocks (sizes differ by at
    most one), so over ``fold = 0 .. folds - 1`` the blocks tile ``0 .. n - 1``."""
    if not (isinstance(folds, int) and folds >= 2):
        raise ValueError(f"data.cv_folds must be 0 (the fixed split) or an integer >= 2, got {folds!r}")
    if not (isinstance(fold, int) and 0 <= fold < folds):
        raise ValueError(f"data.cv_fold must be an integer in [0, {folds}), got {fold!r}")
    return np.array_split(np.arange(n), folds)[fold]


def load_digits_splits(folds: int = 0, fold: int = 0) -> Splits:
    """scikit-learn's 8x8 digits as uint8 (n, 8, 8, 1), values 0..16, in a fixed permuted order.

    ``folds = 0``: the fixed 80/10/10 split. ``folds = K >= 2``: fold ``fold`` of K-fold
    cross-validation: the ``fold``-th block of ``digits_held_out`` is held out (its first half
    the validation split, the rest the test split) and the other K - 1 blocks train. Pooling the
    held-out predictions of all K folds evaluates on every one of the 1797 images once: a test
    set five times the fixed split's 358, whose sampling noise is sqrt(1797 / 358) = 2.2x smaller.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(x.shape[0])
    x, y = x[perm], y[perm]
    n = x.shape[0]
    if folds != 0:
        held = digits_held_out(n, folds, fold)
        train = np.setdiff1d(np.arange(n), held)
        half = held.size // 2
        parts = {"train": train, "validation": held[:half], "test": held[half:]}
        return {s: {"x": x[i], "y": y[i]} for s, i in parts.items()}
    n_test = n_val = int(0.1 * n)
    n_train = n - n_val - n_test
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val),
              "test": (n_train + n_val, n)}
    return {s: {"x": x[a:b], "y": y[a:b]} for s, (a, b) in bounds.items()}
