"""Pictures of a VAE: reconstructions, p(x|z) means beside draws, the latent space, curves.

Every figure function takes numpy arrays and returns a `matplotlib.figure.Figure`, so they
are quick to test and reuse; the `model_*` ones ask a model first, and the `draw_*` ones
write a model's pictures as PNGs (the CLI's picture commands). The Agg backend (no display)
is selected when a figure is made, not at import, so importing tfvae never changes a
notebook's backend.

Sizes are fixed so a PNG's pixel size is known in advance (`save_figure` writes at
`DPI` with no cropping): an image grid of `rows x cols` cells is
`(cols * CELL_INCHES, rows * CELL_INCHES + HEADER_INCHES)` inches; see `grid_size_px`.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

from tfvae.base import atomic
from tfvae.config import PICTURE_DRAWS, PICTURE_GRID, PICTURE_SAMPLES
from tfvae.training.rundir import MANIFOLD_FILE

__all__ = [
    "DPI",
    "CELL_INCHES",
    "HEADER_INCHES",
    "grid_size_px",
    "image_grid",
    "reconstructions",
    "mean_and_draws",
    "model_reconstructions",
    "model_mean_and_draws",
    "prior_samples",
    "latent_scatter",
    "manifold",
    "manifold_latents",
    "training_curves",
    "read_history_csv",
    "save_figure",
    "image_shape_of",
    "draw_samples",
    "draw_reconstructions",
    "draw_latent",
    "draw_curves",
]

DPI = 100
CELL_INCHES = 1.0
HEADER_INCHES = 0.5
LATENT_INCHES = (7.0, 6.0)
MANIFOLD_INCHES = (8.0, 8.5)
CURVES_INCHES = (12.0, 3.5)


def _figure(width: float, height: float):
    """A new Figure on the Agg canvas (headless; pyplot's global state is left alone)."""
    # The Agg canvas is attached directly: no display needed, and pyplot's backend (a
    # notebook's inline one, say) is not switched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def grid_size_px(rows: int, cols: int) -> Tuple[int, int]:
    """(height, width) in pixels of an `image_grid` PNG with `rows x cols` cells."""
    return (
        int(round((rows * CELL_INCHES + HEADER_INCHES) * DPI)),
        int(round(cols * CELL_INCHES * DPI)),
    )


def _as_images(x: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """`[..., D]` -> `[..., H, W]` (single channel) or `[..., H, W, C]`, clipped to [0, 1]."""
    x = np.asarray(x, np.float32)
    h, w, c = (tuple(image_shape) + (1,))[:3] if len(image_shape) == 2 else tuple(image_shape)
    if int(np.prod((h, w, c))) != x.shape[-1]:
        raise ValueError(
            f"image_shape {tuple(image_shape)} has {h * w * c} values but the arrays have "
            f"{x.shape[-1]} features"
        )
    out = np.clip(x.reshape(x.shape[:-1] + (h, w, c)), 0.0, 1.0)
    return out[..., 0] if c == 1 else out


def image_grid(
    rows: Sequence[np.ndarray],
    image_shape: Sequence[int],
    row_labels: Optional[Sequence[str]] = None,
    col_labels: Optional[Sequence[str]] = None,
    title: str = "",
):
    """A grid of images: `rows[i]` is `[cols, D]`; labels go on the left and on top."""
    images = [_as_images(r, image_shape) for r in rows]
    n_rows, n_cols = len(images), max(len(r) for r in images)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("image_grid needs at least one row with one image")
    height_px, width_px = grid_size_px(n_rows, n_cols)
    fig = _figure(width_px / DPI, height_px / DPI)
    top = 1.0 - HEADER_INCHES / (height_px / DPI)
    grid = fig.add_gridspec(n_rows, n_cols, left=0.0, right=1.0, bottom=0.0, top=top)
    grid.update(wspace=0.08, hspace=0.22)
    for i, row in enumerate(images):
        for j in range(n_cols):
            ax = fig.add_subplot(grid[i, j])
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                ax.imshow(row[j], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.set_axis_off()
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=7)
            if col_labels is not None and i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=7, pad=2)
    if title:
        fig.suptitle(title, fontsize=9, y=1.0 - 0.1 * HEADER_INCHES / (height_px / DPI), va="top")
    return fig


def reconstructions(
    inputs: np.ndarray, reconstructed: np.ndarray, image_shape: Sequence[int], title: str = ""
):
    """Two rows: test inputs x, then E[p(x|z)] for z = mean of q(z|x) (the "x-hat")."""
    if np.shape(inputs) != np.shape(reconstructed):
        raise ValueError(
            f"inputs {np.shape(inputs)} and reconstructions {np.shape(reconstructed)} differ"
        )
    return image_grid(
        [inputs, reconstructed],
        image_shape,
        row_labels=["input x", "mean of p(x|z)"],
        title=title or "inputs (top) and decoder means for z = E[q(z|x)] (bottom)",
    )


def mean_and_draws(
    means: np.ndarray, draws: np.ndarray, image_shape: Sequence[int], title: str = ""
):
    """For each z (one row): the decoder mean E[x|z], then several draws x ~ p(x|z).

    Args:
      means: `[num_z, D]` decoder means.
      draws: `[num_draws, num_z, D]` samples of the same distributions.

    The row's first image is fixed by z; the others differ: that is p(x|z).
    """
    means = np.asarray(means)
    draws = np.asarray(draws)
    if draws.ndim != 3 or draws.shape[1:] != means.shape:
        raise ValueError(
            f"draws must be [num_draws, {means.shape[0]}, {means.shape[-1]}], got {draws.shape}"
        )
    rows = [np.concatenate([means[i : i + 1], draws[:, i]]) for i in range(len(means))]
    labels = ["mean E[x|z]"] + [f"x ~ p(x|z) #{k + 1}" for k in range(draws.shape[0])]
    return image_grid(
        rows,
        image_shape,
        col_labels=labels,
        title=title or "one z per row: fixed parameters (mean), random draws of x",
    )


def model_reconstructions(model, x: np.ndarray, image_shape: Sequence[int]):
    """`reconstructions` of a `tfvae.VAE`: inputs `x` above the decoder means for
    z = E[q(z|x)] (the CLI's reconstructions.png and TensorBoard's picture)."""
    x = np.asarray(x, np.float32)
    from tfvae.model.distributions import latent_mean

    z = latent_mean(model.encode(x))
    return reconstructions(x, model.decode(z).mean().numpy(), image_shape)


def model_mean_and_draws(model, num: int, draws: int, seed: int, image_shape: Sequence[int]):
    """`mean_and_draws` of a `tfvae.VAE` for `num` latents z ~ p(z) drawn with `seed`, and
    `draws` samples x ~ p(x|z) each, drawn with seed `(seed, 1)` (the CLI's samples.png and
    TensorBoard's picture)."""
    from tfvae.model.seeds import as_seed

    px = model.sample_prior(num, seed=seed)
    samples = px.sample(draws, seed=as_seed(seed) + [0, 1]).numpy()
    return mean_and_draws(px.mean().numpy(), samples, image_shape)


def prior_samples(samples: np.ndarray, image_shape: Sequence[int], cols: int = 8, title=""):
    """Generated data x ~ p(x|z), z ~ p(z), laid out `cols` per row."""
    samples = np.asarray(samples)
    rows = [samples[i : i + cols] for i in range(0, len(samples), cols)]
    return image_grid(rows, image_shape, title=title or "samples from the prior: z ~ N(0, I)")


def _project_2d(z: np.ndarray) -> Tuple[np.ndarray, str]:
    """2-D coordinates: z itself when J <= 2, else its two leading principal components."""
    z = np.asarray(z, np.float64)
    if z.shape[1] == 1:
        return np.concatenate([z, np.zeros_like(z)], axis=1), "z_1"
    if z.shape[1] == 2:
        return z, "z"
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "PCA of z"


def latent_scatter(z_mean: np.ndarray, labels: Optional[np.ndarray] = None, title: str = ""):
    """The means of q(z|x), coloured by label (two principal components when J > 2)."""
    z_mean = np.asarray(z_mean)
    if z_mean.ndim != 2 or len(z_mean) == 0:
        raise ValueError(f"z_mean must be a non-empty [N, J] array, got shape {z_mean.shape}")
    xy, what = _project_2d(z_mean)
    fig = _figure(*LATENT_INCHES)
    ax = fig.add_subplot(1, 1, 1)
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.7)
    else:
        labels = np.asarray(labels)
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(f"{what} [0]" if what != "z" else "z_1")
    ax.set_ylabel(f"{what} [1]" if what != "z" else "z_2")
    ax.set_title(title or f"means of q(z|x) ({what}, J = {z_mean.shape[1]})", fontsize=10)
    return fig


def manifold_latents(n: int) -> np.ndarray:
    """`[n*n, 2]` latents: a regular grid of the unit square mapped through the inverse
    Gaussian CDF (Kingma & Welling 2013, Fig. 4), row-major, z_2 decreasing down the rows."""
    from scipy.stats import norm

    if int(n) < 2:
        raise ValueError(f"manifold grid size must be >= 2, got {n!r}")
    u = np.linspace(0.5 / n, 1 - 0.5 / n, int(n))
    z1, z2 = np.meshgrid(norm.ppf(u), norm.ppf(u)[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1).astype(np.float32)


def manifold(decoded: np.ndarray, image_shape: Sequence[int], n: int, title: str = ""):
    """Decoder means over `manifold_latents(n)` (`[n*n, D]`) tiled into one picture."""
    images = _as_images(decoded, image_shape)
    if len(images) != n * n:
        raise ValueError(f"need n*n = {n * n} decoded images, got {len(images)}")
    h, w = images.shape[1:3]
    tiled = images.reshape((n, n, h, w) + images.shape[3:]).swapaxes(1, 2)
    tiled = tiled.reshape((n * h, n * w) + images.shape[3:])
    fig = _figure(*MANIFOLD_INCHES)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(tiled, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("z_1 = inverse Gaussian CDF of a regular grid")
    ax.set_ylabel("z_2")
    ax.set_title(title or "learned manifold: E[x|z] over a grid of z (Kingma & Welling, Fig. 4)")
    return fig


def read_history_csv(path: str) -> dict:
    """The per-epoch metrics of a Keras `CSVLogger` file as `{name: [values]}` (columns
    that are all "NA", such as absent validation metrics, are left out)."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path!r} holds no epochs")

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):  # Keras writes "NA" for metrics it did not compute
            return math.nan

    columns = {k: [number(r[k]) for r in rows] for k in rows[0] if k != "epoch"}
    return {k: v for k, v in columns.items() if not all(math.isnan(x) for x in v)}


def training_curves(history: Mapping[str, Sequence[float]], title: str = ""):
    """ELBO, reconstruction log p(x|z) and KL per epoch (nats/example), from a Keras history."""
    panels = [k for k in ("elbo", "reconstruction", "kl") if k in history]
    if not panels:
        raise ValueError(f"history has none of elbo/reconstruction/kl: {sorted(history)}")
    fig = _figure(*CURVES_INCHES)
    for i, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        values = np.asarray(history[key], np.float64)
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, marker="." if len(values) < 30 else None, label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation")
            ax.legend(fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_title(key + (" = log p(x|z)" if key == "reconstruction" else ""), fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "training curves (nats per example)", fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.15, top=0.82, wspace=0.3)
    return fig


def save_figure(fig, path: str | os.PathLike) -> str:
    """Writes `fig` as a PNG at `DPI` (uncropped: the size is the figure's) atomically."""
    path = os.fspath(path)
    atomic.write_with(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return path


# ------------------------------------------------------------------ a model's PNGs
def image_shape_of(
    model, data_shape: Optional[Sequence[int]] = None, image_shape: Optional[Sequence[int]] = None
) -> Tuple[int, ...]:
    """The image shape to draw a model's examples in: `image_shape` if given, else its
    config's, else the data's, else square images of `input_dim` pixels where D allows
    (`tfvae.data.datasets.square_image_shape`), else one row of them.

    A recorded shape of one row, `(1, D, 1)`, counts as none: it is what tfvae recorded for
    a flat array file before it inferred square images, and it draws blank-looking strips.
    """
    from tfvae.data.datasets import square_image_shape

    d = model.config.input_dim
    if image_shape is not None:
        _as_images(np.zeros((1, d), np.float32), image_shape)  # checked: H * W * C = D
        return tuple(image_shape)
    for shape in (model.config.image_shape, data_shape):
        if shape is not None and tuple(shape) != (1, d, 1):
            return tuple(shape)
    return square_image_shape(d) or (1, d, 1)


def draw_samples(
    model,
    path,
    num: int = PICTURE_SAMPLES,
    draws: int = PICTURE_DRAWS,
    seed: int = 0,
    image_shape=None,
) -> str:
    """PNG of `num` prior latents: each row the decoder mean, then `draws` x ~ p(x|z)."""
    shape = image_shape_of(model, image_shape=image_shape)
    return save_figure(model_mean_and_draws(model, num, draws, seed, shape), path)


def draw_reconstructions(model, x: np.ndarray, path, image_shape=None, data_shape=None) -> str:
    """PNG of inputs `x` above the decoder means for z = E[q(z|x)] (shapes: `image_shape_of`)."""
    shape = image_shape_of(model, data_shape, image_shape)
    return save_figure(model_reconstructions(model, x, shape), path)


def draw_latent(
    model,
    x: np.ndarray,
    labels,
    path,
    grid: int = PICTURE_GRID,
    image_shape=None,
    data_shape=None,
) -> list:
    """PNG of latent means by label; for J = 2 also MANIFOLD_FILE beside it. Returns paths."""
    from tfvae.model.distributions import latent_mean

    z_mean = latent_mean(model.encode(x)).numpy()
    paths = [save_figure(latent_scatter(z_mean, labels), path)]
    if model.config.latent_dim == 2:
        decoded = model.decode(manifold_latents(grid)).mean().numpy()
        figure = manifold(decoded, image_shape_of(model, data_shape, image_shape), grid)
        paths.append(save_figure(figure, os.path.join(os.path.dirname(path), MANIFOLD_FILE)))
    return paths


def draw_curves(history_csv, path) -> Optional[str]:
    """PNG of the `training_curves` in a history CSV; None (nothing drawn) if it is missing."""
    if not os.path.isfile(history_csv):
        return None
    return save_figure(training_curves(read_history_csv(os.fspath(history_csv))), path)
