"""Shared fixtures: the real-data directory (skipped with a reason when absent) and tiny data.

Shared functions (the repo root, subprocesses, numpy references) live in tests/helpers.py.
"""

import os
import socket

import numpy as np
import pytest
from helpers import REPO


def _data_dir():
    return os.environ.get("TFVAE_DATA_DIR") or os.path.join(os.path.dirname(REPO), "shared", "data")


@pytest.fixture(scope="session")
def data_dir():
    path = _data_dir()
    if not os.path.isdir(path):
        pytest.skip(f"real data not found at {path!r}: set TFVAE_DATA_DIR to ../shared/data")
    return path


def closed_port_url() -> str:
    """http://127.0.0.1:PORT with nothing listening: a connection there is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="session", autouse=True)
def no_downloads():
    """Tests never reach the internet: dataset downloads (`tfvae.data.download`) go to a closed
    loopback port unless a test serves the files itself. Nor do they write the CLI's XLA
    cache in the home directory (`tfvae.engine.xla_cache`; tests/test_xla_cache.py turns it on)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TFVAE_DATASETS_URL", closed_port_url())
        patch.setenv("TFVAE_XLA_CACHE", "off")
        yield


@pytest.fixture(scope="session")
def digits():
    """The embedded 8x8 digits: all training images, the first 50 test images (a small test
    split keeps evaluation quick)."""
    from tfvae.data.datasets import Data, load_default

    data = load_default()
    return Data(data.x_train, data.x_test[:50], data.image_shape)


@pytest.fixture
def binary_x():
    return (np.random.default_rng(0).random((64, 16)) > 0.5).astype(np.float32)


@pytest.fixture
def small_config():
    from tfvae import VAEConfig

    return VAEConfig(input_dim=16, latent_dim=3, hidden_units=(12,))


@pytest.fixture
def checkpoint_callback(tmp_path):
    """(a `TrainingCheckpoint` writing into tmp_path, its compiled 16-2 VAE): set up as `fit`
    sets it up (optimizer slots built, `on_train_begin` run), no epoch written yet."""
    from tfvae import VAE, VAEConfig
    from tfvae.training import checkpointing

    model = VAE(VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,)))
    model.compile()
    model.optimizer.build(model.trainable_variables)
    callback = checkpointing.TrainingCheckpoint(str(tmp_path))
    callback.set_model(model)
    callback.on_train_begin()
    return callback, model
