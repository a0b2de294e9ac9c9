"""q(z|x) beyond the diagonal Gaussian (`VAEConfig.posterior`): the built-in encoder's last layers.

- `diagonal`: the paper's N(mu, diag sigma^2) (`tfvae.model.heads.gaussian_head`, unchanged).
- `full_covariance`: N(mu, L L^T), a `tfd.MultivariateNormalTriL`; L's diagonal is
  exp(log sigma^2 / 2) with log sigma^2 soft-clipped as the diagonal head's, the entries below
  it are free.
- `iaf`: the diagonal Gaussian pushed through `flow_steps` gated inverse autoregressive steps
  conditioned on a context h(x) (Kingma et al. 2016, Algorithm 1), a `tfd.TransformedDistribution`
  on `InverseAutoregressiveFlow`. Its sample is one pass per step and its log_prob at its own
  samples reuses the sampling pass; at any other z it inverts the flow coordinate by coordinate.

Every projection and MADE weight starts seeded through the encoder's `layer_init`
(`tfvae.model.networks._LayerInit`); all of it computes in float32 (`heads.head_dtype`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.model.heads import (
    DiagonalGaussian,
    GaussianLayer,
    LayerInit,
    gaussian_head,
    head_dtype,
    soft_clip,
)

tfb = tfp.bijectors
tfd = tfp.distributions
tfpl = tfp.layers
tfkl = tfk.layers

__all__ = [
    "FORGET_BIAS",
    "FullCovarianceGaussian",
    "lower_triangular",
    "InverseAutoregressiveFlow",
    "IAFPosterior",
    "made_masks",
    "flow_of_base_mean",
    "posterior_head",
    "full_covariance_head",
    "iaf_head",
]

# Added to every step's s before the gate sigmoid(s): each step starts near the identity
# (sigmoid(2) = 0.88), the paper's "s_t sufficiently positive, such as close to +1 or +2".
FORGET_BIAS = 2.0


# ------------------------------------------------------------------------ full covariance
def lower_triangular(diagonal: tf.Tensor, off_diagonal: tf.Tensor) -> tf.Tensor:
    """L `[..., J, J]` with `diagonal` `[..., J]` on its diagonal and the J(J-1)/2 values
    `off_diagonal` below it, in the order of `tfp.math.fill_triangular` on the (J-1)-sized
    triangle. (Reshapes and pads: a gather's gradient needs the batch size, which XLA lacks.)"""
    if diagonal.shape[-1] == 1:
        return diagonal[..., tf.newaxis]
    inner = tfp.math.fill_triangular(off_diagonal)  # [..., J-1, J-1], lower
    rank = len(inner.shape)
    below = tf.pad(inner, [[0, 0]] * (rank - 2) + [[1, 0], [0, 1]])
    return below + tf.linalg.diag(diagonal)


class FullCovarianceGaussian(GaussianLayer):
    """N(mu, L L^T) from `[..., J + J + J(J-1)/2]` params: means, log L_ii^2, then the entries
    below L's diagonal (`lower_triangular`). log L_ii^2 is soft-clipped to (min_log_var,
    max_log_var) like the diagonal head's log-variances; the entries below are free."""

    @staticmethod
    def params_size(event_size: int) -> int:
        j = int(event_size)
        return 2 * j + j * (j - 1) // 2

    @staticmethod
    def new(params, event_size, min_log_var=-8.0, max_log_var=8.0, validate_args=False, name=None):
        j = int(event_size)
        params = tf.convert_to_tensor(params, name="params")
        loc, raw_log_var, off_diagonal = tf.split(params, [j, j, j * (j - 1) // 2], axis=-1)
        diagonal = tf.exp(0.5 * soft_clip(raw_log_var, min_log_var, max_log_var))
        return tfd.MultivariateNormalTriL(
            loc=loc,
            scale_tril=lower_triangular(diagonal, off_diagonal),
            validate_args=validate_args,
            name=name or "FullCovarianceGaussian",
        )


def _dense(features, units: int, name: str, layer_init: LayerInit):
    init = {} if layer_init is None else layer_init()
    return tfkl.Dense(units, name=name, dtype=head_dtype(), **init)(features)


def full_covariance_head(features, config, layer_init: LayerInit = None, name: str = "z"):
    """Dense heads `{name}_mean`, `{name}_log_var` (as the diagonal head's) and
    `{name}_scale_off_diagonal` (J(J-1)/2 units; none for J = 1) into `FullCovarianceGaussian`."""
    j, dtype = config.latent_dim, head_dtype()
    parts = [
        _dense(features, j, f"{name}_mean", layer_init),
        _dense(features, j, f"{name}_log_var", layer_init),
    ]
    if j > 1:
        parts.append(_dense(features, j * (j - 1) // 2, f"{name}_scale_off_diagonal", layer_init))
    params = tfkl.Concatenate(name=f"{name}_params", dtype=dtype)(parts)
    return FullCovarianceGaussian(
        j, config.min_log_var, config.max_log_var, name=name, dtype=dtype
    )(params)


# ------------------------------------------------------------------------ the flow
def made_masks(event_size: int, context_size: int, hidden_units, reverse: bool) -> list:
    """The 0/1 masks of a MADE (Germain et al. 2015) over z `[J]` and a context `[C]`, one per
    kernel: `[J + C, H_1]`, `[H_1, H_2]`, ..., `[H_L, 2J]` (outputs m then s).

    z_i has degree i (1..J; J..1 with `reverse`), hidden unit k degree k mod J (0..J-1: degree
    0 sees the context alone); a unit sees the z of degree at most its own, an output of
    degree d only hidden units of degree below d. The context reaches every first-layer unit.
    """
    j = int(event_size)
    degrees = np.arange(1, j + 1)
    if reverse:
        degrees = degrees[::-1]
    hidden = [np.arange(int(units)) % j for units in hidden_units]
    first = (degrees[:, None] <= hidden[0][None, :]).astype(np.float32)
    masks = [np.concatenate([first, np.ones([int(context_size), first.shape[1]], np.float32)])]
    for before, after in zip(hidden, hidden[1:]):
        masks.append((before[:, None] <= after[None, :]).astype(np.float32))
    outputs = np.concatenate([degrees, degrees])
    masks.append((hidden[-1][:, None] < outputs[None, :]).astype(np.float32))
    return masks


class InverseAutoregressiveFlow(tfb.Bijector):
    """z_0 -> z_T through T gated inverse autoregressive steps (Kingma et al. 2016, Alg. 1).

    Step t: (m, s) = MADE_t(z, h), s += `forget_bias`, z <- sigmoid(s) z + (1 - sigmoid(s)) m.
    The MADE's masks (`made_masks`) make m_i, s_i depend on the z before i in the step's
    order, so the Jacobian is triangular with diagonal sigmoid(s): log|det| = sum log sigmoid(s).
    `forward` is one MADE pass per step (and remembers its log|det| for `log_prob` at its own
    output); `inverse` solves each step back by J fixed-point passes, exact after J (the
    autoregressive order fixes one more coordinate per pass).

    Args:
      steps: per step, the MADE's (kernel, bias) pairs, masked already; the first kernel's
        rows are z's J then the context's C.
      context: h(x) `[batch, C]`; z may have leading sample dims `[..., batch, J]`.
      activation: the MADE's hidden nonlinearity (a `tf_keras.activations` name).
    """

    def __init__(
        self,
        steps,
        context,
        activation: str = "tanh",
        forget_bias: float = FORGET_BIAS,
        validate_args: bool = False,
        name: str = "inverse_autoregressive_flow",
    ):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._steps = tuple(tuple(tuple(layer) for layer in step) for step in steps)
            self._context = tf.convert_to_tensor(context, name="context")
            self._activation = tfk.activations.get(activation)
            self._forget_bias = float(forget_bias)
            self._event_size = int(self._steps[0][-1][0].shape[-1]) // 2
            # log|det| of `forward` at its inputs (by reference), for log_prob at its outputs.
            self._log_det_at = self._no_dependency({})
            super().__init__(
                forward_min_event_ndims=1,
                validate_args=validate_args,
                parameters=parameters,
                dtype=self._context.dtype,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype):
        return {"context": tfp.util.ParameterProperties(event_ndims=1)}

    def _flat(self, z):
        """(z `[N, J]`, per step the context's share of the first hidden layer h @ W_h + b_1
        `[N, H_1]`, the shape `[..., J]`): z and h(x) broadcast together and flattened, so the
        MADEs are 2-D matmuls, which XLA compiles with the batch size unknown (also in the
        inverse's loop and its gradient)."""
        zero = tf.zeros_like(z[..., :1]) + tf.zeros_like(self._context[..., :1])
        z = z + zero
        terms = []
        for step in self._steps:
            kernel, bias = step[0]
            term = tf.matmul(self._context, kernel[self._event_size :]) + bias
            terms.append(tf.reshape(term + zero, [-1, bias.shape[-1]]))
        return tf.reshape(z, [-1, self._event_size]), terms, tf.shape(z)

    def _made(self, step, z, context_term):
        """(m, s + forget_bias), each `[N, J]`, of one step's MADE at z `[N, J]`."""
        kernel, _ = step[0]
        hidden = self._activation(tf.matmul(z, kernel[: self._event_size]) + context_term)
        for kernel, bias in step[1:-1]:
            hidden = self._activation(tf.matmul(hidden, kernel) + bias)
        kernel, bias = step[-1]
        m, s = tf.split(tf.matmul(hidden, kernel) + bias, 2, axis=-1)
        return m, s + self._forget_bias

    def _forward_and_log_det(self, x):
        z, terms, shape = self._flat(x)
        log_det = 0.0
        for step, term in zip(self._steps, terms):
            m, s = self._made(step, z, term)
            gate = tf.sigmoid(s)
            z = gate * z + (1.0 - gate) * m
            log_det += tf.reduce_sum(tf.math.log_sigmoid(s), -1)
        return tf.reshape(z, shape), tf.reshape(log_det, shape[:-1])

    def _forward(self, x):
        y, log_det = self._forward_and_log_det(x)
        self._log_det_at[x.ref()] = log_det
        return y

    def _forward_log_det_jacobian(self, x):
        known = self._log_det_at.get(x.ref())
        return known if known is not None else self._forward_and_log_det(x)[1]

    def _inverse(self, y):
        x, terms, shape = self._flat(y)
        for step, term in reversed(list(zip(self._steps, terms))):
            x = self._invert_step(step, x, term)
        return tf.reshape(x, shape)

    def _invert_step(self, step, y, context_term):
        """x `[N, J]` with y = sigmoid(s(x)) x + (1 - sigmoid(s(x))) m(x): x = m + (y - m) /
        sigmoid(s), iterated J times from 0 (pass i fixes coordinate i of the step's order)."""

        def solve(x):
            m, s = self._made(step, x, context_term)
            return (m + (y - m) * (1.0 + tf.exp(-s)),)

        (x,) = tf.while_loop(
            lambda x: True, solve, (tf.zeros_like(y),), maximum_iterations=self._event_size
        )
        return x


# ------------------------------------------------------------------------ the iaf layer
class IAFPosterior(tfpl.DistributionLambda):
    """q(z|x) of posterior `iaf` from `[params, context]`: params `[batch, 2J]` (means, then
    log-variances soft-clipped as `DiagonalGaussian`'s) give z_0's Gaussian, which
    `InverseAutoregressiveFlow` (this layer's MADE weights, conditioned on context `[batch, C]`)
    transforms. Its tensor value is the flow of z_0's mean (deterministic; not E[z])."""

    def __init__(
        self,
        event_size,
        context_size,
        hidden_units=(320, 320),
        steps=2,
        activation="tanh",
        min_log_var=-8.0,
        max_log_var=8.0,
        layer_init: LayerInit = None,
        validate_args=False,
        **kwargs,
    ):
        kwargs.pop("make_distribution_fn", None)
        kwargs.pop("convert_to_tensor_fn", None)
        self._event_size = int(event_size)
        self._context_size = int(context_size)
        self._hidden_units = tuple(int(u) for u in hidden_units)
        self._num_steps = int(steps)
        self._activation = str(activation)
        self._min_log_var = float(min_log_var)
        self._max_log_var = float(max_log_var)
        self._validate_args = validate_args
        # Seeded initializers, numbered now in build order: per step, per kernel.
        layers = len(self._hidden_units) + 1
        self._inits = tuple(
            tuple(layer_init() if layer_init else {} for _ in range(layers))
            for _ in range(self._num_steps)
        )
        self._masks = tuple(
            made_masks(event_size, context_size, self._hidden_units, reverse=t % 2 == 1)
            for t in range(self._num_steps)
        )
        super().__init__(self._distribution, convert_to_tensor_fn=flow_of_base_mean, **kwargs)

    def build(self, input_shape):
        sizes = [self._event_size + self._context_size, *self._hidden_units, 2 * self._event_size]
        for t, inits in enumerate(self._inits):
            for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
                init = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
                init.update(inits[i])
                self.add_weight(
                    f"step_{t}_kernel_{i}", [a, b], initializer=init["kernel_initializer"]
                )
                self.add_weight(f"step_{t}_bias_{i}", [b], initializer=init["bias_initializer"])
        super().build(input_shape)

    def masked_steps(self) -> tuple:
        """Per step, the MADE's (kernel * mask, bias) pairs (`InverseAutoregressiveFlow`'s)."""
        weights = iter(self.weights)
        return tuple(
            tuple((next(weights) * tf.constant(mask), next(weights)) for mask in masks)
            for masks in self._masks
        )

    def _distribution(self, inputs):
        params, context = inputs
        base = DiagonalGaussian.new(
            params, self._event_size, self._min_log_var, self._max_log_var, self._validate_args
        )
        flow = InverseAutoregressiveFlow(
            self.masked_steps(), context, self._activation, validate_args=self._validate_args
        )
        return tfd.TransformedDistribution(base, flow, name="IAFPosterior")

    def get_config(self):
        base = tfkl.Layer.get_config(self)
        base.update(
            event_size=self._event_size,
            context_size=self._context_size,
            hidden_units=list(self._hidden_units),
            steps=self._num_steps,
            activation=self._activation,
            min_log_var=self._min_log_var,
            max_log_var=self._max_log_var,
            validate_args=self._validate_args,
        )
        return base


def flow_of_base_mean(q):
    """z_0's mean through the flow of an iaf q(z|x) `[batch, J]`: a deterministic point (the
    layer's tensor value), not E[z], which has no closed form (`q.mean()` raises)."""
    q = getattr(q, "tensor_distribution", q)
    return q.bijector.forward(q.distribution.mean())


def iaf_head(features, config, layer_init: LayerInit = None, name: str = "z"):
    """Dense `{name}_mean`, `{name}_log_var` (as the diagonal head's) and `{name}_context`
    (h(x), `config.flow_context` units, linear) into `IAFPosterior`: `flow_steps` MADEs of
    `flow_hidden_units`, weights seeded after the projections'."""
    j, dtype = config.latent_dim, head_dtype()
    mean = _dense(features, j, f"{name}_mean", layer_init)
    log_var = _dense(features, j, f"{name}_log_var", layer_init)
    context = _dense(features, config.flow_context, f"{name}_context", layer_init)
    params = tfkl.Concatenate(name=f"{name}_params", dtype=dtype)([mean, log_var])
    return IAFPosterior(
        j,
        config.flow_context,
        config.flow_hidden_units,
        config.flow_steps,
        config.activation,
        config.min_log_var,
        config.max_log_var,
        layer_init=layer_init,
        name=name,
        dtype=dtype,
    )([params, context])


def posterior_head(features, config, layer_init: LayerInit = None):
    """The encoder's last layers, q(z|x) as `config.posterior` names it, on `features`."""
    if config.posterior == "diagonal":
        return gaussian_head(
            features,
            config.latent_dim,
            name="z",
            min_log_var=config.min_log_var,
            max_log_var=config.max_log_var,
            layer_init=layer_init,
        )
    if config.posterior == "full_covariance":
        return full_covariance_head(features, config, layer_init)
    if config.posterior == "iaf":
        return iaf_head(features, config, layer_init)
    raise ValueError(f"unknown posterior {config.posterior!r}")
