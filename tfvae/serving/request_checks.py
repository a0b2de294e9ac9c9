"""In-graph checks of a serving request, so one request can neither crash a server nor get
impossible numbers back: the Python API's input messages, and a budget of rows x samples.

The messages are `tfvae.data.validation`'s, filled in with graph ops; they reach a client as the
InvalidArgumentError `assertion failed: [<message>]` (TF Serving, `saved_model_cli`, the C
API). Each check gates the tensor it returns, so nothing downstream runs on a refused input.
"""

from __future__ import annotations

import functools
import re

import tensorflow as tf

from tfvae.data import validation

__all__ = [
    "checked_array",
    "checked_budget",
    "checked_count",
    "one_value",
    "one_value_message",
    "budget_message",
    "too_many_message",
]


def budget_message(signature: str, rows, samples, total, budget, max_rows, unit: str) -> str:
    """Why a request was refused by the budget, and how to stay under it or raise it."""
    return (
        f"{signature}: this request is {rows} {unit} x {samples} samples per row = {total}, "
        f"over the budget of {budget} rows x samples set at export (max_request_elements); send "
        f"at most {max_rows} {unit} per request, or re-export with "
        f"tfvae.export(..., max_request_elements={total}) or more (from the command line: "
        f"tfvae export RUN --max-request-elements {total})"
    )


def _fill(message_fn, *values: tf.Tensor) -> tf.Tensor:
    """`message_fn(*values)` for scalar string tensors `values`, built in the graph."""
    template = message_fn(*[f"\x00{i}\x00" for i in range(len(values))])
    pieces = re.split("\x00([0-9]+)\x00", template)  # text, index, text, index, ..., text
    joined = [pieces[0]]
    for index, text in zip(pieces[1::2], pieces[2::2]):
        joined += [values[int(index)], text]
    return tf.strings.join(joined)


def _length(ints: tf.Tensor) -> tf.Tensor:
    """How many values a vector of non-negative ints (a shape, an index) holds, counted from
    its values: a signature declaring x `[None, D]` lets the runtime fold `Size(Shape(x))` to
    2 whatever the request's rank, but not the length of `tf.where`'s answer."""
    return tf.shape(tf.where(ints >= 0), out_type=tf.int32)[0]


def _python_tuple(ints: tf.Tensor) -> tf.Tensor:
    """An int vector written as Python writes a tuple: `()`, `(4,)`, `(1, 5)`."""
    inner = tf.strings.reduce_join(tf.strings.as_string(ints), separator=", ")
    one = tf.equal(_length(ints), 1)
    return tf.strings.join(["(", inner, tf.where(one, ",)", ")")])


def _number(value: tf.Tensor) -> tf.Tensor:
    """A float as Python's `f"{v:g}"` writes it (NaN without its sign, as numpy prints it)."""
    return tf.where(tf.math.is_nan(value), "nan", tf.strings.as_string(value, shortest=True))


def _gate(t: tf.Tensor, ok: tf.Tensor, message_fn) -> tf.Tensor:
    """`t`, after asserting `ok`; the message is built only when the check fails.

    tf.Assert prints it C-escaped: the messages hold no quotes or backslashes."""
    message = tf.cond(ok, lambda: tf.constant(""), message_fn)
    with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
        return tf.identity(t)


def _has_shape(shape: tf.Tensor, rank: tf.Tensor, example) -> tf.Tensor:
    """Whether a request of shape `shape` (rank `rank`) is a batch of `example`-shaped rows."""
    n = len(example)
    tail = tf.concat([shape, tf.zeros([n + 1], shape.dtype)], 0)[1 : n + 1]
    return tf.logical_and(tf.equal(rank, n + 1), tf.reduce_all(tf.equal(tail, example)))


def checked_array(
    t: tf.Tensor, dim: int, name: str, what: str, unit_interval: bool = False, shapes=None
) -> tf.Tensor:
    """`t` as `tfvae.data.validation.check_array` would accept it: rank 2, `dim` features, finite,
    and in [0, 1] if `unit_interval`; otherwise the same message, from the graph.

    `shapes`: the shapes one row may have, if more than `[dim]` (a model with an image shape
    takes `[batch, H, W, C]` and `[batch, D]`); a request must be a batch of one of them.
    """
    # raw_ops: tf.shape of a tensor with a static shape folds to a constant when traced; the
    # rank is counted from the shape's values (`_length`), as a request may have any rank.
    shape = tf.raw_ops.Shape(input=t)
    rank = _length(shape)
    if shapes is not None and [tuple(s) for s in shapes] != [(dim,)]:
        shape_ok = tf.reduce_any(tf.stack([_has_shape(shape, rank, s) for s in shapes]))

        def shape_error():
            got = tf.strings.join(["shape ", _python_tuple(shape), " and dtype float32"])
            return _fill(functools.partial(validation.shapes_message, name, shapes, what), got)

        return _finite_and_in_range(_gate(t, shape_ok, shape_error), name, unit_interval)
    last = tf.gather(tf.concat([[-1], shape], 0), rank)  # -1 for a scalar
    shape_ok = tf.logical_and(tf.equal(rank, 2), tf.equal(last, dim))

    def shape_error():
        flat = tf.reduce_prod(shape[1:])
        hint = tf.where(
            tf.logical_and(rank > 2, tf.equal(flat, dim)),
            validation.flatten_hint(dim),
            tf.where(
                tf.logical_and(tf.equal(rank, 1), tf.equal(last, dim)),
                validation.one_example_hint(dim),
                "",
            ),
        )
        got = tf.strings.join(["shape ", _python_tuple(shape), " and dtype float32"])
        return _fill(functools.partial(validation.shape_message, name, dim, what), got, hint)

    return _finite_and_in_range(_gate(t, shape_ok, shape_error), name, unit_interval)


def _finite_and_in_range(t: tf.Tensor, name: str, unit_interval: bool) -> tf.Tensor:
    """`t` after checking that it is finite, and in [0, 1] if `unit_interval`."""
    finite = tf.math.is_finite(t)

    def finite_error():
        index = tf.where(tf.logical_not(finite))[0]
        value = _number(tf.gather_nd(t, index))
        message_fn = functools.partial(validation.non_finite_message, name)
        return _fill(message_fn, _python_tuple(index), value)

    t = _gate(t, tf.reduce_all(finite), finite_error)
    if unit_interval:
        low, high = tf.reduce_min(t), tf.reduce_max(t)
        empty = tf.equal(tf.raw_ops.Size(input=t), 0)  # min and max of nothing: +-inf
        inside = tf.logical_or(empty, tf.logical_and(low >= 0, high <= 1))
        t = _gate(
            t,
            inside,
            lambda: _fill(
                functools.partial(validation.unit_interval_message, name),
                _number(low),
                _number(high),
            ),
        )
    return t


def checked_count(n: tf.Tensor, name: str, maximum: int) -> tf.Tensor:
    """A scalar int `n` in [1, maximum]: below, the Python API's message for a count; above,
    `too_many_message` (the same cap as the Python API's, e.g. `VAE.generate`'s)."""
    n = _gate(
        n,
        n >= 1,
        lambda: _fill(
            functools.partial(validation.positive_int_message, name, 1), tf.strings.as_string(n)
        ),
    )
    return _gate(
        n,
        n <= maximum,
        lambda: _fill(functools.partial(too_many_message, name, maximum), tf.strings.as_string(n)),
    )


def too_many_message(name: str, maximum: int, got: str) -> str:
    """Why a count above tfvae's limit was refused (no quotes: see `_gate`), and what to do."""
    return (
        f"{name} must be at most {maximum} (the limit of generate, tfvae.config.MAX_SAMPLES), "
        f"got {got}; ask for the rest in further requests"
    )


def checked_budget(
    t: tf.Tensor, signature: str, rows, samples: int, budget: int, unit: str = "rows"
) -> tf.Tensor:
    """`t`, after checking that `rows` x `samples` (the request's size) is within `budget`."""
    total = tf.cast(rows, tf.int64) * samples  # int64: rows x K overflows int32

    def error():
        values = [rows, samples, total, budget, budget // samples]
        strings = [tf.strings.as_string(tf.cast(v, tf.int64)) for v in values]
        message_fn = functools.partial(budget_message, signature, unit=unit)
        return _fill(message_fn, *strings)

    return _gate(t, total <= budget, error)


def one_value(t: tf.Tensor, name: str, dtype) -> tf.Tensor:
    """A scalar from a request value sent as a scalar, `[1]`, or repeated once per row.

    REST `instances` (row) requests turn every input into a `[rows]` tensor; `inputs`
    (columnar) requests can send a scalar. All values must be equal; any other shape (an
    empty tensor, `[[2]]`) is refused with one sentence naming it.
    """
    shape = tf.raw_ops.Shape(input=t)
    flat = tf.reshape(tf.cast(t, dtype), [-1])
    size = tf.raw_ops.Size(input=flat)
    one_shape = tf.logical_and(_length(shape) <= 1, size >= 1)

    def shape_error():
        got = tf.strings.join(["shape ", _python_tuple(shape)])
        return _fill(functools.partial(one_value_message, name), got)

    flat = _gate(flat, one_shape, shape_error)
    first = flat[0]
    same = tf.reduce_all(tf.equal(flat, first))

    def values_error():
        got = tf.strings.join(["shape ", _python_tuple(shape), " holding different values"])
        return _fill(functools.partial(one_value_message, name), got)

    return _gate(first, same, values_error)


def one_value_message(name: str, got: str) -> str:
    """Why a request's `seed` or `num_samples` was refused: it is not one value."""
    return (
        f"{name} must be one value, sent as a scalar, as [1] or repeated once per row, got "
        f"{got}; send a single number"
    )
