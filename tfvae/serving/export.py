"""SavedModel export for TensorFlow Serving: the VAE as named tensors, no TFP needed to load.

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

import contextlib
import logging
import os
import re
import shutil
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from tfvae.base import atomic
from tfvae.data.validation import check_positive_int
from tfvae.model import objectives
from tfvae.serving import request_checks

__all__ = [
    "export",
    "load_exported",
    "make_serving_module",
    "SIGNATURES",
    "METADATA_FILE",
]

SIGNATURES = ("serving_default", "encode", "decode", "generate", "log_likelihood")
METADATA_FILE = "tfvae_export.json"  # under assets.extra/ (ignored by the SavedModel loader)
# The default budget: one request's float32 working memory (all its tensors at once).
DEFAULT_REQUEST_BYTES = 2**30
MAX_VERSION = 2**63 - 1  # TF Serving reads versions as int64
MAX_SEED = 2**63 - 1  # `likelihood_seed` becomes an int64 seed


class VAEServingModule(tf.Module):
    """The exportable signatures of a VAE; holds the encoder and decoder weights."""

    def __init__(
        self,
        model,
        iwae_samples: int = 100,
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
    iwae_samples: int = 100,
    likelihood_seed: int = 0,
    max_request_elements: Optional[int] = None,
):
    """The `tf.Module` that `export` saves (useful to compare in-process results)."""
    _check_model(model)
    if isinstance(iwae_samples, bool) or not isinstance(iwae_samples, (int, np.integer)):
        raise TypeError(f"iwae_samples must be an int, got {iwae_samples!r}")
    if not 1 <= int(iwae_samples) <= 100_000:
        raise ValueError(f"iwae_samples must be in [1, 100000], got {iwae_samples!r}")
    if isinstance(likelihood_seed, bool) or not isinstance(likelihood_seed, (int, np.integer)):
        raise TypeError(f"likelihood_seed must be an int, got {likelihood_seed!r}")
    if not 0 <= int(likelihood_seed) <= MAX_SEED:
        raise ValueError(
            f"likelihood_seed must be in [0, 2**63 - 1] (an int64 seed), got {likelihood_seed!r}"
        )
    if max_request_elements is not None:
        check_positive_int(max_request_elements, "max_request_elements")
        if not iwae_samples <= max_request_elements < 2**63:
            raise ValueError(
                f"max_request_elements must be in [iwae_samples, 2**63) = [{iwae_samples}, "
                f"2**63) (one log_likelihood row takes iwae_samples), got {max_request_elements}"
            )
    return VAEServingModule(model, int(iwae_samples), int(likelihood_seed), max_request_elements)


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


def _versions(base: str) -> list[int]:
    if not os.path.isdir(base):
        return []
    return sorted(int(n) for n in os.listdir(base) if re.fullmatch(r"[0-9]+", n))


def _clean_stale(base: str) -> None:
    """Removes the build dirs of exports that were killed (their process no longer exists).

    `.tmp-<version>-<pid>`; `.old-<version>-<pid>` are backups left by older tfvae releases.
    """
    for name in os.listdir(base):
        m = re.fullmatch(r"\.(?:tmp|old)-[0-9]+-([0-9]+)", name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        except PermissionError:
            pass


def _missing_folders(path: str) -> list:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not os.path.exists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _prepare_base(base: str) -> None:
    if os.path.exists(base) and not os.path.isdir(base):
        raise NotADirectoryError(f"base_dir {base!r} exists and is not a directory")
    try:
        os.makedirs(base, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"cannot create base_dir {base!r}: {e.strerror}") from e
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"base_dir {base!r} is not writable")


def export(
    model,
    base_dir: str | os.PathLike,
    version: Optional[int] = None,
    overwrite: bool = False,
    iwae_samples: int = 100,
    likelihood_seed: int = 0,
    warmup: bool = True,
    max_request_elements: Optional[int] = None,
) -> str:
    """Writes `model` as a SavedModel in TF Serving's layout `base_dir/<version>/`.

    The export is built in `base_dir/.tmp-<version>-<pid>` (a name TF Serving ignores) and
    renamed into place when complete (`tfvae.base.atomic.publish_dir`), so a server polling
    `base_dir` never sees half a version; other versions are never touched. Temp dirs of
    killed exports are removed by the next export.

    Args:
      model: a built `tfvae.VAE`.
      base_dir: the model's base path (what `--model_base_path` points at).
      version: a positive int; default: one more than the largest existing version (1 if none).
      overwrite: replace an existing `version` (otherwise refused with FileExistsError).
      iwae_samples: K of the `log_likelihood` signature's `iwae` output (a row costs K
        rows x samples of the budget).
      likelihood_seed: the fixed seed of the `log_likelihood` draws.
      warmup: write `assets.extra/tf_serving_warmup_requests` (one request per signature);
        skipped with a warning if tensorflow-serving-api (the `serving` extra) is missing.
      max_request_elements: the most rows x samples one request may ask for (rows x K for
        `log_likelihood`, `num_samples` for `generate`, rows for the others); larger
        requests are refused with a message naming it. Default: as many as fit in
        `DEFAULT_REQUEST_BYTES` (1 GiB) of float32 tensors, counted from the traced graph of
        one example (at least `iwae_samples`). Recorded in `assets.extra/tfvae_export.json`.

    Returns:
      The version directory written.
    """
    module = make_serving_module(model, iwae_samples, likelihood_seed, max_request_elements)
    base = os.path.abspath(os.fspath(base_dir))
    if version is not None and (
        isinstance(version, bool)
        or not isinstance(version, (int, np.integer))
        or not 1 <= version <= MAX_VERSION
    ):
        raise ValueError(
            f"version must be a positive integer (at most {MAX_VERSION}) or None, got {version!r}"
        )
    created = _missing_folders(base)
    _prepare_base(base)
    _clean_stale(base)
    chosen = version is None  # the next free number: taken by another exporter -> the next
    if version is None:
        version = (max(_versions(base), default=0)) + 1
    version = int(version)
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"version {version} already exists at {target!r}; pass overwrite=True to replace it "
            "or version=None for the next version"
        )
    atomic.remove_stale_temps(target)  # a backup left by a killed overwrite of this version
    tmp = os.path.join(base, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        _write_metadata(os.path.join(tmp, "assets.extra", METADATA_FILE), model, module)
        if warmup:
            _write_warmup(tmp, module)
        target = _claim_version(tmp, base, version, overwrite and not chosen, chosen)
    except BaseException as e:
        written = atomic.bytes_in(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # folders made for this export alone go too (if still empty)
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        atomic.raise_if_disk_full(e, target, written=written, temp=tmp)  # TF's is no OSError
        raise
    return target


def _write_warmup(export_dir: str, module: VAEServingModule) -> None:
    """The warm-up file; without tensorflow-serving-api (the `serving` extra) the export,
    which does not need it, goes on without one and says so in one warning line."""
    from tfvae.serving import client as serving

    try:
        requests = serving.default_warmup_requests(module.input_dim, module.latent_dim)
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("tensorflow_serving"):
            raise
        logging.getLogger(__name__).warning("export without a warm-up file: %s", e)
        return
    serving.write_warmup(export_dir, requests)


def _write_metadata(path: str, model, module: VAEServingModule) -> None:
    meta = {
        "format": "tfvae-savedmodel-1",
        "config": model.config.to_dict(),
        "signatures": list(SIGNATURES),
        "iwae_samples": module.iwae_samples,
        "likelihood_seed": module.likelihood_seed,
        "max_request_elements": module.max_request_elements,
        "floats_per_element": module.floats_per_element,
        "tensorflow_version": tf.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic.write_json(path, meta)


def _claim_version(tmp: str, base: str, version: int, overwrite: bool, chosen: bool) -> str:
    """Publishes `tmp` as `base/<version>`; if that version appeared meanwhile (a concurrent
    export) and the number was `chosen` here, as the next free one: N concurrent exports give
    N distinct complete versions. Returns the version directory."""
    while True:
        target = os.path.join(base, str(version))
        try:
            _move_into_place(tmp, target, version, overwrite)
            return target
        except FileExistsError:
            if not chosen:
                raise
            version = max(version, *_versions(base)) + 1


def _move_into_place(tmp: str, target: str, version: int, overwrite: bool) -> None:
    """Publishes the complete export `tmp` as `target`; never clobbers a concurrent writer's
    version unless `overwrite` (the caller already refused an existing one)."""
    try:
        atomic.publish_dir(tmp, target, overwrite=overwrite)
    except FileExistsError as e:
        raise FileExistsError(
            f"version {version} appeared at {target!r} during this export (another "
            "exporter?); it was left untouched"
        ) from e


class Exported:
    """A loaded export: `exported["encode"](x=..., seed=...)` -> dict of numpy arrays.

    Plain TensorFlow: nothing from tfvae or TFP is needed to call the signatures.
    """

    def __init__(self, path: str, loaded):
        self.path = path
        self.loaded = loaded
        self.signatures = dict(loaded.signatures)

    def __getitem__(self, name: str):
        if name not in self.signatures:
            raise KeyError(f"no signature {name!r}; this export has {sorted(self.signatures)}")
        from tfvae.serving import client as serving

        fn = self.signatures[name]
        specs = fn.structured_input_signature[1]

        def call(**inputs):
            unknown = set(inputs) - set(specs)
            missing = set(specs) - set(inputs)
            if unknown or missing:
                raise TypeError(
                    f"{name} takes inputs {sorted(specs)}; got {sorted(inputs)}"
                    + (f" (missing {sorted(missing)})" if missing else "")
                )
            feed = {}
            for k, v in inputs.items():
                if specs[k].dtype.is_integer and k in serving.INPUT_RANGES:
                    v = serving.check_integer_input(k, v)  # refused, not wrapped, by the cast
                try:
                    feed[k] = tf.constant(np.asarray(v), dtype=specs[k].dtype)
                except (TypeError, ValueError) as e:
                    raise TypeError(
                        f"{name}: input {k!r} must be {specs[k].dtype.name} of shape "
                        f"{specs[k].shape} (None = any), got {np.asarray(v).dtype} values"
                    ) from e
            for k, v in feed.items():
                if not specs[k].shape.is_compatible_with(v.shape):
                    raise ValueError(
                        f"{name}: input {k!r} must have shape {specs[k].shape} "
                        f"(None = any), got {tuple(v.shape)}"
                    )
            return {k: v.numpy() for k, v in fn(**feed).items()}

        call.__name__ = name
        return call

    def __iter__(self):
        return iter(self.signatures)

    def keys(self):
        return self.signatures.keys()


def load_exported(path: str | os.PathLike) -> Exported:
    """Loads an export (a version dir, or a base dir: its latest version) as callables."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no export at {path!r}")
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        versions = _versions(path)
        if not versions:
            raise FileNotFoundError(
                f"{path!r} holds neither saved_model.pb nor integer version directories"
            )
        path = os.path.join(path, str(versions[-1]))
    return Exported(path, tf.saved_model.load(path))
