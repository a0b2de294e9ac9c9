"""The JAX contestant's evaluation speed: test -ELBO and importance-weighted -log p(x).

On the weights `bench.jax_reference --weights-out` saved: the test -ELBO (one z per example,
analytic KL, as tfvae's `evaluate`) over the whole test set in one jitted `lax.map` over
batches of `--elbo-batch-size`, and `jax_reference.iwae_log_likelihood` (K draws, `--chunk`
at a time, batches of `--batch-size`, as tfvae's `VAE.log_likelihood`) on the first `--n`
test examples. Each is timed on a first call (compiling; for the IWAE, one batch of each
shape) and on a warm one; throughput is examples per second of the warm call.
`bench.tfvae_eval --throughput` measures tfvae alike.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from bench import common, jax_reference


def elbo_function(model, batch_size: int):
    """A jitted (params, x, key) -> per-example -ELBO `[n]` over `x` in batches (`lax.map`;
    a shorter last batch runs on its own)."""
    import jax

    def batch_elbo(params, xb, key):
        eps = jax.random.normal(key, (xb.shape[0], common.LATENT_DIM))
        return jax_reference.negative_elbo_terms(model, params, xb, eps)

    @jax.jit
    def elbo(params, x, key):
        full = x.shape[0] // batch_size
        keys = jax.random.split(key, full + 1)
        parts = []
        if full:
            body = x[: full * batch_size].reshape(full, batch_size, -1)
            out = jax.lax.map(lambda args: batch_elbo(params, *args), (body, keys[:full]))
            parts.append(out.reshape(-1))
        if x.shape[0] % batch_size:
            parts.append(batch_elbo(params, x[full * batch_size :], keys[-1]))
        return jax.numpy.concatenate(parts)

    return elbo


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv=None, pin: bool = False) -> dict:
    """The worker; `pin` (its own process: `python -m`) restricts it to `--threads` CPUs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help=".npz from jax_reference --weights-out")
    p.add_argument("--data", required=True, help=".npz written by bench.common.save_arrays")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--n", type=int, default=1000, help="first n test examples for the IWAE")
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--elbo-batch-size", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if pin:
        jax_reference.pin_threads(args.threads)
    import jax
    import jax.numpy as jnp

    model = jax_reference.make_model()
    params = jax_reference.from_common_weights(common.load_weights(args.weights))
    _, x_test, _ = common.load_arrays(args.data)
    x = jnp.asarray(x_test)
    elbo = elbo_function(model, args.elbo_batch_size)
    keys = jax.random.split(jax.random.PRNGKey(0))
    first, first_s = timed(lambda: np.asarray(elbo(params, x, keys[0])))
    warm, warm_s = timed(lambda: np.asarray(elbo(params, x, keys[1])))
    result = {
        "elbo": {
            "n": len(x_test),
            "batch_size": args.elbo_batch_size,
            "neg_elbo": float(np.mean(warm)),
            "first_call_s": first_s,
            "seconds": warm_s,
            "examples_per_s": len(x_test) / warm_s,
            "finite": bool(np.all(np.isfinite(first)) and np.all(np.isfinite(warm))),
        }
    }
    xi = x_test[: args.n]
    kw = {"num_samples": args.k, "batch_size": args.batch_size, "chunk": args.chunk}
    iwae = jax_reference.iwae_log_likelihood
    shapes = common.batch_shapes(xi, args.batch_size)
    _, first_s = timed(lambda: [iwae(model, params, b, **kw) for b in shapes])
    log_px, seconds = timed(lambda: iwae(model, params, xi, **kw))
    result["iwae"] = {
        "k": args.k,
        "batch_size": args.batch_size,
        "chunk": args.chunk,
        "n": len(xi),
        "nll": float(-np.mean(log_px)),
        "nll_stderr": float(np.std(log_px) / np.sqrt(len(log_px))),
        "first_batch_call_s": first_s,
        "seconds": seconds,
        "examples_per_s": len(xi) / seconds,
        "finite": bool(np.all(np.isfinite(log_px))),
    }
    result["framework"] = f"jax {jax.__version__}"
    result["peak_rss_mb"] = common.peak_rss_mb()
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    return result


if __name__ == "__main__":
    main(pin=True)
