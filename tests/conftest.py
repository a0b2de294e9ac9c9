"""Shared fixtures: the real-data directory (skipped with a reason when absent) and tiny data."""

import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data_dir():
    return os.environ.get("TFVAE_DATA_DIR") or os.path.join(os.path.dirname(REPO), "shared", "data")


@pytest.fixture(scope="session")
def data_dir():
    path = _data_dir()
    if not os.path.isdir(path):
        pytest.skip(f"real data not found at {path!r}: set TFVAE_DATA_DIR to ../shared/data")
    return path


@pytest.fixture
def binary_x():
    return (np.random.default_rng(0).random((64, 16)) > 0.5).astype(np.float32)


@pytest.fixture
def small_config():
    from tfvae import VAEConfig

    return VAEConfig(input_dim=16, latent_dim=3, hidden_units=(12,))
