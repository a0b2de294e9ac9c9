"""Command line: `tfvae train` fits a VAE on a dataset, evaluates it and saves it."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfvae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train, evaluate and save a VAE")
    train.add_argument(
        "--dataset",
        default="default",
        help="default (embedded digits), mnist, binarized_mnist, frey, or a .npy/.npz",
    )
    train.add_argument("--data-dir", default=None, help="data directory (else $TFVAE_DATA_DIR)")
    train.add_argument(
        "--decoder", default=None, choices=("bernoulli", "gaussian", "isotropic", "fixed_variance")
    )
    train.add_argument("--latent-dim", type=int, default=2)
    train.add_argument("--hidden-units", type=int, nargs="+", default=[200])
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--batch-size", type=int, default=100)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/default", help="output directory")
    train.add_argument("--overwrite", action="store_true")
    train.add_argument(
        "--strategy",
        default="default",
        choices=("default", "mirrored", "multi-worker"),
        help="tf.distribute strategy: one device, all local GPUs, or the TF_CONFIG cluster",
    )
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        from tfvae.distribute import make_strategy

        strategy = make_strategy(args.strategy)  # first: multi-worker must precede other ops
        from tfvae.config import VAEConfig
        from tfvae.data import load_dataset
        from tfvae.train import TrainConfig, train_and_evaluate

        data = load_dataset(args.dataset, args.data_dir, seed=args.seed)
        decoder = args.decoder or ("bernoulli" if data.binary else "gaussian")
        config = VAEConfig(
            input_dim=data.input_dim,
            latent_dim=args.latent_dim,
            decoder=decoder,
            hidden_units=tuple(args.hidden_units),
            image_shape=data.image_shape,
            seed=args.seed,
        )
        train_config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=args.seed,
        )
        _, _, metrics = train_and_evaluate(
            config, train_config, data, args.out, overwrite=args.overwrite, strategy=strategy
        )
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as e:
        print(f"tfvae: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0
