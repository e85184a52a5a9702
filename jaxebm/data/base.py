"""The dataset interface the training harness uses, and its two implementations.

A dataset is a finite family of numpy arrays per split plus a *deterministic* training stream:

    train_batch(step) = B(seed, step)

is a pure function of (seed, step), so a run resumed at step k sees exactly the batches it would
have seen without the interruption.

* ``ArrayDataset`` samples epochs *without replacement* from a fixed training split. Epoch
  e = step // S (S = floor(N / batch) steps per epoch) uses the permutation
  pi_e = default_rng([seed, e]).permutation(N), and step s takes
  pi_e[(s mod S) B : (s mod S + 1) B].
  The last N mod B examples of each permutation are dropped (a fresh permutation every epoch,
  so every example is still seen with equal probability).
* ``SampledDataset`` wraps a generative density x ~ p: every training batch is a fresh draw
  from default_rng([seed, step]); the fixed evaluation splits are drawn from the 3-word seeds
  [seed, 0, j] with j = 1, 2, 3 (nonzero last word, so they can never coincide with a 2-word
  training seed [seed, step]: numpy's SeedSequence treats trailing zero words as absent).

Batches are dicts: 'x' (float32 for toy/tabular data, uint8 for images, leading axis = batch) and
'y' (int32 labels) where labels exist.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping

import numpy as np

SPLITS = ("train", "validation", "test")

Batch = dict[str, np.ndarray]


def validate_array(name: str, x: np.ndarray, *, rank: int | None = None,
                   what: str = "x") -> np.ndarray:
    """Check data at the edge: finite values and the expected rank.

    Raises ``ValueError`` naming the dataset and what is wrong. Returns ``x`` unchanged.
    """
    x = np.asarray(x)
    if rank is not None and x.ndim != rank:
        raise ValueError(
            f"dataset {name!r}: {what} has rank {x.ndim} (shape {x.shape}), expected rank {rank}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise ValueError(
            f"dataset {name!r}: {what} contains {n_nan} NaN and {n_inf} inf values "
            f"(shape {x.shape}); check the data files or preprocessing")
    if x.dtype.kind not in "fiub":
        raise ValueError(f"dataset {name!r}: {what} has unsupported dtype {x.dtype}")
    return x


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return int(step)


class Dataset(abc.ABC):
    """What the harness needs from a dataset."""

    name: str
    batch_size: int
    seed: int
    example_shape: tuple[int, ...]
    n_bins: int | None
    num_classes: int | None

    @abc.abstractmethod
    def train_batch(self, step: int) -> Batch:
        """The training batch at ``step``: a deterministic function of (seed, step)."""

    @abc.abstractmethod
    def split(self, name: str) -> Batch:
        """The full arrays of split 'train', 'validation' or 'test'."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, batch_size={self.batch_size}, "
                f"example_shape={self.example_shape}, n_bins={self.n_bins}, "
                f"num_classes={self.num_classes})")


def _check_split_name(name: str) -> None:
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")


class ArrayDataset(Dataset):
    """A dataset held in memory as arrays; epochs without replacement over the train split."""

    def __init__(self, splits: Mapping[str, Mapping[str, np.ndarray]], batch_size: int,
                 seed: int, *, name: str = "array", n_bins: int | None = None,
                 num_classes: int | None = None):
        self.name = name
        self.batch_size = _check_batch_size(batch_size)
        self.seed = _check_seed(seed)
        self.n_bins = n_bins
        self.num_classes = num_classes
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise ValueError(f"dataset {name!r}: missing splits {missing}")
        self._splits: dict[str, Batch] = {}
        example_shape = None
        for split_name in SPLITS:
            arrays = dict(splits[split_name])
            if "x" not in arrays:
                raise ValueError(f"dataset {name!r}: split {split_name!r} has no 'x' array")
            x = validate_array(name, arrays["x"], what=f"{split_name} x")
            if x.ndim < 2:
                raise ValueError(f"dataset {name!r}: {split_name} x must have a batch axis and "
                                 f"at least one feature axis, got shape {x.shape}")
            if example_shape is None:
                example_shape = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != example_shape and x.shape[0] > 0:
                raise ValueError(f"dataset {name!r}: {split_name} x has example shape "
                                 f"{x.shape[1:]}, train has {example_shape}")
            for key, arr in arrays.items():
                arr = np.asarray(arr)
                if arr.shape[:1] != x.shape[:1]:
                    raise ValueError(f"dataset {name!r}: {split_name} {key!r} has "
                                     f"{arr.shape[:1]} examples, x has {x.shape[:1]}")
                if key == "y":
                    validate_array(name, arr, rank=1, what=f"{split_name} y")
                    arr = arr.astype(np.int32, copy=False)
                arrays[key] = arr
            self._splits[split_name] = arrays
        assert example_shape is not None
        self.example_shape = example_shape
        self.num_train = int(self._splits["train"]["x"].shape[0])
        if self.num_train < self.batch_size:
            raise ValueError(f"dataset {name!r}: batch_size {self.batch_size} exceeds the "
                             f"{self.num_train} training examples")
        self.steps_per_epoch = self.num_train // self.batch_size
        self._perm_cache: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        # One-entry cache: a pure function of (seed, epoch), so caching cannot change results,
        # and it saves an O(N) shuffle per step on the large sets (POWER has 1.6M rows).
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_train)
            self._perm_cache = (epoch, perm)
        return self._perm_cache[1]

    def train_batch(self, step: int) -> Batch:
        step = _check_step(step)
        epoch, within = divmod(step, self.steps_per_epoch)
        idx = np.sort(self._permutation(epoch)[within * self.batch_size:
                                               (within + 1) * self.batch_size])
        # sorted gathers are cheaper; the set of examples is what is random
        return {k: v[idx] for k, v in self._splits["train"].items()}

    def split(self, name: str) -> Batch:
        _check_split_name(name)
        return dict(self._splits[name])


SampleFn = Callable[[np.random.Generator, int], np.ndarray]

# Third seed word of the evaluation splits (nonzero: see the module docstring).
_EVAL_SEED_WORD = {"validation": 1, "test": 2, "train": 3}


class SampledDataset(Dataset):
    """A dataset defined by a sampler ``sample_fn(rng, n) -> (n, *example_shape)`` float array."""

    def __init__(self, sample_fn: SampleFn, batch_size: int, seed: int, eval_size: int, *,
                 name: str = "sampled"):
        self.name = name
        self.sample_fn = sample_fn
        self.batch_size = _check_batch_size(batch_size)
        self.seed = _check_seed(seed)
        if isinstance(eval_size, bool) or not isinstance(eval_size, (int, np.integer)) \
                or eval_size <= 0:
            raise ValueError(f"dataset {name!r}: eval_size must be a positive integer, "
                             f"got {eval_size!r}")
        self.eval_size = int(eval_size)
        self.n_bins = None
        self.num_classes = None
        self._cache: dict[str, Batch] = {}
        probe = self._draw(np.random.default_rng([self.seed, 0, 4]), 2)
        self.example_shape = tuple(probe.shape[1:])

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = np.asarray(self.sample_fn(rng, n), dtype=np.float32)
        validate_array(self.name, x)
        if x.shape[:1] != (n,) or x.ndim < 2:
            raise ValueError(f"dataset {self.name!r}: sampler returned shape {x.shape} "
                             f"for n={n}, expected ({n}, ...)")
        return x

    def train_batch(self, step: int) -> Batch:
        step = _check_step(step)
        return {"x": self._draw(np.random.default_rng([self.seed, step]), self.batch_size)}

    def split(self, name: str) -> Batch:
        _check_split_name(name)
        if name not in self._cache:
            rng = np.random.default_rng([self.seed, 0, _EVAL_SEED_WORD[name]])
            self._cache[name] = {"x": self._draw(rng, self.eval_size)}
        return dict(self._cache[name])
