"""The export's signatures: the VAE as named tensors for TF Serving, no TFP needed to load.

A `tfd.Distribution` cannot cross a serving boundary, so the export is a `tf.Module` whose
`tf.function` signatures take and return plain tensors (all with a free batch dimension and
the `tensorflow/serving/predict` method):

==================  ===========================================  ==============================
signature           inputs                                       outputs
==================  ===========================================  ==============================
serving_default     x float32 [batch, D]                         reconstruction [batch, D]
                                                                 (decoder mean at z = E[q(z|x)];
                                                                 deterministic), z_mean,
                                                                 z_stddev [batch, J]; Bernoulli
                                                                 also probs [batch, D]
encode              x float32 [batch, D], seed int64 (scalar,    z_mean, z_stddev, z_sample
                    [1] or repeated per row)                     [batch, J]
decode              z float32 [batch, J]                         mean [batch, D]; Bernoulli:
                                                                 logits, probs; Gaussian:
                                                                 stddev, log_var
generate            num_samples int32, seed int64 (each a        z [n, J], mean [n, D],
                    scalar, [1] or repeated per row)             sample [n, D]
log_likelihood      x float32 [batch, D]                         elbo [batch], iwae [batch]
==================  ===========================================  ==============================

Sampling is stateless (`tf.random.stateless_*` seeded from the request's `seed`), so the same
seed gives the same draws in-process, after `load_exported`, and in TF Serving. `elbo` is
log p(x|z) at one z ~ q(z|x) minus the analytic KL; `iwae` is the importance-weighted bound
with K = `iwae_samples` draws (fixed at export, recorded in `assets.extra/tfvae_export.json`).
Every row is computed on its own with the same draws (from the fixed `likelihood_seed`), so
a given x gets the same values, bit for bit, at any position in any batch.
`generate`'s `num_samples` is the examples to generate, not `VAEConfig.num_samples` (training
draws); input names are the wire format, so it keeps that name.

Every request is checked in the graph (`tfvae.serving.request_checks`): x and z must be rank 2 with
the model's width, finite, and x in [0, 1] for a Bernoulli decoder, else they are refused
with the Python API's messages; and one request may ask for at most `max_request_elements`
rows x samples (rows x K for `log_likelihood`, `num_samples` for `generate`, rows for the
others), set at export.

The graph is plain TensorFlow: it loads with `tf.compat.v1.saved_model.loader.load`,
`saved_model_cli` and the C API, in processes where neither tfvae nor TFP is installed.
A SavedModel is a program: load only exports you trust.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tfvae.base.checks import check_integer, too_small
from tfvae.config import IMPORTANCE_SAMPLES, MAX_SAMPLES
from tfvae.model import objectives
from tfvae.serving import request_checks

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
        config = model.config
        self.encoder = model.encoder
        self.decoder = model.decoder
        self.input_dim = int(config.input_dim)
        self.latent_dim = int(config.latent_dim)
        self.bernoulli = config.decoder == "bernoulli"
        self.iwae_samples = int(iwae_samples)
        self.likelihood_seed = int(likelihood_seed)
        self.floats_per_element = _floats_per_element(self)
        if max_request_elements is None:  # 1 GiB, but never too small for one row's K draws
            fit = DEFAULT_REQUEST_BYTES // (4 * self.floats_per_element)
            max_request_elements = max(fit, self.iwae_samples)
        self.max_request_elements = int(max_request_elements)
        d, j = self.input_dim, self.latent_dim
        x_spec = tf.TensorSpec([None, d], tf.float32, name="x")
        # Bound methods wrapped here, so each signature's first argument is the tensor.
        self.serving_default = tf.function(self._serving_default, input_signature=[x_spec])
        self.encode = tf.function(
            self._encode, input_signature=[x_spec, tf.TensorSpec(None, tf.int64, name="seed")]
        )
        self.decode = tf.function(
            self._decode, input_signature=[tf.TensorSpec([None, j], tf.float32, name="z")]
        )
        self.generate = tf.function(
            self._generate,
            input_signature=[
                tf.TensorSpec(None, tf.int32, name="num_samples"),
                tf.TensorSpec(None, tf.int64, name="seed"),
            ],
        )
        self.log_likelihood = tf.function(self._log_likelihood, input_signature=[x_spec])

    # ------------------------------------------------------------------ checks
    def _checked_x(self, x: tf.Tensor, signature: str, samples: int = 1) -> tf.Tensor:
        """x as `model.encode` accepts it, in a request within the budget."""
        x = request_checks.checked_array(x, self.input_dim, "x", "data", self.bernoulli)
        rows = tf.shape(x)[0]
        return request_checks.checked_budget(x, signature, rows, samples, self.max_request_elements)

    def _checked_z(self, z: tf.Tensor) -> tf.Tensor:
        """z as `model.decode` accepts it, in a request within the budget."""
        z = request_checks.checked_array(z, self.latent_dim, "z", "latent codes")
        return request_checks.checked_budget(
            z, "decode", tf.shape(z)[0], 1, self.max_request_elements
        )

    # ------------------------------------------------------------------ pieces
    def _posterior(self, x):
        q = self.encoder(x, training=False)
        return tf.identity(q.mean()), tf.identity(q.stddev())

    def _decoder_params(self, z) -> dict:
        px = self.decoder(z, training=False)
        if self.bernoulli:
            logits = px.distribution.logits_parameter()
            probs = tf.sigmoid(logits)
            return {"mean": probs, "logits": logits, "probs": probs}
        mean = px.mean()
        stddev = tf.broadcast_to(px.stddev(), tf.shape(mean))
        return {"mean": mean, "stddev": stddev, "log_var": 2.0 * tf.math.log(stddev)}

    def _sample_x(self, params: dict, seed) -> tf.Tensor:
        shape = tf.shape(params["mean"])
        if self.bernoulli:
            u = tf.random.stateless_uniform(shape, seed)
            return tf.cast(u < params["probs"], tf.float32)
        return params["mean"] + params["stddev"] * tf.random.stateless_normal(shape, seed)

    def _log_px_z(self, x, params: dict) -> tf.Tensor:
        if self.bernoulli:
            return objectives.bernoulli_log_likelihood(x, params["logits"])
        return objectives.gaussian_log_likelihood(x, params["mean"], params["log_var"])

    # ------------------------------------------------------------------ signatures
    def _serving_default(self, x):
        x = self._checked_x(x, "serving_default")
        z_mean, z_stddev = self._posterior(x)
        params = self._decoder_params(z_mean)
        out = {"reconstruction": params["mean"], "z_mean": z_mean, "z_stddev": z_stddev}
        if self.bernoulli:
            out["probs"] = params["probs"]
        return out

    def _encode(self, x, seed):
        x = self._checked_x(x, "encode")
        seed = request_checks.one_value(seed, "seed", tf.int64)
        z_mean, z_stddev = self._posterior(x)
        eps = tf.random.stateless_normal(tf.shape(z_mean), tf.stack([seed, 0]))
        return {"z_mean": z_mean, "z_stddev": z_stddev, "z_sample": z_mean + z_stddev * eps}

    def _decode(self, z):
        z = self._checked_z(z)
        return dict(self._decoder_params(z))

    def _generate(self, num_samples, seed):
        n = request_checks.one_value(num_samples, "num_samples", tf.int32)
        seed = request_checks.one_value(seed, "seed", tf.int64)
        n = request_checks.checked_positive(n, "num_samples")
        n = request_checks.checked_budget(
            n, "generate", n, 1, self.max_request_elements, unit="rows (num_samples)"
        )
        z = tf.random.stateless_normal(tf.stack([n, self.latent_dim]), tf.stack([seed, 0]))
        params = self._decoder_params(z)
        sample = self._sample_x(params, tf.stack([seed, 1]))
        return {"z": z, "mean": params["mean"], "sample": sample}

    def _log_likelihood(self, x):
        x = self._checked_x(x, "log_likelihood", samples=self.iwae_samples)
        # One row at a time: a batched matmul's last bits depend on the batch size.
        elbo, iwae = tf.map_fn(self._row_bounds, x, fn_output_signature=(tf.float32, tf.float32))
        return {"elbo": elbo, "iwae": iwae}

    def _row_bounds(self, x_row):
        """(ELBO, IWAE bound) of one row `[D]`; its draws depend only on `likelihood_seed`."""
        x = x_row[None]  # [1, D]
        k, j, seed = self.iwae_samples, self.latent_dim, self.likelihood_seed
        z_mean, z_stddev = self._posterior(x)  # [1, J]
        log_var = 2.0 * tf.math.log(z_stddev)
        kl = objectives.analytic_kl(z_mean, log_var)
        eps1 = tf.random.stateless_normal([1, j], [seed, 1])
        elbo = self._log_px_z(x, self._decoder_params(z_mean + z_stddev * eps1)) - kl
        z = z_mean + z_stddev * tf.random.stateless_normal([k, j], [seed, 2])  # [K, J]
        log_px_z = self._log_px_z(x, self._decoder_params(z))  # x broadcast to [K, D]
        log_pz = objectives.standard_normal_log_prob(z)
        log_qz = objectives.gaussian_log_likelihood(z, z_mean, log_var)
        return elbo[0], objectives.iwae_bound(log_px_z + log_pz - log_qz, axis=0)

    def signatures(self) -> dict:
        return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}


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
    """float32 values one example's graph makes (encoder, decoder, log p(x|z)): the tensors
    of a batch of 2 minus those of a batch of 1, so that the weights do not count."""

    def per_example(x):
        return module._log_px_z(x, module._decoder_params(module._posterior(x)[0]))

    def floats(batch: int) -> int:
        spec = tf.TensorSpec([batch, module.input_dim], tf.float32)
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
    for part in ("encoder", "decoder"):
        net = getattr(model, part, None)
        if net is None or not net.built or not net.weights:
            raise ValueError(f"model.{part} is not built (no weights); build or train it first")
        bad = [w.name for w in net.weights if not np.all(np.isfinite(w.numpy()))]
        if bad:
            raise ValueError(
                f"model.{part} has non-finite weights ({', '.join(bad[:3])}); "
                "refusing to export a diverged model"
            )
