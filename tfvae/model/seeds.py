"""Stateless seeds (`int32[2]`) from what a user passes: an int, a pair or a seed tensor."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["as_seed"]


def as_seed(seed) -> tf.Tensor:
    """A stateless seed (`int32[2]`) from an int, a pair, or a seed tensor."""
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed) % (2**31 - 1), 0], tf.int32)
    return tf.cast(tf.reshape(seed, [2]), tf.int32)
