"""Save -> load round trip and the failure modes of files on disk."""

import os

import numpy as np
import pytest

from tfvae import VAE, load_model, save_model


@pytest.fixture
def trained(small_config, binary_x):
    model = VAE(small_config.replace(decoder="gaussian"))
    model.compile()
    model.fit(binary_x, epochs=1, batch_size=16, verbose=0)
    return model


def test_round_trip_reproduces_outputs(trained, binary_x, tmp_path):
    path = save_model(trained, tmp_path / "m")
    loaded = load_model(path)
    assert loaded.config == trained.config
    for a, b in (
        (trained(binary_x, seed=4), loaded(binary_x, seed=4)),
        (trained.encoder(binary_x), loaded.encoder(binary_x)),
    ):
        np.testing.assert_array_equal(a.mean(), b.mean())
        np.testing.assert_array_equal(a.stddev(), b.stddev())
        np.testing.assert_array_equal(a.log_prob(a.mean()), b.log_prob(a.mean()))
    np.testing.assert_array_equal(trained.generate(3, seed=1), loaded.generate(3, seed=1))


def test_never_overwrites_silently(trained, tmp_path):
    path = save_model(trained, tmp_path / "m")
    before = {f: open(os.path.join(path, f), "rb").read() for f in os.listdir(path)}
    other = VAE(trained.config.replace(seed=9))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_model(other, path)
    after = {f: open(os.path.join(path, f), "rb").read() for f in os.listdir(path)}
    assert before == after
    save_model(other, path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary or backup left behind


def test_corrupt_files_are_reported(trained, tmp_path):
    path = save_model(trained, tmp_path / "m")
    weights = os.path.join(path, "decoder.weights.h5")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    with pytest.raises(ValueError, match="decoder.weights.h5.*corrupt or truncated"):
        load_model(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "absent")
    os.remove(os.path.join(path, "manifest.json"))
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_model(path)
