"""The objective's pieces against numpy formulas written from the paper."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import np_gaussian_ll, np_kl, np_log_mean_exp

from tfvae.model import objectives

tfd = tfp.distributions
rng = np.random.default_rng(1)


def np_bernoulli_ll(x, y):  # App. C.1: sum x log y + (1 - x) log(1 - y)
    return np.sum(x * np.log(y) + (1 - x) * np.log(1 - y), axis=-1)


def test_bernoulli_log_likelihood():
    x = (rng.random((5, 7)) > 0.5).astype(np.float32)
    logits = rng.normal(size=(5, 7)).astype(np.float32)
    y = 1 / (1 + np.exp(-logits.astype(np.float64)))
    np.testing.assert_allclose(
        objectives.bernoulli_log_likelihood(x, tf.constant(logits)),
        np_bernoulli_ll(x, y),
        rtol=1e-5,
    )


def test_gaussian_log_likelihood():
    x, mu = rng.normal(size=(2, 4, 6)).astype(np.float32)
    log_var = rng.normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(
        objectives.gaussian_log_likelihood(x, tf.constant(mu), tf.constant(log_var)),
        np_gaussian_ll(x, mu, log_var),
        rtol=1e-5,
    )


def test_standard_normal_log_prob_is_the_prior():
    z = rng.normal(size=(3, 5, 4)).astype(np.float32)
    expected = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * z.astype(np.float64) ** 2, -1)
    np.testing.assert_allclose(
        objectives.standard_normal_log_prob(tf.constant(z)), expected, rtol=1e-5
    )


def test_analytic_kl_matches_appendix_b_and_tfp():
    mu = rng.normal(size=(8, 3)).astype(np.float32)
    log_var = rng.normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_allclose(
        objectives.analytic_kl(tf.constant(mu), tf.constant(log_var)), np_kl(mu, log_var), rtol=1e-5
    )
    q = tfd.MultivariateNormalDiag(mu, np.exp(0.5 * log_var))
    prior = tfd.MultivariateNormalDiag(tf.zeros(3), tf.ones(3))
    np.testing.assert_allclose(
        objectives.kl_divergence(q, prior, "analytic"), np_kl(mu, log_var), rtol=1e-5
    )


def test_monte_carlo_kl_converges_to_closed_form():
    mu = rng.normal(size=(4, 3)).astype(np.float32)
    log_var = rng.normal(size=(4, 3)).astype(np.float32) * 0.5
    q = tfd.MultivariateNormalDiag(mu, np.exp(0.5 * log_var))
    prior = tfd.MultivariateNormalDiag(tf.zeros(3), tf.ones(3))
    z = q.sample(200_000, seed=tf.constant([3, 4]))
    mc = tf.reduce_mean(objectives.kl_divergence(q, prior, "monte_carlo", z), 0).numpy()
    np.testing.assert_allclose(mc, np_kl(mu, log_var), atol=0.02)


def test_iwae_bound_is_log_mean_exp():
    log_w = rng.normal(size=(50, 3)) * 3
    expected = np.log(np.mean(np.exp(log_w), axis=0))
    np.testing.assert_allclose(objectives.iwae_bound(tf.constant(log_w)), expected, rtol=1e-10)
    # Jensen: log mean exp >= mean
    assert np.all(expected >= log_w.mean(0))


def test_iwae_bound_in_chunks_equals_log_mean_exp():
    """The running logsumexp folded over uneven chunks gives the all-at-once bound."""
    log_w = (rng.normal(size=(37, 6)) * 4 - 90).astype(np.float32)  # far below exp's range
    state = (tf.fill([6], tf.constant(-np.inf)), tf.zeros([6]))
    for start, stop in ((0, 10), (10, 11), (11, 30), (30, 37)):
        state = objectives.running_logsumexp(*state, tf.constant(log_w[start:stop]))
    got = objectives.iwae_bound_from_running(*state, 37)
    np.testing.assert_allclose(got, np_log_mean_exp(log_w), rtol=1e-5)
    # all at once (float32, far below exp's range) against the float64 numpy bound
    whole = objectives.iwae_bound(tf.constant(log_w))
    np.testing.assert_allclose(whole, np_log_mean_exp(log_w), rtol=1e-6)


def test_bits_per_dim():
    assert abs(objectives.bits_per_dim(784 * np.log(2), 784) - 1.0) < 1e-12
