"""A fit that diverges gives the model back its last finite state (issue 34, item 1).

`StopOnNonFiniteLoss` copies the weights and optimizer state as a call into the train
function begins (`tfvae.engine.last_finite`) and puts them back when the loss goes NaN/inf.
The references are independent: models fitted from the same start on the batches before
that call alone, which the restored model must equal bit for bit (weights, beta, the
optimizer's step counter and Adam's moments), before it is exported like any other.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import one_line_error, run_python

import tfvae
from tfvae import VAE, TrainConfig, VAEConfig, train_and_evaluate
from tfvae.cli.app import main
from tfvae.engine import last_finite
from tfvae.engine.callbacks import HistoryCSV, NonFiniteLossError
from tfvae.training import checkpointing

tfd, tfpl = tfp.distributions, tfp.layers
TINY = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(16,))
BATCH = 8


@pytest.fixture
def keep_every_4(monkeypatch):
    """A copy at every call of 4 steps (the default keeps one every 128 steps): short data
    then diverges after a copy taken mid-epoch."""
    monkeypatch.setattr(last_finite, "KEEP_EVERY", 4)


def _state(model) -> list:
    """What a restore puts back, as arrays: the weights, beta and the optimizer's variables
    (its step counter and Adam's moments)."""
    variables = [*model.trainable_variables, model.kl_weight, *model.optimizer.variables]
    return [v.numpy() for v in variables]


def _assert_same_state(model, reference) -> None:
    got, want = _state(model), _state(reference)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)  # bit for bit: the same steps on the same batches


def _fit_diverging(model, data, epochs=1, **kwargs) -> NonFiniteLossError:
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(data, epochs=epochs, verbose=0, **kwargs)
    return info.value


def _with_bad_row(x, batch: int, value: float) -> np.ndarray:
    """`x` with one value of the 1-based `batch` (of `BATCH` rows) replaced by `value`."""
    x = x.copy()
    x[(batch - 1) * BATCH + 2, 3] = value
    return x


# ------------------------------------------------------------ the default compile (XLA)
@pytest.mark.parametrize("kind", ["arrays", "tf.data"])
def test_fit_gives_back_the_state_before_the_call_that_diverged(
    digits, kind, tmp_path, keep_every_4
):
    """12 batches in calls of 4 (fused XLA steps); batch 10 diverges, so the model holds the
    state before batch 9: that of a model fitted on batches 1-8 alone. Arrays are scanned
    for NaN, so theirs is an overflow (a Gaussian decoder at x = 3e38); tf.data's a NaN."""
    x = digits.x_train[: 12 * BATCH]
    if kind == "arrays":
        config = dataclasses.replace(TINY, decoder="gaussian")
        bad, clean, fit = _with_bad_row(x, 10, 3e38), x[: 8 * BATCH], {"batch_size": BATCH}
        fit["shuffle"] = False
    else:
        config = TINY
        bad = tf.data.Dataset.from_tensor_slices(_with_bad_row(x, 10, np.nan)).batch(BATCH)
        clean, fit = bad.take(8), {}
    model, reference = VAE(config), VAE(config)
    for m in (model, reference):
        m.compile(steps_per_execution=4)
    error = _fit_diverging(model, bad, **fit)
    assert (error.epoch, error.batch, error.restored_to) == (1, 12, (1, 9))
    assert "in one of batches 9-12" in str(error)
    assert "restored to those before batch 9 of epoch 1 (the last finite ones)" in str(error)
    reference.fit(clean, epochs=1, verbose=0, **fit)
    assert int(model.optimizer.iterations) == 8
    _assert_same_state(model, reference)
    if kind == "tf.data":  # NaN weights were refused: "non-finite weights"
        assert os.path.isdir(tfvae.export(model, tmp_path / "vae"))


def test_one_step_per_call_gives_back_the_start_of_the_epoch(digits):
    """At one step per call (data cut by `steps_per_epoch`) a copy is kept as each epoch
    begins: a NaN in batch 3 of epoch 2 gives back the state after epoch 1."""
    x = digits.x_train[: 12 * BATCH]
    rows = np.concatenate([x, _with_bad_row(x, 3, np.nan)])
    data = tf.data.Dataset.from_tensor_slices(rows).batch(BATCH)  # epoch 2: the NaN copy
    model, reference = VAE(TINY), VAE(TINY)
    for m in (model, reference):
        m.compile(jit_compile=False)
    error = _fit_diverging(model, data, steps_per_epoch=12, epochs=2)
    assert (error.epoch, error.batch, error.restored_to) == (2, 3, (2, 1))
    assert "restored to those at the start of epoch 2" in str(error)
    reference.fit(data, epochs=1, steps_per_epoch=12, verbose=0)
    _assert_same_state(model, reference)


def test_a_copy_is_kept_every_128_steps_and_at_each_epoch_start():
    state = last_finite.LastFiniteState()
    assert last_finite.KEEP_EVERY == 128
    assert state.due(5)  # nothing kept yet
    state.at = (0, 0)
    state.ran(127)
    assert not state.due(127) and state.due(0)
    state.ran(1)
    assert state.due(128)


def test_weights_already_non_finite_are_not_kept_and_the_message_says_so(digits):
    model = VAE(TINY)
    model.compile(jit_compile=False)
    kernel = model.decoder.trainable_variables[0]
    kernel.assign(tf.fill(kernel.shape, np.nan))
    error = _fit_diverging(model, digits.x_train[:32], batch_size=BATCH)
    assert error.restored_to is None
    assert "the weights are those the diverged call left" in str(error)


# ------------------------------------------------- your own networks, train steps, replicas
def _own_networks():
    encoder = tfk.Sequential(
        [
            tfk.layers.InputLayer([64]),
            tfk.layers.Dense(tfpl.MultivariateNormalTriL.params_size(2)),
            tfpl.MultivariateNormalTriL(2),
        ]
    )
    decoder = tfk.Sequential(
        [
            tfk.layers.InputLayer([2]),
            tfk.layers.Dense(64),
            tfpl.IndependentBernoulli(64, tfd.Bernoulli.logits),
        ]
    )
    return VAE(TINY, encoder=encoder, decoder=decoder)


class _OwnStep(VAE):
    """A train step of the user's: the ELBO's gradient through `optimizer.minimize`."""

    def train_step(self, data):
        seed = tf.stack([tf.constant(9), tf.cast(self.optimizer.iterations, tf.int32)])
        with tf.GradientTape() as tape:
            reconstruction, kl = self._elbo_terms(data, seed, training=True)
            loss = tf.reduce_mean(kl - reconstruction)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return {"loss": loss}


@pytest.mark.parametrize("make", [_own_networks, lambda: _OwnStep(TINY)], ids=["networks", "step"])
def test_your_networks_and_train_steps_get_their_state_back(digits, make, keep_every_4):
    """TFP layers (Keras' loop, no XLA) and a train step of the user's (fused XLA steps,
    its own outputs) restore the same way: the state before batch 5 (calls of 4)."""
    x = digits.x_train[: 8 * BATCH]
    data = tf.data.Dataset.from_tensor_slices(_with_bad_row(x, 6, np.nan)).batch(BATCH)
    model, reference = make(), make()
    reference.set_weights(model.get_weights())
    for m in (model, reference):
        m.compile(steps_per_execution=4)
    tfk.utils.set_random_seed(1)  # TFP's layers draw from TensorFlow's global seed too
    error = _fit_diverging(model, data)
    assert error.restored_to == (1, 5)
    tfk.utils.set_random_seed(1)
    reference.fit(data.take(4), epochs=1, verbose=0)
    _assert_same_state(model, reference)


_MIRRORED = """
import json, numpy as np
from tfvae.engine.distribute import use_logical_cpus
devices = use_logical_cpus(2)
import tensorflow as tf
from tfvae import VAE, VAEConfig
from tfvae.data.datasets import load_default
from tfvae.engine import last_finite
from tfvae.engine.callbacks import HistoryCSV, NonFiniteLossError
last_finite.KEEP_EVERY = 4
strategy = tf.distribute.MirroredStrategy(devices)
x = load_default().x_train[:64].copy()
x[5 * 8 + 2, 3] = np.nan  # batch 6 of 8 (global batches of 8: 4 rows a replica)
data = tf.data.Dataset.from_tensor_slices(x).batch(8)
models = []
for _ in range(2):
    with strategy.scope():
        models.append(VAE(VAEConfig(input_dim=64, latent_dim=2, hidden_units=(16,))))
        models[-1].compile(steps_per_execution=4)
try:
    models[0].fit(data, epochs=1, verbose=0)
    restored = None
except NonFiniteLossError as e:
    restored = e.restored_to
models[1].fit(data.take(4), epochs=1, verbose=0)
def state(m):
    return [v.numpy() for v in [*m.trainable_variables, *m.optimizer.variables]]
pairs = list(zip(state(models[0]), state(models[1])))
print(json.dumps({"restored": restored, "same": all(np.array_equal(a, b) for a, b in pairs),
                  "iterations": int(models[0].optimizer.iterations.numpy())}))
"""


def test_two_replicas_get_their_mirrored_state_back():
    result = run_python(["-c", _MIRRORED])
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"restored": [1, 5], "same": True, "iterations": 4}


# ------------------------------------------------------------- train_and_evaluate, the CLI
class _LearningRateBomb(tfk.callbacks.Callback):
    """Sets a learning rate that overflows the weights as epoch 2 begins."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.model.optimizer.learning_rate.assign(1e30)


def test_a_diverged_run_keeps_its_finite_checkpoint_and_writes_nothing_else(digits, tmp_path):
    workdir = tmp_path / "run"
    config = TrainConfig(epochs=3, batch_size=200, eval_samples=2, jit_compile=False)
    callbacks = [_LearningRateBomb(), HistoryCSV(str(workdir / "history.csv"))]
    with pytest.raises(NonFiniteLossError, match="at the start of epoch 2") as info:
        train_and_evaluate(TINY, config, digits, str(workdir), verbose=0, callbacks=callbacks)
    assert info.value.epoch == 2 and info.value.restored_to == (2, 1)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["epoch-000001"]
    assert not (workdir / "model").exists() and not (workdir / "metrics.json").exists()
    rows = (workdir / "history.csv").read_text().splitlines()
    assert len(rows) == 2 and "nan" not in rows[1] and "inf" not in rows[1]  # header, epoch 1
    model = VAE(TINY)
    model.compile()
    path, epoch, _ = checkpointing.restore_latest(str(workdir / "checkpoints"), model)
    assert epoch == 1 and all(np.isfinite(w).all() for w in model.get_weights())


def test_the_cli_fails_in_one_line_saying_what_was_restored(tmp_path, capsys):
    out = tmp_path / "diverged"
    argv = ["train", "--out", str(out), "--dataset", "default", "--epochs", "2"]
    argv += ["--hidden-units", "8", "--batch-size", "200", "--eval-samples", "2"]
    argv += ["--no-jit-compile", "--quiet", "--learning-rate", "1e30"]
    assert main(argv) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith("tfvae train: error: training diverged at epoch 1, batch ")
    assert "weights and optimizer state restored to those at the start of epoch 1" in line
