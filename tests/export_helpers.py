"""Shared by the export and serving tests: one tiny exported model per decoder, made and
loaded once per process."""

import atexit
import functools
import os
import shutil
import tempfile

IWAE_SAMPLES = 32
INPUT_DIM, LATENT_DIM = 4, 2  # the shapes of the README serving examples


@functools.lru_cache(maxsize=None)
def exported(decoder: str = "bernoulli", max_request_elements=None):
    """(model, version_dir) of a tiny VAE exported to a temp base dir (removed at exit)."""
    from tfvae import VAE, VAEConfig, export

    config = VAEConfig(
        input_dim=INPUT_DIM, latent_dim=LATENT_DIM, hidden_units=(8,), decoder=decoder, seed=3
    )
    model = VAE(config)
    base = tempfile.mkdtemp(prefix="tfvae-export-test-")
    atexit.register(shutil.rmtree, base, True)
    path = export(
        model,
        os.path.join(base, "vae"),
        iwae_samples=IWAE_SAMPLES,
        max_request_elements=max_request_elements,
    )
    return model, path


@functools.lru_cache(maxsize=None)
def loaded_export(decoder: str = "bernoulli"):
    """`tfvae.load_exported` of `exported(decoder)`: the same SavedModel is loaded once."""
    from tfvae import load_exported

    return load_exported(exported(decoder)[1])


def serve_in_fresh_process(tmp_path, path: str, x, latent_dim: int) -> tuple:
    """Every signature of the export at `path` served by TF Serving's loader in a process
    where tfvae and TFP are unimportable (tests/serving_probe.py), on `x` and fixed seeds:
    (the requests, {"signature/output": array}), after checking it ran, imported neither
    and warmed up finite."""
    import json

    import numpy as np
    from helpers import REPO, run_python

    requests = {
        "serving_default/x": x,
        "encode/x": x,
        "encode/seed": np.array(5, np.int64),
        "decode/z": np.random.default_rng(6).normal(size=(2, latent_dim)).astype(np.float32),
        "generate/num_samples": np.array(3, np.int32),
        "generate/seed": np.array(5, np.int64),
        "log_likelihood/x": x,
    }
    np.savez(tmp_path / "requests.npz", **requests)
    script = os.path.join(REPO, "tests", "serving_probe.py")
    proc = run_python([script, str(tmp_path / "out"), path, str(tmp_path / "requests.npz")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "0" / "report.json").read_text())
    assert report["modules"] == []
    assert all(w["finite"] for w in report["warmup"])
    return requests, dict(np.load(tmp_path / "out" / "0" / "outputs.npz"))
