"""tfvae: variational autoencoders whose encoder and decoder are distributions (TF + TFP).

`model(x)` returns p(x|z), a `tfd.Distribution`: `.mean()` is x-hat, `.sample()` draws x.

The public names below load on first use (PEP 562), so `import tfvae` and the `tfvae`
command's `--help` do not import TensorFlow; `from tfvae import VAE` works as usual.
"""

import importlib
import importlib.abc
import os
import sys

# public name -> the module that defines it
_PUBLIC = {
    "VAEConfig": "tfvae.config",
    "VAE": "tfvae.model.vae",
    "TrainConfig": "tfvae.config",
    "KLWarmup": "tfvae.training.train",
    "StopOnNonFiniteLoss": "tfvae.engine.callbacks",
    "NonFiniteLossError": "tfvae.engine.callbacks",
    "train_and_evaluate": "tfvae.training.train",
    "evaluate_model": "tfvae.training.train",
    "save_model": "tfvae.model.saving",
    "load_model": "tfvae.model.loading",
    "Data": "tfvae.data.datasets",
    "load_dataset": "tfvae.data.datasets",
    "make_dataset": "tfvae.data.input_pipeline",
    "DiagonalGaussian": "tfvae.model.heads",
    "IsotropicGaussian": "tfvae.model.heads",
    "FixedVarianceGaussian": "tfvae.model.heads",
    "export": "tfvae.serving.export",
    "load_exported": "tfvae.serving.export",
}

__all__ = list(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    moved = MOVED.get(f"{__name__}.{name}")
    if moved and name not in _PUBLIC:  # an ImportError: `from tfvae import atomic` shows it
        raise ImportError(f"{__name__}.{name} moved to {moved}")
    if name not in _PUBLIC:
        try:  # a subpackage, as `import tfvae; tfvae.serving` finds it
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


# modules that moved into the package's folders (2026-12): old name -> new name
MOVED = {
    "tfvae.atomic": "tfvae.base.atomic",
    "tfvae.schema": "tfvae.base.schema",
    "tfvae.arrayfile": "tfvae.data.arrayfile",
    "tfvae.download": "tfvae.data.download",
    "tfvae.input_pipeline": "tfvae.data.input_pipeline",
    "tfvae.validation": "tfvae.data.validation",
    "tfvae.keras_internals": "tfvae.engine.keras_internals",
    "tfvae.executions": "tfvae.engine.executions",
    "tfvae.fused_steps": "tfvae.engine.fused_steps",
    "tfvae.keras3": "tfvae.engine.keras3",
    "tfvae.distribute": "tfvae.engine.distribute",
    "tfvae.callbacks": "tfvae.engine.callbacks",
    "tfvae.xla_cache": "tfvae.engine.xla_cache",
    "tfvae.objectives": "tfvae.model.objectives",
    "tfvae.multi_sample": "tfvae.model.multi_sample",
    "tfvae.heads": "tfvae.model.heads",
    "tfvae.networks": "tfvae.model.networks",
    "tfvae.output_bias": "tfvae.model.output_bias",
    "tfvae.saving": "tfvae.model.saving",
    "tfvae.train": "tfvae.training.train",
    "tfvae.checkpointing": "tfvae.training.checkpointing",
    "tfvae.tensorboard": "tfvae.training.tensorboard",
    "tfvae.rundir": "tfvae.training.rundir",
    "tfvae.runlock": "tfvae.training.runlock",
    "tfvae.export": "tfvae.serving.export",
    "tfvae.request_checks": "tfvae.serving.request_checks",
}


# modules whose name is a folder now: `tfvae.data.load_default` lives in tfvae.data.datasets
FOLDER_HOMES = {
    "tfvae.data": "tfvae.data.datasets",
    "tfvae.model": "tfvae.model.vae",
    "tfvae.serving": "tfvae.serving.client",
}


def moved_attribute(package: str, name: str) -> Exception:
    """The error for a missing `package.name`: one line naming its new module when the module
    that had the folder's name before defined it (an ImportError, which `from package import
    name` shows as it is; Python turns an AttributeError into "cannot import name")."""
    folder = os.path.dirname(sys.modules[package].__file__)
    if not name.startswith("_") and not os.path.exists(os.path.join(folder, name + ".py")):
        home = FOLDER_HOMES[package]
        if hasattr(importlib.import_module(home), name):
            return ImportError(f"{package}.{name} moved to {home}.{name}")
    return AttributeError(f"module {package!r} has no attribute {name!r}")


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """`import tfvae.atomic` (a module that moved) fails in one line naming where it went."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            raise ModuleNotFoundError(f"{fullname} moved to {MOVED[fullname]}", name=fullname)
        return None


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
