"""Smoke test of bench/: the whole benchmark on a few hundred MNIST examples, one epoch.

Runs in-process (no subprocess per contestant) and asserts the summary's structure and that
every number in it is finite; no timing is asserted (speed lives in BENCHMARKS.md).
"""

import importlib.util
import json
import math

import pytest

from bench import run

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def summary(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    args = ["--data-dir", data_dir, "--subset", "300", "--epochs", "1", "--eval-at", "1"]
    args += ["--iwae-k", "16", "--iwae-n", "20", "--scaling-k", "4,8", "--flops-repeats", "3"]
    args += ["--eval-samples", "2", "--workdir", str(tmp / "work"), "--out", str(out)]
    args += ["--in-process", "--quiet"]
    returned = run.main(args)
    with open(out, encoding="utf-8") as f:
        written = json.load(f)
    return returned, written


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_summary_has_every_tensorflow_contestant_with_finite_numbers(summary):
    returned, written = summary
    assert written["table"].keys() == returned["table"].keys()
    table = written["table"]
    for name in ("tfp_recipe", "tfvae"):
        row = table[name]
        for key in ("median_epoch_s", "first_epoch_s", "examples_per_s", "peak_rss_mb"):
            assert _finite(row[key]) and row[key] > 0, (name, key, row[key])
        assert set(row["neg_elbo"]) == {"1"}
        # -ELBO of a binary 784-pixel image: positive, at most 784 log 2 + KL at init scale.
        assert 0 < row["neg_elbo"]["1"] < 2000, row
        assert row["finite"]
    assert _finite(written["ratios"]["tfvae/tfp_recipe"]["time_ratio_median"])


def test_iwae_floor_and_table_are_reported(summary):
    _, s = summary
    for name in ("mnist", "binarized_mnist"):
        q = s["iwae"][name]
        assert q["k"] == 16 and q["n"] == 20 and q["finite"]
        # The importance-weighted bound is tighter than the one-sample ELBO on average.
        assert 0 < q["nll"] < q["neg_elbo_k1_same_subset"] + 5
    assert set(s["iwae_scaling"]) == {"4", "8"}
    assert s["flops"]["step_matmul_gflops"] > 0
    assert s["flops"]["step_flop_per_example"] == 3_280_000
    text = run.format_table(s)
    assert "tfvae/tfp_recipe" in text and "-log p(x)" in text


def test_pytorch_reference_is_benchmarked(summary):
    if not HAS_TORCH:
        pytest.skip("torch is not installed: `pip install .[bench]` (torch==2.13.0, CPU)")
    _, s = summary
    row = s["table"]["pytorch"]
    assert _finite(row["median_epoch_s"]) and 0 < row["neg_elbo"]["1"] < 2000
    assert _finite(s["ratios"]["tfvae/pytorch"]["time_ratio_median"])
