"""Several training steps in one XLA program: Keras' `steps_per_execution` loop, fused.

Keras 2 runs `steps_per_execution` steps per call into the graph but launches one XLA
program per step, and each launch (the graph loop, the iterator, argument and variable
handling) has a fixed cost that is a sizeable share of a small model's step.
`fused_train_function` fetches a group of batches (`fused_steps` of them, then groups of
`REMAINDER_GROUP` for what is left) and runs their steps in one compiled `tf.while_loop`, so
that cost is paid once per group (docs/performance.md).

Every launch, a full group, a shorter one or a single step, goes through the same compiled
function (`run_steps`: the first `count` of `fused_steps` batch slots, the unused slots
filled with the last batch), so an epoch compiles one XLA program per batch shape (two for
an epoch that ends in a short batch), each holding the step once.

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
    launch. A group whose batches differ in shape (the short last batch of an epoch) runs
    one launch per step. The iterator must not run out inside a group (a dataset of known
    or infinite cardinality, as `VAE.fit` checks), or the group's fetched batches are lost.
    The returned function carries `group_sizes`, `run_steps` (the one compiled function
    every launch calls) and `fused_steps_run`, a counter of the steps that ran in groups.
    """
    steps_per_execution = keras_internals.steps_per_execution(model)
    sizes = group_sizes(fused_steps, int(steps_per_execution.numpy()))
    slots = sizes[0]
    fused_steps_run = tf.Variable(0, dtype=tf.int64, trainable=False, name="fused_steps_run")

    def run_steps(count, outputs, *batches):
        """Steps on `batches[:count]` in order; `outputs` (the last step's) seed the loop,
        so the step is compiled once, inside it."""

        def body(i, outputs):
            data = tf.switch_case(i, [lambda b=b: b for b in batches])
            return i + 1, _run_step(model, data)

        _, outputs = tf.while_loop(lambda i, _: i < count, body, (tf.constant(0), outputs))
        fused_steps_run.assign_add(tf.cast(tf.where(count > 1, count, 0), tf.int64))
        return outputs

    run_steps = tf.function(run_steps, jit_compile=True, reduce_retracing=True)
    # Traced, never run: the structure of a step's outputs, for the loop's first value.
    step_outputs = tf.function(lambda data: _run_step(model, data))

    def same_shapes(batches):
        first = [tf.shape(t) for t in tf.nest.flatten(batches[0])]
        checks = [
            tf.reduce_all(tf.equal(tf.shape(t), s))
            for b in batches[1:]
            for t, s in zip(tf.nest.flatten(b), first)
        ]
        return tf.reduce_all(tf.stack(checks))

    def train_function(iterator):
        left = steps_per_execution  # read when called: Keras lowers it for short epochs
        spec = step_outputs.get_concrete_function(iterator.element_spec).structured_outputs
        zeros = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), spec)

        def launch(batches):
            padding = [batches[-1]] * (slots - len(batches))
            return run_steps(tf.constant(len(batches)), zeros, *batches, *padding)

        def run_group(batches):
            def one_by_one():
                for b in batches:
                    outputs = launch([b])
                return outputs

            return tf.cond(same_shapes(batches), lambda: launch(batches), one_by_one)

        outputs = zeros
        for size in sizes:
            for _ in tf.range(left // size):
                outputs = run_group([next(iterator) for _ in range(size)])
            left = left % size
        for _ in tf.range(left):
            outputs = launch([next(iterator)])
        return outputs

    function = tf.function(train_function, reduce_retracing=True)
    function.group_sizes = sizes
    function.run_steps = run_steps
    function.fused_steps_run = fused_steps_run
    return function
