"""A user's encoder or decoder as JSON that rebuilds it in another process: Keras' own config.

Keras serializes a network as its layers' configs (`tf_keras.saving.serialize_keras_object`);
its weights go beside it (`tfvae.model.saving`). Two kinds of layer need more than Keras gives:

- TFP's distribution layers (`tfp.layers.IndependentNormal`, `MultivariateNormalTriL`, ...)
  write their distribution as a pickled Python lambda (bytecode of this Python, refused by
  Keras' safe mode) and some lack their own arguments (`MultivariateNormalTriL`'s event size).
  Here they are written as their constructor's arguments instead, under tfvae's registered
  names (`tfvae>IndependentNormal`, ...), which rebuild the TFP layer itself.
- A layer holding a Python function of its own (`tfp.layers.DistributionLambda(lambda t: ...)`,
  `tf_keras.layers.Lambda(lambda t: ...)`) cannot be saved so that it loads elsewhere: saving
  refuses it, naming the layer. So does any layer whose config does not rebuild it.

A user's own layer classes need `tf_keras.saving.register_keras_serializable` (or
`custom_objects=` when loading), as in Keras.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from typing import Optional

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

tfd, tfpl = tfp.distributions, tfp.layers

__all__ = [
    "network_config",
    "build_network",
    "NetworkSaveError",
    "NetworkLoadError",
    "same_architecture",
    "in_scope",
    "PACKAGE",
]

PACKAGE = "tfvae"
# TFP's distribution layers saved by their constructor's arguments: the names their
# distribution function closes over (besides `convert_to_tensor_fn`, kept separately).
_ARGUMENTS = {
    tfpl.MultivariateNormalTriL: ("event_size", "validate_args"),
    tfpl.OneHotCategorical: ("event_size", "sample_dtype", "validate_args"),
    tfpl.CategoricalMixtureOfOneHotCategorical: (
        "event_size",
        "num_components",
        "sample_dtype",
        "validate_args",
    ),
    tfpl.IndependentBernoulli: ("event_shape", "sample_dtype", "validate_args"),
    tfpl.IndependentLogistic: ("event_shape", "validate_args"),
    tfpl.IndependentNormal: ("event_shape", "validate_args"),
    tfpl.IndependentPoisson: ("event_shape", "validate_args"),
    tfpl.MixtureNormal: ("num_components", "event_shape", "validate_args"),
    tfpl.MixtureLogistic: ("num_components", "event_shape", "validate_args"),
}
# How a distribution layer turns its distribution into a tensor, by name.
_CONVERT = {
    "sample": tfd.Distribution.sample,
    "mean": tfd.Distribution.mean,
    "mode": tfd.Distribution.mode,
    "stddev": tfd.Distribution.stddev,
    "variance": tfd.Distribution.variance,
    "logits": tfd.Bernoulli.logits.fget,
    "probs": tfd.Bernoulli.probs.fget,
}


@contextlib.contextmanager
def quiet_tfp_lambdas():
    """Silences Keras' warning that a config holds a `lambda`, which TFP's distribution layers
    give whenever Keras reads their config (saving weights too): tfvae writes those layers by
    their arguments instead, and refuses other lambdas (`network_config`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The object being serialized includes a `lambda`")
        yield


class NetworkSaveError(ValueError):
    """A network that cannot be written so that it loads in another process."""


class NetworkLoadError(ValueError):
    """A saved network that cannot be rebuilt here; `cause` is Keras' reason, in one line."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


# ------------------------------------------------------------------ TFP's layers by arguments
def _closure(function) -> dict:
    """The variables `function` closes over, by name (TFP keeps a layer's arguments there)."""
    cells = function.__closure__ or ()
    return {name: cell.cell_contents for name, cell in zip(function.__code__.co_freevars, cells)}


def _plain(value, where: str):
    """`value` as JSON (ints, bools, lists of them, a dtype's name), else NetworkSaveError."""
    if isinstance(value, (tf.DType, type)) or hasattr(value, "as_numpy_dtype"):
        return tf.as_dtype(value).name
    if isinstance(value, tf.TensorShape):
        value = value.as_list()
    elif tf.is_tensor(value) or hasattr(value, "tolist"):
        value = tf.get_static_value(value)
        value = None if value is None else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise NetworkSaveError(
        f"{where} has an argument of type {type(value).__name__} that "
        "tfvae cannot write as JSON: give it as a Python int or list"
    )


def _convert_name(layer, where: str) -> str:
    fn = layer._convert_to_tensor_fn  # TFP's DistributionLambda keeps it here
    fn = fn.fget if isinstance(fn, property) else fn
    for name, known in _CONVERT.items():
        if fn is known:
            return name
    raise NetworkSaveError(
        f"{where}: its convert_to_tensor_fn is a function of its own, which cannot be saved "
        f"so that it loads elsewhere: use one of {', '.join(map(repr, _CONVERT))}"
    )


def _tfp_config(layer, where: str) -> dict:
    """The constructor's arguments of TFP distribution layer `layer` (see `_ARGUMENTS`)."""
    found = _closure(layer._make_distribution_fn)  # TFP's DistributionLambda keeps it here
    config = {"name": layer.name, "trainable": layer.trainable, "dtype": layer.dtype_policy.name}
    for argument in _ARGUMENTS[type(layer)]:
        config[argument] = _plain(found[argument], f"{where} ({argument})")
    config["convert_to_tensor_fn"] = _convert_name(layer, where)
    if layer.activity_regularizer is not None:
        config["activity_regularizer"] = _serialized(layer.activity_regularizer, where)
    return config


def _serialized(obj, where: str) -> dict:
    try:
        return json.loads(json.dumps(tfk.saving.serialize_keras_object(obj)))
    except (NotImplementedError, TypeError, ValueError) as e:
        why = "it has no get_config" if isinstance(e, NotImplementedError) else _line(e)
        raise NetworkSaveError(
            f"{where} holds a {type(obj).__name__} that Keras cannot serialize ({why}): give "
            "it a get_config and register it with tf_keras.saving.register_keras_serializable"
        ) from None


def _saveable(tfp_class):
    """A subclass of `tfp_class` registered as `tfvae>NAME` that loads from `_tfp_config`."""

    def from_config(cls, config):
        config = dict(config)
        config["convert_to_tensor_fn"] = _CONVERT[config.get("convert_to_tensor_fn", "sample")]
        if config.get("sample_dtype") is not None:
            config["sample_dtype"] = tf.as_dtype(config["sample_dtype"])
        if config.get("activity_regularizer") is not None:
            config["activity_regularizer"] = tfk.saving.deserialize_keras_object(
                config["activity_regularizer"]
            )
        if isinstance(config.get("event_shape"), list):
            config["event_shape"] = tuple(config["event_shape"])
        return cls(**config)

    def get_config(self):
        return _tfp_config(self, f"layer {self.name!r}")

    namespace = {"from_config": classmethod(from_config), "get_config": get_config}
    saveable = type(tfp_class.__name__, (tfp_class,), namespace)
    saveable.__module__ = __name__
    return tfk.saving.register_keras_serializable(PACKAGE, tfp_class.__name__)(saveable)


_SAVEABLE = {tfp_class: _saveable(tfp_class) for tfp_class in _ARGUMENTS}
_ARGUMENTS.update({saveable: _ARGUMENTS[base] for base, saveable in _SAVEABLE.items()})


# ------------------------------------------------------------------------------ networks
def _layers(network) -> list:
    """Every layer inside `network` (nested models' too), the network itself excluded."""
    return [m for m in network.submodules if isinstance(m, tfk.layers.Layer)]


def _holds_function(layer) -> bool:
    """A Lambda (TFP's DistributionLambda included) with a Python lambda or local function."""
    if type(layer) in _ARGUMENTS:
        return False
    if isinstance(layer, tfpl.DistributionLambda):
        return True  # its distribution is a function of the user's, pickled by TFP
    if not isinstance(layer, tfk.layers.Lambda):
        return False
    name = getattr(getattr(layer, "function", None), "__qualname__", "")
    return name.endswith("<lambda>") or "<locals>" in name


def _check_layers(network, part: str) -> dict:
    """{name: TFP distribution layer} of `network`; refuses a layer holding its own function."""
    tfp_layers = {}
    for layer in _layers(network):
        where = f"the {part}'s layer {layer.name!r} ({type(layer).__name__})"
        if _holds_function(layer):
            raise NetworkSaveError(
                f"{where} holds a Python function, which cannot be saved so that it loads in "
                "another process: build it from tfp.layers' classes (IndependentNormal, "
                "MultivariateNormalTriL, IndependentBernoulli, ...) or a Layer subclass with a "
                "get_config, registered with tf_keras.saving.register_keras_serializable"
            )
        if type(layer) in _ARGUMENTS:
            if layer.name in tfp_layers:
                raise NetworkSaveError(
                    f"the {part} has two layers named {layer.name!r}: give them distinct names"
                )
            tfp_layers[layer.name] = layer
    return tfp_layers


def _replace_tfp(node, tfp_layers: dict, part: str):
    """`node` (a serialized network) with each TFP layer's config written by `_tfp_config`."""
    if isinstance(node, list):
        return [_replace_tfp(v, tfp_layers, part) for v in node]
    if not isinstance(node, dict):
        return node
    inner = node.get("config")
    layer = tfp_layers.get(inner.get("name")) if isinstance(inner, dict) else None
    if layer is not None and "class_name" in node:
        name = type(layer).__name__
        where = f"the {part}'s layer {layer.name!r} ({name})"
        return {
            **node,  # a functional model's entry also names the layer and its inputs
            "module": __name__,
            "class_name": name,
            "config": _tfp_config(layer, where),
            "registered_name": f"{PACKAGE}>{name}",
        }
    return {k: _replace_tfp(v, tfp_layers, part) for k, v in node.items()}


def network_config(network, part: str, check: bool = True) -> dict:
    """The JSON-able config that rebuilds `network` (the VAE's `part`, for messages).

    With `check`, the config is rebuilt here (Keras' safe mode) and must give the same layers
    and weight shapes, so a network that saves also loads.

    Raises:
      NetworkSaveError (a ValueError): a layer cannot be saved; the message names it.
    """
    tfp_layers = _check_layers(network, part)
    with quiet_tfp_lambdas():  # TFP's pickled lambdas, replaced by `_replace_tfp`
        serialized = _serialized(network, f"the {part}")
    config = _replace_tfp(serialized, tfp_layers, part)
    if check:
        _check_rebuilds(network, config, part)
    return config


def _check_rebuilds(network, config: dict, part: str) -> None:
    try:
        rebuilt = build_network(config, part)
    except ValueError as e:
        raise NetworkSaveError(f"the {part} cannot be saved: {_line(e)}") from None
    for old, new in zip(_layers(network), _layers(rebuilt)):
        shapes = [[w.shape.as_list() for w in layer.weights] for layer in (old, new)]
        regularized = [layer.activity_regularizer is not None for layer in (old, new)]
        if shapes[0] != shapes[1] or regularized[0] != regularized[1]:
            raise NetworkSaveError(
                f"the {part}'s layer {old.name!r} ({type(old).__name__}) does not rebuild from "
                "its config (its get_config misses an argument): complete its get_config"
            )
    if len(_layers(network)) != len(_layers(rebuilt)):
        raise NetworkSaveError(f"the {part} does not rebuild from its config with all its layers")


def build_network(config: dict, part: str, custom_objects: Optional[dict] = None):
    """The network `network_config` wrote (its weights fresh: load them after).

    Raises:
      NetworkLoadError (a ValueError): a layer's class is unknown here (register it, or pass
        `custom_objects`).
    """
    try:
        network = tfk.saving.deserialize_keras_object(
            config, custom_objects=custom_objects, safe_mode=True
        )
    except (ValueError, TypeError, KeyError) as e:
        raise NetworkLoadError(
            f"cannot rebuild the {part} from its saved config ({_line(e)}); a layer class of "
            "your own must be registered with tf_keras.saving.register_keras_serializable "
            "before loading, or passed as custom_objects={'Name': cls}",
            _line(e),
        ) from None
    if not isinstance(network, tfk.Model):
        raise ValueError(f"the saved {part} is a {type(network).__name__}, not a tf_keras Model")
    return network


def same_architecture(a: dict, b: dict) -> bool:
    """Whether two `network_config`s describe the same network, whatever its layers' names."""
    return _renamed(a) == _renamed(b)


def _renamed(config: dict):
    names: dict = {}

    def collect(node):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str):
                names.setdefault(node["name"], f"#{len(names)}")
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    def rename(node):
        if isinstance(node, dict):
            return {k: rename(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rename(v) for v in node]
        return names.get(node, node) if isinstance(node, str) else node

    collect(config)
    return rename(config)


def in_scope(network, part: str, strategy):
    """`network` with its variables under `strategy`: itself if they are, else a copy rebuilt
    from its config inside the strategy's scope with the same weights."""
    if all(strategy.extended.variable_created_in_scope(v) for v in network.variables):
        return network
    with strategy.scope():
        copy = build_network(network_config(network, part, check=False), part)
        copy.set_weights(network.get_weights())
    return copy


def _line(error: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
