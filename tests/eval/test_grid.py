"""Grid-normalized NLL of a known Gaussian energy against its closed form."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.eval.grid import grid_log_density, grid_log_normalizer, grid_nll, grid_points

MU = jnp.array([0.7, -0.4], jnp.float32)
COV = jnp.array([[1.2, 0.5], [0.5, 0.8]], jnp.float32)
PREC = jnp.linalg.inv(COV)


def gaussian_energy(x):
    """Batched energy 0.5 (x - mu)^T P (x - mu) + 3 (the constant must drop out)."""
    r = x - MU[None, :]
    return 0.5 * jnp.sum((r @ PREC) * r, axis=1) + 3.0


def log_prob_unnorm(x):
    return -gaussian_energy(x)


def closed_form_nll(x):
    c = np.asarray(COV, np.float64)
    r = np.asarray(x, np.float64) - np.asarray(MU, np.float64)
    maha = np.einsum("ni,ij,nj->n", r, np.linalg.inv(c), r)
    return float(np.mean(0.5 * maha + 0.5 * np.log(np.linalg.det(c)) + math.log(2 * math.pi)))


@pytest.mark.parametrize(
    "bounds,n,chunk",
    [((-8.0, 8.0), 300, 65536), (((-7.0, 8.5), (-8.0, 7.0)), 257, 1000), ((-10, 10), 500, 4096)],
)
def test_grid_nll_of_gaussian_energy_matches_closed_form(bounds, n, chunk):
    z = jax.random.normal(jax.random.key(0), (500, 2))
    x_test = MU[None, :] + z @ jnp.linalg.cholesky(COV).T
    nll = float(grid_nll(log_prob_unnorm, x_test, bounds, n, chunk=chunk))
    assert abs(nll - closed_form_nll(x_test)) < 1e-3
    want_log_z = math.log(2 * math.pi) + 0.5 * math.log(float(jnp.linalg.det(COV))) - 3.0
    log_z = float(grid_log_normalizer(log_prob_unnorm, bounds, n, chunk=chunk))
    assert abs(log_z - want_log_z) < 1e-3


def test_grid_log_density_is_normalized_and_in_image_order():
    xs, ys, log_p, _ = grid_log_density(log_prob_unnorm, ((-8.0, 8.0), (-6.0, 6.0)), 200)
    area = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    assert log_p.shape == (200, 200)
    np.testing.assert_allclose(float(jnp.sum(jnp.exp(log_p))) * area, 1.0, atol=1e-4)
    iy, ix = np.unravel_index(int(jnp.argmax(log_p)), log_p.shape)
    assert abs(float(xs[ix]) - 0.7) < 0.1 and abs(float(ys[iy]) + 0.4) < 0.1


def test_grid_points_are_cell_centres():
    xs, ys, pts, area = grid_points(((0.0, 1.0), (-2.0, 2.0)), 4)
    np.testing.assert_allclose(xs, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(ys, [-1.5, -0.5, 0.5, 1.5])
    # x runs fastest: the first row at y = -1.5, then the start of the next.
    first_row_then_next = [
        [0.125, -1.5], [0.375, -1.5], [0.625, -1.5], [0.875, -1.5], [0.125, -0.5]
    ]
    np.testing.assert_allclose(pts[:5], first_row_then_next)
    assert area == pytest.approx(0.25)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="lo < hi"):
        grid_points((1.0, -1.0), 10)
    with pytest.raises(ValueError, match=r"\(m, 2\)"):
        grid_nll(log_prob_unnorm, jnp.zeros((5, 3)), (-1.0, 1.0), 10)
