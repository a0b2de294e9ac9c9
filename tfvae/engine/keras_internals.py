"""Every private attribute of tf_keras (and TFP) that tfvae touches, one small function each.

tf_keras has no public route to these; keeping them here means a tf_keras or TFP upgrade
that renames one breaks one file, and `tests/test_keras_internals.py` names what broke.
"""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf
import tf_keras as tfk

__all__ = [
    "bernoulli_logits",
    "compiled_trainable_state",
    "has_distribution_strategy",
    "in_multi_worker_mode",
    "is_compiled",
    "refuse_saved_model",
    "set_train_function",
    "steps_per_execution",
    "train_counter",
    "uses_cluster_coordinator",
    "weights_h5_bytes",
]


def steps_per_execution(model: tfk.Model) -> Optional[tf.Variable]:
    """`compile`'s steps per train-function call: an int64 variable (None before compile).

    Keras keeps it in `_steps_per_execution` and lowers it during an epoch shorter than it.
    """
    return model._steps_per_execution


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several processes: TF's `extended._in_multi_worker_mode()`
    (what Keras itself asks; strategies without it are single-process)."""
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def train_counter(model: tfk.Model) -> tf.Variable:
    """The int64 variable counting the steps of the current `fit` (`_train_counter`)."""
    return model._train_counter


def uses_cluster_coordinator(model: tfk.Model) -> bool:
    """Whether `fit` schedules steps through a parameter-server `ClusterCoordinator`."""
    return model._cluster_coordinator is not None


def has_distribution_strategy(model: tfk.Model) -> bool:
    """Whether the model was created under a tf.distribute strategy (`_distribution_strategy`)."""
    return model._distribution_strategy is not None


def is_compiled(model: tfk.Model) -> bool:
    """Whether `compile` has run (Keras sets `_is_compiled` there)."""
    return bool(model._is_compiled)


def compiled_trainable_state(model: tfk.Model):
    """A context in which each layer's `trainable` is what it was at `compile`, as Keras'
    `fit` makes its train function (`training_utils.RespectCompiledTrainableState`)."""
    from tf_keras.src.engine import training_utils

    return training_utils.RespectCompiledTrainableState(model)


def set_train_function(model: tfk.Model, function: Callable) -> None:
    """Installs `function` as the one `fit` calls; Keras also keeps it as `train_tf_function`
    (which SavedModel export detaches), as its own `make_train_function` does."""
    model.train_function = function
    model.train_tf_function = function


def bernoulli_logits(distribution) -> tf.Tensor:
    """A `tfd.Bernoulli`'s logits without the checks `logits_parameter()` adds (TFP private)."""
    return distribution._logits_parameter_no_checks()


def refuse_saved_model(cls: type, message: str) -> type:
    """Makes `tf.saved_model.save(instance_of_cls, ...)` raise `TypeError(message)`.

    `tf.saved_model.save` lists an object's children through `_trackable_children` with
    `save_type="savedmodel"` (a tf.trackable private that tf_keras overrides) before it
    writes anything; checkpoints list them with `save_type="checkpoint"` and are unaffected.
    """
    children = cls._trackable_children

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        if save_type == "savedmodel":
            raise TypeError(message)
        return children(self, save_type, **kwargs)

    cls._trackable_children = _trackable_children
    return cls


def weights_h5_bytes(model: tfk.Model) -> bytes:
    """What `model.save_weights("m.weights.h5")` writes, built in memory, as bytes.

    tf_keras's own `saving_lib.save_weights_only`, given an in-memory file (h5py takes one)
    instead of a path. HDF5 then never writes to disk itself: on a full disk h5py 3.14 /
    HDF5 1.14 fail to flush at `File.close` and the process segfaults, leaving its temporary
    behind; Python's own writes of these bytes raise a plain ENOSPC `OSError` instead.
    """
    import io

    from tf_keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(
            model, weights_store=store, assets_store=None, inner_path="", visited_trackables=set()
        )
    finally:
        store.close()
    return buffer.getvalue()
