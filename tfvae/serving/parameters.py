"""What an export reads from a distribution: its family, its parameters by name, its scale.

The signatures (`tfvae.serving.signatures`) serve q(z|x) and p(x|z) as the tensors that
describe them. Those come from the distribution objects the networks return, unwrapped from
`tfp.layers`' tensor-coercible wrapper and `tfd.Independent`, never from config flags, so
any network ending in a distribution exports. Every tensor is float32 with the batch first.

q(z|x) is served as what it is (`posterior_parameters`): a q whose mean is known (every
Gaussian) by `z_mean`, `z_stddev` (and `z_scale_tril` where it has correlations); a flow of a
Gaussian (the `iaf` posterior, whose mean has no closed form) by its base Gaussian's
`z_base_mean`, `z_base_stddev` and `z_flowed_mean`, the flow of `z_base_mean`.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.model.distributions import is_diagonal_normal, unwrap

tfd = tfp.distributions

__all__ = [
    "in_unit_interval",
    "named_parameters",
    "scale_tril",
    "posterior_parameters",
    "latent_point",
]


def in_unit_interval(d: tfd.Distribution) -> bool:
    """Whether `d`'s support is [0, 1] per value (Bernoulli, continuous Bernoulli): data
    outside it are refused, as the Python API refuses them."""
    return isinstance(unwrap(d), (tfd.Bernoulli, tfd.ContinuousBernoulli))


def _float32(t) -> tf.Tensor:
    return tf.cast(t, tf.float32)


def named_parameters(d: tfd.Distribution) -> dict:
    """`d`'s parameters by name, each `[batch, ...]`, always with its `mean`.

    Bernoulli: `mean`, `logits`, `probs`; a diagonal Gaussian: `mean`, `stddev`, `log_var`
    (the names of tfvae's built-in decoders, which are the wire format); any other
    distribution: `mean` and its own tensor parameters (`rate`, `scale_tril`, ...),
    broadcast to its batch shape.
    """
    base = unwrap(d)
    if isinstance(base, tfd.Bernoulli):
        logits = _float32(base.logits_parameter())
        probs = _float32(base.probs_parameter())
        return {"mean": probs, "logits": logits, "probs": probs}
    mean = _float32(d.mean())
    if is_diagonal_normal(base):
        stddev = tf.broadcast_to(_float32(d.stddev()), tf.shape(mean))
        return {"mean": mean, "stddev": stddev, "log_var": 2.0 * tf.math.log(stddev)}
    params = {"mean": mean}
    batch = base.batch_shape_tensor()
    for name, prop in type(base).parameter_properties().items():
        value = base.parameters.get(name)
        if name in params or value is None or not isinstance(prop.event_ndims, int):
            continue
        getter = getattr(base, f"{name}_parameter", None)
        value = tf.convert_to_tensor(getter() if callable(getter) else value)
        if not value.dtype.is_floating:
            continue
        event = tf.shape(value)[tf.rank(value) - prop.event_ndims :]
        params[name] = _float32(tf.broadcast_to(value, tf.concat([batch, event], 0)))
    return params


def scale_tril(q: tfd.Distribution) -> Optional[tf.Tensor]:
    """The lower-triangular scale `[batch, J, J]` of a q(z|x) with correlations, or None
    when its scale is diagonal (or its covariance is not known): then its stddev says all."""
    base = unwrap(q)
    if is_diagonal_normal(base) or base.event_shape.rank == 0:  # independent coordinates
        return None
    if isinstance(base, tfd.MultivariateNormalLinearOperator) and isinstance(
        base.scale, tf.linalg.LinearOperatorLowerTriangular
    ):
        dense = base.scale.to_dense()
        shape = tf.concat([base.batch_shape_tensor(), tf.shape(dense)[-2:]], 0)
        return _float32(tf.broadcast_to(dense, shape))
    try:
        covariance = q.covariance()
    except NotImplementedError:
        return None
    return _float32(tf.linalg.cholesky(covariance))


def _known_mean(q: tfd.Distribution) -> Optional[tf.Tensor]:
    """q's mean, or None where TFP knows none in closed form (a flow with a non-constant
    Jacobian, such as the `iaf` posterior's)."""
    try:
        return q.mean()
    except NotImplementedError:
        return None


def _flow(q: tfd.Distribution) -> tuple:
    """(q as a flow, its base's mean): q a `tfd.TransformedDistribution` (`bijector` of
    `distribution`) whose base has a known mean. (TFP makes a flow whose bijector is no
    CompositeTensor a private twin class, so a flow is recognised by its parts.)

    Raises:
      ValueError: q is no such flow (with `_known_mean` None: the export cannot describe it).
    """
    flow = unwrap(q)
    bijector, base = getattr(flow, "bijector", None), getattr(flow, "distribution", None)
    is_flow = isinstance(bijector, tfp.bijectors.Bijector) and isinstance(base, tfd.Distribution)
    base_mean = _known_mean(base) if is_flow else None
    if base_mean is None:
        raise ValueError(
            f"q(z|x) ({type(flow).__name__}) has no mean in closed form and is not a flow of a "
            "distribution that has one, so the export cannot describe it; end the encoder in a "
            "Gaussian, or in a tfd.TransformedDistribution of one"
        )
    return flow, base_mean


def _mean_and_stddev(d: tfd.Distribution, mean, prefix: str, with_scale: bool) -> dict:
    """`{prefix}_mean` (`mean`, d's), `{prefix}_stddev` `[batch, J]` of `d` and, `with_scale`,
    its `{prefix}_scale_tril` `[batch, J, J]` if it has correlations."""
    mean = _float32(mean)
    out = {
        f"{prefix}_mean": mean,
        f"{prefix}_stddev": tf.broadcast_to(_float32(d.stddev()), tf.shape(mean)),
    }
    tril = scale_tril(d) if with_scale else None
    if tril is not None:
        out[f"{prefix}_scale_tril"] = tril
    return out


def posterior_parameters(q: tfd.Distribution, with_scale: bool = False) -> dict:
    """What q(z|x) has, float32 `[batch, J]` each (`[batch, J, J]` for a scale):

    - a q whose mean is known (diagonal, full-covariance, a user's Gaussian): `z_mean`,
      `z_stddev`; `with_scale`, also `z_scale_tril` if it has correlations;
    - a flow of a Gaussian (the `iaf` posterior): `z_base_mean`, `z_base_stddev` (the
      Gaussian of z_0 that the flow transforms; `with_scale`, its `z_base_scale_tril` if it has
      correlations) and `z_flowed_mean`, z_base_mean through the flow (a deterministic point
      of q, not its mean), never a z_mean or z_stddev that q does not have.

    Raises:
      ValueError: q has no known mean and is not a flow of a distribution with one.
    """
    mean = _known_mean(q)
    if mean is not None:
        return _mean_and_stddev(q, mean, "z", with_scale)
    flow, base_mean = _flow(q)
    out = _mean_and_stddev(flow.distribution, base_mean, "z_base", with_scale)
    out["z_flowed_mean"] = _float32(flow.bijector.forward(base_mean))
    return out


def latent_point(q: tfd.Distribution) -> tf.Tensor:
    """The deterministic z that `serving_default` decodes, `[batch, J]`: q's mean, or for a
    flow (`iaf`) its `z_flowed_mean`.

    Raises:
      ValueError: as `posterior_parameters`.
    """
    mean = _known_mean(q)
    if mean is not None:
        return mean
    flow, base_mean = _flow(q)
    return flow.bijector.forward(base_mean)
