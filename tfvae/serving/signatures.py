"""The export's signatures: the VAE as named tensors for TF Serving, no TFP needed to load.

A `tfd.Distribution` cannot cross a serving boundary, so the export is a `tf.Module` whose
`tf.function` signatures take and return plain tensors (all with a free batch dimension and
the `tensorflow/serving/predict` method). Every one is built from the distributions the
networks return: q(z|x) from the encoder, p(x|z) from the decoder, p(z) = `model.prior`
(`tfvae.serving.parameters` reads their parameters), so a user's own networks export as
tfvae's do. p(z) is built inside each signature from the current weights (a learned
mixture's; the VampPrior's pseudo-inputs and the encoder), so `generate` draws from the prior
in use and the bounds use its `log_prob`. Shapes: x `[batch, *S]` with S the encoder's input
shape (a model with an image shape takes `[batch, H, W, C]` and flat `[batch, D]` alike),
z `[batch, J]`, and p(x|z)'s parameters `[batch, *E]` with E its event shape:

==================  ===========================================  ==============================
signature           inputs                                       outputs
==================  ===========================================  ==============================
serving_default     x float32 [batch, *S]                        reconstruction [batch, *E]
                                                                 (p(x|z)'s mean at z = E[q],
                                                                 for iaf z_flowed_mean;
                                                                 deterministic), q's parameters
                                                                 (as encode's, no scale_tril);
                                                                 Bernoulli also probs
encode              x float32 [batch, *S], seed int64 (scalar,   z_sample [batch, J] ~ q, and
                    [1] or repeated per row)                     z_mean, z_stddev [batch, J]
                                                                 (q with correlations also
                                                                 z_scale_tril [batch, J, J]);
                                                                 for iaf (a flow) z_base_mean,
                                                                 z_base_stddev, z_flowed_mean
decode              z float32 [batch, J]                         p(x|z)'s parameters: Bernoulli
                                                                 mean, logits, probs; diagonal
                                                                 Gaussian mean, stddev,
                                                                 log_var; others mean and their
                                                                 own names [batch, *E, ...]
generate            num_samples int32, seed int64 (each a        z [n, J] ~ p(z), mean [n, *E],
                    scalar, [1] or repeated per row)             sample [n, *E] ~ p(x|z)
log_likelihood      x float32 [batch, *S]                        elbo [batch], iwae [batch]
==================  ===========================================  ==============================

Sampling is stateless (`q.sample`, `p(z).sample`, `p(x|z).sample` with a seed made from the
request's int64 `seed`, one-to-one), so the same seed gives the same draws in-process, after
`load_exported`, and in TF Serving. `elbo` is log p(x|z) at one z ~ q(z|x) minus
KL(q || p(z)) (`tfvae.model.objectives.kl_divergence`, analytic where TFP knows it); `iwae`
is the importance-weighted bound log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) with K =
`iwae_samples` draws (fixed at export, recorded in `assets.extra/tfvae_export.json`).
Every row is computed on its own with the same draws (from the fixed `likelihood_seed`), so
a given x gets the same values, bit for bit, at any position in any batch.
`generate`'s `num_samples` is the examples to generate, not `VAEConfig.num_samples` (training
draws); input names are the wire format, so it keeps that name.

Every request is checked in the graph (`tfvae.serving.request_checks`): x and z must have
the shapes above, be finite, and x lie in [0, 1] where p(x|z) is Bernoulli, else they are
refused with the Python API's messages; `seed` and `num_samples` must be one value (rank 0
or 1), `num_samples` in [1, `tfvae.config.MAX_SAMPLES`] (`VAE.generate`'s cap); and one
request may ask for at most `max_request_elements` rows x samples (rows x K for
`log_likelihood`, `num_samples` for `generate`, rows for the others), set at export.

The graph is plain TensorFlow: it loads with `tf.compat.v1.saved_model.loader.load`,
`saved_model_cli` and the C API, in processes where neither tfvae nor TFP is installed.
A SavedModel is a program: load only exports you trust.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.base.checks import check_integer, too_small
from tfvae.config import IMPORTANCE_SAMPLES, MAX_SAMPLES
from tfvae.model import objectives
from tfvae.serving import parameters, request_checks

__all__ = ["VAEServingModule", "make_serving_module", "SIGNATURES", "DEFAULT_REQUEST_BYTES"]

SIGNATURES = ("serving_default", "encode", "decode", "generate", "log_likelihood")
# The default budget: one request's float32 working memory (all its tensors at once).
DEFAULT_REQUEST_BYTES = 2**30
MAX_LIKELIHOOD_SEED = 2**63 - 1  # `likelihood_seed` becomes an int64 seed
_MAX_BUDGET = 2**63 - 1  # max_request_elements is compared as an int64 in the graph


class VAEServingModule(tf.Module):
    """The exportable signatures of a VAE; holds the encoder and decoder weights."""

    def __init__(
        self,
        model,
        iwae_samples: int = IMPORTANCE_SAMPLES,
        likelihood_seed: int = 0,
        max_request_elements: Optional[int] = None,
    ):
        super().__init__(name="tfvae_export")
        self.encoder = model.encoder
        self.decoder = model.decoder
        # p(z) is built in each traced function from the prior layer's variables (and, for
        # the VampPrior, the encoder's), as `VAE.prior` is: never a copy frozen at export.
        # The layer is held untracked (a Keras layer would be saved as one), its weights tracked.
        prior_network = model.prior_network
        self._prior_network = lambda: prior_network
        self.prior_variables = list(prior_network.variables)
        shapes = served_shapes(model)
        self.x_shape = shapes["x"]  # what the encoder takes per example
        self.x_shapes = tuple(shapes["requests"])  # what a request may send per example
        self.event_shape = shapes["event"]  # p(x|z)'s event shape
        self.input_dim = math.prod(self.x_shape)
        self.latent_dim = shapes["latent_dim"]
        self.unit_interval = shapes["unit_interval"]
        self.correlated = shapes["correlated"]
        self.iwae_samples = int(iwae_samples)
        self.likelihood_seed = int(likelihood_seed)
        # The draws of every log_likelihood row: constants, fixed at export.
        seeds = tfp.random.split_seed(_seed_pair(tf.constant(self.likelihood_seed, tf.int64)))
        self._elbo_seed, self._iwae_seed = (tuple(int(v) for v in s.numpy()) for s in seeds)
        self.floats_per_element = _floats_per_element(self)
        if max_request_elements is None:  # 1 GiB, but never too small for one row's K draws
            fit = DEFAULT_REQUEST_BYTES // (4 * self.floats_per_element)
            max_request_elements = max(fit, self.iwae_samples)
        self.max_request_elements = int(max_request_elements)
        x_spec = tf.TensorSpec(
            [None, *self.x_shape] if self.x_shapes == (self.x_shape,) else None, tf.float32, "x"
        )
        seed_spec = tf.TensorSpec(None, tf.int64, name="seed")
        z_spec = tf.TensorSpec([None, self.latent_dim], tf.float32, name="z")
        # Bound methods wrapped here, so each signature's first argument is the tensor.
        self.serving_default = tf.function(self._serving_default, input_signature=[x_spec])
        self.encode = tf.function(self._encode, input_signature=[x_spec, seed_spec])
        self.decode = tf.function(self._decode, input_signature=[z_spec])
        self.generate = tf.function(
            self._generate,
            input_signature=[tf.TensorSpec(None, tf.int32, name="num_samples"), seed_spec],
        )
        self.log_likelihood = tf.function(self._log_likelihood, input_signature=[x_spec])

    # ------------------------------------------------------------------ checks
    def _checked_x(self, x: tf.Tensor, signature: str, samples: int = 1) -> tf.Tensor:
        """x as the encoder takes it (`[batch, *x_shape]`), in a request within the budget."""
        x = request_checks.checked_array(
            x, self.input_dim, "x", "data", self.unit_interval, shapes=self.x_shapes
        )
        rows = tf.shape(x)[0]
        x = request_checks.checked_budget(x, signature, rows, samples, self.max_request_elements)
        return tf.reshape(x, [-1, *self.x_shape])

    def _checked_z(self, z: tf.Tensor) -> tf.Tensor:
        """z as the decoder takes it, in a request within the budget."""
        z = request_checks.checked_array(z, self.latent_dim, "z", "latent codes")
        return request_checks.checked_budget(
            z, "decode", tf.shape(z)[0], 1, self.max_request_elements
        )

    # ------------------------------------------------------------------ pieces
    def _q(self, x):
        return self.encoder(x, training=False)

    def _px(self, z):
        return self.decoder(z, training=False)

    def _prior(self):
        """p(z) at the current weights: `VAE.prior`, built where it is used (the VampPrior's
        runs the encoder on its pseudo-inputs), so the export serves the prior in use."""
        return self._prior_network().distribution(self.encoder, training=False)

    def _as_event(self, x):
        """x `[batch, *x_shape]` as p(x|z) scores it: `[batch, *event_shape]`."""
        return tf.reshape(x, [-1, *self.event_shape])

    def _posterior(self, q, with_scale: bool = False) -> dict:
        """What q has (`parameters.posterior_parameters`): its mean and stddev `[batch, J]`,
        or a flow's base Gaussian and flowed mean; `with_scale`: also a `scale_tril` where it
        has correlations (a stddev alone would serve it as if diagonal)."""
        return parameters.posterior_parameters(q, with_scale and self.correlated)

    # ------------------------------------------------------------------ signatures
    def _serving_default(self, x):
        x = self._checked_x(x, "serving_default")
        q = self._q(x)
        params = parameters.named_parameters(self._px(parameters.latent_point(q)))
        out = {"reconstruction": params["mean"], **self._posterior(q)}
        if "probs" in params:
            out["probs"] = params["probs"]
        return out

    def _encode(self, x, seed):
        x = self._checked_x(x, "encode")
        seed = request_checks.one_value(seed, "seed", tf.int64)
        q = self._q(x)
        z = q.sample(seed=_seed_pair(seed))
        return {**self._posterior(q, with_scale=True), "z_sample": tf.cast(z, tf.float32)}

    def _decode(self, z):
        z = self._checked_z(z)
        return dict(parameters.named_parameters(self._px(z)))

    def _generate(self, num_samples, seed):
        n = request_checks.one_value(num_samples, "num_samples", tf.int32)
        seed = request_checks.one_value(seed, "seed", tf.int64)
        n = request_checks.checked_count(n, "num_samples", MAX_SAMPLES)  # generate()'s cap
        n = request_checks.checked_budget(
            n, "generate", n, 1, self.max_request_elements, unit="rows (num_samples)"
        )
        z_seed, x_seed = tfp.random.split_seed(_seed_pair(seed))
        z = self._prior().sample(n, seed=z_seed)  # [n, J]
        px = self._px(z)
        params = parameters.named_parameters(px)
        sample = tf.cast(px.sample(seed=x_seed), tf.float32)
        return {"z": tf.cast(z, tf.float32), "mean": params["mean"], "sample": sample}

    def _log_likelihood(self, x):
        x = self._checked_x(x, "log_likelihood", samples=self.iwae_samples)
        prior = self._prior()  # once per request: the same p(z) for every row
        # One row at a time: a batched matmul's last bits depend on the batch size.
        elbo, iwae = tf.map_fn(
            lambda x_row: self._row_bounds(x_row, prior),
            x,
            fn_output_signature=(tf.float32, tf.float32),
        )
        return {"elbo": elbo, "iwae": iwae}

    def _row_bounds(self, x_row, prior):
        """(ELBO, IWAE bound) of one example under p(z) = `prior`; its draws depend only on
        `likelihood_seed`."""
        x = x_row[None]  # [1, *x_shape]
        x_event = self._as_event(x)
        k, j = self.iwae_samples, self.latent_dim
        q = self._q(x)
        z1 = q.sample(seed=self._elbo_seed)  # [1, J]
        kl = objectives.kl_divergence(q, prior, "analytic", z1)
        elbo = self._px(z1).log_prob(x_event) - kl
        z = q.sample(k, seed=self._iwae_seed)  # [K, 1, J]
        zs = tf.reshape(z, [k, j])
        log_px_z = self._px(zs).log_prob(x_event)  # x broadcast to the K draws: [K]
        log_w = log_px_z + prior.log_prob(zs) - tf.reshape(q.log_prob(z), [k])
        iwae = objectives.iwae_bound(tf.cast(log_w, tf.float32), axis=0)
        return tf.cast(tf.reshape(elbo, []), tf.float32), iwae

    def signatures(self) -> dict:
        return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}


def _seed_pair(seed: tf.Tensor) -> tf.Tensor:
    """The stateless seed `int32[2]` TFP samples with, from an int64 seed: its two halves
    (one-to-one, so distinct request seeds never share draws)."""
    return tf.bitcast(tf.cast(seed, tf.int64), tf.int32)


def _static_shape(shape) -> Optional[tuple]:
    """A fully known shape as a tuple of ints, else None."""
    shape = tf.TensorShape(shape)
    return tuple(int(d) for d in shape) if shape.is_fully_defined() else None


def served_shapes(model) -> dict:
    """What the export serves, read from the networks and their distributions: the encoder's
    input shape `x`, the shapes a request may send (`requests`: the image shape, if the model
    has one, and flat), p(x|z)'s `event` shape, `latent_dim`, whether x must lie in [0, 1]
    (`unit_interval`) and whether q(z|x) has correlations (`correlated`).

    Raises:
      ValueError: the networks' shapes do not fit together, naming them, or q(z|x) has
        neither a known mean nor a base that has one (`parameters.posterior_parameters`).
    """
    inputs = getattr(model.encoder, "inputs", None)
    x_shape = _static_shape(inputs[0].shape[1:]) if inputs else None
    if x_shape is None:
        x_shape = tuple(model.config.image_shape or (model.config.input_dim,))
    q = model.encoder(tf.zeros([1, *x_shape]), training=False)
    if q.event_shape.rank != 1 or not q.event_shape.is_fully_defined():
        raise ValueError(
            f"q(z|x) must have a vector event shape [J] to export, got {q.event_shape}; "
            "end the encoder in a multivariate distribution (or tfd.Independent)"
        )
    latent_dim = int(q.event_shape[0])
    px = model.decoder(tf.zeros([1, latent_dim]), training=False)
    event = _static_shape(px.event_shape)
    size = math.prod(x_shape)
    if event is None or math.prod(event) != size:
        raise ValueError(
            f"p(x|z) has event shape {px.event_shape} but the encoder takes x of shape "
            f"{list(x_shape)} ({size} values); the decoder must model the encoder's input"
        )
    images = [s for s in (x_shape, tuple(model.config.image_shape or ())) if len(s) > 1]
    requests = list(dict.fromkeys(images + [(size,)]))  # images first, then flat
    return {
        "x": x_shape,
        "requests": requests,
        "event": event,
        "latent_dim": latent_dim,
        "unit_interval": parameters.in_unit_interval(px),
        # Refuses a q the export cannot describe (`posterior_parameters`), before tracing.
        "correlated": any(
            k.endswith("scale_tril") for k in parameters.posterior_parameters(q, with_scale=True)
        ),
    }


def make_serving_module(
    model,
    iwae_samples: int = IMPORTANCE_SAMPLES,
    likelihood_seed: int = 0,
    max_request_elements: Optional[int] = None,
):
    """The `tf.Module` that `export` saves (useful to compare in-process results)."""
    _check_model(model)
    iwae_samples = check_integer(iwae_samples, "iwae_samples", 1, MAX_SAMPLES)
    likelihood_seed = check_integer(likelihood_seed, "likelihood_seed", 0, MAX_LIKELIHOOD_SEED)
    if max_request_elements is not None:
        budget = check_integer(max_request_elements, "max_request_elements", 1, _MAX_BUDGET)
        if budget < iwae_samples:
            raise ValueError(
                f"max_request_elements {too_small(iwae_samples, str(budget))} (iwae_samples: "
                "one log_likelihood row takes that many)"
            )
        max_request_elements = budget
    return VAEServingModule(model, iwae_samples, likelihood_seed, max_request_elements)


def _floats_per_element(module: VAEServingModule) -> int:
    """float32 values one example's graph makes (encoder, decoder, log p(x|z) and log p(z),
    which for a mixture prior is a term per component): the tensors of a batch of 2 minus
    those of a batch of 1, so that the weights (and the VampPrior's components) do not count."""

    def per_example(x):
        z = parameters.latent_point(module._q(x))
        px = module._px(z)
        log_p = px.log_prob(module._as_event(x)) + module._prior().log_prob(z)  # as an IWAE draw
        return log_p, parameters.named_parameters(px)

    def floats(batch: int) -> int:
        spec = tf.TensorSpec([batch, *module.x_shape], tf.float32)
        graph = tf.function(per_example).get_concrete_function(spec).graph
        return sum(
            out.shape.num_elements() or 0
            for op in graph.get_operations()
            for out in op.outputs
            if out.dtype.is_floating
        )

    return max(1, floats(2) - floats(1))


def _check_model(model) -> None:
    from tfvae.model.vae import VAE

    if not isinstance(model, VAE):
        raise TypeError(f"model must be a tfvae.VAE, got {type(model).__name__}")
    for part in ("encoder", "decoder", "prior_network"):  # a learned prior's weights too
        net = getattr(model, part, None)
        if part != "prior_network" and (net is None or not net.built or not net.weights):
            raise ValueError(f"model.{part} is not built (no weights); build or train it first")
        bad = [w.name for w in net.weights if not np.all(np.isfinite(w.numpy()))]
        if bad:
            raise ValueError(
                f"model.{part} has non-finite weights ({', '.join(bad[:3])}); "
                "refusing to export a diverged model"
            )
