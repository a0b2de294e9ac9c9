"""One entry point: train the PyTorch reference, the TFP recipe and tfvae on the same data.

    PYTHONPATH=. python -m bench.run --epochs 20 --repeats 1 --out bench_results.json

Each contestant runs in its own subprocess (same thread pinning for all: `--threads`
intra-op, `--inter-op` inter-op), on identical arrays written once to a temporary .npz:
MNIST from `--data-dir` statically binarized with a fixed seed. Repeats run the three
round-robin so machine load hits them alike; speed ratios are taken within a repeat and the
median over repeats is reported. Then tfvae is trained on the standard static binarized
MNIST and both tfvae models get an IWAE -log p(x) (`bench.tfvae_eval`). Prints a table and
writes all raw numbers to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

if __package__ in (None, ""):  # `python bench/run.py` as well as `python -m bench.run`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BURDA_2015_NLL = 86.76  # one stochastic layer VAE, K=5000 (Burda et al. 2015, Table 1)
PYTHAE_NLL = 89.78  # pythae benchmark: MLP VAE, 40 latents, static binarized MNIST


def torch_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(module: str, args: List[str], env: Dict[str, str], log, in_process=False) -> dict:
    """Runs `python -m module args` and returns the JSON it wrote to its `--out`.

    `in_process` calls `module.main(args)` here instead (the smoke test: no interpreter and
    TensorFlow start-up per contestant; timings and peak RSS are then not separable).
    """
    out = args[args.index("--out") + 1]
    start = time.perf_counter()
    if in_process:
        import importlib

        importlib.import_module(module).main(args)
        with open(out, encoding="utf-8") as f:
            result = json.load(f)
        result["process_seconds"] = time.perf_counter() - start
        return result
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    result["process_seconds"] = time.perf_counter() - start
    log(f"  {module} done in {result['process_seconds']:.1f} s")
    return result


def epoch_stats(result: dict) -> dict:
    """Median steady-state epoch (epochs 2..N), first epoch, compile overhead, examples/s."""
    times = result["epoch_seconds"]
    steady = times[1:] if len(times) > 1 else times
    median = float(np.median(steady))
    cpu = result.get("epoch_cpu_seconds", [])
    return {
        "median_epoch_cpu_s": float(np.median(cpu[1:] if len(cpu) > 1 else cpu)),
        "median_epoch_s": median,
        "first_epoch_s": float(times[0]),
        "compile_s": float(times[0] - median) if len(times) > 1 else float("nan"),
        "examples_per_s": result["num_examples"] / median,
    }


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TFVAE_DATA_DIR", "../shared/data"))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-at", default="1,5,20")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--inter-op", type=int, default=1)
    p.add_argument("--subset", type=int, default=None, help="first N train/test examples")
    p.add_argument("--eval-samples", type=int, default=4, help="z draws per test example")
    p.add_argument("--iwae-k", type=int, default=5000)
    p.add_argument("--iwae-n", type=int, default=1000, help="first N test examples")
    p.add_argument("--scaling-k", default="100,500,2500")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-binarized", action="store_true", help="skip static binarized MNIST")
    p.add_argument(
        "--tfp-variants",
        action="store_true",
        help="also run the TFP recipe with exact KL, and with exact KL counted once (diagnosis)",
    )
    p.add_argument("--workdir", default=None, help="keep intermediate files here")
    p.add_argument("--out", default="bench_results.json")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--flops-repeats", type=int, default=300)
    p.add_argument(
        "--in-process", action="store_true", help="no subprocesses (smoke test; not for timing)"
    )
    args = p.parse_args(argv)

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    from tfvae.data import load_binarized_mnist

    env = dict(os.environ)
    env.update(common.thread_env(args.threads, args.inter_op))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    work = args.workdir or tempfile.mkdtemp(prefix="tfvae_bench_")
    os.makedirs(work, exist_ok=True)

    # Identical arrays for all three: MNIST grey levels, one seeded Bernoulli draw.
    mnist_npz = os.path.join(work, "mnist.npz")
    common.save_mnist_arrays(mnist_npz, args.data_dir, args.subset, args.eval_samples)
    run_torch = not args.no_torch and torch_available()
    contestants = []
    if run_torch:
        contestants.append(("pytorch", "bench.torch_reference", []))
    contestants.append(("tfp_recipe", "bench.tfp_recipe", []))
    if args.tfp_variants:
        contestants.append(
            ("tfp_recipe_exact_kl", "bench.tfp_recipe", ["--exact-kl", "--name", "x"])
        )
        contestants.append(
            (
                "tfp_recipe_fixed",
                "bench.tfp_recipe",
                ["--exact-kl", "--kl-weight", "0.5", "--name", "x"],
            )
        )
    contestants.append(("tfvae", "bench.tfvae_train", []))
    # The same, started from Keras' Glorot initialisation (tfvae's default before 2026-11-23).
    contestants.append(
        ("tfvae_glorot", "bench.tfvae_train", ["--weight-init", "glorot_uniform", "--name", "x"])
    )

    common_args = [
        "--epochs", str(args.epochs), "--eval-at", args.eval_at,
        "--threads", str(args.threads), "--inter-op", str(args.inter_op),
    ]  # fmt: skip
    runs: Dict[str, List[dict]] = {name: [] for name, _, _ in contestants}
    for r in range(args.repeats):
        for name, module, extra in contestants:
            log(f"repeat {r + 1}/{args.repeats}: {name}")
            out = os.path.join(work, f"{name}_{r}.json")
            extra = [e if e != "x" else name for e in extra]
            save = ["--save", os.path.join(work, "tfvae_mnist")] if name == "tfvae" else []
            runs[name].append(
                _run(
                    module,
                    ["--data", mnist_npz, "--out", out, *common_args, *extra, *save],
                    env,
                    log,
                    args.in_process,
                )
            )

    iwae = [["mnist", mnist_npz, os.path.join(work, "tfvae_mnist")]]
    binarized_run = None
    if not args.no_binarized:
        bmnist = load_binarized_mnist(args.data_dir)
        n = args.subset
        bin_npz = os.path.join(work, "binarized_mnist.npz")
        common.save_arrays(bin_npz, bmnist.x_train[:n], bmnist.x_test[:n], args.eval_samples, 3)
        log("tfvae on static binarized MNIST")
        binarized_run = _run(
            "bench.tfvae_train",
            ["--data", bin_npz, "--out", os.path.join(work, "tfvae_binarized.json"),
             "--save", os.path.join(work, "tfvae_binarized"), "--name", "tfvae_binarized",
             *common_args],
            env,
            log,
            args.in_process,
        )  # fmt: skip
        iwae.append(["binarized_mnist", bin_npz, os.path.join(work, "tfvae_binarized")])
    log(f"IWAE K={args.iwae_k} on {args.iwae_n} test examples, and the matmul floor")
    eval_args = ["--out", os.path.join(work, "tfvae_eval.json"), "--k", str(args.iwae_k)]
    eval_args += ["--n", str(args.iwae_n), "--scaling-k", args.scaling_k]
    eval_args += ["--threads", str(args.threads), "--inter-op", str(args.inter_op)]
    eval_args += ["--flops-repeats", str(args.flops_repeats)]
    for entry in iwae:
        eval_args += ["--iwae", *entry]
    evaluation = _run("bench.tfvae_eval", eval_args, env, log, args.in_process)

    summary = summarize(runs, binarized_run, evaluation, args)
    summary["machine"] = {
        "cpu": cpu_model(),
        "cpus_visible": os.cpu_count(),
        "threads": args.threads,
        "inter_op": args.inter_op,
        "python": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "load_average_at_end": os.getloadavg(),
    }
    summary["command"] = "PYTHONPATH=. python -m bench.run " + " ".join(argv or sys.argv[1:])
    summary["torch_skipped"] = None if run_torch else "torch not installed or --no-torch"
    summary["raw"] = {"runs": runs, "binarized": binarized_run, "evaluation": evaluation}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    if not args.quiet:
        print(format_table(summary))
    return summary


def summarize(runs, binarized_run, evaluation, args) -> dict:
    """Per contestant: median speed over repeats, ratios within each repeat, ELBOs of repeat 1."""
    fl = evaluation["flops"]
    floor_s = common.STEP_FLOP_PER_EXAMPLE * 1.0 / (fl["step_matmul_gflops"] * 1e9)
    table = {}
    for name, results in runs.items():
        stats = [epoch_stats(r) for r in results]
        row = {
            key: float(np.median([s[key] for s in stats]))
            for key in (
                "median_epoch_s",
                "median_epoch_cpu_s",
                "first_epoch_s",
                "compile_s",
                "examples_per_s",
            )
        }
        row["neg_elbo"] = {e: v["neg_elbo"] for e, v in results[0]["evals"].items()}
        row["peak_rss_mb"] = float(np.median([r["peak_rss_mb"] for r in results]))
        row["floor_fraction"] = floor_s * results[0]["num_examples"] / row["median_epoch_s"]
        row["finite"] = bool(
            all(np.isfinite(r["train_loss"]).all() for r in results)
            and all(np.isfinite(list(row["neg_elbo"].values())))
        )
        table[name] = row
    ratios = {}
    for other in [n for n in runs if not n.startswith("tfvae")]:
        per_repeat = [
            epoch_stats(t)["median_epoch_s"] / epoch_stats(o)["median_epoch_s"]
            for t, o in zip(runs["tfvae"], runs[other])
        ]
        cpu_ratio = [
            epoch_stats(t)["median_epoch_cpu_s"] / epoch_stats(o)["median_epoch_cpu_s"]
            for t, o in zip(runs["tfvae"], runs[other])
        ]
        ratios[f"tfvae/{other}"] = {
            "cpu_time_ratio_median": float(np.median(cpu_ratio)),
            "time_ratio_median": float(np.median(per_repeat)),
            "speedup_median": float(np.median([1 / v for v in per_repeat])),
            "per_repeat": per_repeat,
        }
    quality = {
        name: {
            **v,
            "reference_nll": {"burda2015_k5000": BURDA_2015_NLL, "pythae": PYTHAE_NLL},
        }
        for name, v in evaluation["iwae"].items()
    }
    if binarized_run is not None:
        quality["binarized_mnist"]["neg_elbo"] = {
            e: v["neg_elbo"] for e, v in binarized_run["evals"].items()
        }
    return {
        "table": table,
        "ratios": ratios,
        "iwae": quality,
        "iwae_scaling": evaluation["scaling"],
        "iwae_peak_rss_mb": evaluation["peak_rss_mb"],
        "rss_before_iwae_mb": evaluation["rss_before_iwae_mb"],
        "flops": fl,
        "floor_epoch_s_60000": floor_s * 60000,
        "epochs": args.epochs,
        "repeats": args.repeats,
    }


def format_table(s: dict) -> str:
    """The summary as Markdown tables."""
    evals = sorted({int(e) for row in s["table"].values() for e in row["neg_elbo"]})
    head = "| | s/epoch (median) | CPU s/epoch | first epoch s | compile s | examples/s | floor |"
    head += "".join(f" -ELBO ep {e} |" for e in evals) + " peak RSS MiB |"
    lines = [head, "|" + "---|" * (8 + len(evals))]
    for name, r in s["table"].items():
        cells = [
            f"{r['median_epoch_s']:.2f}",
            f"{r['median_epoch_cpu_s']:.2f}",
            f"{r['first_epoch_s']:.2f}",
            f"{r['compile_s']:.2f}",
            f"{r['examples_per_s']:.0f}",
            f"{r['floor_fraction']:.0%}",
            *[f"{r['neg_elbo'].get(str(e), float('nan')):.2f}" for e in evals],
            f"{r['peak_rss_mb']:.0f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for key, v in s["ratios"].items():
        lines.append(
            f"{key}: time ratio {v['time_ratio_median']:.2f}, "
            f"CPU-time ratio {v['cpu_time_ratio_median']:.2f} "
            f"(tfvae {v['speedup_median']:.2f}x faster; per repeat "
            + ", ".join(f"{x:.2f}" for x in v["per_repeat"])
            + ")"
        )
    fl = s["flops"]
    lines.append(
        f"matmul floor: {fl['step_matmul_gflops']:.1f} GFLOP/s at the step's shapes "
        f"(XLA {fl.get('xla_step_matmul_gflops') or float('nan'):.1f}, "
        f"PyTorch {fl.get('torch_step_matmul_gflops') or float('nan'):.1f}; "
        f"numpy 128x784x400: {fl['numpy_784x400_gflops']:.1f}) -> "
        f"{s['floor_epoch_s_60000']:.2f} s per 60,000-example epoch"
    )
    lines.append("")
    lines.append(
        "| tfvae IWAE | K | test examples | -log p(x) nats | -ELBO same subset | s | refs |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for name, q in s["iwae"].items():
        lines.append(
            f"| {name} | {q['k']} | {q['n']} | {q['nll']:.2f} ± {q['nll_stderr']:.2f} | "
            f"{q['neg_elbo_k1_same_subset']:.2f} | {q['seconds']:.1f} | "
            f"Burda 2015: {BURDA_2015_NLL}; pythae: {PYTHAE_NLL} |"
        )
    lines.append(
        f"IWAE peak RSS {s['iwae_peak_rss_mb']:.0f} MiB (after loading TF and models: "
        f"{s['rss_before_iwae_mb']:.0f} MiB); cost vs K: "
        + ", ".join(
            f"K={k}: {v['seconds']:.2f} s ({v['us_per_example_sample']:.1f} us/sample)"
            for k, v in s["iwae_scaling"].items()
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
