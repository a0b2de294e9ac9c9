"""Training pipeline: `train_and_evaluate(model_config, train_config, data, workdir)`.

Builds the model from its config, fits it with Keras, evaluates the test ELBO and an
importance-weighted log p(x), and saves config + weights + metrics under `workdir`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Optional

import numpy as np
import tf_keras as tfk

from tfvae.config import VAEConfig, _is_int
from tfvae.data import Data, make_dataset
from tfvae.model import VAE
from tfvae.objectives import bits_per_dim
from tfvae.saving import save_model

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "KLWarmup", "train_and_evaluate", "evaluate_model"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: epochs, batch size, optimizer, KL warm-up, evaluation.

    Args:
      kl_warmup_epochs: beta rises linearly from 0 to `VAEConfig.kl_weight` over this many
        epochs (0: no warm-up).
      dynamic_binarization: redraw binary x from grey levels every epoch.
      clipnorm: optional global gradient-norm clip.
      eval_samples: K of the importance-weighted log p(x) estimate at evaluation.
      jit_compile: compile the training step with XLA.
      steps_per_execution: train steps run per call into the compiled graph. 64 amortises
        Keras's per-call Python and dispatch over many steps (about 20% less CPU per epoch
        for the MNIST MLP, see BENCHMARKS.md); batch callbacks then fire every 64 steps.
    """

    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 1e-3
    kl_warmup_epochs: int = 0
    dynamic_binarization: bool = False
    clipnorm: Optional[float] = None
    eval_samples: int = 100
    jit_compile: bool = True
    steps_per_execution: int = 64
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_samples", "steps_per_execution"):
            value = getattr(self, name)
            minimum = 0 if name == "epochs" else 1
            if not _is_int(value) or value < minimum:
                raise ValueError(
                    f"TrainConfig.{name}: must be an integer >= {minimum}, got {value!r}"
                )
        if not _is_int(self.kl_warmup_epochs) or self.kl_warmup_epochs < 0:
            raise ValueError(
                f"TrainConfig.kl_warmup_epochs: must be an integer >= 0, "
                f"got {self.kl_warmup_epochs!r}"
            )
        if not (
            isinstance(self.learning_rate, (int, float))
            and math.isfinite(self.learning_rate)
            and self.learning_rate > 0
        ):
            raise ValueError(
                f"TrainConfig.learning_rate: must be a finite number > 0, "
                f"got {self.learning_rate!r}"
            )
        if self.clipnorm is not None and not (self.clipnorm > 0):
            raise ValueError(f"TrainConfig.clipnorm: must be > 0 or None, got {self.clipnorm!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class KLWarmup(tfk.callbacks.Callback):
    """Raises beta linearly from 0 to `target` over `epochs` epochs (Bowman et al. 2016)."""

    def __init__(self, epochs: int, target: float = 1.0):
        super().__init__()
        self.epochs = int(epochs)
        self.target = float(target)

    def on_epoch_begin(self, epoch, logs=None):
        fraction = 1.0 if self.epochs <= 0 else min(1.0, epoch / self.epochs)
        self.model.kl_weight.assign(self.target * fraction)


def evaluate_model(
    model: VAE, x: np.ndarray, batch_size: int = 100, num_samples: int = 100
) -> dict:
    """Test metrics in nats per example: ELBO, reconstruction, KL, IWAE log p(x), bits/dim."""
    logs = model.evaluate(x, batch_size=batch_size, verbose=0, return_dict=True)
    log_px = model.log_likelihood(x, num_samples=num_samples, batch_size=batch_size)
    nll = float(-np.mean(log_px))
    return {
        "elbo": float(logs["elbo"]),
        "reconstruction": float(logs["reconstruction"]),
        "kl": float(logs["kl"]),
        "log_likelihood": -nll,
        "log_likelihood_samples": int(num_samples),
        "nll_bits_per_dim": float(bits_per_dim(nll, model.config.input_dim)),
        "num_examples": int(len(x)),
    }


def train_and_evaluate(
    model_config: VAEConfig,
    train_config: TrainConfig,
    data: Data,
    workdir: Optional[str] = None,
    verbose: int = 2,
    overwrite: bool = False,
):
    """Fits a VAE on `data.x_train`, evaluates on `data.x_test`, saves under `workdir/model`.

    Returns:
      `(model, history_dict, test_metrics_dict)`.
    """
    if model_config.input_dim != data.input_dim:
        raise ValueError(
            f"VAEConfig.input_dim is {model_config.input_dim} but the data has "
            f"{data.input_dim} features"
        )
    if workdir is not None and os.path.exists(os.path.join(workdir, "model")) and not overwrite:
        raise FileExistsError(
            f"{os.path.join(workdir, 'model')!r} already exists; choose another"
            f" workdir or pass overwrite=True"
        )
    model = VAE(model_config)
    optimizer = tfk.optimizers.Adam(train_config.learning_rate, clipnorm=train_config.clipnorm)
    model.compile(
        optimizer,
        jit_compile=train_config.jit_compile,
        steps_per_execution=train_config.steps_per_execution,
    )
    train_ds = make_dataset(
        data.x_train,
        train_config.batch_size,
        shuffle=True,
        seed=train_config.seed,
        dynamic_binarization=train_config.dynamic_binarization,
    )
    callbacks = [tfk.callbacks.TerminateOnNaN()]
    if train_config.kl_warmup_epochs:
        callbacks.append(KLWarmup(train_config.kl_warmup_epochs, model_config.kl_weight))
    history = model.fit(train_ds, epochs=train_config.epochs, verbose=verbose, callbacks=callbacks)
    model.kl_weight.assign(model_config.kl_weight)
    metrics = evaluate_model(model, data.x_test, train_config.batch_size, train_config.eval_samples)
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        save_model(model, os.path.join(workdir, "model"), overwrite=overwrite)
        with open(os.path.join(workdir, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(
                {
                    "test": metrics,
                    "history": history.history,
                    "train_config": train_config.to_dict(),
                },
                f,
                indent=2,
            )
    return model, history.history, metrics
