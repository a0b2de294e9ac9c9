"""The VAE: a `tf_keras.Model` whose encoder and decoder return distributions.

`model(x)` returns p(x|z) for z ~ q(z|x): a `tfd.Distribution`, not an image. Its `.mean()`
is what tutorials call the reconstruction x-hat, `.sample()` draws an x, `.log_prob(x)` is
the likelihood term of the loss -log p(x|z) + beta * KL(q(z|x) || p(z)).
`fit`/`evaluate` log `elbo`, `reconstruction` (log p(x|z)) and `kl` in nats per example.
`VAEConfig.objective`/`num_samples` choose the multi-sample ELBO or the IWAE bound instead
(`tfvae.model.multi_sample`; with `iwae` they also log the bound, `iwae`).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.config import (
    FUSED_STEPS,
    MAX_BATCH_SIZE,
    MAX_FUSED_STEPS,
    MAX_SAMPLES,
    STEPS_PER_EXECUTION,
    VAEConfig,
)
from tfvae.data.validation import check_inputs, check_latents, check_positive_int, check_seed
from tfvae.engine import executions, keras3, keras_internals
from tfvae.engine.callbacks import StopOnNonFiniteLoss
from tfvae.engine.distribute import replica_average, replica_seed
from tfvae.engine.fused_steps import can_fuse, fused_train_function, is_fused, plain_batches
from tfvae.model import multi_sample, objectives, output_bias
from tfvae.model.networks import make_decoder, make_encoder
from tfvae.model.saving import KERAS_SUFFIX, save_model
from tfvae.serving.export import export

tfd = tfp.distributions

__all__ = ["VAE", "PREDICT_OUTPUTS"]

PREDICT_OUTPUTS = ("mean", "mode", "sample", "probs", "logits", "stddev")

# Independent sample streams, so training, evaluation and prediction draws never collide.
_TRAIN_STREAM, _EVAL_STREAM, _PREDICT_STREAM, _LIKELIHOOD_STREAM = range(4)


def as_seed(seed) -> tf.Tensor:
    """A stateless seed (`int32[2]`) from an int, a pair, or a seed tensor."""
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed) % (2**31 - 1), 0], tf.int32)
    return tf.cast(tf.reshape(seed, [2]), tf.int32)


class VAE(tfk.Model):
    """Variational autoencoder of Kingma & Welling (2013) built from a `VAEConfig`.

    Attributes:
      encoder: `tf_keras.Model`, x `[batch, input_dim]` -> q(z|x) (MultivariateNormalDiag).
      decoder: `tf_keras.Model`, z `[batch, latent_dim]` -> p(x|z) (Bernoulli or Gaussian).
      prior: p(z) = N(0, I), a `tfd.MultivariateNormalDiag`.
      kl_weight: a non-trainable variable holding beta (changed by `KLWarmup`).

    The loss is `config.objective` over `config.num_samples` draws per example: by default
    the paper's one-draw ELBO; K draws average the ELBO ("VAE k=K") or, with `iwae`, form
    the bound log (1/K) sum_k p(x, z_k) / q(z_k|x) (`tfvae.model.multi_sample`). Validation and
    `evaluate` use the same objective on their own draws.

    Sampling is stateless and seeded: training step `t` draws with seed
    `(4 * config.seed, t)` (evaluation and prediction use streams 4 * seed + 1, + 2), so the
    same seed on the same machine gives the same losses, and a run resumed from a checkpoint
    continues the same stream. The numbers a seed gives depend on where the draw runs
    (XLA and TensorFlow's CPU kernels use different bit generators), so `jit_compile` on
    and off train on different, equally valid noise.

    Example:
      >>> model = VAE(VAEConfig(input_dim=4, latent_dim=2, hidden_units=(8,)))
      >>> px = model(np.full((3, 4), 0.5, np.float32))   # p(x|z), z ~ q(z|x)
      >>> px.mean().shape.as_list(), px.log_prob(np.ones((3, 4), np.float32)).shape.as_list()
      ([3, 4], [3])
    """

    def __init__(
        self,
        config: Optional[VAEConfig] = None,
        encoder: Optional[tfk.Model] = None,
        decoder: Optional[tfk.Model] = None,
        name: str = "vae",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.config = config if config is not None else VAEConfig()
        if not isinstance(self.config, VAEConfig):
            raise TypeError(f"config must be a VAEConfig, got {type(self.config).__name__}")
        for part, network in (("encoder", encoder), ("decoder", decoder)):
            if network is not None:
                keras3.check_network(network, f"VAE({part}=...)")
        # Built-in networks start seeded by `config.seed` (`tfvae.model.networks`); the decoder's
        # weights are numbered after the encoder's.
        self.encoder = encoder if encoder is not None else make_encoder(self.config)
        self.decoder = (
            decoder
            if decoder is not None
            else make_decoder(self.config, first_weight=len(self.encoder.weights))
        )
        latent = self.config.latent_dim
        self.prior = tfd.MultivariateNormalDiag(
            loc=tf.zeros([latent]), scale_diag=tf.ones([latent]), name="prior"
        )
        # Under a tf.distribute strategy: beta is set from outside the replicas (callbacks),
        # the draw counter is advanced by every replica; keep the first replica's count
        # (replica_seed then makes each replica's draws distinct).
        self.kl_weight = tf.Variable(
            float(self.config.kl_weight),
            trainable=False,
            dtype=tf.float32,
            name="kl_weight",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self._draws = tf.Variable(
            0,
            trainable=False,
            dtype=tf.int64,
            name="draws",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self._fused_steps = FUSED_STEPS
        # Whether compile chose the steps per execution (then data that may end mid-call
        # runs one step per call: `tfvae.engine.executions`) rather than the caller.
        self._default_steps_per_execution = True
        # Whether the data of the running `fit` never runs out mid-execution, so its steps
        # may fuse (`executions.never_runs_out_mid_execution`). Keras calls
        # `make_train_function` without the data, so `fit` leaves its verdict here for the
        # length of the call.
        self._fit_data_may_fuse = True
        self._predict_output = "mean"
        self._predict_latent = "sample"
        # The one-draw ELBO keeps the paper's path (`_elbo_terms`); everything else is
        # `tfvae.model.multi_sample`'s.
        self._one_draw_elbo = (self.config.objective, self.config.num_samples) == ("elbo", 1)
        tracked = ("loss", "elbo", "reconstruction", "kl")
        if self.config.objective == "iwae":
            tracked += ("iwae",)
        self._trackers = {name: tfk.metrics.Mean(name=name) for name in tracked}
        self.built = True  # encoder and decoder are built: every weight exists already

    # ----------------------------------------------------------------- construction
    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(VAEConfig.from_dict(config["config"]), name=config.get("name", "vae"))

    def set_output_bias(self, x) -> dict:
        """Starts p(x|z) at the data's per-pixel marginal: sets the decoder's output biases
        from `x` (the training data: an array or a batched `tf.data.Dataset`), as Burda et
        al.'s code does (logit of the training mean for a Bernoulli decoder; mean and log
        variance for a Gaussian). Call it before `fit`; returns {layer name: bias}
        (`tfvae.model.output_bias`). `TrainConfig.output_bias_from_data` does it in training runs.
        """
        return output_bias.set_output_bias(self.decoder, self.config, x)

    # ------------------------------------------------------------------ distributions
    def encode(self, x, training=None) -> tfd.Distribution:
        """q(z|x): a MultivariateNormalDiag over `[batch, latent_dim]`."""
        x = check_inputs(x, self.config, "x")
        return self.encoder(x, training=training)

    def decode(self, z, training=None) -> tfd.Distribution:
        """p(x|z): the decoder distribution over `[batch, input_dim]` (parameters fixed by z)."""
        z = check_latents(z, self.config, "z")
        return self.decoder(z, training=training)

    def call(self, x, training=None, seed=None):
        """p(x|z) for one z ~ q(z|x) per example; `seed` (int or `int32[2]`) repeats draws."""
        x = check_inputs(x, self.config, "x")
        q = self.encoder(x, training=training)
        seed = self._next_seed(_PREDICT_STREAM) if seed is None else as_seed(check_seed(seed))
        z = q.sample(seed=seed)
        return self.decoder(z, training=training)

    def sample_prior(self, num_samples: int, seed=0) -> tfd.Distribution:
        """p(x|z) for `num_samples` draws z ~ p(z): `.sample()` gives new data, `.mean()` x-hat.

        At most `tfvae.config.MAX_SAMPLES` (100000) per call: draw more in several calls.
        """
        num_samples = check_positive_int(num_samples, "num_samples", maximum=MAX_SAMPLES)
        z = self.prior.sample(num_samples, seed=as_seed(check_seed(seed)))
        return self.decoder(z)

    def generate(self, num_samples: int, seed=0, output: str = "sample") -> np.ndarray:
        """New data as a numpy array: draws x ~ p(x|z), z ~ p(z) (or the `mean` per z); at
        most `tfvae.config.MAX_SAMPLES` (100000) examples per call."""
        if output not in PREDICT_OUTPUTS:
            raise ValueError(f"output must be one of {PREDICT_OUTPUTS}, got {output!r}")
        px = self.sample_prior(num_samples, seed)
        seed2 = as_seed(seed) + tf.constant([0, 1], tf.int32)
        return self._select(px, output, seed2).numpy()

    # ----------------------------------------------------------------- the objective
    def _next_seed(self, stream: int) -> tf.Tensor:
        count = self._draws.assign_add(1)
        return replica_seed(
            tf.stack(
                [tf.constant(self.config.seed * 4 + stream, tf.int32), tf.cast(count, tf.int32)]
            )
        )

    def elbo_terms(self, x, seed=0, training=None):
        """Per-example (log p(x|z), KL(q||p)), each `[batch]`, for one z ~ q(z|x).

        `seed` (an int or `int32[2]`) is stateless, as for `elbo`: the same seed draws the
        same z on every call.
        """
        x = check_inputs(x, self.config, "x")
        return self._elbo_terms(x, as_seed(check_seed(seed)), training)

    def _elbo_terms(self, x, seed, training=None):
        """`elbo_terms` without the checks: `x` a float tensor, `seed` an `int32[2]` tensor."""
        q = self.encoder(x, training=training)
        z = q.sample(seed=seed)
        px = self.decoder(z, training=training)
        reconstruction = px.log_prob(x)
        kl = objectives.kl_divergence(q, self.prior, self.config.kl_method, z)
        return reconstruction, kl

    def elbo(self, x, seed=0) -> tf.Tensor:
        """Per-example ELBO estimate (nats), `[batch]`: log p(x|z) - KL, one z per example."""
        reconstruction, kl = self.elbo_terms(x, seed)
        return reconstruction - kl

    def _update_metrics(self, loss, reconstruction, kl, iwae=None):
        # Per-example values: Keras sums each Mean's total and count over replicas.
        self._trackers["loss"].update_state(loss)
        self._trackers["elbo"].update_state(reconstruction - kl)
        self._trackers["reconstruction"].update_state(reconstruction)
        self._trackers["kl"].update_state(kl)
        if iwae is not None:
            self._trackers["iwae"].update_state(iwae)
        return self._step_results()

    def _step_results(self):
        """What `train_step` returns: the running means of `_trackers`."""
        return {name: t.result() for name, t in self._trackers.items()}

    @property
    def metrics(self):
        return list(self._trackers.values()) + list(super().metrics)

    def _loss(self, reconstruction, kl):
        """(loss to differentiate, per-example loss for the metric).

        The first is this replica's share of the GLOBAL-batch mean (see
        `tfvae.engine.distribute.replica_average`): the optimizer sums gradients over replicas, so
        N replicas take the same step as one device on the same global batch. Regularizers
        (`self.losses`) are added once per replica, hence scaled by 1/num_replicas.
        """
        return self._total_loss(-reconstruction + self.kl_weight * kl)

    def _total_loss(self, per_example):
        """`_loss` from the per-example loss of the objective (regularizers added here)."""
        loss = replica_average(per_example)
        if self.losses:
            regularization = tf.add_n(self.losses)
            loss += tf.nn.scale_regularization_loss(regularization)
            per_example += regularization
        return loss, per_example

    def train_step(self, data):
        x = _features(data)
        # Step t draws with seed (seed, t): reproducible, and resumes with the optimizer.
        # Replicas fold in their id (replica_seed): same step, different noise.
        seed = replica_seed(
            tf.stack(
                [
                    tf.constant(self.config.seed * 4 + _TRAIN_STREAM, tf.int32),
                    tf.cast(self.optimizer.iterations, tf.int32),
                ]
            )
        )
        if not self._one_draw_elbo:
            return self._train_step_over_draws(x, seed)
        with tf.GradientTape() as tape:
            reconstruction, kl = self._elbo_terms(x, seed, training=True)
            loss, per_example = self._loss(reconstruction, kl)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._update_metrics(per_example, reconstruction, kl)

    def _draw_terms(self, x, seed, training=None, stop_q_gradients=False):
        """`config.num_samples` draws per example for the objective (`multi_sample.draw`)."""
        kl_method = "monte_carlo" if self.config.objective == "iwae" else self.config.kl_method
        return multi_sample.draw(
            self.encoder,
            self.decoder,
            self.prior,
            x,
            seed,
            self.config.num_samples,
            kl_method,
            training=training,
            stop_q_gradients=stop_q_gradients,
        )

    def _train_step_over_draws(self, x, seed):
        """`train_step` for the multi-sample ELBO and IWAE (`tfvae.model.multi_sample`)."""
        grads, per_example, draws = self._gradients_over_draws(x, seed, training=True)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._update_metrics(
            per_example, **multi_sample.summaries(draws, self.config.objective)
        )

    def _gradients_over_draws(self, x, seed, training=None):
        """(gradients for `trainable_variables`, per-example loss, `Draws`) of the objective
        at the draws of `seed`; with `gradient_estimator="dreg"` the encoder's are Tucker et
        al.'s (`multi_sample.dreg_correction`)."""
        dreg = self.config.gradient_estimator == "dreg"
        with tf.GradientTape(persistent=dreg) as tape:
            draws = self._draw_terms(x, seed, training=training, stop_q_gradients=dreg)
            per_example = multi_sample.per_example_loss(
                draws, self.config.objective, self.kl_weight
            )
            loss, per_example = self._total_loss(per_example)
        variables = self.trainable_variables
        if not dreg:
            return tape.gradient(loss, variables), per_example, draws
        *grads, loss_grad_z = tape.gradient(loss, [*variables, draws.z])
        extra = multi_sample.dreg_correction(tape, draws, loss_grad_z, variables, self.kl_weight)
        grads = [g if e is None else e if g is None else g + e for g, e in zip(grads, extra)]
        return grads, per_example, draws

    def test_step(self, data):
        x = _features(data)
        if not self._one_draw_elbo:
            draws = self._draw_terms(x, self._next_seed(_EVAL_STREAM))
            per_example = multi_sample.per_example_loss(
                draws, self.config.objective, self.kl_weight
            )
            summaries = multi_sample.summaries(draws, self.config.objective)
            return self._update_metrics(self._total_loss(per_example)[1], **summaries)
        reconstruction, kl = self._elbo_terms(x, self._next_seed(_EVAL_STREAM))
        return self._update_metrics(self._loss(reconstruction, kl)[1], reconstruction, kl)

    def predict_step(self, data):
        x = _features(data)
        q = self.encoder(x, training=False)
        z = (
            q.mean()
            if self._predict_latent == "mean"
            else q.sample(seed=self._next_seed(_PREDICT_STREAM))
        )
        px = self.decoder(z, training=False)
        return self._select(px, self._predict_output, self._next_seed(_PREDICT_STREAM))

    def _select(self, px, output, seed):
        if output == "mean":
            return px.mean()
        if output == "mode":
            return px.mode()
        if output == "sample":
            return px.sample(seed=seed)
        if output == "stddev":
            return px.stddev()
        if output in ("probs", "logits"):
            if self.config.decoder != "bernoulli":
                raise ValueError(
                    f"output={output!r} needs a bernoulli decoder, "
                    f"this model's is {self.config.decoder!r}"
                )
            logits = px.distribution.logits_parameter()  # Independent(Bernoulli)
            return tf.sigmoid(logits) if output == "probs" else logits
        raise ValueError(f"output must be one of {PREDICT_OUTPUTS}, got {output!r}")

    # ------------------------------------------------------------------ Keras entry points
    def compile(
        self, optimizer=None, fused_steps: int = FUSED_STEPS, steps_per_execution=None, **kwargs
    ):
        """Keras compile; the loss is the model's own, so only the optimizer is needed.

        Defaults: Adam(1e-3), `jit_compile=True` (XLA, which fuses the whole step) and
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
            (at most `steps_per_execution`) per compiled program (`tfvae.engine.fused_steps`): the
            same steps, fewer launches. 1 keeps Keras' one program per step.
          steps_per_execution: Keras' argument; None (the default) for
            `STEPS_PER_EXECUTION`. Given explicitly, Keras' rules apply to every call
            (except the `*_on_batch` ones, which always run their one step).
        """
        if kwargs.get("loss") is not None:
            raise ValueError("VAE computes its own loss (-log p(x|z) + beta*KL); do not pass loss=")
        kwargs.pop("loss", None)
        for key in ("metrics", "weighted_metrics"):
            keras3.check(kwargs.get(key), f"compile({key}=...)")
        optimizer = keras3.as_tf_keras_optimizer(optimizer)
        kwargs.setdefault("jit_compile", True)
        self._fused_steps = check_positive_int(fused_steps, "fused_steps", maximum=MAX_FUSED_STEPS)
        self._default_steps_per_execution = steps_per_execution is None
        if steps_per_execution is None:
            steps_per_execution = STEPS_PER_EXECUTION
        super().compile(
            optimizer=optimizer or tfk.optimizers.Adam(1e-3),
            steps_per_execution=steps_per_execution,
            **kwargs,
        )

    def make_train_function(self, force=False):
        """Keras' train function, or several steps per XLA program where that applies
        (`tfvae.engine.fused_steps`)."""
        fuse = self._fit_data_may_fuse and can_fuse(self, self._fused_steps)
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
        built = self.encoder.built and self.decoder.built
        # Optimizer slots made now, not inside the first trace (which would then run twice).
        if built and isinstance(self.optimizer, tfk.optimizers.Optimizer):
            self.optimizer.build(self.trainable_variables)  # a no-op once built
        # A train_step of our own returns `_step_results()`: no extra trace for its outputs.
        own_step = built and all(
            getattr(type(self), name) is getattr(VAE, name)
            for name in ("train_step", "_update_metrics")
        )
        results = self._step_results if own_step else None
        keras_internals.set_train_function(
            self, fused_train_function(self, self._fused_steps, step_results=results)
        )
        return self.train_function

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

    def fit(self, x=None, y=None, *args, validation_data=None, stop_on_non_finite=True, **kwargs):
        """Keras fit on x alone (the target of a VAE is its input; `y`, if given, is ignored).

        Training stops with `tfvae.engine.callbacks.NonFiniteLossError` (naming epoch, batch and
        term) at the first NaN/inf loss, instead of training on to NaN weights; pass
        `stop_on_non_finite=False` for Keras' behaviour.
        """
        keras3.check(kwargs.get("callbacks"), "fit(callbacks=...)")
        if stop_on_non_finite:
            callbacks = list(kwargs.get("callbacks") or [])
            if not any(isinstance(c, StopOnNonFiniteLoss) for c in callbacks):
                kwargs["callbacks"] = [StopOnNonFiniteLoss(), *callbacks]
        x = _check_fit_input(x, self.config, "x")
        if validation_data is not None:
            validation_data = _check_fit_input(validation_data, self.config, "validation_data")
            if not isinstance(validation_data, (tuple, list, tf.data.Dataset)):
                validation_data = (validation_data,)  # a bare array: x alone, as for fit
        self._ensure_compiled()
        ends = executions.never_runs_out_mid_execution(x, kwargs.get("steps_per_epoch"))
        # Fused groups need data that never ends inside one, in plain tensors.
        self._fit_data_may_fuse = ends and plain_batches(x)
        validation_ends = validation_data is None or executions.never_runs_out_mid_execution(
            validation_data, kwargs.get("validation_steps")
        )
        try:
            with self._one_step_per_call_unless(ends, validation_ends):
                return super().fit(x, None, *args, validation_data=validation_data, **kwargs)
        finally:
            self._fit_data_may_fuse = True  # train_on_batch: one batch, never mid-execution

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Keras evaluate; reproducible: the evaluation draws restart at every call."""
        keras3.check(kwargs.get("callbacks"), "evaluate(callbacks=...)")
        x = _check_fit_input(x, self.config, "x")
        self._ensure_compiled()
        self._draws.assign(0)
        x, kwargs = self._array_batches(x, args, kwargs)
        ends = executions.never_runs_out_mid_execution(x, kwargs.get("steps"))
        with self._one_step_per_call_unless(ends):
            return super().evaluate(x, None, *args, **kwargs)

    def predict(self, x, *args, output: str = "mean", latent: str = "sample", **kwargs):
        """Keras predict: a numpy array `[num_examples, input_dim]` of p(x|z)'s `mean`,
        `mode`, a `sample`, ... (batched like any Keras predict).

        Args:
          output: one of `PREDICT_OUTPUTS` (`probs`/`logits` for Bernoulli decoders).
          latent: `sample` (z ~ q(z|x)) or `mean` (z = E[q(z|x)], deterministic).
        """
        if output not in PREDICT_OUTPUTS:
            raise ValueError(f"output must be one of {PREDICT_OUTPUTS}, got {output!r}")
        if output in ("probs", "logits") and self.config.decoder != "bernoulli":
            raise ValueError(
                f"output={output!r} needs a bernoulli decoder, "
                f"this model's is {self.config.decoder!r}"
            )
        if latent not in ("sample", "mean"):
            raise ValueError(f"latent must be 'sample' or 'mean', got {latent!r}")
        keras3.check(kwargs.get("callbacks"), "predict(callbacks=...)")
        x = _check_fit_input(x, self.config, "x")
        if (output, latent) != (self._predict_output, self._predict_latent):
            self._predict_output, self._predict_latent = output, latent
            self.predict_function = None  # retrace for the new choice
        self._draws.assign(0)
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
        batch_size = 32 if batch_size is None else check_positive_int(batch_size, "batch_size")
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

    # ------------------------------------------------------------------ Keras' save paths
    def save(self, filepath, overwrite: bool = True, save_format=None, **kwargs) -> str:
        """`tfvae.save_model(self, filepath)`: a checked directory for `tfvae.load_model`.

        A `filepath` ending in `.keras` (or `save_format="keras"`, which adds the suffix)
        writes Keras' zip, which `tfvae.load_model` and `tf_keras.saving.load_model` read.
        `overwrite` defaults to True as in Keras; the write is atomic either way. Other
        keyword arguments (`options`, which `ModelCheckpoint` passes) are ignored.

        Raises:
          ValueError: `save_format` "tf" or "h5" (or a `.h5` path): a SavedModel for
            serving is `model.export(path)`; HDF5 holds no distribution heads.
        """
        path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else filepath
        if save_format in ("tf", "h5") or str(path).endswith((".h5", ".hdf5")):
            raise ValueError(
                f"VAE.save writes tfvae's directory or a {KERAS_SUFFIX} file, not "
                f"save_format={save_format or 'h5'!r}: for a SavedModel (TF Serving) use "
                "model.export(path) or tfvae.export(model, path)"
            )
        if save_format == "keras" and not str(path).endswith(KERAS_SUFFIX):
            path = f"{path}{KERAS_SUFFIX}"
        return save_model(self, path, overwrite=overwrite)

    def export(self, filepath, **kwargs) -> str:
        """`tfvae.export(self, filepath, **kwargs)`: the SavedModel for TF Serving.

        `filepath` is the model's base directory: the export goes to `filepath/<version>/`
        (the next free version unless `version=` is given); `tfvae.load_exported(filepath)`
        loads the latest. Keyword arguments are `tfvae.serving.export`'s.
        """
        return export(self, filepath, **kwargs)

    def _ensure_compiled(self):
        if not keras_internals.is_compiled(self):
            self.compile()

    # ----------------------------------------------------------------- likelihood
    def log_likelihood(
        self, x, num_samples: int = 1000, batch_size: int = 100, chunk_size: int = 100, seed=0
    ) -> np.ndarray:
        """Importance-weighted estimate of log p(x) per example, in nats (Burda et al. 2015).

        log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x). K=1 is the
        ELBO; the bound tightens as K grows. Draws are taken `chunk_size` at a time and
        combined with a running logsumexp, so memory is bounded whatever K is. K and
        `chunk_size` are at most `tfvae.config.MAX_SAMPLES` (100000), `batch_size` at most
        `MAX_BATCH_SIZE` (100000).

        Returns:
          `float64[num_examples]`.
        """
        num_samples = check_positive_int(num_samples, "num_samples", maximum=MAX_SAMPLES)
        batch_size = check_positive_int(batch_size, "batch_size", maximum=MAX_BATCH_SIZE)
        chunk_size = check_positive_int(chunk_size, "chunk_size", maximum=MAX_SAMPLES)
        x = check_inputs(x, self.config, "x", require_examples=True)
        base = as_seed(check_seed(seed))
        out = []
        n = int(x.shape[0])
        for b, start in enumerate(range(0, n, int(batch_size))):
            xb = x[start : start + int(batch_size)]
            seed_b = base + tf.constant([0, 1], tf.int32) * (b + 1) * 7919
            out.append(
                self._iwae_batch(
                    xb,
                    tf.constant(int(num_samples)),
                    tf.constant(min(int(chunk_size), int(num_samples))),
                    seed_b,
                ).numpy()
            )
        return np.concatenate(out).astype(np.float64)

    @tf.function(reduce_retracing=True)
    def _iwae_batch(self, x, num_samples, chunk_size, seed):
        q = self.encoder(x, training=False)
        batch = tf.shape(x)[0]

        def body(done, running_max, running_sum):
            k = tf.minimum(chunk_size, num_samples - done)
            z = q.sample(k, seed=seed + tf.stack([0, done * 104729]))  # [k, batch, J]
            px = self.decoder(tf.reshape(z, [-1, self.config.latent_dim]), training=False)
            log_px_z = tf.reshape(px.log_prob(tf.tile(x, [k, 1])), [k, batch])
            log_w = log_px_z + self.prior.log_prob(z) - q.log_prob(z)
            return (done + k, *objectives.running_logsumexp(running_max, running_sum, log_w))

        init = (
            tf.constant(0),
            tf.fill([batch], tf.constant(-np.inf, tf.float32)),
            tf.zeros([batch]),
        )
        # The batch size is only known at run time: the running tensors are [batch] whatever
        # shape tracing inferred for the first chunk (a batch of one traces as [1]).
        _, m, s = tf.while_loop(
            lambda done, *_: done < num_samples,
            body,
            init,
            shape_invariants=(init[0].shape, tf.TensorShape([None]), tf.TensorShape([None])),
        )
        return objectives.iwae_bound_from_running(m, s, num_samples)


keras_internals.refuse_saved_model(
    VAE,
    "tf.saved_model.save cannot save a tfvae.VAE (its call returns a distribution, not "
    "tensors): use model.export(path) or tfvae.export(model, path) for a SavedModel with "
    "tensor signatures (TF Serving), or model.save(path) to save it for tfvae.load_model",
)


# Largest numpy array `evaluate`/`predict` batch themselves (`VAE._array_batches`).
_DIRECT_ARRAY_BYTES = 2**30


def _features(data):
    """x from a Keras batch: x, (x,), (x, y) or (x, y, w); y and weights are not used."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


def _check_fit_input(x, config, name):
    if isinstance(x, tf.data.Dataset):
        from tfvae.data.validation import check_dataset

        return check_dataset(x, config, name)
    if isinstance(x, (tuple, list)) and len(x) > 0 and not isinstance(x[0], (int, float)):
        return type(x)(_check_fit_input(v, config, name) if i == 0 else v for i, v in enumerate(x))
    if x is None:
        raise ValueError(
            f"{name} is required: an array of shape [num_examples, "
            f"{config.input_dim}] or a tf.data.Dataset"
        )
    if hasattr(x, "shape") or isinstance(x, (list, tuple)):
        return check_inputs(x, config, name, require_examples=True, as_numpy=True)
    return x
