"""Several training steps in one XLA program: Keras' `steps_per_execution` loop, fused.

Keras 2 runs `steps_per_execution` steps per call into the graph but launches one XLA
program per step, and each launch (the graph loop, the iterator, argument and variable
handling) has a fixed cost that is a sizeable share of a small model's step.
`fused_train_function` fetches a group of batches (`fused_steps` of them, then groups of
`REMAINDER_GROUP` for what is left), stacks them, and runs their steps in one compiled
`tf.while_loop`, so that cost is paid once per group (docs/performance.md).

The steps are Keras' own (`model.train_step`, then the train counter += 1), in the same
order on the same batches, so training is the same computation; only the launches change.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as tfk

from tfvae import keras_internals

__all__ = ["can_fuse", "fused_train_function", "group_sizes", "is_fused", "REMAINDER_GROUP"]


def can_fuse(model: tfk.Model, fused_steps: int) -> bool:
    """Whether `model`'s compiled settings allow fused steps (else use Keras' own loop).

    Needs XLA, graph mode, more than one step per execution (fixed, not autotuned), and no
    tf.distribute strategy: replicas and parameter servers keep Keras' loop.
    """
    spe = keras_internals.steps_per_execution(model)
    return (
        fused_steps > 1
        and bool(model.jit_compile)
        and not model.run_eagerly
        and spe is not None
        and int(spe.numpy()) > 1
        and not model.autotune_steps_per_execution
        and not keras_internals.uses_cluster_coordinator(model)
        and not tf.distribute.has_strategy()
        and not keras_internals.has_distribution_strategy(model)
    )


def is_fused(train_function) -> bool:
    """Whether `train_function` was made by `fused_train_function` (not Keras' own loop)."""
    return getattr(train_function, "fused_steps_run", None) is not None


# Length of the second tier of groups, for the steps left after the full-length groups (the
# end of an epoch; whole epochs shorter than `fused_steps`, where Keras lowers the steps per
# execution to the epoch's length).
REMAINDER_GROUP = 8


def group_sizes(fused_steps: int, steps_per_execution: int) -> tuple:
    """Group lengths tried in turn: `fused_steps` (never more than `steps_per_execution`,
    else no group would fill), then `REMAINDER_GROUP` for what is left; the rest runs alone."""
    first = min(int(fused_steps), int(steps_per_execution))
    return (first, REMAINDER_GROUP) if 1 < REMAINDER_GROUP < first else (first,)


def _run_step(model: tfk.Model, data):
    """One Keras training step, as `Model.make_train_function` runs it."""
    outputs = model.train_step(data)
    with tf.control_dependencies([t for t in tf.nest.flatten(outputs) if tf.is_tensor(t)]):
        keras_internals.train_counter(model).assign_add(1)
    return outputs


def fused_train_function(model: tfk.Model, fused_steps: int):
    """A `train_function(iterator)` for `model` that runs several steps per XLA program.

    Each call runs the model's steps per execution, as Keras' does: as many full groups
    of the first of `group_sizes(fused_steps, steps_per_execution)` as fit, then groups of
    the second, each group through one compiled loop, and what is left one step per
    program. A group whose batches differ in shape (the short last batch of an epoch) runs
    one program per step. The iterator must not run out inside a group (a dataset of known
    or infinite cardinality, as `VAE.fit` checks), or the group's fetched batches are lost.
    The returned function carries `group_sizes` and `fused_steps_run`, a counter of the
    steps that ran inside groups.
    """
    steps_per_execution = keras_internals.steps_per_execution(model)
    sizes = group_sizes(fused_steps, int(steps_per_execution.numpy()))
    fused_steps_run = tf.Variable(0, dtype=tf.int64, trainable=False, name="fused_steps_run")

    def one_step(data):
        return _run_step(model, data)

    def group_step(*batches):
        stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *batches)
        outputs = one_step(tf.nest.map_structure(lambda s: s[0], stacked))
        for i in tf.range(1, len(batches)):
            outputs = one_step(tf.nest.map_structure(lambda s, i=i: s[i], stacked))
        fused_steps_run.assign_add(len(batches))
        return outputs

    one_step = tf.function(one_step, jit_compile=True, reduce_retracing=True)
    group = tf.function(group_step, jit_compile=True, reduce_retracing=True)

    def same_shapes(batches):
        first = [tf.shape(t) for t in tf.nest.flatten(batches[0])]
        checks = [
            tf.reduce_all(tf.equal(tf.shape(t), s))
            for b in batches[1:]
            for t, s in zip(tf.nest.flatten(b), first)
        ]
        return tf.reduce_all(tf.stack(checks))

    def run_group(batches):
        def one_by_one():
            for b in batches:
                outputs = one_step(b)
            return outputs

        return tf.cond(same_shapes(batches), lambda: group(*batches), one_by_one)

    def train_function(iterator):
        left = steps_per_execution  # read when called: Keras lowers it for short epochs
        spec = one_step.get_concrete_function(iterator.element_spec).structured_outputs
        outputs = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), spec)
        for size in sizes:
            for _ in tf.range(left // size):
                outputs = run_group([next(iterator) for _ in range(size)])
            left = left % size
        for _ in tf.range(left):
            outputs = one_step(next(iterator))
        return outputs

    function = tf.function(train_function, reduce_retracing=True)
    function.group_sizes = sizes
    function.fused_steps_run = fused_steps_run
    return function
