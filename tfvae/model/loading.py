"""Load a VAE saved by `tfvae.model.saving`: its checked directory, a run directory, a `.keras` zip.

Above `tfvae.model.vae` (it builds the VAE), so that saving, which the VAE calls, never
imports the class; that import waits for a call, so importing this module loads no TensorFlow.
"""

from __future__ import annotations

import os

from tfvae.base import schema
from tfvae.config import VAEConfig
from tfvae.model.saving import (
    CONFIG_FILE,
    FORMAT,
    KERAS_SUFFIX,
    MANIFEST,
    RUN_MODEL_DIR,
    WEIGHTS,
    as_path,
    verify_files,
)

__all__ = ["load_model"]


def load_model(directory: str | os.PathLike):
    """Rebuilds a `tfvae.VAE` from `save_model`'s directory (config + checked weights).

    Also accepts a run directory (`train_and_evaluate`'s workdir: its `model/` is loaded)
    and a `.keras` file (`save_model(model, "m.keras")` or `model.save("m.keras")`).
    """
    from tfvae.model.vae import VAE

    directory = as_path(directory, "directory")
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
    spec = schema.model_manifest(FORMAT, (CONFIG_FILE, *WEIGHTS.values()))
    manifest = schema.read_json(manifest_path, spec, "saved model manifest")
    verify_files(directory, manifest["sha256"], MANIFEST, "saved model file")
    config = VAEConfig.load(os.path.join(directory, CONFIG_FILE))
    model = VAE(config)
    for part, file in WEIGHTS.items():
        try:
            getattr(model, part).load_weights(os.path.join(directory, file))
        except (ValueError, OSError) as e:
            raise ValueError(
                f"{os.path.join(directory, file)!r} does not fit the config "
                f"(input_dim={config.input_dim}, latent_dim={config.latent_dim}): "
                f"{e}"
            ) from e
    return model


def _load_keras_zip(path: str):
    import tf_keras as tfk

    from tfvae.model.vae import VAE

    model = tfk.saving.load_model(path, custom_objects={"VAE": VAE}, compile=False)
    if not isinstance(model, VAE):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not a tfvae.VAE")
    return model
