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


# ------------------------------------------------------------------ Keras' own save paths
def assert_same_distributions(a, b, x):
    """Equal `mean` and `log_prob` of p(x|z) (same seed) and of q(z|x)."""
    for pa, pb in ((a(x, seed=4), b(x, seed=4)), (a.encoder(x), b.encoder(x))):
        np.testing.assert_array_equal(pa.mean(), pb.mean())
        np.testing.assert_array_equal(pa.log_prob(pa.mean()), pb.log_prob(pa.mean()))


def test_model_save_writes_tfvae_format(trained, binary_x, tmp_path):
    path = trained.save(tmp_path / "m")
    assert os.path.isfile(os.path.join(path, "manifest.json"))
    assert_same_distributions(trained, load_model(tmp_path / "m"), binary_x)
    trained.save(tmp_path / "m")  # overwrite=True by default, as in Keras
    with pytest.raises(FileExistsError):
        trained.save(tmp_path / "m", overwrite=False)


def test_model_save_keras_file_round_trip(trained, binary_x, tmp_path):
    trained.kl_weight.assign(0.25)
    path = trained.save(tmp_path / "m.keras")
    assert os.path.isfile(path) and sorted(os.listdir(tmp_path)) == ["m.keras"]
    loaded = load_model(path)
    assert isinstance(loaded, VAE) and loaded.config == trained.config
    assert float(loaded.kl_weight.numpy()) == 0.25
    assert_same_distributions(trained, loaded, binary_x)
    # tf_keras reads it too, given the class.
    import tf_keras as tfk

    again = tfk.saving.load_model(path, custom_objects={"VAE": VAE}, compile=False)
    assert_same_distributions(trained, again, binary_x)
    assert trained.save(tmp_path / "n", save_format="keras").endswith("n.keras")


def test_model_save_refuses_savedmodel_and_h5_with_one_line(trained, tmp_path):
    for kwargs in (
        {"filepath": tmp_path / "w.h5"},
        {"filepath": tmp_path / "s", "save_format": "tf"},
    ):
        with pytest.raises(ValueError, match=r"use tfvae\.export\(model, path\)$") as e:
            trained.save(**kwargs)
        assert "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_model_checkpoint_callback_saves_loadable_models(small_config, binary_x, tmp_path):
    import tf_keras as tfk

    model = VAE(small_config)
    model.compile()
    checkpoint = tfk.callbacks.ModelCheckpoint(str(tmp_path / "epoch{epoch}"))
    model.fit(binary_x, epochs=2, batch_size=16, verbose=0, callbacks=[checkpoint])
    assert_same_distributions(model, load_model(tmp_path / "epoch2"), binary_x)


def test_load_model_accepts_a_run_directory(trained, binary_x, tmp_path):
    save_model(trained, tmp_path / "run" / "model")
    assert_same_distributions(trained, load_model(tmp_path / "run"), binary_x)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nor a run directory"):
        load_model(tmp_path / "empty")


def test_model_export_names_tfvae_export_in_one_line(trained, binary_x, tmp_path):
    """The serving layer sits above the model: `model.export` (tf_keras' own would fail on a
    model whose call returns a distribution) says to call `tfvae.export(model, ...)`."""
    from tfvae import export, load_exported

    with pytest.raises(TypeError, match=r"tfvae\.export\(model, base_dir, \.\.\.\)") as e:
        trained.export(tmp_path / "serving", iwae_samples=5)
    assert "\n" not in str(e.value) and not os.path.exists(tmp_path / "serving")
    path = export(trained, tmp_path / "serving", iwae_samples=5)
    assert path == str(tmp_path / "serving" / "1")
    exported = load_exported(tmp_path / "serving")
    out = exported["serving_default"](x=binary_x[:3])
    np.testing.assert_allclose(
        out["z_mean"], trained.encoder(binary_x[:3]).mean().numpy(), rtol=1e-5, atol=1e-6
    )


def test_tf_saved_model_save_points_to_tfvae_export(trained, tmp_path):
    import tensorflow as tf

    with pytest.raises(TypeError, match=r"use tfvae\.export\(model, path\) for a SavedModel") as e:
        tf.saved_model.save(trained, str(tmp_path / "sm"))
    assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "sm" / "saved_model.pb")
    # Checkpoints walk the same objects and still work.
    tf.train.Checkpoint(model=trained).write(str(tmp_path / "ckpt" / "c"))
