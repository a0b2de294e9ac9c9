"""Save and load a VAE as a directory: `config.json`, encoder/decoder weights, a checksum manifest.

Written atomically (a temporary sibling directory renamed into place), never over an
existing directory unless `overwrite=True`; on load every file is checked against the
manifest so a truncated or corrupt file is reported by name instead of loading garbage.
Every file is built in memory first, so the space needed is known (and checked) before
anything is written, and a disk that fills anyway ends in `tfvae.base.atomic.DiskFullError`.
A path ending in `.keras` holds Keras' own zip instead (written atomically too); `load_model`
reads both, and a run directory (its `model/`).
"""

from __future__ import annotations

import hashlib
import json
import os

from tfvae.base import atomic, schema
from tfvae.config import VAEConfig

__all__ = ["save_model", "load_model", "MANIFEST", "CONFIG_FILE", "KERAS_SUFFIX"]

CONFIG_FILE = "config.json"
KERAS_SUFFIX = ".keras"  # Keras' own zip format (config + weights), the one `tf_keras` reads
RUN_MODEL_DIR = "model"  # where `train_and_evaluate` saves the model inside a run directory
MANIFEST = "manifest.json"
_WEIGHTS = {"encoder": "encoder.weights.h5", "decoder": "decoder.weights.h5"}
_FORMAT = "tfvae-weights-v1"


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(
    directory: str,
    digests: dict,
    index: str,
    what: str,
    error=ValueError,
    missing_error=FileNotFoundError,
) -> None:
    """Checks every `name: sha256` of `digests` under `directory`; names the bad file.

    `index` is the file that recorded the digests, `what` describes the files in messages.
    """
    for name, digest in digests.items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise missing_error(f"{what} {path!r} is missing")
        if sha256_file(path) != digest:
            raise error(
                f"{what} {path!r} is corrupt or truncated: its checksum does not match {index}"
            )


def save_model(model, directory: str | os.PathLike, overwrite: bool = False) -> str:
    """Writes `model` (a `tfvae.VAE`) to `directory`; returns its path.

    A `directory` ending in `.keras` is written as one file in Keras' zip format (what
    `tf_keras.saving.save_model` writes) instead of tfvae's checked directory.

    Raises:
      FileExistsError: `directory` exists and `overwrite` is False (nothing is touched).
    """
    from tfvae.model.vae import VAE

    if not isinstance(model, VAE):
        raise TypeError(f"model must be a tfvae.VAE, got {type(model).__name__}")
    directory = os.path.abspath(_path(directory, "directory"))
    if directory.endswith(KERAS_SUFFIX):
        return atomic.write_with(directory, lambda tmp: _save_keras_zip(model, tmp), overwrite)
    files = _model_files(model)
    needed = sum(len(data) for data in files.values())
    atomic.check_overwrite(directory, overwrite)  # before the space: exists is the answer
    atomic.check_space(directory, needed)
    with atomic.staged_dir(directory, overwrite=overwrite, needed=needed) as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
    return directory


def _model_files(model) -> dict:
    """{file name: bytes} of a saved model: config, weights and the manifest of their sha256.

    The weights are HDF5 built in memory (`keras_internals.weights_h5_bytes`), the same
    file `save_weights` writes, but never written to disk by HDF5 itself.
    """
    from tfvae.engine import keras_internals

    files = {CONFIG_FILE: model.config.to_json().encode("utf-8")}
    for part, file in _WEIGHTS.items():
        files[file] = keras_internals.weights_h5_bytes(getattr(model, part))
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    manifest = json.dumps({"format": _FORMAT, "sha256": digests}, indent=2, sort_keys=True)
    files[MANIFEST] = (manifest + "\n").encode("utf-8")
    return files


def _save_keras_zip(model, tmp: str) -> None:
    """Keras' zip written to `tmp` (tf_keras insists on the `.keras` suffix, so it is
    written beside `tmp` under that name, which shares the temporary prefix, then moved)."""
    import tf_keras as tfk

    named = tmp + KERAS_SUFFIX
    try:
        tfk.saving.save_model(model, named, overwrite=True, save_format="keras")
        os.replace(named, tmp)
    finally:
        if os.path.exists(named):
            os.remove(named)


def _load_keras_zip(path: str):
    import tf_keras as tfk

    from tfvae.model.vae import VAE

    model = tfk.saving.load_model(path, custom_objects={"VAE": VAE}, compile=False)
    if not isinstance(model, VAE):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not a tfvae.VAE")
    return model


def _path(value, name: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return os.fspath(value)


def load_model(directory: str | os.PathLike):
    """Rebuilds a `tfvae.VAE` from `save_model`'s directory (config + checked weights).

    Also accepts a run directory (`train_and_evaluate`'s workdir: its `model/` is loaded)
    and a `.keras` file (`save_model(model, "m.keras")` or `model.save("m.keras")`).
    """
    from tfvae.model.vae import VAE

    directory = _path(directory, "directory")
    if directory.endswith(KERAS_SUFFIX) and os.path.isfile(directory):
        return _load_keras_zip(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"model directory not found: {directory!r}")
    manifest_path = os.path.join(directory, MANIFEST)
    run_model = os.path.join(directory, RUN_MODEL_DIR)
    if not os.path.isfile(manifest_path) and os.path.isfile(os.path.join(run_model, MANIFEST)):
        directory, manifest_path = run_model, os.path.join(run_model, MANIFEST)
    if not os.path.isfile(manifest_path):
        raise FileNotFoundError(
            f"{directory!r} is not a saved tfvae model ({MANIFEST} missing) nor a run "
            f"directory (no {RUN_MODEL_DIR}/{MANIFEST})"
        )
    spec = schema.model_manifest(_FORMAT, (CONFIG_FILE, *_WEIGHTS.values()))
    manifest = schema.read_json(manifest_path, spec, "saved model manifest")
    verify_files(directory, manifest["sha256"], MANIFEST, "saved model file")
    config = VAEConfig.load(os.path.join(directory, CONFIG_FILE))
    model = VAE(config)
    for part, file in _WEIGHTS.items():
        try:
            getattr(model, part).load_weights(os.path.join(directory, file))
        except (ValueError, OSError) as e:
            raise ValueError(
                f"{os.path.join(directory, file)!r} does not fit the config "
                f"(input_dim={config.input_dim}, latent_dim={config.latent_dim}): "
                f"{e}"
            ) from e
    return model
