"""Load a VAE saved by `tfvae.model.saving`: its checked directory, a run directory, a `.keras` zip.

Above `tfvae.model.vae` (it builds the VAE), so that saving, which the VAE calls, never
imports the class; that import waits for a call, so importing this module loads no TensorFlow.
"""

from __future__ import annotations

import os
from typing import Optional

from tfvae.base import schema
from tfvae.config import VAEConfig
from tfvae.model.saving import (
    ARCHITECTURES,
    CONFIG_FILE,
    FORMAT,
    KERAS_SUFFIX,
    MANIFEST,
    OWN_FORMAT,
    PRIOR_WEIGHTS,
    RUN_MODEL_DIR,
    WEIGHTS,
    as_path,
    build_networks,
    prior_weights,
    verify_files,
)

__all__ = ["load_model"]


def load_model(directory: str | os.PathLike, custom_objects: Optional[dict] = None):
    """Rebuilds a `tfvae.VAE` from `save_model`'s directory (config + checked weights, and
    the architecture of the networks the user passed).

    Also accepts a run directory (`train_and_evaluate`'s workdir: its `model/` is loaded)
    and a `.keras` file (`save_model(model, "m.keras")` or `model.save("m.keras")`).
    `custom_objects` ({name: class}) are layer classes of the user's networks that are not
    registered with `tf_keras.saving.register_keras_serializable`.
    """
    from tfvae.model.vae import VAE

    directory = as_path(directory, "directory")
    if directory.endswith(KERAS_SUFFIX) and os.path.isfile(directory):
        return _load_keras_zip(directory, custom_objects)
    directory = _model_dir(directory)
    manifest = _read_manifest(directory)
    verify_files(directory, manifest["sha256"], MANIFEST, "saved model file")
    config = VAEConfig.load(os.path.join(directory, CONFIG_FILE))
    architectures = {
        part: _read_architecture(directory, part) for part in manifest.get("networks", ())
    }
    model = VAE(config, **build_networks(architectures, custom_objects))
    for part, file in WEIGHTS.items():
        try:
            getattr(model, part).load_weights(os.path.join(directory, file))
        except (ValueError, OSError) as e:
            fits = (
                f"its {part}'s architecture ({ARCHITECTURES[part]})"
                if part in architectures
                else f"the config (input_dim={config.input_dim}, latent_dim={config.latent_dim})"
            )
            raise ValueError(f"{os.path.join(directory, file)!r} does not fit {fits}: {e}") from e
    _load_prior(model, directory, manifest)
    return model


def _load_prior(model, directory: str, manifest: dict) -> None:
    """Loads a learned prior's weights from `PRIOR_WEIGHTS`, which the manifest lists exactly
    when the config's prior has weights (N(0, I) has none, nor had any model saved before
    learned priors existed)."""
    import tf_keras as tfk

    path, prior = os.path.join(directory, PRIOR_WEIGHTS), model.config.prior
    listed = PRIOR_WEIGHTS in manifest["sha256"]
    if not prior_weights(model):
        if listed:
            raise ValueError(
                f"{path!r} holds a learned prior's weights but the config's prior {prior!r} has "
                f"none; the model's {CONFIG_FILE} does not fit its files"
            )
        return
    if not listed:
        raise ValueError(
            f"{directory!r} lacks {PRIOR_WEIGHTS} (not in its {MANIFEST}), the weights of its "
            f"learned prior {prior!r}; the model's {CONFIG_FILE} does not fit its files"
        )
    try:  # tf_keras gives a Layer no load_weights; Model's reads any layer's weights file
        tfk.Model.load_weights(model.prior_network, path)
    except (ValueError, OSError) as e:
        raise ValueError(
            f"{path!r} does not fit the config's prior ({prior!r}, prior_components="
            f"{model.config.prior_components}, latent_dim={model.config.latent_dim}): {e}"
        ) from e


def _model_dir(directory: str) -> str:
    """The saved model's directory: `directory`, or a run directory's `model/`."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"model directory not found: {directory!r}")
    run_model = os.path.join(directory, RUN_MODEL_DIR)
    if not os.path.isfile(os.path.join(directory, MANIFEST)) and os.path.isfile(
        os.path.join(run_model, MANIFEST)
    ):
        return run_model
    if not os.path.isfile(os.path.join(directory, MANIFEST)):
        raise FileNotFoundError(
            f"{directory!r} is not a saved tfvae model ({MANIFEST} missing) nor a run "
            f"directory (no {RUN_MODEL_DIR}/{MANIFEST})"
        )
    return directory


def _read_manifest(directory: str) -> dict:
    """The checked manifest: format v1 (built-in networks) or v2 (and the user's networks,
    whose architecture files it lists); anything else is refused as v1 would be."""
    path, what = os.path.join(directory, MANIFEST), "saved model manifest"
    found = schema.read_json(path, schema.Spec("JSON", lambda value, where: None), what)
    files = [CONFIG_FILE, *WEIGHTS.values()]
    if not isinstance(found, dict) or found.get("format") != OWN_FORMAT:
        return schema.check(found, schema.model_manifest(FORMAT, files), path, what)
    fields = {"networks": schema.list_of(schema.one_of(ARCHITECTURES), len(ARCHITECTURES))}
    schema.check(found, schema.obj(fields), path, what)
    files += [ARCHITECTURES[part] for part in found["networks"]]
    return schema.check(found, schema.model_manifest(OWN_FORMAT, files, fields), path, what)


def _read_architecture(directory: str, part: str) -> dict:
    path = os.path.join(directory, ARCHITECTURES[part])
    return schema.read_json(path, schema.obj({"class_name": schema.text()}), f"saved {part}")


def _load_keras_zip(path: str, custom_objects: Optional[dict] = None):
    import tf_keras as tfk

    from tfvae.model.vae import VAE

    objects = {"VAE": VAE, **(custom_objects or {})}
    model = tfk.saving.load_model(path, custom_objects=objects, compile=False)
    if not isinstance(model, VAE):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not a tfvae.VAE")
    return model
