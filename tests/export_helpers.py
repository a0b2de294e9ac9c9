"""Shared by the export and serving tests: one tiny exported model per decoder, made and
loaded once per process."""

import atexit
import functools
import os
import shutil
import tempfile

IWAE_SAMPLES = 32
INPUT_DIM, LATENT_DIM = 4, 2  # the shapes of the README serving examples


@functools.lru_cache(maxsize=None)
def exported(decoder: str = "bernoulli", max_request_elements=None):
    """(model, version_dir) of a tiny VAE exported to a temp base dir (removed at exit)."""
    from tfvae import VAE, VAEConfig, export

    config = VAEConfig(
        input_dim=INPUT_DIM, latent_dim=LATENT_DIM, hidden_units=(8,), decoder=decoder, seed=3
    )
    model = VAE(config)
    base = tempfile.mkdtemp(prefix="tfvae-export-test-")
    atexit.register(shutil.rmtree, base, True)
    path = export(
        model,
        os.path.join(base, "vae"),
        iwae_samples=IWAE_SAMPLES,
        max_request_elements=max_request_elements,
    )
    return model, path


@functools.lru_cache(maxsize=None)
def loaded_export(decoder: str = "bernoulli"):
    """`tfvae.load_exported` of `exported(decoder)`: the same SavedModel is loaded once."""
    from tfvae import load_exported

    return load_exported(exported(decoder)[1])
