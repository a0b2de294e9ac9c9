"""The compute floor: fp32 matmul throughput at exactly the shapes of one training step.

One step at batch B runs five forward matmuls ([B,784]x[784,400], [B,400]x[400,20] twice,
[B,20]x[20,400], [B,400]x[400,784]), their five weight gradients and four input gradients
(3.28 MFLOP per example, `common.STEP_FLOP_PER_EXAMPLE`). We time those 14 matmuls alone,
XLA-compiled, so the floor is what this CPU can do for this model, nothing else included.
"""

from __future__ import annotations

import time

import numpy as np

from bench import common


def step_matmul_gflops(batch: int = common.BATCH_SIZE, repeats: int = 300) -> dict:
    """Median GFLOP/s of the step's 14 matmuls (TensorFlow, XLA) and of numpy at one shape."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    dims = [(784, 400), (400, 20), (400, 20), (20, 400), (400, 784)]
    w = [tf.constant(rng.standard_normal(d).astype(np.float32) * 0.05) for d in dims]
    x = tf.constant(rng.standard_normal((batch, 784)).astype(np.float32))

    @tf.function(jit_compile=True)
    def step(x):
        h = tf.matmul(x, w[0])
        mu, lv = tf.matmul(h, w[1]), tf.matmul(h, w[2])
        g = tf.matmul(mu + lv, w[3])
        out = tf.matmul(g, w[4])
        # backward: weight gradients (5) and input gradients (4, none for x)
        d_g = tf.matmul(out, w[4], transpose_b=True)
        d_z = tf.matmul(d_g, w[3], transpose_b=True)
        d_h = tf.matmul(d_z, w[1], transpose_b=True) + tf.matmul(d_z, w[2], transpose_b=True)
        grads = [
            tf.matmul(x, d_h, transpose_a=True),
            tf.matmul(h, d_z, transpose_a=True),
            tf.matmul(h, d_z, transpose_a=True),
            tf.matmul(mu, d_g, transpose_a=True),
            tf.matmul(g, out, transpose_a=True),
        ]
        return tf.add_n([tf.reduce_sum(t) for t in grads])

    def timeit(fn, n):
        fn()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times.append((time.perf_counter() - start) / n)
        return float(np.median(times))

    seconds = timeit(lambda: step(x).numpy(), repeats)
    flop = common.STEP_FLOP_PER_EXAMPLE * batch
    a = rng.standard_normal((batch, 784)).astype(np.float32)
    b = rng.standard_normal((784, 400)).astype(np.float32)
    np_seconds = timeit(lambda: a @ b, repeats)
    return {
        "step_matmul_seconds": seconds,
        "step_matmul_gflops": flop / seconds / 1e9,
        "numpy_784x400_gflops": 2 * batch * 784 * 400 / np_seconds / 1e9,
        "step_flop_per_example": common.STEP_FLOP_PER_EXAMPLE,
        "batch_size": batch,
    }
