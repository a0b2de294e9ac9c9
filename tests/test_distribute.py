"""tf.distribute: strategies, global-batch loss scaling, sharding, chief-only writes.

The multi-device checks run in fresh subprocesses (tests/distribute_scripts/): logical CPU
devices and `MultiWorkerMirroredStrategy` must be configured before TensorFlow initialises,
which has long happened inside the pytest process.
"""

import glob
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO

from tfvae.cli.app import parser as _parser
from tfvae.engine import distribute

SCRIPTS = os.path.join(REPO, "tests", "distribute_scripts")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


# ----------------------------------------------------------------------------- in process
def test_make_strategy_names_and_errors():
    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match=r"strategy: expected one of .*got 'ring'"):
        distribute.make_strategy("ring")
    with pytest.raises(ValueError, match="devices: only used with strategy='mirrored'"):
        distribute.make_strategy("default", devices=["/cpu:0"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "expected"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "0..0"),
    ],
)
def test_bad_tf_config_is_named(text, message):
    with pytest.raises(ValueError, match=f"TF_CONFIG: .*{message}"):
        distribute._check_tf_config(text)


def test_single_device_helpers_are_the_plain_ones(tmp_path):
    strategy = tf.distribute.get_strategy()
    assert distribute.is_chief(strategy) and not distribute.is_multi_worker(strategy)
    values = np.array([1.0, 2.0, 6.0], np.float32)
    assert float(distribute.replica_average(values)) == pytest.approx(values.mean())
    seed = tf.constant([5, 7], tf.int32)
    assert distribute.replica_seed(seed).numpy().tolist() == [5, 7]
    with distribute.write_dir(str(tmp_path), strategy) as out:
        assert out == str(tmp_path)


def test_cli_takes_a_strategy():
    args = _parser().parse_args(["train", "--strategy", "mirrored"])
    assert args.strategy == "mirrored"
    assert _parser().parse_args(["train"]).strategy == "default"
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--strategy", "parameter-server"])


# ------------------------------------------------------------------ two replicas, one step
@pytest.mark.slow
def test_mirrored_step_equals_single_device_step_on_the_global_batch():
    """One `fit` step on 2 logical CPUs == the single-device gradient of the global-batch loss.

    The noise: replicas draw z with the step seed folded with their replica id (otherwise
    both would use the same noise), so the 2-replica step cannot be compared with a
    1-device step that draws all 8 z with one seed. The reference is instead computed on a
    single device with the SAME per-example noise: examples 0-3 (replica 0's half) draw
    with fold_in(seed, 0), examples 4-7 with fold_in(seed, 1), and the loss is the plain mean
    over all 8 of -log p(x|z) + beta*KL (beta=0.5 to check the KL term's scaling, analytic
    and Monte Carlo KL), or of the IWAE loss (K = 3; DReG's encoder gradient too). With
    SGD(lr=1) the weight change of the real `fit` step is the gradient. The same machinery
    reproduces the unchanged 1-device step, and the reference with identical noise on both
    halves must NOT match (replicas draw different noise).
    """
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(SCRIPTS, "one_step.py"),
            *("analytic", "monte_carlo", "iwae", "iwae_dreg"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for method, r in results.items():
        assert r["replicas"] == 2, method
        assert r["loss_2"] == pytest.approx(r["ref_2_loss"], rel=1e-5), method
        assert r["grad_diff_2"] < 1e-5 * max(1.0, r["grad_scale"]), (method, r)
        assert r["loss_1"] == pytest.approx(r["ref_1_loss"], rel=1e-5), method
        assert r["grad_diff_1"] < 1e-5 * max(1.0, r["grad_scale"]), (method, r)
        # Replicas use distinct noise: the same-noise reference is clearly different.
        assert abs(r["same_noise_loss"] - r["loss_2"]) > 1e-3, (method, r)
        assert r["same_noise_grad_diff"] > 1e-3, (method, r)


# ----------------------------------------------------------------------- two workers
def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _launch_workers(root, tag, workdir, extra_env, timeout=420):
    """Starts worker.py as workers 0 and 1 of a fresh loopback cluster; returns exit codes."""
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs, logs = [], []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
            log = open(root / f"{tag}_worker{index}.log", "w")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        os.path.join(SCRIPTS, "worker.py"),
                        str(workdir),
                        str(root / f"{tag}_result{index}.json"),
                        str(root / f"{tag}_seen{index}.txt"),
                    ],
                    env=_env(TF_CONFIG=json.dumps(tf_config), **extra_env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(root),
                )
            )
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        for log in logs:
            log.close()


def _logs(root, tag):
    return "\n----\n".join((root / f"{tag}_worker{i}.log").read_text()[-3000:] for i in range(2))


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """A 2-epoch run of a 2-worker TF_CONFIG cluster on loopback, with a failure in between.

    First launch: worker 1 dies (exit 3) as epoch 2 begins, so the chief fails too and the
    cluster stops with epoch 1 checkpointed. Second launch: the same command on both workers
    resumes from that checkpoint (the same `TrainingCheckpoint` as one process) and runs
    epoch 2 only.
    """
    root = tmp_path_factory.mktemp("multi_worker")
    workdir = root / "run"
    crashed = _launch_workers(root, "crash", workdir, {"TFVAE_TEST_CRASH": "1:1"})
    if crashed[1] != 3 or crashed[0] == 0:
        pytest.fail(
            f"expected worker 1 to die (3) and the chief to fail: {crashed}\n"
            + _logs(root, "crash")
        )
    after_crash = sorted(os.listdir(workdir)) + sorted(os.listdir(workdir / "checkpoints"))
    codes = _launch_workers(root, "resume", workdir, {})
    if codes != [0, 0]:
        pytest.fail(f"workers exited with {codes}:\n" + _logs(root, "resume"))
    results = [json.loads((root / f"resume_result{i}.json").read_text()) for i in range(2)]
    seen = {
        tag: [np.loadtxt(root / f"{tag}_seen{i}.txt", ndmin=2) for i in range(2)]
        for tag in ("crash", "resume")
    }
    return workdir, results, seen, after_crash


@pytest.mark.slow
def test_two_workers_train_one_model_on_disjoint_shards(two_workers):
    workdir, results, seen_by_run, _ = two_workers
    seen = seen_by_run["resume"]
    chief, other = results
    assert chief["chief"] and not other["chief"]
    assert chief["replicas"] == other["replicas"] == 2
    # Synchronous training: both workers end with the same weights and the same history.
    assert chief["weights_abs_sum"] == pytest.approx(other["weights_abs_sum"], rel=1e-6)
    assert chief["history"] == other["history"]
    assert all(np.isfinite(v) for v in chief["history"]["loss"])
    # Each train step got half the examples; in the epoch the two workers together saw every
    # training example exactly once (counts and sums add up), so their shards are disjoint.
    n, total = chief["train_size"], chief["train_sum"]
    counts = [s[:, 0].sum() for s in seen]
    sums = [s[:, 1].sum() for s in seen]
    assert len(seen[0]) == len(seen[1])  # the same number of steps, in lockstep
    assert 0 < counts[0] < n and 0 < counts[1] < n
    assert sum(counts) == n
    assert sum(sums) == pytest.approx(total, rel=1e-6)
    assert np.abs(seen[0][:, 1] - seen[1][:, 1]).max() > 0  # different examples per step


@pytest.mark.slow
def test_a_restarted_cluster_resumes_from_its_checkpoint(two_workers):
    workdir, results, seen, after_crash = two_workers
    # The failed launch trained epoch 1 only and left the chief's checkpoint, no model.
    assert after_crash == ["checkpoints", "run.json", "epoch-000001"]
    assert seen["crash"][0][:, 0].sum() + seen["crash"][1][:, 0].sum() == results[0]["train_size"]
    # The relaunch ran the remaining epoch only (one epoch of examples); the history it
    # returns covers the whole run, the restored epoch included.
    assert len(results[0]["history"]["loss"]) == 2
    assert len(seen["resume"][0]) == len(seen["crash"][0])
    # ... from the restored state: the optimizer's step counter (restored with the weights)
    # counts the steps of both launches.
    assert results[0]["iterations"] == len(seen["crash"][0]) + len(seen["resume"][0])


@pytest.mark.slow
def test_the_workers_see_the_global_batches_of_an_uninterrupted_run(two_workers):
    """Both launches together fed exactly `epoch_dataset`'s batches (worker.py: seed 0, batch
    128): each step, the two workers' shares add up to that step's global batch."""
    from tfvae.data.datasets import load_default
    from tfvae.data.input_pipeline import epoch_dataset

    _, _, seen, _ = two_workers
    expected, steps = epoch_dataset(load_default().x_train, 128, 0, 0, 2)
    expected = np.array([[len(b), float(b.numpy().sum())] for b in expected])
    for tag, epoch in (("crash", 0), ("resume", 1)):
        got = seen[tag][0][:steps] + seen[tag][1][:steps]
        np.testing.assert_allclose(got, expected[epoch * steps : (epoch + 1) * steps], rtol=1e-6)


@pytest.mark.slow
def test_only_the_chief_writes_and_its_model_loads(two_workers):
    import tfvae

    workdir, results, _, _ = two_workers
    assert sorted(p for p in os.listdir(workdir) if not p.startswith(".")) == sorted(
        ["checkpoints", "metrics.json", "model", "run.json"]
        + (["export"] if results[0]["exported"] else [])
    )
    assert sorted(os.listdir(workdir / "checkpoints")) == ["epoch-000001", "epoch-000002"]
    # Worker 1's temporary directories, those its crashed launch left included, are gone.
    for path in (workdir, workdir / "checkpoints", workdir / "export"):
        key = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]
        assert not glob.glob(os.path.join(tempfile.gettempdir(), f"tfvae-worker-*-{key}-*"))
    model = tfvae.load_model(workdir / "model")
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["test"]["elbo"] == pytest.approx(results[0]["metrics"]["elbo"])
    # The loaded weights are the trained ones.
    weights = float(sum(np.abs(v.numpy()).sum() for v in model.trainable_variables))
    assert weights == pytest.approx(results[0]["weights_abs_sum"], rel=1e-6)
    assert results[1]["exported"] is None or not os.path.exists(results[1]["exported"])


@pytest.mark.slow
def test_the_chief_export_loads_and_encodes_as_the_trained_model(two_workers, tmp_path):
    """In a fresh plain-TensorFlow process the chief's export has every signature, and its
    serving_default gives the E[q(z|x)] of the model the run saved."""
    import tfvae
    from tfvae.data.datasets import load_default
    from tfvae.serving.export import SIGNATURES

    workdir, results, _, _ = two_workers
    assert results[0]["exported"] and os.path.isdir(results[0]["exported"])
    x = load_default().x_test[:5]
    np.save(tmp_path / "x.npy", x)
    code = (
        "import json, sys, numpy as np, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]);"
        " out = m.signatures['serving_default'](x=tf.constant(np.load(sys.argv[2])));"
        " print(json.dumps([sorted(m.signatures), out['z_mean'].numpy().tolist()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, results[0]["exported"], str(tmp_path / "x.npy")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    signatures, z_mean = json.loads(out.stdout.strip().splitlines()[-1])
    assert signatures == sorted(SIGNATURES)
    model = tfvae.load_model(workdir / "model")
    np.testing.assert_allclose(z_mean, model.encode(x).mean().numpy(), rtol=1e-5, atol=1e-6)
