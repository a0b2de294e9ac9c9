"""The built-in encoder's posteriors (`VAEConfig.posterior`): full_covariance, N(mu, L L^T), and
iaf, the inverse autoregressive flow of Kingma et al. (2016), against numpy twins: the
multivariate normal density from the network's mean and L, and the flow's density by the
change of variables with a finite-difference Jacobian; the flow's autoregressive structure;
training with every objective; DReG's constant-parameter density; seeded initialisation; and
the diagonal encoder kept weight for weight as it was.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import np_soft_clip

from tfvae import VAE, VAEConfig
from tfvae.config import weight_count
from tfvae.model import distributions, heads, multi_sample, networks, posteriors

tfd = tfp.distributions
tfkl = tfk.layers
LOG_2PI = math.log(2 * math.pi)
FLOW = dict(flow_steps=2, flow_hidden_units=(9, 7), flow_context=4)


def config(posterior, **kwargs):
    base = dict(input_dim=6, latent_dim=3, hidden_units=(8,), seed=3, posterior=posterior)
    if posterior == "iaf":
        base.update(FLOW)
    return VAEConfig(**{**base, **kwargs})


def built(cfg):
    """VAE(cfg), checked to carry the posterior's own layers: the heads' and flow's weights
    after the diagonal head's, and q(z|x) of its kind."""
    model = VAE(cfg)
    names = [w.name for w in model.encoder.weights]
    kind = distributions.unwrap(model.encoder(tf.zeros([1, cfg.input_dim])))
    if cfg.posterior == "full_covariance":
        assert isinstance(kind, tfd.MultivariateNormalTriL)
        assert any(n.startswith("z_scale_off_diagonal/") for n in names) == (cfg.latent_dim > 1)
    elif cfg.posterior == "iaf":
        assert isinstance(kind.bijector, posteriors.InverseAutoregressiveFlow)
        layers = len(cfg.flow_hidden_units) + 1
        assert sum(n.startswith("z/step_") for n in names) == 2 * layers * cfg.flow_steps
    return model


def binary(n, d=6, seed=0):
    return (np.random.default_rng(seed).random((n, d)) > 0.5).astype(np.float32)


def layer_outputs(model, x, *names):
    """The encoder's layers `names` at x, as float64 numpy arrays."""
    encoder = model.encoder
    probe = tfk.Model(encoder.input, [encoder.get_layer(n).output for n in names])
    out = probe(x)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o, np.float64) for o in out]


# ------------------------------------------------------------------------ numpy twins
def np_normal_log_prob(z, mu, scale_tril):
    """log N(z; mu, L L^T), last axis: -J/2 log 2pi - sum log L_ii - |L^-1 (z - mu)|^2 / 2."""
    d = z - mu
    j = z.shape[-1]
    solved = np.linalg.solve(np.broadcast_to(scale_tril, d.shape + (j,)), d[..., None])[..., 0]
    log_det = np.sum(np.log(np.diagonal(scale_tril, axis1=-2, axis2=-1)), -1)
    return -0.5 * j * LOG_2PI - log_det - 0.5 * np.sum(solved**2, -1)


def sigmoid(s):
    return 1.0 / (1.0 + np.exp(-s))


def np_made(z, h, layers, forget_bias=2.0):
    """(m, s) of one step from tanh hidden layers over [z, h] (the kernels masked)."""
    j = z.shape[-1]
    (w, b), *middle, (w_out, b_out) = layers
    a = np.tanh(z @ w[:j] + h @ w[j:] + b)
    for w, b in middle:
        a = np.tanh(a @ w + b)
    out = a @ w_out + b_out
    return out[..., :j], out[..., j:] + forget_bias


def np_flow(z, h, steps):
    """Algorithm 1 of Kingma et al. (2016): z <- sigmoid(s) z + (1 - sigmoid(s)) m per step."""
    for layers in steps:
        m, s = np_made(z, h, layers)
        z = sigmoid(s) * z + (1.0 - sigmoid(s)) * m
    return z


def np_inverse(y, h, steps):
    """The flow's inverse coordinate by coordinate, in each step's order (reversed at odd steps)."""
    j = y.shape[-1]
    for t in reversed(range(len(steps))):
        order = range(j - 1, -1, -1) if t % 2 else range(j)
        x = np.zeros_like(y)
        for i in order:
            m, s = np_made(x, h, steps[t])
            gate = sigmoid(s[..., i])
            x[..., i] = (y[..., i] - (1.0 - gate) * m[..., i]) / gate
        y = x
    return y


def np_jacobian(f, x, delta=1e-5):
    """d f(x) / dx `[..., J, J]` by central differences (float64)."""
    columns = []
    for i in range(x.shape[-1]):
        e = np.zeros(x.shape[-1])
        e[i] = delta
        columns.append((f(x + e) - f(x - e)) / (2 * delta))
    return np.stack(columns, -1)


def np_flow_log_prob(z, mu, log_var, h, steps):
    """log q(z|x) by the change of variables: log N(f^-1(z); mu, sigma^2) - log|det df/dz_0|."""
    z0 = np_inverse(z, h, steps)
    base = np.sum(-0.5 * LOG_2PI - 0.5 * log_var - 0.5 * (z0 - mu) ** 2 / np.exp(log_var), -1)
    _, log_det = np.linalg.slogdet(np_jacobian(lambda v: np_flow(v, h, steps), z0))
    return base - log_det


def iaf_parts(model, x):
    """(mu, log sigma^2, h, the masked MADE weights) of the iaf encoder at x, float64."""
    params, context = layer_outputs(model, x, "z_params", "z_context")
    j = model.config.latent_dim
    mu, log_var = params[:, :j], np_soft_clip(params[:, j:])
    layer = model.encoder.get_layer("z")
    steps = [
        [(k.numpy().astype(np.float64), b.numpy().astype(np.float64)) for k, b in step]
        for step in layer.masked_steps()
    ]
    return mu, log_var, context, steps


# ------------------------------------------------------------------------ full covariance
def test_full_covariance_density_and_kl_are_the_multivariate_normals():
    model = built(config("full_covariance", latent_dim=4))
    x = binary(5)
    q = model.encode(x)
    assert isinstance(distributions.unwrap(q), tfd.MultivariateNormalTriL)
    mu = q.mean().numpy().astype(np.float64)
    scale_tril = distributions.unwrap(q).scale.to_dense().numpy().astype(np.float64)
    # L from the heads: diagonal exp(log sigma^2 / 2) soft-clipped, the rest below it free.
    (params,) = layer_outputs(model, x, "z_params")
    np.testing.assert_allclose(mu, params[:, :4], rtol=1e-6, atol=1e-6)
    diagonal = np.exp(0.5 * np_soft_clip(params[:, 4:8]))
    np.testing.assert_allclose(np.diagonal(scale_tril, axis1=1, axis2=2), diagonal, rtol=1e-5)
    assert np.all(np.triu(scale_tril, 1) == 0)
    below = scale_tril[:, np.tril_indices(4, -1)[0], np.tril_indices(4, -1)[1]]
    np.testing.assert_allclose(np.sort(below, 1), np.sort(params[:, 8:], 1), rtol=1e-6)
    assert np.min(np.abs(below)) > 0  # the off-diagonal is used
    # the density at random z (three draws of each row) and at q's own draws
    z = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)
    expected = np_normal_log_prob(z.astype(np.float64), mu, scale_tril)
    np.testing.assert_allclose(q.log_prob(z).numpy(), expected, rtol=1e-5, atol=1e-5)
    own = q.sample(2, seed=tf.constant([4, 5]))
    expected = np_normal_log_prob(own.numpy().astype(np.float64), mu, scale_tril)
    np.testing.assert_allclose(q.log_prob(own).numpy(), expected, rtol=1e-5, atol=1e-5)
    # KL(q || N(0, I)) in TFP's closed form (no draws needed) = the Gaussian formula
    kl = distributions.kl_divergence(q, model.prior).numpy()
    cov = scale_tril @ np.transpose(scale_tril, (0, 2, 1))
    np_kl = 0.5 * (
        np.trace(cov, axis1=1, axis2=2) + np.sum(mu**2, 1) - 4 - np.linalg.slogdet(cov)[1]
    )
    np.testing.assert_allclose(kl, np_kl, rtol=1e-5, atol=1e-5)


def test_full_covariance_of_one_latent_is_the_diagonal_gaussian():
    model = built(config("full_covariance", latent_dim=1))
    diagonal = VAE(config("diagonal", latent_dim=1))
    z = np.random.default_rng(2).normal(size=(2, 4, 1)).astype(np.float32)
    x = binary(4)
    np.testing.assert_allclose(
        model.encode(x).log_prob(z).numpy(), diagonal.encode(x).log_prob(z).numpy(), rtol=1e-6
    )


# ------------------------------------------------------------------------ iaf
def test_iaf_log_prob_is_the_change_of_variables_at_any_z_and_at_its_own_draws():
    model = built(config("iaf"))
    x = binary(4)
    q = model.encode(x)
    assert isinstance(distributions.unwrap(q).bijector, posteriors.InverseAutoregressiveFlow)
    mu, log_var, h, steps = iaf_parts(model, x)
    # random z with a leading sample dim: the flow's inverse, then the density
    z = np.random.default_rng(1).normal(size=(3, 4, 3)).astype(np.float32)
    expected = np_flow_log_prob(z.astype(np.float64), mu, log_var, h, steps)
    np.testing.assert_allclose(q.log_prob(z).numpy(), expected, rtol=1e-4, atol=1e-4)
    # q's own draws: z = f(z_0) with z_0 ~ N(mu, sigma^2) of the same seed
    seed = tf.constant([7, 8])
    own = q.sample(2, seed=seed)
    z0 = distributions.unwrap(q).distribution.sample(2, seed=seed).numpy().astype(np.float64)
    np.testing.assert_allclose(own.numpy(), np_flow(z0, h, steps), rtol=1e-5, atol=1e-5)
    expected = np_flow_log_prob(own.numpy().astype(np.float64), mu, log_var, h, steps)
    np.testing.assert_allclose(q.log_prob(own).numpy(), expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(expected, np_flow_log_prob(z0, mu, log_var, h, steps[:0]))


def test_iaf_log_prob_at_its_own_draws_reuses_the_sampling_pass(monkeypatch):
    """log q at q's draws costs no MADE pass (the bijector's cache and its remembered log-det);
    at any other z it inverts the flow."""
    model = built(config("iaf"))
    q = model.encode(binary(4))
    own = q.sample(3, seed=tf.constant([1, 2]))
    passes = []
    made = posteriors.InverseAutoregressiveFlow._made

    def counted(self, *args):
        passes.append(1)
        return made(self, *args)

    monkeypatch.setattr(posteriors.InverseAutoregressiveFlow, "_made", counted)
    q.log_prob(own)
    assert passes == []
    q.log_prob(tf.identity(own))
    assert len(passes) == 2 * (3 + 1)  # per step: J fixed-point passes, then its log-det


def test_iaf_density_under_xla_with_an_unknown_batch_is_the_same():
    """XLA compiles the flow, its inverse (a loop) and the cache for a batch of unknown size:
    the densities are the numpy twin's."""
    model = built(config("iaf"))
    x = binary(4)
    z = np.random.default_rng(1).normal(size=(3, 4, 3)).astype(np.float32)

    @tf.function(
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, 6]), tf.TensorSpec([3, None, 3])],
    )
    def densities(x, z):
        q = distributions.posterior(model.encoder, x)
        own = q.sample(2, seed=tf.constant([7, 8]))
        return own, q.log_prob(own), q.log_prob(z)

    own, at_own, at_z = [t.numpy() for t in densities(x, z)]
    mu, log_var, h, steps = iaf_parts(model, x)
    expected = np_flow_log_prob(own.astype(np.float64), mu, log_var, h, steps)
    np.testing.assert_allclose(at_own, expected, rtol=1e-4, atol=1e-4)
    expected = np_flow_log_prob(z.astype(np.float64), mu, log_var, h, steps)
    np.testing.assert_allclose(at_z, expected, rtol=1e-4, atol=1e-4)


def test_iaf_steps_are_autoregressive_in_alternating_orders():
    """Each step's Jacobian is triangular (lower in z's order, upper in the reversed one at odd
    steps) with diagonal sigmoid(s) in (0, 1); the whole flow's is full."""
    model = built(config("iaf", latent_dim=4))
    x = binary(3)
    layer = model.encoder.get_layer("z")
    (context,) = layer_outputs(model, x, "z_context")
    context = tf.constant(context, tf.float32)
    steps = layer.masked_steps()
    z = tf.constant(np.random.default_rng(3).normal(size=(3, 4)), tf.float32)
    jacobians = []
    for t, step in enumerate(steps):
        flow = posteriors.InverseAutoregressiveFlow([step], context)
        with tf.GradientTape() as tape:
            tape.watch(z)
            y = flow.forward(z)
        jacobian = tape.batch_jacobian(y, z).numpy()
        jacobians.append(jacobian)
        zero = np.triu(jacobian, 1) if t % 2 == 0 else np.tril(jacobian, -1)
        used = np.tril(jacobian, -1) if t % 2 == 0 else np.triu(jacobian, 1)
        assert np.all(zero == 0)
        assert np.count_nonzero(used) == 3 * 6  # every earlier coordinate is seen
        diagonal = np.diagonal(jacobian, axis1=1, axis2=2)
        assert np.all((diagonal > 0) & (diagonal < 1))
        log_det = flow.forward_log_det_jacobian(z, event_ndims=1).numpy()
        np.testing.assert_allclose(log_det, np.sum(np.log(diagonal), -1), rtol=1e-5)
    full = jacobians[1] @ jacobians[0]
    assert np.all(np.abs(full) > 0)


def test_made_masks_connect_outputs_only_to_earlier_inputs():
    for reverse in (False, True):
        masks = posteriors.made_masks(4, 2, (9, 5), reverse)
        assert [m.shape for m in masks] == [(6, 9), (9, 5), (5, 8)]
        reach = masks[0] @ masks[1] @ masks[2]  # paths from each input to each output
        order = np.arange(4)[::-1] if reverse else np.arange(4)
        for i in range(4):
            for j in range(4):
                earlier = order[j] < order[i]
                assert (reach[j, i] > 0) == earlier and (reach[j, 4 + i] > 0) == earlier
        assert np.all(reach[4:] > 0)  # the context reaches every output


# ------------------------------------------------------------------------ DReG
@pytest.mark.parametrize("posterior", ["full_covariance", "iaf"])
def test_dreg_holds_q_constant_with_the_same_values(posterior):
    model = built(config(posterior))
    x = tf.constant(binary(4))
    z = distributions.posterior(model.encoder, x).sample(3, seed=tf.constant([1, 2]))
    z = tf.constant(z.numpy())
    variables = model.encoder.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        q = distributions.posterior(model.encoder, x)
        held = multi_sample.stop_parameter_gradients(q).log_prob(z)
        free = q.log_prob(z)
    np.testing.assert_allclose(held.numpy(), free.numpy(), rtol=1e-5, atol=1e-5)
    assert all(g is None for g in tape.gradient(held, variables))
    assert sum(g is not None for g in tape.gradient(free, variables)) == len(variables)
    np.testing.assert_allclose(
        tape.gradient(held, z).numpy(), tape.gradient(free, z).numpy(), rtol=1e-4, atol=1e-5
    )
    # the surrogate of multi_sample.draw: the plain values, at q's own (cached) draws
    seed = tf.constant([5, 6])
    args = (model.encoder, model.decoder, model.prior, x, seed, 3, "monte_carlo")
    plain = multi_sample.draw(*args)
    surrogate = multi_sample.draw(*args, stop_q_gradients=True)
    np.testing.assert_allclose(surrogate.kl.numpy(), plain.kl.numpy(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------ training
WEIGHTS_OF = {"full_covariance": "z_scale_off_diagonal", "iaf": "z"}
OBJECTIVES = [
    dict(objective="elbo"),
    dict(objective="elbo", num_samples=3),
    dict(objective="iwae", num_samples=3),
    dict(objective="iwae", num_samples=3, gradient_estimator="dreg"),
]


def fit_changes(model, jit_compile, epochs=2):
    """Fits 45 rows at batch 20 (a short last batch); returns (history, the posterior's own
    weights before and after)."""
    own = model.encoder.get_layer(WEIGHTS_OF[model.config.posterior]).weights
    before = [w.numpy().copy() for w in own]
    model.compile(optimizer=tfk.optimizers.Adam(1e-2), jit_compile=jit_compile)
    history = model.fit(binary(45), batch_size=20, epochs=epochs, verbose=0).history
    return history, before, [w.numpy() for w in own]


@pytest.mark.parametrize("posterior", ["full_covariance", "iaf"])
@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: "-".join(map(str, o.values())))
def test_fit_trains_every_objective(posterior, objective):
    model = built(config(posterior, **objective))
    history, before, after = fit_changes(model, jit_compile=False)
    assert all(np.all(np.isfinite(v)) for v in history.values())
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.slow
@pytest.mark.parametrize("posterior", ["full_covariance", "iaf"])
def test_fit_under_the_default_compile_uses_xla(posterior):
    """The posteriors' layers are tfvae's own: compile() picks XLA, which compiles the flow's
    inverse (DReG) with the batch size unknown (45 rows at batch 20)."""
    model = built(config(posterior, objective="iwae", num_samples=3, gradient_estimator="dreg"))
    history, before, after = fit_changes(model, jit_compile=None, epochs=1)
    assert model.jit_compile is True
    assert all(np.all(np.isfinite(v)) for v in history.values())
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))


def np_log_marginal(model, x, half_width=6.0, points=241):
    """log p(x) = log integral p(x|z) N(z; 0, I) dz for J = 2 on a grid (the numpy decoder:
    tanh hidden layer, Bernoulli logits)."""
    w1, b1, w2, b2 = [w.numpy().astype(np.float64) for w in model.decoder.weights]
    grid = np.linspace(-half_width, half_width, points)
    z = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    logits = np.tanh(z @ w1 + b1) @ w2 + b2
    log_px = x @ logits.T - np.sum(np.logaddexp(0.0, logits), -1)
    log_joint = log_px - np.log(2 * np.pi) - 0.5 * np.sum(z**2, -1)
    top = log_joint.max(-1, keepdims=True)
    log_sum = np.log(np.sum(np.exp(log_joint - top), -1)) + top[:, 0]
    return log_sum + 2 * np.log(grid[1] - grid[0])


@pytest.mark.parametrize("posterior", ["full_covariance", "iaf"])
def test_log_likelihood_reaches_log_px_by_quadrature(posterior):
    """The importance-weighted estimate (likelihood.iwae_batch: q.log_prob at q's draws, in a
    loop) is log p(x) within its noise at K = 20000; a log q off by the flow's log-det
    (sum log sigmoid(s) ~ -0.5 nats here) would miss it."""
    model = built(config(posterior, latent_dim=2))
    x = binary(6).astype(np.float64)
    ll = model.log_likelihood(x, importance_samples=20000, chunk_size=2000, seed=1)
    exact = np_log_marginal(model, x)
    assert np.max(np.abs(ll - exact)) < 0.25
    assert abs(np.mean(ll - exact)) < 0.1


def test_mixed_precision_keeps_the_posteriors_float32():
    tfk.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        for posterior in ("full_covariance", "iaf"):
            model = built(config(posterior))
            q = model.encode(binary(2))
            z = q.sample(seed=tf.constant([1, 1]))
            assert z.dtype == tf.float32 and q.log_prob(z).dtype == tf.float32
            layer = model.encoder.get_layer("z")
            assert layer.compute_dtype == "float32"
    finally:
        tfk.mixed_precision.set_global_policy("float32")


# ------------------------------------------------------------------------ weights
def old_encoder(cfg):
    """make_encoder's MLP as it was before `posterior`: hidden layers, then gaussian_head."""
    init = networks._LayerInit(cfg, 0)
    x = tfk.Input(shape=(cfg.input_dim,), name="x")
    h = x
    for i, units in enumerate(cfg.hidden_units):
        h = tfkl.Dense(units, activation=cfg.activation, name=f"encoder_hidden_{i}", **init())(h)
    q = heads.gaussian_head(
        h, cfg.latent_dim, "z", cfg.min_log_var, cfg.max_log_var, layer_init=init
    )
    return tfk.Model(x, q, name="encoder")


def test_diagonal_encoder_is_unchanged_and_the_others_extend_it():
    cfg = config("diagonal", hidden_units=(8, 5))
    old = old_encoder(cfg)
    new = networks.make_encoder(cfg)
    assert [(w.name, w.shape) for w in new.weights] == [(w.name, w.shape) for w in old.weights]
    for a, b in zip(new.weights, old.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for posterior in ("full_covariance", "iaf"):
        other = networks.make_encoder(cfg.replace(posterior=posterior, **FLOW))
        assert len(other.weights) > len(old.weights)
        for a, b in zip(other.weights, old.weights):
            assert a.name == b.name
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("weight_init", ["fan_in_uniform", "glorot_uniform"])
@pytest.mark.parametrize("posterior", ["full_covariance", "iaf"])
def test_every_weight_starts_from_its_seed_and_place(posterior, weight_init):
    """Weight i of encoder + decoder is U(+-limit) drawn with the stateless seed [seed, i]."""
    model = built(config(posterior, weight_init=weight_init))
    weights = model.encoder.weights + model.decoder.weights
    fan_in = None
    for i, w in enumerate(weights):
        shape = w.shape.as_list()
        if len(shape) == 2:  # a kernel [in, out]
            fan_in, fan_out = shape
            limit = 1 / math.sqrt(fan_in)
            if weight_init == "glorot_uniform":
                limit = math.sqrt(6 / (fan_in + fan_out))
        elif weight_init == "glorot_uniform":
            np.testing.assert_array_equal(w.numpy(), 0.0, err_msg=w.name)
            continue
        else:
            limit = 1 / math.sqrt(fan_in)  # a bias: its kernel's fan-in
        drawn = tf.random.stateless_uniform(shape, [3, i], -limit, limit)
        np.testing.assert_array_equal(w.numpy(), drawn.numpy(), err_msg=w.name)
    again = built(config(posterior, weight_init=weight_init))
    for a, b in zip(weights, again.encoder.weights + again.decoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = built(config(posterior, weight_init=weight_init, seed=4))
    assert not np.array_equal(other.encoder.weights[-2].numpy(), model.encoder.weights[-2].numpy())


@pytest.mark.parametrize("posterior", ["full_covariance", "iaf"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(input_dim=784, latent_dim=50, hidden_units=(200, 200)),
        dict(
            input_dim=784,
            latent_dim=20,
            hidden_units=(64,),
            architecture="conv",
            image_shape=(28, 28, 1),
        ),
    ],
    ids=["mlp", "conv"],
)
def test_weight_count_counts_the_posteriors_kernels(posterior, kwargs):
    """What MAX_WEIGHTS bounds is the built model's size, within the biases (< 2%)."""
    cfg = VAEConfig(posterior=posterior, **kwargs)
    model = built(cfg)
    count = model.encoder.count_params() + model.decoder.count_params()
    assert weight_count(cfg) <= count <= 1.02 * weight_count(cfg)


def test_an_iaf_posteriors_point_is_its_base_mean_through_the_flow_in_any_batch():
    """TFP has no mean for a flow: `predict(latent="mean")` and the pictures use the base's
    mean pushed through the flow (the export's z_flowed_mean), the same row in any batch."""
    from tfvae.model.distributions import latent_mean

    config = VAEConfig(
        input_dim=6,
        latent_dim=3,
        hidden_units=(8,),
        posterior="iaf",
        flow_hidden_units=(8,),
        flow_context=4,
    )
    model = VAE(config)
    x = np.random.default_rng(0).random((7, 6)).astype(np.float32)
    q = model.encode(x)
    flow = getattr(q, "tensor_distribution", q)
    expected = flow.bijector.forward(flow.distribution.mean()).numpy()
    np.testing.assert_allclose(latent_mean(q).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(latent_mean(model.encode(x[:2])).numpy(), expected[:2], atol=1e-6)
    assert model.predict(x, latent="mean", verbose=0).shape == (7, 6)
