"""tfvae.plots: figure sizes, what lands in which pixel, the manifold grid, CSV reading."""

import statistics

import numpy as np
import pytest

from tfvae import plots


def saved(fig, tmp_path, name="f.png"):
    from matplotlib.image import imread

    path = plots.save_figure(fig, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left behind
    return imread(path)


def test_grid_png_has_documented_size_and_shows_the_images(tmp_path):
    white, black = np.ones((1, 16)), np.zeros((1, 16))
    fig = plots.image_grid([np.concatenate([white, black])], (4, 4, 1))
    image = saved(fig, tmp_path)
    assert image.shape[:2] == plots.grid_size_px(1, 2) == (150, 200)
    # Cell centres: the header is 50 px, each cell 100 x 100 px.
    assert image[100, 50, :3] == pytest.approx([1, 1, 1], abs=0.01)
    assert image[100, 150, :3] == pytest.approx([0, 0, 0], abs=0.01)


def test_mean_and_draws_rows_put_the_mean_first(tmp_path):
    means = np.full((2, 4), 1.0)  # white means
    draws = np.zeros((3, 2, 4))  # black draws
    image = saved(plots.mean_and_draws(means, draws, (2, 2, 1)), tmp_path)
    assert image.shape[:2] == plots.grid_size_px(2, 4)
    for row in range(2):
        y = 50 + 100 * row + 50
        assert image[y, 50, :3] == pytest.approx([1, 1, 1], abs=0.01)
        assert all(image[y, 150 + 100 * k, :3] == pytest.approx([0, 0, 0], abs=0.01)
                   for k in range(3))  # fmt: skip
    with pytest.raises(ValueError, match="draws must be"):
        plots.mean_and_draws(means, np.zeros((3, 4)), (2, 2, 1))


def test_reconstructions_and_shapes_are_checked():
    with pytest.raises(ValueError, match="differ"):
        plots.reconstructions(np.zeros((2, 4)), np.zeros((3, 4)), (2, 2, 1))
    with pytest.raises(ValueError, match="has 9 values but the arrays have 4"):
        plots.prior_samples(np.zeros((2, 4)), (3, 3, 1))


def test_manifold_latents_are_gaussian_quantiles_of_a_regular_grid():
    z = plots.manifold_latents(4)
    quantiles = [statistics.NormalDist().inv_cdf(p) for p in (0.125, 0.375, 0.625, 0.875)]
    assert z.shape == (16, 2)
    np.testing.assert_allclose(z[:4, 0], quantiles, rtol=1e-5)  # z_1 along a row
    np.testing.assert_allclose(z[::4, 1], quantiles[::-1], rtol=1e-5)  # z_2 down the rows
    with pytest.raises(ValueError, match=">= 2"):
        plots.manifold_latents(1)


def test_manifold_tiles_each_decoded_image_in_its_cell(tmp_path):
    n = 3
    decoded = np.zeros((n * n, 4))
    decoded[n * 1 + 2] = 1.0  # row 1, column 2 is white
    fig = plots.manifold(decoded, (2, 2, 1), n)
    ax = fig.axes[0]
    tiled = ax.images[0].get_array()
    assert tiled.shape == (6, 6)
    assert tiled[2:4, 4:6].min() == 1.0 and tiled.sum() == 4.0
    assert saved(fig, tmp_path).shape[:2] == (850, 800)


def test_latent_scatter_projects_on_principal_components():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 5)) * np.array([5.0, 0.1, 0.1, 2.0, 0.1])
    xy, what = plots._project_2d(z)
    assert what == "PCA of z"
    # The leading directions are axes 0 and 3 (largest variances): same up to sign.
    centred = z - z.mean(0)
    assert abs(np.corrcoef(xy[:, 0], centred[:, 0])[0, 1]) > 0.99
    assert abs(np.corrcoef(xy[:, 1], centred[:, 3])[0, 1]) > 0.99
    fig = plots.latent_scatter(z, labels=rng.integers(0, 10, 200))
    assert len(fig.axes) == 2  # the scatter and its label colour bar
    with pytest.raises(ValueError, match="non-empty"):
        plots.latent_scatter(np.zeros((0, 2)))


def test_training_curves_from_a_keras_csv_log(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text(
        "epoch,elbo,kl,loss,reconstruction,val_elbo\n"
        "0,-50.0,2.0,50.0,-48.0,NA\n"
        "1,-45.0,3.0,45.0,-42.0,NA\n"
    )
    history = plots.read_history_csv(str(csv))
    assert history == {"elbo": [-50, -45], "kl": [2, 3], "loss": [50, 45],
                       "reconstruction": [-48, -42]}  # fmt: skip
    fig = plots.training_curves(history)
    assert [ax.get_lines()[0].get_ydata().tolist() for ax in fig.axes] == [
        [-50, -45],
        [-48, -42],
        [2, 3],
    ]
    with pytest.raises(ValueError, match="none of elbo"):
        plots.training_curves({"loss": [1.0]})


def test_plots_leave_the_pyplot_backend_alone():
    import matplotlib

    before = matplotlib.get_backend()
    plots.prior_samples(np.zeros((3, 4)), (2, 2, 1))
    assert matplotlib.get_backend() == before
