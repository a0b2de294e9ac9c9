"""The `tf.data` pipelines that feed training, for every `tf.distribute` strategy.

Two front doors over one batching core (`_batches`): `make_dataset`, a general pipeline over
an array (each pass a fresh permutation drawn from `seed`), and `epoch_dataset`, the one
`train_and_evaluate` uses, whose epoch `e` is a pure function of `(seed, e)` so a resumed run
sees exactly the batches an uninterrupted one would (`tfvae.training.checkpointing`). Both shuffle
example *indices* once per epoch and gather each batch in one op, hold byte-representable data
as uint8 (`compact_storage`), and are ready for any strategy: the GLOBAL batch, sharded by
example across workers (`AutoShardPolicy.DATA`; a no-op in one process). Why these choices
are fast is in docs/performance.md.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

__all__ = [
    "PREFETCH_BATCHES",
    "make_dataset",
    "epoch_dataset",
    "prefetched",
    "slice_batches",
    "compact_storage",
]

# Batches a pipeline keeps ready ahead of the training step (each is little work).
PREFETCH_BATCHES = 8


def make_dataset(
    x: np.ndarray,
    batch_size: int = 100,
    shuffle: bool = True,
    seed: int = 0,
    dynamic_binarization: bool = False,
    drop_remainder: bool = False,
    repeat: bool = False,
) -> tf.data.Dataset:
    """A `tf.data` pipeline of `[batch, D]` float32 batches (`[batch, H, W, C]` from images):
    in memory, shuffled, prefetched.

    Each pass over the dataset is a new permutation, reproducible from `seed`; every epoch ends
    with its own partial batch unless `drop_remainder` (also with `repeat`). With
    `dynamic_binarization`, each batch draws fresh x ~ Bernoulli(grey level), seeded. Under a
    multi-worker strategy `batch_size` is the global batch, sharded by example.

    Raises:
      ValueError: `x` is not a non-empty finite `[num_examples, ...]` array, or
        `drop_remainder` leaves no batch.
      TypeError: `batch_size` is not an integer.
    """
    from tfvae.data.validation import check_array, check_positive_int

    batch_size = check_positive_int(batch_size, "batch_size")
    if not hasattr(x, "shape"):
        try:
            x = np.asarray(x)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f"x must be a non-empty [num_examples, D] array: {e}") from e
    shape = tuple(x.shape)
    if len(shape) < 2 or shape[0] == 0:
        raise ValueError(f"x must be a non-empty [num_examples, D] array, got shape {shape}")
    size = math.prod(int(d) for d in shape[1:])
    data = check_array(x, size, "x", require_examples=True, example_shapes=[shape[1:]])
    n = shape[0]
    num_batches = n // batch_size if drop_remainder else -(-n // batch_size)
    if num_batches == 0:
        raise ValueError(
            f"drop_remainder=True with batch_size={batch_size} > {n} examples leaves no batch"
        )
    # A new key on every iteration of the dataset (a new epoch for Keras `fit`).
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    noise_fn = None
    if dynamic_binarization:
        rng = tf.random.Generator.from_seed(seed)

        def noise_fn(key, step, shape):
            return rng.uniform(shape)

    ds = _batches(
        data.numpy(),
        keys if repeat else keys.take(1),
        batch_size,
        num_batches,
        (lambda key: tf.stack([key, 0])) if shuffle else None,
        noise_fn,
    )
    cardinality = tf.data.INFINITE_CARDINALITY if repeat else num_batches
    return prefetched(ds.apply(tf.data.experimental.assert_cardinality(cardinality)))


def epoch_dataset(
    x: np.ndarray,
    batch_size: int,
    seed: int,
    initial_epoch: int,
    epochs: int,
    dynamic_binarization: bool = False,
) -> Tuple[tf.data.Dataset, int]:
    """Batches for epochs `initial_epoch .. epochs-1`, each epoch's order keyed on (seed, e).

    Returns `(dataset, steps_per_epoch)`; pass both to `fit` (with `initial_epoch`). The
    permutation of epoch `e` is `stateless_shuffle(range(N), seed=(2*seed, e))` and the
    dynamic binarization noise of its step `t` is keyed on `(2*seed+1, e*steps + t)`, so a
    resumed run sees exactly the batches an uninterrupted one would. Under a multi-worker
    strategy `batch_size` is the global batch: every worker builds the same order and keeps
    its own share of each batch.
    """
    x = np.asarray(x, np.float32)
    steps = int(math.ceil(int(x.shape[0]) / batch_size))
    shuffle_key = tf.constant(2 * int(seed), tf.int64)
    noise_key = tf.constant(2 * int(seed) + 1, tf.int64)
    noise_fn = None
    if dynamic_binarization:

        def noise_fn(epoch, step, shape):
            return tf.random.stateless_uniform(
                shape, seed=tf.stack([noise_key, epoch * steps + step])
            )

    ds = _batches(
        x,
        tf.data.Dataset.range(int(initial_epoch), int(epochs)),
        batch_size,
        steps,
        lambda epoch: tf.stack([shuffle_key, epoch]),
        noise_fn,
    )
    return prefetched(ds), steps


def _batches(
    x: np.ndarray,
    keys: tf.data.Dataset,
    batch_size: int,
    num_batches: int,
    order_seed_fn: Optional[Callable],
    noise_fn: Optional[Callable],
) -> tf.data.Dataset:
    """`num_batches` float32 batches of `x` per int64 key of `keys` (one key per epoch).

    The epoch keyed `key` permutes the examples with `stateless_shuffle(seed=order_seed_fn(key))`
    (in order if `order_seed_fn` is None) and cuts the order into consecutive batches; with
    `noise_fn(key, step, shape)`, each batch becomes x ~ Bernoulli(batch), `noise < batch`.
    """
    n = int(x.shape[0])
    stored, decode = compact_storage(x)
    stored = tf.constant(stored)

    def epoch(key):
        order = tf.range(n, dtype=tf.int64)
        if order_seed_fn is not None:
            order = tf.random.experimental.stateless_shuffle(order, seed=order_seed_fn(key))

        def gather(step, indices):
            batch = decode(tf.gather(stored, indices))
            if noise_fn is not None:
                batch = tf.cast(noise_fn(key, step, tf.shape(batch)) < batch, tf.float32)
            return batch

        return slice_batches(order, batch_size, num_batches).map(gather)

    return keys.flat_map(epoch)


def prefetched(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with `PREFETCH_BATCHES` batches prefetched, tf.data autotuning off, and sharded by
    example (`AutoShardPolicy.DATA`) under a multi-worker strategy.

    Autotuning's background thread sleeps in growing periods, and deleting the iterator (Keras
    does it as `fit` returns) waits for its next wake-up; these pipelines have nothing to tune
    (one gather per batch), so a fixed buffer is as fast. An in-memory array has no files to
    shard by, hence sharding by example: each worker keeps its share of every global batch.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)


def slice_batches(order: tf.Tensor, batch_size: int, num_batches: int) -> tf.data.Dataset:
    """`(step, indices)` for consecutive `batch_size` slices of the int64 index vector `order`.

    One slice per batch: no per-example dataset work (`from_tensor_slices(order).batch(...)`
    does work for every example, on the training step's critical path).
    """
    n = tf.size(order, out_type=tf.int64)
    return tf.data.Dataset.range(num_batches).map(
        lambda step: (step, order[step * batch_size : tf.minimum((step + 1) * batch_size, n)])
    )


def compact_storage(x: np.ndarray, chunk_rows: int = 4096):
    """(stored array, decode): uint8 codes when float32 `x` round-trips exactly, else `x`.

    Codes are the values themselves (integers 0..255, e.g. binary pixels) or 8-bit grey
    levels k/255; `decode` maps a gathered batch back to the identical float32 values, so the
    pipeline holds and gathers a quarter of the bytes. Checked `chunk_rows` rows at a time,
    so the temporaries stay small beside `x`.
    """
    x = np.asarray(x, np.float32)
    for scale in (1.0, 255.0):
        codes = np.empty(x.shape, np.uint8)
        for start in range(0, len(x), chunk_rows):
            part = x[start : start + chunk_rows]
            rounded = np.rint(part * np.float32(scale))
            if rounded.size and (rounded.min() < 0 or rounded.max() > 255):
                break
            codes[start : start + chunk_rows] = rounded
            if not np.array_equal(_decode_codes(codes[start : start + chunk_rows], scale), part):
                break
        else:
            return codes, lambda batch, scale=scale: _decode_codes(batch, scale)
    return x, tf.identity


def _decode_codes(codes, scale: float):
    """float32 values from uint8 codes: `codes / scale` (numpy or TF, both IEEE float32)."""
    if isinstance(codes, np.ndarray):
        values = codes.astype(np.float32)
        return values if scale == 1.0 else values / np.float32(scale)
    values = tf.cast(codes, tf.float32)
    return values if scale == 1.0 else values / scale
