"""SavedModel export: signatures match independent references, in-process and in a fresh
process without tfvae/TFP (TF Serving's loader), atomic versions, refusals, saved_model_cli."""

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from export_helpers import INPUT_DIM, IWAE_SAMPLES, LATENT_DIM, exported, loaded_export
from helpers import REPO, np_log_mean_exp, run_python, tree_digest

import tfvae
from tfvae import export as export_fn
from tfvae import load_exported
from tfvae.serving.export import _clean_stale, _move_into_place
from tfvae.serving.signatures import SIGNATURES

SEED = 7
NUM_SAMPLES = 5


def _x():
    return (np.random.default_rng(1).random((4, INPUT_DIM)) > 0.5).astype(np.float32)


def _z():
    return np.random.default_rng(2).normal(size=(3, LATENT_DIM)).astype(np.float32)


def _requests():
    """One request per signature, named `<signature>/<input>`."""
    x = _x()
    return {
        "serving_default/x": x,
        "encode/x": x,
        "encode/seed": np.array([SEED], np.int64),
        "decode/z": _z(),
        "generate/num_samples": np.array(NUM_SAMPLES, np.int32),
        "generate/seed": np.array(SEED, np.int64),
        "log_likelihood/x": x,
    }


def _decoder_params(model, z):
    """Decoder parameters computed through the tfvae model (TFP distributions)."""
    px = model.decode(z)
    if model.config.decoder == "bernoulli":
        logits = px.distribution.logits_parameter().numpy()
        probs = 1.0 / (1.0 + np.exp(-logits))
        return {"mean": probs, "logits": logits, "probs": probs}
    mean = px.mean().numpy()
    stddev = np.broadcast_to(px.stddev().numpy(), mean.shape)
    return {"mean": mean, "stddev": stddev, "log_var": 2 * np.log(stddev)}


def _log_px_z(model, x, params):
    if model.config.decoder == "bernoulli":
        p = params["probs"].astype(np.float64)
        return np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), -1)
    lv = params["log_var"].astype(np.float64)
    return -0.5 * np.sum(np.log(2 * np.pi) + lv + (x - params["mean"]) ** 2 / np.exp(lv), -1)


def _row_draws(model, x_row, n=None, stream=0):
    """The draws z ~ q(z|x_row) of the export's `log_likelihood` (seeds split from
    `likelihood_seed` 0): stream 0 the ELBO's, 1 the IWAE's; `[J]` or `[n, J]`."""
    seed = tfp.random.split_seed(tf.constant([0, 0], tf.int32))[stream]
    z = model.encode(x_row[None]).sample(*([n] if n else []), seed=seed).numpy()
    return z[:, 0] if n else z[0]


def _np_log_normal(z, mu, sd):
    return -0.5 * np.sum(np.log(2 * np.pi) + 2 * np.log(sd) + ((z - mu) / sd) ** 2, -1)


def _np_log_weights(model, x, zs, mu, sd):
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) `[K, batch]` at draws `zs` `[K, batch, J]`."""
    return np.stack(
        [
            _log_px_z(model, x, _decoder_params(model, z))
            + _np_log_normal(z, 0.0, 1.0)
            - _np_log_normal(z, mu, sd)
            for z in zs
        ]
    )


def _references(model):
    """What every signature must return: draws from the model's own distributions at the
    export's seeds, every density and bound from numpy formulas."""
    x, z = _x(), _z()
    q = model.encode(x)
    mu, sd = q.mean().numpy(), q.stddev().numpy()
    ref = {
        "serving_default/reconstruction": _decoder_params(model, mu)["mean"],
        "serving_default/z_mean": mu,
        "serving_default/z_stddev": sd,
        "encode/z_mean": mu,
        "encode/z_stddev": sd,
        "encode/z_sample": q.sample(seed=tf.constant([SEED, 0], tf.int32)).numpy(),
    }
    if model.config.decoder == "bernoulli":
        ref["serving_default/probs"] = ref["serving_default/reconstruction"]
    for name, value in _decoder_params(model, z).items():
        ref[f"decode/{name}"] = value
    z_seed, x_seed = tfp.random.split_seed(tf.constant([SEED, 0], tf.int32))
    gz = model.prior.sample(NUM_SAMPLES, seed=z_seed).numpy()
    ref["generate/z"], ref["generate/mean"] = gz, _decoder_params(model, gz)["mean"]
    ref["generate/sample"] = model.decode(gz).sample(seed=x_seed).numpy().astype(np.float32)
    # ELBO: one draw and the analytic KL; IWAE: K draws; every row gets the same seeds.
    z1 = np.stack([_row_draws(model, row) for row in x])
    kl = 0.5 * np.sum(mu**2 + sd**2 - 1 - 2 * np.log(sd), -1)
    ref["log_likelihood/elbo"] = _log_px_z(model, x, _decoder_params(model, z1)) - kl
    zs = np.stack([_row_draws(model, row, IWAE_SAMPLES, 1) for row in x], 1)  # [K, batch, J]
    log_w = _np_log_weights(model, x, zs, mu, sd)
    ref["log_likelihood/iwae"] = np_log_mean_exp(log_w)
    return ref


def _in_process(decoder):
    loaded = loaded_export(decoder)
    by_sig = {}
    for key, value in _requests().items():
        sig, name = key.split("/")
        by_sig.setdefault(sig, {})[name] = value
    return {
        f"{sig}/{k}": v for sig, feeds in by_sig.items() for k, v in loaded[sig](**feeds).items()
    }


def _assert_matches(got, ref, what):
    assert set(got) == set(ref), what
    for key in ref:
        assert got[key].shape == np.shape(ref[key]), (what, key)
        if key == "generate/sample" and "bernoulli" in what:
            np.testing.assert_array_equal(got[key], ref[key], err_msg=f"{what} {key}")
        else:
            np.testing.assert_allclose(got[key], ref[key], rtol=2e-4, atol=2e-4, err_msg=key)


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_signatures_match_references_in_process(decoder):
    model, _ = exported(decoder)
    _assert_matches(_in_process(decoder), _references(model), f"{decoder} in process")


@pytest.mark.slow
def test_fresh_process_without_tfvae_or_tfp_matches(tmp_path):
    """TF Serving's loader in a process where tfvae and TFP are unimportable."""
    args = [os.path.join(REPO, "tests", "serving_probe.py"), str(tmp_path)]
    in_process = {}
    for i, decoder in enumerate(["bernoulli", "gaussian"]):
        _, path = exported(decoder)
        np.savez(tmp_path / f"requests{i}.npz", **_requests())
        args += [path, str(tmp_path / f"requests{i}.npz")]
        in_process[decoder] = _in_process(decoder)
    proc = run_python(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i, decoder in enumerate(["bernoulli", "gaussian"]):
        report = json.loads((tmp_path / str(i) / "report.json").read_text())
        assert report["modules"] == [], "tfvae/TFP got imported in the serving process"
        sigs = {k: v for k, v in report["signatures"].items() if k != "__saved_model_init_op"}
        assert set(sigs) == set(SIGNATURES)
        assert {s["method"] for s in sigs.values()} == {"tensorflow/serving/predict"}
        got = dict(np.load(tmp_path / str(i) / "outputs.npz"))
        ref = in_process[decoder]
        assert set(got) == set(ref)
        for key in ref:
            if "sample" in key or key.startswith("generate/z"):
                np.testing.assert_array_equal(got[key], ref[key], err_msg=key)  # same seed
            else:
                np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-6)
        # The warm-up file replays: one request per signature, all finite.
        assert sorted(w["signature"] for w in report["warmup"]) == sorted(SIGNATURES)
        assert all(w["finite"] for w in report["warmup"])
        # Bad requests fail inside the graph with the Python API's messages.
        bad = report["bad"]
        expected = f"x must have shape [batch, {INPUT_DIM}] (data), got shape "
        for label in ("feature_size", "rank3", "rank1"):
            assert bad[label] is not None and expected in bad[label], (label, bad[label])
        assert f"(4, {INPUT_DIM - 1}) and dtype float32" in bad["feature_size"]
        assert f"got shape ({INPUT_DIM},) and dtype float32" in bad["rank1"]
        assert "x contains NaN or inf (first at index (0, 0), value nan)" in bad["nan"]
        assert bad["dtype"] is not None and "float" in bad["dtype"]


def test_same_seed_same_samples_different_seed_differs():
    loaded = loaded_export("bernoulli")
    a = loaded["generate"](num_samples=[64], seed=[1])
    b = loaded["generate"](num_samples=64, seed=1)
    c = loaded["generate"](num_samples=64, seed=2)
    np.testing.assert_array_equal(a["sample"], b["sample"])
    assert not np.array_equal(a["z"], c["z"])
    # Instances-format requests repeat a scalar per row; unequal values are refused.
    x = _x()
    e1 = loaded["encode"](x=x, seed=[5] * len(x))
    e2 = loaded["encode"](x=x, seed=5)
    np.testing.assert_array_equal(e1["z_sample"], e2["z_sample"])
    with pytest.raises(ValueError, match="seed must be one value"):
        loaded["encode"](x=x, seed=[1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"num_samples' must be an integer in \[1, 2147483647\]"):
        loaded["generate"](num_samples=0, seed=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be an integer >= 1"):
        loaded.signatures["generate"](num_samples=tf.constant(0), seed=tf.constant(1, tf.int64))


def test_iwae_bound_is_not_below_the_elbo_at_its_draws():
    """Jensen, draw by draw: log mean_k w_k >= mean_k log w_k at the served K draws (one
    served `elbo` is a single draw at a fixed seed shared by all rows: no average to take)."""
    model = exported("bernoulli")[0]
    x = (np.random.default_rng(3).random((16, INPUT_DIM)) > 0.5).astype(np.float32)
    out = loaded_export("bernoulli")["log_likelihood"](x=x)
    q = model.encode(x)
    mu, sd = q.mean().numpy(), q.stddev().numpy()
    zs = np.stack([_row_draws(model, row, IWAE_SAMPLES, 1) for row in x], 1)  # [K, batch, J]
    log_w = _np_log_weights(model, x, zs, mu, sd)
    assert np.all(out["iwae"] >= np.mean(log_w, 0) - 1e-4)
    assert np.all(out["iwae"] < 0)


def test_load_exported_names_expected_shape_on_bad_input(tmp_path):
    _, path = exported("bernoulli")
    loaded = load_exported(os.path.dirname(path))  # a base dir loads its latest version
    with pytest.raises(ValueError, match=rf"\(None, {INPUT_DIM}\).*got \(2, 5\)"):
        loaded["serving_default"](x=np.zeros((2, 5)))
    with pytest.raises(ValueError, match=rf"\(None, {INPUT_DIM}\).*got \(16,\)"):
        loaded["serving_default"](x=np.zeros(16))
    with pytest.raises(TypeError, match=rf"must be float32 of shape \(None, {INPUT_DIM}\)"):
        loaded["serving_default"](x=np.array([["a"] * INPUT_DIM]))
    with pytest.raises(TypeError, match="takes inputs"):
        loaded["encode"](x=_x())
    with pytest.raises(KeyError, match="no signature"):
        loaded["nope"]
    with pytest.raises(FileNotFoundError, match="neither saved_model.pb"):
        load_exported(tmp_path)


def test_metadata_records_iwae_samples_and_config():
    model, path = exported("bernoulli")
    meta = json.loads(open(os.path.join(path, "assets.extra", "tfvae_export.json")).read())
    assert meta["iwae_samples"] == IWAE_SAMPLES
    assert tfvae.VAEConfig.from_dict(meta["config"]) == model.config
    assert meta["signatures"] == list(SIGNATURES)


@pytest.mark.slow
def test_saved_model_cli_show_lists_documented_signatures():
    _, path = exported("bernoulli")
    proc = subprocess.run(
        ["saved_model_cli", "show", "--dir", path, "--all"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    blocks = {}
    for part in text.split("signature_def['")[1:]:
        blocks[part.split("']")[0]] = part
    assert set(SIGNATURES) <= set(blocks)
    documented = {
        "serving_default": (
            [("x", "DT_FLOAT", f"(-1, {INPUT_DIM})")],
            [
                ("reconstruction", "DT_FLOAT", f"(-1, {INPUT_DIM})"),
                ("probs", "DT_FLOAT", f"(-1, {INPUT_DIM})"),
                ("z_mean", "DT_FLOAT", f"(-1, {LATENT_DIM})"),
                ("z_stddev", "DT_FLOAT", f"(-1, {LATENT_DIM})"),
            ],
        ),
        "encode": (
            [("x", "DT_FLOAT", f"(-1, {INPUT_DIM})"), ("seed", "DT_INT64", "unknown_rank")],
            [(n, "DT_FLOAT", f"(-1, {LATENT_DIM})") for n in ("z_mean", "z_stddev", "z_sample")],
        ),
        "decode": (
            [("z", "DT_FLOAT", f"(-1, {LATENT_DIM})")],
            [(n, "DT_FLOAT", f"(-1, {INPUT_DIM})") for n in ("mean", "logits", "probs")],
        ),
        "generate": (
            [("num_samples", "DT_INT32", "unknown_rank"), ("seed", "DT_INT64", "unknown_rank")],
            [
                ("z", "DT_FLOAT", f"(-1, {LATENT_DIM})"),
                ("mean", "DT_FLOAT", f"(-1, {INPUT_DIM})"),
                ("sample", "DT_FLOAT", f"(-1, {INPUT_DIM})"),
            ],
        ),
        "log_likelihood": (
            [("x", "DT_FLOAT", f"(-1, {INPUT_DIM})")],
            [("elbo", "DT_FLOAT", "(-1)"), ("iwae", "DT_FLOAT", "(-1)")],
        ),
    }
    for sig, (inputs, outputs) in documented.items():
        block = blocks[sig]
        assert "Method name is: tensorflow/serving/predict" in block
        ins, outs = block.split("The given SavedModel SignatureDef contains the following output")
        for section, entries in ((ins, inputs), (outs, outputs)):
            for name, dtype, shape in entries:
                entry = section.split(f"['{name}'] tensor_info:")[1].split("name:")[0]
                assert f"dtype: {dtype}" in entry, (sig, name, entry)
                assert f"shape: {shape}" in entry, (sig, name, entry)
        n_out = outs.count("tensor_info:")
        assert n_out == len(outputs), (sig, outs)


@pytest.mark.slow
def test_saved_model_cli_run_on_npy_input(tmp_path):
    model, path = exported("bernoulli")
    x = _x()
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run(
        [
            "saved_model_cli",
            "run",
            "--dir",
            path,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"x={tmp_path / 'x.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    recon = np.load(tmp_path / "out" / "reconstruction.npy")
    expected = model.decode(model.encode(x).mean()).mean().numpy()
    np.testing.assert_allclose(recon, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ versions, refusals
@pytest.mark.slow
def test_killed_export_leaves_no_loadable_version(tmp_path):
    """SIGKILL during an export, at a known point (the final rename, which the wrapper
    replaces by a pause), leaves v1 as it was."""
    import shutil

    _, path = exported("bernoulli")
    base = tmp_path / "vae"
    shutil.copytree(path, base / "1")
    before = tree_digest(base / "1")
    script = (
        "import time, tfvae\n"
        "from tfvae.base import atomic\n"
        "def hang(tmp, target, overwrite=False):\n"
        "    print('TFVAE_EXPORT_HANGING', tmp, flush=True)\n"
        "    time.sleep(3600)\n"
        "atomic.publish_dir = hang\n"
        "m = tfvae.VAE(tfvae.VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,)))\n"
        f"tfvae.export(m, {str(base)!r}, warmup=False)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = ""
        for line in proc.stdout:
            if line.startswith("TFVAE_EXPORT_HANGING"):
                break
        assert line.startswith("TFVAE_EXPORT_HANGING"), "export never reached the hook"
        tmp_dir = line.split(" ", 1)[1].strip()
        assert os.path.exists(os.path.join(tmp_dir, "saved_model.pb"))  # mid-export
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    names = os.listdir(base)
    # TF Serving loads only all-digit directory names: still just version 1, unchanged.
    assert [n for n in names if n.isdigit()] == ["1"]
    assert tree_digest(base / "1") == before
    assert os.path.basename(tmp_dir) in names and not os.path.basename(tmp_dir).isdigit()
    _clean_stale(str(base))  # what the next export does first
    assert os.listdir(base) == ["1"]


def test_auto_version_never_touches_existing(tmp_path):
    import shutil

    model, path = exported("bernoulli")
    base = tmp_path / "vae"
    shutil.copytree(path, base / "3")
    before = tree_digest(base / "3")
    with pytest.raises(FileExistsError, match="version 3 already exists.*overwrite=True"):
        export_fn(model, base, version=3)
    assert tree_digest(base / "3") == before
    assert sorted(os.listdir(base)) == ["3"]


def test_move_into_place_overwrite_replaces_whole_version(tmp_path):
    base = tmp_path / "vae"
    (base / "1").mkdir(parents=True)
    (base / "1" / "old.txt").write_text("old")
    tmp = base / ".tmp-1-123"
    tmp.mkdir()
    (tmp / "new.txt").write_text("new")
    _move_into_place(str(tmp), str(base / "1"), 1, overwrite=True)
    assert os.listdir(base) == ["1"]
    assert os.listdir(base / "1") == ["new.txt"]


def test_overwrite_replaces_version_and_clears_debris_of_killed_exports(tmp_path):
    model, _ = exported("bernoulli")
    base = tmp_path / "vae"
    export_fn(model, base, version=1, warmup=False)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (base / f".tmp-1-{int(dead.stdout)}").mkdir()  # a killed export's build directory
    (base / ".1.tmp-abc").mkdir()  # the old version a killed overwrite had moved aside
    (base / "1" / "stale.txt").write_text("old")
    export_fn(model, base, version=1, overwrite=True, warmup=False)
    assert os.listdir(base) == ["1"]
    assert "stale.txt" not in os.listdir(base / "1")
    meta = json.loads((base / "1" / "assets.extra" / "tfvae_export.json").read_text())
    assert meta["iwae_samples"] == 100 and meta["signatures"] == list(SIGNATURES)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"version": 0}, ValueError, "version must be an integer >= 1, got 0"),
        ({"version": "2"}, ValueError, "version must be an integer >= 1, got '2'"),
        ({"iwae_samples": 0}, ValueError, "iwae_samples must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_refused(tmp_path, kwargs, error, match):
    model, _ = exported("bernoulli")
    with pytest.raises(error, match=match):
        export_fn(model, tmp_path / "vae", **kwargs)
    assert not (tmp_path / "vae").exists() or os.listdir(tmp_path / "vae") == []


def test_unwritable_path_and_non_models_refused(tmp_path):
    model, _ = exported("bernoulli")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        export_fn(model, blocker)
    with pytest.raises(PermissionError, match="cannot create base_dir"):
        export_fn(model, blocker / "vae")
    with pytest.raises(TypeError, match="must be a tfvae.VAE"):
        export_fn(model.encoder, tmp_path / "vae")


def test_diverged_model_refused(tmp_path):
    model = tfvae.VAE(tfvae.VAEConfig(input_dim=4, latent_dim=2, hidden_units=(3,)))
    model.decoder.weights[0].assign(tf.fill(model.decoder.weights[0].shape, math.nan))
    with pytest.raises(ValueError, match="non-finite weights"):
        export_fn(model, tmp_path / "vae")
    assert not (tmp_path / "vae").exists()


def test_unbuilt_networks_refused(tmp_path):
    config = tfvae.VAEConfig(input_dim=4, latent_dim=2, hidden_units=(3,))
    unbuilt = tfvae.VAE(config)
    unbuilt.encoder = tf_keras.Sequential([tf_keras.layers.Dense(4)])  # a custom, unbuilt one
    with pytest.raises(ValueError, match="model.encoder is not built"):
        export_fn(unbuilt, tmp_path / "vae")
    assert not (tmp_path / "vae").exists()


def test_concurrent_version_is_not_clobbered(tmp_path):
    base = tmp_path / "vae"
    (base / "1").mkdir(parents=True)
    (base / "1" / "theirs.txt").write_text("theirs")
    tmp = base / ".tmp-1-123"
    tmp.mkdir()
    (tmp / "ours.txt").write_text("ours")
    # Another exporter created version 1 after export's existence check, before the rename.
    with pytest.raises(FileExistsError, match="appeared"):
        _move_into_place(str(tmp), str(base / "1"), 1, overwrite=False)
    assert os.listdir(base / "1") == ["theirs.txt"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"decoder": "isotropic"},
        {"decoder": "fixed_variance"},
        {"architecture": "conv", "image_shape": (4, 4, 1), "conv_filters": (2,)},
    ],
)
def test_other_decoders_and_conv_give_the_model_parameters(kwargs):
    """The export's tensors equal the tfvae distributions' (traced, not saved: fast)."""
    from tfvae.serving.signatures import make_serving_module

    config = tfvae.VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,), **kwargs)
    model = tfvae.VAE(config)
    module = make_serving_module(model, iwae_samples=4)
    z = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    got = {k: v.numpy() for k, v in module.decode(z).items()}
    ref = _decoder_params(model, z)
    assert set(got) == set(ref)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    x = np.random.default_rng(1).random((2, 16)).astype(np.float32)
    out = module.serving_default(x)
    np.testing.assert_allclose(
        out["reconstruction"].numpy(),
        model.decode(model.encode(x).mean()).mean().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_concurrent_exports_claim_distinct_versions(tmp_path, monkeypatch):
    """A version that appears while an export with an automatic number is being written (a
    concurrent `tfvae export`) is left whole, and this export takes the next number; an
    explicitly asked-for version is refused instead."""
    from tfvae.base import atomic

    model, _ = exported("bernoulli")
    base = tmp_path / "vae"
    publish = atomic.publish_dir
    raced = []

    def racing_publish(tmp, target, overwrite=False):
        if not raced:  # another exporter publishes this very number first
            os.makedirs(target)
            with open(os.path.join(target, "theirs.txt"), "w") as f:
                f.write("theirs")
            raced.append(target)
        return publish(tmp, target, overwrite=overwrite)

    monkeypatch.setattr(atomic, "publish_dir", racing_publish)
    path = export_fn(model, base)
    assert os.path.basename(path) == "2" and raced == [str(base / "1")]
    assert os.listdir(base / "1") == ["theirs.txt"]
    assert load_exported(path)["serving_default"](x=np.zeros((1, INPUT_DIM), np.float32))
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temp left behind
    raced.clear()
    with pytest.raises(FileExistsError, match="appeared"):
        export_fn(model, base, version=5)
    assert os.listdir(base / "5") == ["theirs.txt"] and sorted(os.listdir(base)) == ["1", "2", "5"]
