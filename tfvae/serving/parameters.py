"""What an export reads from a distribution: its family, its parameters by name, its scale.

The signatures (`tfvae.serving.signatures`) serve q(z|x) and p(x|z) as the tensors that
describe them. Those come from the distribution objects the networks return, unwrapped from
`tfp.layers`' tensor-coercible wrapper and `tfd.Independent`, never from config flags, so
any network ending in a distribution exports. Every tensor is float32 with the batch first.
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
