"""Stateless seeds (`int32[2]`) from what a user passes: an int, a pair or a seed tensor."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfvae.data.validation import check_seed

__all__ = ["as_seed"]


def as_seed(seed) -> tf.Tensor:
    """A stateless seed (`int32[2]`) from an int in [0, 2**64), a pair, or a seed tensor.

    An int is split into its low and high 32 bits, each read as an int32: distinct ints give
    distinct seeds, and an int below 2**31 gives `(seed, 0)`, as those below 2**31 - 1 always did.
    Anything else is refused in one line (`tfvae.data.validation.check_seed`).
    """
    seed = check_seed(seed)
    if isinstance(seed, (int, np.integer)):
        value = int(seed)
        halves = np.array([value & 0xFFFFFFFF, value >> 32], np.uint32)
        return tf.constant(halves.view(np.int32))
    return tf.cast(tf.reshape(seed, [2]), tf.int32)
