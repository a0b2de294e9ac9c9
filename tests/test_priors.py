"""The learned priors (`VAEConfig.prior`, `tfvae.model.priors`) against numpy twins: the
mixture of diagonal Gaussians and the VampPrior of Tomczak & Welling (2018), their densities,
log p(x) by quadrature for a 1-D latent, training with every objective, sampling, seeding.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import np_soft_clip

from tfvae import VAE, VAEConfig
from tfvae.config import TrainConfig
from tfvae.data.datasets import Data
from tfvae.model import distributions, priors
from tfvae.model.seeds import as_seed
from tfvae.training.train import train_and_evaluate

tfd = tfp.distributions
tfb = tfp.bijectors
tfpl = tfp.layers

LOG_2PI = math.log(2 * math.pi)
X = (np.random.default_rng(0).random((48, 6)) > 0.5).astype(np.float32)


def config(**kwargs):
    base = dict(input_dim=6, latent_dim=2, hidden_units=(8,), seed=3)
    return VAEConfig(**{**base, **kwargs})


def np_logsumexp(a, axis=-1):
    a = np.asarray(a, np.float64)
    top = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def np_diagonal_normal(z, mu, sd):
    """log N(z; mu_k, diag sd_k^2) `[n, K]` for z `[n, J]` and mu, sd `[K, J]`."""
    z, mu, sd = (np.asarray(a, np.float64) for a in (z, mu, sd))
    d = (z[:, None, :] - mu[None]) / sd[None]
    return np.sum(-0.5 * LOG_2PI - np.log(sd)[None] - 0.5 * d**2, -1)


def np_full_normal(z, mu, cov):
    """log N(z; mu_k, cov_k) `[n, K]` for z `[n, J]`, mu `[K, J]`, cov `[K, J, J]`."""
    z, mu, cov = (np.asarray(a, np.float64) for a in (z, mu, cov))
    d = z[:, None, :] - mu[None]  # [n, K, J]
    solved = np.linalg.solve(cov[None], d[..., None])[..., 0]
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (mu.shape[-1] * LOG_2PI + logdet[None] + np.sum(d * solved, -1))


def np_encoder(model, x):
    """(mu, sigma) of tfvae's tanh MLP encoder (one hidden layer) at x, in numpy."""
    w = {v.name: v.numpy().astype(np.float64) for v in model.encoder.weights}
    h = np.tanh(x @ w["encoder_hidden_0/kernel:0"] + w["encoder_hidden_0/bias:0"])
    mu = h @ w["z_mean/kernel:0"] + w["z_mean/bias:0"]
    log_var = np_soft_clip(h @ w["z_log_var/kernel:0"] + w["z_log_var/bias:0"])
    return mu, np.exp(0.5 * log_var)


def np_vamp_log_prob(model, z, u):
    """log (1/K) sum_k N(z; mu(u_k), diag sigma^2(u_k)) `[n]` (Tomczak & Welling 2018, eq. 9)."""
    mu, sd = np_encoder(model, np.asarray(u, np.float64))
    return np_logsumexp(np_diagonal_normal(z, mu, sd)) - math.log(len(u))


def set_pseudo_inputs(model, values):
    model.prior_network.pseudo_input_weights.assign(np.asarray(values, np.float32))


# ------------------------------------------------------------------------ the densities
def test_mixture_log_prob_is_numpys_logsumexp_of_its_gaussians():
    model = VAE(config(prior="mixture", prior_components=4, latent_dim=3))
    layer = model.prior_network
    rng = np.random.default_rng(1)
    layer.logits.assign(rng.normal(size=4).astype(np.float32))
    layer.means.assign(rng.normal(size=(4, 3)).astype(np.float32) * 2)
    layer.raw_scales.assign(rng.normal(size=(4, 3)).astype(np.float32))
    logits, means = layer.logits.numpy().astype(np.float64), layer.means.numpy()
    scales = layer.min_scale + np.logaddexp(0.0, layer.raw_scales.numpy().astype(np.float64))
    log_pi = logits - np_logsumexp(logits)
    z = rng.normal(size=(2, 9, 3)).astype(np.float32) * 2
    expected = np_logsumexp(log_pi + np_diagonal_normal(z.reshape(-1, 3), means, scales))
    got = model.prior.log_prob(z).numpy()
    assert got.shape == (2, 9)
    np.testing.assert_allclose(got.reshape(-1), expected, rtol=1e-5)
    # the floor: exp(min_log_var / 2), the encoder's narrowest sigma
    assert layer.min_scale == pytest.approx(math.exp(-4.0))


@pytest.mark.parametrize("pseudo_inputs", ["unit", "free"])
def test_vamp_log_prob_is_the_mean_of_the_encoders_posteriors(pseudo_inputs):
    model = VAE(config(prior="vamp", prior_components=5, pseudo_inputs=pseudo_inputs))
    rng = np.random.default_rng(2)
    w = rng.uniform(-1.0, 2.0, size=(5, 6)).astype(np.float32)  # partly outside [0, 1]
    set_pseudo_inputs(model, w)
    u = np.clip(w, 0.0, 1.0) if pseudo_inputs == "unit" else w
    np.testing.assert_array_equal(model.prior_network.inputs_u().numpy(), u)
    z = rng.normal(size=(11, 2)).astype(np.float32) * 1.5
    got = model.prior.log_prob(z).numpy()
    np.testing.assert_allclose(got, np_vamp_log_prob(model, z, u), rtol=1e-5)
    # the clip matters: the other choice of u is another density
    other = w if pseudo_inputs == "unit" else np.clip(w, 0.0, 1.0)
    assert np.max(np.abs(got - np_vamp_log_prob(model, z, other))) > 1e-2


def _user_encoder(kind, input_shape, latent):
    """(encoder, params model, numpy log q(z|params) `[n, K]`) of a user's encoder whose q is
    `kind`: an Independent(Normal), a full-covariance MultivariateNormalTriL, or a Sinh-
    transformed diagonal normal (a flow's TransformedDistribution)."""
    size = 2 * latent if kind != "tril" else latent + latent * (latent + 1) // 2
    x = tfk.Input(input_shape)
    params = tfk.layers.Dense(size, kernel_initializer=tfk.initializers.RandomNormal(seed=4))(
        tfk.layers.Flatten()(x)
    )
    params_model = tfk.Model(x, params)

    def make(t):
        if kind == "independent":
            return tfd.Independent(tfd.Normal(t[..., :latent], tf.exp(t[..., latent:])), 1)
        if kind == "sinh":
            base = tfd.MultivariateNormalDiag(t[..., :latent], tf.exp(t[..., latent:]))
            return tfd.TransformedDistribution(base, tfb.Sinh())
        tril = tfp.math.fill_triangular(t[..., latent:])
        scale = tf.linalg.set_diag(tril, tf.exp(tf.linalg.diag_part(tril)))
        return tfd.MultivariateNormalTriL(t[..., :latent], scale)

    encoder = tfk.Model(x, tfpl.DistributionLambda(make)(params))

    def np_log_q(z, p):
        p = p.astype(np.float64)
        if kind == "independent":
            return np_diagonal_normal(z, p[:, :latent], np.exp(p[:, latent:]))
        if kind == "sinh":  # q(z) = N(asinh z) |d asinh z / dz|
            base = np_diagonal_normal(np.arcsinh(z), p[:, :latent], np.exp(p[:, latent:]))
            return base - 0.5 * np.sum(np.log1p(np.asarray(z, np.float64) ** 2), -1)[:, None]
        rows, cols = np.tril_indices(latent)
        tril = np.zeros((len(p), latent, latent))
        filled = tfp.math.fill_triangular(p[:, latent:]).numpy()  # TFP's packing order
        tril[:, rows, cols] = filled[:, rows, cols]
        tril[:, np.arange(latent), np.arange(latent)] = np.exp(np.diagonal(filled, 0, 1, 2))
        return np_full_normal(z, p[:, :latent], tril @ np.transpose(tril, (0, 2, 1)))

    return encoder, params_model, np_log_q


@pytest.mark.parametrize(
    "kind, input_shape",
    [("independent", (2, 3, 1)), ("tril", (6,)), ("sinh", (6,))],
)
def test_vamp_takes_any_q_and_the_encoders_input_shape(kind, input_shape):
    latent = 3
    encoder, params_model, np_log_q = _user_encoder(kind, input_shape, latent)
    cfg = config(prior="vamp", prior_components=4, latent_dim=latent, pseudo_inputs="free")
    layer = priors.make_prior(cfg)
    prior = layer.distribution(encoder)
    assert prior.batch_shape == [] and prior.event_shape == [latent]
    u = layer.inputs_u().numpy().reshape(4, *input_shape)
    z = np.random.default_rng(3).normal(size=(7, latent)).astype(np.float32)
    expected = np_logsumexp(np_log_q(z, params_model(u).numpy())) - math.log(4)
    np.testing.assert_allclose(prior.log_prob(z).numpy(), expected, rtol=1e-5)


# ------------------------------------------------------------------------ log p(x)
def _scale(network, name, factor=1.0, shift=0.0):
    weight = {w.name: w for w in network.weights}[name]
    weight.assign(weight * factor + shift)


def test_iwae_with_a_vamp_prior_meets_log_px_by_quadrature():
    """1-D z: log p(x) = log integral p(x|z) p(z) dz on a fine grid, p(z) the VampPrior in
    numpy. IWAE with many draws meets it; K = 1 (the ELBO) lies below."""
    model = VAE(config(latent_dim=1, input_dim=4, prior="vamp", prior_components=3))
    # Spread the components and sharpen p(x|z), so that log p(x) depends on the prior's
    # shape: N(0, 1) in its place would be 0.09 to 0.28 nats away.
    _scale(model.encoder, "z_mean/kernel:0", 5.0)
    _scale(model.encoder, "z_log_var/bias:0", shift=0.5)
    _scale(model.decoder, "decoder_hidden_0/kernel:0", 3.0)
    _scale(model.decoder, "x_logits/kernel:0", 6.0)
    u = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0]], np.float32)
    set_pseudo_inputs(model, u)
    x = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], np.float32)
    grid = np.linspace(-15.0, 15.0, 30001)
    px = model.decoder(grid[:, None].astype(np.float32))
    logits = distributions.bernoulli_logits(px).numpy().astype(np.float64)  # [G, 4]
    log_px_z = x @ logits.T - np.sum(np.logaddexp(0.0, logits), -1)[None]  # [3, G]

    def log_px(log_pz):
        return np_logsumexp(log_px_z + log_pz[None]) + math.log(grid[1] - grid[0])

    exact = log_px(np_vamp_log_prob(model, grid[:, None], u))
    assert np.min(np.abs(exact - log_px(-0.5 * grid**2 - 0.5 * LOG_2PI))) > 0.09
    iwae = model.log_likelihood(x, importance_samples=100_000, chunk_size=20_000, seed=1)
    np.testing.assert_allclose(iwae, exact, atol=0.03)
    many = np.repeat(x, 2000, axis=0)
    elbo = model.log_likelihood(many, importance_samples=1, batch_size=2000, seed=2)
    elbo = elbo.reshape(3, 2000).mean(1)
    assert np.all(elbo < exact - 0.3), (elbo, exact)


# ------------------------------------------------------------------------ training
OBJECTIVES = {
    "elbo": dict(),
    "elbo_k3": dict(num_samples=3),
    "iwae": dict(objective="iwae", num_samples=3),
    "iwae_dreg": dict(objective="iwae", num_samples=3, gradient_estimator="dreg"),
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_every_objective_trains_the_prior(prior, objective):
    model = VAE(config(prior=prior, prior_components=4, **OBJECTIVES[objective]))
    prior_weights = model.prior_network.weights
    # the optimizer sees them: after the networks', in the model's trainable variables
    networks = model.encoder.trainable_variables + model.decoder.trainable_variables
    assert [v.ref() for v in model.trainable_variables] == [
        v.ref() for v in networks + prior_weights
    ]
    before = [w.numpy().copy() for w in prior_weights]
    # XLA (tfvae's default for an MLP) for DReG, the most intricate step; the others quick
    model.compile(jit_compile=objective == "iwae_dreg")
    assert objective != "iwae_dreg" or model.jit_compile
    history = model.fit(X, epochs=2, batch_size=16, verbose=0).history
    assert all(np.isfinite(v).all() for v in history.values())
    for w, start in zip(prior_weights, before):
        assert np.max(np.abs(w.numpy() - start)) > 1e-4, w.name
    assert np.isfinite(model.log_likelihood(X[:4], importance_samples=20)).all()


def test_kl_warmup_with_a_vamp_prior(digits):
    """Bowman et al.'s warm-up through `train_and_evaluate`: each epoch's loss used its beta."""
    data = Data(digits.x_train[:600], digits.x_test[:20], digits.image_shape)
    cfg = VAEConfig(
        input_dim=64, latent_dim=2, hidden_units=(16,), prior="vamp", prior_components=8
    )
    betas = []

    class Record(tfk.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            betas.append(float(self.model.kl_weight.numpy()))

    train = TrainConfig(
        epochs=3, kl_warmup_epochs=2, eval_samples=2, batch_size=200, jit_compile=False
    )
    model, history, metrics = train_and_evaluate(cfg, train, data, verbose=0, callbacks=[Record()])
    assert betas == pytest.approx([0.0, 0.5, 1.0], abs=1e-7)
    for e, beta in enumerate(betas):
        loss = -history["reconstruction"][e] + beta * history["kl"][e]
        assert history["loss"][e] == pytest.approx(loss, rel=1e-4, abs=1e-3)
    assert np.isfinite(metrics["elbo"])


# ------------------------------------------------------------------------ sampling
def test_sampling_draws_from_the_mixture_in_use():
    model = VAE(config(prior="mixture", prior_components=2))
    layer = model.prior_network
    layer.means.assign([[8.0, 8.0], [-8.0, 6.0]])
    layer.logits.assign(np.log([0.25, 0.75]).astype(np.float32))
    layer.raw_scales.assign(np.full((2, 2), -2.0, np.float32))  # sigma ~ 0.145
    z = model.prior.sample(20000, seed=as_seed(5)).numpy()
    upper = z[:, 0] > 0
    assert upper.mean() == pytest.approx(0.25, abs=0.015)
    np.testing.assert_allclose(z[upper].mean(0), [8.0, 8.0], atol=0.01)
    np.testing.assert_allclose(z[~upper].mean(0), [-8.0, 6.0], atol=0.01)
    # sample_prior and generate decode those draws
    expected = model.decoder(model.prior.sample(6, seed=as_seed(7))).mean().numpy()
    np.testing.assert_allclose(model.sample_prior(6, seed=7).mean().numpy(), expected, rtol=1e-6)
    assert model.generate(6, seed=7).shape == (6, 6)


def test_vamp_samples_are_the_encoders_posterior_at_the_pseudo_inputs():
    """All u_k the same u: the VampPrior is q(z|u) itself."""
    model = VAE(config(prior="vamp", prior_components=3))
    u = np.array([0.9, 0.1, 0.8, 0.7, 0.0, 1.0], np.float32)
    set_pseudo_inputs(model, np.tile(u, (3, 1)))
    mu, sd = np_encoder(model, u[None].astype(np.float64))
    z = model.prior.sample(40000, seed=as_seed(1)).numpy()
    np.testing.assert_allclose(z.mean(0), mu[0], atol=5 * sd.max() / 200)  # 5 std errors
    np.testing.assert_allclose(z.std(0), sd[0], rtol=0.02)


# ------------------------------------------------------------------------ weights
@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_prior_weights_are_seeded_by_the_config_seed(prior):
    def weights(seed):
        model = VAE(config(prior=prior, prior_components=4, seed=seed))
        return model, [w.numpy() for w in model.prior_network.weights]

    model, a = weights(3)
    _, b = weights(3)
    _, c = weights(4)
    assert all(w.dtype == np.float32 for w in a)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    # the draw is stateless, [seed, index], index after the encoder's and decoder's weights
    first = len(model.encoder.weights) + len(model.decoder.weights)
    if prior == "mixture":
        draw = tf.random.stateless_normal([4, 2], [3, first + 1])
        np.testing.assert_array_equal(a[1], draw.numpy())
    else:
        draw = tf.random.stateless_normal([4, 6], [3, first], 0.05, 0.01)
        np.testing.assert_array_equal(a[0], draw.numpy())
    # the layer's config rebuilds the same layer
    layer = model.prior_network
    again = type(layer).from_config(layer.get_config())
    for x, y in zip(layer.weights, again.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_learned_priors_stay_float32_under_mixed_precision(prior):
    tfk.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = VAE(config(prior=prior, prior_components=4))
        model.compile(jit_compile=False)
        history = model.fit(X, epochs=1, batch_size=16, verbose=0).history
    finally:
        tfk.mixed_precision.set_global_policy("float32")
    # plain float32 variables (no AutoCastVariable), a float32 p(z), a finite loss
    assert all(type(w).__name__ == "ResourceVariable" for w in model.prior_network.weights)
    assert all(w.dtype == tf.float32 for w in model.prior_network.weights)
    assert model.prior.dtype == tf.float32
    assert np.isfinite(history["loss"]).all()


def test_standard_normal_has_no_weights_and_the_networks_variables():
    model = VAE(config())
    assert model.prior_network.weights == []
    networks = model.encoder.trainable_variables + model.decoder.trainable_variables
    assert [v.ref() for v in model.trainable_variables] == [v.ref() for v in networks]
    prior = model.prior
    assert isinstance(prior, tfd.MultivariateNormalDiag)
    np.testing.assert_array_equal(prior.mean().numpy(), [0.0, 0.0])


def test_the_fast_diagonal_mixture_matches_tfps_mixture_and_its_gradient():
    """`DiagonalGaussianMixture.log_prob` (two matrix products) against TFP's
    `MixtureSameFamily` (every component at every point): values and gradients, for
    points of any batch shape and components far from the origin."""
    from tfvae.model.gaussian_mixture import diagonal_gaussian_mixture

    rng = np.random.default_rng(3)
    k, j = 7, 5
    loc = tf.Variable(rng.normal(4.0, 2.0, (k, j)).astype(np.float32))
    log_scale = tf.Variable(rng.normal(-1.0, 0.5, (k, j)).astype(np.float32))
    logits = tf.Variable(rng.normal(0.0, 1.0, k).astype(np.float32))
    z = tf.constant(rng.normal(4.0, 2.5, (3, 4, j)).astype(np.float32))
    values, grads = [], []
    for build in (
        lambda: tfd.MixtureSameFamily(
            tfd.Categorical(logits=logits), tfd.MultivariateNormalDiag(loc, tf.exp(log_scale))
        ),
        lambda: diagonal_gaussian_mixture(
            tf.convert_to_tensor(logits), tf.convert_to_tensor(loc), tf.exp(log_scale)
        ),
    ):
        with tf.GradientTape() as tape:
            lp = build().log_prob(z)
        values.append(lp.numpy())
        grads.append([g.numpy() for g in tape.gradient(lp, [loc, log_scale, logits])])
    assert values[1].shape == (3, 4)
    np.testing.assert_allclose(values[1], values[0], rtol=1e-5, atol=1e-4)
    for ours, theirs in zip(grads[1], grads[0]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
