"""Input checks at the public entry points: clear errors naming argument, got and expected.

A VAE fed the wrong thing usually fails deep inside a matmul or silently trains on NaN;
these checks fail first, with a message that says what to change.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tfvae.base import checks

__all__ = [
    "shape_names",
    "shapes_message",
    "shape_message",
    "one_example_hint",
    "flatten_hint",
    "non_finite_message",
    "unit_interval_message",
    "positive_int_message",
    "check_inputs",
    "check_latents",
    "check_dataset",
    "check_fit_data",
    "check_array",
    "check_positive_int",
    "check_seed",
    "check_data",
]


# The messages, one home for each: the Python checks below and the exported signatures'
# in-graph checks (`tfvae.serving.request_checks`, which passes "{}" for values known at run time).
def shape_names(shapes) -> str:
    """`[batch, 784]`, or `[batch, 784] or [batch, 28, 28, 1]`: batches of these example shapes."""
    return " or ".join("[batch, " + ", ".join(str(d) for d in e) + "]" for e in shapes)


def shapes_message(name: str, shapes, what: str, got: str, hint: str = "") -> str:
    return f"{name} must have shape {shape_names(shapes)} ({what}), got {got}{hint}"


def shape_message(name: str, dim, what: str, got: str, hint: str = "") -> str:
    return shapes_message(name, [(dim,)], what, got, hint)


def one_example_hint(dim) -> str:
    return f"; for one example use x[None, :] (shape [1, {dim}])"


def flatten_hint(dim) -> str:
    return f"; flatten it with x.reshape(len(x), {dim})"


def non_finite_message(name: str, index: str, value: str) -> str:
    return (
        f"{name} contains NaN or inf (first at index {index}, value {value}); "
        "all values must be finite"
    )


def unit_interval_message(name: str, low: str, high: str) -> str:
    return (
        f"{name} must lie in [0, 1] for a bernoulli decoder, got values in [{low}, {high}]; "
        "scale it (e.g. x / 255) or use a gaussian decoder"
    )


def positive_int_message(name: str, minimum, got: str) -> str:
    return f"{name} {checks.too_small(minimum, got)}"


def _describe(x) -> str:
    return f"shape {tuple(x.shape)} and dtype {getattr(x.dtype, 'name', x.dtype)}"


def _is_symbolic(x) -> bool:
    if not hasattr(x, "shape") or not hasattr(x, "dtype") or isinstance(x, np.ndarray):
        return False
    if isinstance(x, (tf.Tensor, tf.Variable)):
        return tf.is_symbolic_tensor(x) or not tf.executing_eagerly()
    return type(x).__name__ == "KerasTensor"


def _fits(shape, example_shapes) -> bool:
    """Whether an array's `shape` `[batch, ...]` is a batch of one of `example_shapes`."""
    return any(
        len(shape) == len(e) + 1
        and all(a is None or b is None or a == b for a, b in zip(shape[1:], e))
        for e in example_shapes
    )


def check_array(
    x,
    dim: int,
    name: str,
    *,
    unit_interval: bool = False,
    require_examples: bool = False,
    what: str = "features",
    as_numpy: bool = False,
    example_shapes=None,
) -> np.ndarray | tf.Tensor:
    """Checks a concrete `[batch, dim]` array: rank, size, numeric dtype, finite, range.

    `example_shapes`: the shapes one example may have, e.g. `((784,), (28, 28, 1))` for a
    model taking images too; `((dim,),)` by default.
    Returns it as a float32 `tf.Tensor` (symbolic tensors are checked on static shape only),
    or with `as_numpy` as a float32 numpy array (no copy if it is one already: callers that
    hand numpy on, like `fit`, skip a tensor's copy of the whole data).
    """
    shapes = list(dict.fromkeys([(dim,), *(tuple(e) for e in (example_shapes or ()))]))
    if _is_symbolic(x):
        # Inside a traced function: only the static shape can be checked.
        if x.shape.rank is not None and not _fits(tuple(x.shape), shapes):
            raise ValueError(shapes_message(name, shapes, what, _describe(x)))
        return tf.cast(x, tf.float32) if x.dtype != tf.float32 else x
    if isinstance(x, tf.Tensor) or isinstance(x, tf.Variable):
        arr = x.numpy()
    else:
        try:
            arr = np.asarray(x)
        except Exception as e:  # ragged lists and the like
            raise ValueError(f"{name} must be an array of shape [batch, {dim}]: {e}") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric (float32 expected), got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real-valued (float32 expected), got dtype {arr.dtype}")
    if not _fits(arr.shape, shapes):
        hint = ""
        if arr.ndim > 2 and int(np.prod(arr.shape[1:])) == dim:
            hint = flatten_hint(dim)
        elif arr.ndim == 1 and arr.shape[0] == dim:
            hint = one_example_hint(dim)
        raise ValueError(shapes_message(name, shapes, what, _describe(arr), hint))
    if require_examples and arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: got 0 examples of shape [batch, {dim}]")
    # Two passes (min and max: a NaN or an infinity shows in one of them), not a mask.
    low, high = (arr.min(), arr.max()) if arr.size else (0, 0)
    if np.issubdtype(arr.dtype, np.floating) and not (np.isfinite(low) and np.isfinite(high)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        index = tuple(int(i) for i in bad)
        raise ValueError(non_finite_message(name, str(index), str(arr[index])))
    if unit_interval and (low < 0 or high > 1):
        raise ValueError(unit_interval_message(name, f"{low:g}", f"{high:g}"))
    if as_numpy:
        return np.asarray(arr, dtype=np.float32)
    return tf.convert_to_tensor(arr, dtype=tf.float32)


def check_inputs(
    x,
    config,
    name: str = "x",
    require_examples: bool = False,
    as_numpy: bool = False,
    *,
    unit_interval: Optional[bool] = None,
    example_shapes=None,
):
    """x for a model with this config: `[batch, input_dim]` (or `[batch, *shape]` for a shape
    of `example_shapes`), finite, in [0, 1] if `unit_interval` (by default: if
    `config.decoder` is bernoulli); returned as `check_array` returns it."""
    if unit_interval is None:
        unit_interval = config.decoder == "bernoulli"
    return check_array(
        x,
        config.input_dim,
        name,
        unit_interval=unit_interval,
        require_examples=require_examples,
        what="data",
        as_numpy=as_numpy,
        example_shapes=example_shapes,
    )


def check_latents(z, config, name: str = "z"):
    """z for the decoder: `[batch, latent_dim]`, finite."""
    return check_array(z, config.latent_dim, name, what="latent codes")


def check_dataset(ds: tf.data.Dataset, config, name: str = "x", example_shapes=None):
    """A batched `tf.data.Dataset` of x (or (x, ...)) with feature size `input_dim` (or
    batches of a shape of `example_shapes`), of float or bool values (cast to float32).

    Integer elements are refused: uint8 pixels 0..255 would train on the wrong scale
    without a word (an integer numpy array is checked value by value instead).
    """
    spec = ds.element_spec
    if isinstance(spec, (tuple, list)):
        spec = spec[0]
    if isinstance(spec, dict):
        raise ValueError(f"{name}: datasets of dicts are not supported; yield x or (x, y)")
    shape = spec.shape
    shapes = list(dict.fromkeys([(config.input_dim,), *map(tuple, example_shapes or ())]))
    if shape.rank is None or not _fits(tuple(shape), shapes):
        raise ValueError(
            f"{name}: dataset elements must be batches of shape "
            f"{shape_names(shapes)}, got {shape}; call "
            ".batch(batch_size) and flatten images"
        )
    if spec.dtype.is_integer:
        raise TypeError(
            f"{name}: the dataset's elements are {spec.dtype.name} (integers, e.g. pixels "
            "0..255), but the model needs float values on the data's scale: map them first, "
            "e.g. ds.map(lambda x: tf.cast(x, tf.float32) / 255.0)"
        )
    if not (spec.dtype.is_floating or spec.dtype == tf.bool):
        raise TypeError(f"{name}: dataset dtype must be numeric (float32), got {spec.dtype.name}")
    if spec.dtype != tf.float32:
        ds = ds.map(
            lambda *e: (
                (tf.cast(e[0], tf.float32),) + tuple(e[1:])
                if len(e) > 1
                else tf.cast(e[0], tf.float32)
            )
        )
    if ds.cardinality() == 0:
        raise ValueError(f"{name}: the dataset is empty")
    return ds


def check_fit_data(x, config, name: str, *, unit_interval=None, example_shapes=None):
    """Data for `fit`/`evaluate`/`predict`: an array (checked whole, returned as float32
    numpy), a `tf.data.Dataset` (`check_dataset`), or a tuple whose first item is x."""
    checks_of = dict(unit_interval=unit_interval, example_shapes=example_shapes)
    if isinstance(x, tf.data.Dataset):
        return check_dataset(x, config, name, example_shapes)
    if isinstance(x, (tuple, list)) and len(x) > 0 and not isinstance(x[0], (int, float)):
        first = check_fit_data(x[0], config, name, **checks_of)
        return type(x)([first, *x[1:]])
    if x is None:
        raise ValueError(
            f"{name} is required: an array of shape [num_examples, "
            f"{config.input_dim}] or a tf.data.Dataset"
        )
    if hasattr(x, "shape") or isinstance(x, (list, tuple)):
        return check_inputs(x, config, name, True, True, **checks_of)
    return x


def check_positive_int(value, name: str, minimum: int = 1, maximum: Optional[int] = None) -> int:
    """An integer >= `minimum` and <= `maximum` (tfvae's limit for that size; see
    `tfvae.config.LIMITS`), by the one rule of `tfvae.base.checks.check_integer`: numpy
    integers accepted; bools, floats and strings refused (TypeError), out of range ValueError."""
    return checks.check_integer(value, name, minimum, maximum)


SEED_RULE = "must be an integer >= 0 and < 2**64, or a pair of int32 integers"


def check_seed(seed, name: str = "seed"):
    """A seed: an integer in [0, 2**64) (each its own stateless seed, `tfvae.model.seeds`),
    or a pair of int32 integers / an integer `[2]` tensor; beyond them seeds would collide."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{name} {SEED_RULE}, got {seed!r}")
    if checks.is_integer(seed):
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"{name} {SEED_RULE}, got {int(seed)}")
        return seed
    if isinstance(seed, (tf.Tensor, tf.Variable)) and _is_symbolic(seed):
        return seed
    try:
        arr = np.asarray(seed.numpy() if hasattr(seed, "numpy") else seed)
    except Exception as e:
        raise TypeError(f"{name} {SEED_RULE}, got {seed!r}") from e
    if not np.issubdtype(arr.dtype, np.integer) or arr.shape != (2,):
        raise TypeError(f"{name} {SEED_RULE}, got {seed!r} (shape {arr.shape}, dtype {arr.dtype})")
    if not np.all((arr >= -(2**31)) & (arr < 2**31)):
        raise ValueError(f"{name} {SEED_RULE}, got the pair {arr.tolist()}")
    return seed


def check_data(data, config, name: str = "data") -> None:
    """A `tfvae.data.datasets.Data` that fits `config`: non-empty, finite splits of
    `input_dim` features.

    `model.fit` checks arrays itself, but training pipelines feed it a `tf.data.Dataset`,
    whose values are not inspected; this checks the arrays before they become one.
    """
    for split in ("x_train", "x_test"):
        if not hasattr(data, split):
            raise TypeError(
                f"{name} must be a tfvae.data.datasets.Data with x_train and x_test, got "
                f"{type(data).__name__}"
            )
        check_inputs(
            getattr(data, split), config, f"{name}.{split}", require_examples=True, as_numpy=True
        )
