"""The compute floor: fp32 matmul throughput at exactly the shapes of one training step.

One step at batch B runs five forward matmuls ([B,784]x[784,400], [B,400]x[400,20] twice,
[B,20]x[20,400], [B,400]x[400,784]), their five weight gradients and four input gradients
(3.28 MFLOP per example, `common.STEP_FLOP_PER_EXAMPLE`). We time those 14 matmuls alone,
nothing else included, with two matmul libraries: XLA:CPU (inside one compiled loop, so no
per-call dispatch is counted) and PyTorch's (oneDNN/MKL, when torch is installed). The floor
is the faster of the two: what this CPU can do for this model's arithmetic.
"""

from __future__ import annotations

import time

import numpy as np

from bench import common

DIMS = [(784, 400), (400, 20), (400, 20), (20, 400), (400, 784)]


def _step_matmuls(mm, total, x, w, t):
    """The 14 matmuls of a step; `mm(a, b, ta, tb)` multiplies, `total` sums a matrix, `t` is
    a per-iteration scalar added to the input so that no iteration can be hoisted or cached."""
    h = mm(x + t, w[0], False, False)
    mu, lv = mm(h, w[1], False, False), mm(h, w[2], False, False)
    g = mm(mu + lv, w[3], False, False)
    out = mm(g, w[4], False, False)
    d_g = mm(out, w[4], False, True)
    d_z = mm(d_g, w[3], False, True)
    d_h = mm(d_z, w[1], False, True) + mm(d_z, w[2], False, True)
    grads = [
        mm(x, d_h, True, False),
        mm(h, d_z, True, False),
        mm(h, d_z, True, False),
        mm(mu, d_g, True, False),
        mm(g, out, True, False),
    ]
    return sum(total(gr) for gr in grads)


def _median_seconds(fn, n):
    fn()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / n)
    return float(np.median(times))


def xla_step_seconds(batch: int, repeats: int) -> float:
    """Seconds per step for the 14 matmuls, `repeats` of them in one XLA-compiled loop."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w = [tf.constant(rng.standard_normal(d).astype(np.float32) * 0.05) for d in DIMS]
    x = tf.constant(rng.standard_normal((batch, 784)).astype(np.float32))

    def mm(a, b, ta, tb):
        return tf.matmul(a, b, transpose_a=ta, transpose_b=tb)

    @tf.function(jit_compile=True)
    def loop():
        def body(i, acc):
            t = tf.cast(i, tf.float32) * 1e-6
            return i + 1, acc + _step_matmuls(mm, tf.reduce_sum, x, w, t)

        return tf.while_loop(lambda i, _: i < repeats, body, (0, tf.constant(0.0)))[1]

    return _median_seconds(lambda: loop().numpy(), repeats)


def torch_step_seconds(batch: int, repeats: int, threads: int):
    """Seconds per step for the 14 matmuls in PyTorch; None where torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    w = [torch.randn(*d, generator=gen) * 0.05 for d in DIMS]
    x = torch.randn(batch, 784, generator=gen)

    def mm(a, b, ta, tb):
        return (a.t() if ta else a) @ (b.t() if tb else b)

    def loop():
        with torch.no_grad():
            for i in range(repeats):
                _step_matmuls(mm, torch.sum, x, w, i * 1e-6)

    return _median_seconds(loop, repeats)


def step_matmul_gflops(
    batch: int = common.BATCH_SIZE, repeats: int = 300, threads: int = 2
) -> dict:
    """GFLOP/s of the step's 14 matmuls (XLA and PyTorch), the best of them, and numpy's."""
    flop = common.STEP_FLOP_PER_EXAMPLE * batch
    xla_s = xla_step_seconds(batch, repeats)
    torch_s = torch_step_seconds(batch, repeats, threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, 784)).astype(np.float32)
    b = rng.standard_normal((784, 400)).astype(np.float32)

    def np_loop():
        for _ in range(repeats):
            a @ b

    np_s = _median_seconds(np_loop, repeats)
    best = min(s for s in (xla_s, torch_s) if s is not None)
    return {
        "step_matmul_seconds": best,
        "step_matmul_gflops": flop / best / 1e9,
        "xla_step_matmul_gflops": flop / xla_s / 1e9,
        "torch_step_matmul_gflops": None if torch_s is None else flop / torch_s / 1e9,
        "numpy_784x400_gflops": 2 * batch * 784 * 400 / np_s / 1e9,
        "step_flop_per_example": common.STEP_FLOP_PER_EXAMPLE,
        "batch_size": batch,
    }
