"""Long-run stability of the Gaussian decoder with learned per-pixel variance on Frey Face.

App. C.2 of Kingma & Welling (2013): 560-dim faces, tanh MLP with 200 hidden units, a
Gaussian p(x|z) whose mean and log-variance come from two parallel Dense heads. On
such data (8-bit grey levels) nothing bounds the learned variance from below: a pixel that
is predictable from z can shrink sigma until log p(x|z) explodes and the loss is NaN. This
script trains with the library defaults (soft-clipped log-variance,
`VAEConfig.min_log_var`) for 100+ epochs and reports, per epoch, whether every loss was
finite, then the final train/test ELBO per example, how close the decoder's log-variances
sit to the floor, and the wall time.

    PYTHONPATH=. TFVAE_DATA_DIR=/work/shared/data python bench/frey_stability.py --epochs 120
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--min-log-var", type=float, default=None, help="default: VAEConfig's")
    parser.add_argument("--clipnorm", type=float, default=None)
    parser.add_argument("--weight-init", default=None, help="default: VAEConfig's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("TFVAE_DATA_DIR"))
    parser.add_argument("--json", default=None, help="write the result here too")
    args = parser.parse_args(argv)

    from tfvae import TrainConfig, VAEConfig, train_and_evaluate
    from tfvae.data.datasets import load_frey_face

    data = load_frey_face(args.data_dir)
    extra = {} if args.min_log_var is None else {"min_log_var": args.min_log_var}
    if args.weight_init is not None:
        extra["weight_init"] = args.weight_init
    config = VAEConfig(
        input_dim=560,
        latent_dim=args.latent_dim,
        decoder="gaussian",
        hidden_units=(200,),
        activation="tanh",
        seed=args.seed,
        **extra,
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        clipnorm=args.clipnorm,
        eval_samples=100,
        seed=args.seed,
    )
    from tfvae.engine.callbacks import NonFiniteLossError

    start = time.perf_counter()
    try:
        model, history, test = train_and_evaluate(config, train_config, data, verbose=0)
    except NonFiniteLossError as e:
        result = {
            "epochs": args.epochs,
            "all_epochs_finite": False,
            "first_nonfinite_epoch": e.epoch,
            "first_nonfinite_batch": e.batch,
            "terms": list(e.terms),
            "error": str(e),
            "wall_time_s": round(time.perf_counter() - start, 1),
            "machine": _cpu(),
        }
        print(json.dumps(result, indent=2))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=2)
        raise SystemExit(1) from None
    wall = time.perf_counter() - start

    losses = np.asarray(history["loss"], np.float64)
    finite = np.isfinite(losses)
    train_elbo = float(model.evaluate(data.x_train, verbose=0, return_dict=True)["elbo"])
    z = model.encoder(data.x_test).mean()
    log_var = np.log(model.decoder(z).variance().numpy())
    floor = config.min_log_var
    result = {
        "epochs": args.epochs,
        "epochs_run": int(len(losses)),
        "all_epochs_finite": bool(finite.all() and len(losses) == args.epochs),
        "first_nonfinite_epoch": None if finite.all() else int(np.argmin(finite)) + 1,
        "train_elbo_per_example": train_elbo,
        "test_elbo_per_example": test["elbo"],
        "test_log_likelihood_k100": test["log_likelihood"],
        "min_log_var": floor,
        "weight_init": config.weight_init,
        "decoder_log_var_min": float(log_var.min()),
        "decoder_log_var_median": float(np.median(log_var)),
        "fraction_within_0.5_of_floor": float(np.mean(log_var < floor + 0.5)),
        "elbo_by_epoch": [round(float(v), 2) for v in history["elbo"]],
        "wall_time_s": round(wall, 1),
        "machine": _cpu(),
    }
    summary = {k: v for k, v in result.items() if k != "elbo_by_epoch"}
    print(json.dumps(summary, indent=2))
    print("train ELBO every 10 epochs:", result["elbo_by_epoch"][9::10])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
