"""Quality at equal epochs over many seeds: tfvae and its peers, independent runs.

    PYTHONPATH=. python -m bench.quality --data-dir ../shared/data --seeds 8 --jobs 2 --threads 1 \\
        --contestants pytorch,pytorch_compile,jax,tfvae

The peers: the PyTorch reference (eager and `torch.compile`) and JAX (`bench.run`'s).
`bench.run` times the contestants and reports the -ELBO of one seed each; one seed cannot say
whether tfvae is "no worse" than PyTorch, because the run-to-run spread (initial weights, z
noise, batch order) is 0.1-0.8 nats (SD over seeds, BENCHMARKS.md). Here every contestant
trains once per seed 0..N-1 on the same binarized MNIST file `bench.run` writes, and the test
-ELBO (same saved noise for all) is reported as mean +- SD over seeds, with the difference
to the baseline (PyTorch) and its Welch 95% interval. Runs go `--jobs` at a time, so timings
are not comparable and none are reported. With `--workdir`, runs whose result file is already
there are reused, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np

if __package__ in (None, ""):  # `python bench/quality.py` as well as `python -m bench.quality`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common, run  # noqa: E402

CONTESTANTS = {
    "pytorch": ("bench.torch_reference", []),
    "pytorch_compile": ("bench.torch_reference", ["--compile"]),
    "jax": ("bench.jax_reference", []),
    "tfvae": ("bench.tfvae_train", []),
    "tfvae_glorot": ("bench.tfvae_train", ["--weight-init", "glorot_uniform", "--name", "x"]),
    "tfvae_fan_in": ("bench.tfvae_train", ["--weight-init", "fan_in_uniform", "--name", "x"]),
    "tfp_recipe": ("bench.tfp_recipe", []),
}


def welch(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """Mean of a - b with the Welch-Satterthwaite 95% interval (Student t quantile)."""
    from scipy import stats

    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else np.inf
    q = float(stats.t.ppf(0.975, df))
    diff = float(a.mean() - b.mean())
    return {"diff": diff, "se": se, "df": float(df), "low": diff - q * se, "high": diff + q * se}


def summarize(evals: Dict[str, Dict[int, List[float]]], baseline: str) -> dict:
    """Per contestant and epoch: mean, SD, n; for every other contestant, the difference to
    `baseline` (epochs both have)."""
    table = {
        name: {
            str(e): {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "n": len(v)}
            for e, v in sorted(per_epoch.items())
        }
        for name, per_epoch in evals.items()
    }
    diffs = {}
    for name in evals:
        if name == baseline or baseline not in evals:
            continue
        diffs[f"{name}-{baseline}"] = {
            str(e): welch(np.array(v), np.array(evals[baseline][e]))
            for e, v in sorted(evals[name].items())
            if len(v) > 1 and len(evals[baseline].get(e, ())) > 1
        }
    return {"table": table, "differences": diffs}


def format_table(s: dict) -> str:
    """The summary as Markdown."""
    epochs = sorted({int(e) for row in s["table"].values() for e in row})
    head = "| contestant (seeds) | " + " | ".join(f"-ELBO ep {e} (mean ± SD)" for e in epochs)
    lines = [head + " |", "|---|" + "---|" * len(epochs)]
    for name, row in s["table"].items():
        n = max(v["n"] for v in row.values())
        cells = [
            f"{row[str(e)]['mean']:.2f} ± {row[str(e)]['sd']:.2f}"
            + (f" (n={row[str(e)]['n']})" if row[str(e)]["n"] != n else "")
            if str(e) in row
            else "-"
            for e in epochs
        ]
        lines.append(f"| {name} ({n}) | " + " | ".join(cells) + " |")
    for key, per_epoch in s["differences"].items():
        lines.append("")
        lines.append(
            f"{key}: "
            + "; ".join(
                f"ep {e}: {d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
                for e, d in per_epoch.items()
            )
            + f" (nats, Welch 95% interval; negative = {key.split('-')[0]} better)"
        )
    return "\n".join(lines)


def _check_settings(work: str, args) -> None:
    """Resuming reuses the per-run files in `work`, so refuse one made with other settings."""
    settings = {
        "data_dir": os.path.abspath(args.data_dir),
        "epochs": args.epochs,
        "eval_at": args.eval_at,
        "subset": args.subset,
        "eval_samples": args.eval_samples,
        "threads": args.threads,
    }
    path = os.path.join(work, "settings.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            before = json.load(f)
        differ = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if differ:
            raise SystemExit(
                f"--workdir {work} holds runs made with other settings (before, now): {differ};"
                " use another --workdir"
            )
    else:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(settings, f, indent=1)


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TFVAE_DATA_DIR", "../shared/data"))
    p.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 per contestant")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-at", default="1,5,20")
    p.add_argument("--contestants", default="pytorch,tfvae,tfvae_glorot")
    p.add_argument("--baseline", default="pytorch")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    p.add_argument("--subset", type=int, default=None, help="first N train/test examples")
    p.add_argument("--eval-samples", type=int, default=4, help="z draws per test example")
    p.add_argument("--workdir", default=None, help="keep intermediate files here")
    p.add_argument("--out", default="bench_quality.json")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--in-process", action="store_true", help="no subprocesses, one run at a time (smoke test)"
    )
    args = p.parse_args(argv)
    names = [n.strip() for n in args.contestants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CONTESTANTS))
    if unknown:
        p.error(f"unknown contestants {unknown}; choose from {sorted(CONTESTANTS)}")
    if args.baseline not in names:
        p.error(f"--baseline {args.baseline} is not among --contestants {names}")
    if args.seeds < 2:
        p.error(f"--seeds must be at least 2 for a standard deviation, got {args.seeds}")
    for name in names:
        need = run.CONTESTANTS.get(name, (None, None, None))[2]
        if not run.installed(need):
            p.error(f"{name}: {run.INSTALL[need]}, or leave out {name}")

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    env = dict(os.environ)
    env.update(common.thread_env(args.threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [run.REPO, env.get("PYTHONPATH")]))
    work = args.workdir or tempfile.mkdtemp(prefix="tfvae_quality_")
    os.makedirs(work, exist_ok=True)
    _check_settings(work, args)
    data = os.path.join(work, "mnist.npz")
    common.save_mnist_arrays(data, args.data_dir, args.subset, args.eval_samples)

    jobs = []
    for seed in range(args.seeds):  # seed-major: an interrupted study has whole seeds done
        for name in names:
            module, extra = CONTESTANTS[name]
            out = os.path.join(work, f"{name}_{seed}.json")
            argv_ = ["--data", data, "--out", out, "--epochs", str(args.epochs)]
            argv_ += ["--eval-at", args.eval_at, "--threads", str(args.threads)]
            argv_ += ["--seed", str(seed), *(name if e == "x" else e for e in extra)]
            jobs.append((name, seed, module, argv_))
    evals: Dict[str, Dict[int, List[float]]] = {n: {} for n in names}
    raw: Dict[str, Dict[str, dict]] = {n: {} for n in names}

    def one_run(module, argv_):
        out = argv_[argv_.index("--out") + 1]
        if os.path.exists(out):  # a finished run of an earlier, interrupted study
            with open(out, encoding="utf-8") as f:
                return json.load(f)
        return run._run(module, argv_, env, lambda _: None, args.in_process)

    jobs_at_once = 1 if args.in_process else args.jobs
    pool = concurrent.futures.ThreadPoolExecutor(jobs_at_once)
    futures = {
        pool.submit(one_run, module, argv_): (name, seed) for name, seed, module, argv_ in jobs
    }
    try:
        for done in concurrent.futures.as_completed(futures):
            name, seed = futures[done]
            result = done.result()
            raw[name][str(seed)] = {
                "name": result.get("name"),
                "weight_init": result.get("weight_init"),
                "evals": result["evals"],
                "train_loss": result["train_loss"],
            }
            for e, v in result["evals"].items():
                evals[name].setdefault(int(e), []).append(v["neg_elbo"])
            log(f"{name} seed {seed}: " + ", ".join(
                f"ep {e} {v['neg_elbo']:.2f}" for e, v in result["evals"].items()
            ))  # fmt: skip
    except BaseException:  # a failed run or Ctrl-C: drop the queued runs, keep finished files
        pool.shutdown(wait=False, cancel_futures=True)
        log(
            f"stopping: queued runs dropped, waiting for the runs in progress; finished runs"
            f" are in {work} (rerun with --workdir {work} to resume)"
        )
        raise
    pool.shutdown()
    short = {n: sorted(e for e, v in evals[n].items() if len(v) < args.seeds) for n in names}
    short = {n: e for n, e in short.items() if e}
    if short:  # e.g. TerminateOnNaN ended a run before its last evaluation
        log(f"warning: fewer than {args.seeds} values at these epochs: {short}")

    summary = summarize(evals, args.baseline)
    summary["machine"] = {
        "cpu": run.cpu_model(),
        "threads_per_run": args.threads,
        "jobs": jobs_at_once,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }
    summary["command"] = "PYTHONPATH=. python -m bench.quality " + " ".join(argv or sys.argv[1:])
    summary["raw"] = raw
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    if not args.quiet:
        print(format_table(summary))
    return summary


if __name__ == "__main__":
    main()
