"""Property-based tests: random shapes, dtypes and values never cause an unexplained error.

For every input the model call and the validators either return a correct result or raise
one of our clear exceptions (ValueError/TypeError) whose message names the argument.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfvae import VAE, TrainConfig, VAEConfig
from tfvae.data.validation import check_array, check_positive_int, check_seed

D, J = 6, 2
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float16, np.float32, np.float64, np.int32, np.uint8, np.int64, np.bool_]


@pytest.fixture(scope="module")
def models():
    return {
        decoder: VAE(VAEConfig(input_dim=D, latent_dim=J, hidden_units=(4,), decoder=decoder))
        for decoder in ("bernoulli", "gaussian")
    }


def arrays():
    """Arrays of rank 0-3, small sizes (D itself often), any of DTYPES, wild values."""
    shapes = st.lists(st.sampled_from([0, 1, 2, 3, D, D + 1]), min_size=0, max_size=3).map(tuple)
    return st.sampled_from(DTYPES).flatmap(
        lambda dtype: shapes.flatmap(
            lambda shape: hnp.arrays(
                dtype,
                shape,
                elements=st.floats(-2, 3, width=16)
                | st.sampled_from([0.0, 1.0, 0.5, math.nan, math.inf, -math.inf])
                if np.issubdtype(dtype, np.floating)
                else None,
            )
        )
    )


def _valid(x, decoder):
    if x.ndim != 2 or x.shape[1] != D:
        return False
    values = x.astype(np.float64)
    if not np.all(np.isfinite(values)):
        return False
    return decoder != "bernoulli" or values.size == 0 or (values.min() >= 0 and values.max() <= 1)


def _assert_clear(error, name):
    assert isinstance(error, (ValueError, TypeError)), repr(error)
    assert name in str(error), f"{name!r} not named in: {error}"


@SETTINGS
@given(x=arrays(), decoder=st.sampled_from(["bernoulli", "gaussian"]))
def test_model_call_returns_a_distribution_or_a_clear_error(models, x, decoder):
    model = models[decoder]
    try:
        px = model(x, seed=1)
    except Exception as e:  # noqa: BLE001 - the property is about which exceptions
        assert not _valid(x, decoder), f"valid input refused: {e!r}"
        _assert_clear(e, "x")
        return
    assert _valid(x, decoder)
    assert px.batch_shape.as_list() == [x.shape[0]] and px.event_shape.as_list() == [D]
    log_p = px.log_prob(np.clip(x.astype(np.float32), 0, 1)).numpy()
    assert log_p.shape == (x.shape[0],) and np.all(np.isfinite(log_p))


@SETTINGS
@given(x=arrays(), unit=st.booleans(), required=st.booleans(), as_numpy=st.booleans())
def test_check_array_accepts_exactly_the_valid_arrays(x, unit, required, as_numpy):
    try:
        out = check_array(
            x, D, "my_arg", unit_interval=unit, require_examples=required, as_numpy=as_numpy
        )
    except Exception as e:  # noqa: BLE001
        _assert_clear(e, "my_arg")
        return
    assert _valid(x, "bernoulli" if unit else "gaussian") and not (required and len(x) == 0)
    assert isinstance(out, np.ndarray) == as_numpy and out.dtype == np.float32
    np.testing.assert_array_equal(out if as_numpy else out.numpy(), x.astype(np.float32))


def test_check_array_hands_float32_numpy_back_without_a_copy():
    x = np.zeros((3, D), np.float32)
    assert check_array(x, D, "x", as_numpy=True) is x
    assert check_array(x.astype(np.float64), D, "x", as_numpy=True).dtype == np.float32


@SETTINGS
@given(z=arrays())
def test_decode_returns_a_distribution_or_a_clear_error(models, z):
    try:
        px = models["gaussian"].decode(z[..., :J] if z.ndim == 2 else z)
    except Exception as e:  # noqa: BLE001
        _assert_clear(e, "z")
        return
    assert px.batch_shape.as_list()[0] == z.shape[0]


ODD = st.one_of(
    st.integers(-3, 5),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
    st.lists(st.integers(-2, 5), max_size=3),
)


@SETTINGS
@given(num_samples=ODD, seed=ODD)
def test_generate_and_likelihood_arguments(models, num_samples, seed):
    model = models["bernoulli"]
    try:
        out = model.generate(num_samples, seed=seed)
    except Exception as e:  # noqa: BLE001
        _assert_clear(e, "num_samples" if "num_samples" in str(e) else "seed")
    else:
        assert out.shape == (num_samples, D) and set(np.unique(out)) <= {0.0, 1.0}
    try:
        out = model.log_likelihood(np.zeros((2, D), np.float32), num_samples=num_samples)
    except Exception as e:  # noqa: BLE001
        _assert_clear(e, "num_samples")
    else:
        assert out.shape == (2,) and np.all(out < 0)


@SETTINGS
@given(value=ODD)
def test_scalar_validators(value):
    try:
        assert check_positive_int(value, "n") == value >= 1
    except (ValueError, TypeError) as e:
        _assert_clear(e, "n")
    try:
        check_seed(value, "the_seed")
    except (ValueError, TypeError) as e:
        _assert_clear(e, "the_seed")


FIELD_VALUES = {
    "input_dim": ODD,
    "latent_dim": ODD,
    "decoder": st.sampled_from(["bernoulli", "gaussian", "nope", 3]),
    "hidden_units": ODD,
    "activation": st.sampled_from(["tanh", "relu", "", None]),
    "weight_init": st.sampled_from(["glorot_uniform", "fan_in_uniform", "torch", 1]),
    "kl_weight": ODD,
    "min_log_var": ODD,
    "max_log_var": ODD,
    "image_shape": ODD,
    "seed": ODD,
}


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(sorted(FIELD_VALUES)), st.none(), max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: FIELD_VALUES[k] for k in keys})
    )
)
def test_vae_config_fields_are_validated_by_name(fields):
    try:
        config = VAEConfig(**fields)
    except (ValueError, TypeError) as e:
        # (a cross-field error names one field after "VAEConfig." and the other after it)
        assert "VAEConfig." in str(e) and any(k in str(e) for k in fields), e
        assert not _valid_vae_fields(fields), f"valid fields refused: {e}"
        return
    assert _valid_vae_fields(fields), f"invalid fields accepted: {fields!r}"
    for name, value in fields.items():
        assert getattr(config, name) == (tuple(value) if isinstance(value, list) else value)
    assert VAEConfig.from_json(config.to_json()) == config


def _int_at_least(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _valid_vae_fields(fields):
    """What VAEConfig's docstring allows, restated for the values FIELD_VALUES draws."""
    f = {"input_dim": 64, "min_log_var": -8.0, "max_log_var": 8.0, "image_shape": None, **fields}
    shape, units = f["image_shape"], f.get("hidden_units", [1])
    return (
        _int_at_least(f["input_dim"], 1)
        and _int_at_least(f.get("latent_dim", 1), 1)
        and _int_at_least(f.get("seed", 0), 0)
        and f.get("decoder", "bernoulli") in ("bernoulli", "gaussian")
        and f.get("activation", "tanh") in ("tanh", "relu")
        and f.get("weight_init", "glorot_uniform") in ("glorot_uniform", "fan_in_uniform")
        and isinstance(units, (list, tuple))
        and len(units) > 0
        and all(_int_at_least(u, 1) for u in units)
        and _finite_number(f.get("kl_weight", 1.0))
        and f.get("kl_weight", 1.0) >= 0
        and _finite_number(f["min_log_var"])
        and _finite_number(f["max_log_var"])
        and f["min_log_var"] < f["max_log_var"]
        and (
            shape is None
            or isinstance(shape, list)
            and len(shape) == 3
            and all(_int_at_least(s, 1) for s in shape)
            and math.prod(shape) == f["input_dim"]
        )
    )


TRAIN_FIELDS = {
    "epochs": ODD,
    "batch_size": ODD,
    "learning_rate": ODD,
    "kl_warmup_epochs": ODD,
    "clipnorm": ODD,
    "eval_samples": ODD,
    "jit_compile": ODD,
    "fused_steps": ODD,
    "seed": ODD,
}


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(sorted(TRAIN_FIELDS)), st.none(), max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: TRAIN_FIELDS[k] for k in keys})
    )
)
def test_train_config_fields_are_validated_by_name(fields):
    try:
        config = TrainConfig(**fields)
    except (ValueError, TypeError) as e:
        assert any(f"TrainConfig.{k}" in str(e) for k in fields), e
        assert not _valid_train_fields(fields), f"valid fields refused: {e}"
        return
    assert _valid_train_fields(fields), f"invalid fields accepted: {fields!r}"
    for name, value in fields.items():
        assert getattr(config, name) == value


def _valid_train_fields(fields):
    """What TrainConfig's docstring allows, restated for the values TRAIN_FIELDS draws."""
    f = fields
    learning_rate, clipnorm = f.get("learning_rate", 1e-3), f.get("clipnorm")
    return (
        _int_at_least(f.get("epochs", 0), 0)
        and _int_at_least(f.get("batch_size", 1), 1)
        and _int_at_least(f.get("kl_warmup_epochs", 0), 0)
        and _int_at_least(f.get("eval_samples", 1), 1)
        and _int_at_least(f.get("fused_steps", 1), 1)
        and _int_at_least(f.get("seed", 0), 0)
        and _finite_number(learning_rate)
        and learning_rate > 0
        and (clipnorm is None or _finite_number(clipnorm) and clipnorm > 0)
        and isinstance(f.get("jit_compile", True), bool)
    )
