"""The tf_keras and TFP private attributes that `tfvae.engine.keras_internals` relies on, pinned.

If an upgrade renames, retypes or repurposes one, a test here fails naming the attribute
and the versions; `tfvae/engine/keras_internals.py` is then the one file to fix.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.engine import keras_internals

tfd = tfp.distributions

VERSIONS = f"tf_keras {tfk.__version__}, tensorflow_probability {tfp.__version__}"
X = np.zeros((8, 2), np.float32)


def make_model(compiled=True, steps_per_execution=1):
    model = tfk.Sequential([tfk.Input((2,)), tfk.layers.Dense(1)])
    if compiled:
        model.compile("sgd", "mse", steps_per_execution=steps_per_execution)
    return model


def require(obj, attribute, expected_type):
    """`obj.attribute`, failing loudly unless it exists with `expected_type`."""
    owner = obj.__name__ if isinstance(obj, type) else type(obj).__name__
    if not hasattr(obj, attribute):
        pytest.fail(
            f"{VERSIONS}: {owner}.{attribute} no longer exists (tfvae.engine.keras_internals)"
        )
    value = getattr(obj, attribute)
    if not isinstance(value, expected_type):
        pytest.fail(
            f"{VERSIONS}: {owner}.{attribute} is a {type(value).__name__}, "
            f"tfvae.engine.keras_internals expects {expected_type}"
        )
    return value


@pytest.mark.parametrize(
    "attribute, expected_type",
    [
        ("_steps_per_execution", tf.Variable),
        ("_train_counter", tf.Variable),
        ("_cluster_coordinator", type(None)),
        ("_distribution_strategy", type(None)),
        ("_is_compiled", bool),
        ("train_tf_function", (type(None), tf.types.experimental.GenericFunction)),
        ("train_function", (type(None), tf.types.experimental.GenericFunction)),
        ("autotune_steps_per_execution", bool),
    ],
)
def test_a_compiled_model_has_the_attribute(attribute, expected_type):
    require(make_model(), attribute, expected_type)


def test_steps_per_execution_is_compiles_setting():
    assert keras_internals.steps_per_execution(make_model(compiled=False)) is None, VERSIONS
    spe = keras_internals.steps_per_execution(make_model(steps_per_execution=3))
    assert spe.dtype == tf.int64 and int(spe.numpy()) == 3, f"{VERSIONS}: {spe!r}"


def test_keras_lowers_steps_per_execution_inside_an_epoch_shorter_than_it():
    """The fused loop reads the variable when it runs, so it follows Keras' lowering."""
    model = make_model(steps_per_execution=8)
    seen = []
    read = tfk.callbacks.LambdaCallback(
        on_train_batch_end=lambda *_: seen.append(
            int(keras_internals.steps_per_execution(model).numpy())
        )
    )
    model.fit(X, X[:, :1], batch_size=4, epochs=1, verbose=0, callbacks=[read])
    assert seen == [2], f"{VERSIONS}: steps per execution during a 2-step epoch: {seen}"
    assert int(keras_internals.steps_per_execution(model).numpy()) == 8, VERSIONS


def test_train_counter_counts_the_steps_of_a_fit():
    model = make_model()
    model.fit(X, X[:, :1], batch_size=2, epochs=1, verbose=0)
    counter = keras_internals.train_counter(model)
    assert counter.dtype == tf.int64 and int(counter.numpy()) == 4, f"{VERSIONS}: {counter!r}"


def test_is_compiled_follows_compile():
    assert keras_internals.is_compiled(make_model(compiled=False)) is False, VERSIONS
    assert keras_internals.is_compiled(make_model()) is True, VERSIONS


def test_strategy_and_coordinator_flags():
    model = make_model()
    assert not keras_internals.uses_cluster_coordinator(model), VERSIONS
    assert not keras_internals.has_distribution_strategy(model), VERSIONS
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        mirrored = make_model()
    assert keras_internals.has_distribution_strategy(mirrored), VERSIONS


def test_multi_worker_mode_is_a_method_of_the_strategies_extended():
    """`_in_multi_worker_mode` must exist (a missing one would silently read as False)."""
    for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0"])):
        assert callable(getattr(strategy.extended, "_in_multi_worker_mode", None)), VERSIONS
        assert keras_internals.in_multi_worker_mode(strategy) is False, VERSIONS


def test_fit_calls_the_train_function_that_was_set():
    model = make_model()
    keras_function = model.make_train_function()
    calls = []

    def counting(iterator):
        calls.append(1)
        return keras_function(iterator)

    keras_internals.set_train_function(model, counting)
    assert model.train_tf_function is counting, VERSIONS
    model.fit(X, X[:, :1], batch_size=4, epochs=1, verbose=0)
    assert len(calls) == 2, f"{VERSIONS}: fit called the installed train function {calls}"


def test_tfp_bernoulli_logits_without_checks():
    require(tfd.Bernoulli, "_log_prob", object)  # the hook `heads.LogitBernoulli` overrides
    logits = tf.constant([-1.0, 0.5])
    got = keras_internals.bernoulli_logits(tfd.Bernoulli(logits=logits))
    np.testing.assert_array_equal(got, logits, err_msg=VERSIONS)


def test_saved_model_save_lists_children_as_savedmodel_and_can_be_refused(tmp_path):
    """`refuse_saved_model` relies on tf.saved_model.save calling `_trackable_children`
    with save_type="savedmodel" before writing, and checkpoints with "checkpoint"."""
    require(tfk.Model, "_trackable_children", object)

    class Refused(tfk.Sequential):
        pass

    keras_internals.refuse_saved_model(Refused, "use tfvae.serving.export")
    model = Refused([tfk.Input((2,)), tfk.layers.Dense(1)])
    with pytest.raises(TypeError, match="use tfvae.serving.export"):
        tf.saved_model.save(model, str(tmp_path / "sm"))
    assert not (tmp_path / "sm" / "saved_model.pb").exists(), VERSIONS
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt" / "c"))
    tf.train.Checkpoint(model=make_model(compiled=False)).read(path).assert_consumed()


def test_weights_h5_bytes_are_what_save_weights_writes(tmp_path):
    """The in-memory HDF5 (tf_keras' `saving_lib.H5IOStore` and `_save_state`) holds the same
    datasets and values as `save_weights`' file, and `load_weights` reads it back."""
    import h5py

    from tfvae import VAE, VAEConfig

    model = VAE(VAEConfig(input_dim=6, latent_dim=2, hidden_units=(5,), decoder="gaussian"))
    (tmp_path / "mem.weights.h5").write_bytes(keras_internals.weights_h5_bytes(model.decoder))
    model.decoder.save_weights(str(tmp_path / "disk.weights.h5"))

    def datasets(path):
        found = {}
        with h5py.File(path, "r") as f:
            f.visititems(
                lambda name, obj: (
                    found.update({name: obj[()]}) if isinstance(obj, h5py.Dataset) else None
                )
            )
        return found

    memory, disk = datasets(tmp_path / "mem.weights.h5"), datasets(tmp_path / "disk.weights.h5")
    assert sorted(memory) == sorted(disk) and len(disk) == len(model.decoder.weights), VERSIONS
    for name in disk:
        np.testing.assert_array_equal(memory[name], disk[name], err_msg=VERSIONS)
    other = VAE(VAEConfig(input_dim=6, latent_dim=2, hidden_units=(5,), decoder="gaussian", seed=9))
    other.decoder.load_weights(str(tmp_path / "mem.weights.h5"))
    for a, b in zip(other.decoder.get_weights(), model.decoder.get_weights()):
        np.testing.assert_array_equal(a, b, err_msg=VERSIONS)
