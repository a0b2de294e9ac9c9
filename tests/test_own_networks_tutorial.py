"""The TFP probabilistic-layers tutorial's networks through tfvae, end to end (issue 33).

The README's "Bring your own networks": an encoder `Dense -> tfpl.MultivariateNormalTriL`
and a decoder `Dense -> tfpl.IndependentBernoulli` on MNIST-shaped data (tfvae's embedded
digits drawn at 28 x 28), passed as `tfvae.VAE(config, encoder=..., decoder=...)`, then fit
under the default compile with a short last batch, save and load (`tfvae.load_model` and a
tf_keras `.keras` file), `tfvae.export`, and a serve in a fresh process that can import
neither tfvae nor TFP (TF Serving's session loader, `serving_probe.py`).
"""

import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import REPO, run_python

import tfvae
from tfvae.data.datasets import load_default

tfd, tfkl, tfpl = tfp.distributions, tfk.layers, tfp.layers

pytestmark = pytest.mark.slow

D, LATENT = 784, 8
IWAE_SAMPLES = 200
SEED = 5


def mnist_shaped_digits() -> np.ndarray:
    """tfvae's embedded 8x8 digits, each pixel 3x3, padded to 28x28: `[1797, 784]` in {0, 1}."""
    d = load_default()
    x = np.concatenate([d.x_train, d.x_test]).reshape(-1, 8, 8).repeat(3, 1).repeat(3, 2)
    return np.pad(x, ((0, 0), (2, 2), (2, 2))).reshape(-1, D).astype(np.float32)


def tutorial_networks(hidden: int = 64):
    """The tutorial's encoder and decoder, Dense instead of conv (the same distribution ends)."""
    encoder = tfk.Sequential(
        [
            tfkl.InputLayer(input_shape=[D]),
            tfkl.Dense(hidden, activation="relu"),
            tfkl.Dense(tfpl.MultivariateNormalTriL.params_size(LATENT)),
            tfpl.MultivariateNormalTriL(LATENT),
        ],
        name="encoder",
    )
    decoder = tfk.Sequential(
        [
            tfkl.InputLayer(input_shape=[LATENT]),
            tfkl.Dense(hidden, activation="relu"),
            tfkl.Dense(D),
            tfpl.IndependentBernoulli(D, tfd.Bernoulli.logits),
        ],
        name="decoder",
    )
    return encoder, decoder


@pytest.fixture(scope="module")
def data():
    x = mnist_shaped_digits()
    return x[:450], x[-64:]  # 450 = 4 batches of 100 and a short one of 50


@pytest.fixture(scope="module")
def trained(data):
    """(model, history): two epochs under the default compile (XLA, fused steps)."""
    tfk.utils.set_random_seed(0)
    encoder, decoder = tutorial_networks()
    model = tfvae.VAE(tfvae.VAEConfig(input_dim=D, latent_dim=LATENT), encoder, decoder)
    model.compile()
    history = model.fit(data[0], batch_size=100, epochs=2, verbose=0)
    return model, history.history


def test_fit_under_the_default_compile_with_a_short_last_batch(trained, data):
    """Issue 33, 1: the last batch of 50 crashed XLA at `fill_scale_tril`."""
    model, history = trained
    assert len(history["loss"]) == 2 and np.all(np.isfinite(history["loss"]))
    # The loss is -ELBO (the KL counted once) and the ELBO is log p(x|z) - KL(q || p).
    np.testing.assert_allclose(history["loss"], -np.asarray(history["elbo"]), rtol=1e-5)
    np.testing.assert_allclose(
        history["elbo"], np.subtract(history["reconstruction"], history["kl"]), rtol=1e-5
    )
    q = model.encode(data[1])
    mu, cov = q.mean().numpy().astype(np.float64), q.covariance().numpy().astype(np.float64)
    assert cov.shape == (len(data[1]), LATENT, LATENT)
    assert np.abs(cov - np.eye(LATENT) * cov).max() > 1e-3  # a full covariance, not diagonal
    # The KL term is KL(N(mu, cov) || N(0, I)) in closed form, per example.
    _, log_det = np.linalg.slogdet(cov)
    kl = 0.5 * (np.trace(cov, axis1=1, axis2=2) + np.sum(mu**2, -1) - LATENT - log_det)
    np.testing.assert_allclose(model.elbo_terms(data[1], seed=SEED)[1], kl, rtol=1e-4, atol=1e-4)


def _same_model(a, b, x):
    """The same q(z|x) (mean and full covariance) and the same ELBO at a fixed seed."""
    qa, qb = a.encode(x), b.encode(x)
    np.testing.assert_allclose(qb.mean(), qa.mean(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(qb.covariance(), qa.covariance(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.elbo(x, seed=SEED), b.elbo(x, seed=SEED), rtol=1e-6, atol=1e-4)


def test_save_and_tfvae_load_model_give_the_same_elbo(trained, data, tmp_path):
    """Issue 33, 3: load_model rebuilt the built-in networks ("does not fit the config")."""
    model, _ = trained
    model.save(str(tmp_path / "model"))
    _same_model(model, tfvae.load_model(str(tmp_path / "model")), data[1])


def test_a_keras_file_loads_with_tf_keras(trained, data, tmp_path):
    model, _ = trained
    path = str(tmp_path / "vae.keras")
    model.save(path)
    _same_model(model, tfk.models.load_model(path), data[1])


def _requests(x) -> dict:
    """serving_probe.py's requests: `<signature>/<input>` arrays."""
    return {
        "serving_default/x": x,
        "encode/x": x,
        "encode/seed": np.array(SEED, np.int64),
        "log_likelihood/x": x,
    }


def test_export_serves_the_models_log_likelihood_in_a_fresh_process(trained, data, tmp_path):
    """Issue 33, 4: the export served q(z|x) as diagonal; here neither tfvae nor TFP is
    importable in the serving process, and its bounds are the model's."""
    model, _ = trained
    x = data[1]
    path = tfvae.export(model, str(tmp_path / "vae"), iwae_samples=IWAE_SAMPLES)
    served_here = tfvae.load_exported(path)["log_likelihood"](x=tf.constant(x))
    np.savez(tmp_path / "requests.npz", **_requests(x))
    probe = os.path.join(REPO, "tests", "serving_probe.py")
    proc = run_python([probe, str(tmp_path / "out"), path, str(tmp_path / "requests.npz")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "0" / "report.json").read_text())
    assert report["modules"] == [], "tfvae/TFP got imported in the serving process"
    served = dict(np.load(tmp_path / "out" / "0" / "outputs.npz"))
    for name in ("elbo", "iwae"):  # the fresh process serves what the export computes here
        np.testing.assert_allclose(served[f"log_likelihood/{name}"], served_here[name], rtol=1e-5)

    q = model.encode(x)
    np.testing.assert_allclose(served["encode/z_mean"], q.mean(), rtol=1e-5, atol=1e-5)
    # The served bounds are the model's: the same estimators on other draws. Every row of a
    # request shares the export's draws, so the mean over rows keeps the noise of one row
    # (about 0.3-0.5 nats here); a diagonal q was 2 nats off.
    iwae = model.log_likelihood(x, importance_samples=IWAE_SAMPLES, seed=SEED)
    assert abs(np.mean(served["log_likelihood/iwae"]) - np.mean(iwae)) < 1.5
    assert np.mean(served["log_likelihood/iwae"]) >= np.mean(served["log_likelihood/elbo"])


def _correlations(cov):
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    return cov / sd[..., :, None] / sd[..., None, :]


def test_served_encode_draws_from_the_full_covariance(trained, data, tmp_path):
    """Issue 33, 4: served `encode` draws had correlations of at most 0.03, q's reach 0.44."""
    model, _ = trained
    x = np.repeat(data[1][:1], 4000, axis=0)  # one example, 4000 draws z ~ q(z|x)
    path = tfvae.export(model, str(tmp_path / "vae"), warmup=False)
    draws = tfvae.load_exported(path)["encode"](x=tf.constant(x), seed=tf.constant(SEED, tf.int64))
    want = _correlations(model.encode(x[:1]).covariance().numpy()[0].astype(np.float64))
    assert np.abs(want - np.eye(LATENT)).max() > 0.2  # q's coordinates are correlated
    got = np.corrcoef(np.asarray(draws["z_sample"], np.float64).T)
    np.testing.assert_allclose(got, want, atol=0.1)  # sampling error ~ 1/sqrt(4000) = 0.016


def test_the_readme_section_runs(data, tmp_path, monkeypatch):
    """README's "Bring your own networks", on the MNIST-shaped digits for one epoch."""
    from test_readme import _block, _section

    code = _block(_section("Bring your own networks"), "python")
    assert 'tfvae.load_dataset("mnist")' in code and "epochs=15" in code
    code = code.replace('tfvae.load_dataset("mnist")', "DATA").replace("epochs=15", "epochs=1")
    monkeypatch.chdir(tmp_path)
    scope = {"DATA": types.SimpleNamespace(x_train=data[0])}
    exec(compile(code, "README.md", "exec"), scope)
    assert os.path.isfile(tmp_path / "saved_models" / "mine" / "1" / "saved_model.pb")
    q = scope["model"].encode(data[1])
    assert q.covariance().shape == (len(data[1]), LATENT, LATENT)
