"""The VAE: a `tf_keras.Model` whose encoder and decoder return distributions.

`model(x)` returns p(x|z) for z ~ q(z|x): a `tfd.Distribution`, not an image. Its `.mean()`
is what tutorials call the reconstruction x-hat, `.sample()` draws an x, `.log_prob(x)` is
the likelihood term of the loss -log p(x|z) + beta * KL(q(z|x) || p(z)).
`fit`/`evaluate` log `elbo`, `reconstruction` (log p(x|z)) and `kl` in nats per example.
`VAEConfig.objective`/`num_samples` choose the multi-sample ELBO or the IWAE bound instead
(`tfvae.model.multi_sample`; with `iwae` they also log the bound, `iwae`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.base.checks import renamed_argument
from tfvae.config import IMPORTANCE_SAMPLES, MAX_BATCH_SIZE, MAX_SAMPLES, VAEConfig
from tfvae.data.validation import (
    check_fit_data,
    check_inputs,
    check_latents,
    check_positive_int,
    check_seed,
)
from tfvae.engine import keras3, keras_internals
from tfvae.engine.distribute import replica_average, replica_seed
from tfvae.engine.engine import Engine
from tfvae.model import (
    distributions,
    likelihood,
    multi_sample,
    objectives,
    output_bias,
    priors,
    saving,
)
from tfvae.model.networks import make_decoder, make_encoder
from tfvae.model.outputs import PREDICT_OUTPUTS, check_latent, check_output, select
from tfvae.model.saving import keras_save_path, write_model
from tfvae.model.seeds import as_seed

tfd = tfp.distributions

__all__ = ["VAE", "PREDICT_OUTPUTS", "as_seed"]

# Independent sample streams, so training, evaluation, prediction and `elbo` draws never collide.
_TRAIN_STREAM, _EVAL_STREAM, _PREDICT_STREAM, _ELBO_STREAM = range(4)


class VAE(Engine):
    """Variational autoencoder of Kingma & Welling (2013) built from a `VAEConfig`.

    The mathematics; the tf_keras machinery (compile, fit, evaluate, predict) is
    `tfvae.engine.engine.Engine`'s.

    Attributes:
      encoder: `tf_keras.Model`, x -> q(z|x) (built-in: MultivariateNormalDiag), or yours.
      decoder: `tf_keras.Model`, z `[batch, latent_dim]` -> p(x|z), or yours.
      prior: p(z) (`config.prior`), a property read from `prior_network`'s weights.
      kl_weight: a non-trainable variable holding beta (changed by `KLWarmup`).

    The loss is `config.objective` over `config.num_samples` draws per example: by default
    the paper's one-draw ELBO; K draws average the ELBO ("VAE k=K") or, with `iwae`, form
    the bound log (1/K) sum_k p(x, z_k) / q(z_k|x) (`tfvae.model.multi_sample`). All of it
    reads the networks' distributions (`tfvae.model.distributions`), so your own encoder and
    decoder work as ours do; x may come flat or in any of their shapes (images).

    Sampling is stateless and seeded: training step `t` draws with seed `(4 * config.seed,
    t)` (evaluation, prediction and unseeded `elbo` use streams 4 * seed + 1, + 2, + 3), so the
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
                distributions.check_no_kl_loss(network, part)
        # Built-in networks start seeded by `config.seed` (`tfvae.model.networks`).
        self.own_networks = {"encoder": encoder is not None, "decoder": decoder is not None}
        self.encoder = encoder if encoder is not None else make_encoder(self.config)
        self.decoder = (
            decoder
            if decoder is not None
            else make_decoder(self.config, first_weight=len(self.encoder.weights))
        )
        _check_posterior(self.config, encoder)
        # p(z): a layer (its weights tracked after the networks'), read through `prior`.
        self.prior_network = priors.make_prior(
            self.config, first_weight=len(self.encoder.weights) + len(self.decoder.weights)
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
        self._predict_output = "mean"
        self._predict_latent = "sample"
        self._data_spec = None  # `_data`
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
        return saving.keras_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return saving.from_keras_config(cls, config, custom_objects)

    def set_output_bias(self, x) -> dict:
        """Starts p(x|z) at the data's per-pixel marginal: sets the decoder's output biases
        from `x` (the training data: an array or a batched `tf.data.Dataset`), as Burda et
        al.'s code does (logit of the training mean for a Bernoulli decoder; mean and log
        variance for a Gaussian). Call it before `fit`; returns {layer name: bias}
        (`tfvae.model.output_bias`). `TrainConfig.output_bias_from_data` does it in training runs.
        """
        return output_bias.set_output_bias(self.decoder, self.config, x)

    # ------------------------------------------------------------------ distributions
    @property
    def prior(self) -> tfd.Distribution:
        """p(z) (`config.prior`): N(0, I), a learned mixture, or the VampPrior, whose
        components are the encoder's q(z|u_k) (`tfvae.model.priors`). Built anew at each
        access, from the current weights: read it once per step."""
        return self.prior_network.distribution(self.encoder)

    def _data(self) -> tuple:
        """(p(x|z)'s kind, `check_inputs`' arguments), read once (`distributions.data_checks`)."""
        if self._data_spec is None:
            self._data_spec = distributions.data_checks(self.encoder, self.decoder, self.config)
        return self._data_spec

    def _checked_x(self, x, name: str = "x", **kwargs):
        return check_inputs(x, self.config, name, **self._data()[1], **kwargs)

    def encode(self, x, training=None) -> tfd.Distribution:
        """q(z|x): the encoder's distribution over z, `[batch, latent_dim]`."""
        return distributions.posterior(self.encoder, self._checked_x(x), training)

    def decode(self, z, training=None) -> tfd.Distribution:
        """p(x|z): the decoder distribution over `[batch, input_dim]` (parameters fixed by z)."""
        z = check_latents(z, self.config, "z")
        return self.decoder(z, training=training)

    def call(self, x, training=None, seed=None):
        """p(x|z) for one z ~ q(z|x) per example; `seed` (int or `int32[2]`) repeats draws."""
        q = distributions.posterior(self.encoder, self._checked_x(x), training)
        seed = self._next_seed(_PREDICT_STREAM) if seed is None else as_seed(check_seed(seed))
        return self.decoder(q.sample(seed=seed), training=training)

    def sample_prior(
        self, num_examples: Optional[int] = None, seed=0, **renamed
    ) -> tfd.Distribution:
        """p(x|z) for `num_examples` draws z ~ p(z): `.sample()` gives new data, `.mean()` x-hat.

        At most `tfvae.config.MAX_SAMPLES` (100000) per call: draw more in several calls.
        """
        num_examples = renamed_argument("sample_prior", "num_examples", num_examples, renamed)
        num_examples = check_positive_int(num_examples, "num_examples", maximum=MAX_SAMPLES)
        z = self.prior.sample(num_examples, seed=as_seed(check_seed(seed)))
        return self.decoder(z)

    def generate(
        self, num_examples: Optional[int] = None, seed=0, output: str = "sample", **renamed
    ) -> np.ndarray:
        """New data as a numpy array: draws x ~ p(x|z), z ~ p(z) (or the `mean` per z); at
        most `tfvae.config.MAX_SAMPLES` (100000) examples per call."""
        num_examples = renamed_argument("generate", "num_examples", num_examples, renamed)
        check_output(output, self._data()[0])
        px = self.sample_prior(num_examples, seed)
        seed2 = as_seed(seed) + tf.constant([0, 1], tf.int32)
        return select(px, output, seed2).numpy()

    # ----------------------------------------------------------------- the objective
    def _next_seed(self, stream: int, count=None) -> tf.Tensor:
        """The seed `(4 * config.seed + stream, count)` (by default the next of `_draws`);
        replicas fold in their id (`replica_seed`): same step, different noise."""
        count = self._draws.assign_add(1) if count is None else count
        return replica_seed(
            tf.stack(
                [tf.constant(self.config.seed * 4 + stream, tf.int32), tf.cast(count, tf.int32)]
            )
        )

    def elbo_terms(self, x, seed=None, training=None):
        """Per-example (log p(x|z), KL(q||p)), each `[batch]`, for one z ~ q(z|x).

        With a `seed` (an int or `int32[2]`) the draw is stateless: the same seed draws the
        same z on every call. Without one, each call draws fresh noise (a training loop of
        your own then sees a new z at every step).
        """
        x = self._checked_x(x)
        seed = self._next_seed(_ELBO_STREAM) if seed is None else as_seed(check_seed(seed))
        return self._elbo_terms(x, seed, training)

    def _elbo_terms(self, x, seed, training=None):
        """`elbo_terms` without the checks: `x` a float tensor, `seed` an `int32[2]` tensor."""
        q = distributions.posterior(self.encoder, x, training)
        z = q.sample(seed=seed)
        px = self.decoder(z, training=training)
        reconstruction = distributions.log_prob_at(px, x)
        kl = objectives.kl_divergence(q, self.prior, self.config.kl_method, z)
        return reconstruction, kl

    def elbo(self, x, seed=None) -> tf.Tensor:
        """Per-example ELBO estimate (nats), `[batch]`: log p(x|z) - KL, one z per example
        (fresh draws at each call without a `seed`, as `elbo_terms`)."""
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
        seed = self._next_seed(_TRAIN_STREAM, self.optimizer.iterations)
        if not self._one_draw_elbo:
            return self._train_step_over_draws(x, seed)
        with tf.GradientTape() as tape:
            reconstruction, kl = self._elbo_terms(x, seed, training=True)
            loss, per_example = self._loss(reconstruction, kl)
            loss = scaled_loss(self.optimizer, loss)
        variables = self.trainable_variables
        grads = unscaled_gradients(self.optimizer, tape.gradient(loss, variables))
        self.optimizer.apply_gradients(zip(grads, variables))
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
            loss = scaled_loss(self.optimizer, loss)
        variables = self.trainable_variables
        if not dreg:
            grads = tape.gradient(loss, variables)
            return unscaled_gradients(self.optimizer, grads), per_example, draws
        *grads, loss_grad_z = tape.gradient(loss, [*variables, draws.z])
        extra = multi_sample.dreg_correction(tape, draws, loss_grad_z, variables, self.kl_weight)
        grads = [g if e is None else e if g is None else g + e for g, e in zip(grads, extra)]
        return unscaled_gradients(self.optimizer, grads), per_example, draws

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
        q = distributions.posterior(self.encoder, x, training=False)
        z = (
            distributions.latent_mean(q)
            if self._predict_latent == "mean"
            else q.sample(seed=self._next_seed(_PREDICT_STREAM))
        )
        px = self.decoder(z, training=False)
        return select(px, self._predict_output, self._next_seed(_PREDICT_STREAM))

    # ------------------------------------------------------------------ the engine's hooks
    _own_loss = "VAE computes its own loss (-log p(x|z) + beta*KL)"

    def _checked_data(self, x, name: str):
        return check_fit_data(x, self.config, name, **self._data()[1])

    def _restart_draws(self) -> None:
        self._draws.assign(0)

    def _variables_built(self) -> bool:
        return self.encoder.built and self.decoder.built

    def _fused_step_results(self):
        """`_step_results` where `train_step` is this class's own (then it returns them)."""
        own = all(
            getattr(type(self), f) is getattr(VAE, f) for f in ("train_step", "_update_metrics")
        )
        return self._step_results if own else None

    def predict(self, x, *args, output: str = "mean", latent: str = "sample", **kwargs):
        """Keras predict: a numpy array `[num_examples, *event_shape]` of p(x|z)'s `mean`,
        `mode`, a `sample`, ... (batched like any Keras predict).

        Args:
          output: one of `PREDICT_OUTPUTS` (`probs`/`logits` for Bernoulli decoders).
          latent: `sample` (z ~ q(z|x)) or `mean` (z = E[q(z|x)], deterministic).
        """
        check_output(output, self._data()[0])
        check_latent(latent)
        if (output, latent) != (self._predict_output, self._predict_latent):
            self._predict_output, self._predict_latent = output, latent
            self.predict_function = None  # retrace for the new choice
        return super().predict(x, *args, **kwargs)

    # ------------------------------------------------------------------ Keras' save paths
    def save(self, filepath, overwrite: bool = True, save_format=None, **kwargs) -> str:
        """`tfvae.save_model(self, filepath)`: a checked directory for `tfvae.load_model`.

        A `filepath` ending in `.keras` (or `save_format="keras"`, which adds the suffix)
        writes Keras' zip, which `tfvae.load_model` and `tf_keras.saving.load_model` read.
        `overwrite` defaults to True as in Keras; the write is atomic either way. Other
        keyword arguments (`options`, which `ModelCheckpoint` passes) are ignored.

        Raises: ValueError for `save_format` "tf" or "h5" (`saving.keras_save_path`).
        """
        return write_model(self, keras_save_path(filepath, save_format), overwrite=overwrite)

    # ----------------------------------------------------------------- likelihood
    def log_likelihood(
        self,
        x,
        importance_samples: int = IMPORTANCE_SAMPLES,
        batch_size: int = 100,
        chunk_size: int = 100,
        seed=0,
        **renamed,
    ) -> np.ndarray:
        """Importance-weighted estimate of log p(x) per example, in nats (Burda et al. 2015):
        log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), K = `importance_samples`.

        K = 1 is the ELBO; the bound tightens as K grows. Draws go `chunk_size` at a time
        into a running logsumexp, so memory is bounded whatever K is (`tfvae.model.likelihood`).
        K and `chunk_size` are at most `MAX_SAMPLES`, `batch_size` at most `MAX_BATCH_SIZE`.
        Returns `float64[num_examples]`.
        """
        k = renamed_argument("log_likelihood", "importance_samples", importance_samples, renamed)
        importance_samples = check_positive_int(k, "importance_samples", maximum=MAX_SAMPLES)
        batch_size = check_positive_int(batch_size, "batch_size", maximum=MAX_BATCH_SIZE)
        chunk_size = check_positive_int(chunk_size, "chunk_size", maximum=MAX_SAMPLES)
        x = self._checked_x(x, require_examples=True)
        seed = as_seed(check_seed(seed))
        return likelihood.log_likelihood(
            self._iwae_batch, x, importance_samples, batch_size, chunk_size, seed
        )

    @tf.function(reduce_retracing=True)
    def _iwae_batch(self, x, importance_samples, chunk_size, seed):
        return likelihood.iwae_batch(
            self.encoder, self.decoder, self.prior, x, importance_samples, chunk_size, seed
        )


def _refused_export(model, *args, **kwargs):
    """Refused: the SavedModel for TF Serving is `tfvae.export(model, ...)` (serving's)."""
    raise TypeError(
        "VAE.export is not a method: write the SavedModel for TF Serving with "
        "tfvae.export(model, base_dir, ...)"
    )


VAE.export = _refused_export
keras_internals.refuse_saved_model(
    VAE,
    "tf.saved_model.save cannot save a tfvae.VAE (its call returns a distribution, not "
    "tensors): use tfvae.export(model, path) for a SavedModel with tensor signatures "
    "(TF Serving), or model.save(path) to save it for tfvae.load_model",
)


def _check_posterior(config: VAEConfig, encoder) -> None:
    """`config.posterior` chooses tfvae's encoder: refused beside an encoder of your own."""
    if encoder is not None and config.posterior != "diagonal":
        raise ValueError(
            f"VAEConfig.posterior={config.posterior!r} builds tfvae's encoder; yours "
            "returns its own q(z|x): leave posterior at 'diagonal' with encoder=..."
        )


def _features(data):
    """x from a Keras batch: x, (x,), (x, y) or (x, y, w); y and weights are not used."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


def scaled_loss(optimizer, loss):
    """`loss` times the loss scale of a `LossScaleOptimizer` (Keras wraps the optimizer in
    one under the mixed_float16 policy: float16 gradients would underflow), else `loss`."""
    get_scaled_loss = getattr(optimizer, "get_scaled_loss", None)
    return loss if get_scaled_loss is None else get_scaled_loss(loss)


def unscaled_gradients(optimizer, grads):
    """The gradients of `scaled_loss` divided by the loss scale again (None kept)."""
    get_unscaled = getattr(optimizer, "get_unscaled_gradients", None)
    return grads if get_unscaled is None else get_unscaled(grads)
