"""Where a tfvae training epoch's time goes, beside the matmul floor (`bench/flops.py`).

Three arms on the benchmark architecture (`bench/tfvae_train.py`'s model, MNIST binarized
once, batch 128), each compiled first, then timed one epoch at a time in alternating rounds:
`adam` (the default training epoch), `sgd` (the same with SGD: the difference is Adam's
update) and `forward` (the ELBO of the epoch's full batches in one XLA loop, no gradients).
Prints and returns the fastest and median seconds per arm; the rest of an `sgd` epoch beyond
the floor is elementwise work (log-probabilities, sampling, the KL) and launches.

    PYTHONPATH=. python -m bench.epoch_breakdown --data-dir ../shared/data --rounds 4
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from bench import common


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subset", type=int, default=None, help="first N training images")
    args = p.parse_args(argv)
    common.pin_tensorflow(args.threads)
    import tensorflow as tf
    import tf_keras as tfk

    from tfvae import VAE
    from tfvae.data.datasets import binarize, load_mnist
    from tfvae.data.input_pipeline import make_dataset

    mnist = load_mnist(args.data_dir, binarization="none", subset=args.subset)
    x = binarize(mnist.x_train, "static", seed=0)  # as `common.save_mnist_arrays`
    config = common.tfvae_config(seed=0)
    data = make_dataset(x, common.BATCH_SIZE, seed=0)
    models = {}
    for name, optimizer in (
        ("adam", tfk.optimizers.Adam(common.LEARNING_RATE)),
        ("sgd", tfk.optimizers.SGD(common.LEARNING_RATE)),
    ):
        models[name] = VAE(config)
        models[name].compile(optimizer)
        models[name].fit(data, epochs=1, verbose=0)  # compiles

    model = models["adam"]
    full = len(x) // common.BATCH_SIZE
    batches = tf.constant(x[: full * common.BATCH_SIZE].reshape(full, common.BATCH_SIZE, -1))

    @tf.function(jit_compile=True)
    def forward_epoch(batches):
        def body(i, total):
            reconstruction, kl = model._elbo_terms(batches[i], tf.stack([1, i]))
            return i + 1, total + tf.reduce_sum(reconstruction - kl)

        return tf.while_loop(lambda i, _: i < full, body, (0, 0.0))[1]

    forward_epoch(batches)  # compiles
    arms = {
        "adam": lambda: models["adam"].fit(data, epochs=1, verbose=0),
        "sgd": lambda: models["sgd"].fit(data, epochs=1, verbose=0),
        "forward": lambda: forward_epoch(batches).numpy(),
    }
    seconds = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, run in arms.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    result = {
        name: {"fastest_s": min(v), "median_s": float(np.median(v)), "seconds": v}
        for name, v in seconds.items()
    }
    result["adam_update_s"] = result["adam"]["fastest_s"] - result["sgd"]["fastest_s"]
    result["examples"] = int(len(x))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
