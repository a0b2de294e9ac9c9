"""Keras 3 objects at tfvae's borders: converted where exact, otherwise one line naming tf_keras."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk
from helpers import assert_one_line_naming

from tfvae import VAE, Data, TrainConfig, train_and_evaluate
from tfvae.engine import keras3
from tfvae.model.networks import make_decoder, make_encoder

ONE_LINE = r"is Keras 3; tfvae uses Keras 2: .*tf-keras.*TF_USE_LEGACY_KERAS=1"


def test_tf_keras_is_keras_3_here():
    """The premise: tf.keras in this TensorFlow is Keras 3, and keras3 sees it without tf_keras."""
    assert keras.__version__.startswith("3.")
    assert keras3.is_keras3(tf.keras.optimizers.Adam())
    assert not keras3.is_keras3(tfk.optimizers.Adam())
    assert not keras3.is_keras3(np.zeros(2)) and not keras3.is_keras3("adam")


@pytest.fixture
def model(small_config):
    return VAE(small_config)


# ------------------------------------------------------------------------- optimizers
def test_keras3_adam_trains_exactly_like_tf_keras_adam(small_config, binary_x):
    """`compile(optimizer=tf.keras.optimizers.Adam(...))` is rebuilt from its config: the
    same steps, bit for bit, as the tf_keras Adam it names."""
    weights = []
    for optimizer in (
        tfk.optimizers.Adam(3e-3, global_clipnorm=1.0),
        tf.keras.optimizers.Adam(3e-3, global_clipnorm=1.0),
    ):
        model = VAE(small_config)
        model.compile(optimizer=optimizer)
        assert type(model.optimizer) is tfk.optimizers.Adam
        model.fit(binary_x, epochs=1, batch_size=16, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "name",
    [
        "Adam",
        "AdamW",
        "SGD",
        "RMSprop",
        "Adagrad",
        "Adadelta",
        "Adamax",
        "Nadam",
        "Ftrl",
        "Lion",
        "Adafactor",
    ],
)
def test_builtin_optimizers_convert_with_their_settings(name, model):
    keras3_optimizer = getattr(keras.optimizers, name)(learning_rate=0.25, clipnorm=2.0)
    model.compile(optimizer=keras3_optimizer)
    converted = model.optimizer
    assert type(converted) is getattr(tfk.optimizers, name)
    assert np.float32(converted.learning_rate.numpy()) == np.float32(0.25)
    assert converted.clipnorm == 2.0


def test_sgd_momentum_and_schedule_convert(model):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True))
    config = model.optimizer.get_config()
    assert config["learning_rate"]["class_name"] == "ExponentialDecay"
    assert config["learning_rate"]["config"]["decay_rate"] == 0.5
    assert config["momentum"] == 0.9 and config["nesterov"]


def test_optimizers_that_cannot_convert_exactly_are_refused(model):
    with pytest.raises(keras3.Keras3Error, match="gradient_accumulation_steps") as e:
        model.compile(optimizer=keras.optimizers.Adam(gradient_accumulation_steps=2))
    assert_one_line_naming(e, "tf_keras.optimizers.Adam")

    stepped = keras.optimizers.SGD(0.1)
    variable = keras.Variable(1.0)
    stepped.apply_gradients([(tf.constant(1.0), variable)])
    with pytest.raises(keras3.Keras3Error, match=r"has stepped \(1 iterations\)") as e:
        model.compile(optimizer=stepped)
    assert_one_line_naming(e, "tf_keras.optimizers.SGD")

    class MyAdam(keras.optimizers.Adam):
        pass

    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        model.compile(optimizer=MyAdam())
    assert_one_line_naming(
        e, "MyAdam (a subclass of keras.optimizers.Adam)", "subclass tf_keras.optimizers"
    )

    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        model.compile(optimizer=keras.optimizers.Muon())
    assert_one_line_naming(e, "keras.optimizers.Muon", "tf_keras has no Muon")


# ------------------------------------------------------------------------- callbacks
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_keras3_callbacks_are_refused_by_name(method, model, binary_x):
    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        getattr(model, method)(binary_x, callbacks=[tf.keras.callbacks.EarlyStopping()], verbose=0)
    assert_one_line_naming(e, f"{method}(callbacks=...)", "tf_keras.callbacks.EarlyStopping(...)")


def test_keras3_callback_subclass_is_refused(model, binary_x):
    class Printer(keras.callbacks.Callback):
        pass

    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        model.fit(binary_x, epochs=1, callbacks=[Printer()], verbose=0)
    assert_one_line_naming(
        e, "Printer (a subclass of keras.callbacks.Callback)", "subclass tf_keras.callbacks"
    )


def test_train_and_evaluate_refuses_keras3_callbacks_before_training(small_config, binary_x):
    data = Data(binary_x, binary_x[:8], (4, 4, 1))
    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        train_and_evaluate(
            small_config,
            TrainConfig(epochs=1, batch_size=16),
            data,
            callbacks=[keras.callbacks.TerminateOnNaN()],
        )
    assert_one_line_naming(
        e, "train_and_evaluate(callbacks=...)", "tf_keras.callbacks.TerminateOnNaN"
    )


def test_tf_keras_callbacks_still_work(model, binary_x):
    history = model.fit(
        binary_x, epochs=1, batch_size=16, verbose=0, callbacks=[tfk.callbacks.TerminateOnNaN()]
    )
    assert "elbo" in history.history


# ------------------------------------------------------------------------- metrics
@pytest.mark.parametrize("key", ["metrics", "weighted_metrics"])
def test_keras3_metrics_are_refused(key, model):
    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        model.compile(**{key: ["mse", keras.metrics.Mean(name="m")]})
    assert_one_line_naming(e, f"compile({key}=...)", "tf_keras.metrics.Mean(...)")
    with pytest.raises(keras3.Keras3Error, match="keras.metrics.AUC"):
        model.compile(**{key: {"out": [keras.metrics.AUC()]}})


# ------------------------------------------------------------------------- layers
def test_keras3_model_as_encoder_is_refused(small_config):
    encoder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(6)])
    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        VAE(small_config, encoder=encoder)
    assert_one_line_naming(
        e, "VAE(encoder=...)", "keras.models.Sequential", "tf_keras.models.Sequential"
    )


def test_keras3_layer_inside_a_tf_keras_decoder_is_refused(small_config):
    class Decoder(tfk.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8)

        def call(self, z):
            return self.hidden(z)

    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        VAE(small_config, decoder=Decoder())
    assert_one_line_naming(
        e, "VAE(decoder=...)", "keras.layers.Dense", "tf_keras.layers.Dense(...)"
    )


def test_keras3_initializer_inside_a_tf_keras_layer_is_refused(small_config):
    inputs = tfk.Input((small_config.latent_dim,))
    dense = tfk.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform())
    with pytest.warns(UserWarning):  # tf_keras itself only warns, on serialization
        dense.get_config()
    decoder = tfk.Model(inputs, dense(inputs))
    with pytest.raises(keras3.Keras3Error, match=ONE_LINE) as e:
        VAE(small_config, decoder=decoder)
    assert_one_line_naming(e, "kernel_initializer", "tf_keras.initializers.GlorotUniform(...)")


def test_tf_keras_networks_are_accepted(small_config, binary_x):
    encoder, decoder = make_encoder(small_config), make_decoder(small_config)
    model = VAE(small_config, encoder=encoder, decoder=decoder)
    assert model(binary_x[:2], seed=0).mean().shape == (2, 16)


def test_the_advice_to_set_tf_use_legacy_keras_holds():
    """With TF_USE_LEGACY_KERAS=1, tf.keras is tf_keras: its objects pass unchanged."""
    code = (
        "import tensorflow as tf\n"
        "from tfvae.engine import keras3\n"
        "objs = [tf.keras.optimizers.Adam(), tf.keras.callbacks.EarlyStopping()]\n"
        "print([type(o).__module__.split('.')[0] for o in objs], any(map(keras3.is_keras3, objs)))"
    )
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "['tf_keras', 'tf_keras'] False", out.stdout
