"""The training objectives over K draws (`VAEConfig.objective`, `num_samples`,
`gradient_estimator`) against numpy twins written from Burda et al. (2015) and Tucker et al.
(2018), and the one-draw ELBO's path kept exactly as it was.

The only thing taken from tfvae is the documented noise: step t draws z_k = mu + sigma eps_k
with eps the standard normal `[K, batch, J]` of the stateless seed (4 * config.seed, t).
"""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import np_log_mean_exp, np_soft_clip

from tfvae import VAE, VAEConfig
from tfvae.config import TrainConfig
from tfvae.model import multi_sample
from tfvae.training.checkpointing import prepare_run
from tfvae.training.rundir import RUN_FILE

CONFIG = VAEConfig(input_dim=6, latent_dim=2, hidden_units=(8,), seed=2)
X = (np.random.default_rng(0).random((12, 6)) > 0.5).astype(np.float32)
LOG_2PI = math.log(2 * math.pi)


def noise(seed, k, n, j):
    """eps `[k, n, j]`: TFP's standard normal for `seed`, drawn as q(z|x).sample(k) draws."""
    std = tfp.distributions.MultivariateNormalDiag(tf.zeros([n, j]), tf.ones([n, j]))
    return std.sample(k, seed=tf.constant(seed, tf.int32)).numpy().astype(np.float64)


def np_log_terms(w, x, eps, low=-8.0, high=8.0):
    """(log p(x|z_k), log p(z_k), log q(z_k|x)), each `[K, batch]`, in float64, for the
    tanh MLP with a Bernoulli decoder and z_k = mu + sigma eps_k (log-variances soft-clipped
    to (low, high) as `VAEConfig.min_log_var/max_log_var` say)."""
    w1, b1, wm, bm, wv, bv, w3, b3, w4, b4 = w
    h = np.tanh(x @ w1 + b1)
    mu, raw = h @ wm + bm, h @ wv + bv
    log_var = np_soft_clip(raw, low, high)
    z = mu + np.exp(0.5 * log_var) * eps
    logits = np.tanh(z @ w3 + b3) @ w4 + b4
    reconstruction = np.sum(x * logits - np.logaddexp(0.0, logits), -1)
    log_prior = np.sum(-0.5 * LOG_2PI - 0.5 * z**2, -1)
    log_q = np.sum(-0.5 * LOG_2PI - 0.5 * log_var - 0.5 * eps**2, -1)
    analytic_kl = 0.5 * np.sum(mu**2 + np.exp(log_var) - 1.0 - log_var, -1)
    return reconstruction, log_prior, log_q, analytic_kl


def np_objective(w, x, eps, objective, beta=1.0, kl_method="monte_carlo"):
    """The per-example loss and the logged terms, from Burda et al. (2015) eq. 8 (iwae) and
    the mean over the draws of the ELBO (their "VAE k=K")."""
    rec, log_prior, log_q, analytic_kl = np_log_terms(w, x, eps)
    kl = log_q - log_prior if kl_method == "monte_carlo" or objective == "iwae" else analytic_kl
    kl = np.broadcast_to(kl, rec.shape)
    if objective == "iwae":
        loss = -np_log_mean_exp(rec - beta * kl)
    else:
        loss = np.mean(-rec + beta * kl, 0)
    terms = {"reconstruction": rec.mean(0), "kl": kl.mean(0), "elbo": (rec - kl).mean(0)}
    if objective == "iwae":
        terms["iwae"] = np_log_mean_exp(rec - kl)
    return loss, terms


def weights_of(model):
    return [v.numpy().astype(np.float64) for v in model.trainable_variables]


@pytest.mark.parametrize(
    "objective, k, beta, kl_method",
    [
        ("iwae", 4, 1.0, "analytic"),  # kl_method does not apply to iwae
        ("iwae", 4, 0.5, "monte_carlo"),
        ("iwae", 3, 0.0, "analytic"),  # warm-up's start: -log mean_k p(x|z_k)
        ("elbo", 4, 1.0, "analytic"),
        ("elbo", 4, 0.5, "monte_carlo"),
    ],
)
def test_training_loss_and_logs_match_numpy(objective, k, beta, kl_method):
    config = CONFIG.replace(objective=objective, num_samples=k, kl_weight=beta)
    model = VAE(config.replace(kl_method=kl_method))
    model.compile(tfk.optimizers.Adam(0.01), jit_compile=False)
    w = weights_of(model)
    logs = model.train_on_batch(X, return_dict=True)  # step 0: metrics before the update
    eps = noise([4 * config.seed, 0], k, len(X), config.latent_dim)
    loss, terms = np_objective(w, X.astype(np.float64), eps, objective, beta, kl_method)
    assert set(logs) == {"loss", *terms}
    np.testing.assert_allclose(logs["loss"], loss.mean(), rtol=2e-6)
    for name, value in terms.items():
        np.testing.assert_allclose(logs[name], value.mean(), rtol=2e-5, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("objective", ["iwae", "elbo"])
def test_gradients_match_finite_differences_of_numpy(objective):
    config = CONFIG.replace(objective=objective, num_samples=5, kl_method="monte_carlo")
    model = VAE(config)
    seed = [3, 9]
    grads, _, _ = model._gradients_over_draws(tf.constant(X), tf.constant(seed))
    w = weights_of(model)
    eps = noise(seed, 5, len(X), config.latent_dim)  # the noise held fixed
    # (variable index, entry): decoder kernels and bias, encoder kernels (through z and q)
    for index, entry in [(6, (0, 1)), (8, (3, 2)), (9, (4,)), (0, (2, 3)), (4, (5, 1)), (3, (1,))]:
        h = 1e-6

        def loss_at(delta):
            shifted = [v.copy() for v in w]
            shifted[index][entry] += delta
            return np_objective(shifted, X.astype(np.float64), eps, objective)[0].mean()

        numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
        got = float(grads[index].numpy()[entry])
        assert got == pytest.approx(numeric, rel=2e-3, abs=2e-5), (index, entry)


def test_one_draw_iwae_is_the_monte_carlo_elbo_exactly():
    """K = 1: log mean_k w_k = log w_1, the one-draw ELBO with log q - log p for its KL."""
    elbo = VAE(CONFIG.replace(kl_method="monte_carlo"))
    iwae = VAE(CONFIG.replace(objective="iwae", num_samples=1))
    histories = []
    for model in (elbo, iwae):
        model.compile(tfk.optimizers.Adam(0.01), jit_compile=False, steps_per_execution=1)
        histories.append(model.fit(X, batch_size=4, epochs=2, shuffle=False, verbose=0).history)
    assert histories[0]["loss"] == histories[1]["loss"] == [-v for v in histories[1]["iwae"]]
    for a, b in zip(elbo.trainable_variables, iwae.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


@pytest.mark.parametrize(
    "kl_method, jit_compile",
    [
        ("analytic", False),
        ("monte_carlo", False),
        pytest.param("analytic", True, marks=pytest.mark.slow),
        pytest.param("monte_carlo", True, marks=pytest.mark.slow),
    ],
)
def test_multi_sample_elbo_path_with_one_draw_trains_as_the_elbo(kl_method, jit_compile):
    """The K-draw code (`tfvae.model.multi_sample`) at K = 1 takes the one-draw ELBO's steps."""
    histories, weights = [], []
    for over_draws in (False, True):
        model = VAE(CONFIG.replace(kl_method=kl_method))
        model._one_draw_elbo = not over_draws  # route K = 1 through the multi-sample step
        model.compile(tfk.optimizers.Adam(0.01), jit_compile=jit_compile)
        history = model.fit(X, batch_size=4, epochs=2, shuffle=False, verbose=0).history
        histories.append(history["loss"])
        weights.append([v.numpy() for v in model.trainable_variables])
    assert histories[0] == histories[1]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# The base commit's training (before the multi-sample objectives existed), recorded: the
# per-epoch loss and each trainable variable's sum after 2 epochs of 3 steps on X48.
BASE_REFERENCE = {
    (False, "analytic"): (
        [11.331375122070312, 11.064872741699219],
        [-0.8324886006, -0.2877842709, 1.3617629437, 0.4867541045, -0.4920323538,
         0.2217966728, -2.6923636384, -1.3045647442, -0.1898455592, 0.5695821538],
    ),
    (True, "monte_carlo"): (
        [11.299410820007324, 11.27791690826416],
        [-0.9295972735, -0.3733568294, 1.2019100119, 0.4926388301, -0.3662420479,
         0.1670729667, -2.9634371507, -1.3550949767, 0.1173655277, 0.5345190107],
    ),
}  # fmt: skip


@pytest.mark.parametrize("jit_compile, kl_method", list(BASE_REFERENCE))
def test_default_objective_trains_as_before(jit_compile, kl_method, monkeypatch):
    """objective=elbo, num_samples=1 (the defaults) keep the one-draw path: the same draws
    and steps as the base commit, whose numbers are recorded above."""

    def refuse(*args, **kwargs):
        raise AssertionError("the default objective went through tfvae.model.multi_sample")

    monkeypatch.setattr(multi_sample, "draw", refuse)
    x48 = (np.random.default_rng(0).random((48, 16)) > 0.5).astype(np.float32)
    config = VAEConfig(input_dim=16, latent_dim=3, hidden_units=(12,), kl_method=kl_method, seed=5)
    assert (config.objective, config.num_samples) == ("elbo", 1)
    model = VAE(config)
    model.compile(tfk.optimizers.Adam(0.01), jit_compile=jit_compile, steps_per_execution=1)
    history = model.fit(x48, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    losses, sums = BASE_REFERENCE[(jit_compile, kl_method)]
    assert set(history) == {"loss", "elbo", "reconstruction", "kl"}
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-6)
    got = [float(np.sum(v.numpy().astype(np.float64))) for v in model.trainable_variables]
    np.testing.assert_allclose(got, sums, rtol=1e-5, atol=1e-6)


def test_iwae_bound_is_above_the_elbo_of_the_same_draws():
    model = VAE(CONFIG.replace(objective="iwae", num_samples=5))
    draws = model._draw_terms(tf.constant(X), tf.constant([5, 6]))
    terms = multi_sample.summaries(draws, "iwae")
    elbo = (terms["reconstruction"] - terms["kl"]).numpy()
    assert np.all(terms["iwae"].numpy() > elbo)
    model.compile(jit_compile=False)
    logs = model.train_on_batch(X, return_dict=True)
    assert logs["iwae"] > logs["elbo"] and logs["loss"] == pytest.approx(-logs["iwae"])


def encoder_gradients(model, x, seeds):
    """Each seed's encoder gradient (flattened) and the decoder's, as `train_step` takes them."""
    step = tf.function(lambda seed: model._gradients_over_draws(x, seed)[0])
    n = len(model.encoder.trainable_variables)
    encoder, decoder = [], []
    for seed in seeds:
        grads = [g.numpy() for g in step(tf.constant(seed))]
        encoder.append(np.concatenate([g.ravel() for g in grads[:n]]))
        decoder.append(grads[n:])
    return np.array(encoder), decoder


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_dreg_has_the_reparameterized_gradients_expectation_and_less_noise(beta):
    """DReG (Tucker et al. 2018) changes the encoder's gradient estimate, not its mean; the
    decoder's is the same. Each seed averages 1000 draws of K = 5 (4 inputs, 250 times);
    the paired difference of the two estimators over 30 seeds is within 4.5 standard errors
    for every encoder weight (leaving the correction out, the path gradient alone, is off
    by >100)."""
    config = CONFIG.replace(objective="iwae", num_samples=5, kl_weight=beta)
    x = tf.constant(np.repeat(X[:4], 250, 0))
    seeds = [[i, 7] for i in range(30)]
    standard, standard_decoder = encoder_gradients(VAE(config), x, seeds)
    dreg, dreg_decoder = encoder_gradients(VAE(config.replace(gradient_estimator="dreg")), x, seeds)
    for a, b in zip(standard_decoder, dreg_decoder):
        for ga, gb in zip(a, b):
            np.testing.assert_array_equal(ga, gb)
    difference = dreg - standard
    t = difference.mean(0) / (difference.std(0, ddof=1) / np.sqrt(len(seeds)))
    assert np.max(np.abs(t)) < 4.5
    assert np.median(dreg.std(0) / standard.std(0)) < 0.5


def test_dreg_refuses_a_q_it_cannot_hold_constant():
    class Opaque(tfp.distributions.MultivariateNormalLinearOperator):
        pass

    q = Opaque(loc=tf.zeros([2]), scale=tf.linalg.LinearOperatorDiag(tf.ones([2])))
    with pytest.raises(ValueError, match="gradient_estimator='dreg' cannot hold .*'scale'"):
        multi_sample.stop_parameter_gradients(q)


def test_config_fields_defaults_and_refusals():
    assert (VAEConfig().objective, VAEConfig().num_samples) == ("elbo", 1)
    assert VAEConfig().gradient_estimator == "reparameterized"
    old = VAEConfig().to_dict()
    for key in ("objective", "num_samples", "gradient_estimator"):
        del old[key]
    assert VAEConfig.from_dict(old) == VAEConfig()  # configs saved before these fields
    with pytest.raises(ValueError, match=r"VAEConfig.gradient_estimator: 'dreg' applies to"):
        VAEConfig(gradient_estimator="dreg")
    with pytest.raises(ValueError, match=r"VAEConfig.num_samples: must be an integer >= 1"):
        VAEConfig(num_samples=0)
    with pytest.raises(ValueError, match=r"VAEConfig.objective: must be one of"):
        VAEConfig(objective="vae")


def test_run_recorded_before_the_new_fields_resumes(tmp_path):
    config, train = VAEConfig(input_dim=6), TrainConfig()
    prepare_run(str(tmp_path), config, train)
    with open(tmp_path / RUN_FILE) as f:
        run = json.load(f)
    for key in ("objective", "num_samples", "gradient_estimator"):
        del run["model_config"][key]
    (tmp_path / RUN_FILE).write_text(json.dumps(run))
    prepare_run(str(tmp_path), config, train)  # the defaults: the same run
    with pytest.raises(ValueError, match=r"model_config.objective: saved 'elbo', now 'iwae'"):
        prepare_run(str(tmp_path), config.replace(objective="iwae"), train)


def test_iwae_training_on_the_digits_raises_the_test_bound():
    """Burda et al.'s recipe in small: K = 5, a few epochs on the embedded 8x8 digits."""
    from tfvae.data.datasets import load_default

    data = load_default()
    config = VAEConfig(
        input_dim=64, latent_dim=4, hidden_units=(64,), objective="iwae", num_samples=5
    )
    model = VAE(config)
    model.compile(tfk.optimizers.Adam(3e-3), jit_compile=False)
    before = model.log_likelihood(data.x_test, importance_samples=50).mean()
    history = model.fit(data.x_train, batch_size=50, epochs=4, verbose=0).history
    after = model.log_likelihood(data.x_test, importance_samples=50).mean()
    assert after > before + 5, (before, after)
    assert all(i > e for i, e in zip(history["iwae"], history["elbo"]))
    assert history["iwae"][-1] > history["iwae"][0]


# ------------------------------------------------------------------ command line
def test_cli_flags_set_the_training_objective():
    from tfvae.cli.app import parser as _parser
    from tfvae.cli.flags import config_values as _config_values

    args = ["train", "--objective", "iwae", "--num-samples", "5", "--gradient-estimator", "dreg"]
    model, train = _config_values(_parser().parse_args(args))
    assert (model["objective"], model["num_samples"], model["gradient_estimator"]) == (
        "iwae",
        5,
        "dreg",
    )
    assert "num_samples" not in train  # TrainConfig.eval_samples is --eval-samples
    usage = _parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--num-samples N" in usage and "--eval-samples N" in usage
    assert "{elbo,iwae}" in usage and "{reparameterized,dreg}" in usage


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["--gradient-estimator", "dreg"],
            "--gradient-estimator: VAEConfig.gradient_estimator: 'dreg' applies to "
            "objective='iwae' only, got objective='elbo'",
        ),
        (["--num-samples", "0"], "--num-samples: must be an integer >= 1, got 0"),
        (["--objective", "vae"], "--objective: invalid choice: 'vae'"),
    ],
)
def test_cli_refuses_bad_objectives_in_one_line(argv, expected, capsys, tmp_path, monkeypatch):
    from tfvae.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        status = main(["train", "--epochs", "0", *argv])
    except SystemExit as e:  # argparse errors exit from inside parse_args
        status = e.code
    assert status == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tfvae")]
    assert len(lines) == 1 and expected in lines[0], lines
    assert os.listdir(tmp_path) == []  # nothing written


@pytest.mark.slow
def test_cli_trains_iwae_and_records_it(tmp_path, capsys):
    from tfvae.cli import main

    out = tmp_path / "run"
    argv = ["train", "--epochs", "1", "--hidden-units", "16", "--eval-samples", "5"]
    argv += ["--batch-size", "200", "--objective", "iwae", "--num-samples", "5"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    recorded = json.loads((out / RUN_FILE).read_text())["model_config"]
    assert (recorded["objective"], recorded["num_samples"]) == ("iwae", 5)
    assert recorded["gradient_estimator"] == "reparameterized"
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "elbo", "iwae", "reconstruction", "kl"} <= set(header)
    from tfvae import load_model

    assert load_model(str(out)).config.objective == "iwae"  # the saved model keeps it
    # metrics.json and `tfvae evaluate` report the objective it trained on: the bound at its
    # 5 draws, above the mean ELBO of the same draws (log-mean-exp >= mean, per example).
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert test["iwae_num_samples"] == 5 and test["elbo"] < test["iwae"] < 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--samples", "5", "--batch-size", "200", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["iwae"] == pytest.approx(test["iwae"], abs=1e-3)
    assert main(["evaluate", str(out), "--samples", "5", "--batch-size", "200"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if "trained on" in s)
    assert line.split()[:4] == ["IWAE", "bound", "(K=5,", "trained"]
    assert float(line.split()[-2]) == pytest.approx(test["iwae"], abs=1e-3)
