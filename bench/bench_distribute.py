"""Training throughput with 1 vs 2 replicas (`MirroredStrategy` over logical CPU devices).

Usage (from the repository root):

    TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=. python bench/bench_distribute.py \
        [--dataset mnist] [--epochs 3] [--batch-size 200]

Each configuration runs in a fresh process (logical devices must be set before TensorFlow
starts): the default strategy on one device with and without XLA, and `MirroredStrategy` over
2 logical CPU devices (XLA is off there: see `tfvae.training.train`). The first epoch (tracing,
compilation) is not timed; the table reports examples/second over the remaining epochs,
median of the epochs. On a CPU-only machine the logical devices share the same cores, so this
measures the overhead of the replica machinery, not a speed-up; real gains need one GPU per
replica.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench.common import epoch_seconds

CONFIGS = [
    {"name": "1 device, XLA", "devices": 1, "strategy": "default", "jit": True},
    {"name": "1 device, no XLA", "devices": 1, "strategy": "default", "jit": False},
    {"name": "2 logical CPUs, mirrored", "devices": 2, "strategy": "mirrored", "jit": False},
]


def _run_one(args) -> None:
    """Child process: trains and prints one JSON line of per-epoch timings."""
    from tfvae.engine.distribute import make_strategy, use_logical_cpus

    devices = use_logical_cpus(args.devices)
    import tf_keras as tfk

    from tfvae import VAE, VAEConfig
    from tfvae.data.datasets import load_dataset
    from tfvae.data.input_pipeline import make_dataset

    strategy = make_strategy(args.strategy, devices if args.strategy == "mirrored" else None)
    data = load_dataset(args.dataset, os.environ.get("TFVAE_DATA_DIR"))
    config = VAEConfig(
        input_dim=data.input_dim,
        latent_dim=args.latent_dim,
        hidden_units=(args.hidden_units,),
        decoder="bernoulli" if data.binary else "gaussian",
    )
    with strategy.scope():
        model = VAE(config)
        model.compile(tfk.optimizers.Adam(1e-3), jit_compile=args.jit)
    ds = make_dataset(data.x_train, args.batch_size, seed=0)  # sharded by example

    times: list = []
    model.fit(ds, epochs=args.epochs, verbose=0, callbacks=[epoch_seconds(times)])
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "examples": len(data.x_train),
                "epoch_seconds": times,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--epochs", type=int, default=3, help="including 1 untimed warm-up")
    parser.add_argument("--batch-size", type=int, default=200, help="global batch")
    parser.add_argument("--hidden-units", type=int, default=400)
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--jit", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(f"--epochs: need >= 2 (one untimed warm-up), got {args.epochs}")
    if args.child:
        _run_one(args)
        return
    common = [
        f"--dataset={args.dataset}",
        f"--epochs={args.epochs}",
        f"--batch-size={args.batch_size}",
        f"--hidden-units={args.hidden_units}",
        f"--latent-dim={args.latent_dim}",
    ]
    print(
        f"dataset={args.dataset} global batch={args.batch_size} MLP {args.hidden_units} "
        f"latent {args.latent_dim}; median of epochs 2..{args.epochs}\n"
    )
    print("| configuration | replicas | examples/s | s/epoch |")
    print("|---|---|---|---|")
    for config in CONFIGS:
        out = subprocess.run(
            [sys.executable, __file__, "--child", *common]
            + [
                f"--devices={config['devices']}",
                f"--strategy={config['strategy']}",
                f"--jit={int(config['jit'])}",
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if out.returncode != 0:
            raise SystemExit(f"{config['name']} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        seconds = statistics.median(result["epoch_seconds"][1:])
        print(
            f"| {config['name']} | {result['replicas']} | "
            f"{result['examples'] / seconds:,.0f} | {seconds:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
