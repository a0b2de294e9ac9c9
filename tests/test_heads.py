"""Distribution heads: parameters in, the right distribution out (checked against numpy)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import np_gaussian_ll, np_soft_clip

from tfvae import VAEConfig
from tfvae.model.heads import (
    BernoulliLogits,
    DiagonalGaussian,
    FixedVarianceGaussian,
    IsotropicGaussian,
    isotropic_gaussian_head,
    make_head,
    soft_clip,
)
from tfvae.model.networks import make_decoder, make_encoder

rng = np.random.default_rng(2)


def test_diagonal_gaussian_params_round_trip():
    mean = rng.normal(size=(4, 5)).astype(np.float32)
    log_var = rng.uniform(-3, 3, size=(4, 5)).astype(np.float32)
    d = DiagonalGaussian(5)(np.concatenate([mean, log_var], -1))
    assert DiagonalGaussian.params_size(5) == 10
    assert d.event_shape == [5]
    np.testing.assert_allclose(d.mean(), mean, rtol=1e-6)
    np.testing.assert_allclose(np.log(d.variance()), np_soft_clip(log_var), rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(np_soft_clip(log_var) - log_var)) < 0.01  # ~identity inside bounds
    x = rng.normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(
        d.log_prob(x), np_gaussian_ll(x, mean, np_soft_clip(log_var)), rtol=1e-4
    )


def test_isotropic_shares_one_variance():
    assert IsotropicGaussian.params_size(6) == 7
    params = rng.normal(size=(3, 7)).astype(np.float32)
    d = IsotropicGaussian(6)(params)
    # every pixel of a row has that row's one variance, exp(soft_clip(params[:, 6]))
    want = np.repeat(np.exp(np_soft_clip(params[:, 6:].astype(np.float64))), 6, axis=1)
    np.testing.assert_allclose(d.variance(), want, rtol=1e-4)
    np.testing.assert_allclose(d.mean(), params[:, :6], rtol=1e-6)


def test_fixed_variance():
    mean = rng.normal(size=(2, 3)).astype(np.float32)
    d = FixedVarianceGaussian(3, variance=0.25)(mean)
    np.testing.assert_allclose(d.stddev(), 0.5)
    x = rng.normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(d.log_prob(x), np_gaussian_ll(x, mean, np.log(0.25)), rtol=1e-5)


def test_soft_clip_bounds_and_gradient():
    x = tf.constant([-1e4, -20.0, 0.0, 3.0, 20.0, 1e4])
    y = soft_clip(x, -8.0, 8.0).numpy()
    assert np.all(y >= -8.0) and np.all(y <= 8.0)
    assert abs(y[2]) < 1e-6 and abs(y[3] - 3.0) < 1e-2
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = soft_clip(x, -8.0, 8.0)
    grad = tape.gradient(out, x).numpy()
    assert np.all(grad >= 0) and grad[2] > 0.99


def test_gaussian_decoder_has_two_parallel_heads_on_one_hidden_layer():
    decoder = make_decoder(
        VAEConfig(input_dim=10, latent_dim=2, decoder="gaussian", hidden_units=(7,))
    )
    mean, log_var = decoder.get_layer("x_mean"), decoder.get_layer("x_log_var")
    assert mean.input is log_var.input  # same hidden features feed both
    assert mean.output.shape[-1] == log_var.output.shape[-1] == 10
    # The distribution's parameters are those two heads' outputs, written out in numpy:
    # h = tanh(z W + b), mean = h W_m + b_m, log-variance = soft_clip(h W_v + b_v).
    z = rng.normal(size=(3, 2)).astype(np.float32)
    px = decoder(z)
    w, b = (v.numpy().astype(np.float64) for v in decoder.get_layer("decoder_hidden_0").weights)
    h = np.tanh(z @ w + b)
    w_m, b_m = (v.numpy().astype(np.float64) for v in mean.weights)
    w_v, b_v = (v.numpy().astype(np.float64) for v in log_var.weights)
    np.testing.assert_allclose(px.mean(), h @ w_m + b_m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.log(px.variance()), np_soft_clip(h @ w_v + b_v), atol=1e-4)


def test_isotropic_head_has_one_log_variance_unit_and_takes_layer_init():
    features = tfk.Input((5,))
    calls = []

    def layer_init():
        calls.append(len(calls))
        return {"bias_initializer": tfk.initializers.Constant(float(len(calls)))}

    px = tfk.Model(features, isotropic_gaussian_head(features, 4, layer_init=layer_init))
    assert px.get_layer("x_mean").units == 4 and px.get_layer("x_log_var").units == 1
    assert isinstance(px(np.zeros((2, 5), np.float32)), tfp.distributions.Distribution)
    # One call per projection, in build order: the means first, then the log-variance.
    assert calls == [0, 1]
    np.testing.assert_array_equal(px.get_layer("x_mean").bias, 1.0)
    np.testing.assert_array_equal(px.get_layer("x_log_var").bias, 2.0)


def test_bernoulli_decoder_log_prob_matches_appendix_c1():
    decoder = make_decoder(VAEConfig(input_dim=9, latent_dim=2, hidden_units=(5,)))
    z = rng.normal(size=(4, 2)).astype(np.float32)
    px = decoder(z)
    y = px.mean().numpy().astype(np.float64)
    x = (rng.random((4, 9)) > 0.5).astype(np.float32)
    expected = np.sum(x * np.log(y) + (1 - x) * np.log(1 - y), -1)
    np.testing.assert_allclose(px.log_prob(x), expected, rtol=1e-5)
    # Draws are 0 or 1, each pixel 1 with probability y: over n draws every pixel's frequency
    # lies within 5 standard errors of y (a 1-in-10^6 miss per pixel at a fixed seed).
    n = 20_000
    draws = px.sample(n, seed=(1, 2)).numpy()
    assert draws.shape == (n, 4, 9) and set(np.unique(draws)) == {0.0, 1.0}
    standard_error = np.sqrt(y * (1 - y) / n)
    assert np.all(np.abs(draws.mean(0) - y) < 5 * standard_error + 1e-6)
    np.testing.assert_array_equal(draws, px.sample(n, seed=(1, 2)).numpy())  # seeded


@pytest.mark.parametrize("jit", [False, True])
def test_logit_bernoulli_log_prob_and_gradient_match_closed_form(jit):
    # The one-pass x*l - softplus(l) against float64 numpy, at saturated logits, at l = 0
    # (where autodiff of |l| would give the wrong gradient), and for grey-level x.
    logits = np.concatenate(
        [rng.normal(scale=5.0, size=(3, 8)), np.zeros((1, 8)), np.full((1, 8), 60.0)]
    )
    logits[4, :4] = -60.0
    x = np.concatenate([rng.random((4, 8)) > 0.5, rng.random((1, 8))]).astype(np.float32)
    l32 = tf.constant(logits, tf.float32)

    @tf.function(jit_compile=jit)
    def value_and_grad(params):
        with tf.GradientTape() as tape:
            tape.watch(params)
            log_prob = BernoulliLogits.new(params, 8).log_prob(x)
            total = tf.reduce_sum(log_prob)
        return log_prob, tape.gradient(total, params)

    log_prob, grad = value_and_grad(l32)
    l64 = l32.numpy().astype(np.float64)
    expected = np.sum(x * l64 - np.logaddexp(0.0, l64), -1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(grad, x - 1.0 / (1.0 + np.exp(-l64)), atol=1e-6)
    # Same numbers as TFP's own Bernoulli (two softplus passes), away from saturation.
    tfp_log_prob = tfp.distributions.Independent(tfp.distributions.Bernoulli(logits=l32), 1)
    np.testing.assert_allclose(log_prob[:4], tfp_log_prob.log_prob(x)[:4], rtol=1e-6, atol=1e-5)


def test_encoder_outputs_multivariate_normal_diag():
    encoder = make_encoder(VAEConfig(input_dim=9, latent_dim=4, hidden_units=(5,)))
    q = encoder(np.zeros((2, 9), np.float32))
    assert isinstance(q.tensor_distribution, tfp.distributions.MultivariateNormalDiag)
    assert q.event_shape == [4] and q.batch_shape == [2]


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian", "isotropic", "fixed_variance"])
def test_conv_heads_give_pixel_events(decoder):
    config = VAEConfig(
        input_dim=64,
        latent_dim=2,
        decoder=decoder,
        architecture="conv",
        image_shape=(8, 8, 1),
        hidden_units=(16,),
        conv_filters=(4, 8),
    )
    px = make_decoder(config)(np.zeros((3, 2), np.float32))
    assert px.event_shape == [64] and px.batch_shape == [3]
    assert np.all(np.isfinite(px.log_prob(np.full((3, 64), 0.5, np.float32))))


def test_make_head_rejects_unknown_decoder():
    config = VAEConfig()
    object.__setattr__(config, "decoder", "poisson")
    with pytest.raises(ValueError, match="poisson"):
        make_head(tfk.Input((3,)), config)
