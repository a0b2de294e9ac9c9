"""TensorFlow Serving client side: REST bodies, gRPC requests, responses, config and warm-up.

Nothing here needs tfvae's model code or TFP; it speaks TF Serving's predict API:

- REST: `POST http://HOST:8501/v1/models/NAME[/versions/V]:predict` with a JSON body in the
  row format (`{"signature_name": ..., "instances": [{"x": [...]}, ...]}`) or the columnar
  format (`{"signature_name": ..., "inputs": {"x": [[...], ...]}}`); the reply holds
  `predictions` (rows) or `outputs` (columns). See `rest_body` / `parse_rest_response`.
- gRPC: `tensorflow_serving.apis.predict_pb2.PredictRequest` on port 8500
  (`predict_request` / `parse_predict_response`).
- `write_models_config`: a `--model_config_file` serving several models and versions.
- `write_warmup`: `assets.extra/tf_serving_warmup_requests`, a TFRecord of `PredictionLog`s
  that the server replays on load so the first real request is not slow.

The REST helpers need only numpy. The others import TensorFlow when called, and the
gRPC, config and warm-up ones need tensorflow-serving-api, the `serving` extra
(`pip install "tfvae[serving]"`); without it they raise ModuleNotFoundError saying so.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence

import numpy as np

from tfvae.base import atomic as _atomic

if TYPE_CHECKING:
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.config import model_server_config_pb2

__all__ = [
    "INPUT_DTYPES",
    "INPUT_RANGES",
    "check_integer_input",
    "rest_url",
    "rest_body",
    "parse_rest_response",
    "predict_request",
    "parse_predict_response",
    "write_models_config",
    "read_models_config",
    "write_warmup",
    "read_warmup",
    "default_warmup_requests",
    "WARMUP_FILE",
    "SERVING_EXTRA",
]

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
SERVING_EXTRA = 'pip install "tfvae[serving]"'

# The dtype of every input of the exported signatures (see tfvae/serving/export.py).
INPUT_DTYPES = {"x": np.float32, "z": np.float32, "seed": np.int64, "num_samples": np.int32}
# The values each integer input may take; outside them a cast to its dtype would wrap.
INPUT_RANGES = {"num_samples": (1, 2**31 - 1), "seed": (-(2**63), 2**63 - 1)}


def _serving_proto(module: str):
    """`tensorflow_serving.<module>` (tensorflow-serving-api, the `serving` extra).

    Raises:
      ModuleNotFoundError: (its `name` is the missing module) saying what to install.
    """
    try:
        return importlib.import_module(f"tensorflow_serving.{module}")
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("tensorflow_serving"):
            raise
        raise ModuleNotFoundError(
            f"tfvae's gRPC, models.config and warm-up helpers need tensorflow-serving-api: "
            f"{SERVING_EXTRA}",
            name=e.name,
        ) from e


def check_integer_input(name: str, value) -> np.ndarray:
    """`value` for the integer input `name` as its export dtype, refused where the cast would
    change it (`num_samples=2**32 + 3` must not become 3).

    Raises:
      TypeError: not integers (floats with a fraction, bools, strings).
      ValueError: outside `INPUT_RANGES[name]`, naming the range.
    """
    low, high = INPUT_RANGES[name]
    dtype = np.dtype(INPUT_DTYPES[name])
    arr = np.asarray(value)
    if arr.dtype == object:  # Python ints beyond 64 bits
        values = arr.ravel().tolist()
    elif arr.dtype.kind in "iu" or (
        arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    ):
        values = [arr.min(), arr.max()] if arr.size else []
    else:
        values = [None]
    if any(isinstance(v, bool) or not isinstance(v, (int, np.number)) for v in values):
        raise TypeError(f"input {name!r} must hold integers ({dtype.name}), got {value!r}")
    bad = [v for v in values if not low <= int(v) <= high]
    if bad:
        raise ValueError(
            f"input {name!r} must be an integer in [{low}, {high}] ({dtype.name}), "
            f"got {int(bad[0])}"
        )
    return arr.astype(dtype)


def _as_array(name: str, value) -> np.ndarray:
    if name in INPUT_RANGES:
        return check_integer_input(name, value)
    dtype = INPUT_DTYPES.get(name)
    arr = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"input {name!r} holds non-finite values, which JSON cannot carry")
    return arr


def rest_url(
    model_name: str, host: str = "localhost", port: int = 8501, version: Optional[int] = None
) -> str:
    """The REST predict URL of a model (the latest version unless `version` is given)."""
    path = f"/v1/models/{model_name}" + (f"/versions/{int(version)}" if version else "")
    return f"http://{host}:{int(port)}{path}:predict"


def rest_body(signature: str = "serving_default", fmt: str = "instances", **inputs) -> dict:
    """A REST predict body (a JSON-ready dict) for `signature` with named `inputs`.

    `fmt="instances"` (row format): one dict per example; inputs must share their first
    dimension, so scalars such as `seed` are repeated per row (the export accepts that).
    `fmt="inputs"` (columnar format): each input as a whole tensor; scalars stay scalars.
    """
    if not inputs:
        raise ValueError("rest_body needs at least one named input, e.g. x=[[...]]")
    arrays = {k: _as_array(k, v) for k, v in inputs.items()}
    if fmt == "inputs":
        return {"signature_name": signature, "inputs": {k: a.tolist() for k, a in arrays.items()}}
    if fmt != "instances":
        raise ValueError(f"fmt must be 'instances' or 'inputs', got {fmt!r}")
    rows = {a.shape[0] for a in arrays.values() if a.ndim > 0}
    if len(rows) > 1:
        raise ValueError(
            f"instances format needs one first dimension for all inputs, got "
            f"{ {k: a.shape for k, a in arrays.items()} }"
        )
    n = rows.pop() if rows else 1
    arrays = {k: (np.repeat(a[None], n, 0) if a.ndim == 0 else a) for k, a in arrays.items()}
    instances = [{k: a[i].tolist() for k, a in arrays.items()} for i in range(n)]
    return {"signature_name": signature, "instances": instances}


def parse_rest_response(body) -> dict[str, np.ndarray]:
    """Output name -> numpy array from a REST predict reply (a dict or its JSON text).

    Row replies (`predictions`) are a list of dicts, or a list of values when the signature
    has a single output (returned under the key `"output"`). Errors (`{"error": ...}`) raise.
    """
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    if "error" in body:
        raise RuntimeError(f"TF Serving error: {body['error']}")
    if "outputs" in body:
        out = body["outputs"]
        if isinstance(out, dict):
            return {k: np.asarray(v) for k, v in out.items()}
        return {"output": np.asarray(out)}
    if "predictions" in body:
        rows = body["predictions"]
        if rows and isinstance(rows[0], dict):
            return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}
        return {"output": np.asarray(rows)}
    raise ValueError(f"not a predict reply (no predictions/outputs/error): keys {sorted(body)}")


def predict_request(
    model_name: str,
    signature: str = "serving_default",
    version: Optional[int] = None,
    **inputs,
) -> predict_pb2.PredictRequest:
    """A gRPC `PredictRequest` with each named input as a TensorProto of its export dtype."""
    if not inputs:
        raise ValueError("predict_request needs at least one named input, e.g. x=[[...]]")
    import tensorflow as tf

    request = _serving_proto("apis.predict_pb2").PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(_as_array(name, value)))
    return request


def parse_predict_response(response) -> dict[str, np.ndarray]:
    """Output name -> numpy array from a gRPC `PredictResponse`."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def write_models_config(
    path: str | os.PathLike, models: Iterable[Mapping], atomic: bool = True
) -> str:
    """Writes a TF Serving `--model_config_file` (text proto) serving several models.

    Each entry: `{"name": str, "base_path": str, "versions": [int, ...] | None}`; with
    versions, exactly those are served (`specific` policy), otherwise the latest one.
    `atomic` (default) replaces the file in one rename, so a server polling it never reads
    half of it; `atomic=False` writes in place (a pipe, or a file that must keep its inode).
    """
    from google.protobuf import text_format

    config = _serving_proto("config.model_server_config_pb2").ModelServerConfig()
    seen = set()
    for i, entry in enumerate(models):
        name, base = entry.get("name"), entry.get("base_path")
        if not name or not isinstance(name, str):
            raise ValueError(f"models[{i}]['name'] must be a non-empty string, got {name!r}")
        if name in seen:
            raise ValueError(f"models[{i}]: duplicate model name {name!r}")
        if not base or not os.path.isabs(os.fspath(base)):
            raise ValueError(f"models[{i}]['base_path'] must be an absolute path, got {base!r}")
        seen.add(name)
        cfg = config.model_config_list.config.add()
        cfg.name = name
        cfg.base_path = os.fspath(base)
        cfg.model_platform = "tensorflow"
        versions: Optional[Sequence[int]] = entry.get("versions")
        if versions:
            if any(isinstance(v, bool) or int(v) < 1 for v in versions):
                raise ValueError(f"models[{i}]['versions'] must be positive ints, got {versions}")
            cfg.model_version_policy.specific.versions.extend(int(v) for v in versions)
        else:
            cfg.model_version_policy.latest.num_versions = 1
    if not seen:
        raise ValueError("models must list at least one model")
    text = text_format.MessageToString(config)
    path = os.fspath(path)
    if atomic:
        _atomic.write_text(path, text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return path


def read_models_config(path: str | os.PathLike) -> model_server_config_pb2.ModelServerConfig:
    """Parses a `models.config` text proto (as TF Serving does)."""
    from google.protobuf import text_format

    config = _serving_proto("config.model_server_config_pb2").ModelServerConfig()
    with open(path, encoding="utf-8") as f:
        return text_format.Parse(f.read(), config)


def default_warmup_requests(input_shape, latent_dim: int) -> list:
    """One small request per exported signature (batch 1), to warm every graph path.

    `input_shape`: one example's x, an int (`[D]`) or a shape (`(28, 28, 1)`).
    """
    x_shape = (input_shape,) if isinstance(input_shape, (int, np.integer)) else input_shape
    x = np.full((1, *x_shape), 0.5, np.float32)
    z = np.zeros((1, latent_dim), np.float32)
    return [
        predict_request("tfvae", "serving_default", x=x),
        predict_request("tfvae", "encode", x=x, seed=np.int64(0)),
        predict_request("tfvae", "decode", z=z),
        predict_request("tfvae", "generate", num_samples=np.int32(1), seed=np.int64(0)),
        predict_request("tfvae", "log_likelihood", x=x),
    ]


def write_warmup(export_dir: str | os.PathLike, requests: Iterable) -> str:
    """Writes `assets.extra/tf_serving_warmup_requests` (TFRecord of `PredictionLog`s)."""
    import tensorflow as tf

    prediction_log_pb2 = _serving_proto("apis.prediction_log_pb2")
    path = os.path.join(os.fspath(export_dir), WARMUP_FILE)
    logs = [
        prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=r))
        for r in requests
    ]

    def write(tmp: str) -> None:
        with tf.io.TFRecordWriter(tmp) as writer:
            for log in logs:
                writer.write(log.SerializeToString())

    _atomic.write_with(path, write)
    return path


def read_warmup(export_dir: str | os.PathLike) -> list:
    """The `PredictionLog`s of an export's warm-up file."""
    import tensorflow as tf

    prediction_log_pb2 = _serving_proto("apis.prediction_log_pb2")
    path = os.path.join(os.fspath(export_dir), WARMUP_FILE)
    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs
