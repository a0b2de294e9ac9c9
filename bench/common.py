"""What the three benchmark workers share: data files, thread pinning, the test-set ELBO.

The ELBO is evaluated the same way for every contestant, outside its own training code:
each worker hands over q(z|x)'s mean and standard deviation on the test set, and
log p(x|z) for z = mu + sigma * eps with the *same* noise `eps` (saved once by `bench.run`);
the KL term is the analytic Gaussian KL computed here in numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from typing import Callable, Dict, List

import numpy as np

LATENT_DIM = 20
HIDDEN = 400
INPUT_DIM = 784
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
# One training step of 784-400-(20,20) / 20-400-784: forward 2 * 651,200 FLOP, backward
# twice that minus the (unneeded) input gradient of the first layer: ~3.28 MFLOP/example.
STEP_FLOP_PER_EXAMPLE = 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784) * 3 - 2 * 784 * 400


# The order and names every contestant's `--weights-out` file uses (kernels [in, out]): encoder
# 784-400, its mean and log-variance heads 400-20, decoder 20-400 and 400-784 (logits).
WEIGHT_NAMES = (
    "enc_w", "enc_b", "mu_w", "mu_b", "logvar_w", "logvar_b", "dec_w", "dec_b", "out_w", "out_b",
)  # fmt: skip


def tfvae_config(seed: int, weight_init=None):
    """The benchmark architecture as a `tfvae.VAEConfig` (784-400-20 ReLU MLP, Bernoulli
    decoder); `weight_init` None keeps VAEConfig's default."""
    from tfvae import VAEConfig

    init = {"weight_init": weight_init} if weight_init else {}
    return VAEConfig(
        input_dim=INPUT_DIM,
        latent_dim=LATENT_DIM,
        hidden_units=(HIDDEN,),
        activation="relu",
        decoder="bernoulli",
        seed=seed,
        **init,
    )


def epoch_seconds(times: list):
    """A Keras callback appending each epoch's wall seconds to `times` (what the speed
    benches report, as medians over epochs)."""
    import tf_keras as tfk

    class EpochSeconds(tfk.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    return EpochSeconds()


def save_weights(path: str, weights: Dict[str, np.ndarray]) -> None:
    """Writes a contestant's trained weights (`WEIGHT_NAMES`, float32) to an .npz file."""
    missing = set(WEIGHT_NAMES) - set(weights)
    if missing:
        raise ValueError(f"weights lack {sorted(missing)}")
    np.savez(path, **{k: np.asarray(weights[k], np.float32) for k in WEIGHT_NAMES})


def load_weights(path: str) -> Dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in WEIGHT_NAMES}


def thread_env(threads: int, inter_op: int = 1) -> Dict[str, str]:
    """Environment variables pinning every framework's thread pools the same way."""
    return {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(inter_op),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def pin_tensorflow(threads: int, inter_op: int = 1) -> None:
    """Pins TensorFlow's intra-op and inter-op pools (before any op executes; afterwards, as
    in the in-process smoke test, TensorFlow refuses and the pools stay as they are)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        pass


def save_arrays(path: str, x_train, x_test, eval_samples: int, seed: int) -> None:
    """Writes the binary arrays (uint8) and the shared evaluation noise `eps` to `path`."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((eval_samples, len(x_test), LATENT_DIM)).astype(np.float32)
    np.savez(
        path,
        x_train=np.asarray(x_train, np.uint8),
        x_test=np.asarray(x_test, np.uint8),
        eps=eps,
    )


def save_mnist_arrays(path: str, data_dir: str, subset, eval_samples: int) -> None:
    """The benchmark's MNIST file: grey levels binarized once (`binarize(x, "static")`, seed 0
    for train, 1 for test) and evaluation noise drawn with seed 2, for every contestant."""
    from tfvae.data.datasets import binarize, load_mnist

    mnist = load_mnist(data_dir, binarization="none", subset=subset)
    save_arrays(
        path,
        binarize(mnist.x_train, "static", seed=0),
        binarize(mnist.x_test, "static", seed=1),
        eval_samples,
        seed=2,
    )


def load_arrays(path: str):
    """(x_train, x_test, eps) as float32, from a file written by `save_arrays`."""
    with np.load(path, allow_pickle=False) as f:
        return (
            f["x_train"].astype(np.float32),
            f["x_test"].astype(np.float32),
            f["eps"].astype(np.float32),
        )


def analytic_kl(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """KL(N(mu, sigma^2) || N(0, I)) per example, summed over latent dimensions (float64).

    The referee's own numpy copy of `tfvae.model.objectives.analytic_kl`, on purpose: it scores
    every contestant alike and must not load TensorFlow into the PyTorch worker, whose
    peak RSS is part of the result.
    """
    mu = mu.astype(np.float64)
    var = np.square(sigma.astype(np.float64))
    return 0.5 * np.sum(mu**2 + var - 1.0 - np.log(var), axis=-1)


def negative_elbo(
    x: np.ndarray,
    eps: np.ndarray,
    encode: Callable[[np.ndarray], tuple],
    log_px: Callable[[np.ndarray, np.ndarray], np.ndarray],
    chunk: int = 2000,
) -> Dict[str, float]:
    """Test-set -ELBO in nats/example: analytic KL, log p(x|z) averaged over `len(eps)` draws.

    Args:
      encode: x `[n, 784]` -> (mu, sigma), numpy `[n, 20]` each.
      log_px: (z `[n, 20]`, x `[n, 784]`) -> log p(x|z) `[n]` (the contestant's own decoder).
    """
    recs, kls = [], []
    for start in range(0, len(x), chunk):
        xb = x[start : start + chunk]
        mu, sigma = (np.asarray(a, np.float32) for a in encode(xb))
        kls.append(analytic_kl(mu, sigma))
        rec = np.zeros(len(xb))
        for e in eps[:, start : start + chunk]:
            rec += np.asarray(log_px(mu + sigma * e, xb), np.float64)
        recs.append(rec / len(eps))
    rec, kl = np.concatenate(recs), np.concatenate(kls)
    return {
        "neg_elbo": float(np.mean(kl - rec)),
        "reconstruction": float(np.mean(rec)),
        "kl": float(np.mean(kl)),
    }


def batch_shapes(x: np.ndarray, batch_size: int) -> list:
    """One batch of each shape that batching `x` by `batch_size` gives (the first, and a
    shorter last one): run once before timing, so that the timed pass compiles nothing."""
    rest = len(x) % batch_size
    return [x[:batch_size]] + ([x[-rest:]] if rest and len(x) > batch_size else [])


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Read from `VmHWM` in /proc/self/status: `getrusage().ru_maxrss` would be wrong for our
    workers, since Linux carries the parent's peak over `fork` + `exec`.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_parser(description: str, weights_out: bool = False) -> argparse.ArgumentParser:
    """The command line every training worker accepts (`weights_out`: and `--weights-out`)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, help=".npz written by bench.common.save_arrays")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-at", default="1,5,20", help="epochs after which to evaluate")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--inter-op", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON result file")
    if weights_out:
        p.add_argument("--weights-out", help=".npz for the trained weights (WEIGHT_NAMES)")
    return p


def eval_epochs(spec: str, epochs: int) -> List[int]:
    return sorted({int(e) for e in spec.split(",") if e.strip() and 0 < int(e) <= epochs})


class EpochLog:
    """Collects per-epoch wall times and the test evaluations of one training run."""

    def __init__(self, name: str, num_examples: int, batch_size: int, threads: int):
        self.result = {
            "name": name,
            "num_examples": int(num_examples),
            "batch_size": int(batch_size),
            "threads": int(threads),
            "epoch_seconds": [],
            "epoch_cpu_seconds": [],
            "train_loss": [],
            "evals": {},
            "started": time.time(),
        }

    def epoch(self, seconds: float, loss: float, cpu_seconds: float = float("nan")) -> None:
        self.result["epoch_seconds"].append(float(seconds))
        self.result["epoch_cpu_seconds"].append(float(cpu_seconds))
        self.result["train_loss"].append(float(loss))

    def evaluation(self, epoch: int, metrics: Dict[str, float]) -> None:
        self.result["evals"][str(epoch)] = metrics

    def write(self, path: str, **extra) -> dict:
        self.result.update(extra)
        self.result["peak_rss_mb"] = peak_rss_mb()
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.result, f, indent=1)
        os.replace(tmp, path)
        return self.result


def keras_elbo_probes(encoder, decoder):
    """numpy `(encode, log_px)` for `negative_elbo`, around a Keras encoder whose call returns
    q(z|x) and a decoder whose call returns p(x|z): the distribution-object API, traced once."""
    import tensorflow as tf

    @tf.function
    def _encode(xb):
        q = encoder(xb, training=False)
        return q.mean(), q.stddev()

    @tf.function
    def _log_px(z, xb):
        return decoder(z, training=False).log_prob(xb)

    def encode(xb):
        return tuple(t.numpy() for t in _encode(tf.constant(xb)))

    def log_px(z, xb):
        return _log_px(tf.constant(z), tf.constant(xb)).numpy()

    return encode, log_px


def keras_epoch_timer(log: "EpochLog", evals, x_test, eps, encode, log_px):
    """A Keras callback that records each epoch's wall and CPU time and training loss in `log`,
    then, after the epochs in `evals`, the test -ELBO (outside the timed region)."""
    import tf_keras as tfk

    class EpochTimer(tfk.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu
            log.epoch(wall, logs["loss"], cpu)
            if epoch + 1 in evals:
                log.evaluation(epoch + 1, negative_elbo(x_test, eps, encode, log_px))

    return EpochTimer()
