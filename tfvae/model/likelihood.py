"""The importance-weighted estimate of log p(x) (Burda et al. 2015), in bounded memory.

log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x): the K draws are
taken `chunk_size` at a time and combined with a running logsumexp, so memory is bounded
whatever K is; examples go `batch_size` at a time, each batch with its own seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from tfvae.model import distributions, multi_sample, objectives

__all__ = ["iwae_batch", "log_likelihood"]


def log_likelihood(
    batch_bound: Callable,
    x: tf.Tensor,
    importance_samples: int,
    batch_size: int,
    chunk_size: int,
    seed: tf.Tensor,
) -> np.ndarray:
    """`float64[num_examples]`: `batch_bound(x_batch, K, chunk, seed_batch)` (`iwae_batch`,
    traced) over the batches of the checked `x`, batch `b` seeded `seed + [0, (b + 1) * 7919]`."""
    out = []
    n = int(x.shape[0])
    for b, start in enumerate(range(0, n, int(batch_size))):
        xb = x[start : start + int(batch_size)]
        seed_b = seed + tf.constant([0, 1], tf.int32) * (b + 1) * 7919
        out.append(
            batch_bound(
                xb,
                tf.constant(int(importance_samples)),
                tf.constant(min(int(chunk_size), int(importance_samples))),
                seed_b,
            ).numpy()
        )
    return np.concatenate(out).astype(np.float64)


def iwae_batch(encoder, decoder, prior, x, importance_samples, chunk_size, seed):
    """The bound of each row of `x` `[batch, ...]` at K = `importance_samples` draws,
    `chunk_size` at a time (a while loop; trace it inside a `tf.function`)."""
    q = distributions.posterior(encoder, x, training=False)
    batch = tf.shape(x)[0]

    def body(done, running_max, running_sum):
        k = tf.minimum(chunk_size, importance_samples - done)
        z = q.sample(k, seed=seed + tf.stack([0, done * 104729]))  # [k, batch, J]
        log_px_z = multi_sample.log_px_at(decoder, z, x, k, training=False)
        log_w = log_px_z + prior.log_prob(z) - q.log_prob(z)
        return (done + k, *objectives.running_logsumexp(running_max, running_sum, log_w))

    init = (
        tf.constant(0),
        tf.fill([batch], tf.constant(-np.inf, tf.float32)),
        tf.zeros([batch]),
    )
    # The batch size is only known at run time: the running tensors are [batch] whatever
    # shape tracing inferred for the first chunk (a batch of one traces as [1]).
    _, m, s = tf.while_loop(
        lambda done, *_: done < importance_samples,
        body,
        init,
        shape_invariants=(init[0].shape, tf.TensorShape([None]), tf.TensorShape([None])),
    )
    return objectives.iwae_bound_from_running(m, s, importance_samples)
