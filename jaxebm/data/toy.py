"""The eight 2-D toy densities of FFJORD (``lib/toy_data.py``), re-derived from their definitions.

Every sampler is ``sample(rng: np.random.Generator, n) -> float32 (n, 2)``:

* swissroll: sklearn ``make_swiss_roll(noise=1.0)``, coordinates (x, z), divided by 5.
* circles: sklearn ``make_circles(factor=0.5, noise=0.08)``, times 3.
* rings: four concentric circles of radii 3 * (1, 0.75, 0.5, 0.25), equally spaced angles
  (n // 4 points on each of the three outer circles, the rest on the inner one), shuffled,
  plus N(0, 0.08^2) noise.
* moons: sklearn ``make_moons(noise=0.1)``, then 2 x + (-1, -0.2).
* 8gaussians: (4 c_k + N(0, 0.5^2 I)) / 1.414 with k uniform over the eight unit vectors c_k
  at angles j pi / 4, i.e. a mixture of isotropic Gaussians with means 4 c_k / 1.414 and
  standard deviation 0.5 / 1.414.
* pinwheel: 5 arms; f = (1 + 0.3 e_r, 0.1 e_t), angle = 2 pi k / 5 + 0.25 exp(f_r),
  x = 2 R(angle)^T f  (row vector f times the rotation matrix, as FFJORD's einsum).
* 2spirals: r = sqrt(u) * 540 deg in radians; arm (-cos(r) r + 0.5 u1, sin(r) r + 0.5 u2) and its
  mirror image, divided by 3, plus N(0, 0.1^2) noise.
* checkerboard: x1 ~ U[-2, 2), x2 ~ U[0, 1) - 2 Bernoulli(1/2) + (floor(x1) mod 2), times 2:
  uniform on the 8 "black" 2x2 squares of a 4x4 board on [-4, 4)^2, so p = 1/32 there and the
  entropy is log 32.

Deviations from the reference, all distribution-preserving: FFJORD draws from the global numpy
RNG for 2spirals/checkerboard and needs n divisible by 5 (pinwheel) or 2 (2spirals); here every
draw comes from the given Generator and any n works (pinwheel labels k = i mod 5, 2spirals gives
the first arm ceil(n/2) points).

Closed-form log densities are given where they exist: ``log_density_8gaussians`` and
``log_density_checkerboard`` (numpy, per point).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sklearn.datasets

ToySampler = Callable[[np.random.Generator, int], np.ndarray]


def _sklearn_state(rng: np.random.Generator) -> int:
    """A random_state for sklearn's generators, drawn from (and advancing) ``rng``."""
    return int(rng.integers(0, 2**32 - 1, dtype=np.uint64))


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"number of samples must be a non-negative integer, got {n!r}")
    return int(n)


_EMPTY = np.zeros((0, 2), np.float32)  # sklearn's generators refuse n_samples=0


def swissroll(rng: np.random.Generator, n: int) -> np.ndarray:
    n = _check_n(n)
    if n == 0:
        return _EMPTY.copy()
    x = sklearn.datasets.make_swiss_roll(n_samples=n, noise=1.0,
                                         random_state=_sklearn_state(rng))[0]
    return (x[:, [0, 2]] / 5.0).astype(np.float32)


def circles(rng: np.random.Generator, n: int) -> np.ndarray:
    n = _check_n(n)
    if n == 0:
        return _EMPTY.copy()
    x = sklearn.datasets.make_circles(n_samples=n, factor=0.5, noise=0.08,
                                      random_state=_sklearn_state(rng))[0]
    return (x * 3.0).astype(np.float32)


def rings(rng: np.random.Generator, n: int) -> np.ndarray:
    n = _check_n(n)
    quarter = n // 4
    counts = (quarter, quarter, quarter, n - 3 * quarter)  # radius 1, .75, .5, .25
    radii = (1.0, 0.75, 0.5, 0.25)
    # endpoint=False so that the first and last points of a circle do not coincide
    pts = [r * np.stack([np.cos(t), np.sin(t)], axis=1)
           for r, c in zip(radii, counts)
           for t in [np.linspace(0.0, 2.0 * np.pi, c, endpoint=False)]]
    x = np.concatenate(pts, axis=0) * 3.0
    x = x[rng.permutation(n)]
    x = x + rng.normal(scale=0.08, size=x.shape)
    return x.astype(np.float32)


def moons(rng: np.random.Generator, n: int) -> np.ndarray:
    n = _check_n(n)
    if n == 0:
        return _EMPTY.copy()
    x = sklearn.datasets.make_moons(n_samples=n, noise=0.1,
                                    random_state=_sklearn_state(rng))[0]
    return (x * 2.0 + np.array([-1.0, -0.2])).astype(np.float32)


EIGHT_GAUSSIANS_SCALE = 4.0
EIGHT_GAUSSIANS_STD = 0.5
EIGHT_GAUSSIANS_DIVISOR = 1.414


def eight_gaussian_means() -> np.ndarray:
    """The (8, 2) component means 4 c_k / 1.414 of the 8gaussians mixture."""
    s = 1.0 / np.sqrt(2.0)
    unit = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)],
                    dtype=np.float64)
    return unit * EIGHT_GAUSSIANS_SCALE / EIGHT_GAUSSIANS_DIVISOR


def eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    n = _check_n(n)
    k = rng.integers(0, 8, size=n)
    x = rng.standard_normal((n, 2)) * EIGHT_GAUSSIANS_STD
    x = x + eight_gaussian_means()[k] * EIGHT_GAUSSIANS_DIVISOR
    return (x / EIGHT_GAUSSIANS_DIVISOR).astype(np.float32)


def log_density_8gaussians(x: np.ndarray) -> np.ndarray:
    """log p(x) of the 8gaussians mixture, shape (n,) for x of shape (n, 2)."""
    x = np.asarray(x, dtype=np.float64)
    std = EIGHT_GAUSSIANS_STD / EIGHT_GAUSSIANS_DIVISOR
    sq = np.sum((x[:, None, :] - eight_gaussian_means()[None, :, :]) ** 2, axis=-1)
    logits = -0.5 * sq / std**2
    m = logits.max(axis=1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
    return lse - np.log(8.0) - np.log(2.0 * np.pi * std**2)


def pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    n = _check_n(n)
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    arm_angles = np.linspace(0.0, 2.0 * np.pi, num_classes, endpoint=False)
    f = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    f[:, 0] += 1.0
    labels = np.arange(n) % num_classes
    angles = arm_angles[labels] + rate * np.exp(f[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    # row vector f times [[c, -s], [s, c]]
    x = np.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], axis=1)
    return (2.0 * x[rng.permutation(n)]).astype(np.float32)


def two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    n = _check_n(n)
    n1 = n - n // 2
    r = np.sqrt(rng.random((n, 1))) * 540.0 * (2.0 * np.pi) / 360.0
    dx = -np.cos(r) * r + rng.random((n, 1)) * 0.5
    dy = np.sin(r) * r + rng.random((n, 1)) * 0.5
    arm = np.concatenate([dx, dy], axis=1)
    sign = np.where(np.arange(n) < n1, 1.0, -1.0)[:, None]  # second arm = point reflection
    x = sign * arm / 3.0
    x = x + rng.standard_normal(x.shape) * 0.1
    return x.astype(np.float32)


def checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    n = _check_n(n)
    x1 = rng.random(n) * 4.0 - 2.0
    x2 = rng.random(n) - rng.integers(0, 2, size=n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return (np.stack([x1, x2], axis=1) * 2.0).astype(np.float32)


CHECKERBOARD_ENTROPY = float(np.log(32.0))


def log_density_checkerboard(x: np.ndarray) -> np.ndarray:
    """log p(x) of checkerboard: -log 32 on the 8 black squares, -inf elsewhere."""
    u = np.floor(np.asarray(x, dtype=np.float64) / 2.0)
    inside = np.all((u >= -2) & (u <= 1), axis=1) & ((u[:, 0] + u[:, 1]) % 2 == 0)
    return np.where(inside, -np.log(32.0), -np.inf)


TOY_DENSITIES: dict[str, ToySampler] = {
    "swissroll": swissroll,
    "circles": circles,
    "rings": rings,
    "moons": moons,
    "8gaussians": eight_gaussians,
    "pinwheel": pinwheel,
    "2spirals": two_spirals,
    "checkerboard": checkerboard,
}

TOY_LOG_DENSITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "8gaussians": log_density_8gaussians,
    "checkerboard": log_density_checkerboard,
}
