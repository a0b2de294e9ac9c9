"""End-to-end training: the ELBO rises by a clear margin on real data; Gaussian stays finite."""

import json

import numpy as np
import pytest

from tfvae import TrainConfig, VAEConfig, load_model, train_and_evaluate
from tfvae.data.datasets import Data, load_default, load_frey_face, load_mnist


def _elbo_gain(config, train_config, data, tmp_path=None):
    from tfvae import VAE

    before = VAE(config)
    before.compile()
    start = before.evaluate(data.x_test, verbose=0, return_dict=True)["elbo"]
    model, history, metrics = train_and_evaluate(
        config, train_config, data, None if tmp_path is None else str(tmp_path), verbose=0
    )
    return start, metrics, history, model


@pytest.mark.slow
def test_default_dataset_elbo_rises_and_is_saved(tmp_path):
    data = load_default()
    config = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(200,))
    start, metrics, history, model = _elbo_gain(
        config, TrainConfig(epochs=15, eval_samples=50), data, tmp_path
    )
    assert metrics["elbo"] > start + 10  # nats per example: ~-44 untrained
    assert metrics["log_likelihood"] >= metrics["elbo"] - 0.5
    assert history["elbo"][-1] > history["elbo"][0]
    saved = json.load(open(tmp_path / "metrics.json"))
    assert saved["test"]["elbo"] == pytest.approx(metrics["elbo"])
    loaded = load_model(tmp_path / "model")
    np.testing.assert_array_equal(
        loaded.encoder(data.x_test).mean(), model.encoder(data.x_test).mean()
    )
    with pytest.raises(FileExistsError):
        train_and_evaluate(config, TrainConfig(epochs=0), data, str(tmp_path), verbose=0)


@pytest.mark.slow
def test_mnist_test_file_elbo_rises(data_dir):
    mnist = load_mnist(data_dir, binarization="static", seed=0)
    # Train on the 10,000 test images (the file the issue names), evaluate on 1,000 of them.
    data = Data(mnist.x_test, mnist.x_test[:1000], (28, 28, 1), binary=True)
    config = VAEConfig(input_dim=784, latent_dim=10, hidden_units=(200,))
    start, metrics, _, _ = _elbo_gain(config, TrainConfig(epochs=3, eval_samples=10), data)
    assert start < -500 and metrics["elbo"] > -200  # from ~-543 nats to well under 200


@pytest.mark.slow
def test_gaussian_decoder_on_frey_face_stays_finite(data_dir):
    data = load_frey_face(data_dir)
    config = VAEConfig(input_dim=560, latent_dim=5, decoder="gaussian", hidden_units=(200,))
    start, metrics, history, _ = _elbo_gain(config, TrainConfig(epochs=20, eval_samples=10), data)
    assert all(np.isfinite(v) for v in history["loss"])
    assert np.isfinite(metrics["elbo"]) and metrics["elbo"] > start + 100


def _beta_recorder():
    """A callback recording beta as each epoch begins (after KLWarmup's, which comes first)."""
    import tf_keras as tfk

    class BetaAtEpochBegin(tfk.callbacks.Callback):
        betas = []

        def on_epoch_begin(self, epoch, logs=None):
            self.betas.append(float(self.model.kl_weight.numpy()))

    return BetaAtEpochBegin()


@pytest.mark.parametrize("epochs, warmup", [(4, 2), (2, 3)])
def test_kl_warmup_follows_its_schedule(epochs, warmup):
    data = load_default()
    target = 0.5
    config = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(32,), kl_weight=target)
    record = _beta_recorder()
    train_config = TrainConfig(
        epochs=epochs, kl_warmup_epochs=warmup, eval_samples=2, batch_size=200
    )
    model, history, metrics = train_and_evaluate(
        config, train_config, data, verbose=0, callbacks=[record]
    )
    # Bowman et al.'s linear warm-up, in closed form: beta_e = min(1, e / warmup) * target.
    expected = [min(1.0, e / warmup) * target for e in range(epochs)]
    assert record.betas == pytest.approx(expected, abs=1e-7)
    # ...and the loss each epoch was trained on used it: loss = -reconstruction + beta * kl.
    for e, beta in enumerate(expected):
        loss = -history["reconstruction"][e] + beta * history["kl"][e]
        assert history["loss"][e] == pytest.approx(loss, rel=1e-4, abs=1e-3)
    # Evaluation is at the configured beta, even when the run ends mid-warm-up.
    assert float(model.kl_weight.numpy()) == pytest.approx(target)


def test_input_dim_mismatch_is_refused():
    with pytest.raises(ValueError, match="input_dim is 10 but the data has 64"):
        train_and_evaluate(VAEConfig(input_dim=10), TrainConfig(epochs=1), load_default())
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)


def _tiny_run(workdir, epochs):
    from tfvae.training.train import make_callbacks

    data = load_default()
    config = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(8,))
    train_config = TrainConfig(epochs=epochs, batch_size=200, eval_samples=2)
    callbacks = make_callbacks(str(workdir))
    return train_and_evaluate(config, train_config, data, str(workdir), 0, callbacks=callbacks)


def test_history_csv_counts_epochs_from_one_and_resumes(tmp_path):
    import csv
    import shutil

    _tiny_run(tmp_path, epochs=2)
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # as the console counts
    assert list(rows[0]) == ["epoch", "elbo", "kl", "loss", "reconstruction"]  # no empty val_*
    # Interrupted after epoch 2 (no model yet): the resumed run keeps the rows it had.
    shutil.rmtree(tmp_path / "model")
    _, history, _ = _tiny_run(tmp_path, epochs=3)
    with open(tmp_path / "history.csv", newline="") as f:
        resumed = list(csv.DictReader(f))
    assert resumed[:2] == rows and [r["epoch"] for r in resumed] == ["1", "2", "3"]
    assert [float(r["elbo"]) for r in resumed] == pytest.approx(history["elbo"])


def test_history_csv_drops_a_cut_row_and_later_epochs(tmp_path):
    import tf_keras as tfk

    from tfvae.engine.callbacks import HistoryCSV

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n1,5.0\n2,4.5\n3,4.")  # killed mid-row, resumed after epoch 1
    logger = HistoryCSV(str(path))
    logger.set_model(tfk.Sequential([tfk.layers.Dense(1, input_shape=(1,))]))
    logger.on_train_begin()
    logger.on_epoch_begin(1)
    logger.on_epoch_end(1, {"loss": 3.0, "note": "text"})
    assert path.read_text() == "epoch,loss\n1,5.0\n2,3.0\n"


def test_epoch_line_prints_fixed_point(capsys):
    import tf_keras as tfk

    from tfvae.engine.callbacks import EpochLine

    line = EpochLine()
    line.set_model(tfk.Sequential([tfk.layers.Dense(1, input_shape=(1,))]))
    line.set_params({"epochs": 5})
    line.on_epoch_begin(0)
    line.on_epoch_end(0, {"loss": 33.38, "elbo": -33.38, "kl": 0.0001234})
    out = capsys.readouterr().out
    assert out.startswith("Epoch 1/5 - ") and "elbo: -33.3800" in out
    assert "loss: 33.3800" in out and "kl: 1.2340e-04" in out and "e+01" not in out
