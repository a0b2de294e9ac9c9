"""Shared by the tests: one tiny exported model per decoder (made once), `python` subprocesses."""

import atexit
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def run_python(args, env=None, timeout=240, cwd=REPO):
    """Runs `python ARGS` (in `cwd`, the repo root by default) with quiet TF logs and this
    checkout on PYTHONPATH; an `env` value of None unsets that variable. Returns the
    CompletedProcess."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    full_env.update(env or {})
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree_digest(root):
    """sha256 of every file under `root` by relative path: proves nothing was touched."""
    out = {}
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out
