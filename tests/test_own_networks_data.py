"""A user's own data (issue 33, items 5c and 9a): a flat `[N, D]` array is drawn as square
images, `--image-shape` draws it in any other shape, and numpy integers configure a VAE.

The picture tests look at the arrays the plotting code hands to `imshow` (captured from the
CLI's figures), not at PNG pixels: a 28 x 28 cell must hold the example's 784 values.
"""

import dataclasses
import json
import types

import numpy as np
import pytest
from helpers import one_line_error

from tfvae import plots
from tfvae.config import TrainConfig, VAEConfig
from tfvae.data import datasets

TINY = ["--epochs", "1", "--hidden-units", "16", "--eval-samples", "5", "--batch-size", "200"]


def mnist_shaped_digits() -> np.ndarray:
    """tfvae's embedded 8x8 digits, each pixel 3x3, padded to 28x28: `[1797, 784]` in {0, 1}."""
    d = datasets.load_default()
    x = np.concatenate([d.x_train, d.x_test]).reshape(-1, 8, 8).repeat(3, 1).repeat(3, 2)
    return np.pad(x, ((0, 0), (2, 2), (2, 2))).reshape(-1, 784).astype(np.float32)


def drawn_images(figure) -> list:
    """The arrays `imshow` got, one per grid cell, in row-major order."""
    return [np.asarray(ax.images[0].get_array()) for ax in figure.axes if ax.images]


@pytest.fixture
def figures(monkeypatch):
    """Every figure `tfvae.plots.save_figure` writes (still written) while the test runs."""
    seen = []
    save = plots.save_figure

    def recording(fig, path):
        seen.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "save_figure", recording)
    return seen


# ---------------------------------------------------------------- the shape of the data
def test_square_images_are_inferred_from_the_number_of_values():
    assert datasets.square_image_shape(784) == (28, 28, 1)
    assert datasets.square_image_shape(64) == (8, 8, 1)
    assert datasets.square_image_shape(3 * 32 * 32) == (32, 32, 3)  # channels last
    for d in (1, 6, 12, 48, 560, 785):  # 12 and 48: 3 s^2 with s < 8 are not pictures
        assert datasets.square_image_shape(d) is None, d


def test_a_flat_array_file_is_square_images_unless_told(tmp_path):
    np.save(tmp_path / "flat.npy", np.full((20, 784), 0.5, np.float32))
    np.save(tmp_path / "rows.npy", np.full((20, 6), 0.5, np.float32))
    assert datasets.load_array(str(tmp_path / "flat.npy")).image_shape == (28, 28, 1)
    assert datasets.load_array(str(tmp_path / "rows.npy")).image_shape == (1, 6, 1)
    told = datasets.load_dataset(str(tmp_path / "flat.npy"), image_shape=(14, 56))
    assert told.image_shape == (14, 56, 1) and told.input_dim == 784
    with pytest.raises(ValueError, match=r"image shape \(27, 27, 1\) does not fit flat.npy.*784"):
        datasets.load_array(str(tmp_path / "flat.npy"), image_shape=(27, 27, 1))


def test_image_shape_of_prefers_the_given_then_the_recorded_shape():
    def model(shape, d=784):
        return types.SimpleNamespace(config=VAEConfig(input_dim=d, image_shape=shape))

    assert plots.image_shape_of(model(None)) == (28, 28, 1)
    assert plots.image_shape_of(model((1, 784, 1))) == (28, 28, 1)  # a run recorded as a row
    assert plots.image_shape_of(model((1, 784, 1)), (1, 784, 1)) == (28, 28, 1)
    assert plots.image_shape_of(model((28, 28, 1)), (14, 56, 1)) == (28, 28, 1)
    assert plots.image_shape_of(model(None), (14, 56, 1)) == (14, 56, 1)
    assert plots.image_shape_of(model(None), None, (1, 784, 1)) == (1, 784, 1)  # asked for
    assert plots.image_shape_of(model(None, 6)) == (1, 6, 1)
    with pytest.raises(ValueError, match="has 729 values but the arrays have 784"):
        plots.image_shape_of(model(None), None, (27, 27, 1))


# ---------------------------------------------------------------- a flat .npy run, drawn
@pytest.mark.slow
def test_a_flat_784_run_draws_28x28_pictures_of_its_data(tmp_path, monkeypatch, figures):
    """Issue 33, 5c: `tfvae train` on `[N, 784]` drew each example as a 1 x 784 strip."""
    from tfvae.cli import main

    monkeypatch.chdir(tmp_path)
    x = mnist_shaped_digits()
    np.save(tmp_path / "flat.npy", x)
    assert main(["train", "--dataset", "flat.npy", "--out", "run", *TINY]) == 0
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["model_config"]["image_shape"] == [28, 28, 1]

    assert main(["reconstruct", "run", "--num", "4", "--out", "r.png"]) == 0
    inputs, means = np.split(np.stack(drawn_images(figures[-1])), 2)
    assert inputs.shape == means.shape == (4, 28, 28)
    for image in inputs:  # each top cell is one example of the file, laid out row-major
        assert (x == image.reshape(784)).all(axis=1).any()
        assert 0 < image.mean() < 1  # a digit: ink and background
    assert all(m.std() > 0 for m in means)  # decoder means vary over the picture

    assert main(["sample", "run", "--num", "2", "--draws", "3", "--out", "s.png"]) == 0
    cells = drawn_images(figures[-1])
    assert len(cells) == 8 and all(c.shape == (28, 28) for c in cells)
    assert all(c.std() > 0 for c in cells)


@pytest.mark.slow
def test_image_shape_option_draws_and_trains_in_the_shape_given(tmp_path, monkeypatch, figures):
    from tfvae.cli import main

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "flat.npy", mnist_shaped_digits())
    args = ["train", "--dataset", "flat.npy", "--out", "run", "--image-shape", "1,784,1"]
    assert main([*args, *TINY]) == 0
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["model_config"]["image_shape"] == [1, 784, 1]
    # --resume keeps the recorded shape (also a run's recorded before squares were inferred)
    (tmp_path / "run" / "metrics.json").unlink()  # killed before its metrics: unfinished
    assert main(["train", "--out", "run", "--resume"]) == 0
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["model_config"]["image_shape"] == [1, 784, 1]

    # a row recorded: drawn as squares; --image-shape draws what it says
    assert main(["sample", "run", "--num", "1", "--draws", "1", "--out", "a.png"]) == 0
    assert [c.shape for c in drawn_images(figures[-1])] == [(28, 28)] * 2
    assert main(["sample", "run", "--num", "1", "--draws", "1", "--image-shape", "14,56",
                 "--out", "b.png"]) == 0  # fmt: skip
    assert [c.shape for c in drawn_images(figures[-1])] == [(14, 56)] * 2


def test_bad_image_shapes_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from tfvae.cli import main

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "flat.npy", np.full((20, 784), 0.5, np.float32))
    for shape in ("28,x,1", "28", "28,28,1,1", "0,28,1"):
        with pytest.raises(SystemExit) as exit:
            main(["train", "--dataset", "flat.npy", "--out", "o", "--image-shape", shape])
        assert exit.value.code == 2
        assert "argument --image-shape: expected H,W,C" in one_line_error(capsys.readouterr().err)
    assert main(["train", "--dataset", "flat.npy", "--out", "o", "--image-shape", "27,27,1"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "image shape (27, 27, 1) does not fit flat.npy" in line and "= 784" in line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- numpy integers (9a)
def _integer_fields(cls):
    return [f for f in dataclasses.fields(cls) if f.type == "int"]


_INT_FIELDS = [(cls, f) for cls in (VAEConfig, TrainConfig) for f in _integer_fields(cls)]


@pytest.mark.parametrize("cls, field", _INT_FIELDS, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize("numpy_int", [np.int64, np.int32])
def test_numpy_integers_are_integers(cls, field, numpy_int):
    """`VAEConfig(input_dim=np.int64(784))` said "must be an integer >= 1, got np.int64(784)"."""
    value = field.default if field.name != "input_dim" else 784
    config = cls(**{field.name: numpy_int(value)})
    assert type(getattr(config, field.name)) is int and getattr(config, field.name) == value
    assert cls.from_json(config.to_json()) == config  # stored as a JSON integer


@pytest.mark.parametrize("cls, field", _INT_FIELDS, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize("value", [np.float64(3.0), 3.0, True, np.bool_(True), "3"])
def test_floats_bools_and_text_are_not_integers(cls, field, value):
    with pytest.raises(ValueError, match=rf"^{cls.__name__}\.{field.name}: must be an integer"):
        cls(**{field.name: value})


def test_numpy_integer_sizes_and_the_data_shape_are_accepted():
    x = np.zeros((5, 784), np.float32)
    config = VAEConfig(
        input_dim=x.shape[1],
        latent_dim=np.int32(8),
        hidden_units=tuple(np.array([64, 32])),
        image_shape=tuple(np.array([28, 28, 1])),
    )
    assert config.hidden_units == (64, 32) and config.image_shape == (28, 28, 1)
    assert all(type(v) is int for v in (*config.hidden_units, *config.image_shape))
    assert VAEConfig.from_json(config.to_json()) == config
