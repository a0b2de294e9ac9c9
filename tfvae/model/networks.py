"""Encoder q(z|x) and decoder p(x|z) networks: a body (MLP or conv) ending in a distribution head.

Both are functional `tf_keras.Model`s whose output is a `tfd.Distribution`; the encoder is
the Gaussian MLP of App. C.2 with x and z swapped (or ends in the full-covariance or IAF
posterior that `config.posterior` names: `tfvae.model.posteriors`), the decoder ends in the
head that `config.decoder` names. Their weights start seeded by `config.seed` (`SeededUniform`).
Hidden layers compute in the global Keras policy's dtype (bfloat16 under mixed_bfloat16),
the heads in float32 (`tfvae.model.heads.head_dtype`); the variables are float32 in both.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as tfk

from tfvae.config import VAEConfig
from tfvae.model.heads import make_head
from tfvae.model.posteriors import posterior_head

tfkl = tfk.layers

__all__ = ["make_encoder", "make_decoder", "SeededUniform", "fans"]


def fans(shape) -> tuple:
    """(fan_in, fan_out) of a Dense kernel `[in, out]` or a conv kernel `[h, w, in, out]`.

    A transposed conv's kernel is `[h, w, out, in]`; it is counted by position, as Keras'
    initialisers and PyTorch's `ConvTranspose2d` both count it.
    """
    shape = tf.TensorShape(shape)
    if shape.rank == 4:  # conv kernels: the receptive field counts on both sides
        field = int(shape[0]) * int(shape[1])
        return field * int(shape[2]), field * int(shape[3])
    return math.prod(int(d) for d in shape[:-1]), int(shape[-1])


class SeededUniform(tfk.initializers.Initializer):
    """U(-limit, limit) drawn with the stateless seed `[seed, index]`: weight `index` of a VAE.

    For a kernel the limit is 1 / sqrt(fan_in) (`fan_in_uniform`, PyTorch's default) or
    sqrt(6 / (fan_in + fan_out)) (`glorot_uniform`); given `fan_in` (a bias takes its
    kernel's), it is 1 / sqrt(fan_in). `index` is the weight's place in the VAE's
    `encoder.weights + decoder.weights`, so `config.seed` alone fixes every initial weight.
    """

    def __init__(self, seed: int, index: int, weight_init: str = "fan_in_uniform", fan_in=None):
        self.seed = int(seed)
        self.index = int(index)
        self.weight_init = weight_init
        self.fan_in = None if fan_in is None else int(fan_in)
        self.kernel_fan_in = None  # the fan-in of the last kernel drawn (for its bias)

    def limit(self, shape) -> float:
        if self.fan_in is not None:
            return 1.0 / math.sqrt(self.fan_in)
        fan_in, fan_out = fans(shape)
        self.kernel_fan_in = fan_in
        if self.weight_init == "fan_in_uniform":
            return 1.0 / math.sqrt(fan_in)
        return math.sqrt(6.0 / (fan_in + fan_out))

    def __call__(self, shape, dtype=None, **kwargs):
        limit = self.limit(shape)
        dtype = tf.as_dtype(dtype or tf.float32)
        return tf.random.stateless_uniform(shape, [self.seed, self.index], -limit, limit, dtype)

    def get_config(self):
        return {
            "seed": self.seed,
            "index": self.index,
            "weight_init": self.weight_init,
            "fan_in": self.fan_in,
        }


class _BiasOf(SeededUniform):
    """The `fan_in_uniform` bias of a layer: U(+-1 / sqrt(fan_in)) with its kernel's fan-in.

    Keras builds a layer's kernel before its bias, so the kernel's initializer has seen it.
    """

    def __init__(self, kernel: SeededUniform, index: int):
        super().__init__(kernel.seed, index, kernel.weight_init)
        self.kernel = kernel

    def __call__(self, shape, dtype=None, **kwargs):
        self.fan_in = self.kernel.kernel_fan_in
        return super().__call__(shape, dtype, **kwargs)


class _LayerInit:
    """Seeded initializer arguments for each layer in build order, numbering its weights.

    Each Dense/Conv layer has a kernel then a bias, numbered from `first_weight` up; passed
    as the `layer_init` of the `tfvae.model.heads` builders too.
    """

    def __init__(self, config: VAEConfig, first_weight: int):
        self.config = config
        self.next_index = int(first_weight)

    def __call__(self) -> dict:
        kernel = SeededUniform(self.config.seed, self.next_index, self.config.weight_init)
        if self.config.weight_init == "fan_in_uniform":
            bias = _BiasOf(kernel, self.next_index + 1)
        else:
            bias = tfk.initializers.Zeros()
        self.next_index += 2
        return {"kernel_initializer": kernel, "bias_initializer": bias}


def make_encoder(config: VAEConfig, first_weight: int = 0) -> tfk.Model:
    """q(z|x): `[batch, input_dim]` -> distribution over z; N(mu(x), diag(sigma^2(x))) by
    default, else the `config.posterior` of `tfvae.model.posteriors` (full covariance, IAF).

    `first_weight`: the place of its first weight among the VAE's weights (seeds the init).
    """
    init = _LayerInit(config, first_weight)
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
                **init(),
            )(h)
        h = tfkl.Flatten(name="encoder_flatten")(h)
        h = tfkl.Dense(
            config.hidden_units[0],
            activation=config.activation,
            name="encoder_hidden_0",
            **init(),
        )(h)
    else:
        for i, units in enumerate(config.hidden_units):
            h = tfkl.Dense(
                units, activation=config.activation, name=f"encoder_hidden_{i}", **init()
            )(h)
    q = posterior_head(h, config, layer_init=init)
    return tfk.Model(x, q, name="encoder")


def make_decoder(config: VAEConfig, first_weight: int = 0) -> tfk.Model:
    """p(x|z): `[batch, latent_dim]` -> distribution over x (Bernoulli or Gaussian).

    `first_weight`: the place of its first weight among the VAE's weights, i.e. the
    number of encoder weights (`VAE` passes it; it seeds the init).
    """
    init = _LayerInit(config, first_weight)
    z = tfk.Input(shape=(config.latent_dim,), name="z")
    h = z
    if config.architecture == "conv":
        height, width, _ = config.image_shape
        factor = 2 ** len(config.conv_filters)
        filters = tuple(reversed(config.conv_filters))
        small = (height // factor, width // factor, filters[0])
        h = tfkl.Dense(
            config.hidden_units[0],
            activation=config.activation,
            name="decoder_hidden_0",
            **init(),
        )(h)
        h = tfkl.Dense(
            small[0] * small[1] * small[2],
            activation=config.activation,
            name="decoder_expand",
            **init(),
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
                **init(),
            )(h)
    else:
        for i, units in enumerate(reversed(config.hidden_units)):
            h = tfkl.Dense(
                units, activation=config.activation, name=f"decoder_hidden_{i}", **init()
            )(h)
    p = make_head(h, config, name="x", layer_init=init)
    return tfk.Model(z, p, name="decoder")
