"""VAE.set_output_bias / TrainConfig.output_bias_from_data: p(x|z) starts at the data's marginal.

References are numpy statistics of the data: with the head's kernel zeroed the decoder's
output is its bias alone, so its distribution must have the data's per-pixel mean and
variance (clipped as the module says), whatever z is.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk

from tfvae import VAE, TrainConfig, VAEConfig, train_and_evaluate
from tfvae.model.heads import soft_clip
from tfvae.model.output_bias import inverse_soft_clip

D = 12


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(301, D)) ** np.linspace(0.3, 3.0, D)  # a different mean per pixel
    return x.astype(np.float32)


def _model(decoder, **kwargs):
    config = VAEConfig(input_dim=D, latent_dim=2, hidden_units=(8,), decoder=decoder, **kwargs)
    return VAE(config)


def _head_only(model):
    """The decoder's output is its head's bias: every head kernel set to zero."""
    for layer in model.decoder.layers:
        if layer.name.startswith("x_") and getattr(layer, "kernel", None) is not None:
            layer.kernel.assign(tf.zeros_like(layer.kernel))
    z = np.random.default_rng(1).normal(size=(3, model.config.latent_dim)).astype(np.float32)
    return model.decode(z)


def _biases(model):
    return [w.numpy().copy() for w in model.decoder.weights if "bias" in w.name]


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian", "isotropic", "fixed_variance"])
def test_each_decoder_starts_at_the_datas_per_pixel_statistics(x, decoder):
    model = _model(decoder)
    model.set_output_bias(x)
    px = _head_only(model)
    mean = x.astype(np.float64).mean(axis=0)
    for row in px.mean().numpy():  # the same for every z
        np.testing.assert_allclose(row, mean, rtol=2e-6, atol=2e-7)
    variance = x.astype(np.float64).var(axis=0)
    if decoder == "gaussian":
        np.testing.assert_allclose(px.variance().numpy()[0], variance, rtol=2e-5)
    if decoder == "isotropic":  # one variance: the average of the per-pixel ones
        np.testing.assert_allclose(px.variance().numpy()[0], variance.mean(), rtol=2e-5)


def test_constant_pixels_are_clipped_as_burdas_code_and_the_soft_clip_need():
    x = np.random.default_rng(2).uniform(size=(50, D)).astype(np.float32)
    x[:, 0], x[:, 1] = 0.0, 1.0  # a pixel never on, one always on
    bernoulli = _model("bernoulli")
    logits = bernoulli.set_output_bias(x)["x_logits"]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[:2])), [0.001, 0.999], rtol=1e-9)
    gaussian = _model("gaussian", min_log_var=-6.0)
    gaussian.set_output_bias(x)
    log_var = np.log(_head_only(gaussian).variance().numpy()[0])
    np.testing.assert_allclose(log_var[:2], [-5.0, -5.0], rtol=1e-5)  # 1 nat inside the clip
    assert np.all(np.isfinite(log_var))
    narrow = _model("gaussian", min_log_var=-1.0, max_log_var=0.0)  # a quarter of the range
    narrow.set_output_bias(x)
    log_var = np.log(_head_only(narrow).variance().numpy()[0])
    np.testing.assert_allclose(log_var, -0.75, rtol=1e-5)  # every variance is below e^-1


def test_a_conv_head_gets_each_channels_statistics():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(40, 4, 4, 2)) * np.array([0.2, 0.9])  # channels differ
    x = images.reshape(40, -1).astype(np.float32)
    conv = dict(architecture="conv", image_shape=(4, 4, 2), conv_filters=(4,))
    bernoulli = VAE(VAEConfig(input_dim=32, latent_dim=2, hidden_units=(8,), **conv))
    p = images.astype(np.float64).mean(axis=(0, 1, 2))
    bernoulli.set_output_bias(x)
    gaussian = VAE(
        VAEConfig(input_dim=32, latent_dim=2, hidden_units=(8,), decoder="gaussian", **conv)
    )
    gaussian.set_output_bias(x)

    def bias(model, name):  # what was assigned to the layer (float32)
        return model.decoder.get_layer(name).bias.numpy()

    np.testing.assert_allclose(bias(bernoulli, "x_logits"), np.log(p / (1 - p)), rtol=1e-6)
    np.testing.assert_allclose(bias(gaussian, "x_mean"), p, rtol=1e-6)
    variance = images.astype(np.float64).var(axis=(0, 1, 2))  # about the channel's mean
    assert bias(gaussian, "x_log_var").shape == (2,)
    log_var = soft_clip(bias(gaussian, "x_log_var"), -8.0, 8.0)
    np.testing.assert_allclose(log_var, np.log(variance), rtol=1e-5)
    isotropic = VAE(
        VAEConfig(input_dim=32, latent_dim=2, hidden_units=(8,), decoder="isotropic", **conv)
    )
    isotropic.set_output_bias(x)
    # One variance about each channel's mean, over every pixel of both channels.
    shared = np.mean((images - p) ** 2)
    log_var = soft_clip(bias(isotropic, "x_log_var"), -8.0, 8.0)
    np.testing.assert_allclose(log_var, [np.log(shared)], rtol=1e-5)


def test_a_dataset_gives_the_arrays_biases(x):
    from_array = _model("gaussian").set_output_bias(x)
    y = np.arange(len(x))
    for ds in (
        tf.data.Dataset.from_tensor_slices(x).batch(16),  # the last batch short
        tf.data.Dataset.from_tensor_slices((x, y)).batch(50),
        tf.data.Dataset.from_tensor_slices(x.astype(np.float64)).batch(300),
    ):
        from_ds = _model("gaussian").set_output_bias(ds)
        for name in from_array:
            np.testing.assert_allclose(from_ds[name], from_array[name], rtol=1e-12)


def test_bad_data_is_named_and_changes_nothing(x):
    model = _model("bernoulli")
    before = _biases(model)
    nan = x.copy()
    nan[37, 4] = np.nan
    cases = [
        (x[:, :5], "shape"),
        (nan, "NaN"),
        (tf.data.Dataset.from_tensor_slices(nan).batch(16), r"index \(37, 4\)"),
        (tf.data.Dataset.from_tensor_slices(x * 3).batch(16), r"\[0, 1\]"),
        (x * 3, r"\[0, 1\]"),
        (tf.data.Dataset.from_tensor_slices(x).batch(16).take(0), "empty"),
        (x[:0], "empty"),
        (tf.data.Dataset.from_tensor_slices(x).batch(16).repeat(), "repeats forever"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            model.set_output_bias(bad)
    for was, now in zip(before, _biases(model)):
        np.testing.assert_array_equal(was, now)


def test_a_custom_decoder_without_tfvaes_head_is_told_to_set_its_own(x):
    config = VAEConfig(input_dim=D, latent_dim=2, hidden_units=(8,))
    z = tfk.Input(shape=(2,))
    logits = tfk.layers.Dense(D, name="pixels")(z)
    import tensorflow_probability as tfp

    decoder = tfk.Model(z, tfp.layers.IndependentBernoulli(D)(logits))
    model = VAE(config, decoder=decoder)
    bias = decoder.get_layer("pixels").bias.numpy().copy()
    with pytest.raises(ValueError, match="'x_logits'.*custom decoder"):
        model.set_output_bias(x)
    np.testing.assert_array_equal(decoder.get_layer("pixels").bias.numpy(), bias)


def test_inverse_soft_clip_inverts_it():
    y = np.linspace(-7.9, 7.9, 41)
    np.testing.assert_allclose(soft_clip(inverse_soft_clip(y, -8.0, 8.0), -8.0, 8.0), y, atol=1e-6)
    for outside in (-8.0, 8.5):
        with pytest.raises(ValueError, match="strictly inside"):
            inverse_soft_clip(outside, -8.0, 8.0)


# ------------------------------------------------------------------ training runs
TINY = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(16,))
FAST = dict(eval_samples=2, jit_compile=False)


def test_train_config_starts_a_fresh_run_at_the_training_mean(digits):
    config = TrainConfig(epochs=0, output_bias_from_data=True, **FAST)
    model, _, _ = train_and_evaluate(TINY, config, digits, verbose=0)
    p = np.clip(digits.x_train.astype(np.float64).mean(axis=0), 0.001, 0.999)
    bias = model.decoder.get_layer("x_logits").bias.numpy()
    np.testing.assert_allclose(bias, np.log(p / (1 - p)), rtol=1e-6, atol=1e-6)
    default, _, _ = train_and_evaluate(TINY, TrainConfig(epochs=0, **FAST), digits, verbose=0)
    assert np.abs(default.decoder.get_layer("x_logits").bias.numpy() - bias).max() > 1.0


class _Killed(Exception):
    pass


class _Kill(tfk.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise _Killed


def test_a_resumed_run_keeps_its_trained_bias(digits, tmp_path):
    """Resuming must not set the bias again: 1 epoch + 1 resumed = 2 straight epochs."""
    common = dict(output_bias_from_data=True, batch_size=100, **FAST)
    straight, _, _ = train_and_evaluate(
        TINY, TrainConfig(epochs=2, **common), digits, str(tmp_path / "straight"), verbose=0
    )
    work = str(tmp_path / "parts")
    with pytest.raises(_Killed):  # after epoch 1's checkpoint
        train_and_evaluate(
            TINY, TrainConfig(epochs=2, **common), digits, work, verbose=0, callbacks=[_Kill()]
        )
    resumed, _, _ = train_and_evaluate(
        TINY, TrainConfig(epochs=2, **common), digits, work, verbose=0
    )
    for a, b in zip(straight.decoder.get_weights(), resumed.decoder.get_weights()):
        np.testing.assert_array_equal(a, b)
