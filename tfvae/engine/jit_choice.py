"""Whether `compile()` uses XLA when the caller does not say: a rule on the model's layers.

XLA (with fused steps) is the fast path for tfvae's built-in MLP, but not for every network:
on CPU, XLA runs convolutions several times slower than TensorFlow's oneDNN kernels, and it
cannot compile TFP's layers for a batch of unknown size (a short last batch, or a `tf.data`
batch: "Reading input as constant from a dynamic tensor"). The rule is deterministic, not
timed at run time: XLA only where every layer is known to be fast under XLA on CPU and to
trace with an unknown batch size (`XLA_LAYERS`, and tfvae's own layers), and one replica
per device; else `jit_compile=False`, said in one log line. An explicit `jit_compile=` is
always honoured. Measurements in docs/performance.md.
"""

from __future__ import annotations

import logging
from typing import Optional

import tensorflow as tf
import tf_keras as tfk

__all__ = ["XLA_LAYERS", "default_jit_compile", "replicas_on_cpu", "slow_layer"]

logger = logging.getLogger(__name__)

tfkl = tfk.layers

# Layers with which XLA is fast on CPU and traces with an unknown batch size: tfvae's MLP is
# made of these (Dense, Concatenate) and tfvae's own heads; the rest are elementwise or
# reshape a batch without computing on its size.
XLA_LAYERS = (
    tfkl.Dense,
    tfkl.Concatenate,
    tfkl.Add,
    tfkl.Activation,
    tfkl.ReLU,
    tfkl.LeakyReLU,
    tfkl.ELU,
    tfkl.Dropout,
    tfkl.Flatten,
    tfkl.Reshape,
)

# Hold other layers, or no computation: not judged themselves (their layers are).
_NEUTRAL = (tfk.Model, tfkl.InputLayer, tfk.metrics.Metric)

# tfvae's own layers (its distribution heads) are written for XLA.
_OWN_MODULES = "tfvae."


def slow_layer(model: tfk.Model) -> Optional[tfkl.Layer]:
    """The first layer of `model` (nested ones included) not known to run well under XLA
    (a convolution, a TFP distribution layer, a custom layer), or None."""
    for module in model.submodules:
        if not isinstance(module, tfkl.Layer) or isinstance(module, _NEUTRAL):
            continue
        if isinstance(module, XLA_LAYERS) or type(module).__module__.startswith(_OWN_MODULES):
            continue
        return module
    return None


def replicas_on_cpu(strategy: tf.distribute.Strategy) -> bool:
    """True when `strategy` runs several replicas and at least one sits on a CPU device,
    where XLA compiles for one device ("Trying to access resource ... located in device
    CPU:1 from device CPU:0")."""
    if strategy.num_replicas_in_sync <= 1:
        return False
    devices = getattr(strategy.extended, "worker_devices", ())
    return any("CPU" in tf.DeviceSpec.from_string(d).device_type.upper() for d in devices)


def default_jit_compile(model: tfk.Model) -> bool:
    """`jit_compile` for `model.compile()` without one: True unless its replicas sit on CPU
    devices or one of its layers is not known to run well under XLA (`slow_layer`); then
    False, logged in one line."""
    if replicas_on_cpu(model.distribute_strategy):
        logger.info(
            "compile: jit_compile=False, as the %d replicas of %s sit on CPU devices, where "
            "XLA cannot place one replica per device",
            model.distribute_strategy.num_replicas_in_sync,
            type(model.distribute_strategy).__name__,
        )
        return False
    layer = slow_layer(model)
    if layer is None:
        return True
    logger.info(
        "compile: jit_compile=False, as layer %r (%s) is not among those known to run well "
        "under XLA (tfvae.engine.jit_choice.XLA_LAYERS); pass jit_compile=True to force XLA",
        layer.name,
        type(layer).__name__,
    )
    return False
