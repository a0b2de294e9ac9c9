"""Save a VAE as a directory: `config.json`, encoder/decoder weights, a checksum manifest.

A network the user passed (`VAE(config, encoder=...)`) is saved too: its Keras config as
`encoder.json`/`decoder.json` (`tfvae.model.network_saving`), listed in a manifest of format
`tfvae-weights-v2`; a VAE of built-in networks keeps the `tfvae-weights-v1` files exactly.
A learned prior (`VAEConfig.prior` "mixture" or "vamp": `model.prior_network` has weights)
adds `prior.weights.h5`, listed and checksummed in the manifest like the others; a prior
without weights (N(0, I)) adds nothing, so such a VAE's files stay what they were.

The format and its writing (`tfvae.model.loading` reads it back; nothing here imports the
VAE class). Written atomically (a temporary sibling directory renamed into place), never over
an existing directory unless `overwrite=True`; on load every file is checked against the
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

from tfvae.base import atomic
from tfvae.config import VAEConfig

__all__ = [
    "save_model",
    "write_model",
    "keras_save_path",
    "MANIFEST",
    "CONFIG_FILE",
    "KERAS_SUFFIX",
    "ARCHITECTURES",
    "own_parts",
    "network_configs",
    "prior_weights",
    "PRIOR_WEIGHTS",
]

CONFIG_FILE = "config.json"
KERAS_SUFFIX = ".keras"  # Keras' own zip format (config + weights), the one `tf_keras` reads
RUN_MODEL_DIR = "model"  # where `train_and_evaluate` saves the model inside a run directory
MANIFEST = "manifest.json"
WEIGHTS = {"encoder": "encoder.weights.h5", "decoder": "decoder.weights.h5"}
PRIOR_WEIGHTS = "prior.weights.h5"  # a learned prior's weights (`prior_weights`)
FORMAT = "tfvae-weights-v1"  # built-in networks: config and weights
OWN_FORMAT = "tfvae-weights-v2"  # and the architecture of each network the user passed
ARCHITECTURES = {"encoder": "encoder.json", "decoder": "decoder.json"}


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
    if not _is_vae(model):
        raise TypeError(f"model must be a tfvae.VAE, got {type(model).__name__}")
    return write_model(model, directory, overwrite)


def _is_vae(model) -> bool:
    """Whether `model` is what a VAE saves as: a VAEConfig and its two networks."""
    return isinstance(getattr(model, "config", None), VAEConfig) and all(
        hasattr(model, part) for part in WEIGHTS
    )


def write_model(model, directory: str | os.PathLike, overwrite: bool = False) -> str:
    """`save_model` without its check of `model` (what `VAE.save` calls)."""
    directory = os.path.abspath(as_path(directory, "directory"))
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


def keras_save_path(filepath, save_format=None):
    """The path `model.save(filepath, save_format=...)` writes (Keras' save route): tfvae's
    directory, or Keras' zip for a `.keras` path or `save_format="keras"` (which adds it).

    Raises:
      ValueError: `save_format` "tf" or "h5" (or a `.h5` path): a SavedModel for
        serving is `tfvae.export(model, path)`; HDF5 holds no distribution heads.
    """
    path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else filepath
    if save_format in ("tf", "h5") or str(path).endswith((".h5", ".hdf5")):
        raise ValueError(
            f"VAE.save writes tfvae's directory or a {KERAS_SUFFIX} file, not "
            f"save_format={save_format or 'h5'!r}: for a SavedModel (TF Serving) use "
            "tfvae.export(model, path)"
        )
    if save_format == "keras" and not str(path).endswith(KERAS_SUFFIX):
        path = f"{path}{KERAS_SUFFIX}"
    return path


def _model_files(model) -> dict:
    """{file name: bytes} of a saved model: config, the user's networks' architectures,
    weights (a learned prior's too) and the manifest of their sha256.

    The weights are HDF5 built in memory (`keras_internals.weights_h5_bytes`), the same
    file `save_weights` writes, but never written to disk by HDF5 itself. A network that
    cannot be saved is refused here, before anything is written.
    """
    from tfvae.engine import keras_internals
    from tfvae.model.network_saving import quiet_tfp_lambdas

    architectures = network_configs(model)
    files = {CONFIG_FILE: model.config.to_json().encode("utf-8")}
    for part, config in architectures.items():
        files[ARCHITECTURES[part]] = (json.dumps(config, indent=1) + "\n").encode("utf-8")
    for part, file in WEIGHTS.items():
        with quiet_tfp_lambdas():
            files[file] = keras_internals.weights_h5_bytes(getattr(model, part))
    if prior_weights(model):
        files[PRIOR_WEIGHTS] = keras_internals.weights_h5_bytes(model.prior_network)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    document = {"format": FORMAT, "sha256": digests}
    if architectures:
        document = {"format": OWN_FORMAT, "networks": sorted(architectures), "sha256": digests}
    manifest = json.dumps(document, indent=2, sort_keys=True)
    files[MANIFEST] = (manifest + "\n").encode("utf-8")
    return files


def _save_keras_zip(model, tmp: str) -> None:
    """Keras' zip written to `tmp` (tf_keras insists on the `.keras` suffix, so it is
    written beside `tmp` under that name, which shares the temporary prefix, then moved)."""
    import tf_keras as tfk

    from tfvae.model.network_saving import quiet_tfp_lambdas

    named = tmp + KERAS_SUFFIX
    try:
        with quiet_tfp_lambdas():
            tfk.saving.save_model(model, named, overwrite=True, save_format="keras")
        os.replace(named, tmp)
    finally:
        if os.path.exists(named):
            os.remove(named)


def prior_weights(model) -> list:
    """The weights of `model`'s prior layer (`VAE.prior_network`): a learned prior's means,
    scales and weights or pseudo-inputs; [] for N(0, I), whose VAE saves no prior file."""
    network = getattr(model, "prior_network", None)
    return list(network.weights) if network is not None else []


def own_parts(model) -> list:
    """The networks of `model` the user passed ("encoder", "decoder"), not built from its config."""
    own = getattr(model, "own_networks", None) or {}
    return [part for part in WEIGHTS if own.get(part)]


def network_configs(model, check: bool = True) -> dict:
    """{part: Keras config} of each network the user passed (`own_parts`); {} for built-in ones.

    Raises:
      ValueError: a network cannot be saved so that it loads elsewhere (names the layer).
    """
    if not own_parts(model):
        return {}
    from tfvae.model.network_saving import network_config

    return {part: network_config(getattr(model, part), part, check) for part in own_parts(model)}


def keras_config(model) -> dict:
    """`VAE.get_config`: what Keras' `.keras` zip records to rebuild the VAE (and, for the
    networks the user passed, their configs under "networks")."""
    config = {"config": model.config.to_dict(), "name": model.name}
    networks = network_configs(model)
    if networks:
        config["networks"] = networks
    return config


def from_keras_config(cls, config: dict, custom_objects=None):
    """`VAE.from_config`: the VAE (of class `cls`) that `keras_config` describes, its own
    networks rebuilt from their configs (weights fresh: Keras loads them after)."""
    networks = build_networks(config.get("networks") or {}, custom_objects)
    return cls(VAEConfig.from_dict(config["config"]), name=config.get("name", "vae"), **networks)


def build_networks(configs: dict, custom_objects=None) -> dict:
    """{part: network} rebuilt from `network_configs`' {part: config} (fresh weights)."""
    unknown = sorted(set(configs) - set(WEIGHTS))
    if unknown:
        raise ValueError(f"saved networks must be 'encoder' or 'decoder', got {unknown}")
    if not configs:
        return {}
    from tfvae.model.network_saving import build_network

    return {part: build_network(c, part, custom_objects) for part, c in configs.items()}


def as_path(value, name: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return os.fspath(value)
