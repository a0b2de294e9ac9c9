"""What the model reads from the distributions its networks return, whatever the networks.

q(z|x), p(x|z) and p(z) are `tfd.Distribution`s: a user's `tfpl.IndependentNormal`, a
`tfpl.MultivariateNormalTriL`, tfvae's own heads. Code downstream of the networks asks them
(their kind, parameters, `event_shape`, TFP's KL registry) instead of the config, so that
any networks ending in a distribution train, evaluate and predict alike.
"""

from __future__ import annotations

import logging
import math

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

tfd = tfp.distributions
tfpl = tfp.layers

__all__ = [
    "unwrap",
    "is_bernoulli",
    "is_diagonal_normal",
    "diagonal_normal",
    "latent_mean",
    "kind",
    "bernoulli_logits",
    "example_shape",
    "data_checks",
    "reshape_examples",
    "as_encoder_input",
    "as_event",
    "posterior",
    "log_prob_at",
    "check_float32",
    "kl_divergence",
    "in_form_of",
    "check_no_kl_loss",
]

logger = logging.getLogger(__name__)
_said = set()  # the (q, p) pairs whose Monte Carlo KL was logged: said once per process


# ------------------------------------------------------------------------ kind and parameters
def unwrap(d: tfd.Distribution) -> tfd.Distribution:
    """The distribution under `tfp.layers`' tensor wrapper and any `tfd.Independent`s."""
    while True:
        d = getattr(d, "tensor_distribution", d)
        if not isinstance(d, tfd.Independent):
            return d
        d = d.distribution


def is_bernoulli(px: tfd.Distribution) -> bool:
    """Whether p(x|z) is a (batch of independent) Bernoulli: x must lie in [0, 1]."""
    return isinstance(unwrap(px), tfd.Bernoulli)


def kind(px: tfd.Distribution) -> str:
    """`bernoulli` for a Bernoulli p(x|z), else the name of its distribution (`Normal`, ...)."""
    return "bernoulli" if is_bernoulli(px) else type(unwrap(px)).__name__


def bernoulli_logits(px: tfd.Distribution) -> tf.Tensor:
    """The logits of a Bernoulli p(x|z) (`is_bernoulli`), `[batch, *event_shape]`."""
    return unwrap(px).logits_parameter()


def _float_dtypes(d) -> set:
    """The dtypes of `d`'s floating parameters (tensors, linear operators, inner distributions)."""
    d = getattr(d, "tensor_distribution", d)
    found = set()
    for value in d.parameters.values():
        if isinstance(value, tfd.Distribution):
            found |= _float_dtypes(value)
        elif isinstance(value, (tf.Tensor, tf.Variable, tf.linalg.LinearOperator)):
            if value.dtype.is_floating:
                found.add(value.dtype)
    return found


def check_float32(d: tfd.Distribution, what: str) -> None:
    """Refuses a distribution computed in another dtype than float32 (e.g. bfloat16 last
    layers under a mixed-precision policy): log-probs, KL and bounds are float32."""
    other = sorted(dt.name for dt in _float_dtypes(d) if dt != tf.float32)
    if other:
        policy = tfk.mixed_precision.global_policy().name
        raise TypeError(
            f"{what} has {'/'.join(other)} parameters (Keras policy {policy!r}), but tfvae "
            "computes log-probs, KL and bounds in float32: end the network in float32, e.g. "
            "dtype='float32' on its last layers (Keras' mixed-precision guide does the same)"
        )


# ------------------------------------------------------------------------ x at the networks
def example_shape(network) -> tf.TensorShape | None:
    """A Keras network's per-example input shape (`[28, 28, 1]`, `[784]`), None if unknown."""
    try:
        inputs = network.inputs
    except AttributeError:
        return None
    if not inputs or len(inputs) != 1:
        return None
    shape = tf.TensorShape(inputs[0].shape)[1:]
    return shape if shape.is_fully_defined() else None


def data_checks(encoder, decoder, config) -> tuple:
    """(p(x|z)'s `kind`, the `check_inputs` arguments for data of these networks): x in
    [0, 1] for a Bernoulli p(x|z); one example flat `[input_dim]`, in `config.image_shape`,
    in the encoder's input shape or in p(x|z)'s event shape. Probes the decoder once."""
    with tf.init_scope():  # outside any trace
        px = decoder(tf.zeros([1, config.latent_dim]), training=False)
    event = px.event_shape if px.event_shape.is_fully_defined() else None
    found = (config.image_shape, example_shape(encoder), event)
    shapes = tuple(tuple(s) for s in found if s is not None)
    shapes = tuple(s for s in shapes if math.prod(s) == config.input_dim)
    checks = {"unit_interval": is_bernoulli(px), "example_shapes": shapes}
    return kind(px), checks


def reshape_examples(x: tf.Tensor, shape) -> tf.Tensor:
    """`x` `[batch, ...]` as `[batch, *shape]` (the same values); as is if it has that shape
    already or `shape` is None or not fully known."""
    if shape is None:
        return x
    shape = tf.TensorShape(shape)
    if not shape.is_fully_defined() or x.shape[1:] == shape:
        return x
    return tf.reshape(x, [-1, *shape.as_list()])


def as_encoder_input(x: tf.Tensor, encoder) -> tf.Tensor:
    """x in the encoder's input shape (`example_shape`): images for an image encoder."""
    return reshape_examples(x, example_shape(encoder))


def as_event(x: tf.Tensor, px: tfd.Distribution) -> tf.Tensor:
    """x `[batch, ...]` in p(x|z)'s `event_shape`, for `px.log_prob`.

    Raises ValueError where an example of x is not one event of p(x|z) (a bare
    `tfd.Bernoulli` over `[batch, D]` has scalar events: D log-probs per example).
    """
    event, size = px.event_shape, x.shape[1:].num_elements()
    if event.is_fully_defined() and size is not None and event.num_elements() != size:
        raise ValueError(
            f"the decoder's p(x|z) has event_shape {event.as_list()} (batch_shape "
            f"{px.batch_shape.as_list()}), but an example has {size} values: make the "
            "whole example its event, e.g. tfd.Independent(..., reinterpreted_batch_ndims=1) "
            "or tfpl.IndependentBernoulli"
        )
    return reshape_examples(x, event)


def posterior(encoder, x: tf.Tensor, training=None) -> tfd.Distribution:
    """q(z|x) from `encoder` given x in its input shape (`as_encoder_input`), float32."""
    q = encoder(as_encoder_input(x, encoder), training=training)
    check_float32(q, "the encoder's q(z|x)")
    return q


MEAN_DRAWS = 256  # draws averaged for a point of q that has no mean and is no flow


def latent_mean(q: tfd.Distribution) -> tf.Tensor:
    """The deterministic point of q(z|x) that `predict(latent="mean")` and the pictures use:
    TFP's mean where it has one; for a flow (the `iaf` posterior) its base's mean pushed
    through the flow, as the export's `z_flowed_mean` (E[z] has no closed form); else the
    mean of `MEAN_DRAWS` draws of a fixed seed."""
    try:
        return q.mean()
    except NotImplementedError:
        pass
    flow = unwrap(q)
    bijector, base = getattr(flow, "bijector", None), getattr(flow, "distribution", None)
    if bijector is not None and base is not None:
        try:
            return bijector.forward(base.mean())
        except NotImplementedError:
            pass
    return tf.reduce_mean(q.sample(MEAN_DRAWS, seed=tf.constant([0, 0], tf.int32)), 0)


def log_prob_at(px: tfd.Distribution, x: tf.Tensor) -> tf.Tensor:
    """log p(x|z) `[batch]`: `px.log_prob` of x in p(x|z)'s event shape (`as_event`), float32."""
    check_float32(px, "the decoder's p(x|z)")
    return px.log_prob(as_event(x, px))


# ------------------------------------------------------------------------ KL(q || p)
_DIAGONAL_SCALES = (
    tf.linalg.LinearOperatorDiag,
    tf.linalg.LinearOperatorIdentity,
    tf.linalg.LinearOperatorScaledIdentity,
)


def is_diagonal_normal(base: tfd.Distribution) -> bool:
    """Whether `base` (an `unwrap`ped distribution) is a normal with independent coordinates:
    a `tfd.Normal`, or a multivariate normal whose scale is diagonal."""
    if isinstance(base, tfd.Normal):
        return True
    return isinstance(base, tfd.MultivariateNormalLinearOperator) and isinstance(
        base.scale, _DIAGONAL_SCALES
    )


def diagonal_normal(d: tfd.Distribution):
    """(loc, scale) `[..., J]` of a normal with diagonal covariance over a vector event."""
    if d.event_shape.rank != 1:
        return None
    base = unwrap(d)
    if isinstance(base, tfd.Normal) and base.event_shape.rank != 0:
        return None
    return (base.mean(), base.stddev()) if is_diagonal_normal(base) else None


def in_form_of(q: tfd.Distribution, prior: tfd.Distribution):
    """`prior` restated in q's form (Independent(Normal) or a multivariate normal) when the
    prior is a diagonal normal, so that TFP's KL registry has the pair; else None."""
    params = diagonal_normal(prior)
    if params is None or q.event_shape.rank != 1:
        return None
    loc, scale = params
    base = unwrap(q)
    if isinstance(base, tfd.Normal):
        return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)
    if isinstance(base, tfd.MultivariateNormalLinearOperator):
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)
    return None


def _registered_kl(q, prior):
    try:
        return tfd.kl_divergence(q, prior)
    except NotImplementedError:
        return None


def kl_divergence(q: tfd.Distribution, prior: tfd.Distribution, z=None) -> tf.Tensor:
    """KL(q(z|x) || p(z)) per example: in closed form where TFP registers one for the pair
    (the prior restated in q's form if need be: `in_form_of`), else the Monte Carlo estimate
    log q(z|x) - log p(z) at the draws `z ~ q(z|x)` (`[..., batch, J]`), logged once.

    Raises: ValueError where there is no closed form and no `z`.
    """
    kl = _registered_kl(q, prior)
    if kl is None:
        matched = in_form_of(q, prior)
        kl = None if matched is None else _registered_kl(q, matched)
    if kl is not None:
        return kl
    pair = f"KL({type(unwrap(q)).__name__} || {type(unwrap(prior)).__name__})"
    if z is None:
        raise ValueError(f"TFP has no closed form for {pair}: pass draws z ~ q(z|x)")
    if pair not in _said:
        _said.add(pair)
        logger.info("%s has no closed form in TFP: using log q(z|x) - log p(z) at z", pair)
    return q.log_prob(z) - prior.log_prob(z)


def check_no_kl_loss(network, part: str) -> None:
    """Refuses a network that adds KL(q || p) as a Keras loss (`tfpl.KLDivergenceRegularizer`
    as an activity regularizer, `tfpl.KLDivergenceAddLoss`): the ELBO counts it already."""
    for layer in [network, *network.submodules]:
        added = isinstance(layer, tfpl.KLDivergenceAddLoss) or isinstance(
            getattr(layer, "activity_regularizer", None), tfpl.KLDivergenceRegularizer
        )
        if added:
            raise ValueError(
                f"VAE({part}=...): layer {layer.name!r} adds KL(q || p) as a Keras loss "
                "(tfpl.KLDivergenceRegularizer or KLDivergenceAddLoss), which tfvae's ELBO "
                "already counts, so it would be counted twice: remove it (tfvae's KL term uses "
                "VAE.prior, N(0, I), weighted by config.kl_weight)"
            )
