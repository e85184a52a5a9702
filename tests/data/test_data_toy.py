"""Toy 2-D densities: shapes, determinism, known moments, closed-form densities and entropies."""

from __future__ import annotations

import numpy as np
import pytest

from jaxebm.data import toy

ALL = sorted(toy.TOY_DENSITIES)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [0, 1, 7, 100])
def test_shape_dtype_and_determinism(name, n):
    fn = toy.TOY_DENSITIES[name]
    x = fn(np.random.default_rng(5), n)
    assert x.shape == (n, 2) and x.dtype == np.float32
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, fn(np.random.default_rng(5), n))


@pytest.mark.parametrize("name", ALL)
def test_different_generators_give_different_samples(name):
    fn = toy.TOY_DENSITIES[name]
    assert not np.array_equal(fn(np.random.default_rng(0), 50), fn(np.random.default_rng(1), 50))


_S2 = (0.5 / 1.414) ** 2
# name -> (mean, E[x x^T]) derived from the definitions (see jaxebm/data/toy.py)
MOMENTS = {
    # mixture: means 4c/1.414 with E[c c^T] = I/2, plus isotropic variance s^2
    "8gaussians": ((0.0, 0.0), (16 / 1.414**2 / 2 + _S2) * np.eye(2)),
    # uniform on the 8 black 2x2 squares: var(x_i) = 4 * 16/12, E[x1 x2] = 4 * 1/4
    "checkerboard": ((0.0, 0.0), np.array([[16 / 3, 1.0], [1.0, 16 / 3]])),
    # four radii 3 * (1, .75, .5, .25) equally often, plus noise 0.08^2 per coordinate
    "rings": ((0.0, 0.0), (9 * (1 + .5625 + .25 + .0625) / 4 / 2 + 0.0064) * np.eye(2)),
    # pinwheel: |x|^2 = 4 (f_r^2 + f_t^2), E = 4 (1 + .09 + .01); arms symmetric
    "pinwheel": ((0.0, 0.0), 4 * 1.1 / 2 * np.eye(2)),
}


@pytest.mark.parametrize("name", sorted(MOMENTS))
def test_moments(name):
    mean, second = MOMENTS[name]
    x = toy.TOY_DENSITIES[name](np.random.default_rng(11), 200_000).astype(np.float64)
    np.testing.assert_allclose(x.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(x.T @ x / len(x), second, atol=0.05, rtol=0.01)


def test_moons_and_circles_means():
    # make_moons: upper unit half-circle + lower one centred (1, .5): mean (.5, .25) -> (0, .3)
    x = toy.moons(np.random.default_rng(0), 100_000)
    np.testing.assert_allclose(x.mean(0), (0.0, 0.3), atol=0.01)
    # make_circles: radii 3 and 1.5 half each, noise 3 * 0.08 per coordinate
    r2 = np.sum(toy.circles(np.random.default_rng(0), 100_000).astype(np.float64) ** 2, 1)
    np.testing.assert_allclose(r2.mean(), 9 * ((1 + .25) / 2 + 2 * 0.08**2), rtol=0.01)


def test_8gaussians_density_normalizes_and_entropy():
    g = np.linspace(-6, 6, 601)
    h = g[1] - g[0]
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    lp = toy.log_density_8gaussians(pts)
    assert abs(np.exp(lp).sum() * h * h - 1.0) < 1e-6
    assert abs(-(np.exp(lp) * lp).sum() * h * h - 2.832) < 2e-3
    # Monte-Carlo entropy of the samples under the closed form
    x = toy.eight_gaussians(np.random.default_rng(0), 400_000)
    lpx = toy.log_density_8gaussians(x)
    assert abs(-lpx.mean() - 2.833) < 0.008, -lpx.mean()


def test_checkerboard_density_and_entropy():
    x = toy.checkerboard(np.random.default_rng(0), 100_000)
    lp = toy.log_density_checkerboard(x)
    np.testing.assert_allclose(lp, -np.log(32.0))
    assert -lp.mean() == pytest.approx(toy.CHECKERBOARD_ENTROPY)
    # mass 1: p = 1/32 on half of the box [-4, 4)^2 of area 64
    u = np.random.default_rng(1).uniform(-4, 4, size=(200_000, 2))
    assert np.exp(toy.log_density_checkerboard(u)).mean() * 64 == pytest.approx(1.0, abs=0.01)
    assert np.all(np.isneginf(toy.log_density_checkerboard(np.array([[5.0, 0.0], [0.5, 2.5]]))))
