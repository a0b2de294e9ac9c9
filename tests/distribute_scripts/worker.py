"""One worker of a MultiWorkerMirroredStrategy run (its role comes from TF_CONFIG).

Usage: python worker.py WORKDIR RESULT_JSON SEEN_LOG. Trains a tiny VAE on the embedded
digits with `tfvae.train_and_evaluate` and writes, per training step, the number and sum of
the examples this worker fed to `train_step` to SEEN_LOG, then a JSON summary to RESULT_JSON.
"""

import json
import sys

from tfvae.engine.distribute import is_chief, make_strategy, write_dir

STRATEGY = make_strategy("multi-worker")  # first: before any other TensorFlow op

import os  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfvae.training.train  # noqa: E402
from tfvae import VAE, TrainConfig, VAEConfig  # noqa: E402
from tfvae.data.datasets import load_default  # noqa: E402


def main():
    workdir, result_path, seen_path = sys.argv[1:4]

    class RecordingVAE(VAE):
        """Logs what each train step of this worker receives (count and sum of x)."""

        def train_step(self, data):
            x = data[0] if isinstance(data, (tuple, list)) else data
            tf.print(tf.shape(x)[0], tf.reduce_sum(x), output_stream=f"file://{seen_path}", sep=" ")
            return super().train_step(data)

    tfvae.training.train.VAE = RecordingVAE
    extra_callbacks = []
    crash = os.environ.get("TFVAE_TEST_CRASH")  # "worker_index:epoch": die there (fault test)
    if crash:
        index, epoch = (int(v) for v in crash.split(":"))

        class CrashAt(tfvae.training.train.tfk.callbacks.Callback):
            def on_epoch_begin(self, e, logs=None):
                if e == epoch and STRATEGY.cluster_resolver.task_id == index:
                    os._exit(3)

        extra_callbacks.append(CrashAt())
    epochs = int(os.environ.get("TFVAE_TEST_EPOCHS", "2"))
    data = load_default()
    config = VAEConfig(input_dim=data.input_dim, latent_dim=2, hidden_units=(16,), seed=1)
    train_config = TrainConfig(epochs=epochs, batch_size=128, eval_samples=5, seed=0)
    model, history, metrics = tfvae.training.train.train_and_evaluate(
        config,
        train_config,
        data,
        workdir,
        verbose=0,
        strategy=STRATEGY,
        callbacks=extra_callbacks,
    )
    exported = None
    from tfvae.serving.export import export

    with write_dir(os.path.join(workdir, "export"), STRATEGY) as out:
        exported = str(export(model, out))
    weights = float(sum(np.abs(v.numpy()).sum() for v in model.trainable_variables))
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "chief": is_chief(STRATEGY),
                "replicas": STRATEGY.num_replicas_in_sync,
                "history": history,
                "metrics": metrics,
                "weights_abs_sum": weights,
                "iterations": int(model.optimizer.iterations.numpy()),
                "train_size": len(data.x_train),
                "train_sum": float(data.x_train.sum()),
                "exported": exported,
            },
            f,
        )


if __name__ == "__main__":
    main()
