"""Issue 35: learned priors and richer posteriors travel with the model. A learned prior's
weights are saved (`prior.weights.h5`), loaded, checkpointed and resumed; a VAE with the
N(0, I) prior writes the v1 files as before; the export builds p(z) from the current weights
(its `generate` draws from the prior in use, its bounds use its `log_prob`) and serves what q
has (an `iaf` q: its own samples and its base Gaussian, no false z_mean); the CLI records the
choices in run.json and `--resume` keeps them. References: the model in process at the same
draws, numpy statistics of many draws, a fresh process, TF Serving's loader without TFP."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk
from export_helpers import serve_in_fresh_process
from helpers import REPO, np_log_mean_exp, one_line_error, run_python

import tfvae
from tfvae import VAE, TrainConfig, VAEConfig, train_and_evaluate
from tfvae.model.saving import sha256_file
from tfvae.serving.signatures import make_serving_module

D, J, COMPONENTS = 6, 2, 3
CORNERS = [(p, q) for p in ("mixture", "vamp") for q in ("diagonal", "full_covariance", "iaf")]
V1_FILES = ["config.json", "decoder.weights.h5", "encoder.weights.h5"]


def _config(prior="mixture", posterior="diagonal", **fields):
    small = dict(input_dim=D, latent_dim=J, hidden_units=(8,), prior_components=COMPONENTS)
    small.update(flow_hidden_units=(8,), flow_context=3, seed=5, **fields)
    return VAEConfig(prior=prior, posterior=posterior, **small)


def _model(prior="mixture", posterior="diagonal", **fields):
    """A tiny VAE with every weight moved off its seeded start, as training moves them: a
    load that re-initialised the prior or the flow from the config would show."""
    model = VAE(_config(prior, posterior, **fields))
    rng = np.random.default_rng(7)
    for w in model.trainable_variables:
        w.assign(w + rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    return model


def _x(rows=4, seed=1):
    return (np.random.default_rng(seed).random((rows, D)) > 0.5).astype(np.float32)


def _weights(model):
    parts = (model.encoder, model.decoder, model.prior_network)
    return [(w.name, w.numpy()) for part in parts for w in part.weights]


def _assert_same_model(loaded, model, x):
    """The same config and weights (the prior's too), the same seeded ELBO and prior draws."""
    assert loaded.config == model.config
    got, want = _weights(loaded), _weights(model)
    assert len(got) == len(want) and len(model.prior_network.weights) > 0
    for (name, u), (_, v) in zip(got, want):
        np.testing.assert_array_equal(u, v, err_msg=name)
    np.testing.assert_allclose(loaded.elbo(x, seed=7), model.elbo(x, seed=7), rtol=1e-6)
    seed = tf.constant([1, 2], tf.int32)
    np.testing.assert_allclose(
        loaded.prior.sample(50, seed=seed), model.prior.sample(50, seed=seed), rtol=1e-6
    )


def _rewrite(directory, name, data: bytes):
    """Replaces a saved model's file and its manifest checksum: a consistent, other model."""
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)
    path = os.path.join(directory, "manifest.json")
    manifest = json.load(open(path))
    manifest["sha256"][name] = sha256_file(os.path.join(directory, name))
    with open(path, "w") as f:
        json.dump(manifest, f)


# ------------------------------------------------------------------------- save and load
@pytest.mark.parametrize("prior, posterior", CORNERS)
def test_save_and_load_keep_the_learned_prior_and_the_posterior(prior, posterior, tmp_path):
    model = _model(prior, posterior)
    path = tfvae.save_model(model, tmp_path / "m")
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    assert sorted(manifest["sha256"]) == sorted(V1_FILES + ["prior.weights.h5"])
    assert sorted(os.listdir(path)) == sorted([*manifest["sha256"], "manifest.json"])
    _assert_same_model(tfvae.load_model(path), model, _x())


@pytest.mark.parametrize("prior, posterior", [("vamp", "iaf"), ("mixture", "full_covariance")])
def test_keras_zip_keeps_the_learned_prior(prior, posterior, tmp_path):
    model = _model(prior, posterior)
    model.save(tmp_path / "m.keras")
    for loaded in (
        tfvae.load_model(tmp_path / "m.keras"),
        tfk.models.load_model(tmp_path / "m.keras", compile=False),
    ):
        _assert_same_model(loaded, model, _x())


@pytest.mark.slow
def test_a_fresh_process_loads_the_same_prior_and_flow(tmp_path):
    model = _model("mixture", "iaf")
    model.save(tmp_path / "m")
    x = _x()
    np.save(tmp_path / "x.npy", x)
    script = (
        "import json, sys, numpy as np, tfvae\n"
        "m = tfvae.load_model(sys.argv[2])\n"
        "x = np.load(sys.argv[1])\n"
        "print(json.dumps({'elbo': m.elbo(x, seed=7).numpy().tolist(),\n"
        "                  'z': m.prior.sample(20, seed=[1, 2]).numpy().tolist(),\n"
        "                  'prior': [w.numpy().tolist() for w in m.prior_network.weights]}))\n"
    )
    done = run_python(["-c", script, str(tmp_path / "x.npy"), str(tmp_path / "m")])
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got["elbo"], model.elbo(x, seed=7), rtol=1e-6)
    np.testing.assert_allclose(got["z"], model.prior.sample(20, seed=[1, 2]), rtol=1e-6)
    for loaded, w in zip(got["prior"], model.prior_network.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(loaded, np.float32), w.numpy())


def test_the_standard_normal_prior_writes_the_v1_files_as_before(tmp_path):
    """No prior file, and the manifest byte for byte as tfvae-weights-v1 writes it."""
    path = tfvae.save_model(VAE(_config("standard_normal")), tmp_path / "m")
    assert sorted(os.listdir(path)) == sorted(V1_FILES + ["manifest.json"])
    digests = {name: sha256_file(os.path.join(path, name)) for name in V1_FILES}
    v1 = {"format": "tfvae-weights-v1", "sha256": digests}
    manifest = open(os.path.join(path, "manifest.json")).read()
    assert manifest == json.dumps(v1, indent=2, sort_keys=True) + "\n"


def test_a_model_saved_before_learned_priors_still_loads(tmp_path):
    """A config.json without the issue-35 fields (what older tfvae wrote) loads as N(0, I)."""
    model = VAE(_config("standard_normal"))
    path = tfvae.save_model(model, tmp_path / "m")
    config = json.load(open(os.path.join(path, "config.json")))
    new_fields = ("prior", "prior_components", "pseudo_inputs", "posterior", "flow_steps")
    new_fields += ("flow_hidden_units", "flow_context")
    for field in new_fields:
        del config[field]
    _rewrite(path, "config.json", json.dumps(config).encode())
    loaded = tfvae.load_model(path)
    assert (loaded.config.prior, loaded.config.posterior) == ("standard_normal", "diagonal")
    np.testing.assert_array_equal(loaded.elbo(_x(), seed=3), model.elbo(_x(), seed=3))


def test_prior_weights_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    model = _model("mixture")
    path = str(tfvae.save_model(model, tmp_path / "m"))
    prior_file = os.path.join(path, "prior.weights.h5")
    with open(prior_file, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="prior.weights.h5.*corrupt or truncated"):
        tfvae.load_model(path)
    # A consistent directory whose prior file does not fit the config's prior.
    other = tfvae.save_model(VAE(_config("mixture", prior_components=5)), tmp_path / "five")
    _rewrite(path, "prior.weights.h5", open(os.path.join(other, "prior.weights.h5"), "rb").read())
    with pytest.raises(ValueError, match=r"prior.weights.h5.*does not fit.*'mixture'"):
        tfvae.load_model(path)
    # A manifest without the prior's weights, or with them for a prior that has none.
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    del manifest["sha256"]["prior.weights.h5"]
    json.dump(manifest, open(os.path.join(path, "manifest.json"), "w"))
    with pytest.raises(ValueError, match="lacks prior.weights.h5"):
        tfvae.load_model(path)
    plain = tfvae.save_model(VAE(_config("standard_normal")), tmp_path / "plain")
    _rewrite(plain, "prior.weights.h5", open(os.path.join(other, "prior.weights.h5"), "rb").read())
    with pytest.raises(ValueError, match="'standard_normal' has none"):
        tfvae.load_model(plain)


# ------------------------------------------------------------------------ run directories
@pytest.mark.slow
def test_resume_continues_the_learned_prior_and_the_flow_bit_for_bit(digits, tmp_path):
    """Killed after epoch 2 (no model/ yet), resumed to 3: the weights (the prior's, the
    flow's) and Adam's slots are those of an uninterrupted run; model/ holds the prior."""
    config = _config("mixture", "iaf", input_dim=64)
    fast = dict(batch_size=200, eval_samples=2, jit_compile=False)
    straight, _, _ = train_and_evaluate(
        config, TrainConfig(epochs=3, **fast), digits, str(tmp_path / "a"), verbose=0
    )
    train_and_evaluate(config, TrainConfig(epochs=2, **fast), digits, str(tmp_path / "b"), 0)
    shutil.rmtree(tmp_path / "b" / "model")
    resumed, history, _ = train_and_evaluate(
        config, TrainConfig(epochs=3, **fast), digits, str(tmp_path / "b"), verbose=0
    )
    assert len(history["loss"]) == 3
    start = VAE(config).prior_network.weights
    for trained, initial in zip(resumed.prior_network.weights, start):
        assert not np.array_equal(trained.numpy(), initial.numpy())  # the prior was trained
    for (name, u), (_, v) in zip(_weights(resumed), _weights(straight), strict=True):
        np.testing.assert_array_equal(u, v, err_msg=name)
    slots = [v.numpy() for v in resumed.optimizer.variables()]
    for u, v in zip(slots, [v.numpy() for v in straight.optimizer.variables()], strict=True):
        np.testing.assert_array_equal(u, v)
    _assert_same_model(tfvae.load_model(tmp_path / "b"), resumed, digits.x_test[:5])


@pytest.mark.slow
def test_cli_records_resumes_samples_and_evaluates_the_choices(tmp_path, capsys):
    from tfvae.cli import main

    out = tmp_path / "run"
    model_flags = ["--prior", "mixture", "--prior-components", "3", "--posterior", "iaf"]
    model_flags += ["--flow-hidden-units", "8", "--flow-context", "3", "--hidden-units", "8"]
    fast = ["--dataset", "default", "--eval-samples", "2", "--batch-size", "200"]
    assert main(["train", *fast, "--epochs", "1", *model_flags, "--out", str(out)]) == 0
    shutil.rmtree(out / "model")  # killed after epoch 1
    assert main(["train", *fast, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    recorded = json.loads((out / "run.json").read_text())["model_config"]
    assert recorded["prior"] == "mixture" and recorded["prior_components"] == 3
    assert recorded["posterior"] == "iaf" and recorded["flow_hidden_units"] == [8]
    assert recorded["flow_context"] == 3
    assert os.path.isfile(out / "model" / "prior.weights.h5")
    assert tfvae.load_model(out).config.posterior == "iaf"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "--samples", "4"]) == 0
    assert np.isfinite(json.loads(capsys.readouterr().out)["log_likelihood"])
    assert main(["sample", str(out)]) == 0
    assert os.path.isfile(out / "pictures" / "samples.png")
    shutil.rmtree(out / "model")
    capsys.readouterr()
    resume = ["train", *fast, "--epochs", "3", "--out", str(out), "--resume"]
    assert main([*resume, "--prior", "vamp"]) == 2  # another prior is another run
    assert "model_config.prior: saved 'mixture', now 'vamp'" in one_line_error(
        capsys.readouterr().err
    )


# ------------------------------------------------------------------------------ the export
def _request_seed(seed: int):
    """The stateless seed pair an export makes of a request's int64 `seed`."""
    return tf.bitcast(tf.constant(seed, tf.int64), tf.int32)


@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_served_generate_draws_from_the_prior_in_use(prior, tmp_path):
    """z of `generate` is p(z)'s own draw at the export's seed, with p(z) at the weights the
    module holds now (moved after the module was built), in process and once exported."""
    model = _model(prior, "diagonal")
    module = make_serving_module(model, iwae_samples=4)
    if prior == "mixture":  # every component's mean at (6, 6)
        means = model.prior_network.means
        means.assign(np.full(means.shape, 6.0, np.float32))
    else:  # every pseudo-input 1: each q(z|u_k) is q(z|x = 1)
        u = model.prior_network.pseudo_input_weights
        u.assign(np.ones(u.shape, np.float32))
    z_seed, _ = tfp.random.split_seed(_request_seed(11))
    want = model.prior.sample(3000, seed=z_seed).numpy()
    served = tfvae.load_exported(tfvae.export(model, tmp_path / "e", iwae_samples=4))
    for got in (
        module.generate(np.int32(3000), np.int64(11))["z"].numpy(),
        served["generate"](num_samples=3000, seed=11)["z"],
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if prior == "mixture":
        scale = model.prior_network.scales().numpy()
        np.testing.assert_allclose(want.mean(0), 6.0, atol=4 * scale.max() / np.sqrt(3000))
    else:
        q = model.encoder(np.ones((1, D), np.float32))
        np.testing.assert_allclose(
            want.mean(0), q.mean()[0], atol=4 * q.stddev().numpy().max() / np.sqrt(3000)
        )


def test_a_prior_with_non_finite_weights_is_not_exported(tmp_path):
    model = _model("mixture")
    model.prior_network.means.assign(np.full([COMPONENTS, J], np.nan, np.float32))
    with pytest.raises(ValueError, match="model.prior_network has non-finite weights"):
        tfvae.export(model, tmp_path / "e")
    assert not os.path.exists(tmp_path / "e" / "1")


def _reference_bounds(model, x, k):
    """(ELBO, IWAE) per row in process, at the export's draws (seeds split from
    `likelihood_seed` 0): p(x|z), q and `model.prior`'s own log_prob; KL(q || mixture) has no
    closed form, so the ELBO's is log q(z1) - log p(z1)."""
    elbo_seed, iwae_seed = tfp.random.split_seed(tf.constant([0, 0], tf.int32))
    prior = model.prior
    elbos, iwaes, stderrs = [], [], []
    for row in x:
        q = model.encoder(row[None])
        z1 = q.sample(seed=elbo_seed)
        log_px = model.decoder(z1).log_prob(row[None])
        elbos.append(float((log_px - q.log_prob(z1) + prior.log_prob(z1))[0]))
        z = q.sample(k, seed=iwae_seed)  # [K, 1, J]
        log_q = q.log_prob(z)[:, 0]
        zs = z[:, 0]
        log_w = model.decoder(zs).log_prob(row[None]) + prior.log_prob(zs) - log_q
        iwaes.append(np_log_mean_exp(log_w.numpy()))
        w = np.exp(log_w.numpy() - iwaes[-1])  # w / mean(w)
        stderrs.append(np.std(w) / np.sqrt(k))  # of log mean(w), by the delta method
    return np.array(elbos), np.array(iwaes), np.array(stderrs)


def test_served_bounds_use_the_prior_in_use_vamp_iaf(tmp_path):
    """vamp + iaf: the served ELBO and IWAE are the model's at the export's draws, with p(z)
    at the pseudo-inputs set after the module was built; the IWAE at K = 500 agrees with
    `model.log_likelihood` at the same K (other draws) within a statistical tolerance."""
    model = _model("vamp", "iaf")
    x = _x(3)
    module = make_serving_module(model, iwae_samples=8)
    u = model.prior_network.pseudo_input_weights
    u.assign(np.random.default_rng(3).random(u.shape).astype(np.float32))
    got = {k: v.numpy() for k, v in module.log_likelihood(x).items()}
    elbo, iwae, _ = _reference_bounds(model, x, 8)
    np.testing.assert_allclose(got["elbo"], elbo, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["iwae"], iwae, rtol=1e-4, atol=1e-4)
    served = tfvae.load_exported(tfvae.export(model, tmp_path / "e", iwae_samples=500))
    many = served["log_likelihood"](x=x)["iwae"]
    _, reference, stderr = _reference_bounds(model, x, 500)
    np.testing.assert_allclose(many, reference, rtol=1e-4, atol=1e-4)
    # Two estimates on independent draws: 5 standard errors of their difference.
    tolerance = 5 * np.sqrt(2) * stderr
    assert np.all(np.abs(many - model.log_likelihood(x, importance_samples=500)) < tolerance)


def test_served_encode_of_iaf_is_q_itself(tmp_path):
    """iaf: `z_sample` is q's draw (through the flow) at the request's seed and has q's
    statistics, not its base Gaussian's; the base's parameters and the flowed mean are served
    under their own names, and no z_mean or z_stddev that q does not have."""
    model = _model("mixture", "iaf")
    flow = model.encoder.layers[-1]
    for w in flow.weights:  # a flow far from the identity, so that q is not its base
        w.assign(w * 4.0)
    x = np.repeat(_x(1), 20000, axis=0)
    served = tfvae.load_exported(tfvae.export(model, tmp_path / "e", iwae_samples=4))
    out = served["encode"](x=x, seed=5)
    assert sorted(out) == ["z_base_mean", "z_base_stddev", "z_flowed_mean", "z_sample"]
    q = model.encoder(x[:1])
    base = q.tensor_distribution.distribution
    np.testing.assert_allclose(out["z_base_mean"][0], base.mean()[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["z_base_stddev"][0], base.stddev()[0], rtol=1e-5)
    flowed = q.tensor_distribution.bijector.forward(base.mean())
    np.testing.assert_allclose(out["z_flowed_mean"][0], flowed[0], rtol=1e-4, atol=1e-5)
    same_draws = model.encoder(x).sample(seed=_request_seed(5)).numpy()  # the same batch
    np.testing.assert_allclose(out["z_sample"], same_draws, rtol=1e-4, atol=1e-5)
    reference = q.sample(20000, seed=[4, 4]).numpy()[:, 0]  # q's own draws, other noise
    base_draws = base.sample(20000, seed=[4, 4]).numpy()[:, 0]
    sd = reference.std(0)
    assert np.abs(base_draws.mean(0) - reference.mean(0)).max() > 10 * sd.max() / np.sqrt(20000)
    np.testing.assert_allclose(out["z_sample"].mean(0), reference.mean(0), atol=5 * sd.max() / 141)
    np.testing.assert_allclose(out["z_sample"].std(0), sd, rtol=0.05)
    corr = np.corrcoef(reference.T)[0, 1]
    assert abs(np.corrcoef(out["z_sample"].T)[0, 1] - corr) < 0.05
    default = served["serving_default"](x=x[:2])
    assert "z_mean" not in default and "z_stddev" not in default
    decoded = model.decoder(default["z_flowed_mean"]).mean().numpy()
    np.testing.assert_allclose(default["reconstruction"], decoded, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_vamp_iaf_export_serves_in_a_fresh_process_without_tfvae_or_tfp(tmp_path):
    """TF Serving's loader (tests/serving_probe.py) where tfvae and TFP are unimportable: the
    same outputs as in process, the VampPrior built from the exported weights."""
    model = _model("vamp", "iaf")
    path = tfvae.export(model, tmp_path / "e", iwae_samples=8)
    x = _x(3)
    requests, got = serve_in_fresh_process(tmp_path, path, x, J)
    assert "encode/z_base_mean" in got and "encode/z_mean" not in got
    loaded = tfvae.load_exported(path)
    for key, value in got.items():
        signature, name = key.split("/")
        feeds = {k.split("/")[1]: v for k, v in requests.items() if k.startswith(signature + "/")}
        np.testing.assert_allclose(value, loaded[signature](**feeds)[name], rtol=1e-5, atol=1e-5)
    z_seed, _ = tfp.random.split_seed(_request_seed(5))
    np.testing.assert_allclose(
        got["generate/z"], model.prior.sample(3, seed=z_seed), rtol=1e-5, atol=1e-5
    )


# ------------------------------------------------------------------------------ the README
@pytest.mark.slow
def test_readme_section_runs_and_means_what_it_says(tmp_path, monkeypatch):
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = readme.split("\n## Richer priors and posteriors\n", 1)[1].split("\n## ", 1)[0]
    assert len(section.strip().splitlines()) <= 20
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    code = code.replace("epochs=10", "epochs=1").replace("compile()", "compile(jit_compile=False)")
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    model, x_new = scope["model"], scope["x_new"]
    assert x_new.shape == (16, 64) and set(np.unique(x_new)) <= {0.0, 1.0}
    assert os.path.isfile(tmp_path / "runs" / "vamp" / "prior.weights.h5")
    pseudo = model.prior_network.pseudo_input_weights.numpy()
    assert pseudo.shape == (50, 64)
    np.testing.assert_array_equal(
        tfvae.load_model("runs/vamp").prior_network.pseudo_input_weights.numpy(), pseudo
    )
