"""Issue 33, item 3: a VAE of the user's own networks (the TFP tutorial's layers, a functional
conv network) saves and loads by every route (tfvae's directory, `.keras`, `ModelCheckpoint`,
a run directory, a fresh process) to the same weights and the same ELBO at a fixed seed;
a network that cannot be saved is refused at save time, naming its layer, writing nothing;
`train_and_evaluate` takes the networks and a resume rebuilds them from the run directory.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_probability as tfp
import tf_keras as tfk
from helpers import one_line_error, run_python

import tfvae
from tfvae import VAE, TrainConfig, VAEConfig, train_and_evaluate
from tfvae.cli import main

tfd, tfpl = tfp.distributions, tfp.layers

D, J = 64, 2
CONFIG = VAEConfig(input_dim=D, latent_dim=J, hidden_units=(8,), kl_method="monte_carlo", seed=3)
FAST = TrainConfig(epochs=2, batch_size=200, eval_samples=2, jit_compile=False, seed=5)


def tril_encoder():
    """The TFP tutorial's encoder: Dense -> MultivariateNormalTriL."""
    return tfk.Sequential(
        [
            tfk.layers.InputLayer([D]),
            tfk.layers.Dense(tfpl.MultivariateNormalTriL.params_size(J)),
            tfpl.MultivariateNormalTriL(J),
        ]
    )


def normal_encoder():
    return tfk.Sequential(
        [
            tfk.layers.InputLayer([D]),
            tfk.layers.Dense(tfpl.IndependentNormal.params_size(J)),
            tfpl.IndependentNormal(J),
        ]
    )


def conv_encoder():
    """A functional conv network ending in IndependentNormal."""
    x = tfk.Input([D])
    h = tfk.layers.Reshape((8, 8, 1))(x)
    h = tfk.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(h)
    h = tfk.layers.Dense(tfpl.IndependentNormal.params_size(J))(tfk.layers.Flatten()(h))
    return tfk.Model(x, tfpl.IndependentNormal(J)(h))


def bernoulli_decoder():
    """The TFP tutorial's decoder: Dense -> IndependentBernoulli(logits)."""
    return tfk.Sequential(
        [
            tfk.layers.InputLayer([J]),
            tfk.layers.Dense(D),
            tfpl.IndependentBernoulli(D, tfd.Bernoulli.logits),
        ]
    )


def own_vae(encoder=tril_encoder, decoder=bernoulli_decoder, seed=0):
    tfk.utils.set_random_seed(seed)
    return VAE(CONFIG, encoder=encoder(), decoder=decoder())


@pytest.fixture
def x():
    return (np.random.default_rng(0).random((40, D)) < 0.3).astype(np.float32)


def weights(model):
    return [w.numpy() for w in model.encoder.weights + model.decoder.weights]


def assert_same_model(a, b, x):
    """Equal weights, and the same ELBO at a fixed seed (MultivariateNormalTriL's log_prob
    differs by float32 rounding between two calls of one model, hence the rtol)."""
    got, want = weights(a), weights(b)
    assert len(got) == len(want) > 0
    for u, v in zip(got, want):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_allclose(a.elbo(x, seed=7), b.elbo(x, seed=7), rtol=1e-6)


# -------------------------------------------------------------------------- save and load
@pytest.mark.parametrize("encoder", [tril_encoder, normal_encoder, conv_encoder])
def test_own_networks_load_by_every_route_to_the_same_numbers(encoder, x, tmp_path):
    model = own_vae(encoder)
    model.compile(jit_compile=False)
    checkpoint = tfk.callbacks.ModelCheckpoint(str(tmp_path / "checkpoint"))
    model.fit(x, batch_size=20, epochs=1, verbose=0, callbacks=[checkpoint])
    model.save(tmp_path / "m")
    model.save(tmp_path / "m.keras")
    for loaded in (
        tfvae.load_model(tmp_path / "m"),
        tfvae.load_model(tmp_path / "m.keras"),
        tfk.models.load_model(tmp_path / "m.keras"),
        tfvae.load_model(tmp_path / "checkpoint"),
    ):
        assert isinstance(loaded, VAE) and loaded.own_networks == model.own_networks
        assert [type(n.layers[-1]).__bases__[0] for n in (loaded.encoder, loaded.decoder)] == [
            type(n.layers[-1]) for n in (model.encoder, model.decoder)
        ]
        assert_same_model(loaded, model, x)


def test_the_directory_lists_the_architectures_with_their_checksums(tmp_path):
    own_vae(decoder=lambda: None).save(tmp_path / "m")  # the built-in decoder
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["format"] == "tfvae-weights-v2" and manifest["networks"] == ["encoder"]
    assert sorted(os.listdir(tmp_path / "m")) == sorted(manifest["sha256"]) + ["manifest.json"]
    assert "encoder.json" in manifest["sha256"] and "decoder.json" not in manifest["sha256"]
    VAE(CONFIG).save(tmp_path / "builtin")  # built-in networks: today's files exactly
    builtin = json.loads((tmp_path / "builtin" / "manifest.json").read_text())
    assert builtin["format"] == "tfvae-weights-v1" and "networks" not in builtin
    (tmp_path / "m" / "encoder.json").write_text("{}")
    with pytest.raises(ValueError, match="encoder.json.*corrupt or truncated"):
        tfvae.load_model(tmp_path / "m")


def test_a_fresh_process_loads_the_same_model(x, tmp_path):
    model = own_vae()
    model.save(tmp_path / "m")
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    script = (
        "import json, sys, numpy as np, tf_keras as tfk, tfvae\n"
        "x = np.load(sys.argv[1])\n"
        "for m in (tfvae.load_model(sys.argv[2]), tfk.models.load_model(sys.argv[3])):\n"
        "    ws = [w.numpy() for w in m.encoder.weights + m.decoder.weights]\n"
        "    print(json.dumps({'elbo': m.elbo(x, seed=7).numpy().tolist(),\n"
        "                      'weights': [w.tolist() for w in ws]}))\n"
    )
    paths = [str(tmp_path / name) for name in ("x.npy", "m", "m.keras")]
    done = run_python(["-c", script, *paths])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        loaded = json.loads(line)
        np.testing.assert_allclose(loaded["elbo"], model.elbo(x, seed=7), rtol=1e-6)
        for got, want in zip(loaded["weights"], weights(model), strict=True):
            np.testing.assert_array_equal(np.asarray(got, np.float32), want)


def test_a_network_holding_a_lambda_is_refused_at_save_naming_the_layer(tmp_path):
    decoder = tfk.Sequential(
        [
            tfk.layers.InputLayer([J]),
            tfk.layers.Dense(D),
            tfpl.DistributionLambda(
                lambda t: tfd.Independent(tfd.Bernoulli(logits=t), 1), name="px"
            ),
        ]
    )
    model = VAE(CONFIG, encoder=tril_encoder(), decoder=decoder)
    for path in (tmp_path / "m", tmp_path / "m.keras"):
        with pytest.raises(
            ValueError, match="decoder's layer 'px' .DistributionLambda. holds a Python function"
        ) as e:
            model.save(path)
        assert "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []  # nothing written, not even a temporary


# ----------------------------------------------------------------------- run directories
def networks_run(workdir, data, epochs, **networks):
    """`train_and_evaluate` as the CLI would have it (the data's image shape, its source)."""
    return train_and_evaluate(
        CONFIG.replace(image_shape=data.image_shape), FAST.replace(epochs=epochs), data,
        str(workdir), verbose=0,
        dataset_source={"dataset": "default", "data_dir": None, "seed": FAST.seed}, **networks,
    )  # fmt: skip


def fresh_networks(seed=0):
    tfk.utils.set_random_seed(seed)
    return {"encoder": normal_encoder(), "decoder": bernoulli_decoder()}


def test_train_and_evaluate_takes_own_networks_and_a_resume_rebuilds_them(digits, tmp_path):
    reference, _, _ = networks_run(tmp_path / "reference", digits, 3, **fresh_networks())
    assert reference.own_networks == {"encoder": True, "decoder": True}
    assert_same_model(tfvae.load_model(tmp_path / "reference"), reference, digits.x_test)
    run = tmp_path / "run"
    networks_run(run, digits, 2, **fresh_networks())
    shutil.rmtree(run / "model")  # as if killed before its final writes
    os.remove(run / "metrics.json")
    resumed, _, _ = networks_run(run, digits, 3)  # the networks rebuilt from run.json
    assert_same_model(resumed, reference, digits.x_test)
    assert_same_model(tfvae.load_model(run), reference, digits.x_test)
    shutil.rmtree(run / "model")
    os.remove(run / "metrics.json")
    with pytest.raises(ValueError, match="networks.encoder: saved another architecture"):
        networks_run(run, digits, 3, encoder=conv_encoder())


def test_a_resume_with_other_networks_than_recorded_is_refused(tmp_path):
    from tfvae.model.network_saving import network_config
    from tfvae.training.checkpointing import CheckpointError, prepare_run

    prepare_run(str(tmp_path), CONFIG, FAST)  # a run of built-in networks
    prepare_run(str(tmp_path), CONFIG, FAST, networks={})
    encoder = {"encoder": network_config(normal_encoder(), "encoder")}
    with pytest.raises(CheckpointError, match="networks.encoder: saved the built-in one, now a"):
        prepare_run(str(tmp_path), CONFIG, FAST, networks=encoder)


def test_the_cli_resumes_a_run_of_tfp_networks_and_refuses_unknown_layers_in_one_line(
    tmp_path,
):
    from tfvae.data.choice import load_data

    run = tmp_path / "run"
    networks_run(run, load_data("default", None, FAST.seed), 1, **fresh_networks())  # the CLI's
    shutil.rmtree(run / "model")  # as if killed before its final writes
    os.remove(run / "metrics.json")
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert json.loads((run / "metrics.json").read_text())["train_config"]["epochs"] == 2
    assert tfvae.load_model(run).own_networks == {"encoder": True, "decoder": True}
    # A layer class only the training process knew: the CLI cannot rebuild it.
    recorded = json.loads((run / "run.json").read_text())
    recorded["networks"]["encoder"]["config"]["layers"][1]["registered_name"] = "mine>Unknown"
    recorded["networks"]["encoder"]["config"]["layers"][1]["class_name"] = "Unknown"
    (run / "run.json").write_text(json.dumps(recorded))
    shutil.rmtree(run / "model")
    os.remove(run / "metrics.json")
    done = run_python(["-m", "tfvae", "train", "--out", str(run), "--resume", "--quiet"])
    assert done.returncode == 2, done.stderr
    line = one_line_error(done.stderr)
    assert "its encoder is a network of your own that cannot be rebuilt here" in line
