"""Serving latency and throughput: the exported SavedModel against Keras predict and eager calls.

Same model (784-400-20 MLP, Bernoulli decoder; untrained weights: latency does not depend on
them), same computation (reconstruction = decoder mean at z = E[q(z|x)]), four ways:

- `export (v1 Session)`: the export loaded with `tf.compat.v1.saved_model.loader.load` and run
  through a session callable: how TF Serving's C++ server runs it (minus the network).
- `export (tf.saved_model.load)`: the `serving_default` concrete function in eager TF.
- `keras predict`: `model.predict(x, output="mean", latent="mean", batch_size=len(x))`
  (one step per call, so large batches are not cut into Keras' default 32).
- `eager encoder/decoder`: `model.decoder(model.encoder(x).mean()).mean()`.

Latency: batch 1, p50/p99 over many calls. Throughput: examples/s over large batches.

Usage: PYTHONPATH=. python bench/bench_serving.py [--calls 500] [--batch 4096]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import tensorflow as tf

import tfvae
from tfvae.serving.export import export


def _timed(fn, calls: int, warmup: int = 5) -> np.ndarray:
    for _ in range(warmup):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return times


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _session_runner(path: str):
    from tensorflow.core.protobuf import config_pb2

    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
    sig = meta.signature_def["serving_default"]
    opts = config_pb2.CallableOptions()
    opts.feed.append(sig.inputs["x"].name)
    opts.fetch.append(sig.outputs["reconstruction"].name)
    return sess._make_callable_from_options(opts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="batch-1 calls per method")
    parser.add_argument("--predict-calls", type=int, default=100, help="for keras predict")
    parser.add_argument("--batch", type=int, default=4096, help="throughput batch size")
    parser.add_argument("--batches", type=int, default=10, help="throughput batches")
    args = parser.parse_args()

    config = tfvae.VAEConfig(input_dim=784, latent_dim=20, hidden_units=(400,))
    model = tfvae.VAE(config)
    rng = np.random.default_rng(0)
    x1 = (rng.random((1, 784)) > 0.5).astype(np.float32)
    xb = (rng.random((args.batch, 784)) > 0.5).astype(np.float32)
    with tempfile.TemporaryDirectory() as base:
        path = export(model, os.path.join(base, "vae"), iwae_samples=10)
        run_session = _session_runner(path)
        signature = tfvae.load_exported(path).signatures["serving_default"]

        def eager(x):
            return model.decoder(model.encoder(x).mean()).mean().numpy()

        methods = {
            "export (v1 Session)": (lambda x: run_session(x)[0], args.calls),
            "export (tf.saved_model.load)": (
                lambda x: signature(x=tf.constant(x))["reconstruction"].numpy(),
                args.calls,
            ),
            "keras predict": (
                lambda x: model.predict(
                    x, output="mean", latent="mean", batch_size=len(x), verbose=0
                ),
                args.predict_calls,
            ),
            "eager encoder/decoder": (eager, args.calls),
        }
        ref = eager(xb[:8])
        for name, (fn, _) in methods.items():  # all compute the same thing
            np.testing.assert_allclose(fn(xb[:8]), ref, rtol=1e-4, atol=1e-5, err_msg=name)

        print(f"machine: {_cpu_name()}, {os.cpu_count()} cores")
        print(f"tensorflow {tf.__version__}, model 784-400-20 (bernoulli decoder)\n")
        print(
            f"| method | batch-1 p50 (ms) | batch-1 p99 (ms) | "
            f"throughput, batch {args.batch} (examples/s) |"
        )
        print("|---|---|---|---|")
        for name, (fn, calls) in methods.items():
            lat = _timed(lambda: fn(x1), calls) * 1e3
            thr = _timed(lambda: fn(xb), args.batches, warmup=2)
            print(
                f"| {name} | {np.percentile(lat, 50):.3f} | {np.percentile(lat, 99):.3f} | "
                f"{args.batch / np.median(thr):,.0f} |"
            )


if __name__ == "__main__":
    main()
