"""A training run killed with SIGKILL mid-epoch resumes and ends as if never interrupted."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfvae import TrainConfig, VAEConfig, load_model, train_and_evaluate
from tfvae.data.datasets import load_default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, KILL_EPOCH = 4, 2  # killed during the 3rd epoch (index 2), after 2 complete ones

# The child trains the same tiny run; with a kill epoch it SIGKILLs itself at batch 3 of
# that epoch (a hook patched in here, not in the library), so the test is deterministic.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from tfvae import TrainConfig, VAEConfig, train_and_evaluate
    from tfvae.training import checkpointing
    from tfvae.data.datasets import load_default

    workdir, kill_epoch = sys.argv[1], int(sys.argv[2])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch == kill_epoch and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    checkpointing.TrainingCheckpoint.on_epoch_begin = on_epoch_begin
    checkpointing.TrainingCheckpoint.on_train_batch_end = on_train_batch_end
    config = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(16,), seed=3)
    train_config = TrainConfig(
        epochs={epochs}, eval_samples=2, kl_warmup_epochs=2, seed=5, jit_compile=False,
        steps_per_execution=1,  # batch callbacks every step, so the kill lands mid-epoch
    )
    train_and_evaluate(config, train_config, load_default(), workdir, verbose=0)
    """
).format(epochs=EPOCHS)


def _run_child(script, workdir, kill_epoch):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, script, str(workdir), str(kill_epoch)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_sigkilled_run_resumes_from_last_epoch_and_matches_uninterrupted(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    workdir = tmp_path / "run"

    killed = _run_child(script, workdir, KILL_EPOCH)
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = sorted(os.listdir(workdir / "checkpoints"))
    assert checkpoints == ["epoch-000001", "epoch-000002"]  # the last two complete epochs
    assert not (workdir / "model").exists()

    resumed = _run_child(script, workdir, -1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    history = json.load(open(workdir / "metrics.json"))["history"]
    assert len(history["loss"]) == EPOCHS  # every epoch, once: no lost or repeated work
    model = load_model(workdir / "model")

    # The same run, never interrupted, in this process.
    config = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(16,), seed=3)
    reference, ref_history, _ = train_and_evaluate(
        config,
        TrainConfig(epochs=EPOCHS, eval_samples=2, kl_warmup_epochs=2, seed=5, jit_compile=False),
        load_default(),
        verbose=0,
    )
    for key in ("loss", "reconstruction", "kl"):
        np.testing.assert_allclose(history[key], ref_history[key], rtol=1e-6, atol=1e-6)
    got = model.encoder.get_weights() + model.decoder.get_weights()
    want = reference.encoder.get_weights() + reference.decoder.get_weights()
    assert len(got) == len(want) == 10
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
