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
MANY = settings(SETTINGS, max_examples=300)  # numpy-only checks: cheap, so more examples
DTYPES = [np.float16, np.float32, np.float64, np.int32, np.uint8, np.int64, np.bool_]


@pytest.fixture(scope="module")
def models():
    return {
        decoder: VAE(VAEConfig(input_dim=D, latent_dim=J, hidden_units=(4,), decoder=decoder))
        for decoder in ("bernoulli", "gaussian")
    }


def arrays():
    """Arrays of rank 0-3, small sizes (half of them `[batch, D]`), any of DTYPES; float values
    all in [0, 1] (valid for either decoder), wide, or mixed with NaN and infinities."""
    shapes = st.one_of(
        st.tuples(st.sampled_from([0, 1, 2, 3]), st.just(D)),
        st.lists(st.sampled_from([0, 1, 2, 3, D, D + 1]), min_size=0, max_size=3).map(tuple),
    )
    unit = st.floats(0, 1, width=16) | st.sampled_from([0.0, 1.0, 0.5])
    odd = st.sampled_from([math.nan, math.inf, -math.inf])
    floats = st.sampled_from([unit, st.floats(-2, 3, width=16), unit | odd, odd | unit])

    def of(dtype, shape):
        if not np.issubdtype(dtype, np.floating):
            return hnp.arrays(dtype, shape)
        return floats.flatmap(lambda elements: hnp.arrays(dtype, shape, elements=elements))

    return st.sampled_from(DTYPES).flatmap(lambda dtype: shapes.flatmap(lambda s: of(dtype, s)))


def _valid(x, decoder):
    if x.ndim != 2 or x.shape[1] != D:
        return False
    values = x.astype(np.float64)
    if not np.all(np.isfinite(values)):
        return False
    return decoder != "bernoulli" or values.size == 0 or (values.min() >= 0 and values.max() <= 1)


def _valid_latents(z):
    """z for the decoder: `[batch, J]` of finite numbers."""
    return z.ndim == 2 and z.shape[1] == J and bool(np.all(np.isfinite(z.astype(np.float64))))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_count(value):
    """What `check_positive_int` allows for the values ODD draws: an int (not a bool) >= 1."""
    return _is_int(value) and value >= 1


def _valid_seed(value):
    """What `check_seed` allows for the values ODD draws: an int >= 0 or a pair of ints."""
    if isinstance(value, list):
        return len(value) == 2 and all(_is_int(v) for v in value)
    return _is_int(value) and value >= 0


def _assert_clear(error, name):
    """A ValueError or TypeError whose message is about `name`: a line of it (Keras wraps a
    layer's error in lines of its own) starts with the name."""
    assert isinstance(error, (ValueError, TypeError)), repr(error)
    lines = str(error).splitlines()
    assert any(line.startswith(f"{name} ") for line in lines), f"{name!r} not the subject: {error}"


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


@MANY
@given(x=arrays(), unit=st.booleans(), required=st.booleans(), as_numpy=st.booleans())
def test_check_array_accepts_exactly_the_valid_arrays(x, unit, required, as_numpy):
    valid = _valid(x, "bernoulli" if unit else "gaussian") and not (required and len(x) == 0)
    try:
        out = check_array(
            x, D, "my_arg", unit_interval=unit, require_examples=required, as_numpy=as_numpy
        )
    except Exception as e:  # noqa: BLE001
        _assert_clear(e, "my_arg")
        assert not valid, f"valid array refused: {e!r}"
        return
    assert valid, "invalid array accepted"
    assert isinstance(out, np.ndarray) == as_numpy and out.dtype == np.float32
    np.testing.assert_array_equal(out if as_numpy else out.numpy(), x.astype(np.float32))


def test_check_array_hands_float32_numpy_back_without_a_copy():
    x = np.zeros((3, D), np.float32)
    assert check_array(x, D, "x", as_numpy=True) is x
    assert check_array(x.astype(np.float64), D, "x", as_numpy=True).dtype == np.float32


@SETTINGS
@given(z=arrays())
def test_decode_returns_a_distribution_or_a_clear_error(models, z):
    z = z[..., :J] if z.ndim == 2 else z
    try:
        px = models["gaussian"].decode(z)
    except Exception as e:  # noqa: BLE001
        _assert_clear(e, "z")
        assert not _valid_latents(z), f"valid z refused: {e!r}"
        return
    assert _valid_latents(z), "invalid z accepted"
    assert px.batch_shape.as_list() == [z.shape[0]] and px.event_shape.as_list() == [D]


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
        # the count is checked first, so a refusal names the first invalid argument
        _assert_clear(e, "seed" if _valid_count(num_samples) else "num_examples")
        assert not (_valid_count(num_samples) and _valid_seed(seed)), f"valid refused: {e!r}"
    else:
        assert _valid_count(num_samples) and _valid_seed(seed), "invalid arguments accepted"
        assert out.shape == (num_samples, D) and set(np.unique(out)) <= {0.0, 1.0}
    try:
        out = model.log_likelihood(np.zeros((2, D), np.float32), importance_samples=num_samples)
    except Exception as e:  # noqa: BLE001
        _assert_clear(e, "importance_samples")
        assert not _valid_count(num_samples), f"valid num_samples refused: {e!r}"
    else:
        assert _valid_count(num_samples), "invalid num_samples accepted"
        assert out.shape == (2,) and np.all(out < 0)


@MANY
@given(value=ODD)
def test_scalar_validators(value):
    try:
        out = check_positive_int(value, "the_count")
    except (ValueError, TypeError) as e:
        _assert_clear(e, "the_count")
        assert str(e).startswith("the_count must be an integer >= 1, got "), e
        assert not _valid_count(value), f"valid count refused: {e!r}"
    else:
        assert _valid_count(value), f"invalid count accepted: {value!r}"
        assert out == value and type(out) is int
    try:
        out = check_seed(value, "the_seed")
    except (ValueError, TypeError) as e:
        _assert_clear(e, "the_seed")
        assert not _valid_seed(value), f"valid seed refused: {e!r}"
    else:
        assert _valid_seed(value), f"invalid seed accepted: {value!r}"
        assert out is value


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
        and (f.get("jit_compile") is None or isinstance(f.get("jit_compile"), bool))
    )
