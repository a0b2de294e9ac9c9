"""One request cannot harm a server: every signature refuses bad x/z with the Python API's
message, requests over the export's budget of rows x samples are refused, integer inputs are
never wrapped, and `log_likelihood` gives a row the same value at any position.

Requests go through the session-based loader without Python feed checks (as TF Serving
sends them); after each refusal a good request must still be answered."""

import json
import os

import numpy as np
import pytest
from export_helpers import INPUT_DIM, IWAE_SAMPLES, LATENT_DIM, exported, loaded_export
from helpers import REPO, run_python
from request_probe import SessionRunner

from tfvae.config import MAX_SAMPLES
from tfvae.serving import client as serving
from tfvae.serving.export import METADATA_FILE
from tfvae.serving.signatures import DEFAULT_REQUEST_BYTES, make_serving_module

SMALL_BUDGET = 100  # rows x samples: 3 log_likelihood rows (K = 32), 100 rows otherwise
X_SIGNATURES = ("serving_default", "encode", "log_likelihood")


def _runner(decoder, budget=None):
    key = (decoder, budget)
    if key not in _RUNNERS:
        _RUNNERS[key] = SessionRunner(exported(decoder, *([budget] if budget else []))[1])
    return _RUNNERS[key]


_RUNNERS = {}


def _x(rows=4):
    return np.random.default_rng(1).random((rows, INPUT_DIM)).astype(np.float32)


def _feeds(signature, value):
    if signature == "decode":
        return {"z": value}
    if signature == "encode":
        return {"x": value, "seed": np.int64(3)}
    return {"x": value}


def _answers_a_good_request(runner):
    out = runner.run("log_likelihood", {"x": _x(2)})
    return out["iwae"].shape == (2,) and bool(np.all(np.isfinite(out["iwae"])))


def _python_api_error(model, signature, value):
    """What the Python API raises for the same input (None if it accepts it)."""
    call = {
        "serving_default": model.encode,
        "encode": model.encode,
        "log_likelihood": model.log_likelihood,
        "decode": model.decode,
    }[signature]
    try:
        call(value)
    except ValueError as e:
        return str(e)
    return None


def _with(value, index, new):
    value = value.copy()
    value[index] = new
    return value


def _bad_x():
    x = _x()
    return {
        "rank-1 x": x[0],
        "rank-3 x": x[:, :, None],
        "scalar x": np.float32(0.5),
        "x one feature short": x[:, :-1],
        "NaN x": _with(x, (2, 1), np.nan),
        "-inf x": _with(x, (1, 3), -np.inf),
        "x=5": np.full_like(x, 5.0),
        "x in [-0.25, 1.5]": _with(_with(x, (0, 0), -0.25), (3, 2), 1.5),
    }


def _bad_z():
    z = np.random.default_rng(2).normal(size=(3, LATENT_DIM)).astype(np.float32)
    return {
        "rank-1 z": z[0],
        "rank-3 z": z[:, :, None],
        "z one column too many": np.concatenate([z, z[:, :1]], 1),
        "NaN z": _with(z, (1, 0), np.nan),
        "z=5": np.full_like(z, 5.0),  # a valid latent code
    }


CASES = [(sig, label) for sig in X_SIGNATURES for label in _bad_x()]
CASES += [("decode", label) for label in _bad_z()]


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("signature, label", CASES)
def test_bad_input_gets_the_python_api_message(decoder, signature, label):
    model, _ = exported(decoder)
    runner = _runner(decoder)
    value = {**_bad_x(), **_bad_z()}[label]
    expected = _python_api_error(model, signature, value)
    got = runner.error(signature, _feeds(signature, value))
    if expected is None:  # accepted by the Python API: answered, with finite values
        assert got is None, got
        out = runner.run(signature, _feeds(signature, value))
        assert all(np.all(np.isfinite(v)) for v in out.values())
    else:
        assert got is not None and expected in got, (expected, got)
        assert got.startswith("assertion failed: [") and "Traceback" not in got
    assert _answers_a_good_request(runner)


def test_bernoulli_range_and_finiteness_are_what_the_python_api_refuses():
    """The cases above include refusals: x=5 only for Bernoulli, NaN for both."""
    model_b, _ = exported("bernoulli")
    model_g, _ = exported("gaussian")
    big = np.full((1, INPUT_DIM), 5.0, np.float32)
    assert "must lie in [0, 1]" in _python_api_error(model_b, "log_likelihood", big)
    assert _python_api_error(model_g, "log_likelihood", big) is None
    message = _runner("bernoulli").error("log_likelihood", {"x": big})
    assert "x must lie in [0, 1] for a bernoulli decoder, got values in [5, 5]" in message
    out = _runner("gaussian").run("log_likelihood", {"x": big})
    assert np.all(np.isfinite(out["iwae"])) and np.all(out["iwae"] < 0)


# ------------------------------------------------------------------ the budget
def _budget_message(signature, rows, samples, unit="rows"):
    total = rows * samples
    return (
        f"{signature}: this request is {rows} {unit} x {samples} samples per row = {total}, "
        f"over the budget of {SMALL_BUDGET} rows x samples set at export "
        "(max_request_elements); "
        f"send at most {SMALL_BUDGET // samples} {unit} per request, or re-export with "
        f"tfvae.export(..., max_request_elements={total}) or more (from the command line: "
        f"tfvae export RUN --max-request-elements {total})"
    )


def test_rows_x_samples_over_the_budget_refused_naming_it():
    runner = _runner("bernoulli", SMALL_BUDGET)
    rows = SMALL_BUDGET // IWAE_SAMPLES  # 3 rows x 32 samples = 96 <= 100
    assert runner.run("log_likelihood", {"x": _x(rows)})["iwae"].shape == (rows,)
    got = runner.error("log_likelihood", {"x": _x(rows + 1)})
    assert _budget_message("log_likelihood", rows + 1, IWAE_SAMPLES) in got
    for signature in ("serving_default", "encode"):
        assert runner.error(signature, _feeds(signature, _x(SMALL_BUDGET))) is None
        got = runner.error(signature, _feeds(signature, _x(SMALL_BUDGET + 1)))
        assert _budget_message(signature, SMALL_BUDGET + 1, 1) in got
    z = np.zeros((SMALL_BUDGET + 1, LATENT_DIM), np.float32)
    assert runner.error("decode", {"z": z[:-1]}) is None
    assert _budget_message("decode", SMALL_BUDGET + 1, 1) in runner.error("decode", {"z": z})
    seed = np.int64(1)
    assert runner.error("generate", {"num_samples": np.int32(SMALL_BUDGET), "seed": seed}) is None
    got = runner.error("generate", {"num_samples": np.int32(SMALL_BUDGET + 1), "seed": seed})
    assert _budget_message("generate", SMALL_BUDGET + 1, 1, "rows (num_samples)") in got
    assert _answers_a_good_request(runner)
    meta = json.loads(
        open(
            os.path.join(exported("bernoulli", SMALL_BUDGET)[1], "assets.extra", METADATA_FILE)
        ).read()
    )
    assert meta["max_request_elements"] == SMALL_BUDGET


def test_default_budget_fits_one_gib_of_the_examples_tensors():
    """Default: DEFAULT_REQUEST_BYTES of float32 over the per-example tensors, which are at
    least the activations every example must have; the export records and enforces it."""
    model, path = exported("bernoulli")
    meta = json.loads(open(os.path.join(path, "assets.extra", METADATA_FILE)).read())
    per_example = meta["floats_per_element"]
    hidden = sum(model.config.hidden_units)
    assert per_example >= 2 * INPUT_DIM + 2 * hidden + 3 * LATENT_DIM  # x, logits, z, ...
    budget = meta["max_request_elements"]
    assert budget == DEFAULT_REQUEST_BYTES // (4 * per_example)
    seed = np.int64(0)
    got = _runner("bernoulli").error(
        "generate", {"num_samples": np.int32(budget + 1), "seed": seed}
    )
    assert budget > MAX_SAMPLES  # so generate's cap, VAE.generate's, refuses it first
    assert f"num_samples must be at most {MAX_SAMPLES} " in got
    rows = budget // IWAE_SAMPLES + 1  # refused before any row is computed
    got = _runner("bernoulli").error(
        "log_likelihood", {"x": np.zeros((rows, INPUT_DIM), np.float32)}
    )
    assert f"this request is {rows} rows x {IWAE_SAMPLES} samples per row" in got


def test_bigger_model_gets_a_smaller_default_budget():
    from tfvae import VAE, VAEConfig

    small = make_serving_module(exported("bernoulli")[0], iwae_samples=IWAE_SAMPLES)
    big = make_serving_module(VAE(VAEConfig(input_dim=64, latent_dim=4, hidden_units=(64,))))
    assert big.floats_per_element > 8 * small.floats_per_element
    assert big.max_request_elements < small.max_request_elements / 8


@pytest.mark.parametrize(
    "budget, error, match",
    [
        (
            IWAE_SAMPLES - 1,
            ValueError,
            rf"max_request_elements must be an integer >= {IWAE_SAMPLES}, "
            rf"got {IWAE_SAMPLES - 1} \(iwae_samples",
        ),
        (0, ValueError, "max_request_elements must be an integer >= 1"),
        ("100", TypeError, "max_request_elements must be an integer"),
    ],
)
def test_bad_budget_refused_at_export(tmp_path, budget, error, match):
    model, _ = exported("bernoulli")
    with pytest.raises(error, match=match):
        make_serving_module(model, iwae_samples=IWAE_SAMPLES, max_request_elements=budget)


# ------------------------------------------------------------------ integer inputs
@pytest.mark.parametrize("num_samples", [2**32 + 3, np.int64(2**32 + 3), 2**31, 0, -1])
def test_num_samples_out_of_range_refused_before_the_int32_cast(num_samples):
    loaded = loaded_export("bernoulli")
    limit = r"must be an integer in \[1, 2147483647\] \(int32\)"
    with pytest.raises(ValueError, match=rf"'num_samples' {limit}, got {int(num_samples)}$"):
        loaded["generate"](num_samples=num_samples, seed=1)
    with pytest.raises(ValueError, match=limit):
        serving.rest_body("generate", fmt="inputs", num_samples=num_samples, seed=1)
    with pytest.raises(ValueError, match=limit):
        serving.predict_request("vae", "generate", num_samples=num_samples, seed=1)


def test_integer_inputs_refuse_fractions_and_wrapping_seeds():
    loaded = loaded_export("bernoulli")
    with pytest.raises(TypeError, match="'num_samples' must hold integers"):
        loaded["generate"](num_samples=2.5, seed=1)
    with pytest.raises(ValueError, match=r"'seed' must be an integer in \[-9223372036854775808"):
        loaded["generate"](num_samples=2, seed=2**64 + 1)
    # in range: the same draws as ever
    a = loaded["generate"](num_samples=np.int64(3), seed=np.uint64(7))
    b = loaded["generate"](num_samples=3, seed=7)
    np.testing.assert_array_equal(a["sample"], b["sample"])


def test_non_positive_num_samples_refused_in_the_graph():
    runner = _runner("bernoulli")
    for n in (0, -5):
        got = runner.error("generate", {"num_samples": np.int32(n), "seed": np.int64(1)})
        assert f"num_samples must be an integer >= 1, got {n}" in got
    assert _answers_a_good_request(runner)


# ------------------------------------------------------------------ row independence
@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_log_likelihood_of_a_row_does_not_depend_on_its_position(decoder):
    loaded = loaded_export(decoder)
    rng = np.random.default_rng(5)
    x = (rng.random((1, INPUT_DIM)) > 0.5).astype(np.float32)
    alone = loaded["log_likelihood"](x=x)
    batch = rng.random((7, INPUT_DIM)).astype(np.float32)
    batch[5] = x[0]
    big = rng.random((40, INPUT_DIM)).astype(np.float32)
    big[33] = x[0]
    for rows, at in ((batch, 5), (big, 33)):
        out = loaded["log_likelihood"](x=rows)
        for name in ("elbo", "iwae"):
            assert out[name][at] == alone[name][0], (name, out[name][at], alone[name][0])
    # ... and the session-based loader (as TF Serving runs it) gives the same numbers
    again = _runner(decoder).run("log_likelihood", {"x": batch})
    np.testing.assert_array_equal(again["iwae"][5], alone["iwae"][0])


# ------------------------------------------------------------------ a fresh process
@pytest.mark.slow
def test_fresh_process_without_tfvae_gets_the_python_api_messages(tmp_path):
    """The session-based loader in a process where tfvae and TFP are unimportable."""
    model, path = exported("bernoulli", SMALL_BUDGET)
    x = _x()
    requests = {
        "good": ("log_likelihood", {"x": x[:2]}),
        "rank-1 x": ("log_likelihood", {"x": x[0]}),
        "x=5": ("serving_default", {"x": np.full_like(x, 5.0)}),
        "NaN x": ("encode", {"x": _with(x, (3, 2), np.nan), "seed": np.int64(1)}),
        "rows x samples over budget": ("log_likelihood", {"x": _x(4)}),
        "num_samples 0": ("generate", {"num_samples": np.int32(0), "seed": np.int64(1)}),
    }
    arrays = {f"{label}|{sig}|{k}": v for label, (sig, f) in requests.items() for k, v in f.items()}
    np.savez(tmp_path / "requests.npz", **arrays)
    script = os.path.join(REPO, "tests", "request_probe.py")
    proc = run_python([script, path, str(tmp_path / "requests.npz"), str(tmp_path / "r.json")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["modules"] == []
    got = report["requests"]
    expected = {
        "rank-1 x": _python_api_error(model, "log_likelihood", x[0]),
        "x=5": _python_api_error(model, "serving_default", np.full_like(x, 5.0)),
        "NaN x": _python_api_error(model, "encode", _with(x, (3, 2), np.nan)),
        "rows x samples over budget": _budget_message("log_likelihood", 4, IWAE_SAMPLES),
        "num_samples 0": "num_samples must be an integer >= 1, got 0",
    }
    for label, message in expected.items():
        assert message and got[label]["error"] and message in got[label]["error"], label
        assert got[label]["then_ok"], label
