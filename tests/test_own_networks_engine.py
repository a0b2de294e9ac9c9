"""The engine with a user's own networks (issue 33): the default compile's XLA choice
(`tfvae.engine.jit_choice`), a short last batch, two replicas on CPU, and compile(metrics=)."""

import json
import logging

import numpy as np
import pytest
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import run_python

from tfvae import VAE, VAEConfig
from tfvae.engine import jit_choice

tfd, tfpl = tfp.distributions, tfp.layers
LATENT = 8
CONFIG = VAEConfig(input_dim=784, latent_dim=LATENT, hidden_units=(16,))
CHOICE_LOG = "tfvae.engine.jit_choice"


def _tril_encoder():
    """The TFP tutorial's full-covariance encoder."""
    return tfk.Sequential(
        [
            tfk.layers.InputLayer([784]),
            tfk.layers.Dense(tfpl.MultivariateNormalTriL.params_size(LATENT)),
            tfpl.MultivariateNormalTriL(LATENT),
        ]
    )


def _bernoulli_decoder():
    return tfk.Sequential(
        [
            tfk.layers.InputLayer([LATENT]),
            tfk.layers.Dense(784),
            tfpl.IndependentBernoulli(784, tfd.Bernoulli.logits),
        ]
    )


def _tfp_vae():
    return VAE(CONFIG, encoder=_tril_encoder(), decoder=_bernoulli_decoder())


def _x(n, seed=0):
    return (np.random.default_rng(seed).random((n, 784)) < 0.3).astype(np.float32)


# ------------------------------------------------------------------ item 1: a short last batch
def test_a_short_last_batch_trains_a_tfp_encoder_under_the_default_compile():
    """450 rows in batches of 100 end in a batch of 50; XLA cannot compile TFP's
    MultivariateNormalTriL for a batch of unknown size, so the default compile must not
    use it: 5 steps, the same losses and weights as `jit_compile=False` from the same start
    (both run TensorFlow's own kernels on the same seeded draws: equal to float32 rounding)."""
    x = _x(450)
    default, reference = _tfp_vae(), _tfp_vae()
    reference.set_weights(default.get_weights())
    default.compile()
    reference.compile(jit_compile=False)
    tfk.utils.set_random_seed(1)  # TFP's layers draw from TensorFlow's global seed too
    got = default.fit(x, batch_size=100, epochs=2, verbose=0).history
    tfk.utils.set_random_seed(1)
    want = reference.fit(x, batch_size=100, epochs=2, verbose=0).history
    assert int(default.optimizer.iterations) == 10
    for key in ("loss", "elbo", "reconstruction", "kl"):
        assert np.all(np.isfinite(got[key])), key
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
    for a, b in zip(default.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------- item 6: which networks get XLA
def _choice(model, caplog):
    """`(model.jit_compile, the choice's log lines)` after a plain `compile()`."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=CHOICE_LOG):
        model.compile()
    return bool(model.jit_compile), [r.getMessage() for r in caplog.records]


def test_the_built_in_mlp_keeps_xla_silently(caplog):
    for decoder in ("bernoulli", "gaussian", "isotropic", "fixed_variance"):
        config = VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8, 4), decoder=decoder)
        model = VAE(config)
        assert jit_choice.slow_layer(model) is None, decoder
        assert _choice(model, caplog) == (True, []), decoder


@pytest.mark.parametrize(
    "make, layer_type",
    [
        (
            lambda: VAE(
                VAEConfig(input_dim=64, latent_dim=2, architecture="conv", image_shape=(8, 8, 1))
            ),
            "Conv2D",
        ),
        (_tfp_vae, "MultivariateNormalTriL"),
        (
            lambda: VAE(
                CONFIG,
                encoder=tfk.Sequential(
                    [
                        tfk.layers.InputLayer([784]),
                        tfk.layers.Dense(2 * LATENT),
                        tfpl.IndependentNormal(LATENT),
                    ]
                ),
                decoder=_bernoulli_decoder(),
            ),
            "IndependentNormal",
        ),
    ],
)
def test_networks_with_other_layers_compile_without_xla_in_one_log_line(make, layer_type, caplog):
    """Convolutions (XLA on CPU runs them several times slower than TensorFlow's kernels) and
    TFP's layers (not compiled by XLA for a batch of unknown size) get `jit_compile=False`,
    said once, naming the layer; an explicit `jit_compile=True` is honoured, silently."""
    model = make()
    assert type(jit_choice.slow_layer(model)).__name__ == layer_type
    jit, lines = _choice(model, caplog)
    assert not jit
    assert len(lines) == 1 and f"({layer_type})" in lines[0] and "jit_compile=True" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=CHOICE_LOG):
        model.compile(jit_compile=True)
    assert model.jit_compile is True and not caplog.records


# --------------------------------------------------------- item 8: two replicas on CPU
_MIRRORED = """
import json, numpy as np
from tfvae.engine.distribute import use_logical_cpus
devices = use_logical_cpus(2)
import tensorflow as tf
from tfvae import VAE, VAEConfig
strategy = tf.distribute.MirroredStrategy(devices)
x = (np.random.default_rng(0).random((200, 16)) < 0.3).astype(np.float32)
config = VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,))
with strategy.scope():
    default, reference = VAE(config), VAE(config)
    default.compile()
    reference.compile(jit_compile=False)
got = default.fit(x, batch_size=50, epochs=1, verbose=0, shuffle=False).history["loss"]
want = reference.fit(x, batch_size=50, epochs=1, verbose=0, shuffle=False).history["loss"]
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "jit": bool(default.jit_compile),
                  "loss": got, "reference": want}))
"""


@pytest.mark.slow
def test_the_default_compile_trains_two_replicas_on_logical_cpus():
    """Under MirroredStrategy over two CPU devices XLA cannot place one replica per device;
    the default compile turns it off there, and trains as `jit_compile=False` does."""
    out = run_python(["-c", _MIRRORED], timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["jit"] is False
    assert np.isfinite(result["loss"]).all()
    np.testing.assert_allclose(result["loss"], result["reference"], rtol=1e-6)


# ------------------------------------------------------------- item 9c: compile(metrics=)
@pytest.mark.parametrize("key", ["metrics", "weighted_metrics"])
def test_compile_refuses_metrics_in_one_sentence(key):
    model = VAE(VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,)))
    with pytest.raises(ValueError) as e:
        model.compile(**{key: ["mse"]})
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"compile({key}=...)")
    assert "logs its own metrics (loss, elbo, reconstruction, kl)" in message
    assert "model.predict(x)" in message
    model.compile(**{key: None})  # None is Keras' default: taken
    history = model.fit(_x(20)[:, :16], batch_size=10, epochs=1, verbose=0).history
    assert sorted(history) == ["elbo", "kl", "loss", "reconstruction"]
