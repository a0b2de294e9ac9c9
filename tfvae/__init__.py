"""tfvae: variational autoencoders whose encoder and decoder are distributions (TF + TFP).

`model(x)` returns p(x|z), a `tfd.Distribution`: `.mean()` is x-hat, `.sample()` draws x.
"""

from tfvae.callbacks import NonFiniteLossError, StopOnNonFiniteLoss
from tfvae.config import TrainConfig, VAEConfig
from tfvae.data import Data, load_dataset
from tfvae.export import export, load_exported
from tfvae.heads import DiagonalGaussian, FixedVarianceGaussian, IsotropicGaussian
from tfvae.input_pipeline import make_dataset
from tfvae.model import VAE
from tfvae.saving import load_model, save_model
from tfvae.train import KLWarmup, evaluate_model, train_and_evaluate

__all__ = [
    "VAEConfig",
    "VAE",
    "TrainConfig",
    "KLWarmup",
    "StopOnNonFiniteLoss",
    "NonFiniteLossError",
    "train_and_evaluate",
    "evaluate_model",
    "save_model",
    "load_model",
    "Data",
    "load_dataset",
    "make_dataset",
    "DiagonalGaussian",
    "IsotropicGaussian",
    "FixedVarianceGaussian",
    "export",
    "load_exported",
]
__version__ = "0.1.0"
