"""tfvae: variational autoencoders whose encoder and decoder are distributions (TF + TFP).

`model(x)` returns p(x|z), a `tfd.Distribution`: `.mean()` is x-hat, `.sample()` draws x.

The public names below load on first use (PEP 562), so `import tfvae` and the `tfvae`
command's `--help` do not import TensorFlow; `from tfvae import VAE` works as usual.
"""

import importlib
import sys
import types

# public name -> the module that defines it
_PUBLIC = {
    "VAEConfig": "tfvae.config",
    "VAE": "tfvae.model",
    "TrainConfig": "tfvae.config",
    "KLWarmup": "tfvae.train",
    "StopOnNonFiniteLoss": "tfvae.callbacks",
    "NonFiniteLossError": "tfvae.callbacks",
    "train_and_evaluate": "tfvae.train",
    "evaluate_model": "tfvae.train",
    "save_model": "tfvae.saving",
    "load_model": "tfvae.saving",
    "Data": "tfvae.data",
    "load_dataset": "tfvae.data",
    "make_dataset": "tfvae.input_pipeline",
    "DiagonalGaussian": "tfvae.heads",
    "IsotropicGaussian": "tfvae.heads",
    "FixedVarianceGaussian": "tfvae.heads",
    "export": "tfvae.export",
    "load_exported": "tfvae.export",
}

__all__ = list(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _PUBLIC:
        try:  # a submodule, as `import tfvae; tfvae.serving` found it when imports were eager
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


class _Package(types.ModuleType):
    """Keeps `tfvae.export` the function: importing the submodule `tfvae.export` would
    otherwise rebind the package attribute of the same name to the module."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and value.__name__ == _PUBLIC.get(name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
