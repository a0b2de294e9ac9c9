"""Start-up time of the `tfvae` command: help, an argument error, `import tfvae`.

Each case runs as a fresh `python -m tfvae ...` subprocess (what the `tfvae` script runs),
from an empty directory, with the checkout under test on PYTHONPATH; the figure is the
median wall time over `--runs` runs, after one untimed run to warm the file cache.
`import tensorflow` is timed too, as the cost every case avoids. `--repo` measures another
checkout (e.g. the commit before the lazy package) for a before/after table.

Usage: python bench/bench_cli_startup.py [--runs 10] [--repo PATH] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> arguments of `python`
CASES = {
    "tfvae --help": ["-m", "tfvae", "--help"],
    "tfvae train --help": ["-m", "tfvae", "train", "--help"],
    "tfvae train --epochs -1 (argument error)": ["-m", "tfvae", "train", "--epochs", "-1"],
    "python -c 'import tfvae'": ["-c", "import tfvae"],
    "python -c 'import tensorflow' (reference)": ["-c", "import tensorflow"],
}


def time_case(args: list, repo: str, runs: int) -> list:
    """Wall seconds of `runs` runs of `python ARGS` (after one untimed run)."""
    env = dict(os.environ, PYTHONPATH=repo)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    times = []
    with tempfile.TemporaryDirectory() as cwd:
        for i in range(runs + 1):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, *args], cwd=cwd, env=env, capture_output=True, check=False
            )
            if i:
                times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="timed runs per case (default: 10)")
    p.add_argument("--repo", default=REPO, help="checkout to measure (default: this one)")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    repo = os.path.abspath(args.repo)
    commit = subprocess.run(
        ["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results = {}
    for name, case in CASES.items():
        times = time_case(case, repo, args.runs)
        results[name] = {"median_s": statistics.median(times), "min_s": min(times)}
        print(f"{name:45s} median {statistics.median(times):6.2f} s  min {min(times):6.2f} s")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    summary = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "repo": repo,
        "commit": commit,
        "machine": machine,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": args.runs,
        "results": results,
    }
    if args.out:
        from tfvae.base import atomic  # TF-free: tfvae's package imports lazily

        atomic.write_json(args.out, summary, sort_keys=False)
    return summary


if __name__ == "__main__":
    main()
