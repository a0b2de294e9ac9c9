"""The last finite training state, kept in memory so that a diverged `fit` can return to it.

`StopOnNonFiniteLoss` sees a loss only at the end of each call into the train function
(every step at one step per call, every 128 at `compile`'s default), after the diverging
step has already written NaN into the weights and Adam's moments. So it keeps a copy of the
state (`LastFiniteState.keep`) as a call begins, at the first call of each epoch and then
whenever `KEEP_EVERY` steps have run since the last copy (every call at 128 steps per call),
and puts it back (`restore`) when the loss goes non-finite. The copy is read between calls,
outside the compiled steps, which it leaves exactly as they were.

The state is every variable a checkpoint of the model and its optimizer holds (weights, the
optimizer's step counter, moments and learning rate, beta), metrics aside: their running
means are the logs that showed the divergence.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae.config import STEPS_PER_EXECUTION

__all__ = ["KEEP_EVERY", "LastFiniteState", "state_variables"]

# Steps between two copies within an epoch: `compile`'s default steps per call, so every
# default call is kept, and at one step per call a copy (a read of every weight and optimizer
# slot: ~5 ms for a 784-500-20 MLP on CPU) costs 1/128 of one per step.
KEEP_EVERY = STEPS_PER_EXECUTION


def state_variables(model: tfk.Model) -> list:
    """The variables a `tf.train.Checkpoint(model=, optimizer=)` of `model` holds, each once,
    those of metrics aside."""
    root = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    seen, found, pending = {id(root)}, [], [root]
    while pending:
        for child in tf.train.TrackableView.children(pending.pop()).values():
            if id(child) in seen or isinstance(child, tfk.metrics.Metric):
                continue
            seen.add(id(child))
            if isinstance(child, tf.Variable):
                found.append(child)
            else:
                pending.append(child)
    return found


def _finite(value: np.ndarray) -> bool:
    return not np.issubdtype(value.dtype, np.inexact) or bool(np.isfinite(value).all())


class LastFiniteState:
    """A copy of a model's training state, taken as a call into its train function begins
    (`due`, `keep`), and put back after a non-finite loss (`restore`)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forgets the copy (a new `fit` begins: the caller may have changed the weights)."""
        self._variables: list = []
        self._values: list = []
        self.at: Optional[Tuple[int, int]] = None  # (epoch, batch), 0-based, of the copy
        self._steps_since = 0

    def due(self, batch: int) -> bool:
        """Whether a call beginning at `batch` (0-based, in its epoch) should be kept: the
        first of an epoch or of the fit, or `KEEP_EVERY` steps after the last copy."""
        return self.at is None or batch == 0 or self._steps_since >= KEEP_EVERY

    def ran(self, steps: int) -> None:
        """Counts `steps` run by a call that ended with a finite loss."""
        self._steps_since += int(steps)

    def keep(self, model: tfk.Model, epoch: int, batch: int) -> bool:
        """Copies `model`'s state as the call at (`epoch`, `batch`) begins; a state that is
        not finite (a last step with NaN gradients but a finite loss) is not kept, the
        previous copy stays. Returns whether it was kept."""
        variables = state_variables(model)
        values = [v.numpy() for v in variables]  # copies: later steps leave them as they are
        if not all(_finite(v) for v in values):
            return False
        self._variables, self._values = variables, values
        self.at, self._steps_since = (int(epoch), int(batch)), 0
        return True

    def restore(self, model: tfk.Model) -> bool:
        """Puts the kept state back into `model`; False (nothing changed) if none was kept or
        variables were made since (networks built by the diverging call)."""
        if self.at is None:
            return False
        kept = {id(v) for v in self._variables}
        if any(id(v) not in kept for v in state_variables(model)):
            return False
        for variable, value in zip(self._variables, self._values):
            variable.assign(value)
        return True
