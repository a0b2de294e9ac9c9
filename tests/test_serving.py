"""Serving client side: REST bodies and replies, gRPC requests, models.config, warm-up, and
docs/serving.md's examples (request and response shapes checked against a real export)."""

import contextlib
import io
import json
import os
import re
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import INPUT_DIM, LATENT_DIM, exported, loaded_export
from helpers import REPO
from tensorflow_serving.apis import predict_pb2

from tfvae import load_exported
from tfvae.serving import client as serving
from tfvae.serving.signatures import SIGNATURES


def _serve_rest(loaded, body):
    """What TF Serving's REST handler does: JSON -> named tensors -> signature -> JSON.

    Row format: each instance is a dict of named values, stacked along a new first axis;
    the reply lists one dict per output row. Columnar format: each input whole; reply `outputs`.
    """
    body = json.loads(json.dumps(body))  # only what survives JSON
    signature = body.get("signature_name", "serving_default")
    if "instances" in body:
        rows = body["instances"]
        inputs = {k: np.array([r[k] for r in rows]) for k in rows[0]}
        out = loaded[signature](**inputs)
        (n,) = {len(v) for v in out.values()}  # row format needs one batch size in the reply
        return {"predictions": [{k: v[i].tolist() for k, v in out.items()} for i in range(n)]}
    out = loaded[signature](**{k: np.array(v) for k, v in body["inputs"].items()})
    return {"outputs": {k: v.tolist() for k, v in out.items()}}


def _readme_block(marker):
    text = open(os.path.join(REPO, "docs", "serving.md"), encoding="utf-8").read()
    m = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"docs/serving.md has no block after <!-- {marker} -->"
    return m.group(1)


def _curl_json(block):
    m = re.search(r"-d '(.*?)'", block, re.S)
    assert m, block
    return json.loads(m.group(1))


# ------------------------------------------------------------------ README examples
def test_readme_rest_request_is_what_rest_body_builds_and_runs():
    block = _readme_block("serving-rest-request")
    assert "http://localhost:8501/v1/models/vae:predict" in block
    assert serving.rest_url("vae") == "http://localhost:8501/v1/models/vae:predict"
    body = _curl_json(block)
    x = np.array([r["x"] for r in body["instances"]], np.float32)
    assert x.shape[1] == INPUT_DIM
    assert body == serving.rest_body("serving_default", x=x)
    reply = _serve_rest(loaded_export(), body)
    readme_reply = json.loads(_readme_block("serving-rest-response"))
    # The README reply has exactly the structure of the real one: keys and row lengths.
    assert len(readme_reply["predictions"]) == len(reply["predictions"]) == len(x)
    for real, doc in zip(reply["predictions"], readme_reply["predictions"]):
        assert sorted(real) == sorted(doc)
        assert {k: len(v) for k, v in real.items()} == {k: len(v) for k, v in doc.items()}
    parsed = serving.parse_rest_response(json.dumps(reply))
    direct = loaded_export()["serving_default"](x=x)
    for k in direct:
        np.testing.assert_allclose(parsed[k], direct[k], rtol=1e-6)
    assert parsed["reconstruction"].shape == (len(x), INPUT_DIM)
    assert parsed["z_mean"].shape == (len(x), LATENT_DIM)


def test_readme_generate_request_columnar():
    body = _curl_json(_readme_block("serving-rest-generate"))
    assert body == serving.rest_body("generate", fmt="inputs", num_samples=3, seed=42)
    out = serving.parse_rest_response(_serve_rest(loaded_export(), body))
    assert out["z"].shape == (3, LATENT_DIM) and out["sample"].shape == (3, INPUT_DIM)
    # The same request in row format (scalars repeated per row) gives the same draws.
    rows = serving.rest_body("generate", num_samples=3, seed=42)
    assert rows["instances"] == [{"num_samples": 3, "seed": 42}]
    again = serving.parse_rest_response(_serve_rest(loaded_export(), rows))
    np.testing.assert_array_equal(again["sample"], out["sample"])


def test_readme_grpc_client_runs_against_the_export(monkeypatch):
    """Executes the README's gRPC example with a stub that serves the real export."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    loaded = loaded_export()
    seen = []

    class FakeStub:
        def __init__(self, channel):
            assert channel == "channel to localhost:8500"

        def Predict(self, request, timeout=None):
            request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
            seen.append(request)
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            out = loaded[request.model_spec.signature_name](**inputs)
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for k, v in out.items():
                response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
            return response

    fake_grpc = types.SimpleNamespace(insecure_channel=lambda target: f"channel to {target}")
    monkeypatch.setitem(sys.modules, "grpc", fake_grpc)
    monkeypatch.setattr(prediction_service_pb2_grpc, "PredictionServiceStub", FakeStub)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_readme_block("serving-grpc-client"), "docs/serving.md", "exec"), {})
    assert printed.getvalue().strip() == f"(2, {INPUT_DIM}) (2, {LATENT_DIM})"
    (request,) = seen
    assert request.model_spec.name == "vae"
    assert request.inputs["x"].dtype == tf.float32.as_datatype_enum


# ------------------------------------------------------------------ REST / gRPC helpers
def test_rest_body_formats():
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    rows = serving.rest_body("encode", x=x, seed=3)
    assert rows == {
        "signature_name": "encode",
        "instances": [
            {"x": [0.0, 1.0, 2.0, 3.0], "seed": 3},
            {"x": [4.0, 5.0, 6.0, 7.0], "seed": 3},
        ],
    }
    cols = serving.rest_body("encode", fmt="inputs", x=x, seed=3)
    assert cols == {"signature_name": "encode", "inputs": {"x": x.tolist(), "seed": 3}}
    with pytest.raises(ValueError, match="one first dimension"):
        serving.rest_body("encode", x=x, seed=[1, 2, 3])
    with pytest.raises(ValueError, match="fmt must be"):
        serving.rest_body(x=x, fmt="rows")
    with pytest.raises(ValueError, match="non-finite"):
        serving.rest_body(x=[[np.nan, 0, 0, 0]])
    with pytest.raises(ValueError, match="at least one named input"):
        serving.rest_body()
    assert serving.rest_url("m", "h", 9, version=2) == "http://h:9/v1/models/m/versions/2:predict"


def test_parse_rest_response_variants():
    cols = serving.parse_rest_response({"outputs": {"a": [[1, 2]], "b": [3]}})
    assert cols["a"].shape == (1, 2) and cols["b"].tolist() == [3]
    assert serving.parse_rest_response('{"outputs": [1, 2]}')["output"].tolist() == [1, 2]
    assert serving.parse_rest_response({"predictions": [[1], [2]]})["output"].shape == (2, 1)
    with pytest.raises(RuntimeError, match="TF Serving error: bad"):
        serving.parse_rest_response({"error": "bad"})
    with pytest.raises(ValueError, match="not a predict reply"):
        serving.parse_rest_response({"foo": 1})


def test_predict_request_dtypes_and_roundtrip():
    x = np.zeros((2, INPUT_DIM))
    req = serving.predict_request("vae", "encode", version=3, x=x, seed=5)
    req = predict_pb2.PredictRequest.FromString(req.SerializeToString())
    assert req.model_spec.name == "vae" and req.model_spec.signature_name == "encode"
    assert req.model_spec.version.value == 3
    assert tf.make_ndarray(req.inputs["x"]).dtype == np.float32
    assert tf.make_ndarray(req.inputs["seed"]).dtype == np.int64
    response = predict_pb2.PredictResponse()
    response.outputs["z"].CopyFrom(tf.make_tensor_proto(np.ones((2, 3), np.float32)))
    np.testing.assert_array_equal(serving.parse_predict_response(response)["z"], np.ones((2, 3)))


# ------------------------------------------------------------------ config and warm-up
def test_models_config_roundtrip(tmp_path):
    path = serving.write_models_config(
        tmp_path / "models.config",
        [
            {"name": "vae", "base_path": "/models/vae", "versions": [1, 2]},
            {"name": "frey", "base_path": "/models/frey"},
        ],
    )
    config = serving.read_models_config(path)
    vae, frey = config.model_config_list.config
    assert (vae.name, vae.base_path, vae.model_platform) == ("vae", "/models/vae", "tensorflow")
    assert list(vae.model_version_policy.specific.versions) == [1, 2]
    assert frey.model_version_policy.latest.num_versions == 1
    assert "model_config_list" in open(path).read()
    assert os.listdir(tmp_path) == ["models.config"]
    for bad, match in [
        ([{"name": "a", "base_path": "rel/path"}], "absolute path"),
        ([{"name": "a", "base_path": "/a"}, {"name": "a", "base_path": "/b"}], "duplicate"),
        ([{"name": "", "base_path": "/a"}], "non-empty string"),
        ([{"name": "a", "base_path": "/a", "versions": [0]}], "positive ints"),
        ([], "at least one model"),
    ]:
        with pytest.raises(ValueError, match=match):
            serving.write_models_config(tmp_path / "bad.config", bad)


def test_warmup_file_parses_and_replays_in_process():
    path = exported("bernoulli")[1]
    logs = serving.read_warmup(path)
    assert sorted(log.predict_log.request.model_spec.signature_name for log in logs) == sorted(
        SIGNATURES
    )
    loaded = loaded_export()
    for log in logs:
        request = log.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        out = loaded[request.model_spec.signature_name](**inputs)
        assert out and all(np.all(np.isfinite(v)) for v in out.values())


# ------------------------------------------------------------------ the `serving` extra
@pytest.fixture
def without_serving_api(monkeypatch):
    """As if tensorflow-serving-api (the `serving` extra) were not installed."""
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorflow_serving"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)


def test_grpc_config_and_warmup_helpers_name_the_serving_extra(without_serving_api, tmp_path):
    extra = r'pip install "tfvae\[serving\]"'
    x = np.zeros((1, INPUT_DIM))
    with pytest.raises(ModuleNotFoundError, match=extra):
        serving.predict_request("vae", x=x)
    with pytest.raises(ModuleNotFoundError, match=extra):
        serving.write_models_config(tmp_path / "m.config", [{"name": "a", "base_path": "/a"}])
    with pytest.raises(ModuleNotFoundError, match=extra):
        serving.default_warmup_requests(INPUT_DIM, LATENT_DIM)
    # the REST helpers need nothing of it
    assert serving.rest_body(x=x)["instances"] == [{"x": [0.0] * INPUT_DIM}]
    assert not list(tmp_path.iterdir())


def test_export_without_the_serving_extra_skips_only_the_warmup(
    without_serving_api, tmp_path, caplog
):
    from tfvae import export

    model = exported("bernoulli")[0]
    with caplog.at_level("WARNING", logger="tfvae.serving.export"):
        path = export(model, tmp_path / "vae")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert not os.path.exists(os.path.join(path, serving.WARMUP_FILE))
    (record,) = [r for r in caplog.records if r.name == "tfvae.serving.export"]
    assert record.levelname == "WARNING" and "\n" not in record.getMessage()
    assert (
        "warm-up" in record.getMessage() and 'pip install "tfvae[serving]"' in record.getMessage()
    )
    loaded = load_exported(path)
    out = loaded["serving_default"](x=np.full((2, INPUT_DIM), 0.5, np.float32))
    assert out["reconstruction"].shape == (2, INPUT_DIM)
