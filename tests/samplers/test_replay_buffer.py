"""Replay buffer: initial law, re-initialization rate (binomial), class slices, write-back."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.samplers import (
    ReplayBuffer,
    init_buffer,
    noise_init,
    sample_from_buffer,
    update_buffer,
)

# Jitted once per shape: op-by-op dispatch of the unjitted functions costs more than the tests.
sample = jax.jit(sample_from_buffer, static_argnames="batch")


@pytest.mark.parametrize("init,mean,var", [("uniform", 0.0, 1.0 / 3.0), ("gaussian", 0.0, 1.0)])
def test_init_law(init, mean, var):
    buf = init_buffer(jax.random.key(0), 2000, (4, 4, 1), init)
    x = np.asarray(buf.samples)
    assert x.shape == (2000, 4, 4, 1) and x.dtype == np.float32
    if init == "uniform":
        assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_allclose(x.mean(), mean, atol=0.02)
    np.testing.assert_allclose(x.var(), var, rtol=0.03)


def test_buffer_is_a_pytree_with_one_leaf():
    buf = init_buffer(jax.random.key(0), 30, (2,), num_classes=3)
    leaves, treedef = jax.tree.flatten(buf)
    assert len(leaves) == 1 and leaves[0] is buf.samples
    again = jax.tree.unflatten(treedef, leaves)
    assert isinstance(again, ReplayBuffer) and again.num_classes == 3


@pytest.mark.parametrize("reinit_prob", [0.0, 0.05, 0.3, 1.0])
def test_reinit_rate_matches_setting(reinit_prob):
    batch = 20000
    buf = init_buffer(jax.random.key(1), 500, (3,))
    x0, idx = sample(buf, jax.random.key(2), batch=batch, reinit_prob=reinit_prob)
    stored = np.asarray(buf.samples)[np.asarray(idx)]
    # A fresh U(-1, 1) draw equals the stored entry with probability zero.
    fresh = np.any(np.asarray(x0) != stored, axis=1)
    k = int(fresh.sum())
    expected = batch * reinit_prob
    sd = np.sqrt(batch * reinit_prob * (1.0 - reinit_prob))
    assert abs(k - expected) <= 5.0 * sd + 0.5, (k, expected, sd)
    assert np.all((np.asarray(x0) >= -1.0) & (np.asarray(x0) <= 1.0))


def test_indices_cover_the_buffer_uniformly():
    size, batch = 50, 50000
    buf = init_buffer(jax.random.key(3), size, (1,))
    _, idx = sample(buf, jax.random.key(4), batch=batch, reinit_prob=0.0)
    counts = np.bincount(np.asarray(idx), minlength=size)
    assert counts.shape == (size,)
    # Each count ~ Binomial(batch, 1/size): mean 1000, sd ~ 31.
    assert np.all(np.abs(counts - batch / size) < 6 * np.sqrt(batch / size))


@pytest.mark.parametrize("num_classes,size", [(10, 100), (3, 30), (1, 20)])
def test_class_conditional_slices(num_classes, size):
    buf = init_buffer(jax.random.key(5), size, (2, 2), num_classes=num_classes)
    slice_size = size // num_classes
    np.testing.assert_array_equal(np.asarray(buf.labels), np.arange(size) // slice_size)
    y = jnp.asarray(np.random.default_rng(6).integers(0, num_classes, 4000), jnp.int32)
    x0, idx = sample(buf, jax.random.key(7), batch=4000, reinit_prob=0.0, y=y)
    idx = np.asarray(idx)
    np.testing.assert_array_equal(idx // slice_size, np.asarray(y))
    np.testing.assert_array_equal(np.asarray(buf.labels)[idx], np.asarray(y))
    np.testing.assert_array_equal(np.asarray(x0), np.asarray(buf.samples)[idx])
    # Every entry of every slice is reachable.
    assert len(np.unique(idx)) == size


def test_unconditional_draw_from_sliced_buffer_covers_all_classes():
    buf = init_buffer(jax.random.key(8), 40, (1,), num_classes=4)
    _, idx = sample(buf, jax.random.key(9), batch=2000, reinit_prob=0.0)
    assert set(np.unique(np.asarray(buf.labels)[np.asarray(idx)])) == {0, 1, 2, 3}


def test_update_writes_back_only_the_given_entries():
    buf = init_buffer(jax.random.key(10), 20, (3,))
    idx = jnp.array([0, 7, 19], jnp.int32)
    new = jnp.full((3, 3), 5.0, jnp.float32)
    out = jax.jit(update_buffer, donate_argnums=0)(
        jax.tree.map(jnp.copy, buf), idx, new
    )
    got, before = np.asarray(out.samples), np.asarray(buf.samples)
    np.testing.assert_array_equal(got[[0, 7, 19]], 5.0)
    keep = np.setdiff1d(np.arange(20), [0, 7, 19])
    np.testing.assert_array_equal(got[keep], before[keep])


def test_round_trip_persists_chain_states():
    """sample -> (pretend) SGLD -> update: the next draw of the same entry sees the new state."""
    buf = init_buffer(jax.random.key(11), 8, (2,))
    x0, idx = sample(buf, jax.random.key(12), batch=8, reinit_prob=0.0)
    buf = update_buffer(buf, idx, x0 + 10.0)
    for i in np.unique(np.asarray(idx)):
        assert np.all(np.asarray(buf.samples)[i] > 8.0)


def test_short_run_from_noise():
    buf = init_buffer(jax.random.key(13), 16, (5,))
    x0, _ = sample(buf, jax.random.key(14), batch=16, reinit_prob=1.0)
    assert not np.any(np.isin(np.asarray(x0), np.asarray(buf.samples)))
    noise = noise_init(jax.random.key(15), (1000, 5), "gaussian")
    assert noise.shape == (1000, 5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(size=10, shape=(2,), num_classes=3), "multiple"),
        (dict(size=0, shape=(2,)), "size"),
        (dict(size=10, shape=(2,), init="laplace"), "init"),
    ],
)
def test_bad_buffer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        init_buffer(jax.random.key(0), **kwargs)


def test_bad_label_shape():
    buf = init_buffer(jax.random.key(0), 10, (2,), num_classes=2)
    with pytest.raises(ValueError, match="shape"):
        sample(buf, jax.random.key(1), batch=4, reinit_prob=0.0, y=jnp.zeros((3,), jnp.int32))
