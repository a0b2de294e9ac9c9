"""The VAE model: distributions out, the loss of the paper, Keras fit/evaluate/predict, IWAE."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import np_log_mean_exp

from tfvae import VAE, VAEConfig

tfd = tfp.distributions


def np_elbo(model, x, seed):
    """ELBO from the networks' raw parameters with numpy formulas (App. B, C.1)."""
    q = model.encoder(x)
    mu, var = q.mean().numpy().astype(np.float64), q.variance().numpy().astype(np.float64)
    z = q.sample(seed=tf.constant(seed, tf.int32)).numpy()
    y = model.decoder(z).mean().numpy().astype(np.float64)
    rec = np.sum(x * np.log(y) + (1 - x) * np.log(1 - y), -1)
    kl = -0.5 * np.sum(1 + np.log(var) - mu**2 - var, -1)
    return rec - kl


def test_call_returns_decoder_distribution(small_config, binary_x):
    model = VAE(small_config)
    px = model(binary_x[:5], seed=3)
    assert isinstance(px, tfd.Distribution)
    assert px.event_shape == [16] and px.batch_shape == [5]
    mean = px.mean().numpy()
    assert np.all((mean > 0) & (mean < 1))
    draws = px.sample(seed=(0, 1)).numpy()
    assert set(np.unique(draws)) <= {0.0, 1.0}
    # Same z -> same distribution parameters; the draws from it still vary.
    np.testing.assert_array_equal(model(binary_x[:5], seed=3).mean(), mean)
    assert not np.array_equal(px.sample(seed=(0, 1)), px.sample(seed=(0, 2)))


def test_elbo_matches_numpy(small_config, binary_x):
    model = VAE(small_config)
    np.testing.assert_allclose(
        model.elbo(binary_x, seed=7), np_elbo(model, binary_x, [7, 0]), rtol=1e-4
    )


def test_monte_carlo_kl_agrees_with_analytic_on_average(binary_x):
    config = VAEConfig(input_dim=16, latent_dim=3, hidden_units=(12,), kl_method="monte_carlo")
    mc_model = VAE(config)
    an_model = VAE(config.replace(kl_method="analytic"))
    x = tf.constant(np.repeat(binary_x[:1], 4000, 0))
    _, kl_mc = mc_model.elbo_terms(x, tf.constant([1, 2]))
    _, kl_an = an_model.elbo_terms(x, tf.constant([1, 2]))
    assert abs(float(tf.reduce_mean(kl_mc)) - float(kl_an[0])) < 0.05 * float(kl_an[0]) + 0.02


def test_fit_evaluate_predict(small_config, binary_x):
    model = VAE(small_config)
    model.compile()
    history = model.fit(binary_x, epochs=2, batch_size=16, verbose=0)
    assert set(history.history) >= {"loss", "elbo", "reconstruction", "kl"}
    logs = model.evaluate(binary_x, batch_size=16, verbose=0, return_dict=True)
    assert logs["elbo"] == pytest.approx(logs["reconstruction"] - logs["kl"], rel=1e-5)
    assert logs["loss"] == pytest.approx(-logs["elbo"], rel=1e-5)
    # evaluate restarts its draws: same number twice
    assert model.evaluate(binary_x, batch_size=16, verbose=0, return_dict=True) == logs
    mean = model.predict(binary_x, batch_size=16, verbose=0)
    assert mean.shape == (64, 16) and np.all((mean > 0) & (mean < 1))
    sample = model.predict(binary_x, output="sample", verbose=0)
    assert set(np.unique(sample)) <= {0.0, 1.0}
    deterministic = model.predict(binary_x, latent="mean", verbose=0)
    q_mean = model.encoder(binary_x).mean()
    np.testing.assert_allclose(deterministic, model.decoder(q_mean).mean(), rtol=1e-5)
    probs = model.predict(binary_x, output="probs", latent="mean", verbose=0)
    np.testing.assert_allclose(probs, deterministic, rtol=1e-5)


def test_kl_weight_scales_the_loss(small_config, binary_x):
    model = VAE(small_config.replace(kl_weight=0.0))
    model.compile()
    logs = model.evaluate(binary_x, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(-logs["reconstruction"], rel=1e-5)
    assert logs["kl"] > 0


@pytest.mark.slow
def test_training_is_deterministic(small_config, binary_x):
    def run():
        model = VAE(small_config)
        model.compile()
        return model.fit(binary_x, epochs=2, batch_size=16, shuffle=False, verbose=0).history[
            "loss"
        ]

    assert run() == run()


def test_generate_from_prior(small_config):
    model = VAE(small_config)
    px = model.sample_prior(7, seed=1)
    assert px.batch_shape == [7] and px.event_shape == [16]
    x = model.generate(5, seed=2)
    assert x.shape == (5, 16) and set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(x, model.generate(5, seed=2))


def test_iwae_bound_above_elbo_and_rising_in_k(small_config, binary_x):
    model = VAE(small_config)
    model.compile()
    model.fit(binary_x, epochs=3, batch_size=16, verbose=0)
    x = binary_x[:32]
    elbo = np.mean([model.elbo(x, seed=s).numpy().mean() for s in range(20)])
    k1 = model.log_likelihood(x, importance_samples=1, seed=0).mean()
    k10 = model.log_likelihood(x, importance_samples=10, seed=0).mean()
    k500 = model.log_likelihood(x, importance_samples=500, chunk_size=64, seed=0).mean()
    assert abs(k1 - elbo) < 1.0  # K = 1 is an ELBO estimate
    assert elbo <= k10 <= k500 + 0.05
    # Chunks change the draws and the memory, not the estimator: K = 300 in chunks of 64 or
    # 7 (combined by a running logsumexp) meets K = 300 in one chunk to Monte Carlo error.
    whole = model.log_likelihood(x, importance_samples=300, chunk_size=300, seed=0)
    for chunk_size in (64, 7):
        chunked = model.log_likelihood(x, importance_samples=300, chunk_size=chunk_size, seed=0)
        assert abs(chunked.mean() - whole.mean()) < 0.05, chunk_size
        np.testing.assert_allclose(chunked, whole, atol=0.3, err_msg=f"chunks of {chunk_size}")


def test_iwae_matches_numpy_log_mean_exp(small_config, binary_x):
    model = VAE(small_config)
    x = binary_x[:4]
    q = model.encoder(x)
    z = q.sample(2000, seed=(5, 5)).numpy()  # [K, batch, J]
    px = model.decoder(z.reshape(-1, 3))
    log_px_z = px.log_prob(np.tile(x, (2000, 1))).numpy().reshape(2000, 4)
    mu, sd = q.mean().numpy(), q.stddev().numpy()
    log_q = np.sum(-0.5 * np.log(2 * np.pi) - np.log(sd) - 0.5 * ((z - mu) / sd) ** 2, -1)
    log_p = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * z**2, -1)
    lw = (log_px_z + log_p - log_q).astype(np.float64)
    expected = np_log_mean_exp(lw)
    got = model.log_likelihood(x, importance_samples=2000, chunk_size=2000, seed=0)
    np.testing.assert_allclose(got, expected, atol=0.15)  # different draws, same estimator


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["gaussian", "isotropic", "fixed_variance"])
def test_gaussian_decoders_train(decoder):
    x = np.random.default_rng(0).random((128, 10)).astype(np.float32)
    model = VAE(VAEConfig(input_dim=10, latent_dim=2, decoder=decoder, hidden_units=(16,)))
    model.compile()
    before = model.evaluate(x, verbose=0, return_dict=True)["elbo"]
    model.fit(x, epochs=20, batch_size=32, verbose=0)
    after = model.evaluate(x, verbose=0, return_dict=True)["elbo"]
    assert np.isfinite(after) and after > before


def old_initial_weights(model):
    """The seeded init as `VAE` used to assign it after building, restated with numpy fans:
    weight i of encoder.weights + decoder.weights drawn from U(+-limit) with seed [seed, i];
    a bias takes its kernel's fan-in; a glorot bias is zero."""
    config, out, fan_in = model.config, [], 1
    for i, var in enumerate(model.encoder.weights + model.decoder.weights):
        shape = var.shape.as_list()
        if len(shape) >= 2:
            field = shape[0] * shape[1] if len(shape) == 4 else 1
            fan_in = field * shape[-2] if len(shape) == 4 else int(np.prod(shape[:-1]))
            fan_out = field * shape[-1]
            if config.weight_init == "fan_in_uniform":
                limit = 1.0 / np.sqrt(fan_in)
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
        elif config.weight_init == "fan_in_uniform":
            limit = 1.0 / np.sqrt(fan_in)
        else:
            out.append(np.zeros(shape, np.float32))
            continue
        out.append(tf.random.stateless_uniform(shape, [config.seed, i], -limit, limit).numpy())
    return out


@pytest.mark.parametrize(
    "config",
    [
        VAEConfig(input_dim=12, latent_dim=2, hidden_units=(7, 5), seed=4),
        VAEConfig(input_dim=12, latent_dim=3, decoder="gaussian", weight_init="glorot_uniform"),
        VAEConfig(
            input_dim=64,
            latent_dim=2,
            decoder="isotropic",
            architecture="conv",
            image_shape=(8, 8, 1),
            conv_filters=(4, 6),
            hidden_units=(16,),
            seed=9,
        ),
        VAEConfig(
            input_dim=48,
            latent_dim=2,
            architecture="conv",
            image_shape=(4, 4, 3),
            conv_filters=(5,),
            hidden_units=(8,),
            weight_init="glorot_uniform",
            seed=2,
        ),
    ],
    ids=["mlp-fan-in", "mlp-glorot", "conv-isotropic-fan-in", "conv-bernoulli-glorot"],
)
def test_seeded_initializers_give_the_weights_of_the_seeded_formula(config):
    model = VAE(config)
    expected = old_initial_weights(model)
    got = model.encoder.weights + model.decoder.weights
    assert len(got) == len(expected)
    for var, want in zip(got, expected):
        np.testing.assert_array_equal(var.numpy(), want, err_msg=var.name)


def test_bad_inputs_are_named(small_config):
    model = VAE(small_config)
    with pytest.raises(ValueError, match=r"x must have shape \[batch, 16\].*\(3, 15\)"):
        model(np.zeros((3, 15), np.float32))
    with pytest.raises(ValueError, match="flatten"):
        model.predict(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model(np.full((2, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.fit(np.full((4, 16), 2.0, np.float32), verbose=0)
    with pytest.raises(TypeError, match="numeric"):
        model(np.array([["a"] * 16]))
    with pytest.raises(ValueError, match="empty"):
        model.fit(np.zeros((0, 16), np.float32), verbose=0)
    with pytest.raises(ValueError, match="z must have shape"):
        model.decode(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="output must be one of"):
        model.predict(np.zeros((2, 16), np.float32), output="median")
    with pytest.raises(ValueError, match="do not pass loss"):
        model.compile(loss="mse")
    gaussian = VAE(small_config.replace(decoder="gaussian"))
    with pytest.raises(ValueError, match="bernoulli"):
        gaussian.predict(np.zeros((2, 16), np.float32), output="probs")
    with pytest.raises(ValueError, match="dataset elements"):
        model.fit(tf.data.Dataset.from_tensor_slices(np.zeros((4, 16), np.float32)), verbose=0)


def test_fit_validation_data_forms(small_config, binary_x):
    model = VAE(small_config)
    for validation_data in (binary_x[:16], (binary_x[:16],), (binary_x[:16], binary_x[:16])):
        history = model.fit(binary_x, validation_data=validation_data, epochs=1, verbose=0)
        assert np.isfinite(history.history["val_elbo"][0])


def test_fit_accepts_tf_data(small_config, binary_x):
    model = VAE(small_config)
    ds = tf.data.Dataset.from_tensor_slices(binary_x).batch(16)
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("weight_init", ["glorot_uniform", "fan_in_uniform", None])
def test_initial_weights_follow_config_weight_init(weight_init):
    """None: the default, PyTorch's fan-in init (the start of the PyTorch reference VAE)."""
    init = {} if weight_init is None else {"weight_init": weight_init}
    config = VAEConfig(input_dim=300, latent_dim=20, hidden_units=(200,), **init)
    model = VAE(config)
    layers = {}
    for var in model.encoder.weights + model.decoder.weights:
        layer, kind = var.name.split("/")[0], var.name.split("/")[1].split(":")[0]
        layers.setdefault(layer, {})[kind] = var.numpy()
    expected = {"encoder_hidden_0", "z_mean", "z_log_var", "decoder_hidden_0", "x_logits"}
    assert set(layers) == expected
    for name, weights in layers.items():
        fan_in, fan_out = weights["kernel"].shape
        if weight_init == "glorot_uniform":  # U(+-sqrt(6 / (in + out))), zero bias
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            np.testing.assert_array_equal(weights["bias"], 0.0)
        else:  # PyTorch's nn.Linear: kernel and bias U(+-1 / sqrt(in))
            limit = 1.0 / np.sqrt(fan_in)
            bias = weights["bias"]
            assert np.all(np.abs(bias) <= limit) and np.abs(bias).max() > 0.5 * limit, name
        kernel = weights["kernel"]
        assert np.all(np.abs(kernel) <= limit), name
        # Uniform on [-a, a]: variance a^2 / 3 (at least 4000 entries: within 10%).
        np.testing.assert_allclose(kernel.var(), limit**2 / 3, rtol=0.1, err_msg=name)
    again = VAE(config)
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_log_likelihood_of_one_example(small_config, binary_x):
    # A batch of one traced its running tensors as [1]; the loop then refused [None].
    model = VAE(small_config)
    one = model.log_likelihood(binary_x[:1], importance_samples=7, chunk_size=3)
    assert one.shape == (1,) and np.isfinite(one).all()
    np.testing.assert_array_equal(one, model.log_likelihood(binary_x[:1], 7, chunk_size=3))


def test_sample_counts_have_one_name_each_and_the_old_keyword_names_the_new(small_config):
    """`num_samples` is the config's training draws; the methods' counts have their own names."""
    model = VAE(small_config)
    x = np.full((2, 16), 0.5, np.float32)
    assert model.log_likelihood(x, importance_samples=3).shape == (2,)
    assert model.generate(num_examples=2).shape == (2, 16)
    assert model.sample_prior(num_examples=2).batch_shape == [2]
    for call, new in (
        (lambda: model.log_likelihood(x, num_samples=3), "importance_samples"),
        (lambda: model.generate(num_samples=2), "num_examples"),
        (lambda: model.sample_prior(num_samples=2), "num_examples"),
    ):
        with pytest.raises(TypeError, match=rf"takes {new}= now, not num_samples=$") as e:
            call()
        assert "\n" not in str(e.value)
    with pytest.raises(TypeError, match="unexpected keyword argument 'samples'"):
        model.generate(2, samples=3)


def test_elbo_terms_takes_an_int_seed_like_elbo(small_config, binary_x):
    model = VAE(small_config)
    first = model.elbo_terms(binary_x[:4], seed=5)
    np.testing.assert_array_equal(first[0], model.elbo_terms(binary_x[:4], seed=5)[0])
    np.testing.assert_allclose(first[0] - first[1], model.elbo(binary_x[:4], seed=5), rtol=1e-6)
    with pytest.raises(ValueError, match=r"x must have shape \[batch, 16\]"):
        model.elbo_terms(binary_x[:4, :8], seed=5)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        model.elbo_terms(binary_x[:4], seed=-1)


def test_predict_returns_numpy(small_config, binary_x):
    out = VAE(small_config).predict(binary_x[:5], verbose=0)
    assert isinstance(out, np.ndarray) and out.shape == (5, 16)
