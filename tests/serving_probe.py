"""Runs an export the way TF Serving does, in a process where tfvae and TFP cannot be imported.

Usage: python serving_probe.py OUT_DIR EXPORT_DIR REQUESTS.npz [EXPORT_DIR REQUESTS.npz ...]

REQUESTS.npz holds arrays named `<signature>/<input>`; each signature is run through
`tf.compat.v1.saved_model.loader.load` in a v1 Session (C++ `Session::RunCallable`, no Python
feed checks); the outputs of the i-th export go to OUT_DIR/<i>/outputs.npz. The warm-up
file is replayed, bad requests are sent, and what happened goes to OUT_DIR/<i>/report.json.
"""

import json
import os
import sys

from request_probe import Blocker  # this script's folder is on sys.path

sys.meta_path.insert(0, Blocker())

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import config_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402


def main(out_dir, *pairs):
    tf.compat.v1.disable_eager_execution()
    for i in range(0, len(pairs), 2):
        sub = os.path.join(out_dir, str(i // 2))
        os.makedirs(sub, exist_ok=True)
        probe(pairs[i], pairs[i + 1], sub)


def probe(export_dir, requests_path, out_dir):
    requests = dict(np.load(requests_path))
    report = {"warmup": [], "bad": {}}
    outputs = {}
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
        sigs = meta.signature_def
        report["signatures"] = {
            name: {
                "method": s.method_name,
                "inputs": sorted(s.inputs),
                "outputs": sorted(s.outputs),
            }
            for name, s in sigs.items()
        }

        def run(signature, feeds):
            sig = sigs[signature]
            names = sorted(sig.outputs)
            opts = config_pb2.CallableOptions()
            opts.feed.extend(sig.inputs[k].name for k in sorted(feeds))
            opts.fetch.extend(sig.outputs[k].name for k in names)
            fn = sess._make_callable_from_options(opts)
            values = fn(*[feeds[k] for k in sorted(feeds)])
            return dict(zip(names, values))

        by_sig = {}
        for key, value in requests.items():
            signature, name = key.split("/")
            by_sig.setdefault(signature, {})[name] = value
        for signature, feeds in by_sig.items():
            for name, value in run(signature, feeds).items():
                outputs[f"{signature}/{name}"] = value

        warmup = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
        for record in tf.compat.v1.io.tf_record_iterator(warmup):
            log = prediction_log_pb2.PredictionLog.FromString(record)
            request = log.predict_log.request
            feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            result = run(request.model_spec.signature_name or "serving_default", feeds)
            report["warmup"].append(
                {
                    "signature": request.model_spec.signature_name,
                    "outputs": {k: list(v.shape) for k, v in result.items()},
                    "finite": bool(all(np.all(np.isfinite(v)) for v in result.values())),
                }
            )

        x = requests["serving_default/x"]
        bad = {
            "feature_size": x[:, :-1],
            "rank3": x[:, :, None],
            "rank1": x[0],
            "dtype": x.astype(np.float64),
            "nan": np.full_like(x, np.nan),
        }
        for label, value in bad.items():
            try:
                run("serving_default", {"x": value})
                report["bad"][label] = None
            except tf.errors.OpError as e:
                report["bad"][label] = e.message
    report["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in Blocker.blocked)
    np.savez(os.path.join(out_dir, "outputs.npz"), **outputs)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
