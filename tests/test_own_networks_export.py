"""Exports of a user's own networks (the TFP probabilistic-layers tutorial's): every signature
is built from the distributions the networks return, images are served as images, refused
requests raise ValueError with the graph's sentence, and the export serves in a fresh
process without tfvae or TFP. References are numpy formulas at the draws the export takes."""

import functools
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from export_helpers import serve_in_fresh_process
from helpers import np_log_mean_exp

import tfvae
from tfvae.data import validation
from tfvae.serving.signatures import make_serving_module

tfd, tfpl = tfp.distributions, tfp.layers
D, J, K = 16, 3, 8  # 4 x 4 x 1 images, latent size, iwae_samples
IMAGE = (4, 4, 1)


def _tril_encoder(input_shape=(D,)):
    """The tutorial's encoder: Dense -> MultivariateNormalTriL, with q the same for every x
    (kernel 0) and a scale with strong correlations (the bias)."""
    dense = tfk.layers.Dense(tfpl.MultivariateNormalTriL.params_size(J), kernel_initializer="zeros")
    layers = [tfk.layers.InputLayer(input_shape), tfk.layers.Flatten(), dense]
    encoder = tfk.Sequential(layers + [tfpl.MultivariateNormalTriL(J)])
    bias = np.random.default_rng(0).normal(size=dense.bias.shape) * 1.5
    bias[:J] = [0.5, -0.3, 0.2]  # the mean
    dense.bias.assign(bias.astype(np.float32))
    return encoder


def _bernoulli_decoder():
    dense = tfk.layers.Dense(D, kernel_initializer=tfk.initializers.RandomNormal(seed=1))
    bernoulli = tfpl.IndependentBernoulli(D, tfd.Bernoulli.logits)
    return tfk.Sequential([tfk.layers.InputLayer([J]), dense, bernoulli])


def _model(input_shape=(D,), decoder=None):
    config = tfvae.VAEConfig(input_dim=D, latent_dim=J, hidden_units=(8,))
    return tfvae.VAE(
        config, encoder=_tril_encoder(input_shape), decoder=decoder or _bernoulli_decoder()
    )


@functools.lru_cache(maxsize=None)
def _exported(tmp_root, input_shape=(D,)):
    model = _model(input_shape)
    path = tfvae.export(model, os.path.join(tmp_root, f"vae{len(input_shape)}"), iwae_samples=K)
    return model, path


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("own"))


def _x(rows=5):
    return (np.random.default_rng(2).random((rows, D)) > 0.5).astype(np.float32)


def _np_log_mvn(z, mu, tril):
    """log N(z; mu, L L^T), `z` `[..., J]`."""
    white = np.linalg.solve(tril, (z - mu)[..., None])[..., 0]
    log_det = np.sum(np.log(np.abs(np.diag(tril))))
    return -0.5 * (J * np.log(2 * np.pi) + np.sum(white**2, -1)) - log_det


def _np_log_bernoulli(model, x, z):
    logits = model.decoder(z.astype(np.float32)).distribution.logits_parameter().numpy()
    return np.sum(x * logits - np.logaddexp(0.0, logits), -1)


# ------------------------------------------------------------------ item 4: q as it is
def test_served_encode_samples_have_q_correlations(tmp_root):
    """20000 served draws: each correlation within 0.05 of q's (its standard error is
    (1 - rho^2) / sqrt(n) <= 0.007; 0.05 is 7 of them), where a diagonal q gives 0."""
    model, path = _exported(tmp_root)
    tril = model.encoder(_x(1)).scale.to_dense().numpy()[0]
    cov = tril @ tril.T
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.max(np.abs(corr - np.eye(J))) > 0.4  # a q worth testing
    x = np.zeros((20000, D), np.float32)
    out = tfvae.load_exported(path)["encode"](x=x, seed=3)
    served = np.corrcoef(out["z_sample"].T)
    np.testing.assert_allclose(served, corr, atol=0.05)
    np.testing.assert_allclose(out["z_scale_tril"][0], tril, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["z_stddev"][0], np.sqrt(np.diag(cov)), rtol=1e-5)
    np.testing.assert_allclose(np.mean(out["z_sample"], 0), out["z_mean"][0], atol=0.05)


def test_served_bounds_are_the_models_log_probs_at_the_same_draws(tmp_root):
    """elbo = log p(x|z1) - KL(q || N(0, I)), iwae = log mean_k p(x|z_k) p(z_k) / q(z_k|x),
    in numpy from q's mean and scale_tril, at the export's draws (seeds split from
    `likelihood_seed` 0, the same for every row)."""
    model, path = _exported(tmp_root)
    x = _x()
    out = tfvae.load_exported(path)["log_likelihood"](x=x)
    elbo_seed, iwae_seed = tfp.random.split_seed(tf.constant([0, 0], tf.int32))
    for i, row in enumerate(x):
        q = model.encoder(row[None])
        mu, tril = q.mean().numpy()[0], q.scale.to_dense().numpy()[0]
        z1 = q.sample(seed=elbo_seed).numpy()
        cov = tril @ tril.T
        kl = 0.5 * (np.trace(cov) + mu @ mu - J - 2 * np.sum(np.log(np.diag(tril))))
        elbo = _np_log_bernoulli(model, row, z1)[0] - kl
        zs = q.sample(K, seed=iwae_seed).numpy()[:, 0]  # [K, J]
        log_w = (
            _np_log_bernoulli(model, row, zs)
            - 0.5 * np.sum(np.log(2 * np.pi) + zs**2, -1)
            - _np_log_mvn(zs, mu, tril)
        )
        np.testing.assert_allclose(out["elbo"][i], elbo, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(out["iwae"][i], np_log_mean_exp(log_w), rtol=1e-5, atol=1e-4)


def test_decode_serves_the_decoders_own_parameters():
    """p(x|z) names its parameters: a Gaussian decoder gives mean, stddev, log_var and takes
    x outside [0, 1] (config.decoder still says bernoulli); a Poisson one its rate."""
    z = np.random.default_rng(4).normal(size=(3, J)).astype(np.float32)
    normal = tfk.Sequential(
        [tfk.layers.InputLayer([J]), tfk.layers.Dense(2 * D), tfpl.IndependentNormal(D)]
    )
    module = make_serving_module(_model(decoder=normal), iwae_samples=K)
    got = {k: v.numpy() for k, v in module.decode(z).items()}
    px = normal(z)
    assert sorted(got) == ["log_var", "mean", "stddev"]
    np.testing.assert_allclose(got["mean"], px.mean().numpy(), rtol=1e-6)
    np.testing.assert_allclose(got["log_var"], 2 * np.log(px.stddev().numpy()), rtol=1e-5)
    bounds = module.log_likelihood(np.full((2, D), 5.0, np.float32))
    assert np.all(np.isfinite(bounds["iwae"].numpy()))
    poisson = tfk.Sequential(
        [tfk.layers.InputLayer([J]), tfk.layers.Dense(D), tfpl.IndependentPoisson(D)]
    )
    got = make_serving_module(_model(decoder=poisson), iwae_samples=K).decode(z)
    rate = poisson(z).distribution.rate_parameter().numpy()
    assert "log_rate" in got or "rate" in got
    np.testing.assert_allclose(got["mean"].numpy(), rate, rtol=1e-5)


# ------------------------------------------------------------------ item 5b: images
@pytest.mark.parametrize("own", [False, True], ids=["conv-image-shape", "image-input-encoder"])
def test_images_are_served_as_images_and_flat(tmp_path, own):
    if own:
        model = _model(IMAGE)
    else:
        config = tfvae.VAEConfig(
            input_dim=D, latent_dim=J, architecture="conv", image_shape=IMAGE, conv_filters=(2,)
        )
        model = tfvae.VAE(config)
    loaded = tfvae.load_exported(tfvae.export(model, tmp_path / "vae", iwae_samples=K))
    x = _x(3)
    images = x.reshape(3, *IMAGE)
    for name, feeds in (("serving_default", {}), ("encode", {"seed": 1}), ("log_likelihood", {})):
        flat = loaded[name](x=x, **feeds)
        image = loaded[name](x=images, **feeds)
        for key in flat:
            np.testing.assert_array_equal(image[key], flat[key], err_msg=f"{name} {key}")
    with pytest.raises(ValueError) as refused:
        loaded["serving_default"](x=x.reshape(3, 2, 8))
    assert str(refused.value) == (
        "x must have shape [batch, 4, 4, 1] or [batch, 16] (data), "
        "got shape (3, 2, 8) and dtype float32"
    )


# ------------------------------------------------------------------ refusals
def test_load_exported_raises_value_error_with_the_graphs_sentence(tmp_root):
    _, path = _exported(tmp_root)
    loaded = tfvae.load_exported(path)
    x = _x(2) * 5
    with pytest.raises(ValueError) as refused:
        loaded["log_likelihood"](x=x)
    assert str(refused.value) == validation.unit_interval_message("x", "0", "5")
    x[1, 3] = np.nan
    with pytest.raises(ValueError) as refused:
        loaded["encode"](x=x, seed=0)
    assert str(refused.value) == validation.non_finite_message("x", "(1, 3)", "nan")


# ------------------------------------------------------------------ a fresh process
@pytest.mark.slow
def test_user_network_export_serves_in_a_fresh_process_without_tfvae_or_tfp(tmp_root, tmp_path):
    """TF Serving's loader (tests/serving_probe.py) where tfvae and TFP are unimportable:
    the same outputs as in process, q's scale_tril included."""
    model, path = _exported(tmp_root)
    x = _x(4)
    requests, got = serve_in_fresh_process(tmp_path, path, x, J)
    loaded = tfvae.load_exported(path)
    for key, value in got.items():
        signature, name = key.split("/")
        feeds = {k.split("/")[1]: v for k, v in requests.items() if k.startswith(signature + "/")}
        np.testing.assert_allclose(value, loaded[signature](**feeds)[name], rtol=1e-5, atol=1e-6)
    tril = model.encoder(x).scale.to_dense().numpy()
    np.testing.assert_allclose(got["encode/z_scale_tril"], tril, rtol=1e-5, atol=1e-6)
