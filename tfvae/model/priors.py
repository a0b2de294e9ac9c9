"""p(z), the prior (`VAEConfig.prior`): a layer whose `distribution(encoder)` is the prior.

A layer so that a learned prior's weights are tracked, saved and trained with the VAE's;
`distribution` is built anew at each call, from the current weights.

- `standard_normal`: N(0, I), Kingma & Welling (2013)'s; no weights.
- `mixture`: sum_k pi_k N(mu_k, diag sigma_k^2), K learned diagonal Gaussians (the
  mixture-of-Gaussians prior of Tomczak & Welling 2018's comparison, TFP's VAE example).
- `vamp`: the VampPrior, (1/K) sum_k q(z|u_k) over K learned pseudo-inputs u_k fed
  through the VAE's own encoder (Tomczak & Welling 2018, "VAE with a VampPrior").

The weights are float32 and start seeded by `config.seed` alone: weight `index` (its place
among the VAE's encoder, decoder and prior weights, from `first_weight`) is drawn with the
stateless seed `[config.seed, index]`, as `tfvae.model.networks.SeededUniform` draws the
networks'.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.config import VAEConfig
from tfvae.model import distributions
from tfvae.model.gaussian_mixture import diagonal_gaussian_mixture

tfd = tfp.distributions

__all__ = [
    "make_prior",
    "StandardNormal",
    "MixturePrior",
    "VampPrior",
    "SeededNormal",
    "MIXTURE_COMPONENTS",
    "VAMP_COMPONENTS",
]

# K when `VAEConfig.prior_components` is None: a small mixture; the VampPrior paper's MNIST K.
MIXTURE_COMPONENTS = 10
VAMP_COMPONENTS = 500


class SeededNormal(tfk.initializers.Initializer):
    """N(mean, stddev^2) drawn with the stateless seed `[seed, index]`: weight `index` of a
    VAE (the normal twin of `tfvae.model.networks.SeededUniform`)."""

    def __init__(self, seed: int, index: int, mean: float = 0.0, stddev: float = 1.0):
        self.seed, self.index = int(seed), int(index)
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype=None, **kwargs):
        dtype = tf.as_dtype(dtype or tf.float32)
        seed = [self.seed, self.index]
        return tf.random.stateless_normal(shape, seed, self.mean, self.stddev, dtype)

    def get_config(self):
        return {"seed": self.seed, "index": self.index, "mean": self.mean, "stddev": self.stddev}


class StandardNormal(tfk.layers.Layer):
    """p(z) = N(0, I), the paper's prior: no weights."""

    def __init__(self, latent_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.built = True
        # Built once, outside any step: every step captures the same constants.
        self._prior = tfd.MultivariateNormalDiag(
            loc=tf.zeros([self.latent_dim]), scale_diag=tf.ones([self.latent_dim]), name="prior"
        )

    def distribution(self, encoder=None, training=None) -> tfd.Distribution:
        return self._prior


class _LearnedPrior(tfk.layers.Layer):
    """A prior with weights: float32 (no autocast under mixed precision), created at once
    (the layer is built) and named `<layer>/<weight>` as the networks' are."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def _weight(self, name: str, shape, initializer) -> tf.Variable:
        with tf.name_scope(self.name):
            return self.add_weight(name, shape, tf.float32, initializer)


class MixturePrior(_LearnedPrior):
    """p(z) = sum_k pi_k N(mu_k, diag sigma_k^2): K learned diagonal Gaussians.

    Weights, numbered from `first_weight`: `logits` `[K]` (pi = softmax(logits), starting
    uniform), `means` `[K, J]` (seeded N(0, 1) draws, so the components start distinct) and
    `raw_scales` `[K, J]`, with sigma = min_scale + softplus(raw_scales), starting at
    1 + min_scale. The floor keeps a component from collapsing onto a point (an unbounded
    density); `make_prior` sets it to exp(min_log_var / 2), the encoder's narrowest sigma
    (at most 1).
    """

    def __init__(
        self,
        latent_dim: int,
        components: int = MIXTURE_COMPONENTS,
        seed: int = 0,
        first_weight: int = 0,
        min_scale: float = 1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.latent_dim, self.components = int(latent_dim), int(components)
        self.seed, self.first_weight = int(seed), int(first_weight)
        self.min_scale = float(min_scale)
        shape = [self.components, self.latent_dim]
        start = math.log(math.e - 1.0)  # softplus(start) = 1
        self.logits = self._weight("logits", [self.components], tfk.initializers.Zeros())
        self.means = self._weight("means", shape, SeededNormal(self.seed, self.first_weight + 1))
        self.raw_scales = self._weight("raw_scales", shape, tfk.initializers.Constant(start))
        self.built = True

    def scales(self) -> tf.Tensor:
        """sigma_k `[K, J]`: min_scale + softplus(raw_scales)."""
        return self.min_scale + tf.nn.softplus(tf.convert_to_tensor(self.raw_scales))

    def distribution(self, encoder=None, training=None) -> tfd.Distribution:
        """The mixture at the current weights (`encoder` and `training` are not used)."""
        return diagonal_gaussian_mixture(
            tf.convert_to_tensor(self.logits), tf.convert_to_tensor(self.means), self.scales()
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            latent_dim=self.latent_dim,
            components=self.components,
            seed=self.seed,
            first_weight=self.first_weight,
            min_scale=self.min_scale,
        )
        return config


class VampPrior(_LearnedPrior):
    """p(z) = (1/K) sum_k q(z|u_k), the VampPrior (Tomczak & Welling 2018): the encoder's
    own posteriors at K learned pseudo-inputs u_k, uniformly weighted.

    One weight (number `first_weight`), `pseudo_inputs` `[K, input_dim]`. With
    `pseudo_inputs="unit"` u = hardtanh(W) = clip(W, 0, 1), W starting N(0.05, 0.01^2), as the
    paper does for binary MNIST (u in the data's range); with `"free"` u = W, unbounded,
    starting N(0, 1). u is fed to the encoder in its input shape (images for an image
    encoder), so q(z|u_k) is whatever the encoder returns (diagonal, full covariance, a
    flow, your own) with batch shape [K]; the mixture is `tfd.MixtureSameFamily` of it.
    """

    def __init__(
        self,
        input_dim: int,
        components: int = VAMP_COMPONENTS,
        pseudo_inputs: str = "unit",
        seed: int = 0,
        first_weight: int = 0,
        **kwargs,
    ):
        if pseudo_inputs not in ("unit", "free"):
            raise ValueError(f"pseudo_inputs must be 'unit' or 'free', got {pseudo_inputs!r}")
        super().__init__(**kwargs)
        self.input_dim, self.components = int(input_dim), int(components)
        self.pseudo_inputs = pseudo_inputs
        self.seed, self.first_weight = int(seed), int(first_weight)
        mean, stddev = (0.05, 0.01) if pseudo_inputs == "unit" else (0.0, 1.0)
        self.pseudo_input_weights = self._weight(
            "pseudo_inputs",
            [self.components, self.input_dim],
            SeededNormal(self.seed, self.first_weight, mean, stddev),
        )
        self.built = True

    def inputs_u(self) -> tf.Tensor:
        """The pseudo-inputs u_k `[K, input_dim]`: clipped to [0, 1] (the paper's hardtanh)
        for `"unit"`, the weights themselves for `"free"`."""
        u = tf.convert_to_tensor(self.pseudo_input_weights)
        return tf.clip_by_value(u, 0.0, 1.0) if self.pseudo_inputs == "unit" else u

    def distribution(self, encoder, training=None) -> tfd.Distribution:
        """(1/K) sum_k q(z|u_k) at the current pseudo-inputs, q from `encoder`."""
        q_u = distributions.posterior(encoder, self.inputs_u(), training)
        if q_u.batch_shape.rank != 1 or q_u.event_shape.rank != 1:
            raise ValueError(
                f"the VampPrior needs q(z|x) over vectors z with one batch dimension, but at "
                f"its {self.components} pseudo-inputs the encoder returned batch_shape "
                f"{q_u.batch_shape} and event_shape {q_u.event_shape}: make z the event, e.g. "
                "tfd.Independent(..., reinterpreted_batch_ndims=1)"
            )
        logits = tf.zeros([self.components])
        diagonal = distributions.diagonal_normal(q_u)  # (loc, scale) [K, J], or None
        if diagonal is not None:  # the diagonal encoders': log_prob by matrix products
            return diagonal_gaussian_mixture(logits, *diagonal)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=logits), q_u, name="prior")

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            components=self.components,
            pseudo_inputs=self.pseudo_inputs,
            seed=self.seed,
            first_weight=self.first_weight,
        )
        return config


def make_prior(config: VAEConfig, first_weight: int = 0) -> tfk.layers.Layer:
    """The prior layer `config.prior` names; `first_weight` numbers its seeded weights after
    the networks' (`tfvae.model.networks.SeededUniform`)."""
    if config.prior == "standard_normal":
        return StandardNormal(config.latent_dim, name="prior")
    if config.prior == "mixture":
        return MixturePrior(
            config.latent_dim,
            config.prior_components or MIXTURE_COMPONENTS,
            config.seed,
            first_weight,
            min_scale=math.exp(0.5 * min(config.min_log_var, 0.0)),
            name="prior",
        )
    if config.prior == "vamp":
        return VampPrior(
            config.input_dim,
            config.prior_components or VAMP_COMPONENTS,
            config.pseudo_inputs,
            config.seed,
            first_weight,
            name="prior",
        )
    raise ValueError(
        f"VAEConfig.prior must be one of 'standard_normal', 'mixture', 'vamp', got {config.prior!r}"
    )
