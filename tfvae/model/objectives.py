"""The VAE's objective as pure tensor functions: log-likelihoods, KL terms, ELBO, IWAE bound.

Written from Kingma & Welling (2013) and Burda et al. (2015); each has a numpy twin in the
tests. All return one value per example (nats), summed over the event dimensions.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.model import distributions

tfd = tfp.distributions

__all__ = [
    "bernoulli_log_prob",
    "bernoulli_log_likelihood",
    "gaussian_log_likelihood",
    "standard_normal_log_prob",
    "analytic_kl",
    "monte_carlo_kl",
    "kl_divergence",
    "iwae_bound",
    "running_logsumexp",
    "iwae_bound_from_running",
    "bits_per_dim",
]

_LOG_2PI = math.log(2.0 * math.pi)


@tf.custom_gradient
def _softplus(logits):
    """log(1 + e^l) as relu(l) + log(1 + e^-|l|): one exp and one log per element, where
    `tf.nn.softplus` lowers to a thresholded log1p(exp) that XLA:CPU runs slower. The
    gradient is exactly sigmoid(l) (also at l = 0, where autodiff of |l| would give 0)."""
    value = tf.nn.relu(logits) + tf.math.log(1.0 + tf.exp(-tf.abs(logits)))
    return value, lambda dy: dy * tf.sigmoid(logits)


def bernoulli_log_prob(x, logits):
    """Elementwise log Bern(x; sigmoid(l)) = x * l - softplus(l), from the logits `l`.

    The same number as x log y + (1 - x) log(1 - y), in one softplus pass (no log(0) for
    saturated y); `x` may be grey levels in [0, 1]. Returns the broadcast shape of x and l.
    """
    x = tf.cast(x, logits.dtype)
    return x * logits - _softplus(logits)


def bernoulli_log_likelihood(x, logits):
    """log p(x|z) = sum_i x_i log y_i + (1 - x_i) log(1 - y_i), y = sigmoid(logits) (App. C.1).

    `bernoulli_log_prob` summed over the event. Args: `x`, `logits` `[..., D]`. Returns `[...]`.
    """
    return tf.reduce_sum(bernoulli_log_prob(x, logits), -1)


def gaussian_log_likelihood(x, mean, log_var):
    """log N(x; mu, diag sigma^2) = -1/2 sum_i[log 2pi + log s_i^2 + (x_i-mu_i)^2/s_i^2]."""
    x = tf.convert_to_tensor(x, dtype=mean.dtype)
    log_var = tf.broadcast_to(log_var, tf.shape(mean))
    return -0.5 * tf.reduce_sum(_LOG_2PI + log_var + tf.square(x - mean) * tf.exp(-log_var), -1)


def standard_normal_log_prob(z):
    """log N(z; 0, I) = -1/2 sum_j (log 2pi + z_j^2): the prior p(z) of the paper."""
    return -0.5 * tf.reduce_sum(_LOG_2PI + tf.square(z), -1)


def analytic_kl(mean, log_var):
    """KL(N(mu, diag s^2) || N(0, I)) = -1/2 sum_j (1 + log s_j^2 - mu_j^2 - s_j^2) (App. B)."""
    return -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mean) - tf.exp(log_var), -1)


def monte_carlo_kl(q: tfd.Distribution, prior: tfd.Distribution, z):
    """Monte Carlo estimate log q(z|x) - log p(z) at draws `z ~ q(z|x)` (`[..., batch, J]`)."""
    return q.log_prob(z) - prior.log_prob(z)


def kl_divergence(q: tfd.Distribution, prior: tfd.Distribution, method: str = "analytic", z=None):
    """KL(q(z|x) || p(z)) per example, in closed form or by Monte Carlo at `z`.

    `analytic` is TFP's closed form where its registry has one for the pair, the prior
    restated in q's form if need be, else the Monte Carlo estimate at `z`
    (`tfvae.model.distributions.kl_divergence`).
    """
    if method == "analytic":
        return distributions.kl_divergence(q, prior, z)
    if method == "monte_carlo":
        if z is None:
            raise ValueError("kl_divergence(method='monte_carlo') needs draws z ~ q(z|x)")
        return monte_carlo_kl(q, prior, z)
    raise ValueError(f"kl method must be 'analytic' or 'monte_carlo', got {method!r}")


def iwae_bound(log_weights, axis: int = 0):
    """log (1/K) sum_k w_k from log-weights log p(x, z_k) - log q(z_k|x) (Burda et al. 2015).

    With K = 1 this is the ELBO estimate; it rises towards log p(x) as K grows.
    """
    log_weights = tf.convert_to_tensor(log_weights)
    k = tf.cast(tf.shape(log_weights)[axis], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=axis) - tf.math.log(k)


def running_logsumexp(running_max, running_sum, log_weights):
    """Folds a chunk of log-weights `[k, ...]` into a running logsumexp over the draws.

    The state is (m, s) with logsumexp = m + log s; start from (-inf, 0) `[...]`. Lets the
    IWAE bound use any K in bounded memory. Returns the new (m, s).
    """
    new_max = tf.maximum(running_max, tf.reduce_max(log_weights, axis=0))
    new_sum = running_sum * tf.exp(running_max - new_max) + tf.reduce_sum(
        tf.exp(log_weights - new_max), axis=0
    )
    return new_max, new_sum


def iwae_bound_from_running(running_max, running_sum, importance_samples):
    """`iwae_bound` from the state of `running_logsumexp` after all `importance_samples` draws."""
    k = tf.cast(importance_samples, running_sum.dtype)
    return running_max + tf.math.log(running_sum) - tf.math.log(k)


def bits_per_dim(nats, dim: int):
    """Converts a negative log-likelihood in nats per example into bits per dimension."""
    return nats / (dim * math.log(2.0))
