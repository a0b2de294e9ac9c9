"""Faults provoked on purpose: NaN batches, divergence, bad data, corrupt files, clipping.

The SIGKILL-and-resume tests are in test_run_lifecycle.py.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfvae import (
    VAE,
    TrainConfig,
    VAEConfig,
    load_model,
    save_model,
    train_and_evaluate,
)
from tfvae.data.datasets import Data, load_default
from tfvae.data.input_pipeline import epoch_dataset
from tfvae.engine.callbacks import NonFiniteLossError, StopOnNonFiniteLoss
from tfvae.model.saving import sha256_file
from tfvae.training import checkpointing

TINY = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(16,))
FAST = dict(eval_samples=2, jit_compile=False)


def _tiny_model(config=TINY):
    """One step per call: batch hooks then see every batch, so a non-finite loss is caught
    at its own batch (compile's default runs 128 per call)."""
    model = VAE(config)
    model.compile(jit_compile=False, steps_per_execution=1)
    return model


# ----------------------------------------------------------------- divergence detection
def test_nan_injected_into_tf_data_batch_stops_training_naming_epoch_and_batch(digits):
    x = digits.x_train[:80].copy()
    x[7 * 8 + 3, 5] = np.nan  # global batch 8 (1-based): epoch 2, batch 3 of 5 per epoch
    ds = tf.data.Dataset.from_tensor_slices(x).batch(8)  # tf.data values are not scanned
    model = _tiny_model()
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(ds, epochs=3, steps_per_epoch=5, verbose=0, callbacks=[StopOnNonFiniteLoss()])
    err = info.value
    assert (err.epoch, err.batch) == (2, 3)
    assert "epoch 2, batch 3" in str(err)
    assert "reconstruction" in err.terms  # NaN x gives NaN log p(x|z)
    # given back the state at the start of epoch 2
    assert int(model.optimizer.iterations) == 5 and err.restored_to == (2, 1)


def test_plain_fit_stops_on_a_non_finite_loss_by_default(digits):
    """`model.fit` itself (no tfvae callback given) stops at the NaN batch; opting out keeps
    Keras' behaviour: training runs on, to NaN weights."""
    x = digits.x_train[:40].copy()
    x[2 * 8 + 1, 0] = np.nan  # batch 3 of the first epoch
    ds = tf.data.Dataset.from_tensor_slices(x).batch(8)
    model = _tiny_model()
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 3"):
        model.fit(ds, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 0  # stopped at batch 3, given back epoch 1's start
    model = _tiny_model()
    model.fit(ds, epochs=2, verbose=0, stop_on_non_finite=False)
    assert int(model.optimizer.iterations) == 10
    assert not all(np.isfinite(w).all() for w in model.get_weights())


def test_with_several_steps_per_call_fit_stops_after_the_call_that_went_non_finite(digits):
    """compile()'s default (128 steps per call): batch hooks see the end of each call, so the
    stop comes there, naming the call's last batch; the next epoch never starts."""
    x = digits.x_train[:40].copy()
    x[2 * 8 + 1, 0] = np.nan  # batch 3 of 5; one call holds the whole epoch
    ds = tf.data.Dataset.from_tensor_slices(x).batch(8)
    model = VAE(TINY)
    model.compile()
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 5"):
        model.fit(ds, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 0  # given back the state before that call


def test_callback_reports_only_the_term_that_went_non_finite():
    callback = StopOnNonFiniteLoss(raise_error=False)
    callback.set_model(_tiny_model())
    callback.on_epoch_begin(4)
    callback.on_train_batch_end(0, {"loss": 3.0, "reconstruction": -2.0, "kl": 1.0})
    assert callback.error is None and not callback.model.stop_training
    callback.on_train_batch_end(6, {"loss": np.inf, "reconstruction": 2.0, "kl": np.inf})
    assert callback.model.stop_training
    assert callback.error.terms == ("kl",)
    assert "epoch 5, batch 7" in str(callback.error) and "reconstruction term" not in str(
        callback.error
    )


def test_pathological_learning_rate_fails_loudly_through_train_and_evaluate(digits, tmp_path):
    config = TrainConfig(epochs=3, learning_rate=1e30, **FAST)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch \d+: .* non-finite"):
        train_and_evaluate(TINY, config, digits, str(tmp_path / "run"), verbose=0)
    assert not os.path.exists(tmp_path / "run" / "model")  # nothing saved from NaN weights


def test_training_data_with_nan_or_bad_range_is_refused(digits):
    x_bad = digits.x_train.copy()
    x_bad[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"data\.x_train contains NaN or inf.*\(3, 2\)"):
        train_and_evaluate(
            TINY, TrainConfig(epochs=1, **FAST), Data(x_bad, digits.x_test, (8, 8, 1))
        )
    with pytest.raises(ValueError, match=r"data\.x_test must lie in \[0, 1\]"):
        train_and_evaluate(
            TINY, TrainConfig(epochs=1, **FAST), Data(digits.x_train, digits.x_test * 16, (8, 8, 1))
        )
    with pytest.raises(ValueError, match=r"data\.x_test is empty"):
        train_and_evaluate(
            TINY, TrainConfig(epochs=1, **FAST), Data(digits.x_train, digits.x_test[:0], (8, 8, 1))
        )
    with pytest.raises(TypeError, match="train_config must be a TrainConfig"):
        train_and_evaluate(TINY, {"epochs": 1}, digits)


# ---------------------------------------------------------------------- gradient clipping
def test_clipnorm_is_a_global_norm_clip_that_bounds_the_update(digits):
    """Adam's first step is lr * g / (|g| + eps): clipping g to a tiny norm freezes the step."""
    full_batch = dict(epochs=1, batch_size=len(digits.x_train), **FAST)
    untrained = VAE(TINY)
    init = untrained.encoder.get_weights() + untrained.decoder.get_weights()

    def max_change(clipnorm):
        model, _, _ = train_and_evaluate(
            TINY, TrainConfig(clipnorm=clipnorm, **full_batch), digits, verbose=0
        )
        assert int(model.optimizer.iterations) == 1
        assert model.optimizer.global_clipnorm == clipnorm
        trained = model.encoder.get_weights() + model.decoder.get_weights()
        return max(float(np.abs(a - b).max()) for a, b in zip(trained, init))

    assert max_change(None) > 5e-4  # ~ learning rate 1e-3
    assert max_change(1e-9) < 2e-5  # <= lr * 1e-9 / eps(1e-7) = 1e-5


# ------------------------------------------------------------------------- determinism
@pytest.mark.slow
def test_same_seed_same_losses_epoch_by_epoch(digits):
    config = TrainConfig(epochs=3, dynamic_binarization=True, **FAST)
    full = load_default(binarization="dynamic")
    data = Data(full.x_train, full.x_test[:50], full.image_shape, binary=False)
    _, first, _ = train_and_evaluate(TINY, config, data, verbose=0)
    _, second, _ = train_and_evaluate(TINY, config, data, verbose=0)
    assert len(first["loss"]) == 3
    assert first["loss"] == second["loss"] and first["kl"] == second["kl"]
    assert len(set(first["loss"])) == 3  # the losses do change from epoch to epoch


def test_epoch_order_depends_only_on_seed_and_epoch():
    x = np.arange(10, dtype=np.float32)[:, None]
    full, steps = epoch_dataset(x, 4, seed=3, initial_epoch=0, epochs=3)
    batches = [b.numpy()[:, 0] for b in full]
    assert steps == 3 and len(batches) == 9
    epochs = [np.concatenate(batches[i * 3 : i * 3 + 3]) for i in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(10))  # each epoch a permutation
    assert not np.array_equal(epochs[1], epochs[2])
    late, _ = epoch_dataset(x, 4, seed=3, initial_epoch=2, epochs=3)
    np.testing.assert_array_equal(np.concatenate([b.numpy()[:, 0] for b in late]), epochs[2])


# --------------------------------------------------------------- resume bookkeeping
def _interrupted_run(digits, workdir, epochs=2):
    """A finished run with its model removed: what a kill after the last epoch leaves."""
    _, history, _ = train_and_evaluate(
        TINY, TrainConfig(epochs=epochs, **FAST), digits, str(workdir), verbose=0
    )
    import shutil

    shutil.rmtree(workdir / "model")
    return history


@pytest.mark.slow
def test_resume_refuses_a_different_config_and_continues_a_longer_one(digits, tmp_path):
    history = _interrupted_run(digits, tmp_path)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch-000001", "epoch-000002"]
    with pytest.raises(ValueError, match=r"model_config\.latent_dim: saved 2, now 3"):
        train_and_evaluate(
            TINY.replace(latent_dim=3), TrainConfig(epochs=2, **FAST), digits, str(tmp_path)
        )
    with pytest.raises(ValueError, match=r"train_config\.learning_rate: saved 0\.001, now 0\.01"):
        train_and_evaluate(
            TINY, TrainConfig(epochs=2, learning_rate=0.01, **FAST), digits, str(tmp_path)
        )
    with pytest.raises(FileExistsError, match="resume=True"):
        train_and_evaluate(TINY, TrainConfig(epochs=3, **FAST), digits, str(tmp_path), resume=False)
    model, longer, _ = train_and_evaluate(
        TINY, TrainConfig(epochs=3, **FAST), digits, str(tmp_path), verbose=0
    )
    assert longer["loss"][:2] == history["loss"] and len(longer["loss"]) == 3
    assert int(model.optimizer.iterations) == 3 * 15  # 1437 examples / 100 per batch
    saved = json.load(open(tmp_path / "metrics.json"))
    assert len(saved["history"]["loss"]) == 3


@pytest.mark.slow
def test_corrupt_checkpoint_and_run_files_are_detected(digits, tmp_path):
    _interrupted_run(digits, tmp_path)
    for name in ("epoch-000001", "epoch-000002"):  # a corrupt latest alone is skipped
        checkpoint = tmp_path / "checkpoints" / name
        data_file = next(p for p in checkpoint.iterdir() if ".data-" in p.name)
        with open(data_file, "r+b") as f:
            f.truncate(os.path.getsize(data_file) // 2)
    latest = checkpoint
    with pytest.raises(
        ValueError, match=r"no intact checkpoint.*epoch-000002: .*ckpt\.data-.* is corrupt or trunc"
    ):
        train_and_evaluate(TINY, TrainConfig(epochs=2, **FAST), digits, str(tmp_path))
    (latest / "state.json").write_text('{"format": "tfvae-train')
    with pytest.raises(ValueError, match=r"state\.json.* is corrupt or truncated"):
        train_and_evaluate(TINY, TrainConfig(epochs=2, **FAST), digits, str(tmp_path))
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"run\.json.* is corrupt or truncated"):
        train_and_evaluate(TINY, TrainConfig(epochs=2, **FAST), digits, str(tmp_path))
    # overwrite=True discards the broken run and starts afresh
    _, history, _ = train_and_evaluate(
        TINY, TrainConfig(epochs=1, **FAST), digits, str(tmp_path), verbose=0, overwrite=True
    )
    assert len(history["loss"]) == 1


def test_a_checkpoint_write_that_fails_half_way_leaves_the_previous_one(tmp_path, monkeypatch):
    model = _tiny_model()
    model.optimizer.build(model.trainable_variables)
    callback = checkpointing.TrainingCheckpoint(str(tmp_path))
    callback.set_model(model)
    (tmp_path / ".epoch-000004.tmp-x1y2").mkdir()  # debris of a write killed half-way
    callback.on_train_begin()
    callback.on_epoch_end(0, {"loss": 1.0})
    callback.on_epoch_end(1, {"loss": float("nan")})  # a diverged epoch is never saved
    assert os.listdir(tmp_path) == ["epoch-000001"]

    def crash(path, obj, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpointing.atomic, "write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        callback.on_epoch_end(1, {"loss": 0.5})
    assert os.listdir(tmp_path) == ["epoch-000001"]  # no partial epoch-000002, no temp dir
    epoch, history = checkpointing.restore_checkpoint(str(tmp_path / "epoch-000001"), model)
    assert epoch == 1 and history == {"loss": [1.0]}


# ------------------------------------------------------------------- saved weights
def test_weights_of_another_latent_size_are_refused_on_load(tmp_path):
    path = save_model(VAE(TINY), tmp_path / "m")
    config_file = os.path.join(path, "config.json")
    with open(config_file) as f:
        raw = json.load(f)
    raw["latent_dim"] = 5
    with open(config_file, "w") as f:
        json.dump(raw, f)
    # Re-sign the edited config, so only the shape mismatch remains to be caught.
    manifest_file = os.path.join(path, "manifest.json")
    manifest = json.load(open(manifest_file))
    manifest["sha256"]["config.json"] = sha256_file(config_file)
    json.dump(manifest, open(manifest_file, "w"))
    with pytest.raises(ValueError, match=r"does not fit the config .*latent_dim=5"):
        load_model(path)


def test_save_and_load_arguments_are_checked(tmp_path):
    with pytest.raises(TypeError, match="model must be a tfvae.VAE, got dict"):
        save_model({}, tmp_path / "m")
    with pytest.raises(TypeError, match="directory must be a path.*NoneType"):
        load_model(None)
    with pytest.raises(TypeError, match="directory must be a path.*int"):
        save_model(VAE(TINY), 3)


def test_data_loaders_refuse_bad_arrays(tmp_path):
    from tfvae.data.datasets import load_array
    from tfvae.data.input_pipeline import make_dataset

    bad = np.ones((4, 3, 2), np.float32)
    bad[1, 2, 0] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"bad\.npy'\[train\] contains NaN or inf"):
        load_array(str(tmp_path / "bad.npy"))
    np.save(tmp_path / "text.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError, match=r"text\.npy'\[train\] must be numeric"):
        load_array(str(tmp_path / "text.npy"))
    with pytest.raises(ValueError, match=r"x must be a non-empty \[num_examples, D\].*\(0, 3\)"):
        make_dataset(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match="x contains NaN"):
        make_dataset(bad.reshape(4, 6))
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        make_dataset(np.ones((4, 6), np.float32), batch_size=2.5)


def test_resume_on_other_training_data_is_refused_naming_both(tmp_path):
    """run.json records the data (source, shape, sha256): a resume on other data is refused,
    on the same data (or from a run.json recorded without data) it goes on."""
    from tfvae import TrainConfig, VAEConfig
    from tfvae.training.checkpointing import CheckpointError, dataset_identity, prepare_run

    config, train = VAEConfig(input_dim=4), TrainConfig()
    x = np.zeros((10, 4), np.float32)
    first = dataset_identity(x, {"dataset": "a.npy"})
    prepare_run(str(tmp_path), config, train, dataset=first)
    prepare_run(str(tmp_path), config, train, dataset=dataset_identity(x.copy(), {"dataset": "b"}))
    other = x.copy()
    other[3, 2] = 1.0
    with pytest.raises(CheckpointError, match="other data") as e:
        prepare_run(str(tmp_path), config, train, dataset=dataset_identity(other, {"dataset": "c"}))
    # the same data found at another path updated the recipe; the message names both sides
    assert "'b'" in str(e.value) and "'c'" in str(e.value)
    legacy = tmp_path / "legacy"
    prepare_run(str(legacy), config, train)  # a run recorded before datasets were
    prepare_run(str(legacy), config, train, dataset=first)
    assert json.loads((legacy / "run.json").read_text())["dataset"] == first
