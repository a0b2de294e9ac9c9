"""One SGD step of a VAE on 2 logical CPUs (MirroredStrategy) vs the single-device formula.

Run in a fresh process (logical devices must be set before TensorFlow starts); prints one
JSON line with the largest differences, which tests/test_distribute.py checks.
"""

import json
import sys

from tfvae.engine.distribute import make_strategy, use_logical_cpus

DEVICES = use_logical_cpus(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as tfk  # noqa: E402

from tfvae import VAE, VAEConfig  # noqa: E402

GLOBAL_BATCH = 8


def one_step(strategy, config, x):
    """Loss metric and gradient of one `fit` step: SGD(lr=1) gives grad = w_before - w_after."""
    with strategy.scope():
        model = VAE(config)
        model.compile(tfk.optimizers.SGD(1.0), jit_compile=False)
    before = [v.numpy() for v in model.trainable_variables]
    ds = tf.data.Dataset.from_tensor_slices(x).batch(GLOBAL_BATCH)
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    grads = [b - v.numpy() for b, v in zip(before, model.trainable_variables)]
    return history.history["loss"][0], grads


def reference(config, x, seeds):
    """Single device: mean over the global batch of the per-example loss, where example block
    r (the examples replica r holds) draws z with `seeds[r]`."""
    model = VAE(config)
    blocks = np.split(x, len(seeds))
    if config.objective == "iwae":  # K draws (and DReG): the blocks' one-device gradients
        losses, grads = [], []
        for block, seed in zip(blocks, seeds):
            g, per_example, _ = model._gradients_over_draws(tf.constant(block), seed, True)
            losses.append(per_example.numpy())
            grads.append([v.numpy() for v in g])
        return float(np.mean(np.concatenate(losses))), [np.mean(v, 0) for v in zip(*grads)]
    with tf.GradientTape() as tape:
        per_example = []
        for block, seed in zip(blocks, seeds):
            rec, kl = model.elbo_terms(tf.constant(block), seed, training=True)
            per_example.append(-rec + config.kl_weight * kl)
        loss = tf.reduce_mean(tf.concat(per_example, 0))
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), [g.numpy() for g in grads]


def max_diff(a, b):
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))


def compare(mode):
    """`mode`: a kl_method (the one-draw ELBO), or `iwae` / `iwae_dreg` (K = 3)."""
    objective = {"kl_method": mode}
    if mode.startswith("iwae"):
        estimator = "dreg" if mode == "iwae_dreg" else "reparameterized"
        objective = {"objective": "iwae", "num_samples": 3, "gradient_estimator": estimator}
    config = VAEConfig(
        input_dim=16,
        latent_dim=3,
        hidden_units=(12,),
        kl_weight=0.5,
        seed=3,
        **objective,
    )
    x = (np.random.default_rng(0).random((GLOBAL_BATCH, 16)) > 0.5).astype(np.float32)
    base = tf.constant([config.seed * 4, 0], tf.int32)  # train stream, step 0
    folded = [tf.random.experimental.stateless_fold_in(base, r) for r in range(2)]
    folded = [tf.cast(s, tf.int32) for s in folded]

    mirrored = make_strategy("mirrored", DEVICES)
    loss_2, grads_2 = one_step(mirrored, config, x)
    loss_1, grads_1 = one_step(tf.distribute.get_strategy(), config, x)
    ref_2_loss, ref_2 = reference(config, x, folded)
    ref_1_loss, ref_1 = reference(config, x, [base])
    same_noise_loss, same_noise = reference(config, x, [base, base])
    return {
        "replicas": mirrored.num_replicas_in_sync,
        "loss_2": loss_2,
        "ref_2_loss": ref_2_loss,
        "grad_diff_2": max_diff(grads_2, ref_2),
        "loss_1": loss_1,
        "ref_1_loss": ref_1_loss,
        "grad_diff_1": max_diff(grads_1, ref_1),
        "same_noise_loss": same_noise_loss,
        "same_noise_grad_diff": max_diff(grads_2, same_noise),
        "grad_scale": max(float(np.max(np.abs(g))) for g in ref_2),
    }


def main():
    print(json.dumps({method: compare(method) for method in sys.argv[1:]}))


if __name__ == "__main__":
    main()
