"""Encoder q(z|x) and decoder p(x|z) networks: a body (MLP or conv) ending in a distribution head.

Both are functional `tf_keras.Model`s whose output is a `tfd.Distribution`; the encoder is
the Gaussian MLP of App. C.2 with x and z swapped, the decoder ends in the head that
`config.decoder` names.
"""

from __future__ import annotations

import tf_keras as tfk

from tfvae.config import VAEConfig
from tfvae.heads import gaussian_head, make_head

tfkl = tfk.layers

__all__ = ["make_encoder", "make_decoder"]


def make_encoder(config: VAEConfig) -> tfk.Model:
    """q(z|x) = N(mu(x), diag(sigma^2(x))): `[batch, input_dim]` -> distribution over z."""
    x = tfk.Input(shape=(config.input_dim,), name="x")
    h = x
    if config.architecture == "conv":
        h = tfkl.Reshape(config.image_shape, name="image")(h)
        for i, filters in enumerate(config.conv_filters):
            h = tfkl.Conv2D(
                filters,
                3,
                strides=2,
                padding="same",
                activation=config.activation,
                name=f"encoder_conv_{i}",
            )(h)
        h = tfkl.Flatten(name="encoder_flatten")(h)
        h = tfkl.Dense(
            config.hidden_units[0], activation=config.activation, name="encoder_hidden_0"
        )(h)
    else:
        for i, units in enumerate(config.hidden_units):
            h = tfkl.Dense(units, activation=config.activation, name=f"encoder_hidden_{i}")(h)
    q = gaussian_head(
        h,
        config.latent_dim,
        name="z",
        min_log_var=config.min_log_var,
        max_log_var=config.max_log_var,
    )
    return tfk.Model(x, q, name="encoder")


def make_decoder(config: VAEConfig) -> tfk.Model:
    """p(x|z): `[batch, latent_dim]` -> distribution over x (Bernoulli or Gaussian)."""
    z = tfk.Input(shape=(config.latent_dim,), name="z")
    h = z
    if config.architecture == "conv":
        height, width, _ = config.image_shape
        factor = 2 ** len(config.conv_filters)
        filters = tuple(reversed(config.conv_filters))
        small = (height // factor, width // factor, filters[0])
        h = tfkl.Dense(
            config.hidden_units[0], activation=config.activation, name="decoder_hidden_0"
        )(h)
        h = tfkl.Dense(
            small[0] * small[1] * small[2], activation=config.activation, name="decoder_expand"
        )(h)
        h = tfkl.Reshape(small, name="decoder_reshape")(h)
        for i, f in enumerate(filters):
            h = tfkl.Conv2DTranspose(
                f,
                3,
                strides=2,
                padding="same",
                activation=config.activation,
                name=f"decoder_deconv_{i}",
            )(h)
    else:
        for i, units in enumerate(reversed(config.hidden_units)):
            h = tfkl.Dense(units, activation=config.activation, name=f"decoder_hidden_{i}")(h)
    p = make_head(h, config, name="x")
    return tfk.Model(z, p, name="decoder")
