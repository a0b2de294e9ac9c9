"""p(z), the prior (`VAEConfig.prior`): a layer whose `distribution(encoder)` is the prior.

A layer so that a learned prior's weights are tracked, saved and trained with the VAE's;
`distribution` is built anew at each call, from the current weights.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.config import VAEConfig

tfd = tfp.distributions

__all__ = ["make_prior", "StandardNormal"]


class StandardNormal(tfk.layers.Layer):
    """p(z) = N(0, I), the paper's prior: no weights."""

    def __init__(self, latent_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.built = True

    def distribution(self, encoder=None, training=None) -> tfd.Distribution:
        latent = self.latent_dim
        return tfd.MultivariateNormalDiag(
            loc=tf.zeros([latent]), scale_diag=tf.ones([latent]), name="prior"
        )


def make_prior(config: VAEConfig, first_weight: int = 0) -> tfk.layers.Layer:
    """The prior layer `config.prior` names; `first_weight` numbers its seeded weights after
    the networks' (`tfvae.model.networks.SeededUniform`)."""
    if config.prior == "standard_normal":
        return StandardNormal(config.latent_dim, name="prior")
    raise NotImplementedError(f"prior {config.prior!r}")
