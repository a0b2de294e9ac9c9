"""`VAE.compile()`'s default steps per execution (`tfvae.engine.executions`): fused steps on arrays
and datasets of known size with no arguments, one step per call where Keras needs it.

The reference is the same model compiled with `steps_per_execution=1` (Keras' one step per
call): the default must take the same steps and report the same numbers.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk
from helpers import assert_same_weights

from tfvae import VAE, VAEConfig, make_dataset
from tfvae.config import STEPS_PER_EXECUTION
from tfvae.engine.executions import never_runs_out_mid_execution
from tfvae.engine.fused_steps import is_fused
from tfvae.engine.keras_internals import steps_per_execution

CONFIG = VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,), seed=1)
X = (np.random.default_rng(0).random((1000, 16)) < 0.3).astype(np.float32)


def compiled(**kwargs):
    model = VAE(CONFIG)
    model.compile(tfk.optimizers.Adam(1e-2), **kwargs)
    return model


def unknown_size(batch=100):
    data = tf.data.Dataset.from_tensor_slices(X).filter(lambda x: True).batch(batch)
    assert int(data.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    return data


@pytest.mark.parametrize("kind", ["array", "dataset"])
def test_compile_without_arguments_fuses_the_steps_of_fit(kind):
    """The README's `model.compile(); model.fit(x, batch_size=...)` takes the fused path, and
    the steps are those of Keras' one step per call."""
    data = X if kind == "array" else make_dataset(X, 96, shuffle=False)
    fit = {"batch_size": 96, "shuffle": False} if kind == "array" else {}
    default = compiled()
    history = default.fit(data, epochs=2, verbose=0, **fit).history
    assert int(steps_per_execution(default).numpy()) == STEPS_PER_EXECUTION
    assert is_fused(default.train_function)
    assert int(default.train_function.fused_steps_run) > 0
    keras_loop = compiled(steps_per_execution=1)
    reference = keras_loop.fit(data, epochs=2, verbose=0, **fit).history
    assert int(default.optimizer.iterations) == int(keras_loop.optimizer.iterations) == 22
    np.testing.assert_allclose(history["loss"], reference["loss"], rtol=1e-5)
    assert_same_weights(default, keras_loop, rtol=1e-5, atol=1e-6)


def test_evaluate_and_predict_by_default_match_one_step_per_call():
    default, keras_loop = compiled(), compiled(steps_per_execution=1)
    keras_loop.set_weights(default.get_weights())
    for data, kwargs in ((X, {"batch_size": 96}), (make_dataset(X, 96, shuffle=False), {})):
        got = default.evaluate(data, verbose=0, return_dict=True, **kwargs)
        want = keras_loop.evaluate(data, verbose=0, return_dict=True, **kwargs)
        assert got == pytest.approx(want, rel=1e-6)
        np.testing.assert_array_equal(
            default.predict(data, verbose=0, output="sample", **kwargs),
            keras_loop.predict(data, verbose=0, output="sample", **kwargs),
        )


@pytest.mark.parametrize("batch_size", [None, 7, 96])
def test_evaluate_and_predict_on_arrays_give_what_keras_array_adapter_gives(batch_size):
    """A numpy array goes to evaluate/predict as the dataset of its batches (no array
    adapter per call): the same batches in order, so the same numbers as Keras' own path
    (`tfk.Model`'s methods, draws restarted as `VAE`'s do), bit for bit; 1000 rows in
    batches of 32 (Keras' default), 7 and 96 all end in a short batch."""
    model = compiled()
    sizes = {} if batch_size is None else {"batch_size": batch_size}
    got = model.evaluate(X, verbose=0, return_dict=True, **sizes)
    sample = model.predict(X, verbose=0, output="sample", **sizes)
    model._draws.assign(0)  # Keras' own path, at the same 128 steps per call
    want = tfk.Model.evaluate(model, X, verbose=0, return_dict=True, **sizes)
    model._draws.assign(0)
    want_sample = tfk.Model.predict(model, X, verbose=0, **sizes)
    assert got == want
    np.testing.assert_array_equal(sample, want_sample)
    # The array did go the dataset route (and the options that keep Keras' do not).
    routed, _ = model._array_batches(X, (), sizes)
    assert isinstance(routed, tf.data.Dataset)
    assert [int(tf.shape(b)[0]) for b in routed][-1] == 1000 % (batch_size or 32)
    for kept in ({"steps": 3}, {"sample_weight": np.ones(1000)}, {"_use_cached_eval_dataset": 1}):
        assert model._array_batches(X, (), kept)[0] is X
    with pytest.raises(ValueError, match="batch_size"):
        model.evaluate(X, batch_size=0, verbose=0)


def test_data_that_may_end_mid_call_runs_one_step_per_call_by_default():
    """Keras refuses data of unknown size at several steps per call and drops the last
    call's predictions when `steps` outruns the data; the default steps per execution
    falls back to one step per call for them, and comes back afterwards."""
    model = compiled()
    model.fit(unknown_size(), epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 20
    assert not is_fused(model.train_function)
    assert int(steps_per_execution(model).numpy()) == STEPS_PER_EXECUTION
    # A finite dataset cut by steps_per_epoch: every batch it has trains.
    model.fit(make_dataset(X, 100), steps_per_epoch=12, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 30
    # Arrays, with validation data of unknown size.
    model.fit(X, batch_size=100, epochs=1, verbose=0, validation_data=unknown_size())
    assert int(model.optimizer.iterations) == 40
    assert model.predict(unknown_size(), verbose=0).shape == X.shape
    assert model.predict(unknown_size(), steps=12, verbose=0).shape == X.shape
    on_arrays = model.evaluate(X, batch_size=100, verbose=0, return_dict=True)
    assert model.evaluate(unknown_size(), verbose=0, return_dict=True) == pytest.approx(on_arrays)
    model.fit(X, batch_size=100, epochs=1, verbose=0)  # known size again: fused
    assert is_fused(model.train_function) and int(model.optimizer.iterations) == 50


def test_an_explicit_steps_per_execution_keeps_keras_rules():
    model = compiled(steps_per_execution=8)
    with pytest.raises(ValueError, match="steps_per_execution"):
        model.fit(unknown_size(), epochs=1, verbose=0)


def test_on_batch_calls_run_their_one_step():
    """Keras' `*_on_batch` with several steps per call ask a one-batch iterator for more."""
    model = compiled()
    model.train_on_batch(X[:100])
    assert int(model.optimizer.iterations) == 1
    assert np.isfinite(model.test_on_batch(X[:100], return_dict=True)["loss"])
    assert model.predict_on_batch(X[:100]).shape == (100, 16)
    assert int(steps_per_execution(model).numpy()) == STEPS_PER_EXECUTION


def test_functions_traced_for_one_step_are_retraced_for_more():
    """After `train_on_batch` / `predict_on_batch` (one step per call), `fit` and `predict`
    must not reuse Keras' single-step functions: each call would run one step where Keras
    counts 128. Without XLA, fit takes Keras' own train function, so this is Keras'."""
    model = VAE(CONFIG)
    model.compile(jit_compile=False)
    model.train_on_batch(X[:100])
    model.fit(X, batch_size=100, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 1 + 10
    model.predict_on_batch(X[:100])
    assert model.predict(X, batch_size=100, verbose=0).shape == X.shape


@pytest.mark.parametrize(
    "data, steps, expected",
    [
        (X, None, True),
        ((X,), None, True),
        (X, 5, False),
        ("dataset", None, True),
        ("dataset", 5, False),
        ("infinite", 5, True),
        ("unknown", None, False),
        (iter([X]), None, False),
    ],
)
def test_which_data_never_runs_out_mid_execution(data, steps, expected):
    if isinstance(data, str):
        batches = tf.data.Dataset.from_tensor_slices(X)
        data = {
            "dataset": batches.batch(100),
            "infinite": batches.repeat().batch(100),
            "unknown": unknown_size(),
        }[data]
    assert never_runs_out_mid_execution(data, steps) is expected
