"""Seconds per epoch under the default `compile()` and under `compile(jit_compile=False)`.

Usage (from the repository root):

    TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=. python bench/bench_compile.py [--epochs 4] [--out F]

For an MLP (784-400-20) and a conv VAE (28x28x1, the default conv stack), each fed numpy
arrays and a `tf.data` dataset, 1,000 random binary images of 784 pixels in batches of 100
(the time per epoch does not depend on the pixels): the default compile (whatever
`tfvae.engine.jit_choice` picks, recorded as `jit`) against `jit_compile=False`. Each
configuration runs in a fresh process; the first epoch (tracing, compilation) is not timed,
and the table gives the median of the other epochs. The rule it checks: the default is never
more than 1.5x the time of `jit_compile=False` (column `ratio`).
Results go to `bench/results/<date>_compile.json` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

from bench.common import epoch_seconds

ARCHITECTURES = ("mlp", "conv")
DATA = ("arrays", "dataset")
COMPILES = ("default", "jit_off")
LIMIT = 1.5  # the most the default may take, as a multiple of jit_compile=False


def _run_one(args) -> None:
    """Child process: trains one configuration, prints one JSON line of epoch timings."""
    import numpy as np
    import tensorflow as tf

    from tfvae import VAE, VAEConfig

    x = (np.random.default_rng(0).random((args.examples, 784)) < 0.3).astype(np.float32)
    conv = {"architecture": "conv", "image_shape": (28, 28, 1)} if args.arch == "conv" else {}
    model = VAE(VAEConfig(input_dim=784, latent_dim=20, hidden_units=(400,), **conv))
    model.compile(**({} if args.compile == "default" else {"jit_compile": False}))
    if args.data == "dataset":
        data = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=0)
        fit_args = {"x": data.batch(args.batch_size)}
    else:
        fit_args = {"x": x, "batch_size": args.batch_size}

    times: list = []
    history = model.fit(**fit_args, epochs=args.epochs, verbose=0, callbacks=[epoch_seconds(times)])
    loss = history.history["loss"][-1]
    print(json.dumps({"jit": bool(model.jit_compile), "epoch_seconds": times, "loss": loss}))


def _child(args, arch, data, compile_) -> dict:
    """Runs one configuration in a fresh process; its JSON line."""
    command = [sys.executable, os.path.abspath(__file__), "--child", "--arch", arch]
    command += ["--data", data, "--compile", compile_, "--epochs", str(args.epochs)]
    command += ["--examples", str(args.examples), "--batch-size", str(args.batch_size)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{arch}/{data}/{compile_} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(rows: list) -> str:
    lines = ["| network | data | default jit | default s/epoch | jit off s/epoch | ratio |"]
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        flag = "" if r["ratio"] <= LIMIT else f" (over {LIMIT}x)"
        lines.append(
            f"| {r['arch']} | {r['data']} | {r['default_jit']} | {r['default']:.3f} "
            f"| {r['jit_off']:.3f} | {r['ratio']:.2f}{flag} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (first untimed)")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arch", choices=ARCHITECTURES, help=argparse.SUPPRESS)
    parser.add_argument("--data", choices=DATA, help=argparse.SUPPRESS)
    parser.add_argument("--compile", choices=COMPILES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _run_one(args)
        return {}
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first is not timed)")
    rows = []
    for arch in args.archs.split(","):
        for data in DATA:
            runs = {c: _child(args, arch, data, c) for c in COMPILES}
            median = {c: statistics.median(runs[c]["epoch_seconds"][1:]) for c in COMPILES}
            rows.append(
                {
                    "arch": arch,
                    "data": data,
                    "default_jit": runs["default"]["jit"],
                    **median,
                    "ratio": median["default"] / median["jit_off"],
                    "runs": runs,
                }
            )
            print(_table(rows[-1:]).splitlines()[-1], flush=True)
    today = datetime.date.today().isoformat()
    result = {
        "date": today,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(
            ["python bench/bench_compile.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "examples": args.examples,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "rows": rows,
    }
    out = args.out or os.path.join(os.path.dirname(__file__), "results", f"{today}_compile.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(_table(rows))
    print(f"written: {out}")
    return result


if __name__ == "__main__":
    main()
