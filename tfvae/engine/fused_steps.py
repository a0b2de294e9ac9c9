"""Several training steps in one XLA program: Keras' `steps_per_execution` loop, fused.

Keras 2 runs `steps_per_execution` steps per call into the graph but launches one XLA
program per step, and each launch (the graph loop, the iterator, argument and variable
handling) has a fixed cost that is a sizeable share of a small model's step.
`fused_train_function` fetches a group of batches (`fused_steps` of them, fewer for what
is left of a call) and runs their steps in one compiled `tf.while_loop`, so that cost is
paid once per group (docs/performance.md).

Every launch, a full group, a shorter one or a single step, goes through the same compiled
function (`run_steps`: the first `count` of `fused_steps` batch slots, the unused slots
filled with the group's last batch), so an epoch compiles one XLA program per batch shape
(two for an epoch that ends in a short batch), each holding the step once.

The steps are Keras' own (`model.train_step`, then the train counter += 1), in the same
order on the same batches, so training is the same computation; only the launches change.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as tfk

from tfvae.engine import keras_internals

__all__ = ["can_fuse", "fused_train_function", "group_length", "is_fused", "plain_batches"]


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


def plain_batches(x) -> bool:
    """Whether the batches of `fit` data `x` are plain tensors, as a group's TensorArrays
    hold them: datasets with sparse or ragged parts (a `y` a VAE ignores, say) keep Keras'
    loop."""
    if isinstance(x, tf.data.Dataset):
        return all(isinstance(s, tf.TensorSpec) for s in tf.nest.flatten(x.element_spec))
    return True


def is_fused(train_function) -> bool:
    """Whether `train_function` was made by `fused_train_function` (not Keras' own loop)."""
    return getattr(train_function, "fused_steps_run", None) is not None


def group_length(fused_steps: int, steps_per_execution: int) -> int:
    """Steps per group: `fused_steps`, never more than `steps_per_execution` (the most one
    call runs, so larger groups would never fill)."""
    return min(int(fused_steps), int(steps_per_execution))


def _run_step(model: tfk.Model, data):
    """One Keras training step, as `Model.make_train_function` runs it."""
    outputs = model.train_step(data)
    with tf.control_dependencies([t for t in tf.nest.flatten(outputs) if tf.is_tensor(t)]):
        keras_internals.train_counter(model).assign_add(1)
    return outputs


def fused_train_function(model: tfk.Model, fused_steps: int, step_results=None):
    """A `train_function(iterator)` for `model` that runs several steps per XLA program.

    Each call runs the model's steps per execution, as Keras' does, in groups of
    `group_length(fused_steps, steps_per_execution)` (the last one shorter where the steps
    left do not fill it), each group through one compiled loop. Where a group's batches
    differ in shape (the short last batch of an epoch), its leading batches of the first
    one's shape run as the group and the rest one launch each. The iterator must not run
    out inside a group (a dataset of known or infinite cardinality, as `Engine.fit` checks), or
    the group's fetched batches are lost.

    `step_results`, if given, is a function returning what a step returns, read from the
    model's state after it (a VAE's metric results): the loop then carries no outputs and
    the step is traced once, inside it (else once more, for the structure of its outputs).

    The returned function carries `group_length`, `run_steps` (the one compiled function
    every launch calls) and `fused_steps_run`, a counter of the steps that ran in groups.
    """
    steps_per_execution = keras_internals.steps_per_execution(model)
    slots = group_length(fused_steps, int(steps_per_execution.numpy()))
    fused_steps_run = tf.Variable(0, dtype=tf.int64, trainable=False, name="fused_steps_run")
    run_steps = _compiled_steps(model, step_results, fused_steps_run)
    # Traced, never run: the structure of a step's outputs, for the loop's first value.
    step_outputs = None if step_results else tf.function(lambda data: _run_step(model, data))

    def train_function(iterator):
        spec = iterator.element_spec
        if step_results is not None:
            first_outputs = step_results()  # never returned: Keras runs at least one step
        else:
            structure = step_outputs.get_concrete_function(spec).structured_outputs
            first_outputs = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), structure)

        def launch(arrays, start, count, outputs):
            """One call of `run_steps` on batches `start, ..., start + count - 1`."""
            return run_steps(count, outputs, *_slot_batches(spec, arrays, start, count, slots))

        def group(left, outputs):
            count = tf.minimum(left, slots)
            arrays, prefix = _fetch(iterator, count)
            outputs = launch(arrays, 0, prefix, outputs)
            _, outputs = tf.while_loop(  # what differs in shape from the first: one by one
                lambda j, _: j < count,
                lambda j, outputs: (j + 1, launch(arrays, j, tf.constant(1), outputs)),
                (prefix, outputs),
            )
            return left - count, outputs

        left = tf.cast(steps_per_execution, tf.int32)  # read when called: Keras lowers it
        _, outputs = tf.while_loop(lambda left, _: left > 0, group, (left, first_outputs))
        return outputs

    function = tf.function(train_function, reduce_retracing=True, autograph=False)
    function.group_length = slots
    function.run_steps = run_steps
    function.fused_steps_run = fused_steps_run
    return function


def _compiled_steps(model: tfk.Model, step_results, fused_steps_run: tf.Variable):
    """`run_steps(count, outputs, *batches)`: XLA-compiled, the model's steps on
    `batches[:count]` in order; `fused_steps_run` counts those of groups (`count > 1`)."""

    def run_steps(count, outputs, *batches):
        """Steps on `batches[:count]` in order, compiled once, inside the loop; the loop
        carries the last step's outputs (seeded with `outputs`) unless `step_results`."""

        def select(i):
            return tf.switch_case(i, [lambda b=b: b for b in batches])

        if step_results is None:
            _, outputs = tf.while_loop(
                lambda i, _: i < count,
                lambda i, _: (i + 1, _run_step(model, select(i))),
                (tf.constant(0), outputs),
            )
        else:

            def body(i):
                with tf.control_dependencies(tf.nest.flatten(_run_step(model, select(i)))):
                    return i + 1

            with tf.control_dependencies(tf.while_loop(lambda i: i < count, body, [0])):
                outputs = step_results()
        fused_steps_run.assign_add(tf.cast(tf.where(count > 1, count, 0), tf.int64))
        return outputs

    return tf.function(run_steps, jit_compile=True, reduce_retracing=True)


def _fetch(iterator, count):
    """`count` batches of `iterator` in TensorArrays (one per leaf of a batch), and how many
    of them, from the first, have the first's shapes."""
    leaf_specs = tf.nest.flatten(iterator.element_spec)
    first = tf.nest.flatten(next(iterator))
    arrays = [
        tf.TensorArray(s.dtype, size=count, element_shape=s.shape, infer_shape=False)
        for s in leaf_specs
    ]
    arrays = [a.write(0, t) for a, t in zip(arrays, first)]

    def body(i, arrays, prefix):
        leaves = tf.nest.flatten(next(iterator))
        same = tf.reduce_all(
            [tf.reduce_all(tf.equal(tf.shape(t), tf.shape(f))) for t, f in zip(leaves, first)]
        )
        prefix = tf.where(tf.logical_and(tf.equal(prefix, i), same), i + 1, prefix)
        return i + 1, [a.write(i, t) for a, t in zip(arrays, leaves)], prefix

    _, arrays, prefix = tf.while_loop(lambda i, *_: i < count, body, (1, arrays, 1))
    return arrays, prefix


def _slot_batches(spec, arrays, start, count, slots: int) -> list:
    """The `slots` batches `run_steps` takes: `start, ..., start + count - 1` read from
    `arrays`, the unused slots filled with the last of them."""
    last = start + count - 1
    return [
        tf.nest.pack_sequence_as(spec, [a.read(tf.minimum(start + k, last)) for a in arrays])
        for k in range(slots)
    ]
