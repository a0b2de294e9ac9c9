"""`Engine`: the tf_keras `Model` a self-supervised model builds on, made fast and safe.

It owns Keras' entry points: `compile`'s defaults (XLA, `STEPS_PER_EXECUTION` steps per
call run as fused groups: `tfvae.engine.fused_steps`), the `make_*_function` overrides,
`fit`/`evaluate`/`predict` on x alone (the target is the input) and the `*_on_batch` calls
(`tfvae.engine.executions`). The model supplies its steps (`train_step`, ...) and may
override five hooks: `_checked_data` (its input checks), `_restart_draws` (each
evaluate/predict call draws the same noise), `_variables_built`, `_fused_step_results` and
`_own_loss` (see `Engine`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae.base.checks import check_integer
from tfvae.config import FUSED_STEPS, MAX_FUSED_STEPS, STEPS_PER_EXECUTION
from tfvae.engine import executions, jit_choice, keras3, keras_internals
from tfvae.engine.callbacks import StopOnNonFiniteLoss
from tfvae.engine.fused_steps import can_fuse, fused_train_function, is_fused, plain_batches

__all__ = ["Engine"]

# Largest numpy array `evaluate`/`predict` batch themselves (`Engine._array_batches`).
_DIRECT_ARRAY_BYTES = 2**30


class Engine(tfk.Model):
    """A `tf_keras.Model` whose `fit`, `evaluate` and `predict` take x alone, fast by default.

    Subclasses write Keras' steps and may override `_checked_data`, `_restart_draws`,
    `_variables_built`, `_fused_step_results` and `_own_loss`.
    """

    # What `compile(loss=...)` is refused with: the model computes its own loss.
    _own_loss = "this model computes its own loss"
    # What `compile(metrics=...)` is refused with: Keras would compare outputs with targets.
    _own_metrics = (
        "not taken: the VAE logs its own metrics (loss, elbo, reconstruction, kl); compute "
        "others from its outputs, e.g. from model.predict(x) or model.elbo(x)"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fused_steps = FUSED_STEPS
        # Whether compile chose the steps per execution (then data that may end mid-call
        # runs one step per call: `tfvae.engine.executions`) rather than the caller.
        self._default_steps_per_execution = True

    # ------------------------------------------------------------------ the model's hooks
    def _checked_data(self, x, name: str):
        """`x` (fit, evaluate or predict data, named `name` in messages) checked; as is here."""
        return x

    def _restart_draws(self) -> None:
        """Called as evaluate and predict begin, so that every call draws the same noise."""

    def _variables_built(self) -> bool:
        """Whether every variable exists (layers passed in unbuilt make theirs when traced)."""
        return all(layer.built for layer in self.layers)

    def _fused_step_results(self):
        """A function reading what a train step returns from the model's state after it
        (`fused_train_function`'s `step_results`), or None: the fused loop carries them."""
        return None

    # ------------------------------------------------------------------ compile
    def compile(
        self, optimizer=None, fused_steps: int = FUSED_STEPS, steps_per_execution=None, **kwargs
    ):
        """Keras compile; the loss is the model's own, so only the optimizer is needed.

        Defaults: Adam(1e-3), `jit_compile=True` (XLA, which fuses the whole step) where
        every layer runs well under XLA and replicas do not share a CPU (else False, said in
        one log line: `tfvae.engine.jit_choice`; `jit_compile=` given is honoured) and
        `STEPS_PER_EXECUTION` (128) steps per call into the compiled graph, run 32 per XLA
        program (`fused_steps`): the fast path for `fit` on arrays and on `tf.data`
        datasets, with no other arguments. Batch callbacks (`on_train_batch_begin/end`,
        and the test and predict ones) then fire once per call (begin with its first batch
        index, end with its last), the progress bar moves 128 steps at a time, and a
        non-finite loss stops `fit` at the end of its call; `steps_per_execution=1` gives
        them every step, at Keras' one-program-per-step speed. Data that may end inside a
        call (a dataset of unknown size, finite data cut by `steps_per_epoch` or `steps`,
        generators) and `train_on_batch` and the other `*_on_batch` calls run one step per
        call, which Keras needs there (`tfvae.engine.executions`).
        A Keras 3 optimizer (`tf.keras.optimizers.Adam()`) is rebuilt as its tf_keras twin
        where that is exact (`tfvae.engine.keras3`); other Keras 3 objects are refused by name.

        Args:
          fused_steps: with XLA and `steps_per_execution > 1`, `fit` runs this many steps
            (at most `steps_per_execution`) per compiled program (`tfvae.engine.fused_steps`):
            the same steps, fewer launches. 1 keeps Keras' one program per step.
          steps_per_execution: Keras' argument; None (the default) for
            `STEPS_PER_EXECUTION`. Given explicitly, Keras' rules apply to every call
            (except the `*_on_batch` ones, which always run their one step).
        """
        if kwargs.get("loss") is not None:
            raise ValueError(f"{self._own_loss}; do not pass loss=")
        kwargs.pop("loss", None)
        for key in ("metrics", "weighted_metrics"):
            keras3.check(kwargs.get(key), f"compile({key}=...)")
            if kwargs.pop(key, None):
                raise ValueError(f"compile({key}=...): {self._own_metrics}")
        optimizer = keras3.as_tf_keras_optimizer(optimizer)
        if kwargs.get("jit_compile") is None:
            kwargs["jit_compile"] = jit_choice.default_jit_compile(self)
        self._fused_steps = check_integer(fused_steps, "fused_steps", maximum=MAX_FUSED_STEPS)
        self._default_steps_per_execution = steps_per_execution is None
        if steps_per_execution is None:
            steps_per_execution = STEPS_PER_EXECUTION
        super().compile(
            optimizer=optimizer or tfk.optimizers.Adam(1e-3),
            steps_per_execution=steps_per_execution,
            **kwargs,
        )

    def _ensure_compiled(self):
        if not keras_internals.is_compiled(self):
            self.compile()

    # ------------------------------------------------------------------ Keras' functions
    def make_train_function(self, force=False):
        """Keras' hook, which `fit` and `train_on_batch` call without the data: the current
        train function (`fit` makes it for its data first: `_train_function_for`) unless
        forced, stale, or fused where the settings no longer allow it; else a new one."""
        current = self.train_function
        if (
            current is not None
            and not force
            and not (is_fused(current) and not can_fuse(self, self._fused_steps))
            and not executions.stale(current, self)
        ):
            return current
        return self._train_function_for(data_may_fuse=True, force=True)

    def _train_function_for(self, data_may_fuse: bool, force: bool = False):
        """Keras' train function, or several steps per XLA program where the settings allow
        it and the data may fuse (`tfvae.engine.fused_steps`)."""
        fuse = data_may_fuse and can_fuse(self, self._fused_steps)
        current = self.train_function
        if (
            current is not None
            and not force
            and fuse == is_fused(current)
            and not executions.stale(current, self)
        ):
            return current
        if not fuse:
            return executions.mark_built(super().make_train_function(force=True), self)
        # Networks passed in unbuilt make their variables in the first trace: then the
        # optimizer and the outputs' structure wait for it (one trace more).
        built = self._build_optimizer()
        results = self._fused_step_results() if built else None
        keras_internals.set_train_function(
            self, fused_train_function(self, self._fused_steps, step_results=results)
        )
        return self.train_function

    def _build_optimizer(self) -> bool:
        """Makes the optimizer's slots now where every variable exists (returns whether they
        do), not inside the first trace, which would then run twice; `StopOnNonFiniteLoss`
        then keeps them from the first call on (`tfvae.engine.last_finite`)."""
        built = self._variables_built()
        if built and isinstance(self.optimizer, tfk.optimizers.Optimizer):
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)  # a no-op once built
        return built

    def make_test_function(self, force=False):
        """Keras' test function, retraced if it was traced for fewer steps per call."""
        return self._current_or_new(self.test_function, super().make_test_function, force)

    def make_predict_function(self, force=False):
        """Keras' predict function, retraced if it was traced for fewer steps per call."""
        return self._current_or_new(self.predict_function, super().make_predict_function, force)

    def _current_or_new(self, current, make, force):
        """`current` (a Keras-made function) unless forced or stale (`executions.stale`); else
        a new one from `make`, marked with the steps per call it was traced for."""
        if current is not None and not force and not executions.stale(current, self):
            return current
        return executions.mark_built(make(force=True), self)

    def _one_step_per_call_unless(self, *never_runs_out: bool):
        """One step per execution for this call if compile chose the steps per execution
        and some of its data may end mid-call (`tfvae.engine.executions`)."""
        return executions.one_step_per_execution(
            self, self._default_steps_per_execution and not all(never_runs_out)
        )

    # ------------------------------------------------------------------ fit, evaluate, predict
    def fit(self, x=None, y=None, *args, validation_data=None, stop_on_non_finite=True, **kwargs):
        """Keras fit on x alone (the target is the input; `y`, if given, is ignored).

        Training stops with `tfvae.engine.callbacks.NonFiniteLossError` (naming epoch, batch
        and term) at the first NaN/inf loss, instead of training on to NaN weights, and the
        model is given back the weights and optimizer state it had as the call that
        diverged began (at fewer steps per call, a call of the same epoch up to about 128
        steps earlier: `tfvae.engine.last_finite`), so it can be saved, exported or trained
        on; pass `stop_on_non_finite=False` for Keras' behaviour.
        """
        keras3.check(kwargs.get("callbacks"), "fit(callbacks=...)")
        if stop_on_non_finite:
            callbacks = list(kwargs.get("callbacks") or [])
            if not any(isinstance(c, StopOnNonFiniteLoss) for c in callbacks):
                kwargs["callbacks"] = [StopOnNonFiniteLoss(), *callbacks]
        x = self._checked_data(x, "x")
        if validation_data is not None:
            validation_data = self._checked_data(validation_data, "validation_data")
            if not isinstance(validation_data, (tuple, list, tf.data.Dataset)):
                validation_data = (validation_data,)  # a bare array: x alone, as for fit
        self._ensure_compiled()
        self._build_optimizer()
        ends = executions.never_runs_out_mid_execution(x, kwargs.get("steps_per_epoch"))
        validation_ends = validation_data is None or executions.never_runs_out_mid_execution(
            validation_data, kwargs.get("validation_steps")
        )
        with self._one_step_per_call_unless(ends, validation_ends):
            if can_fuse(self, self._fused_steps):  # no strategy, no coordinator: made here
                # Keras asks `make_train_function` without the data, so the train function
                # is made for it now. Fused groups need data that never ends inside one, in
                # plain tensors.
                with keras_internals.compiled_trainable_state(self):
                    self._train_function_for(data_may_fuse=ends and plain_batches(x))
            return super().fit(x, None, *args, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Keras evaluate on x alone; reproducible: the draws restart at every call."""
        keras3.check(kwargs.get("callbacks"), "evaluate(callbacks=...)")
        x = self._checked_data(x, "x")
        self._ensure_compiled()
        self._restart_draws()
        x, kwargs = self._array_batches(x, args, kwargs)
        ends = executions.never_runs_out_mid_execution(x, kwargs.get("steps"))
        with self._one_step_per_call_unless(ends):
            return super().evaluate(x, None, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """Keras predict; reproducible: the draws restart at every call."""
        keras3.check(kwargs.get("callbacks"), "predict(callbacks=...)")
        x = self._checked_data(x, "x")
        self._restart_draws()
        x, kwargs = self._array_batches(x, args, kwargs)
        ends = executions.never_runs_out_mid_execution(x, kwargs.get("steps"))
        with self._one_step_per_call_unless(ends):
            return super().predict(x, *args, **kwargs)

    def _array_batches(self, x, args, kwargs):
        """`(x, kwargs)` for Keras' evaluate/predict: a numpy `x` becomes the dataset of its
        batches in order (`batch_size`, Keras' default 32), the batches Keras' array adapter
        would make, without its set-up (about 50 ms a call on 10,000 rows). Left to Keras:
        positional options, `sample_weight`, `steps`, distribution strategies, arrays over
        `_DIRECT_ARRAY_BYTES`."""
        if (
            not isinstance(x, np.ndarray)
            or args
            or kwargs.get("_use_cached_eval_dataset")  # fit's validation: Keras' own cache
            or x.nbytes > _DIRECT_ARRAY_BYTES
            or kwargs.get("sample_weight") is not None
            or kwargs.get("steps") is not None
            or keras_internals.has_distribution_strategy(self)
            or tf.distribute.has_strategy()
        ):
            return x, kwargs
        kwargs = dict(kwargs)
        batch_size = kwargs.pop("batch_size", None)
        batch_size = 32 if batch_size is None else check_integer(batch_size, "batch_size")
        return tf.data.Dataset.from_tensor_slices(x).batch(batch_size), kwargs

    # One batch is one step: Keras would ask a many-step function for batches that the
    # one-batch iterator does not have.
    def train_on_batch(self, *args, **kwargs):
        with executions.one_step_per_execution(self):
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        with executions.one_step_per_execution(self):
            return super().test_on_batch(*args, **kwargs)

    def predict_on_batch(self, *args, **kwargs):
        with executions.one_step_per_execution(self):
            return super().predict_on_batch(*args, **kwargs)
