"""SavedModel export for TensorFlow Serving: written atomically to `BASE/<version>/`, loaded back.

The signatures are `tfvae.serving.signatures`' (the VAE as named tensors, plain TensorFlow:
neither tfvae nor TFP is needed to load them). `export` builds the version in a temporary
directory TF Serving ignores and renames it into place, with `assets.extra/tfvae_export.json`
(the config, K of the `iwae` output, the request budget) and a warm-up file;
`load_exported` calls the signatures with numpy arrays. A SavedModel is a program: load only
exports you trust.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from tfvae.base import atomic
from tfvae.base.checks import integer_problem
from tfvae.config import IMPORTANCE_SAMPLES, MAX_VERSION
from tfvae.serving.signatures import SIGNATURES, VAEServingModule, make_serving_module

__all__ = ["export", "load_exported", "Exported", "refusal", "METADATA_FILE", "MAX_VERSION"]

METADATA_FILE = "tfvae_export.json"  # under assets.extra/ (ignored by the SavedModel loader)


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
        raise PermissionError(_cannot_create(base, e)) from e
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"base_dir {base!r} is not writable")


def _cannot_create(base: str, error: OSError) -> str:
    """Why the directory `base` could not be made, said of the nearest path that exists."""
    missing = _missing_folders(base)
    first = missing[-1] if missing else base  # the folder makedirs could not make
    there = os.path.dirname(first)
    why = error.strerror or str(error)
    if error.errno == errno.ENOTDIR or not os.path.isdir(there):
        why = f"{there!r} is a file, not a folder ({why})"
    elif error.errno == errno.ENOENT:  # /proc, /sys: the folder is there, new names are not
        why = f"{there!r} exists but takes no new folders ({why})"
    else:
        why = f"{why} in {there!r}"
    return f"cannot create base_dir {base!r}: {why}; choose a base_dir in a folder you can write to"


def export(
    model,
    base_dir: str | os.PathLike,
    version: Optional[int] = None,
    overwrite: bool = False,
    iwae_samples: int = IMPORTANCE_SAMPLES,
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
    problem = None if version is None else integer_problem(version, 1, MAX_VERSION)
    if problem is not None:
        raise ValueError(f"version {problem} (or None: the next free one)")
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
        requests = serving.default_warmup_requests(module.x_shapes[0], module.latent_dim)
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
        "x_shapes": [list(s) for s in module.x_shapes],
        "latent_dim": module.latent_dim,
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


def refusal(message: str) -> Optional[str]:
    """The sentence of a request check (`tfvae.serving.request_checks`) from the message of
    the InvalidArgumentError that carries it (`... assertion failed: [<sentence>] ...`), or
    None for any other error."""
    m = re.search(r"assertion failed: \[(.*?)\](?: \[|\n|$)", message)
    return m.group(1) if m else None


class Exported:
    """A loaded export: `exported["encode"](x=..., seed=...)` -> dict of numpy arrays.

    Plain TensorFlow: nothing from tfvae or TFP is needed to call the signatures. A request
    the graph refuses raises ValueError with the graph's sentence (the Python API's message).
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
            try:
                outputs = fn(**feed)
            except tf.errors.InvalidArgumentError as e:
                sentence = refusal(e.message)
                if sentence is None:
                    raise
                raise ValueError(sentence) from None
            return {k: v.numpy() for k, v in outputs.items()}

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
