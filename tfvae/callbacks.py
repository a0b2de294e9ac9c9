"""Training callbacks that guard a run: stop on a non-finite loss and say where and why.

Keras' `TerminateOnNaN` stops quietly (fit returns as if training had finished, with NaN
weights); a VAE run that diverges should instead fail loudly, naming the epoch, the batch
and the term of the loss that went non-finite, so the user knows what to change.
"""

from __future__ import annotations

import math
from typing import Optional

import tf_keras as tfk

__all__ = ["NonFiniteLossError", "StopOnNonFiniteLoss"]

# The terms of the ELBO that the model logs, in the order they are checked.
TERMS = ("reconstruction", "kl")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; `epoch` and `batch` are 1-based."""

    def __init__(self, message: str, epoch: int, batch: int, terms: tuple, logs: dict):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.terms = terms
        self.logs = logs


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number (e.g. a string log): nothing to judge


class StopOnNonFiniteLoss(tfk.callbacks.Callback):
    """Stops training at the first batch whose loss or ELBO term is NaN/inf, and raises.

    The batch logs of `VAE` are running means over the epoch, so the first batch at which a
    mean becomes non-finite is the batch that produced the non-finite value. The error
    names the epoch and batch (1-based), the offending terms (`reconstruction` is
    log p(x|z), `kl` is KL(q(z|x) || p(z))) and likely causes. Checkpoints written at the
    end of earlier epochs are untouched, so a fixed run can resume from the last good one.

    Args:
      raise_error: raise `NonFiniteLossError` (default); if False, stop training and keep
        the error in `self.error` (what `TerminateOnNaN` does, but with the diagnosis).
    """

    def __init__(self, raise_error: bool = True):
        super().__init__()
        self.raise_error = raise_error
        self.error: Optional[NonFiniteLossError] = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad_terms = tuple(t for t in TERMS if t in logs and not _finite(logs[t]))
        loss_bad = "loss" in logs and not _finite(logs["loss"])
        if not bad_terms and not loss_bad:
            return
        epoch, step = self._epoch + 1, int(batch) + 1
        values = ", ".join(f"{k}={float(v):g}" for k, v in logs.items() if _is_number(v))
        if bad_terms:
            which = " and ".join(_describe_term(t) for t in bad_terms)
        else:
            which = "the loss (its terms are finite: an added layer loss, or overflow)"
        message = (
            f"training diverged at epoch {epoch}, batch {step}: {which} became non-finite "
            f"({values}). Training was stopped; checkpoints of earlier epochs are intact. "
            f"Check the inputs for NaN/inf (tf.data pipelines are not scanned), lower "
            f"TrainConfig.learning_rate (tfvae train --learning-rate), set "
            f"TrainConfig.clipnorm (--clipnorm), or raise VAEConfig.min_log_var "
            f"(--min-log-var) for a Gaussian decoder."
        )
        self.error = NonFiniteLossError(message, epoch, step, bad_terms or ("loss",), dict(logs))
        self.model.stop_training = True
        if self.raise_error:
            raise self.error


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _describe_term(term: str) -> str:
    return {
        "reconstruction": "the reconstruction term log p(x|z)",
        "kl": "the kl term KL(q(z|x) || p(z))",
    }[term]
