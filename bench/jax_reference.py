"""The JAX contestant: the same VAE in JAX + Flax linen + optax, written the way a JAX user
after speed writes it.

784-400-(20, 20) / 20-400-784, ReLU, Bernoulli likelihood from logits, analytic KL,
Adam(1e-3), batch 128, PyTorch's `nn.Linear` initialisation (kernels and biases
U(+-1/sqrt(fan_in)), as the PyTorch reference and tfvae start). The loss is the batch mean
of -ELBO, as in Flax's VAE example (Adam is invariant to the scale, up to its epsilon). The
training set sits on the device once; each epoch is one jitted call with donated state: a
permutation, `lax.scan` over the full batches, then one step on the short last batch, so
every example is seen, as in the other contestants. The test -ELBO goes through
`common.negative_elbo`; `iwae_log_likelihood` (jitted, drawn `chunk` samples at a time with
a running logsumexp, as tfvae's `VAE.log_likelihood`) serves `bench.jax_eval`.

Threads: XLA:CPU sizes its pool by the CPUs this process may use, so `--threads N` below
the machine's count pins the process (run as `python -m`, as `bench.run` runs it) to N CPUs
(`sched_setaffinity`) before JAX starts; in-process calls (the smoke tests) are not pinned.

Run by `bench.run` when JAX is installed (`pip install -e .[peers]`); alone:
`python -m bench.jax_reference --data D.npz --out r.json`. `--compile-cache DIR` turns on
JAX's persistent compilation cache there (off by default, as in JAX).
"""

from __future__ import annotations

import functools
import math
import os
import time

import numpy as np

from bench import common


def pin_threads(threads: int) -> None:
    """Restricts this process to `threads` CPUs (before JAX starts its thread pool)."""
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])


def _fan_in_uniform(fan_in: int):
    """PyTorch's `nn.Linear` initialiser: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    import jax

    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=np.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def make_model():
    """The Flax linen module: `encode(x) -> (mu, logvar)`, `decode(z) -> logits`."""
    import flax.linen as nn
    import jax.numpy as jnp

    def dense(features, fan_in, name):
        init = _fan_in_uniform(fan_in)
        return nn.Dense(features, kernel_init=init, bias_init=init, name=name)

    class VAE(nn.Module):
        def setup(self):
            hidden, latent, pixels = common.HIDDEN, common.LATENT_DIM, common.INPUT_DIM
            self.enc = dense(hidden, pixels, "enc")
            self.mu = dense(latent, hidden, "mu")
            self.logvar = dense(latent, hidden, "logvar")
            self.dec = dense(hidden, latent, "dec")
            self.out = dense(pixels, hidden, "out")

        def encode(self, x):
            h = nn.relu(self.enc(x))
            return self.mu(h), self.logvar(h)

        def decode(self, z):
            return self.out(nn.relu(self.dec(z)))

        def __call__(self, x, eps):
            mu, logvar = self.encode(x)
            return self.decode(mu + eps * jnp.exp(0.5 * logvar)), mu, logvar

    return VAE()


def bernoulli_log_prob(logits, x):
    """log p(x|z) per example from the decoder's logits: sum of x l - softplus(l)."""
    import jax

    return (x * logits - jax.nn.softplus(logits)).sum(-1)


def negative_elbo_terms(model, params, x, eps):
    """Per-example -ELBO: -log p(x|z) + KL(q || N(0, I)), z = mu + sigma * eps."""
    import jax.numpy as jnp

    logits, mu, logvar = model.apply({"params": params}, x, eps)
    kl = -0.5 * (1.0 + logvar - mu**2 - jnp.exp(logvar)).sum(-1)
    return kl - bernoulli_log_prob(logits, x)


class Trainer:
    """Parameters, Adam state and the jitted epoch for one seed."""

    def __init__(self, seed: int, batch_size: int = common.BATCH_SIZE):
        import jax
        import optax

        self.model = make_model()
        self.batch_size = batch_size
        init_key, self.key = jax.random.split(jax.random.PRNGKey(seed))
        dummy = np.zeros((1, common.INPUT_DIM), np.float32)
        eps = np.zeros((1, common.LATENT_DIM), np.float32)
        self.params = self.model.init(init_key, dummy, eps)["params"]
        self.tx = optax.adam(common.LEARNING_RATE)
        self.state = (self.params, self.tx.init(self.params))
        self.epoch = jax.jit(self._epoch, donate_argnums=(0,))

    def _step(self, state, xb, key):
        import jax
        import optax

        params, opt_state = state
        eps = jax.random.normal(key, (xb.shape[0], common.LATENT_DIM))

        def loss_fn(p):
            return negative_elbo_terms(self.model, p, xb, eps).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss * xb.shape[0]

    def _epoch(self, state, x, key):
        """One pass over `x` in a new order: (state, mean training loss)."""
        import jax

        n, b = x.shape[0], self.batch_size
        full = n // b
        perm_key, step_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, n)
        keys = jax.random.split(step_key, full + 1)

        def body(state, inputs):
            idx, k = inputs
            return self._step(state, x[idx], k)

        state, losses = jax.lax.scan(body, state, (perm[: full * b].reshape(full, b), keys[:full]))
        total = losses.sum()
        if n % b:
            state, last = self._step(state, x[perm[full * b :]], keys[full])
            total = total + last
        return state, total / n

    def train_epoch(self, x, epoch: int) -> float:
        import jax

        self.state, loss = self.epoch(self.state, x, jax.random.fold_in(self.key, epoch))
        return float(loss)  # waits for the epoch

    @property
    def trained_params(self):
        return self.state[0]


def elbo_probes(model, params):
    """numpy `(encode, log_px)` for `common.negative_elbo`, jitted."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def _encode(x):
        mu, logvar = model.apply({"params": params}, x, method="encode")
        return mu, jnp.exp(0.5 * logvar)

    @jax.jit
    def _log_px(z, x):
        return bernoulli_log_prob(model.apply({"params": params}, z, method="decode"), x)

    def encode(xb):
        return tuple(np.asarray(a) for a in _encode(xb))

    def log_px(z, xb):
        return np.asarray(_log_px(z, xb))

    return encode, log_px


def to_common_weights(params) -> dict:
    """Flax parameters -> `common.WEIGHT_NAMES` (Flax kernels are [in, out] already)."""
    out = {}
    for layer, prefix in (("enc", "enc"), ("mu", "mu"), ("logvar", "logvar"), ("dec", "dec")):
        out[f"{prefix}_w"] = np.asarray(params[layer]["kernel"])
        out[f"{prefix}_b"] = np.asarray(params[layer]["bias"])
    out["out_w"] = np.asarray(params["out"]["kernel"])
    out["out_b"] = np.asarray(params["out"]["bias"])
    return out


def from_common_weights(weights: dict) -> dict:
    """`common.WEIGHT_NAMES` -> Flax parameters."""
    import jax.numpy as jnp

    return {
        layer: {
            "kernel": jnp.asarray(weights[f"{layer}_w"]),
            "bias": jnp.asarray(weights[f"{layer}_b"]),
        }
        for layer in ("enc", "mu", "logvar", "dec", "out")
    }


def log_weights(model, params, x, eps):
    """log p(x, z) - log q(z|x) `[k, n]` for z = mu + sigma * eps, eps `[k, n, latent]`."""
    import jax.numpy as jnp

    mu, logvar = model.apply({"params": params}, x, method="encode")
    std = jnp.exp(0.5 * logvar)
    z = mu + std * eps
    k, n = eps.shape[0], x.shape[0]
    logits = model.apply({"params": params}, z.reshape(k * n, -1), method="decode")
    log_px = bernoulli_log_prob(logits.reshape(k, n, -1), x)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    log_pz = (-0.5 * z**2 - half_log_2pi).sum(-1)
    log_qz = (-0.5 * eps**2 - jnp.log(std) - half_log_2pi).sum(-1)
    return log_px + log_pz - log_qz


@functools.lru_cache(maxsize=None)
def _iwae_batch(model, num_samples: int, chunk: int):
    """A jitted (params, x, key) -> log p(x) estimate `[n]`: `num_samples` draws, `chunk` at
    a time (the last chunk shorter), combined with a running logsumexp."""
    import jax
    import jax.numpy as jnp

    full, rest = divmod(num_samples, chunk)

    def draws(params, x, key, size):
        eps = jax.random.normal(key, (size, x.shape[0], common.LATENT_DIM))
        return log_weights(model, params, x, eps)

    def combine(carry, log_w):
        m, s = carry
        new_m = jnp.maximum(m, log_w.max(0))
        return new_m, s * jnp.exp(m - new_m) + jnp.exp(log_w - new_m).sum(0)

    @jax.jit
    def estimate(params, x, key):
        keys = jax.random.split(key, full + 1)
        init = (jnp.full(x.shape[0], -jnp.inf), jnp.zeros(x.shape[0]))

        def body(carry, k):
            return combine(carry, draws(params, x, k, chunk)), None

        carry, _ = jax.lax.scan(body, init, keys[:full])
        if rest:
            carry = combine(carry, draws(params, x, keys[full], rest))
        m, s = carry
        return m + jnp.log(s) - math.log(num_samples)

    return estimate


def iwae_log_likelihood(model, params, x, num_samples, batch_size=100, chunk=100, seed=0):
    """Importance-weighted log p(x) per example (float64 `[n]`), batches of `batch_size`;
    batch b draws with `fold_in(PRNGKey(seed), b)` split into one key per chunk."""
    import jax

    estimate = _iwae_batch(model, int(num_samples), min(int(chunk), int(num_samples)))
    key = jax.random.PRNGKey(seed)
    out = [
        np.asarray(estimate(params, x[start : start + batch_size], jax.random.fold_in(key, b)))
        for b, start in enumerate(range(0, len(x), batch_size))
    ]
    return np.concatenate(out).astype(np.float64)


def main(argv=None, pin: bool = False) -> dict:
    """The worker; `pin` (its own process: `python -m`) restricts it to `--threads` CPUs."""
    p = common.worker_parser(__doc__.splitlines()[0], weights_out=True)
    p.add_argument("--name", default="jax")
    p.add_argument("--compile-cache", default=None, help="JAX's persistent compilation cache")
    args = p.parse_args(argv)
    if pin:
        pin_threads(args.threads)
    import jax
    import jax.numpy as jnp

    if args.compile_cache:  # every program, however quick to compile
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

    x_train, x_test, eps = common.load_arrays(args.data)
    trainer = Trainer(args.seed, args.batch_size)
    x = jnp.asarray(x_train)  # on the device once
    log = common.EpochLog(args.name, len(x_train), args.batch_size, args.threads)
    evals = common.eval_epochs(args.eval_at, args.epochs)
    for epoch in range(1, args.epochs + 1):
        start, cpu = time.perf_counter(), time.process_time()
        loss = trainer.train_epoch(x, epoch)
        log.epoch(time.perf_counter() - start, loss, time.process_time() - cpu)
        if epoch in evals:
            encode, log_px = elbo_probes(trainer.model, trainer.trained_params)
            log.evaluation(epoch, common.negative_elbo(x_test, eps, encode, log_px))
    rss = common.peak_rss_mb()
    if args.weights_out:
        common.save_weights(args.weights_out, to_common_weights(trainer.trained_params))
    import flax
    import optax

    return log.write(
        args.out,
        framework=f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}",
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        compile_cache=args.compile_cache,
        train_peak_rss_mb=rss,
        numpy=np.__version__,
    )


if __name__ == "__main__":
    main(pin=True)
