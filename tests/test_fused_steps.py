"""Fused steps (`tfvae.engine.fused_steps`): the same training as Keras' loop, fewer XLA launches.

The reference is Keras' own train function (`fused_steps=1`): the fused loop must take
the same steps on the same batches, so weights and logged metrics agree.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk

from tfvae import VAE, VAEConfig
from tfvae.engine.fused_steps import is_fused
from tfvae.engine.keras_internals import train_counter

CONFIG = VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,), seed=1)
X = (np.random.default_rng(0).random((1000, 16)) < 0.3).astype(np.float32)


def train(fused_steps, data=X, steps_per_execution=8, epochs=2, **fit):
    model = VAE(CONFIG)
    model.compile(
        tfk.optimizers.Adam(1e-2), steps_per_execution=steps_per_execution, fused_steps=fused_steps
    )
    if isinstance(data, np.ndarray):
        fit.setdefault("batch_size", 96)
        fit.setdefault("shuffle", False)
    history = model.fit(data, epochs=epochs, verbose=0, **fit).history
    return model, history


@pytest.fixture(scope="module")
def keras_loop():
    """Keras' loop on X (11 batches of 96, 2 epochs): one step per call. Keras' own loop takes
    the same steps whatever its steps per execution, so this is every array test's reference."""
    return train(1, steps_per_execution=1)


def assert_same_training(a, b):
    (model_a, history_a), (model_b, history_b) = a, b
    assert int(model_a.optimizer.iterations) == int(model_b.optimizer.iterations)
    assert int(train_counter(model_a)) == int(train_counter(model_b))
    for name in ("loss", "elbo", "kl"):
        np.testing.assert_allclose(history_a[name], history_b[name], rtol=1e-5, err_msg=name)
    for wa, wb in zip(model_a.weights, model_b.weights):
        np.testing.assert_allclose(wa.numpy(), wb.numpy(), rtol=1e-5, atol=1e-6, err_msg=wa.name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "steps_per_execution, fused_steps",
    [
        (8, 3),  # 11 batches of 96: groups of 3, remainders, the short batch inside a group
        (5, 4),  # a remainder step after every group
    ],
)
def test_fused_steps_train_like_the_keras_loop(keras_loop, steps_per_execution, fused_steps):
    fused = train(fused_steps, steps_per_execution=steps_per_execution)
    assert not is_fused(keras_loop[0].train_function)
    assert is_fused(fused[0].train_function)
    assert int(fused[0].optimizer.iterations) == 2 * 11
    assert_same_training(keras_loop, fused)


@pytest.mark.slow
def test_fused_groups_are_capped_at_steps_per_execution(keras_loop):
    """fused_steps 32 with 4 steps per execution: groups of 4, not 32 (which never fill)."""
    fused = train(32, steps_per_execution=4)
    assert fused[0].train_function.group_length == 4
    # 11 batches per epoch: executions of 4, 4 and 3 steps, each one group; in the last,
    # the short batch runs alone after the two full ones.
    assert int(fused[0].train_function.fused_steps_run) == 2 * (4 + 4 + 2)
    assert_same_training(keras_loop, fused)


@pytest.mark.slow
def test_epochs_shorter_than_a_group_run_as_one_shorter_group(keras_loop):
    """Keras lowers steps_per_execution to an epoch's length (11 batches here), so no group
    of 32 fills; the epoch's steps run as one group, all but the short last batch fused."""
    fused = train(32, steps_per_execution=128)
    assert fused[0].train_function.group_length == 32
    assert int(fused[0].train_function.fused_steps_run) == 2 * 10
    assert_same_training(keras_loop, fused)


def test_every_launch_calls_one_compiled_function():
    """Groups, single steps and the short last batch (11 batches of 96 or fewer, 128 steps
    per execution) all run through one traced function, and the step is traced once: an
    epoch compiles one XLA program per batch shape (tests/test_xla_cache.py counts them)."""
    traces = []

    class CountingVAE(VAE):
        def _elbo_terms(self, x, seed, training=None):
            traces.append(x.shape)
            return super()._elbo_terms(x, seed, training)

    model = CountingVAE(CONFIG)
    model.compile(tfk.optimizers.Adam(1e-2), fused_steps=32)
    model.fit(X, batch_size=96, epochs=1, shuffle=False, verbose=0)
    function = model.train_function
    assert int(function.fused_steps_run) == 10
    assert function.run_steps.experimental_get_tracing_count() == 1
    assert len(traces) == 1, traces


@pytest.mark.slow
def test_batches_of_varying_shape_inside_a_group():
    """A group whose batches change shape more than once (sizes 100, 100, 37, 100, 50, 100
    with 6 steps per execution): the leading same-shape batches fuse, the rest run alone,
    and training is Keras' own."""
    sizes = [100, 100, 37, 100, 50, 100]
    offsets = np.cumsum([0] + sizes)
    batches = [X[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    data = tf.data.Dataset.from_generator(
        lambda: iter(batches), output_signature=tf.TensorSpec([None, 16], tf.float32)
    ).apply(tf.data.experimental.assert_cardinality(len(sizes)))
    keras_loop = train(1, data, steps_per_execution=6)
    fused = train(6, data, steps_per_execution=6)
    assert int(fused[0].train_function.fused_steps_run) == 2 * 2
    assert_same_training(keras_loop, fused)


@pytest.mark.slow
def test_fused_steps_on_a_dataset_of_known_and_infinite_size():
    known = tf.data.Dataset.from_tensor_slices(X).batch(100)
    assert_same_training(train(1, known), train(4, known))
    infinite = tf.data.Dataset.from_tensor_slices(X).repeat().batch(100)
    model, _ = train(4, infinite, steps_per_epoch=6, epochs=2)
    assert is_fused(model.train_function)
    assert int(model.optimizer.iterations) == 12


def test_datasets_of_pairs_fuse_like_plain_ones():
    """Elements (x, y) (y ignored by a VAE) travel through the group's TensorArrays leaf by
    leaf: the same training as Keras' loop, the short last batch alone."""
    pairs = tf.data.Dataset.from_tensor_slices((X, X[:, :3])).batch(96)
    keras_loop, fused = train(1, pairs), train(4, pairs)
    assert int(fused[0].train_function.fused_steps_run) == 2 * (4 + 4 + 2)
    assert_same_training(keras_loop, fused)


@pytest.mark.slow
def test_data_that_may_end_mid_execution_keeps_the_keras_loop():
    # 10 batches of unknown size asked for 12 steps: the data ends with an OutOfRange error
    # mid-execution, where a fused group would drop the batches it had already fetched.
    unknown = tf.data.Dataset.from_tensor_slices(X).filter(lambda x: True).batch(100)
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    model, _ = train(4, unknown, steps_per_epoch=12, epochs=1)
    assert not is_fused(model.train_function)
    assert int(model.optimizer.iterations) == 10  # every batch trained
    # Back on data of known size, the next fit fuses again.
    model.fit(X, batch_size=100, epochs=1, verbose=0)
    assert is_fused(model.train_function)
    assert int(model.optimizer.iterations) == 10 + 10


def test_fused_steps_need_xla_and_several_steps_per_execution():
    model, _ = train(4, steps_per_execution=1)
    assert not is_fused(model.train_function)
    model = VAE(CONFIG)
    model.compile(jit_compile=False, steps_per_execution=8, fused_steps=4)
    model.fit(X, batch_size=100, epochs=1, verbose=0)
    assert not is_fused(model.train_function)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_fused_steps_must_be_a_positive_integer(bad):
    with pytest.raises((ValueError, TypeError), match="fused_steps"):
        VAE(CONFIG).compile(fused_steps=bad)


class ExtraLogVAE(VAE):
    """A subclass whose train_step returns more than the metrics' results."""

    def train_step(self, data):
        logs = super().train_step(data)
        return {**logs, "twice_kl": 2.0 * logs["kl"]}


@pytest.mark.parametrize("fused_steps", [1, 4])
def test_a_subclass_train_step_returns_its_own_logs_when_fused(fused_steps):
    """A train_step of the subclass's own: the fused loop carries its outputs (traced for
    their structure), so `fit` logs what it returns, exactly as Keras' loop does."""
    model = ExtraLogVAE(CONFIG)
    model.compile(tfk.optimizers.Adam(1e-2), steps_per_execution=8, fused_steps=fused_steps)
    history = model.fit(X, batch_size=96, epochs=2, shuffle=False, verbose=0).history
    assert is_fused(model.train_function) == (fused_steps > 1)
    np.testing.assert_allclose(history["twice_kl"], 2 * np.array(history["kl"]), rtol=1e-6)
    if fused_steps > 1:
        # 11 batches per epoch at 8 steps per call: a group of 8, then 3 with the short batch
        assert int(model.train_function.fused_steps_run) == 2 * (8 + 2)


class Unbuilt(tfk.Model):
    """A subclassed network: no variables until its first call."""

    def __init__(self, units, make_distribution):
        super().__init__()
        self.hidden = tfk.layers.Dense(8, activation="tanh")
        self.out = tfk.layers.Dense(units)
        self.make_distribution = make_distribution

    def call(self, x):
        return self.make_distribution(self.out(self.hidden(x)))


def test_networks_built_in_the_first_trace_still_fuse():
    """Encoder and decoder that make their variables when first called: the optimizer's
    slots and the outputs' structure wait for the first trace (which makes them), and the
    fused loop trains as Keras' does."""
    import tensorflow_probability as tfp

    tfd = tfp.distributions

    def q(params):
        return tfd.MultivariateNormalDiag(params[..., :2], tf.nn.softplus(params[..., 2:]) + 1e-3)

    def p(logits):
        return tfd.Independent(tfd.Bernoulli(logits=logits), 1)

    def fit(fused_steps):
        tf.keras.utils.set_random_seed(3)  # the same initial weights for both
        model = VAE(CONFIG, encoder=Unbuilt(4, q), decoder=Unbuilt(16, p))
        assert not model.encoder.built
        model.compile(tfk.optimizers.Adam(1e-2), steps_per_execution=8, fused_steps=fused_steps)
        return model, model.fit(X, batch_size=96, epochs=2, shuffle=False, verbose=0).history

    fused, keras_loop = fit(4), fit(1)
    assert is_fused(fused[0].train_function)
    assert_same_training(keras_loop, fused)


def test_datasets_with_sparse_or_ragged_parts_keep_the_keras_loop():
    """A `y` that is sparse or ragged (ignored by a VAE) cannot sit in a group's
    TensorArrays: such data trains through Keras' loop, every batch; plain data fuses
    again afterwards."""
    # As many entries in every row (like the ragged one): its size follows the batch's (a
    # sparse part whose size varies from batch to batch compiles Keras' step once per size).
    sparse = tf.sparse.from_dense(tf.ones([1000, 3]))
    ragged = tf.RaggedTensor.from_row_lengths(tf.ones([3000]), [3] * 1000)
    model = VAE(CONFIG)
    model.compile(tfk.optimizers.Adam(1e-2), fused_steps=4)
    for y in (sparse, ragged):
        model.fit(tf.data.Dataset.from_tensor_slices((X, y)).batch(96), epochs=1, verbose=0)
        assert not is_fused(model.train_function)
    assert int(model.optimizer.iterations) == 2 * 11
    model.fit(X, batch_size=96, epochs=1, verbose=0)
    assert is_fused(model.train_function)
    assert int(model.optimizer.iterations) == 3 * 11
