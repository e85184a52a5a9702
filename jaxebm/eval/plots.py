"""Pictures of samples and densities (matplotlib, Agg: no screen needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Writes ``fig`` to ``path`` (creating its folder), closes it and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", dpi=dpi)
    plt.close(fig)
    return path


def curve_panels(ax_left, ax_right, left: tuple[str, str, str], right: tuple[str, str, str]):
    """Labels two side-by-side curve panels, ``(xlabel, ylabel, title)`` each, with legends."""
    for ax, (xlabel, ylabel, title) in ((ax_left, left), (ax_right, right)):
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend()
    ax_left.figure.tight_layout()


def image_grid(images: np.ndarray, ncols: int | None = None) -> np.ndarray:
    """Tiles (N, H, W, C) images in [0, 1] into one (rows*H, cols*W, C) array with 1px gaps."""
    n, h, w, c = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.ones((nrows * (h + 1) - 1, ncols * (w + 1) - 1, c), images.dtype)
    for i, img in enumerate(images):
        r, col = divmod(i, ncols)
        grid[r * (h + 1): r * (h + 1) + h, col * (w + 1): col * (w + 1) + w] = img
    return grid


def save_image_grid(images: np.ndarray, path: Path, title: str | None = None) -> Path:
    grid = np.clip(image_grid(np.asarray(images, np.float32)), 0.0, 1.0)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return save_figure(fig, path, dpi=150)


def save_points(points: np.ndarray, path: Path, bounds: float = 4.0, title: str = "samples") -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.hist2d(points[:, 0], points[:, 1], bins=200, range=[[-bounds, bounds]] * 2, cmap="viridis")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return save_figure(fig, path)


def save_samples(samples: np.ndarray, path: Path) -> Path:
    """2-D points as a histogram, (N, H, W, C) images in [0, 1] as a grid."""
    if samples.ndim == 2 and samples.shape[1] == 2:
        return save_points(samples, path)
    if samples.ndim == 4:
        return save_image_grid(samples[:256], path)
    raise ValueError(f"cannot plot samples of shape {samples.shape} as PNG; use --out x.npz")


def save_density_and_samples(log_density: np.ndarray, samples: np.ndarray, data: np.ndarray,
                             path: Path, bounds: float = 4.0, title: str = "") -> Path:
    """Data, the model's density heat map (a grid of log p) and its samples, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.5))
    rng = [[-bounds, bounds]] * 2
    axes[0].hist2d(data[:, 0], data[:, 1], bins=200, range=rng, cmap="viridis")
    axes[0].set_title("data")
    axes[1].imshow(np.exp(log_density), origin="lower", extent=[-bounds, bounds, -bounds, bounds],
                   cmap="viridis")
    axes[1].set_title("model density")
    axes[2].hist2d(samples[:, 0], samples[:, 1], bins=200, range=rng, cmap="viridis")
    axes[2].set_title("model samples")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
