"""Distribution heads: the last layers of the encoder and decoder, which output a distribution.

A head turns hidden features into the *parameters* of a distribution (Bernoulli logits,
Gaussian mean and log-variance) and wraps them in a TFP `DistributionLambda`, so calling
the network returns a `tfd.Distribution`: `.mean()` is what tutorials call x-hat,
`.sample()` draws x ~ p(x|z), `.log_prob(x)` is the likelihood term of the ELBO.

Each distribution layer follows `tfp.layers` conventions: `params_size(event_size)` tells
how many parameters it needs and the static `new(params, ...)` builds the distribution.
The `*_head` builders add the Dense (or Conv) projections that produce those parameters;
their `layer_init`, if given, is called once per projection, in build order, for its
`kernel_initializer`/`bias_initializer` arguments (`tfvae.model.networks` seeds them).
Under a mixed-precision policy a head's layers compute in float32 (`head_dtype`).
"""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.engine import keras_internals
from tfvae.model import objectives

tfd = tfp.distributions
tfpl = tfp.layers
tfkl = tfk.layers

__all__ = [
    "BernoulliLogits",
    "LogitBernoulli",
    "DiagonalGaussian",
    "IsotropicGaussian",
    "FixedVarianceGaussian",
    "bernoulli_head",
    "gaussian_head",
    "isotropic_gaussian_head",
    "fixed_variance_gaussian_head",
    "head_dtype",
    "make_head",
    "soft_clip",
]


class LogitBernoulli(tfd.Bernoulli):
    """`tfd.Bernoulli` whose log-prob is the one-pass sigmoid cross-entropy of the logits.

    log p(x | l) = x * l - softplus(l). `tfd.Bernoulli` computes the same number as
    (1 - x) * -softplus(l) + x * -softplus(-l): two softplus passes over a `[batch, 784]`
    tensor, the most expensive elementwise work of a training step. Same distribution,
    same parameters; only the arithmetic differs (agreement to float32 rounding).
    """

    def _log_prob(self, event):
        return objectives.bernoulli_log_prob(event, keras_internals.bernoulli_logits(self))


class BernoulliLogits(tfpl.DistributionLambda):
    """Independent Bernoulli over a vector of `event_size` logits (App. C.1).

    What `tfp.layers.IndependentBernoulli` builds, but on `LogitBernoulli`: calling it
    returns `tfd.Independent(LogitBernoulli(logits), 1)`. Its tensor value is the mean (the
    probabilities); its config is plain numbers, so saving weights needs no pickled lambda.

      >>> d = BernoulliLogits(3)(tf.zeros([5, BernoulliLogits.params_size(3)]))
      >>> d.event_shape, d.mean()[0]  # ([3], [0.5, 0.5, 0.5])
    """

    def __init__(self, event_size, validate_args=False, **kwargs):
        kwargs.pop("make_distribution_fn", None)
        kwargs.pop("convert_to_tensor_fn", None)
        self._event_size = int(event_size)
        self._validate_args = validate_args
        super().__init__(
            lambda params: BernoulliLogits.new(params, self._event_size, validate_args),
            convert_to_tensor_fn=tfd.Distribution.mean,
            **kwargs,
        )

    @staticmethod
    def params_size(event_size: int) -> int:
        return int(event_size)

    @staticmethod
    def new(params, event_size, validate_args=False, name=None):
        with tf.name_scope(name or "BernoulliLogits"):
            logits = tf.convert_to_tensor(params, name="logits")
            return tfd.Independent(
                LogitBernoulli(logits=logits, dtype=logits.dtype, validate_args=validate_args),
                reinterpreted_batch_ndims=1,
                validate_args=validate_args,
            )

    def get_config(self):
        base = tfkl.Layer.get_config(self)
        base.update(event_size=self._event_size, validate_args=self._validate_args)
        return base


def soft_clip(x: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """Smoothly bounds `x` to (low, high): ~x well inside, never outside, gradient never 0.

    Computed as `low + softplus(x - low) - softplus(x - high)`; used on log-variances so a
    Gaussian head cannot shrink sigma^2 to 0 (infinite likelihood, NaN loss) or blow it up.
    """
    x = tf.convert_to_tensor(x)
    low = tf.cast(low, x.dtype)
    high = tf.cast(high, x.dtype)
    return low + tf.nn.softplus(x - low) - tf.nn.softplus(x - high)


class GaussianLayer(tfpl.DistributionLambda):
    """Shared plumbing: a DistributionLambda over a vector event, serialisable by config."""

    def __init__(
        self,
        event_size,
        min_log_var=-8.0,
        max_log_var=8.0,
        convert_to_tensor_fn=tfd.Distribution.mean,
        validate_args=False,
        **kwargs,
    ):
        self._event_size = int(event_size)
        self._min_log_var = float(min_log_var)
        self._max_log_var = float(max_log_var)
        self._validate_args = validate_args
        # A Keras-loaded tensor of this layer (e.g. in predict) is the mean, not a draw.
        kwargs.pop("make_distribution_fn", None)
        super().__init__(
            lambda params: self.new(
                params, self._event_size, self._min_log_var, self._max_log_var, validate_args
            ),
            convert_to_tensor_fn=convert_to_tensor_fn,
            **kwargs,
        )

    def get_config(self):
        base = tfkl.Layer.get_config(self)
        base.update(
            event_size=self._event_size,
            min_log_var=self._min_log_var,
            max_log_var=self._max_log_var,
            validate_args=self._validate_args,
        )
        return base

    @staticmethod
    def _mvn(loc, log_var, validate_args, name):
        # scale = exp(log sigma^2 / 2): the paper's parametrisation, exact and stable.
        return tfd.MultivariateNormalDiag(
            loc=loc, scale_diag=tf.exp(0.5 * log_var), validate_args=validate_args, name=name
        )


class DiagonalGaussian(GaussianLayer):
    """N(mu, diag(sigma^2)) from `[..., 2 * event_size]` params: means then log-variances.

    The paper's Gaussian MLP (Kingma & Welling 2013, App. C.2): mean and log sigma^2 come
    from two parallel linear heads on the same hidden layer (see `gaussian_head`). The
    log-variances are soft-clipped to `(min_log_var, max_log_var)`.

    Example:
      >>> layer = DiagonalGaussian(3)
      >>> d = layer(tf.zeros([5, DiagonalGaussian.params_size(3)]))
      >>> d.event_shape.as_list(), float(d.stddev()[0, 0])
      ([3], 1.0)
    """

    @staticmethod
    def params_size(event_size: int) -> int:
        return 2 * int(event_size)

    @staticmethod
    def new(params, event_size, min_log_var=-8.0, max_log_var=8.0, validate_args=False, name=None):
        params = tf.convert_to_tensor(params, name="params")
        loc, raw_log_var = tf.split(params, [event_size, event_size], axis=-1)
        log_var = soft_clip(raw_log_var, min_log_var, max_log_var)
        return GaussianLayer._mvn(loc, log_var, validate_args, name or "DiagonalGaussian")


class IsotropicGaussian(GaussianLayer):
    """N(mu, sigma^2 I) from `[..., event_size + 1]` params: d means, one shared log-variance.

    Example:
      >>> d = IsotropicGaussian(4)(tf.zeros([2, IsotropicGaussian.params_size(4)]))
      >>> d.stddev().shape.as_list()
      [2, 4]
    """

    @staticmethod
    def params_size(event_size: int) -> int:
        return int(event_size) + 1

    @staticmethod
    def new(params, event_size, min_log_var=-8.0, max_log_var=8.0, validate_args=False, name=None):
        params = tf.convert_to_tensor(params, name="params")
        loc, raw_log_var = tf.split(params, [event_size, 1], axis=-1)
        log_var = soft_clip(raw_log_var, min_log_var, max_log_var) + tf.zeros_like(loc)
        return GaussianLayer._mvn(loc, log_var, validate_args, name or "IsotropicGaussian")


class FixedVarianceGaussian(tfpl.DistributionLambda):
    """N(mu, variance * I) from `[..., event_size]` means; the variance is a fixed number.

    With a fixed variance, -log p(x|z) is a scaled squared error plus a constant: the
    'MSE autoencoder' loss, written as the likelihood it really is.
    """

    def __init__(
        self,
        event_size,
        variance=0.01,
        convert_to_tensor_fn=tfd.Distribution.mean,
        validate_args=False,
        **kwargs,
    ):
        self._event_size = int(event_size)
        self._variance = float(variance)
        self._validate_args = validate_args
        kwargs.pop("make_distribution_fn", None)
        super().__init__(
            lambda params: self.new(params, self._event_size, self._variance, validate_args),
            convert_to_tensor_fn=convert_to_tensor_fn,
            **kwargs,
        )

    def get_config(self):
        base = tfkl.Layer.get_config(self)
        base.update(
            event_size=self._event_size, variance=self._variance, validate_args=self._validate_args
        )
        return base

    @staticmethod
    def params_size(event_size: int) -> int:
        return int(event_size)

    @staticmethod
    def new(params, event_size, variance=0.01, validate_args=False, name=None):
        loc = tf.convert_to_tensor(params, name="params")
        scale = tf.fill(tf.shape(loc), tf.cast(variance, loc.dtype) ** 0.5)
        return tfd.MultivariateNormalDiag(
            loc=loc,
            scale_diag=scale,
            validate_args=validate_args,
            name=name or "FixedVarianceGaussian",
        )


LayerInit = Optional[Callable[[], dict]]


def _init(layer_init: LayerInit) -> dict:
    return {} if layer_init is None else layer_init()


def head_dtype():
    """The dtype of a head's layers: float32 under a mixed-precision policy, else None.

    Keras' mixed-precision guide keeps a model's last layers in float32: here the projections
    and distribution layers, so distribution parameters, log-probs and bounds are float32
    while the hidden layers compute in the policy's dtype. None keeps the global policy.
    """
    policy = tfk.mixed_precision.global_policy()
    return policy.variable_dtype if policy.compute_dtype != policy.variable_dtype else None


def _project(features, event_size: int, name: str, image_shape=None, layer_init: LayerInit = None):
    """Linear map from features to `[batch, event_size]` parameters.

    Dense for flat features; for a conv feature map (rank 4) a 3x3 conv with one output
    channel per image channel, flattened, so each pixel's parameter stays local.
    """
    dtype = head_dtype()
    if features.shape.rank == 4:
        channels = image_shape[-1] if image_shape else 1
        out = tfkl.Conv2D(channels, 3, padding="same", name=name, dtype=dtype, **_init(layer_init))(
            features
        )
        return tfkl.Flatten(name=f"{name}_flat", dtype=dtype)(out)
    return tfkl.Dense(event_size, name=name, dtype=dtype, **_init(layer_init))(features)


def _flat(features, name):
    if features.shape.rank == 4:
        return tfkl.GlobalAveragePooling2D(name=f"{name}_pool", dtype=head_dtype())(features)
    return features


def bernoulli_head(
    features, event_size: int, name: str = "x", image_shape=None, layer_init: LayerInit = None
):
    """Dense logits into `BernoulliLogits` (App. C.1): p(x|z) for x in [0,1]^D."""
    logits = _project(features, event_size, f"{name}_logits", image_shape, layer_init)
    return BernoulliLogits(event_size, name=name, dtype=head_dtype())(logits)


def gaussian_head(
    features,
    event_size: int,
    name: str = "z",
    min_log_var=-8.0,
    max_log_var=8.0,
    image_shape=None,
    layer_init: LayerInit = None,
    shared_variance: bool = False,
):
    """Two parallel heads on the same features, `{name}_mean` and `{name}_log_var` (App. C.2).

    `shared_variance`: one log-variance unit for all D means, N(mu, sigma^2 I).
    """
    dtype = head_dtype()
    mean = _project(features, event_size, f"{name}_mean", image_shape, layer_init)
    if shared_variance:
        log_var = tfkl.Dense(1, name=f"{name}_log_var", dtype=dtype, **_init(layer_init))(
            _flat(features, name)
        )
    else:
        log_var = _project(features, event_size, f"{name}_log_var", image_shape, layer_init)
    params = tfkl.Concatenate(name=f"{name}_params", dtype=dtype)([mean, log_var])
    distribution = IsotropicGaussian if shared_variance else DiagonalGaussian
    return distribution(event_size, min_log_var, max_log_var, name=name, dtype=dtype)(params)


def isotropic_gaussian_head(features, event_size: int, name: str = "x", **kwargs):
    """D mean units plus one shared log-variance unit: N(mu, sigma^2 I).

    `kwargs`: the bounds, `image_shape` and `layer_init` of `gaussian_head`.
    """
    return gaussian_head(features, event_size, name, shared_variance=True, **kwargs)


def fixed_variance_gaussian_head(
    features,
    event_size: int,
    name: str = "x",
    variance=0.01,
    image_shape=None,
    layer_init: LayerInit = None,
):
    """D mean units and a fixed variance: N(mu, variance * I)."""
    mean = _project(features, event_size, f"{name}_mean", image_shape, layer_init)
    return FixedVarianceGaussian(event_size, variance, name=name, dtype=head_dtype())(mean)


def make_head(features, config, name: str = "x", layer_init: LayerInit = None):
    """The decoder head that `config.decoder` names, applied to `features`."""
    d = config.input_dim
    shape = config.image_shape
    if config.decoder == "bernoulli":
        return bernoulli_head(features, d, name, shape, layer_init)
    if config.decoder in ("gaussian", "isotropic"):
        return gaussian_head(
            features,
            d,
            name,
            config.min_log_var,
            config.max_log_var,
            shape,
            layer_init,
            shared_variance=config.decoder == "isotropic",
        )
    if config.decoder == "fixed_variance":
        return fixed_variance_gaussian_head(
            features, d, name, config.fixed_variance, shape, layer_init
        )
    raise ValueError(f"unknown decoder {config.decoder!r}")
