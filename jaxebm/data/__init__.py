"""Datasets: numpy out, deterministic per (seed, step); ``load(cfg, seed=...)`` picks one by name.

Config fields read (an ml_collections ConfigDict or any object with attributes):
  name (required), batch_size (required), dir (data directory; None or "" when unset: the
  offline sets need none, TFDS then uses its default directory),
  eval_size (toy sets: size of the fixed validation/test samples, default 20000),
  validation_size (mnist/cifar10/cifar100/svhn: training images held out, default 5000),
  cv_folds / cv_fold (digits only: fold ``cv_fold`` of ``cv_folds``-fold cross-validation
  instead of the fixed split; ``cv_folds = 0``, the default, is the fixed split).
"""

from __future__ import annotations

from typing import Any

from jaxebm.data.base import ArrayDataset, Dataset, SampledDataset, validate_array
from jaxebm.data.images import (N_BINS, NUM_CLASSES, TFDS_NAMES, DEFAULT_VALIDATION_SIZE,
                                load_digits_splits, load_images)
from jaxebm.data.tabular import TABULAR_LOADERS
from jaxebm.data.toy import TOY_DENSITIES, TOY_LOG_DENSITIES

DEFAULT_EVAL_SIZE = 20000

TOY_NAMES = tuple(TOY_DENSITIES)
TABULAR_NAMES = tuple(TABULAR_LOADERS)
IMAGE_NAMES = (*TFDS_NAMES, "digits")
DATASET_NAMES: tuple[str, ...] = (*TOY_NAMES, *TABULAR_NAMES, *IMAGE_NAMES)

_MISSING = object()


def _field(cfg: Any, name: str, default: Any = _MISSING) -> Any:
    try:
        value = getattr(cfg, name)
    except (AttributeError, KeyError):
        value = _MISSING
    if value is _MISSING:
        if default is _MISSING:
            raise ValueError(f"data config lacks the required field {name!r}")
        return default
    return value


def load(cfg: Any, *, seed: int) -> Dataset:
    """Build the dataset ``cfg.name`` with batch size ``cfg.batch_size``."""
    name = _field(cfg, "name")
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    batch_size = _field(cfg, "batch_size")
    data_dir = _field(cfg, "dir", None) or None  # "" (the base config's default) means unset
    folds, fold = _field(cfg, "cv_folds", 0), _field(cfg, "cv_fold", 0)
    if (folds or fold) and name != "digits":
        raise ValueError(f"data.cv_folds / data.cv_fold: cross-validation folds are for the small "
                         f"offline 'digits' set, not {name!r}; leave both at 0")
    if name in TOY_DENSITIES:
        eval_size = _field(cfg, "eval_size", DEFAULT_EVAL_SIZE)
        return SampledDataset(TOY_DENSITIES[name], batch_size, seed, eval_size, name=name)
    if name in TABULAR_LOADERS:
        return ArrayDataset(TABULAR_LOADERS[name](data_dir), batch_size, seed, name=name)
    if name == "digits":
        return ArrayDataset(load_digits_splits(folds, fold), batch_size, seed, name=name,
                            n_bins=N_BINS[name], num_classes=NUM_CLASSES[name])
    validation_size = _field(cfg, "validation_size", DEFAULT_VALIDATION_SIZE)
    return ArrayDataset(load_images(name, data_dir, validation_size=validation_size),
                        batch_size, seed, name=name, n_bins=N_BINS[name],
                        num_classes=NUM_CLASSES[name])


__all__ = [
    "ArrayDataset", "DATASET_NAMES", "Dataset", "IMAGE_NAMES", "SampledDataset",
    "TABULAR_NAMES", "TOY_DENSITIES", "TOY_LOG_DENSITIES", "TOY_NAMES", "load",
    "validate_array",
]
