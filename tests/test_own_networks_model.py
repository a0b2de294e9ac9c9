"""Your own networks, data and policies through the model: everything after the networks
reads the distributions they return (`tfvae.model.distributions`), not the config.

Networks in the style of the TFP probabilistic-layers tutorial; values against numpy.
"""

import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae import VAE, VAEConfig
from tfvae.model import distributions, objectives
from tfvae.model.vae import as_seed

tfd, tfpl, tfkl = tfp.distributions, tfp.layers, tfk.layers

D, J = 16, 2
IMAGE = (4, 4, 1)
CONFIG = VAEConfig(input_dim=D, latent_dim=J, hidden_units=(8,), seed=3)


@pytest.fixture
def x():
    return (np.random.default_rng(0).random((32, D)) < 0.3).astype(np.float32)


def independent_normal_encoder(input_shape=(D,)):
    return tfk.Sequential(
        [
            tfkl.InputLayer(input_shape),
            tfkl.Flatten(),
            tfkl.Dense(tfpl.IndependentNormal.params_size(J)),
            tfpl.IndependentNormal(J),
        ]
    )


def bernoulli_decoder(event_shape=(D,)):
    size = int(np.prod(event_shape))
    return tfk.Sequential(
        [
            tfkl.InputLayer([J]),
            tfkl.Dense(size),
            tfpl.IndependentBernoulli(event_shape, tfd.Bernoulli.logits),
        ]
    )


def np_normal_kl(mu, sigma):
    """KL(N(mu, diag sigma^2) || N(0, I)) per row, the closed form (Kingma & Welling, App. B)."""
    mu, var = mu.astype(np.float64), np.square(sigma.astype(np.float64))
    return -0.5 * np.sum(1 + np.log(var) - mu**2 - var, -1)


def np_bernoulli_log_prob(x, logits):
    x, logits = x.astype(np.float64), logits.astype(np.float64)
    return np.sum(x * logits - np.logaddexp(0, logits), axis=tuple(range(1, x.ndim)))


# ------------------------------------------------------------------ KL (item 2)
def test_independent_normal_q_has_the_closed_form_kl(x):
    """TFP registers no KL(Independent || MultivariateNormalDiag): the prior is restated as
    Independent(Normal), and the KL is the closed form, not an estimate."""
    model = VAE(CONFIG, encoder=independent_normal_encoder(), decoder=bernoulli_decoder())
    q = model.encode(x)
    _, kl = model.elbo_terms(x, seed=1)
    want = np_normal_kl(q.mean().numpy(), q.stddev().numpy())
    np.testing.assert_allclose(kl, want, rtol=1e-5, atol=1e-6)
    # The training loss counts it: -ELBO on the built-in's terms.
    model.compile(jit_compile=False)
    assert np.isfinite(model.fit(x, batch_size=8, epochs=1, verbose=0).history["loss"][0])


def test_full_covariance_q_against_an_independent_normal_prior():
    """KL(N(mu, L L^T) || N(0, I)) = 1/2 (tr S + mu^T mu - J - log det S), for a prior given as
    Independent(Normal): restated as a MultivariateNormalDiag."""
    rng = np.random.default_rng(1)
    loc = rng.normal(size=(5, 3)).astype(np.float32)
    tril = np.tril(rng.normal(size=(5, 3, 3))).astype(np.float32)
    tril[:, range(3), range(3)] = np.abs(tril[:, range(3), range(3)]) + 0.5
    q = tfd.MultivariateNormalTriL(loc, tril)
    prior = tfd.Independent(tfd.Normal(tf.zeros(3), 1.0), 1)
    cov = tril.astype(np.float64) @ np.swapaxes(tril, 1, 2).astype(np.float64)
    want = 0.5 * (
        np.trace(cov, axis1=1, axis2=2)
        + np.sum(loc.astype(np.float64) ** 2, -1)
        - 3
        - np.linalg.slogdet(cov)[1]
    )
    got = objectives.kl_divergence(q, prior, "analytic")
    np.testing.assert_allclose(got, want, rtol=1e-5)


def logistic_encoder():
    """q(z|x) with no closed-form KL against a normal prior in TFP's registry."""
    return tfk.Sequential(
        [
            tfkl.InputLayer([D]),
            tfkl.Dense(2 * J),
            tfpl.DistributionLambda(
                lambda t: tfd.Independent(
                    tfd.Logistic(t[..., :J], tf.nn.softplus(t[..., J:]) + 0.1), 1
                )
            ),
        ]
    )


def test_kl_without_a_closed_form_is_monte_carlo_at_the_draw_said_once(x, caplog):
    model = VAE(CONFIG, encoder=logistic_encoder(), decoder=bernoulli_decoder())
    distributions._said.clear()
    with caplog.at_level(logging.INFO, logger="tfvae.model.distributions"):
        _, kl = model.elbo_terms(x, seed=4)
        model.elbo_terms(x, seed=5)
    said = [r for r in caplog.records if "no closed form" in r.getMessage()]
    assert len(said) == 1 and "Logistic" in said[0].getMessage()
    # The same draw, by the same stateless seed; log q - log p in numpy.
    q = model.encode(x)
    z = q.sample(seed=as_seed(4)).numpy().astype(np.float64)
    loc = q.distribution.loc.numpy().astype(np.float64)
    scale = q.distribution.scale.numpy().astype(np.float64)
    u = (z - loc) / scale
    log_q = np.sum(-u - np.log(scale) - 2 * np.log1p(np.exp(-u)), -1)
    log_p = np.sum(-0.5 * (np.log(2 * np.pi) + z**2), -1)
    np.testing.assert_allclose(kl, log_q - log_p, rtol=1e-4, atol=1e-4)


def test_the_tutorials_kl_regularizer_is_refused_in_one_sentence():
    """Today's tutorial encoder adds KL through an activity regularizer: counted on top of
    tfvae's own KL, the loss was 15 nats above -ELBO without a word."""
    prior = tfd.Independent(tfd.Normal(tf.zeros(J), 1.0), 1)
    encoder = tfk.Sequential(
        [
            tfkl.InputLayer([D]),
            tfkl.Dense(tfpl.MultivariateNormalTriL.params_size(J)),
            tfpl.MultivariateNormalTriL(
                J, activity_regularizer=tfpl.KLDivergenceRegularizer(prior), name="q"
            ),
        ]
    )
    with pytest.raises(ValueError) as info:
        VAE(CONFIG, encoder=encoder, decoder=bernoulli_decoder())
    message = str(info.value)
    assert "'q'" in message and "counted twice" in message and "remove it" in message
    assert "\n" not in message


# ------------------------------------------------------------------ data (item 5)
def test_an_integer_dataset_is_refused_before_any_step(x):
    model = VAE(CONFIG)
    model.compile()
    pixels = tf.data.Dataset.from_tensor_slices((x * 255).astype(np.uint8)).batch(8)
    with pytest.raises(TypeError, match=r"uint8 \(integers.*tf.cast\(x, tf.float32\) / 255"):
        model.fit(pixels, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 0
    with pytest.raises(TypeError, match="int32"):
        model.evaluate(pixels.map(lambda b: tf.cast(b, tf.int32)), verbose=0)
    # bool is fine, and numpy integer arrays keep their value check ([0, 1] here).
    model.fit(tf.data.Dataset.from_tensor_slices(x > 0.5).batch(8), epochs=1, verbose=0)
    model.fit(x.astype(np.uint8), batch_size=8, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.fit((x * 255).astype(np.uint8), batch_size=8, epochs=1, verbose=0)


def test_images_give_what_their_flattening_gives(x):
    """A model with `image_shape` takes `[N, H, W, C]` wherever it takes `[N, D]`."""
    model = VAE(CONFIG.replace(image_shape=IMAGE))
    images = x.reshape(-1, *IMAGE)
    np.testing.assert_array_equal(model.elbo(images, seed=2), model.elbo(x, seed=2))
    np.testing.assert_array_equal(
        model.elbo_terms(images, seed=2)[0], model.elbo_terms(x, seed=2)[0]
    )
    np.testing.assert_array_equal(model.encode(images).mean(), model.encode(x).mean())
    np.testing.assert_array_equal(
        model.log_likelihood(images, 5, seed=1), model.log_likelihood(x, 5, seed=1)
    )
    model.compile()
    np.testing.assert_array_equal(
        model.predict(images, verbose=0, latent="mean"), model.predict(x, verbose=0, latent="mean")
    )
    flat = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    assert model.evaluate(images, batch_size=8, verbose=0, return_dict=True) == flat
    ds = tf.data.Dataset.from_tensor_slices(images).batch(8)
    assert model.evaluate(ds, verbose=0, return_dict=True) == flat
    assert np.isfinite(model.fit(ds, epochs=1, verbose=0).history["loss"][0])
    assert np.isfinite(model.fit(images, batch_size=8, verbose=0).history["loss"][0])
    with pytest.raises(ValueError, match=r"\[batch, 16\] or \[batch, 4, 4, 1\]"):
        model.elbo(x.reshape(-1, 2, 8, 1))


def test_the_input_pipeline_batches_images_as_their_flattening(x):
    from tfvae.data.input_pipeline import make_dataset

    images = make_dataset(x.reshape(-1, *IMAGE), batch_size=8, seed=1)
    assert images.element_spec.shape.as_list() == [None, *IMAGE]
    for image_batch, flat_batch in zip(images, make_dataset(x, batch_size=8, seed=1)):
        np.testing.assert_array_equal(np.reshape(image_batch, (-1, D)), flat_batch)


@pytest.mark.parametrize("objective, num_samples", [("elbo", 1), ("iwae", 3)])
def test_an_image_encoder_and_an_image_decoder_of_your_own(x, objective, num_samples):
    """The encoder takes `[None, 4, 4, 1]`, p(x|z) has event_shape [4, 4, 1]: x goes to each
    in its shape, flat or as images, and the ELBO is the numpy one."""
    config = CONFIG.replace(objective=objective, num_samples=num_samples)
    model = VAE(config, encoder=independent_normal_encoder(IMAGE), decoder=bernoulli_decoder(IMAGE))
    images = x.reshape(-1, *IMAGE)
    elbo = model.elbo(x, seed=6)
    np.testing.assert_array_equal(elbo, model.elbo(images, seed=6))
    q = model.encoder(images)
    z = q.sample(seed=as_seed(6))
    logits = model.decoder(z).distribution.logits.numpy()
    want = np_bernoulli_log_prob(images, logits) - np_normal_kl(
        q.mean().numpy(), q.stddev().numpy()
    )
    np.testing.assert_allclose(elbo, want, rtol=1e-5, atol=1e-4)
    model.compile()
    loss = model.fit(x, batch_size=8, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(loss))
    assert model.predict(images, verbose=0, output="probs").shape == (32, *IMAGE)
    assert np.all(np.isfinite(model.log_likelihood(images, 4)))


def test_the_kind_of_p_x_given_z_is_read_from_the_decoder(x):
    """A Gaussian decoder of your own under the default config (decoder='bernoulli') takes
    data outside [0, 1] and has no probs; a Bernoulli one under decoder='gaussian' has them."""
    gaussian = tfk.Sequential([tfkl.InputLayer([J]), tfkl.Dense(2 * D), tfpl.IndependentNormal(D)])
    model = VAE(CONFIG, decoder=gaussian)
    scaled = 3.0 * x - 1.0
    assert np.all(np.isfinite(model.elbo(scaled, seed=1)))
    with pytest.raises(ValueError, match="output='probs' needs a bernoulli decoder.*'Normal'"):
        model.predict(scaled, output="probs", verbose=0)
    bernoulli = VAE(CONFIG.replace(decoder="gaussian"), decoder=bernoulli_decoder())
    probs = bernoulli.predict(x, output="probs", latent="mean", verbose=0)
    z = bernoulli.encode(x).mean()
    np.testing.assert_allclose(probs, bernoulli.decoder(z).mean(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli.elbo(scaled)


# ------------------------------------------------------------------ elbo's draws (item 9b)
def test_elbo_without_a_seed_draws_fresh_noise(x):
    model = VAE(CONFIG)
    first, second = model.elbo(x), model.elbo(x)
    assert not np.array_equal(first, second)
    assert not np.array_equal(model.elbo_terms(x)[0], model.elbo_terms(x)[0])
    np.testing.assert_array_equal(model.elbo(x, seed=7), model.elbo(x, seed=7))
    # In a tf.function of your own (a GradientTape loop), each call draws anew too.
    step = tf.function(lambda b: model.elbo(b))
    assert not np.array_equal(step(tf.constant(x)), step(tf.constant(x)))


# ------------------------------------------------------------------ mixed precision (item 7)
@pytest.fixture
def policy():
    def use(name):
        tfk.mixed_precision.set_global_policy(name)

    yield use
    tfk.mixed_precision.set_global_policy("float32")


def test_a_network_not_ending_in_float32_gets_one_sentence(x, policy):
    policy("mixed_bfloat16")
    model = VAE(CONFIG, encoder=independent_normal_encoder(), decoder=bernoulli_decoder())
    with pytest.raises(TypeError) as info:
        model.elbo(x, seed=1)
    message = str(info.value)
    assert "encoder's q(z|x) has bfloat16 parameters" in message
    assert "dtype='float32' on its last layers" in message and "\n" not in message


def float32_ended(input_shape, layers, head):
    """A network computing in the policy's dtype whose last layers are float32."""
    return tfk.Sequential([tfkl.InputLayer(input_shape), *layers, head])


def fixed_scale_decoder():
    """p(x|z) = N(mu(z), 0.01^2): gradients of size ~1e4, which a loss scale of 2^15
    overflows in float16."""
    return float32_ended(
        [J],
        [tfkl.Dense(8, activation="tanh"), tfkl.Dense(D, dtype="float32")],
        tfpl.DistributionLambda(lambda t: tfd.Independent(tfd.Normal(t, 0.01), 1), dtype="float32"),
    )


def float32_encoder():
    return float32_ended(
        [D],
        [
            tfkl.Dense(8, activation="tanh"),
            tfkl.Dense(tfpl.MultivariateNormalTriL.params_size(J), dtype="float32"),
        ],
        tfpl.MultivariateNormalTriL(J, dtype="float32"),
    )


def float16_model(config, optimizer, weights=None):
    model = VAE(config, encoder=float32_encoder(), decoder=fixed_scale_decoder())
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=optimizer)
    return model


@pytest.mark.parametrize(
    "objective, num_samples, estimator",
    [("elbo", 1, "reparameterized"), ("elbo", 2, "reparameterized"), ("iwae", 2, "dreg")],
)
def test_mixed_float16_scales_the_loss_and_unscales_the_gradients(
    x, policy, objective, num_samples, estimator
):
    """Keras wraps the optimizer in a LossScaleOptimizer: the steps scale the loss (which
    overflows float16 here, so the dynamic scale falls from 2^15) and unscale the gradients
    (a fixed scale of 1/4 takes the step a scale of 1 takes, not a quarter of it)."""
    policy("mixed_float16")
    config = CONFIG.replace(
        objective=objective, num_samples=num_samples, gradient_estimator=estimator
    )
    model = float16_model(config, tfk.optimizers.Adam(1e-3))
    assert isinstance(model.optimizer, tfk.mixed_precision.LossScaleOptimizer)
    history = model.fit(x, batch_size=2, epochs=3, verbose=0).history
    assert float(model.optimizer.loss_scale) < 2**15
    assert np.all(np.isfinite(history["loss"])) and history["loss"][0] > 0
    start = model.get_weights()
    steps = []
    for scale in (1.0, 0.25):
        optimizer = tfk.mixed_precision.LossScaleOptimizer(
            tfk.optimizers.SGD(1e-5), dynamic=False, initial_scale=scale
        )
        one = float16_model(config, optimizer, start)
        one.fit(x[:8], batch_size=8, epochs=1, verbose=0, shuffle=False)
        steps.append([w.numpy() - w0 for w, w0 in zip(one.trainable_weights, start)])
    for unit, quarter in zip(*steps):
        np.testing.assert_allclose(quarter, unit, rtol=1e-2, atol=1e-6)
    assert max(np.abs(s).max() for s in steps[0]) > 1e-4


def test_mixed_bfloat16_trains_float32_bounds(x, policy):
    policy("mixed_bfloat16")
    decoder = float32_ended(
        [J],
        [tfkl.Dense(8, activation="tanh"), tfkl.Dense(D, dtype="float32")],
        tfpl.IndependentBernoulli(D, tfd.Bernoulli.logits, dtype="float32"),
    )
    model = VAE(CONFIG, encoder=float32_encoder(), decoder=decoder)
    assert model.encoder.layers[0].compute_dtype == "bfloat16"
    model.compile()
    history = model.fit(x, batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert model.elbo(x, seed=1).dtype == tf.float32
    assert model.log_likelihood(x, 3).dtype == np.float64
