"""Mixed precision: the built-in networks' hidden layers compute in the policy's dtype, their
heads (projections and distribution layers) in float32, and float32 is untouched.

Keras' mixed-precision guide keeps a model's last layers in float32; here that keeps q(z|x)'s
and p(x|z)'s parameters, log-probs, KL and bounds float32. Under the default float32 policy
the networks must be today's, bit for bit: weights against digests of today's code, training
against a copy built from plain Keras layers. Every test restores the global policy.
"""

import hashlib
import json
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk
from helpers import assert_same_weights

from tfvae import VAE, VAEConfig
from tfvae.model.heads import BernoulliLogits, DiagonalGaussian, head_dtype

tfkl = tfk.layers
MIXED = ["mixed_bfloat16", "mixed_float16"]
COMPILES = ("default", "no_xla")
HEAD_LAYERS = ("z_", "x_")  # projections and their concatenation: z_mean, x_logits_flat, ...
DISTRIBUTION_LAYERS = ("z", "x")

# bfloat16 keeps 8 significant bits (unit roundoff 2**-9 ~ 2e-3). Under mixed_bfloat16 each
# hidden value goes through a few roundings (input, kernel, bias, activation: <= 4 * 2**-9,
# ~1% relative) before the float32 heads, so ELBOs and losses agree with float32's to about
# 1%; measured 4e-4 for the 16-32-3 MLP below. float16 keeps 11 bits: 8x tighter.
RTOL = {"mixed_bfloat16": 1e-2, "mixed_float16": 2e-3}


@pytest.fixture
def policy(request):
    """Sets the global policy `request.param` for the test, restores float32 afterwards."""
    tfk.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        tfk.mixed_precision.set_global_policy("float32")


def _binary(n, d, seed=0):
    return (np.random.default_rng(seed).random((n, d)) > 0.5).astype(np.float32)


def _mlp():
    return VAEConfig(input_dim=16, latent_dim=3, hidden_units=(32,), seed=2)


def _conv():
    return VAEConfig(
        input_dim=64,
        latent_dim=2,
        hidden_units=(10,),
        architecture="conv",
        image_shape=(8, 8, 1),
        conv_filters=(4, 6),
        decoder="isotropic",
        seed=3,
    )


def test_head_dtype_is_float32_only_under_mixed_policies():
    try:
        for name, want in [("float32", None), ("bfloat16", None), ("float64", None)] + [
            (mixed, "float32") for mixed in MIXED
        ]:
            tfk.mixed_precision.set_global_policy(name)
            assert head_dtype() == want, name
    finally:
        tfk.mixed_precision.set_global_policy("float32")


def _is_head(layer):
    return layer.name in DISTRIBUTION_LAYERS or layer.name.startswith(HEAD_LAYERS)


@pytest.mark.parametrize("policy", MIXED, indirect=True)
@pytest.mark.parametrize("make_config", [_mlp, _conv], ids=["mlp", "conv"])
def test_hidden_layers_compute_in_policy_and_heads_in_float32(policy, make_config):
    config = make_config()
    model = VAE(config)
    low = tfk.mixed_precision.Policy(policy).compute_dtype
    hidden = []
    for network in (model.encoder, model.decoder):
        for layer in network.layers[1:]:  # after the Input
            want = "float32" if _is_head(layer) else low
            assert layer.compute_dtype == want, (layer.name, layer.compute_dtype)
            if isinstance(layer, (tfkl.Dense, tfkl.Conv2D)) and not _is_head(layer):
                hidden.append(layer)
                assert layer.output.dtype == low, layer.name
    assert len(hidden) >= 2
    assert {v.dtype for v in model.trainable_variables} == {tf.float32}
    x = _binary(5, config.input_dim)
    q = model.encode(x)
    px = model.decode(q.sample(seed=[1, 2]))
    for value in (q.mean(), q.stddev(), px.mean(), px.stddev(), px.log_prob(x), model.elbo(x)):
        assert value.dtype == tf.float32


@pytest.mark.parametrize("policy", MIXED, indirect=True)
def test_mixed_policy_starts_from_float32_weights_and_close_elbo(policy):
    """The variables are float32 under both policies, drawn by the same seeded initialisers;
    the ELBO on those weights moves only by the hidden layers' rounding (`RTOL`)."""
    config = _mlp()
    x = _binary(64, config.input_dim, seed=1)
    mixed = VAE(config)
    tfk.mixed_precision.set_global_policy("float32")
    full = VAE(config)
    assert_same_weights(mixed, full)
    want = full.elbo(x, seed=4).numpy()
    got = mixed.elbo(x, seed=4).numpy()
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=RTOL[policy])
    assert not np.array_equal(got, want)  # the hidden layers did compute in low precision


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [None, False], ids=["default", "no_xla"])
@pytest.mark.parametrize("policy", MIXED, indirect=True)
def test_fit_under_mixed_policy_gives_float32s_losses(policy, jit_compile):
    """Fails today (`x` and `y` must have the same dtype, bfloat16 != float32). Same seed and
    data as float32: the losses agree to the rounding tolerance `RTOL`."""
    x = _binary(256, 16)
    compile_args = {} if jit_compile is None else {"jit_compile": jit_compile}
    losses = {}
    for name in (policy, "float32"):
        tfk.mixed_precision.set_global_policy(name)
        model = VAE(_mlp())
        model.compile(**compile_args)
        history = model.fit(x, batch_size=32, epochs=3, shuffle=False, verbose=0).history
        losses[name] = np.array(history["loss"])
    assert np.all(np.isfinite(losses[policy]))
    np.testing.assert_allclose(losses[policy], losses["float32"], rtol=RTOL[policy])


# ------------------------------------------------------------- float32: today's networks
# sha256 over (name, float32 bytes) of each initial weight, and model.elbo(x, seed=11), from
# the code before mixed precision (commit 11e7010). Seeded stateless draws are the same on
# every machine; the ELBO's last bits may differ between CPUs (kernel summation order).
TODAY = {
    "mlp": (
        dict(input_dim=16, latent_dim=3, hidden_units=(12, 10), seed=7),
        "3113019f11b303edcbf238c87648d3a15f6546a6e5e5f35380087093a1d0744d",
        [-10.086109161376953, -11.199417114257812, -11.815875053405762,
         -11.125398635864258, -11.256730079650879, -10.951505661010742],
    ),
    "conv_isotropic": (
        dict(input_dim=64, latent_dim=2, hidden_units=(10,), architecture="conv",
             image_shape=(8, 8, 1), conv_filters=(4, 6), decoder="isotropic", seed=3),
        "46252bfd93c597919476e98981f5e9efd49a363ee79157709a5afd7fb1025a71",
        [-72.75563049316406, -71.2106704711914, -73.06050109863281,
         -69.54456329345703, -70.11637878417969, -71.00440979003906],
    ),
    "gaussian_glorot": (
        dict(input_dim=16, latent_dim=3, hidden_units=(12,), decoder="gaussian",
             weight_init="glorot_uniform", seed=5),
        "64ac098d3c42c328c2b211ceebcada56f610e9ff45dbfadd3134165cfbad7bec",
        [-19.56047821044922, -17.195743560791016, -21.24873161315918,
         -18.613582611083984, -21.462495803833008, -19.40416717529297],
    ),
}  # fmt: skip


def _digest(model):
    h = hashlib.sha256()
    for w in model.encoder.weights + model.decoder.weights:
        h.update(w.name.encode())
        h.update(np.ascontiguousarray(w.numpy(), np.float32).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(TODAY))
def test_float32_networks_are_todays(name):
    fields, digest, elbo = TODAY[name]
    config = VAEConfig(**fields)
    model = VAE(config)
    assert tfk.mixed_precision.global_policy().name == "float32"
    assert _digest(model) == digest
    for layer in model.encoder.layers + model.decoder.layers:
        assert layer.get_config()["dtype"] == "float32", layer.name
    x = np.random.default_rng(1).random((6, config.input_dim)).astype(np.float32)
    if config.decoder == "bernoulli":
        x = (x > 0.5).astype(np.float32)
    np.testing.assert_allclose(model.elbo(x, seed=11).numpy(), elbo, rtol=1e-6)


def _plain_networks(config):
    """Today's MLP encoder and Bernoulli decoder from plain Keras layers (no dtype argument):
    the reference the float32 policy must match bit for bit."""
    x = tfk.Input(shape=(config.input_dim,), name="x")
    h = x
    for i, units in enumerate(config.hidden_units):
        h = tfkl.Dense(units, activation=config.activation, name=f"encoder_hidden_{i}")(h)
    mean = tfkl.Dense(config.latent_dim, name="z_mean")(h)
    log_var = tfkl.Dense(config.latent_dim, name="z_log_var")(h)
    params = tfkl.Concatenate(name="z_params")([mean, log_var])
    q = DiagonalGaussian(config.latent_dim, config.min_log_var, config.max_log_var, name="z")
    encoder = tfk.Model(x, q(params), name="encoder")
    z = tfk.Input(shape=(config.latent_dim,), name="z")
    h = z
    for i, units in enumerate(reversed(config.hidden_units)):
        h = tfkl.Dense(units, activation=config.activation, name=f"decoder_hidden_{i}")(h)
    logits = tfkl.Dense(config.input_dim, name="x_logits")(h)
    decoder = tfk.Model(z, BernoulliLogits(config.input_dim, name="x")(logits), name="decoder")
    return encoder, decoder


@pytest.mark.slow
def test_float32_training_is_bit_identical_to_plain_layers():
    config = _mlp()
    x = _binary(256, config.input_dim)
    built_in = VAE(config)
    encoder, decoder = _plain_networks(config)
    plain = VAE(config, encoder=encoder, decoder=decoder)
    plain.set_weights(built_in.get_weights())
    np.testing.assert_array_equal(built_in.elbo(x, seed=3), plain.elbo(x, seed=3))
    losses = []
    for model in (built_in, plain):
        model.compile()
        losses.append(model.fit(x, batch_size=32, epochs=2, shuffle=False, verbose=0).history)
    assert losses[0]["loss"] == losses[1]["loss"]
    assert_same_weights(built_in, plain)


# ------------------------------------------------------------------ bench smoke test
@pytest.mark.slow
def test_bench_mixed_precision_smoke(data_dir, tmp_path):
    """bench/bench_mixed_precision.py in-process on 200 MNIST images, 2 epochs: every row
    finite, the test ELBO better than a fair coin per pixel, the policy restored. No timing
    is asserted (BENCHMARKS.md holds the numbers)."""
    from bench import bench_mixed_precision

    out = tmp_path / "mp.json"
    args = ["--data-dir", data_dir, "--subset", "200", "--test-subset", "100", "--epochs", "2"]
    args += ["--in-process", "--quiet", "--out", str(out)]
    summary = bench_mixed_precision.main(args)
    assert tfk.mixed_precision.global_policy().name == "float32"
    with open(out, encoding="utf-8") as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    rows = {(r["policy"], r["compile"]): r for r in summary["rows"]}
    assert set(rows) == {(p, c) for p in ("float32", "mixed_bfloat16") for c in COMPILES}
    for row in rows.values():
        assert row["finite"] and len(row["epoch_seconds"]) == 2, row
        assert row["s_per_epoch"] > 0 and row["num_train"] == 200 and row["num_test"] == 100
        assert -784 * math.log(2) < row["test_elbo"] < 0, row
    assert summary["table"].count("\n") == 1 + len(rows)
    assert set(summary["machine"]["cpu_flags"]) >= {"avx512_bf16", "amx_bf16"}
