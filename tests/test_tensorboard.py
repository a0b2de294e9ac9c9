"""TensorBoard logs of a run, read back from the event files: evaluation scalars, pictures,
hyperparameters; and the same trained weights with or without them."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tfvae import VAE, TrainConfig, VAEConfig, train_and_evaluate
from tfvae.data.datasets import load_default
from tfvae.training.tensorboard import EVAL_DIR, EvalSummaries, hparams_of
from tfvae.training.train import make_callbacks


def read_events(log_dir):
    """{tag: {step: value}} of every event file under `log_dir` (scalars as floats, images as
    their encoded PNG bytes, hparams as their plugin data), and {tag: plugin name}."""
    values, plugins = {}, {}
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                plugin = v.metadata.plugin_data.plugin_name or plugins.get(v.tag)
                plugins[v.tag] = plugin
                if plugin == "scalars":
                    value = float(tf.make_ndarray(v.tensor))
                elif plugin == "images":
                    value = tf.make_ndarray(v.tensor)[2]  # [width, height, png...]
                else:
                    value = v.metadata.plugin_data.content
                values.setdefault(v.tag, {})[event.step] = value
    return values, plugins


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    data = load_default()
    config = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(16,), seed=2)
    train_config = TrainConfig(epochs=3, batch_size=64, eval_samples=5)
    callbacks = make_callbacks(root / "a")
    with_logs = train_and_evaluate(
        config, train_config, data, str(root / "a"), verbose=0, callbacks=callbacks
    )
    without = train_and_evaluate(config, train_config, data, str(root / "b"), verbose=0)
    return root, with_logs, without, callbacks


def test_eval_scalars_images_and_hparams_are_logged(runs):
    root, (_, _, metrics), _, _ = runs
    values, plugins = read_events(str(root / "a" / "logs"))
    for term in ("elbo", "reconstruction", "kl"):
        assert plugins[f"val_{term}"] == "scalars"
        assert sorted(values[f"val_{term}"]) == [0, 1, 2]  # every epoch (0-based, as Keras')
        assert plugins[f"epoch_{term}"] == "scalars"  # Keras' training scalars stay
    assert "val_iwae" not in values  # an ELBO-trained model has no IWAE objective to log
    # The last evaluation is the run's own test evaluation (same seeded draws, same batches).
    assert values["val_elbo"][2] == pytest.approx(metrics["elbo"], abs=1e-4)
    assert values["val_kl"][2] == pytest.approx(metrics["kl"], abs=1e-4)
    for tag in ("reconstructions", "samples"):
        assert plugins[tag] == "images"
        assert sorted(values[tag]) == [0, 2]  # the first epoch and the last
        assert values[tag][2].startswith(b"\x89PNG")
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        values["_hparams_/session_start_info"][0]
    ).session_start_info
    assert start.hparams["VAEConfig.latent_dim"].number_value == 2
    assert start.hparams["VAEConfig.hidden_units"].string_value == "(16,)"
    assert start.hparams["TrainConfig.batch_size"].number_value == 64
    assert os.path.isdir(root / "a" / "logs" / EVAL_DIR)


def test_logging_does_not_change_training(runs):
    _, (model_a, history_a, metrics_a), (model_b, history_b, metrics_b), _ = runs
    for a, b in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert history_a == history_b and metrics_a == metrics_b


def test_the_callers_eval_summaries_is_left_as_it_was(runs):
    """train_and_evaluate fits a copy given the test split and configs (`for_run`)."""
    (summaries,) = [c for c in runs[3] if isinstance(c, EvalSummaries)]
    fresh = EvalSummaries(summaries.log_dir)
    assert summaries.x_eval is None and summaries.hparams is None
    assert (summaries.every_epochs, summaries.batch_size, summaries.seed) == (
        fresh.every_epochs,
        fresh.batch_size,
        fresh.seed,
    )
    assert summaries.model is None  # never fitted itself
    with pytest.raises(AttributeError, match="use EvalSummaries.for_run"):
        summaries.attach(None, None, None)


def test_plain_fit_with_an_evaluation_cadence(tmp_path):
    """Here with the IWAE objective: its bound is logged too (`val_iwae`)."""
    data = load_default()
    model = VAE(
        VAEConfig(input_dim=64, latent_dim=2, hidden_units=(8,), objective="iwae", num_samples=3)
    )
    model.compile()
    summaries = EvalSummaries(
        str(tmp_path),
        x_eval=data.x_test[:50],
        every_epochs=2,
        image_every_epochs=0,
        hparams=hparams_of(model.config),
    )
    model.fit(data.x_train[:200], epochs=4, batch_size=100, verbose=0, callbacks=[summaries])
    values, _ = read_events(str(tmp_path))
    assert sorted(values["val_elbo"]) == sorted(values["val_iwae"]) == [1, 3]
    assert all(values["val_iwae"][e] > values["val_elbo"][e] for e in (1, 3))
    last = model.evaluate(data.x_test[:50], batch_size=100, verbose=0, return_dict=True)
    assert values["val_iwae"][3] == pytest.approx(last["iwae"], abs=1e-5)
    assert "reconstructions" not in values and "samples" not in values
    assert "_hparams_/session_start_info" in values


def test_eval_every_epochs_is_checked():
    with pytest.raises(ValueError, match="TrainConfig.eval_every_epochs"):
        TrainConfig(eval_every_epochs=-1)
