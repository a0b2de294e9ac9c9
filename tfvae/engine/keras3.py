"""The border between Keras 3 (`keras`, and `tf.keras` since TF 2.16) and tfvae's Keras 2.

tfvae is built on `tf_keras` (Keras 2). A Keras 3 object handed to it fails deep inside
Keras (`Could not interpret optimizer identifier`, `no attribute
'_implements_train_batch_hooks'`) or, worse, half works (a Keras 3 layer called inside a
tf_keras model is not trained). Every entry point that takes Keras objects passes them
here first: a Keras 3 optimizer of a built-in class that has never stepped is rebuilt
as its tf_keras twin from its config, checked key by key (see `as_tf_keras_optimizer`);
anything else from Keras 3 is refused with one line naming the tf_keras equivalent.

Keras 3 objects are recognised by the module of their class (or of a base class), so
nothing here imports `keras`.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import tf_keras as tfk

logger = logging.getLogger(__name__)

__all__ = ["Keras3Error", "is_keras3", "check", "check_network", "as_tf_keras_optimizer"]

# Config keys Keras 3 optimizers add that tf_keras lacks; converted only at their default.
_KERAS3_ONLY_OPTIMIZER_KEYS = ("loss_scale_factor", "gradient_accumulation_steps")
_FIX = "or set TF_USE_LEGACY_KERAS=1 before importing TensorFlow (tf.keras is then tf_keras)"


class Keras3Error(TypeError):
    """A Keras 3 object was passed where tfvae (Keras 2, `tf_keras`) needs a tf_keras one."""


def _keras3_class(cls: type) -> Optional[type]:
    """The first class in `cls`'s MRO defined by Keras 3 (`keras.*`, not `tf_keras.*`)."""
    for base in getattr(cls, "__mro__", ()):
        module = getattr(base, "__module__", "") or ""
        if module == "keras" or module.startswith("keras."):
            return base
    return None


def is_keras3(obj) -> bool:
    """Whether `obj` (an instance or a class) comes from Keras 3."""
    return _keras3_class(obj if isinstance(obj, type) else type(obj)) is not None


def _public_name(cls: type) -> tuple[str, Optional[str]]:
    """(`keras.<kind>.<Name>`, `tf_keras.<kind>.<Name>` or None) for a Keras 3 class.

    The kind is the longest leading part of its module path (after `keras.src.`) under
    which tf_keras has a class of the same name: `optimizers.schedules`, `layers`, ...
    """
    parts = cls.__module__.split(".")
    parts = parts[2:] if parts[:2] == ["keras", "src"] else parts[1:]
    for end in range(len(parts), 0, -1):
        namespace = tfk
        for part in parts[:end]:
            namespace = getattr(namespace, part, None)
            if namespace is None:
                break
        if namespace is not None and isinstance(getattr(namespace, cls.__name__, None), type):
            kind = ".".join(parts[:end])
            return f"keras.{kind}.{cls.__name__}", f"tf_keras.{kind}.{cls.__name__}"
    kind = parts[0] if parts else ""
    return f"keras.{kind}.{cls.__name__}".replace("..", "."), None


def _message(obj, where: str) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    base = _keras3_class(cls)
    keras_name, tfk_name = _public_name(base)
    what = keras_name if cls is base else f"{cls.__name__} (a subclass of {keras_name})"
    if tfk_name is None:
        fix = f"tf_keras has no {base.__name__}: build it from tf_keras (pip package tf-keras)"
    elif cls is base:
        fix = f"pass {tfk_name}(...) (pip package tf-keras) instead"
    else:
        fix = f"subclass {tfk_name} (pip package tf-keras) instead"
    return f"{where}: {what} is Keras 3; tfvae uses Keras 2: {fix}, {_FIX}"


def _walk(obj):
    """`obj` and what lists, tuples and dict values hold, depth first."""
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _walk(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _walk(item)
    else:
        yield obj


def check(obj, where: str) -> None:
    """Raises `Keras3Error` naming the tf_keras equivalent if `obj` (or any item of a
    list/tuple/dict in it) is a Keras 3 object or class; `where` names the argument."""
    for item in _walk(obj):
        if is_keras3(item):
            raise Keras3Error(_message(item, where))


def check_network(network, where: str) -> None:
    """`check` for an encoder/decoder: the network, its variables, and the attributes of
    each of its layers (a Keras 3 layer or initializer kept by a tf_keras layer).

    A Keras 3 layer called on a tf_keras functional input is inlined as untracked ops
    (tf_keras warns "Variables were used in a Lambda layer's call"); it cannot be seen here.
    """
    check(network, where)
    for module in [network, *getattr(network, "submodules", ())]:
        for name, value in vars(module).items():
            check(value, f"{where} ({type(module).__name__}.{name})")
    for variable in getattr(network, "variables", ()):
        if is_keras3(variable):
            raise Keras3Error(
                f"{where}: variable {variable.name!r} belongs to a Keras 3 layer; tfvae uses "
                f"Keras 2: build the network from tf_keras.layers (pip package tf-keras), {_FIX}"
            )


def _same(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and _same_config(a, b)
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        return b is not None and a is not None and np.float32(a) == np.float32(b)
    return a == b


def _same_config(keras3: dict, converted: dict) -> bool:
    """Every key of the Keras 3 config has the same value in the tf_keras one."""
    return all(
        k == "name" or (k in converted and _same(v, converted[k])) for k, v in keras3.items()
    )


def _schedule(serialized: dict, where: str):
    """A tf_keras learning-rate schedule from a Keras 3 one's serialization, if exact."""
    name, config = serialized.get("class_name"), serialized.get("config", {})
    cls = getattr(tfk.optimizers.schedules, str(name), None)
    if not isinstance(cls, type) or any(isinstance(v, dict) for v in config.values()):
        raise Keras3Error(
            f"{where}: the Keras 3 learning-rate schedule {name} has no exact tf_keras twin; "
            f"pass a tf_keras.optimizers.schedules object (pip package tf-keras), {_FIX}"
        )
    schedule = cls.from_config(dict(config))
    if not _same_config(config, schedule.get_config()):
        raise Keras3Error(
            f"{where}: the Keras 3 learning-rate schedule {name} does not translate exactly; "
            f"pass tf_keras.optimizers.schedules.{name}(...) (pip package tf-keras), {_FIX}"
        )
    return schedule


def as_tf_keras_optimizer(optimizer, where: str = "compile(optimizer=...)"):
    """`optimizer` itself, or a Keras 3 optimizer rebuilt exactly as its tf_keras twin.

    Converted: a fresh (never stepped) instance of a built-in Keras 3 class that tf_keras
    also has (Adam, AdamW, SGD, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Ftrl, Lion,
    Adafactor), with a constant learning rate or a built-in schedule, when every key of
    its config reads back the same from the tf_keras optimizer. Everything else from
    Keras 3 (subclasses, optimizers that have stepped, `loss_scale_factor`,
    `gradient_accumulation_steps`, classes tf_keras lacks) raises `Keras3Error`.
    """
    if not is_keras3(optimizer):
        return optimizer
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    keras_name, tfk_name = _public_name(_keras3_class(cls))
    refuse = Keras3Error(_message(optimizer, where))
    if (
        isinstance(optimizer, type)
        or tfk_name is None
        or keras_name != f"keras.optimizers.{cls.__name__}"
        or _keras3_class(cls) is not cls
    ):
        raise refuse
    iterations = getattr(optimizer, "iterations", None)
    if iterations is not None and int(np.asarray(iterations)) != 0:
        raise Keras3Error(
            f"{where}: {keras_name} has stepped ({int(np.asarray(iterations))} iterations); its "
            f"state cannot move to Keras 2; pass a fresh {tfk_name}(...) (pip package "
            f"tf-keras), {_FIX}"
        )
    config = dict(optimizer.get_config())
    for key in _KERAS3_ONLY_OPTIMIZER_KEYS:
        if config.pop(key, None) is not None:
            raise Keras3Error(
                f"{where}: {keras_name}({key}=...) has no tf_keras equivalent; "
                f"pass {tfk_name}(...) (pip package tf-keras) without it, {_FIX}"
            )
    if isinstance(config.get("learning_rate"), dict):
        config["learning_rate"] = _schedule(config["learning_rate"], where)
    try:  # from_config, not optimizers.get: `get` may pick tf_keras' legacy optimizers
        converted = getattr(tfk.optimizers, cls.__name__).from_config(dict(config))
    except (TypeError, ValueError) as e:
        raise refuse from e
    converted_config = converted.get_config()
    if isinstance(config.get("learning_rate"), tfk.optimizers.schedules.LearningRateSchedule):
        config.pop("learning_rate")
        converted_config.pop("learning_rate")
    if type(converted).__name__ != cls.__name__ or not _same_config(config, converted_config):
        raise refuse
    logger.info("%s: %s converted to %s (same configuration)", where, keras_name, tfk_name)
    return converted
