"""tfvae's importance-weighted -log p(x) (Burda et al. 2015), its cost in K, and the floor.

For each saved model: `VAE.log_likelihood(x, importance_samples=K)` on the first `n` test
examples (chunked: draws are taken `chunk` at a time with a running logsumexp, so memory is
bounded whatever K is), its wall time after a first call on one batch (tracing), its
examples per second and this process's peak RSS; then the time for a few K on a small
subset (cost should be linear in K); then `flops.step_matmul_gflops()`. With
`--throughput`, also the first model's test -ELBO speed: `model.evaluate` (compile's
defaults) on the whole test set in batches of `--elbo-batch-size`, a first call and a warm
one, as `bench.jax_eval` times the JAX contestant.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from bench import common, flops


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--iwae", nargs=3, action="append", default=[], metavar=("NAME", "DATA", "MODEL")
    )
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--n", type=int, default=1000, help="first n test examples")
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--scaling-k", default="100,500,2500")
    p.add_argument("--scaling-n", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--inter-op", type=int, default=1)
    p.add_argument("--flops-repeats", type=int, default=300)
    p.add_argument("--throughput", action="store_true", help="time the first model's evaluate")
    p.add_argument("--elbo-batch-size", type=int, default=1000)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    common.pin_tensorflow(args.threads, args.inter_op)
    import tensorflow as tf

    from tfvae import load_model

    result = {
        "flops": flops.step_matmul_gflops(repeats=args.flops_repeats, threads=args.threads),
        "iwae": {},
        "scaling": {},
    }
    result["rss_before_iwae_mb"] = common.peak_rss_mb()
    models = {}
    for name, data, model_dir in args.iwae:
        model = models[name] = load_model(model_dir)
        _, x_test, _ = common.load_arrays(data)
        x = x_test[: args.n]
        iwae = {
            "importance_samples": args.k,
            "batch_size": args.batch_size,
            "chunk_size": args.chunk,
        }
        start = time.perf_counter()
        for batch in common.batch_shapes(x, args.batch_size):  # traces: the timed pass won't
            model.log_likelihood(batch, **iwae, seed=0)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        log_px = model.log_likelihood(x, **iwae, seed=0)
        seconds = time.perf_counter() - start
        elbo = model.log_likelihood(x, importance_samples=1, batch_size=args.batch_size, seed=1)
        result["iwae"][name] = {
            "nll": float(-np.mean(log_px)),
            "nll_stderr": float(np.std(log_px) / np.sqrt(len(log_px))),
            "neg_elbo_k1_same_subset": float(-np.mean(elbo)),
            "k": args.k,
            "n": len(x),
            "chunk": args.chunk,
            "finite": bool(np.all(np.isfinite(log_px))),
            "first_batch_call_s": first_s,
            "seconds": seconds,
            "examples_per_s": len(x) / seconds,
            "peak_rss_mb_after": common.peak_rss_mb(),
        }
    if models and args.throughput:
        name, data, _ = args.iwae[0]
        _, x_test, _ = common.load_arrays(data)
        result["elbo"] = evaluate_throughput(models[name], x_test, args.elbo_batch_size)
    if models:
        name, data, _ = args.iwae[0]
        model = models[name]
        _, x_test, _ = common.load_arrays(data)
        x = x_test[: args.scaling_n]
        model.log_likelihood(x[:10], importance_samples=10, chunk_size=args.chunk)  # warm-up trace
        for k in [int(v) for v in args.scaling_k.split(",") if v.strip()]:
            start = time.perf_counter()
            model.log_likelihood(
                x, importance_samples=k, batch_size=args.batch_size, chunk_size=args.chunk
            )
            seconds = time.perf_counter() - start
            result["scaling"][str(k)] = {
                "seconds": seconds,
                "us_per_example_sample": seconds / len(x) / k * 1e6,
            }
    result["peak_rss_mb"] = common.peak_rss_mb()
    result["tensorflow"] = tf.__version__
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    return result


def evaluate_throughput(model, x, batch_size: int) -> dict:
    """`model.evaluate(x)` timed: a first call (tracing and compiling) and a warm one."""
    start = time.perf_counter()
    first = model.evaluate(x, batch_size=batch_size, verbose=0, return_dict=True)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = model.evaluate(x, batch_size=batch_size, verbose=0, return_dict=True)
    seconds = time.perf_counter() - start
    return {
        "n": len(x),
        "batch_size": batch_size,
        "neg_elbo": -float(warm["elbo"]),
        "first_call_s": first_s,
        "seconds": seconds,
        "examples_per_s": len(x) / seconds,
        "finite": bool(np.isfinite(first["elbo"]) and np.isfinite(warm["elbo"])),
    }


if __name__ == "__main__":
    main()
