"""tfvae and the PyTorch reference in lockstep: same initial weights, batches and z noise.

A diagnosis of the quality comparison in `bench.run`, where each framework draws its own
initial weights, batch order and noise. Here tfvae trains with the library's defaults
(`fit`, XLA, fused steps) and PyTorch trains the reference model (`bench.torch_reference`'s
module and loss: summed BCE-with-logits + analytic KL, `torch.optim.Adam`) starting from
tfvae's initial weights, on the same batches in the same order, with z = mu + sigma * eps
using the eps tfvae drew at that step (step t samples with the stateless seed
`(4 * seed, t)`). What is left between the two: tfvae soft-clips log-variances to (-8, 8)
(`VAEConfig.min_log_var/max_log_var`), Keras' Adam takes epsilon 1e-7 on the mean loss where
PyTorch's takes 1e-8 on the summed loss, and float32 rounding (ReLU kinks, Adam's near-zero
gradients), which training amplifies. `tests/test_train_step_reference.py` checks the step
itself against numpy.

    PYTHONPATH=. python -m bench.lockstep --data-dir ../shared/data --epochs 5 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from bench import common

_DRAWS = {}


def standard_normal_draws(seed, n: int):
    """The eps of `q.sample(seed)` for a `[n, latent]` diagonal-Gaussian q(z|x): TFP's own
    draw for loc 0, scale 1 (it maps eps to z = loc + scale * eps), XLA-compiled like tfvae's
    training step: a stateless seed picks its bit generator per device, so the same seed gives
    different draws in TensorFlow's CPU kernels and in XLA."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    if n not in _DRAWS:
        zeros = tf.zeros([n, common.LATENT_DIM])
        std = tfp.distributions.MultivariateNormalDiag(zeros, tf.ones_like(zeros))
        _DRAWS[n] = tf.function(lambda s: std.sample(seed=s), jit_compile=True, autograph=False)
    return _DRAWS[n](seed)


def train_step_seed(config, step: int):
    """The stateless seed tfvae's training step `step` samples z with (`VAE.train_step`)."""
    import tensorflow as tf

    from tfvae.engine.distribute import replica_seed
    from tfvae.model import vae as vae_model

    stream = tf.constant(config.seed * 4 + vae_model._TRAIN_STREAM, tf.int32)
    return replica_seed(tf.stack([stream, tf.constant(step, tf.int32)]))


def reference_with_weights(weights):
    """(model, loss_function) of `bench.torch_reference` with tfvae's weights copied into its
    five Linear layers (fc1, fc21, fc22, fc3, fc4; kernels transposed to torch's [out, in])."""
    import torch

    from bench.torch_reference import reference_model

    model, loss_function = reference_model()
    with torch.no_grad():
        for param, value in zip(model.parameters(), weights):
            param.copy_(torch.from_numpy(value.T.copy() if value.ndim == 2 else value))
    return model, loss_function


def max_abs_difference(variables, model) -> float:
    """Largest |tfvae weight - torch weight| over all weights (torch kernels are [out, in])."""
    diffs = []
    for variable, param in zip(variables, model.parameters()):
        value = param.detach().numpy()
        diffs.append(np.max(np.abs(variable.numpy() - (value.T if value.ndim == 2 else value))))
    return float(max(diffs))


def run_seed(seed: int, args, x_train, x_test, eps_test) -> dict:
    import tensorflow as tf
    import tf_keras as tfk
    import torch

    from bench.torch_reference import elbo_probes
    from tfvae import VAE, TrainConfig

    config = common.tfvae_config(seed, args.weight_init)
    model = VAE(config)
    defaults = TrainConfig()
    model.compile(
        tfk.optimizers.Adam(common.LEARNING_RATE),
        steps_per_execution=defaults.steps_per_execution,
        fused_steps=defaults.fused_steps,
    )
    reference, loss_function = reference_with_weights(
        [v.numpy() for v in model.trainable_variables]
    )
    optimizer = torch.optim.Adam(reference.parameters(), lr=common.LEARNING_RATE)
    torch_q, torch_log_px = elbo_probes(reference)
    tf_q, tf_log_px = common.keras_elbo_probes(model.encoder, model.decoder)
    rng = np.random.default_rng(seed)
    n, b, step, rows = len(x_train), common.BATCH_SIZE, 0, []
    for epoch in range(1, args.epochs + 1):
        x_epoch = x_train[rng.permutation(n)]
        model.fit(tf.data.Dataset.from_tensor_slices(x_epoch).batch(b), epochs=1, verbose=0)
        for start in range(0, n, b):
            xb = torch.from_numpy(x_epoch[start : start + b])
            eps = torch.from_numpy(
                standard_normal_draws(train_step_seed(config, step), len(xb)).numpy()
            )
            optimizer.zero_grad()
            mu, log_var = reference.encode(xb)
            logits = reference.decode(mu + torch.exp(0.5 * log_var) * eps)
            loss_function(logits, xb, mu, log_var).backward()
            optimizer.step()
            step += 1
        if int(model.optimizer.iterations) != step:
            raise RuntimeError(f"tfvae took {int(model.optimizer.iterations)} steps, torch {step}")
        tf_elbo = common.negative_elbo(x_test, eps_test, tf_q, tf_log_px)["neg_elbo"]
        torch_elbo = common.negative_elbo(x_test, eps_test, torch_q, torch_log_px)["neg_elbo"]
        drift = max_abs_difference(model.trainable_variables, reference)
        rows.append(
            {
                "epoch": epoch,
                "tfvae": tf_elbo,
                "pytorch": torch_elbo,
                "tfvae_minus_pytorch": tf_elbo - torch_elbo,
                "max_abs_weight_difference": drift,
            }
        )
        if not args.quiet:
            print(f"seed {seed} epoch {epoch}: " + json.dumps(rows[-1]), flush=True)
    return {"seed": seed, "weight_init": config.weight_init, "epochs": rows}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TFVAE_DATA_DIR", "../shared/data"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--weight-init", default=None, help="VAEConfig.weight_init (default: its)")
    p.add_argument("--subset", type=int, default=None, help="first N train/test examples")
    p.add_argument("--eval-samples", type=int, default=4, help="z draws per test example")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="lockstep.json")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    for key, value in common.thread_env(args.threads).items():
        os.environ.setdefault(key, value)
    common.pin_tensorflow(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    # The arrays bench.run trains on, made and read the same way.
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "mnist.npz")
        common.save_mnist_arrays(path, args.data_dir, args.subset, args.eval_samples)
        x_train, x_test, eps_test = common.load_arrays(path)

    started = time.time()
    seeds = [run_seed(int(s), args, x_train, x_test, eps_test) for s in args.seeds.split(",")]
    diffs = np.array([[r["tfvae_minus_pytorch"] for r in s["epochs"]] for s in seeds])
    summary = {
        "command": "PYTHONPATH=. python -m bench.lockstep " + " ".join(argv or sys.argv[1:]),
        "weight_init": seeds[0]["weight_init"],
        "seeds": seeds,
        "mean_tfvae_minus_pytorch_per_epoch": diffs.mean(axis=0).tolist(),
        "seconds": time.time() - started,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    if not args.quiet:
        for epoch, d in enumerate(summary["mean_tfvae_minus_pytorch_per_epoch"], 1):
            per_seed = ", ".join(f"{x:+.3f}" for x in diffs[:, epoch - 1])
            print(f"epoch {epoch}: tfvae - pytorch = {d:+.3f} nats (per seed {per_seed})")
    return summary


if __name__ == "__main__":
    main()
