"""Mixed precision on MNIST: seconds per epoch and test ELBO, float32 against mixed_bfloat16.

Usage (from the repository root):

    TF_CPP_MIN_LOG_LEVEL=3 TFVAE_DATA_DIR=../shared/data PYTHONPATH=. \
        python bench/bench_mixed_precision.py [--epochs 5] \
        [--policies float32,mixed_bfloat16,mixed_float16] [--compiles default,no_xla]

The built-in MLP (784-500-20, tanh, Bernoulli decoder, `VAEConfig` defaults otherwise) on
statically binarized MNIST, `fit(x, batch_size=100)` under each Keras global policy, both
under the default `compile()` (XLA) and `compile(jit_compile=False)` (TensorFlow's own
kernels, oneDNN on CPU). Under a mixed policy the hidden layers compute in bfloat16 (float16)
and the heads in float32 (`tfvae.model.heads.head_dtype`). Each configuration runs in a fresh
process (the policy is process-wide; XLA's programs would carry over); the first epoch
(tracing, compilation) is not timed: s/epoch is the median of the later epochs. The test
ELBO is `model.evaluate` on the 10,000 test images after the last epoch (one seeded draw
per image). The JSON (machine, CPU flags, every epoch) goes to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys

from bench.common import epoch_seconds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
COMPILES = {"default": {}, "no_xla": {"jit_compile": False}}
CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


def _train(args, policy: str, compile_name: str) -> dict:
    """Trains one configuration in this process (the policy is restored afterwards)."""
    import numpy as np
    import tf_keras as tfk

    from tfvae import VAE, VAEConfig
    from tfvae.data.datasets import load_mnist

    if args.threads:
        from bench import common

        common.pin_tensorflow(args.threads)
    data = load_mnist(args.data_dir, binarization="static", subset=args.subset or None)
    x_test = data.x_test[: args.test_subset] if args.test_subset else data.x_test
    previous = tfk.mixed_precision.global_policy()
    tfk.mixed_precision.set_global_policy(policy)
    try:
        config = VAEConfig(
            input_dim=784, latent_dim=args.latent_dim, hidden_units=(args.hidden_units,)
        )
        model = VAE(config)
        model.compile(tfk.optimizers.Adam(1e-3), **COMPILES[compile_name])
        seconds = []

        history = model.fit(
            data.x_train,
            batch_size=args.batch_size,
            epochs=args.epochs,
            shuffle=True,
            verbose=0,
            callbacks=[epoch_seconds(seconds)],
        ).history
        test = model.evaluate(x_test, batch_size=args.batch_size, verbose=0, return_dict=True)
    finally:
        tfk.mixed_precision.set_global_policy(previous)
    return {
        "policy": policy,
        "compile": compile_name,
        "epoch_seconds": seconds,
        "train_loss": [float(v) for v in history["loss"]],
        "test_elbo": float(test["elbo"]),
        "finite": bool(np.isfinite(history["loss"]).all() and math.isfinite(test["elbo"])),
        "num_train": int(len(data.x_train)),
        "num_test": int(len(x_test)),
    }


def _in_child(args, policy: str, compile_name: str) -> dict:
    """`_train` in a fresh Python process; its result is the child's last stdout line."""
    argv = [sys.executable, os.path.abspath(__file__), *args.passed]
    argv += ["--child", f"{policy}:{compile_name}"]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=4 * 3600)
    if out.returncode != 0:
        raise SystemExit(f"{policy} / {compile_name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summarise(row: dict) -> dict:
    later = row["epoch_seconds"][1:]
    row["first_epoch_s"] = row["epoch_seconds"][0]
    row["s_per_epoch"] = statistics.median(later) if later else float("nan")
    return row


def machine() -> dict:
    """The CPU (model name, bf16-related flags), cores and library versions."""
    import tensorflow as tf
    import tf_keras as tfk

    name, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": name,
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        "cores": os.cpu_count(),
        "tensorflow": tf.__version__,
        "tf_keras": tfk.__version__,
        "python": platform.python_version(),
    }


def table(rows) -> str:
    """A markdown table; `vs float32` is the s/epoch ratio to float32 under the same compile."""
    base = {r["compile"]: r["s_per_epoch"] for r in rows if r["policy"] == "float32"}
    lines = [
        "| policy | compile | s/epoch | vs float32 | first epoch s | test ELBO |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["s_per_epoch"] / base[r["compile"]] if r["compile"] in base else float("nan")
        lines.append(
            f"| {r['policy']} | {r['compile']} | {r['s_per_epoch']:.2f} | {ratio:.2f}x | "
            f"{r['first_epoch_s']:.2f} | {r['test_elbo']:.2f} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TFVAE_DATA_DIR"))
    p.add_argument("--epochs", type=int, default=5, help="including 1 untimed warm-up")
    p.add_argument("--policies", default="float32,mixed_bfloat16", help=f"of {POLICIES}")
    p.add_argument("--compiles", default="default,no_xla", help=f"of {tuple(COMPILES)}")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--hidden-units", type=int, default=500)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--subset", type=int, default=0, help="first N training images (0: all)")
    p.add_argument("--test-subset", type=int, default=0, help="first N test images (0: all)")
    p.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: TF's own)")
    p.add_argument("--out", default=None, help="JSON (default: bench/results/DATE_...json)")
    p.add_argument("--in-process", action="store_true", help="no child processes (smoke test)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def _choices(p, spec: str, allowed, flag: str) -> list:
    chosen = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [c for c in chosen if c not in allowed]
    if bad or not chosen:
        p.error(f"{flag}: expected a comma-separated list of {tuple(allowed)}, got {spec!r}")
    return chosen


def main(argv=None) -> dict:
    p = _parser()
    args = p.parse_args(argv)
    args.passed = [a for a in (sys.argv[1:] if argv is None else argv)]
    if args.epochs < 2:
        p.error(f"--epochs: need >= 2 (one untimed warm-up), got {args.epochs}")
    if args.child:
        print(json.dumps(_train(args, *args.child.split(":"))))
        return {}
    policies = _choices(p, args.policies, POLICIES, "--policies")
    compiles = _choices(p, args.compiles, COMPILES, "--compiles")
    run = _train if args.in_process else _in_child
    rows = []
    for compile_name in compiles:
        for policy in policies:
            rows.append(_summarise(run(args, policy, compile_name)))
            if not args.quiet:
                print(
                    f"{policy} / {compile_name}: {rows[-1]['s_per_epoch']:.2f} s/epoch", flush=True
                )
    date = datetime.date.today().isoformat()
    summary = {
        "benchmark": "mixed_precision",
        "command": "python bench/bench_mixed_precision.py " + " ".join(args.passed),
        "date": date,
        "machine": machine(),
        "settings": {
            key: getattr(args, key)
            for key in ("epochs", "batch_size", "hidden_units", "latent_dim", "subset", "threads")
        },
        "rows": rows,
        "table": table(rows),
    }
    out = args.out or os.path.join(REPO, "bench", "results", f"{date}_mixed_precision.json")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    os.replace(out + ".tmp", out)
    if not args.quiet:
        m = summary["machine"]
        print(f"\n{m['cpu']}, {m['cores']} cores, {m['cpu_flags']}; {date}")
        print(f"median s/epoch over epochs 2..{args.epochs}; test ELBO after {args.epochs}\n")
        print(summary["table"])
        print(f"\nwritten to {out}")
    return summary


if __name__ == "__main__":
    main()
