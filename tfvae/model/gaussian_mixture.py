"""A mixture of diagonal Gaussians whose log density costs two matrix products.

TFP's `MixtureSameFamily.log_prob` evaluates every component at every point, a
`[points, K, J]` tensor: for a VampPrior (K = 500 components of J = 50, at 500 draws a step)
that is 12.5 million squared differences forward and back, most of a training step, and a
gigabyte per 10,000 draws at evaluation. Expanding the square,
sum_j (z_j - mu_kj)^2 / s_kj^2 = z^2 . a_k - 2 z . (mu_k a_k) + mu_k^2 . a_k with a = 1 / s^2,
gives the same numbers from `[points, J] x [J, K]` products (about 9x faster with its
gradient on this CPU). z and mu are first centred on the components' mean location, which
keeps the expansion's cancellation small.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = ["DiagonalGaussianMixture", "diagonal_gaussian_mixture"]


class DiagonalGaussianMixture(tfd.MixtureSameFamily):
    """`tfd.MixtureSameFamily` of `tfd.MultivariateNormalDiag` components (batch `[K]`,
    event `[J]`) whose `log_prob` is the expanded square above; sampling, mean and the
    rest are TFP's."""

    def _log_prob(self, x):
        components = self.components_distribution
        loc = tf.convert_to_tensor(components.loc)  # [K, J]
        scale = components.stddev()  # [K, J]
        center = tf.stop_gradient(tf.reduce_mean(loc, 0))  # [J]: any point gives the same value
        x = tf.convert_to_tensor(x, loc.dtype) - center
        loc = loc - center
        precision = tf.math.reciprocal(tf.square(scale))  # a = 1 / s^2, [K, J]
        flat = tf.reshape(x, [-1, tf.shape(x)[-1]])  # [points, J]
        square = (
            tf.matmul(tf.square(flat), precision, transpose_b=True)
            - 2.0 * tf.matmul(flat, loc * precision, transpose_b=True)
            + tf.reduce_sum(tf.square(loc) * precision, -1)
        )  # [points, K]
        dim = tf.cast(tf.shape(loc)[-1], loc.dtype)
        log_normal = -0.5 * (square + dim * math.log(2.0 * math.pi)) - tf.reduce_sum(
            tf.math.log(scale), -1
        )
        log_weights = tf.math.log_softmax(self.mixture_distribution.logits_parameter(), -1)
        log_prob = tf.reduce_logsumexp(log_normal + log_weights, -1)
        return tf.reshape(log_prob, tf.shape(x)[:-1])


def diagonal_gaussian_mixture(logits, loc, scale, name: str = "prior") -> tfd.Distribution:
    """sum_k softmax(logits)_k N(loc_k, diag scale_k^2): `logits` `[K]`, `loc`/`scale` `[K, J]`."""
    return DiagonalGaussianMixture(
        tfd.Categorical(logits=logits),
        tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale),
        name=name,
    )
