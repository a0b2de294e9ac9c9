"""Training objectives over K draws z_k ~ q(z|x) per example (`VAEConfig.objective`).

- `elbo`, the multi-sample ELBO (Burda et al.'s "VAE k=K"): mean_k log p(x|z_k) - KL.
- `iwae`, the importance-weighted bound (Burda et al. 2015): log (1/K) sum_k w_k with
  log w_k = log p(x|z_k) - beta (log q(z_k|x) - log p(z_k)); beta = 1 is the bound itself.

`dreg_correction` turns IWAE's encoder gradient into the doubly reparameterised one (Tucker
et al. 2018). `VAE` uses these for every objective but the one-draw ELBO, which keeps its
own path (`VAE._elbo_terms`).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.model import distributions, objectives

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
    "Draws",
    "draw",
    "log_px_at",
    "stop_parameter_gradients",
    "per_example_loss",
    "summaries",
    "dreg_correction",
]


class Draws(NamedTuple):
    """K draws per example: `z` `[K, batch, J]` (reparameterised), `reconstruction`
    log p(x|z_k) and `kl` (log q(z_k|x) - log p(z_k), or the analytic KL repeated), both
    `[K, batch]`."""

    z: tf.Tensor
    reconstruction: tf.Tensor
    kl: tf.Tensor


def draw(
    encoder,
    decoder,
    prior,
    x,
    seed,
    num_samples: int,
    kl_method: str = "monte_carlo",
    training=None,
    stop_q_gradients: bool = False,
) -> Draws:
    """`num_samples` reparameterised draws z_k ~ q(z|x) for each row of `x` `[batch, ...]`.

    `seed` is a stateless `int32[2]`; z_k = mu + sigma * eps_k with eps the standard normal
    `[K, batch, J]` of that seed. `stop_q_gradients` differentiates log q(z_k|x) with q's
    parameters held constant (z_k still carries its gradient), as DReG needs; the values
    are the same.
    """
    q = distributions.posterior(encoder, x, training)
    z = q.sample(num_samples, seed=seed)  # [K, batch, J]
    batch = tf.shape(x)[0]
    reconstruction = log_px_at(decoder, z, x, num_samples, training)
    kl = objectives.kl_divergence(q, prior, kl_method, z)
    if kl_method == "analytic":  # [batch] in closed form ([K, batch] where TFP has none)
        kl = tf.broadcast_to(kl, [num_samples, batch])
    if stop_q_gradients:
        # The same values as q's own (which reads z's noise back from TFP's cache, hence
        # rounds differently), the gradient of log q(z|x) at fixed parameters.
        path = objectives.kl_divergence(stop_parameter_gradients(q), prior, kl_method, z)
        kl = tf.stop_gradient(kl) + (path - tf.stop_gradient(path))
    return Draws(z, reconstruction, kl)


def log_px_at(decoder, z, x, k, training=None) -> tf.Tensor:
    """log p(x|z_k) `[k, batch]` for `k` draws z `[k, batch, *event]` of each row of x
    `[batch, ...]`: the decoder runs once on all k * batch draws."""
    batch = tf.shape(x)[0]
    event = z.shape[2:]
    if event.is_fully_defined():
        merged = [-1, *event.as_list()]
    else:
        merged = tf.concat([[-1], tf.shape(z)[2:]], 0)
    px = decoder(tf.reshape(z, merged), training=training)
    x = distributions.as_event(x, px)
    if x.shape.rank is None:
        reps = tf.concat([[k], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    else:
        reps = [k] + [1] * (x.shape.rank - 1)
    return tf.reshape(distributions.log_prob_at(px, tf.tile(x, reps)), [k, batch])


def stop_parameter_gradients(q: tfd.Distribution) -> tfd.Distribution:
    """`q` rebuilt from its own parameter values, through which no gradient flows.

    Its `log_prob(z)` is q's, differentiable in z only. Parameters that are distributions or
    bijectors (a `tfd.TransformedDistribution`'s flow: its weights and context) are rebuilt
    the same way, so such a q's log_prob at q's own draws runs the flow's inverse. Raises
    ValueError for a parameter that is not a tensor, distribution or bijector (a function or
    layer holding weights cannot be stopped).
    """
    q = getattr(q, "tensor_distribution", q)  # tfp.layers wrap their distributions
    return q.copy(**_stopped_parameters(q))


def _stopped_parameters(owner) -> dict:
    """{name: value with gradients stopped} of a distribution's or bijector's `parameters`."""
    return {name: _stopped(value, name) for name, value in owner.parameters.items()}


def _stopped(value, name: str):
    if isinstance(value, tfd.Distribution):
        return stop_parameter_gradients(value)
    if isinstance(value, tfb.Bijector):
        return value.copy(**_stopped_parameters(value))
    if tf.is_tensor(value) or isinstance(value, tf.Variable):
        return tf.stop_gradient(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_stopped(item, name) for item in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if name == "kwargs_split_fn":  # a TransformedDistribution's routing of kwargs: no weights
        return value
    raise ValueError(
        f"gradient_estimator='dreg' cannot hold q(z|x)'s parameter {name!r} "
        f"({type(value).__name__}) constant; use gradient_estimator='reparameterized'"
    )


def per_example_loss(draws: Draws, objective: str, beta) -> tf.Tensor:
    """The objective's loss per example, `[batch]` (nats; regularizers not included).

    `elbo`: mean_k [-log p(x|z_k) + beta KL_k]; `iwae`: -log mean_k exp(log p(x|z_k) -
    beta KL_k), the negative IWAE bound at beta = 1 (beta = 0: -log mean_k p(x|z_k)).
    """
    if objective == "elbo":
        return -tf.reduce_mean(draws.reconstruction, 0) + beta * tf.reduce_mean(draws.kl, 0)
    if objective == "iwae":
        return -objectives.iwae_bound(draws.reconstruction - beta * draws.kl)
    raise ValueError(f"objective must be 'elbo' or 'iwae', got {objective!r}")


def summaries(draws: Draws, objective: str) -> dict:
    """What fit logs per example: `reconstruction` and `kl`, means over the K draws (their
    difference is the `elbo`), and for `iwae` the bound at beta = 1 on the same draws."""
    out = {
        "reconstruction": tf.reduce_mean(draws.reconstruction, 0),
        "kl": tf.reduce_mean(draws.kl, 0),
    }
    if objective == "iwae":
        out["iwae"] = objectives.iwae_bound(draws.reconstruction - draws.kl)
    return out


def dreg_correction(tape: tf.GradientTape, draws: Draws, loss_grad_z, variables, beta):
    """What turns the gradient of the IWAE loss with q's parameters held constant (the
    `stop_q_gradients` draws) into the DReG gradient: one term per variable (None where
    z does not depend on it, as for the decoder's).

    With normalised weights w~_k, that gradient reaches the encoder as
    sum_k w~_k dlog w_k/dz_k dz_k/dphi; DReG weighs each draw by (1 - beta) w~_k + beta w~_k^2
    instead (w~_k^2 at beta = 1, Tucker et al. 2018; the beta-weighted bound follows
    from the same identity). The difference is the tape's gradient of z with
    `loss_grad_z * beta (w~_k - 1)` flowing into it. `tape` must be persistent.
    """
    log_w = draws.reconstruction - beta * draws.kl
    weights = tf.stop_gradient(tf.nn.softmax(log_w, axis=0))
    scale = tf.stop_gradient(beta * (weights - 1.0))[..., tf.newaxis]
    return tape.gradient(draws.z, variables, output_gradients=loss_grad_z * scale)
