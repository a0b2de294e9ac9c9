"""tf_keras callbacks, redone where Keras' own mislead a VAE run.

- `StopOnNonFiniteLoss` for `TerminateOnNaN`, which stops quietly (fit returns as if
  training had finished, with NaN weights): a diverged run fails loudly, naming the epoch,
  the batch and the term of the loss that went non-finite.
- `HistoryCSV` for `CSVLogger`, which numbers epochs from 0 while the console counts from 1,
  adds `val_*` columns that stay empty, and appends to a file a crash may have cut mid-row.
- `EpochLine` for the one-line-per-epoch progress log (`verbose=2`), which prints negative
  values such as the ELBO in scientific notation.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from typing import Optional

import tf_keras as tfk

from tfvae.base import atomic
from tfvae.engine import distribute
from tfvae.engine.last_finite import LastFiniteState

__all__ = ["NonFiniteLossError", "StopOnNonFiniteLoss", "HistoryCSV", "EpochLine"]

# The terms of the ELBO that the model logs, in the order they are checked.
TERMS = ("reconstruction", "kl")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; `epoch` and `batch` are 1-based, and
    `restored_to` is the (epoch, batch) before which the model's state was put back."""

    def __init__(
        self,
        message: str,
        epoch: int,
        batch: int,
        terms: tuple,
        logs: dict,
        restored_to: Optional[tuple] = None,
    ):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.terms = terms
        self.logs = logs
        # (epoch, batch), 1-based: the model holds the state it had before that batch (None:
        # not restored).
        self.restored_to = restored_to


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number (e.g. a string log): nothing to judge


class StopOnNonFiniteLoss(tfk.callbacks.Callback):
    """Stops training at the first batch whose loss or ELBO term is NaN/inf, puts back the
    last finite weights and optimizer state, and raises.

    The batch logs of `VAE` are running means over the epoch, so the first batch at which a
    mean becomes non-finite is the batch that produced the non-finite value (at several
    steps per call, the call that did). The error names the epoch and batch (1-based), the
    offending terms (`reconstruction` is log p(x|z), `kl` is KL(q(z|x) || p(z))), likely
    causes, and the batch whose starting state the model was given back
    (`tfvae.engine.last_finite`: the start of the call that diverged at 128 steps per call;
    at fewer, of a call of the same epoch up to about 128 steps earlier), so the model can
    be saved, exported or trained on. Checkpoints written at the end of earlier epochs
    are untouched, so a fixed run can resume from the last good one.

    Args:
      raise_error: raise `NonFiniteLossError` (default); if False, stop training and keep
        the error in `self.error` (what `TerminateOnNaN` does, but with the diagnosis).
    """

    def __init__(self, raise_error: bool = True):
        super().__init__()
        self.raise_error = raise_error
        self.error: Optional[NonFiniteLossError] = None
        self._epoch = 0
        self._call_begins = 0
        self._last_finite = LastFiniteState()

    def on_train_begin(self, logs=None):
        self._last_finite.reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self._call_begins = int(batch)
        if self._last_finite.due(batch):
            self._last_finite.keep(self.model, self._epoch, batch)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad_terms = tuple(t for t in TERMS if t in logs and not _finite(logs[t]))
        loss_bad = "loss" in logs and not _finite(logs["loss"])
        if not bad_terms and not loss_bad:
            self._last_finite.ran(int(batch) + 1 - self._call_begins)
            return
        epoch, step = self._epoch + 1, int(batch) + 1
        values = ", ".join(f"{k}={float(v):g}" for k, v in logs.items() if _is_number(v))
        if bad_terms:
            which = " and ".join(_describe_term(t) for t in bad_terms)
        else:
            which = "the loss (its terms are finite: an added layer loss, or overflow)"
        within = ""
        if step - 1 > self._call_begins:
            within = f" in one of batches {self._call_begins + 1}-{step}, run in one call"
        restored_to = self._restore()
        message = (
            f"training diverged at epoch {epoch}, batch {step}: {which} became non-finite"
            f"{within} ({values}). {_restored_sentence(restored_to)} Check the "
            f"inputs for NaN/inf (tf.data pipelines are not scanned), lower "
            f"TrainConfig.learning_rate (tfvae train --learning-rate), set "
            f"TrainConfig.clipnorm (--clipnorm), or raise VAEConfig.min_log_var "
            f"(--min-log-var) for a Gaussian decoder."
        )
        self.error = NonFiniteLossError(
            message, epoch, step, bad_terms or ("loss",), dict(logs), restored_to
        )
        self.model.stop_training = True
        if self.raise_error:
            raise self.error

    def _restore(self) -> Optional[tuple]:
        """Puts the last finite state back into the model: (epoch, batch), 1-based, before
        which it was kept, or None if there was none to put back."""
        if not self._last_finite.restore(self.model):
            return None
        epoch, batch = self._last_finite.at
        return epoch + 1, batch + 1


def _restored_sentence(restored_to: Optional[tuple]) -> str:
    """What the callback did with the model's state, in one sentence."""
    if restored_to is None:
        return (
            "Training was stopped; the weights are those the diverged call left (no finite "
            "state was kept before it); checkpoints of earlier epochs are intact."
        )
    epoch, batch = restored_to
    when = (
        f"at the start of epoch {epoch}" if batch == 1 else f"before batch {batch} of epoch {epoch}"
    )
    return (
        f"Training was stopped and the weights and optimizer state restored to those {when} "
        f"(the last finite ones), so the model can be saved, exported or trained on with "
        f"clean data; checkpoints of earlier epochs are intact."
    )


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


def _chief(model) -> bool:
    """Whether this process writes the run's files (always, outside multi-worker training)."""
    return distribute.is_chief(model.distribute_strategy)


class HistoryCSV(tfk.callbacks.Callback):
    """One CSV row per epoch, `epoch` numbered from 1 as the console counts.

    Only columns that have values appear. The file is rewritten whole at the end of every
    epoch (`tfvae.base.atomic`), so it is never cut mid-row. `train_and_evaluate` rebuilds it
    from the checkpointed history when a run resumes and when it ends (`rewrite`), so a row
    lost to a kill, or a file cut short, is restored; used alone, rows already in the file
    are kept, so a resumed `fit` continues them (rows of epochs trained again are replaced).
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = os.fspath(path)
        self.rows: list = []
        self._rewritten = False

    def rewrite(self, history: dict, write: bool = True) -> None:
        """Makes the rows those of `history` ({name: one value per epoch}, e.g. the
        checkpointed history of a run) and, if `write`, rewrites the file from them (it is
        removed when `history` has no epoch)."""
        epochs = max((len(v) for v in history.values()), default=0)
        self.rows = [
            {"epoch": e + 1, **{k: float(v[e]) for k, v in history.items() if e < len(v)}}
            for e in range(epochs)
        ]
        self._rewritten = True
        if not write:
            return
        if self.rows:
            atomic.write_text(self.path, _csv_text(self.rows))
        elif os.path.isfile(self.path):
            os.remove(self.path)

    def on_train_begin(self, logs=None):
        if self._rewritten:  # rows already set from the checkpointed history
            return
        self.rows = []
        if os.path.isfile(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [
                    {k: v for k, v in row.items() if v not in ("", None)}
                    for row in csv.DictReader(f)
                ]

    def on_epoch_begin(self, epoch, logs=None):
        self.rows = [r for r in self.rows if _epoch_number(r) <= int(epoch)]

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": int(epoch) + 1}
        row.update({k: float(v) for k, v in (logs or {}).items() if _is_number(v)})
        self.rows.append(row)
        if _chief(self.model):
            atomic.write_text(self.path, _csv_text(self.rows))


def _epoch_number(row: dict) -> int:
    try:
        return int(row.get("epoch", 0))
    except ValueError:
        return 0


def _csv_text(rows: list) -> str:
    """`rows` as CSV: `epoch` first, then every other key any row has, sorted."""
    columns = sorted({k for row in rows for k in row} - {"epoch"})
    out = io.StringIO()
    writer = csv.DictWriter(out, ["epoch", *columns], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


class EpochLine(tfk.callbacks.Callback):
    """Prints one line per epoch: `Epoch 3/10 - 2s - loss: 24.4821 - elbo: -24.4821 - ...`.

    Values print in fixed point (scientific only below 1e-3 in magnitude). Pass it to `fit`
    with `verbose=0` in place of Keras' `verbose=2` log.
    """

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if not _chief(self.model):
            return
        seconds = time.perf_counter() - self._start
        parts = [f"Epoch {int(epoch) + 1}/{self.params.get('epochs', '?')}", f"{seconds:.0f}s"]
        parts += [f"{k}: {_fixed(v)}" for k, v in (logs or {}).items() if _is_number(v)]
        print(" - ".join(parts), file=self.stream or sys.stdout, flush=True)


def _fixed(value) -> str:
    value = float(value)
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.4e}"
