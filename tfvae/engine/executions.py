"""How many steps each call into the compiled graph runs, and when it must be one.

`Engine.compile` sets `STEPS_PER_EXECUTION` steps per call unless told otherwise (with XLA they
then run as fused groups, `tfvae.engine.fused_steps`). Keras 2 cannot run several steps per call on
data that may end inside a call: it refuses data of unknown size, drops the outputs of a
`predict` that ends mid-call, and `train_on_batch` runs out after its one batch. So those
calls run one step per call (`one_step_per_execution`), and a Keras function traced for one
step is retraced when more are asked of it (`stale`).
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae.engine import keras_internals

__all__ = ["mark_built", "never_runs_out_mid_execution", "one_step_per_execution", "stale"]

# Set on a Keras-made function that Keras traced for a single step per call.
_SINGLE_STEP = "_tfvae_single_step"


def never_runs_out_mid_execution(x, steps=None) -> bool:
    """Whether data `x` ends exactly where Keras expects, so no call runs out inside.

    Arrays and tensors (or tuples of them) and datasets of known size do when `steps` is
    None (Keras sizes its last call to what is left); infinite datasets always do. Datasets
    of unknown size, generators and finite data cut by `steps` may end inside a call.
    """
    if isinstance(x, tf.data.Dataset):
        size = int(x.cardinality())
        return size == tf.data.INFINITE_CARDINALITY or (size >= 0 and steps is None)
    leaves = [v for v in tf.nest.flatten(x) if v is not None]
    return (
        steps is None
        and bool(leaves)
        and all(isinstance(v, np.ndarray) or tf.is_tensor(v) for v in leaves)
    )


@contextlib.contextmanager
def one_step_per_execution(model: tfk.Model, when: bool = True):
    """Runs the block with one step per execution if `when` (restored afterwards)."""
    spe = keras_internals.steps_per_execution(model)
    if not when or spe is None:
        yield
        return
    before = int(spe.numpy())
    spe.assign(1)
    try:
        yield
    finally:
        spe.assign(before)


def mark_built(function, model: tfk.Model):
    """Records on a Keras-made train/test/predict `function` whether Keras traced it for a
    single step per call (as it does at one step per execution); returns `function`."""
    spe = keras_internals.steps_per_execution(model)
    single = (spe is None or int(spe.numpy()) == 1) and not model.autotune_steps_per_execution
    if function is not None:
        setattr(function, _SINGLE_STEP, single)
    return function


def stale(function, model: tfk.Model) -> bool:
    """Whether Keras traced `function` for one step per call while more are set now: its
    calls would run one step where Keras counts several."""
    spe = keras_internals.steps_per_execution(model)
    return (
        function is not None
        and getattr(function, _SINGLE_STEP, False)
        and spe is not None
        and int(spe.numpy()) > 1
    )
