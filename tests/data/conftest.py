"""Fixtures shared by the data tests: tiny files in the real on-disk formats."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from jaxebm.data import images


def _write_mnist_idx(root, n_train=12, n_test=5, gz=False):
    """Write the four MNIST IDX files (random contents) into ``root``; return the arrays."""
    rng = np.random.default_rng(0)
    arrays = {("train", "x"): rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              ("train", "y"): rng.integers(0, 10, n_train).astype(np.uint8),
              ("test", "x"): rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              ("test", "y"): rng.integers(0, 10, n_test).astype(np.uint8)}
    for key, stem in images.MNIST_IDX_FILES.items():
        data = images.encode_idx(arrays[key])
        if gz:
            with gzip.open(root / (stem + ".gz"), "wb") as f:
                f.write(data)
        else:
            (root / stem).write_bytes(data)
    return arrays


@pytest.fixture
def write_mnist_idx():
    return _write_mnist_idx
