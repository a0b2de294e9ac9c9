"""Smoke test of bench/: the whole benchmark on a few hundred MNIST examples, one epoch.

Runs in-process (no subprocess per contestant) and asserts the summary's structure and that
every number in it is finite; no timing is asserted (speed lives in BENCHMARKS.md). The peer
contestants (JAX, `torch.compile`) are checked on two batches against numpy: their test
-ELBO and IWAE from the weights they trained.
"""

import importlib.util
import json
import math

import numpy as np
import pytest
from helpers import np_log_mean_exp

from bench import common, run

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = run.installed("jax")  # the `test` extra installs it (and the `peers` one)
NO_JAX = "jax, flax or optax is not installed: `pip install -e .[test]`"
NO_TORCH = "torch is not installed: `pip install .[bench]` (torch==2.13.0, CPU)"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def summary(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    args = ["--data-dir", data_dir, "--subset", "300", "--epochs", "1", "--eval-at", "1"]
    args += ["--iwae-k", "16", "--iwae-n", "20", "--scaling-k", "4,8", "--flops-repeats", "3"]
    args += ["--eval-samples", "2", "--workdir", str(tmp / "work"), "--out", str(out)]
    args += ["--in-process", "--quiet"]
    # pytorch_compile has its own test below (Inductor compiles C++ for minutes).
    names = ["tfp_recipe", "tfvae", "tfvae_arrays", "tfvae_glorot"]
    names += ["pytorch"] * HAS_TORCH + ["jax"] * HAS_JAX
    returned = run.main(args + ["--contestants", ",".join(names)])
    with open(out, encoding="utf-8") as f:
        written = json.load(f)
    return returned, written


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


# The test -ELBO of binary 784-pixel MNIST after one short epoch (a few Adam steps) lies
# between two models it cannot match: a decoder of independent pixels at the training set's
# marginals (206.0 nats, the best such model, which a few steps cannot reach) and one that
# flips a fair coin per pixel with q = p(z) (784 log 2 = 543.4 nats, which every contestant
# beats in its first epoch: measured 468-502 nats at 300 examples, 3 steps of 128).
MARGINAL_PIXELS_NATS = 206.0
COIN_FLIP_NATS = 784 * math.log(2)


def _after_one_short_epoch(neg_elbo):
    return _finite(neg_elbo) and MARGINAL_PIXELS_NATS < neg_elbo < COIN_FLIP_NATS


def test_summary_has_every_tensorflow_contestant_with_finite_numbers(summary):
    returned, written = summary
    assert written["table"].keys() == returned["table"].keys()
    table = written["table"]
    for name in ("tfp_recipe", "tfvae", "tfvae_arrays", "tfvae_glorot"):
        row = table[name]
        for key in ("median_epoch_s", "first_epoch_s", "examples_per_s", "peak_rss_mb"):
            assert _finite(row[key]) and row[key] > 0, (name, key, row[key])
        assert set(row["neg_elbo"]) == {"1"}
        assert _after_one_short_epoch(row["neg_elbo"]["1"]), row
        assert row["finite"]
        assert len(row["first_epoch_s_per_repeat"]) == 1
        assert 0 < row["best_epoch_s"] <= row["median_epoch_s"], row
    assert _finite(written["ratios"]["tfvae/tfp_recipe"]["time_ratio_median"])
    assert not any(key.startswith("tfvae/tfvae") for key in written["ratios"])
    assert _finite(written["ratios"]["tfvae/tfp_recipe"]["best_epoch_ratio_median"])
    configurations = written["tfvae_configurations_over_fastest"]
    best = written["tfvae_configurations_over_fastest_best_epochs"]
    assert set(best) == set(configurations) and min(best.values()) == 1.0
    assert set(configurations) == {"tfvae", "tfvae_arrays", "tfvae_glorot"}
    assert min(configurations.values()) == 1.0 and all(_finite(v) for v in configurations.values())
    # compile() with no arguments takes the fused path on the dataset and on the array (3
    # batches an epoch here: all run as single steps, but through the fused function).
    raw = written["raw"]["runs"]
    for name in ("tfvae", "tfvae_arrays"):
        assert raw[name][0]["steps_per_execution"] == 128
        assert raw[name][0]["fused_group_length"] == 32
    assert raw["tfvae_arrays"][0]["input"] == "arrays"


def test_iwae_floor_and_table_are_reported(summary):
    _, s = summary
    for name in ("mnist", "binarized_mnist"):
        q = s["iwae"][name]
        assert q["k"] == 16 and q["n"] == 20 and q["finite"]
        # The importance-weighted bound (K = 16) is tighter than the ELBO of the same model on
        # the same 20 examples: -log p(x) below the -ELBO (measured 8.5-11.5 nats below).
        assert MARGINAL_PIXELS_NATS < q["nll"] < q["neg_elbo_k1_same_subset"], q
    assert set(s["iwae_scaling"]) == {"4", "8"}
    assert s["flops"]["step_matmul_gflops"] > 0
    assert s["flops"]["step_flop_per_example"] == 3_280_000
    text = run.format_table(s)
    assert "tfvae/tfp_recipe" in text and "-log p(x)" in text


def _assert_peer_benchmarked(s, peer):
    """`peer`'s row (finite epoch time, a plausible -ELBO), its ratio, and its place among
    the peers tfvae is measured against."""
    row = s["table"][peer]
    assert _finite(row["median_epoch_s"]) and _after_one_short_epoch(row["neg_elbo"]["1"]), row
    assert _finite(s["ratios"][f"tfvae/{peer}"]["time_ratio_median"])
    assert peer in s["ratios"]["tfvae/fastest_peer"]["peers"]


def test_pytorch_reference_is_benchmarked(summary):
    if not HAS_TORCH:
        pytest.skip(NO_TORCH)
    _assert_peer_benchmarked(summary[1], "pytorch")


def test_jax_is_benchmarked_for_training_and_evaluation_speed(summary):
    if not HAS_JAX:
        pytest.skip(NO_JAX)
    _, s = summary
    _assert_peer_benchmarked(s, "jax")
    speed = s["evaluation_speed"]
    for name in ("tfvae", "jax"):
        assert speed[name]["iwae"]["k"] == 16 and speed[name]["iwae"]["n"] == 20
        assert speed[name]["elbo"]["n"] == 300  # the whole (subset) test set
        for kind in ("elbo", "iwae"):
            assert _finite(speed[name][kind]["examples_per_s"]) and speed[name][kind]["finite"]
        # The bound (first 20 examples) is tighter than the ELBO (all 300) of the same model,
        # up to the sampling of the 20 (3 standard errors of their mean; measured 15-17 nats
        # below, with standard errors of 2.4-2.9 nats).
        iwae, elbo = speed[name]["iwae"], speed[name]["elbo"]["neg_elbo"]
        assert _after_one_short_epoch(elbo), (name, elbo)
        assert MARGINAL_PIXELS_NATS < iwae["nll"] < elbo + 3 * iwae["nll_stderr"], (name, iwae)
    assert set(speed["tfvae_over_jax_examples_per_s"]) == {"elbo", "iwae"}
    assert "tfvae over JAX" in run.format_table(s)


def test_a_missing_peer_is_skipped_with_the_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(run, "installed", lambda need: need is None)
    monkeypatch.setattr(run.common, "save_mnist_arrays", _stop)  # before any data is read
    with pytest.raises(RuntimeError, match="stop here"):
        run.main(["--contestants", "jax,pytorch_compile,tfvae", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert "jax: skipped (jax, flax or optax is not installed: pip install -e .[peers])" in out
    assert any(line.startswith("pytorch_compile: skipped (torch is not installed") for line in out)


def _stop(*args, **kwargs):
    raise RuntimeError("stop here")


# ---------------------------------------------------------------- the peers against numpy
def _numpy_elbo_parts(w, x, eps):
    """(KL `[n]`, log p(x|z) `[k, n]`) in float64 from `common.WEIGHT_NAMES` weights, for
    z = mu + sigma * eps (eps `[k, n, 20]`): the model written out once more, in numpy."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = x.astype(np.float64)
    h = np.maximum(x @ w["enc_w"] + w["enc_b"], 0)
    mu, logvar = h @ w["mu_w"] + w["mu_b"], h @ w["logvar_w"] + w["logvar_b"]
    kl = 0.5 * np.sum(mu**2 + np.exp(logvar) - 1 - logvar, axis=-1)
    z = mu + np.exp(0.5 * logvar) * eps
    logits = np.maximum(z @ w["dec_w"] + w["dec_b"], 0) @ w["out_w"] + w["out_b"]
    log_px = np.sum(x * logits - np.logaddexp(0, logits), axis=-1)
    return kl, log_px, (mu, logvar, z)


@pytest.fixture
def two_batches(tmp_path):
    """An .npz of 256 binary training images (two batches of 128), 64 test images and the
    evaluation noise for 2 draws."""
    rng = np.random.default_rng(0)
    path = str(tmp_path / "tiny.npz")
    common.save_arrays(path, rng.random((256, 784)) < 0.3, rng.random((64, 784)) < 0.3, 2, 1)
    return path


def _train_peer(module, data, tmp_path, *extra):
    weights = str(tmp_path / "weights.npz")
    argv = ["--data", data, "--out", str(tmp_path / "r.json"), "--epochs", "1"]
    argv += ["--eval-at", "1", "--weights-out", weights, *extra]
    result = module.main(argv)
    return result, common.load_weights(weights)


def _assert_elbo_matches_numpy(result, weights, data):
    _, x_test, eps = common.load_arrays(data)
    kl, log_px, _ = _numpy_elbo_parts(weights, x_test, eps)
    want = float(np.mean(kl - log_px.mean(0)))
    assert result["evals"]["1"]["neg_elbo"] == pytest.approx(want, rel=1e-5)
    assert result["evals"]["1"]["kl"] == pytest.approx(float(np.mean(kl)), rel=1e-4)
    assert len(result["train_loss"]) == 1 and np.isfinite(result["train_loss"][0])


def test_jax_contestant_trains_and_scores_its_weights_as_numpy_does(two_batches, tmp_path):
    if not HAS_JAX:
        pytest.skip(NO_JAX)
    from bench import jax_reference

    result, weights = _train_peer(jax_reference, two_batches, tmp_path)
    _assert_elbo_matches_numpy(result, weights, two_batches)
    # PyTorch's initialisation, U(+-1/sqrt(fan_in)), moved by two Adam steps (each about
    # lr = 1e-3 per weight): Flax's default (LeCun normal) or Glorot would reach further.
    for name, fan_in in (("enc_w", 784), ("enc_b", 784), ("out_w", 400), ("dec_w", 20)):
        bound = 1 / np.sqrt(fan_in)
        assert bound - 3e-3 < np.abs(weights[name]).max() < bound + 3e-3, name
    # The IWAE estimate is the log-mean-exp of its draws' weights: chunks of 100 and a
    # shorter last one (K = 250), batches of 16 with a short last one.
    import jax

    model = jax_reference.make_model()
    params = jax_reference.from_common_weights(weights)
    _, x_test, _ = common.load_arrays(two_batches)
    x = x_test[:40]
    got = jax_reference.iwae_log_likelihood(model, params, x, 250, batch_size=16, chunk=100)
    want = []
    for b, start in enumerate(range(0, len(x), 16)):
        xb = x[start : start + 16]
        keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), b), 3)
        eps = np.concatenate(
            [
                np.asarray(jax.random.normal(k, (n, len(xb), 20)))
                for k, n in zip(keys, (100, 100, 50))
            ]
        )
        kl, log_px, (mu, logvar, z) = _numpy_elbo_parts(weights, xb, eps)
        log_pz = np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), axis=-1)
        log_qz = np.sum(-0.5 * eps**2 - 0.5 * logvar - 0.5 * np.log(2 * np.pi), axis=-1)
        log_w = log_px + log_pz - log_qz
        want.append(np_log_mean_exp(log_w))
    np.testing.assert_allclose(got, np.concatenate(want), rtol=1e-5)


def test_torch_compile_contestant_trains_and_scores_its_weights_as_numpy_does(
    two_batches, tmp_path, monkeypatch
):
    if not HAS_TORCH:
        pytest.skip(NO_TORCH)
    from bench import torch_reference

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    result, weights = _train_peer(torch_reference, two_batches, tmp_path, "--compile")
    assert result["name"] == "pytorch_compile" and "torch.compile" in result["framework"]
    _assert_elbo_matches_numpy(result, weights, two_batches)


def test_tfp_recipe_counts_the_kl_twice_and_tfvae_counts_it_once(small_config, binary_x):
    """The diagnosis in BENCHMARKS.md: the recipe's model carries the KL regularizer twice."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras as tfk

    from tfvae import VAE

    tfd, tfpl, tfkl = tfp.distributions, tfp.layers, tfk.layers
    prior = tfd.Independent(tfd.Normal(tf.zeros(3), 1.0), reinterpreted_batch_ndims=1)
    regularizer = tfpl.KLDivergenceRegularizer(prior, weight=1.0, use_exact_kl=True)
    encoder = tfk.Sequential(
        [
            tfkl.InputLayer(input_shape=(16,)),
            tfkl.Dense(tfpl.IndependentNormal.params_size(3)),
            tfpl.IndependentNormal(3, activity_regularizer=regularizer),
        ]
    )
    decoder = tfk.Sequential(
        [
            tfkl.InputLayer(input_shape=(3,)),
            tfkl.Dense(16),
            tfpl.IndependentBernoulli((16,), tfd.Bernoulli.logits),
        ]
    )
    recipe = tfk.Model(inputs=encoder.inputs, outputs=decoder(encoder.outputs[0]))
    recipe(binary_x, training=True)
    kl = tf.reduce_mean(tfd.kl_divergence(encoder(binary_x), prior)).numpy()
    np.testing.assert_allclose([float(v) for v in recipe.losses], [kl, kl], rtol=1e-5)

    # tfvae: no extra losses, and the training loss is exactly -ELBO (KL once) at beta = 1.
    model = VAE(small_config)
    model(binary_x)
    assert model.losses == []
    model.compile()
    history = model.fit(binary_x, batch_size=64, epochs=1, verbose=0).history
    np.testing.assert_allclose(history["loss"], -np.asarray(history["elbo"]), rtol=1e-5)


def test_lockstep_trains_both_from_the_same_start(data_dir, tmp_path):
    """bench.lockstep on 512 examples, 1 epoch: both frameworks take the same 4 steps from the
    same weights with the same noise, so their test -ELBOs agree closely (the step's
    arithmetic is checked exactly in test_train_step_reference.py)."""
    if not HAS_TORCH:
        pytest.skip("torch is not installed: `pip install .[bench]` (torch==2.13.0, CPU)")
    from bench import lockstep

    out = tmp_path / "lockstep.json"
    args = ["--data-dir", data_dir, "--subset", "512", "--epochs", "1", "--seeds", "0"]
    s = lockstep.main(args + ["--eval-samples", "1", "--out", str(out), "--quiet"])
    (row,) = s["seeds"][0]["epochs"]
    # Measured: 0.001 nats apart; with the noise of the wrong step (seed t + 1) 0.50 nats.
    assert abs(row["tfvae_minus_pytorch"]) < 0.05 and _after_one_short_epoch(row["tfvae"]), row
    # Adam's first steps are ~lr * sign(gradient): 4 steps move a weight by at most ~4e-3.
    assert row["max_abs_weight_difference"] < 1e-2, row
    assert json.loads(out.read_text())["mean_tfvae_minus_pytorch_per_epoch"] == [
        row["tfvae_minus_pytorch"]
    ]


def test_quality_study_reports_every_seed_and_the_welch_interval(data_dir, tmp_path):
    """bench.quality on 300 examples, 1 epoch, 2 seeds: each seed is its own run (different
    -ELBOs) with its contestant's initialisation, the table's mean and SD are those of the
    runs, the interval is Welch's (scipy as the reference), and finished runs are reused."""
    from scipy import stats

    from bench import quality

    names = ["pytorch", "tfvae", "tfvae_glorot"] if HAS_TORCH else ["tfvae", "tfvae_glorot"]
    inits = {"pytorch": None, "tfvae": "fan_in_uniform", "tfvae_glorot": "glorot_uniform"}
    baseline = names[0]
    args = ["--data-dir", data_dir, "--subset", "300", "--epochs", "1", "--eval-at", "1"]
    args += ["--seeds", "2", "--contestants", ",".join(names), "--baseline", baseline]
    args += ["--eval-samples", "1", "--workdir", str(tmp_path / "work"), "--in-process"]
    s = quality.main(args + ["--out", str(tmp_path / "q.json"), "--quiet"])
    values = {}
    for name in names:
        runs = [s["raw"][name][str(k)] for k in (0, 1)]
        assert [r["weight_init"] for r in runs] == [inits[name]] * 2, name
        per_seed = [r["evals"]["1"]["neg_elbo"] for r in runs]
        assert per_seed[0] != per_seed[1], (name, per_seed)  # the seed reaches the run
        assert all(_after_one_short_epoch(v) for v in per_seed), per_seed
        row = s["table"][name]["1"]
        assert row["n"] == 2 and row["mean"] == pytest.approx(sum(per_seed) / 2)
        assert row["sd"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2**0.5)
        values[name] = per_seed
    for other in names[1:]:
        d = s["differences"][f"{other}-{baseline}"]["1"]
        ci = stats.ttest_ind(values[other], values[baseline], equal_var=False)
        assert (d["low"], d["high"]) == pytest.approx(ci.confidence_interval(0.95), rel=1e-9)
        assert d["diff"] == pytest.approx(np.mean(values[other]) - np.mean(values[baseline]))
    assert "Welch 95% interval" in quality.format_table(s)
    # Resuming from the same workdir reads the finished runs instead of training again: a
    # marked result file shows up in the new table.
    marked = tmp_path / "work" / f"{names[-1]}_0.json"
    result = json.loads(marked.read_text())
    result["evals"]["1"]["neg_elbo"] += 100.0
    marked.write_text(json.dumps(result))
    again = quality.main(args + ["--out", str(tmp_path / "q2.json"), "--quiet"])
    assert again["table"][names[-1]]["1"]["mean"] == pytest.approx(
        s["table"][names[-1]]["1"]["mean"] + 50.0
    )
    assert again["table"][baseline] == s["table"][baseline]
    # ... but not runs made with other settings.
    other = [a if a != "300" else "200" for a in args]
    with pytest.raises(SystemExit, match="other settings.*subset"):
        quality.main(other + ["--out", str(tmp_path / "q3.json"), "--quiet"])


def test_epoch_stats_skip_the_first_epoch_and_report_median_and_fastest():
    from bench.run import epoch_stats

    result = {"epoch_seconds": [9.0, 2.4, 1.4, 1.5, 2.5], "num_examples": 600}
    result["epoch_cpu_seconds"] = [12.0, 4.4, 2.7, 2.8, 4.5]
    stats = epoch_stats(result)
    approx = pytest.approx
    assert stats["median_epoch_s"] == approx(1.95) and stats["best_epoch_s"] == 1.4
    assert stats["first_epoch_s"] == 9.0 and stats["compile_s"] == approx(9.0 - 1.95)
    assert stats["median_epoch_cpu_s"] == approx(3.6)
    assert stats["examples_per_s"] == approx(600 / 1.95)


def test_epoch_breakdown_times_every_arm_on_the_same_data(data_dir):
    from bench import epoch_breakdown

    result = epoch_breakdown.main(["--data-dir", data_dir, "--subset", "640", "--rounds", "2"])
    assert result["examples"] == 640
    for arm in ("adam", "sgd", "forward"):
        assert len(result[arm]["seconds"]) == 2
        assert 0 < result[arm]["fastest_s"] <= result[arm]["median_s"]
