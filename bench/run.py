"""One entry point: every contestant trained on the same data, timed, scored and compared.

Everything in one go (speed against the peers, tfvae's configurations, first epochs, quality
at equal epochs, evaluation speed; about 30 minutes on 2 quiet cores), then the warm start
with a persistent compilation cache (a second, shorter run):

    PYTHONPATH=. python -m bench.run --data-dir ../shared/data --epochs 20 --eval-at 1,5,20 \\
        --repeats 3 --threads 2 --iwae-k 5000 --iwae-n 1000 --out bench/results/DATE_threads2.json
    PYTHONPATH=. python -m bench.run --data-dir ../shared/data --epochs 3 --eval-at 3 \\
        --repeats 3 --contestants jax,pytorch_compile,tfvae --compile-cache /tmp/cc \\
        --no-binarized --iwae-k 100 --iwae-n 100 --out bench/results/DATE_threads2_warm_cache.json

Contestants (`--contestants`, default all of `DEFAULT_CONTESTANTS` that are installed; a
missing framework is skipped with one line saying what to install): `pytorch` (the eager
reference), `pytorch_compile`, `jax` (Flax + optax, a jitted scan per epoch), `tfp_recipe`,
`tfvae` (`compile()` with no speed arguments, `fit` on `make_dataset`), `tfvae_arrays`
(the same, `fit(x, batch_size=128)` on the array: the README's snippet), `tfvae_glorot`;
also `tfvae_keras_loop` (one step per call, the default before) on request. Each runs in
its own subprocess (same thread pinning for all: `--threads` intra-op, `--inter-op`
inter-op), on identical arrays written once to a temporary .npz: MNIST from `--data-dir`
statically binarized with a fixed seed. Repeats run them round-robin so machine load hits
them alike; speed ratios are taken within a repeat and the median over repeats is
reported, with tfvae against the fastest peer and every tfvae configuration against the
fastest one. Compilers start cold in every run unless `--compile-cache DIR` (then repeat 1
fills DIR and the later repeats' first epochs show a warm start). Then tfvae is trained on
the standard static binarized MNIST; both tfvae models get an IWAE -log p(x), and tfvae's
and JAX's test -ELBO and IWAE throughput are timed (`bench.tfvae_eval`, `bench.jax_eval`).
Prints a table and writes all raw numbers to `--out` (JSON).
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


# name: (worker module, its arguments ("x": the contestant's name), what it needs installed)
CONTESTANTS = {
    "pytorch": ("bench.torch_reference", [], "torch"),
    "pytorch_compile": ("bench.torch_reference", ["--compile"], "torch"),
    "jax": ("bench.jax_reference", [], "jax"),
    "tfp_recipe": ("bench.tfp_recipe", [], None),
    "tfp_recipe_exact_kl": ("bench.tfp_recipe", ["--exact-kl", "--name", "x"], None),
    "tfp_recipe_fixed": (
        "bench.tfp_recipe",
        ["--exact-kl", "--kl-weight", "0.5", "--name", "x"],
        None,
    ),
    "tfvae": ("bench.tfvae_train", [], None),
    "tfvae_arrays": ("bench.tfvae_train", ["--input", "arrays", "--name", "x"], None),
    # The same, started from Keras' Glorot initialisation (tfvae's default before 2026-11-23).
    "tfvae_glorot": ("bench.tfvae_train", ["--weight-init", "glorot_uniform", "--name", "x"], None),
    # Keras' one step per call: `compile()`'s default before the fast defaults.
    "tfvae_keras_loop": ("bench.tfvae_train", ["--steps-per-execution", "1", "--name", "x"], None),
}
DEFAULT_CONTESTANTS = (
    "pytorch", "pytorch_compile", "jax", "tfp_recipe", "tfvae", "tfvae_arrays", "tfvae_glorot",
)  # fmt: skip
PEERS = ("pytorch", "pytorch_compile", "jax")  # the frameworks tfvae is measured against
INSTALL = {
    "torch": "torch is not installed: pip install -e .[bench]",
    "jax": "jax, flax or optax is not installed: pip install -e .[peers]",
}


def installed(need: Optional[str]) -> bool:
    """Whether what a contestant needs ("torch", "jax" or None) can be imported here."""
    import importlib.util

    modules = {"torch": ["torch"], "jax": ["jax", "flax", "optax"]}.get(need, [])
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


def torch_available() -> bool:
    return installed("torch")


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
    """Median and fastest steady-state epoch (epochs 2..N), first epoch, compile overhead,
    examples/s. The fastest is the one to compare where the VM's speed jumps between
    states (as here: whole processes, and stretches within one, run at 1.4 or 2.4 s/epoch)."""
    times = result["epoch_seconds"]
    steady = times[1:] if len(times) > 1 else times
    median = float(np.median(steady))
    cpu = result.get("epoch_cpu_seconds", [])
    return {
        "median_epoch_cpu_s": float(np.median(cpu[1:] if len(cpu) > 1 else cpu)),
        "median_epoch_s": median,
        "best_epoch_s": float(np.min(steady)),
        "first_epoch_s": float(times[0]),
        "compile_s": float(times[0] - median) if len(times) > 1 else float("nan"),
        "examples_per_s": result["num_examples"] / median,
    }


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    p.add_argument(
        "--contestants",
        default=",".join(DEFAULT_CONTESTANTS),
        help=f"comma-separated, from {', '.join(CONTESTANTS)} (tfvae is always run)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch contestants")
    p.add_argument(
        "--compile-cache",
        default=None,
        help="keep compiled programs in this directory across runs (XLA for tfvae, JAX's "
        "cache, Inductor's): the first repeat fills it (default: every run starts cold)",
    )
    p.add_argument("--elbo-batch-size", type=int, default=1000, help="test -ELBO timing")
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

    names = [n.strip() for n in args.contestants.split(",") if n.strip()]
    if args.tfp_variants:
        names += ["tfp_recipe_exact_kl", "tfp_recipe_fixed"]
    unknown = [n for n in names if n not in CONTESTANTS]
    if unknown:
        p.error(f"--contestants: unknown {', '.join(unknown)} (known: {', '.join(CONTESTANTS)})")
    names = list(dict.fromkeys(names if "tfvae" in names else ["tfvae", *names]))
    skipped = {}
    for name in names:
        need = CONTESTANTS[name][2]
        if need == "torch" and args.no_torch:
            skipped[name] = "--no-torch"
        elif not installed(need):
            skipped[name] = INSTALL[need]
    for name, why in skipped.items():
        log(f"{name}: skipped ({why})")
    contestants = [(n, *CONTESTANTS[n][:2]) for n in names if n not in skipped]
    run_torch = "pytorch" not in skipped and "pytorch" in names

    from tfvae.data.datasets import load_binarized_mnist

    env = dict(os.environ)
    env.update(common.thread_env(args.threads, args.inter_op))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    work = args.workdir or tempfile.mkdtemp(prefix="tfvae_bench_")
    os.makedirs(work, exist_ok=True)

    # Identical arrays for all: MNIST grey levels, one seeded Bernoulli draw.
    mnist_npz = os.path.join(work, "mnist.npz")
    common.save_mnist_arrays(mnist_npz, args.data_dir, args.subset, args.eval_samples)
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
            extra += _outputs(name, work) + _compile_cache(name, args.compile_cache)
            runs[name].append(
                _run(
                    module,
                    ["--data", mnist_npz, "--out", out, *common_args, *extra],
                    _contestant_env(env, name, work, r, args.compile_cache),
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
    eval_args += ["--throughput", "--elbo-batch-size", str(args.elbo_batch_size)]
    for entry in iwae:
        eval_args += ["--iwae", *entry]
    evaluation = _run("bench.tfvae_eval", eval_args, env, log, args.in_process)
    jax_evaluation = None
    if runs.get("jax"):
        log(f"JAX: test -ELBO and IWAE K={args.iwae_k} throughput")
        jax_args = ["--weights", os.path.join(work, "jax_weights.npz"), "--data", mnist_npz]
        jax_args += ["--k", str(args.iwae_k), "--n", str(args.iwae_n)]
        jax_args += ["--elbo-batch-size", str(args.elbo_batch_size)]
        jax_args += ["--threads", str(args.threads), "--out", os.path.join(work, "jax_eval.json")]
        jax_evaluation = _run("bench.jax_eval", jax_args, env, log, args.in_process)

    summary = summarize(runs, binarized_run, evaluation, args)
    summary["evaluation_speed"] = evaluation_speed(evaluation, jax_evaluation)
    summary["skipped"] = skipped
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
    summary["raw"] = {
        "runs": runs,
        "binarized": binarized_run,
        "evaluation": evaluation,
        "jax_evaluation": jax_evaluation,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    if not args.quiet:
        print(format_table(summary))
    return summary


def _outputs(name: str, work: str) -> List[str]:
    """Where a contestant leaves its model for the evaluation: tfvae's saved model, JAX's
    weights (every repeat overwrites them)."""
    if name == "tfvae":
        return ["--save", os.path.join(work, "tfvae_mnist")]
    if name == "jax":
        return ["--weights-out", os.path.join(work, "jax_weights.npz")]
    return []


def _compile_cache(name: str, cache: Optional[str]) -> List[str]:
    """The worker flag that keeps compiled programs in `cache` (tfvae: XLA's, JAX: its own)."""
    if not cache:
        return []
    if name.startswith("tfvae"):
        return ["--compile-cache", os.path.join(cache, "xla")]
    if name == "jax":
        return ["--compile-cache", os.path.join(cache, "jax")]
    return []


def _contestant_env(env: dict, name: str, work: str, repeat: int, cache: Optional[str]) -> dict:
    """`env`, with Inductor's on-disk cache (on by default) fresh for each `pytorch_compile`
    run, or shared in `cache`, so that all compilers start alike."""
    if name != "pytorch_compile":
        return env
    folder = os.path.join(cache, "inductor") if cache else os.path.join(work, f"inductor_{repeat}")
    return {**env, "TORCHINDUCTOR_CACHE_DIR": folder}


def _per_repeat_ratio(
    runs: dict, name: str, others: List[str], key: str = "median_epoch_s"
) -> List[float]:
    """Per repeat: `name`'s epoch (`key`: median or best) over the fastest of `others`'."""
    out = []
    for r, result in enumerate(runs[name]):
        best = min(epoch_stats(runs[o][r])[key] for o in others)
        out.append(epoch_stats(result)[key] / best)
    return out


def evaluation_speed(tfvae_eval: dict, jax_eval: Optional[dict]) -> dict:
    """Test -ELBO and IWAE examples per second, tfvae (its first IWAE model) beside JAX."""
    out = {}
    first = next(iter(tfvae_eval["iwae"].values()), None)
    if "elbo" in tfvae_eval and first is not None:
        out["tfvae"] = {"elbo": tfvae_eval["elbo"], "iwae": first}
    if jax_eval is not None:
        out["jax"] = {"elbo": jax_eval["elbo"], "iwae": jax_eval["iwae"]}
    if len(out) == 2:
        out["tfvae_over_jax_examples_per_s"] = {
            kind: out["tfvae"][kind]["examples_per_s"] / out["jax"][kind]["examples_per_s"]
            for kind in ("elbo", "iwae")
        }
    return out


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
                "best_epoch_s",
                "median_epoch_cpu_s",
                "first_epoch_s",
                "compile_s",
                "examples_per_s",
            )
        }
        row["first_epoch_s_per_repeat"] = [s["first_epoch_s"] for s in stats]
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
        best_ratio = _per_repeat_ratio(runs, "tfvae", [other], "best_epoch_s")
        ratios[f"tfvae/{other}"] = {
            "best_epoch_ratio_median": float(np.median(best_ratio)),
            "cpu_time_ratio_median": float(np.median(cpu_ratio)),
            "time_ratio_median": float(np.median(per_repeat)),
            "speedup_median": float(np.median([1 / v for v in per_repeat])),
            "per_repeat": per_repeat,
        }
    peers = [n for n in PEERS if runs.get(n)]
    if peers:
        per_repeat = _per_repeat_ratio(runs, "tfvae", peers)
        best_ratio = _per_repeat_ratio(runs, "tfvae", peers, "best_epoch_s")
        ratios["tfvae/fastest_peer"] = {
            "peers": peers,
            "best_epoch_ratio_median": float(np.median(best_ratio)),
            "time_ratio_median": float(np.median(per_repeat)),
            "speedup_median": float(np.median([1 / v for v in per_repeat])),
            "per_repeat": per_repeat,
        }
    family = [n for n in runs if n.startswith("tfvae")]
    configurations = {
        n: float(np.median(_per_repeat_ratio(runs, n, family))) for n in family
    }  # each tfvae configuration's epoch over the fastest one's, within a repeat
    configurations_best = {
        n: float(np.median(_per_repeat_ratio(runs, n, family, "best_epoch_s"))) for n in family
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
        "tfvae_configurations_over_fastest": configurations,
        "tfvae_configurations_over_fastest_best_epochs": configurations_best,
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
    head = "| | s/epoch (median) | fastest epoch s | CPU s/epoch | first epoch s | compile s |"
    head += " examples/s | floor |"
    head += "".join(f" -ELBO ep {e} |" for e in evals) + " peak RSS MiB |"
    lines = [head, "|" + "---|" * (9 + len(evals))]
    for name, r in s["table"].items():
        cells = [
            f"{r['median_epoch_s']:.2f}",
            f"{r.get('best_epoch_s', float('nan')):.2f}",
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
        cpu = v.get("cpu_time_ratio_median")
        lines.append(
            f"{key}: time ratio {v['time_ratio_median']:.2f}"
            + (f", CPU-time ratio {cpu:.2f}" if cpu is not None else "")
            + (f" (of {', '.join(v['peers'])})" if "peers" in v else "")
            + f" (tfvae {v['speedup_median']:.2f}x faster; per repeat "
            + ", ".join(f"{x:.2f}" for x in v["per_repeat"])
            + ")"
            + (
                f"; fastest epochs' ratio {v['best_epoch_ratio_median']:.2f}"
                if "best_epoch_ratio_median" in v
                else ""
            )
        )
    lines.append(
        "tfvae configurations, epoch over the fastest's (median of repeats): "
        + ", ".join(f"{k} {v:.3f}" for k, v in s["tfvae_configurations_over_fastest"].items())
        + "; fastest epochs: "
        + ", ".join(
            f"{k} {v:.3f}"
            for k, v in s.get("tfvae_configurations_over_fastest_best_epochs", {}).items()
        )
    )
    lines.append(
        "first epoch s per repeat (compile included): "
        + "; ".join(
            f"{name} " + ", ".join(f"{x:.2f}" for x in r["first_epoch_s_per_repeat"])
            for name, r in s["table"].items()
        )
    )
    lines += _evaluation_speed_lines(s.get("evaluation_speed", {}))
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


def _evaluation_speed_lines(speed: dict) -> List[str]:
    """tfvae's and JAX's test -ELBO and IWAE throughput as a Markdown table."""
    rows = [name for name in ("tfvae", "jax") if name in speed]
    if not rows:
        return []
    lines = [
        "",
        "| evaluation | test -ELBO examples/s (first call s) | -ELBO | "
        "IWAE examples/s (first batch s) | K | n | -log p(x) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in rows:
        e, q = speed[name]["elbo"], speed[name]["iwae"]
        lines.append(
            f"| {name} | {e['examples_per_s']:.0f} ({e['first_call_s']:.2f}) | "
            f"{e['neg_elbo']:.2f} | {q['examples_per_s']:.2f} ({q['first_batch_call_s']:.2f}) "
            f"| {q['k']} | {q['n']} | {q['nll']:.2f} |"
        )
    ratio = speed.get("tfvae_over_jax_examples_per_s")
    if ratio:
        lines.append(
            f"tfvae over JAX, examples/s: test -ELBO {ratio['elbo']:.2f}, IWAE {ratio['iwae']:.2f}"
        )
    return lines


if __name__ == "__main__":
    main()
