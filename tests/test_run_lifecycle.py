"""The life of a run directory (`tfvae.training.rundir`): one trainer at a time, its lock
taken once per run, --overwrite that replaces a run only once the new one is complete, a run
killed at any point finished by `tfvae train --out RUN --resume` (or `train_and_evaluate`
again), history.csv rebuilt from the checkpoints, and a corrupt latest checkpoint skipped.

The kills are real SIGKILLs of subprocesses at exact points (lifecycle_child.py).
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from helpers import REPO, assert_same_weights, one_line_error, run_python, tree_digest

from tfvae import TrainConfig, VAEConfig, load_model, train_and_evaluate
from tfvae.cli import main
from tfvae.training import rundir
from tfvae.training.checkpointing import CheckpointError
from tfvae.training.train import make_callbacks

CHILD = os.path.join(REPO, "tests", "lifecycle_child.py")
# A tiny CLI run: seconds in process; batch callbacks every step (for the mid-epoch kill).
CLI_TINY = [
    "--dataset", "default", "--epochs", "2", "--hidden-units", "8", "--batch-size", "200",
    "--eval-samples", "2", "--eval-every-epochs", "0", "--no-jit-compile",
    "--steps-per-execution", "1", "--quiet",
]  # fmt: skip
TINY = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(8,), seed=3)
FAST = TrainConfig(epochs=2, eval_samples=2, jit_compile=False, seed=5)
# The holder of a lock in a second process: tfvae.training.runlock alone, loaded in a blink.
HOLDER = (
    "import importlib.util, sys; spec = importlib.util.spec_from_file_location('runlock', "
    f"{os.path.join(REPO, 'tfvae', 'training', 'runlock.py')!r}); "
    "runlock = importlib.util.module_from_spec("
    "spec); spec.loader.exec_module(runlock); held = runlock.hold(sys.argv[1]); "
    "held.__enter__(); print('held', flush=True); sys.stdin.read()"
)


@pytest.fixture
def cli_run(tmp_path, capsys):
    """A finished 2-epoch `tfvae train` run at tmp_path/run (trained in this process)."""
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *CLI_TINY]) == 0
    capsys.readouterr()
    return run


def _api_run(workdir, digits, train_config=FAST):
    """`train_and_evaluate` into `workdir` with the CLI's logging callbacks."""
    return train_and_evaluate(
        TINY, train_config, digits, str(workdir), verbose=0, callbacks=make_callbacks(workdir)
    )


# --------------------------------------------------------------------------- the lock
def _hold_in_another_process(workdir):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_locked_run_directory_is_refused_naming_the_holder_until_it_dies(
    tmp_path, digits, capsys
):
    run = tmp_path / "run"
    holder = _hold_in_another_process(run)
    try:
        with pytest.raises(rundir.RunLockedError, match=f"pid {holder.pid} on host"):
            train_and_evaluate(TINY, FAST, digits, str(run), verbose=0)
        for extra in ([], ["--resume"], ["--overwrite"]):
            assert main(["train", "--out", str(run), *CLI_TINY, *extra]) == 2
            line = one_line_error(capsys.readouterr().err)
            assert f"pid {holder.pid}" in line and "since 20" in line, line
            assert os.path.join(str(run), ".lock") in line and "is in use" in line
        assert os.listdir(run) == [".lock"]  # nothing else written
    finally:
        holder.send_signal(signal.SIGKILL)  # the kernel drops a dead holder's flock
        holder.wait(timeout=30)
    path = run / ".lock"
    with rundir.claim(str(run)):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not os.path.exists(path)  # a clean release leaves no file


def test_the_lock_is_taken_once_per_run(tmp_path, digits, monkeypatch):
    """The CLI's claim holds the lock; train_and_evaluate inside it takes none (a library
    caller's train_and_evaluate takes its own); taking it twice is refused."""
    from tfvae.training import runlock

    taken = []
    hold = runlock.hold

    def counting(workdir):
        taken.append(os.path.realpath(workdir))
        return hold(workdir)

    monkeypatch.setattr(runlock, "hold", counting)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *CLI_TINY, "--epochs", "1"]) == 0
    assert taken == [str(run)]
    _api_run(tmp_path / "api", digits, FAST.replace(epochs=1))
    assert taken == [str(run), str(tmp_path / "api")]
    with hold(tmp_path / "x"):
        with pytest.raises(RuntimeError, match="already held by this process"):
            with hold(tmp_path / "x"):
                pass


def test_a_lock_this_process_holds_covers_train_and_evaluate(tmp_path, digits):
    """A caller's `runlock.hold(RUN)` around `train_and_evaluate(RUN)`: no second lock, no
    error; and a lock held by another process is a RuntimeError too, as it used to be."""
    from tfvae.training import runlock

    assert issubclass(rundir.RunLockedError, rundir.RunDirError)
    assert issubclass(rundir.RunLockedError, RuntimeError)
    run = tmp_path / "run"
    with runlock.hold(run):
        with rundir.hold(run):
            assert runlock.is_held(run)
        train_and_evaluate(TINY, FAST.replace(epochs=1), digits, str(run), verbose=0)
        assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()  # still held
    assert not runlock.is_held(run) and rundir.is_finished(run)


@pytest.mark.slow
def test_a_second_trainer_on_the_same_out_exits_2_and_the_first_finishes(tmp_path):
    """Two real `tfvae train` processes on one --out: the first is paused after epoch 1
    while the second starts; the second exits 2 naming the first; the first ends with one
    clean history.csv."""
    run = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    first = subprocess.Popen(
        [sys.executable, CHILD, f"pause:{tmp_path}", "train", "--out", str(run), *CLI_TINY],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "ready").exists():
            assert first.poll() is None and time.monotonic() < deadline, "first never paused"
            time.sleep(0.2)
        second = run_python([CHILD, "none", "train", "--out", str(run), *CLI_TINY], timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        line = one_line_error(second.stderr)
        assert f"is in use by pid {first.pid} on host" in line and ".lock" in line
        (tmp_path / "go").touch()
        assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert len(json.loads((run / "metrics.json").read_text())["history"]["loss"]) == 2


# ------------------------------------------------- states, publish and roll-back
def _finished_run(path):
    """A run directory as a finished run leaves it (no TensorFlow: the files only)."""
    (path / "model").mkdir(parents=True)
    (path / "model" / "manifest.json").write_text("{}")
    (path / "run.json").write_text("{}")
    (path / "metrics.json").write_text('{"test": {"elbo": -1.0}}')
    return path


def test_a_run_directory_is_new_interrupted_or_finished(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert not rundir.is_interrupted(run) and not rundir.is_finished(run)
    rundir.check_new(str(run), overwrite=False)  # empty: new
    (run / "run.json").write_text("{}")
    assert rundir.is_interrupted(run) and not rundir.is_finished(run)
    with pytest.raises(rundir.RunDirError, match="already exists.*or --resume to finish"):
        rundir.check_new(str(run), overwrite=False)
    _finished_run(tmp_path / "done")
    assert rundir.is_finished(tmp_path / "done") and not rundir.is_interrupted(tmp_path / "done")
    assert rundir.finished_metrics(str(tmp_path / "done"))["test"] == {"elbo": -1.0}
    for name in (".metrics.json.tmp-1", ".lock", "notes.txt", ".notes.txt.tmp-2"):
        (run / name).write_text("")
    assert rundir.foreign_entries(run) == [".notes.txt.tmp-2", "notes.txt"]
    with pytest.raises(rundir.RunDirError, match=r"not written by tfvae \(.notes.txt.tmp-2, n"):
        rundir.check_new(str(run), overwrite=True)
    with pytest.raises(rundir.RunDirError, match="records no run .*--overwrite"):
        rundir.recorded_run(str(tmp_path / "done" / "model"))


def test_an_overwrite_is_published_whole_or_rolled_back(tmp_path):
    out = _finished_run(tmp_path / "run")
    before, notes = tree_digest(out), []
    with pytest.raises(OSError, match="the disk"):
        with rundir.claim(str(out), rundir.OVERWRITE, note=notes.append) as run:
            staging = run.stage()
            assert os.listdir(staging) == [] and os.path.dirname(staging) == str(tmp_path)
            (tmp_path / os.path.basename(staging) / "run.json").write_text("new")
            raise OSError("the disk")
    assert tree_digest(out) == before and os.listdir(tmp_path) == ["run"]
    assert notes == [f"{out} was not replaced: it is as it was"]
    synced, staged = [], tmp_path / ".run.tmp-overwrite"  # the workers' barrier: after mkdir
    with rundir.claim(
        str(out), rundir.OVERWRITE, note=notes.append, sync=lambda: synced.append(staged.is_dir())
    ) as run:
        with open(os.path.join(run.stage(), "run.json"), "w") as f:
            f.write("new")
        assert synced == [True]  # once, after the chief made the staging directory
        held = tree_digest(out)
        assert held.pop(".lock") and held == before  # untouched until published
        run.publish()
    assert os.listdir(out) == ["run.json"] and (out / "run.json").read_text() == "new"
    assert os.listdir(tmp_path) == ["run"]  # no staging directory left


def test_a_failed_claim_removes_what_it_created_and_keeps_trained_epochs(tmp_path):
    notes = []
    with pytest.raises(ValueError):
        with rundir.claim(str(tmp_path / "a" / "b" / "run"), note=notes.append):
            raise ValueError("bad input")
    assert os.listdir(tmp_path) == [] and notes == []  # the folders it made, gone
    out = tmp_path / "run"
    for error, noted in ((ValueError("diverged"), False), (KeyboardInterrupt(), True)):
        with pytest.raises(type(error)):
            with rundir.claim(str(out), rundir.RESUME, note=notes.append):
                (out / "run.json").write_text("{}")
                (out / "checkpoints" / "epoch-000001").mkdir(parents=True, exist_ok=True)
                raise error
        assert (out / "checkpoints" / "epoch-000001").is_dir()  # trained: kept
        assert len(notes) == noted  # a resume would meet a diverged loss again
    assert f"`tfvae train --out {out} --resume`" in notes[0]
    assert sorted(os.listdir(out)) == ["checkpoints", "run.json"]  # the lock released, no file


# ----------------------------------------------------------------------- --overwrite
def test_a_refused_or_failed_overwrite_leaves_the_old_run_byte_identical(cli_run, capsys):
    before = tree_digest(cli_run)
    parent = cli_run.parent
    np.save(parent / "one.npy", np.full((1, 64), 0.5, np.float32))  # no example left to train
    np.save(parent / "flat.npy", np.full((20, 6), 0.5, np.float32))
    x = np.full((20, 64), 0.5, np.float32)
    np.savez(parent / "split.npz", train=x, test=x[:5, :32])  # a test split of 32 features
    refused = [
        (["--dataset", str(parent / "split.npz")], "x_test must have shape [batch, 64]"),
        (["--dataset", str(parent / "one.npy")], "holds 1 example, too few to split"),
        (["--dataset", str(parent / "flat.npy"), "--architecture", "conv"], "image_shape"),
        (["--dataset", str(parent / "missing.npy")], "file not found"),
    ]
    for extra, expected in refused:
        status = main(["train", "--out", str(cli_run), "--overwrite", *CLI_TINY, *extra])
        assert tree_digest(cli_run) == before, extra
        assert status == 2
        assert expected in one_line_error(capsys.readouterr().err)
    # a new run that diverges during training never replaces the old one
    status = main(["train", "--out", str(cli_run), "--overwrite", *CLI_TINY,
                   "--learning-rate", "1e30"])  # fmt: skip
    assert status == 1
    assert "training diverged at epoch 1" in one_line_error(capsys.readouterr().err)
    assert tree_digest(cli_run) == before
    assert sorted(os.listdir(parent)) == ["flat.npy", "one.npy", "run", "split.npz"]  # no staging
    model = load_model(cli_run)  # the old run still evaluates
    assert model.config.hidden_units == (8,) and rundir.dataset_source(str(cli_run))


def test_a_diverging_first_run_ends_with_one_line_and_leaves_nothing(tmp_path, capsys):
    """A NaN loss in epoch 1 (learning rate 1e30): exit 1 (the input was fine, the run
    failed), one line naming epoch, batch and what to change, no traceback; no epoch was
    trained, so the folder the command created is gone."""
    out = tmp_path / "runs" / "diverged"
    status = main(["train", "--out", str(out), *CLI_TINY, "--learning-rate", "1e30"])
    assert status == 1
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith("tfvae train: error: training diverged at epoch 1, batch ")
    assert "--learning-rate" in line and "Traceback" not in line
    assert os.listdir(tmp_path) == []


def test_overwrite_replaces_the_whole_run_and_keeps_foreign_files_safe(cli_run, capsys):
    old_events = {n for _, _, files in os.walk(cli_run / "logs") for n in files}
    assert main(["train", "--out", str(cli_run), "--overwrite", *CLI_TINY, "--epochs", "1"]) == 0
    assert sorted(os.listdir(cli_run.parent)) == ["run"]  # the old run and the staging: gone
    assert sorted(os.listdir(cli_run / "checkpoints")) == ["epoch-000001"]
    assert len((cli_run / "history.csv").read_text().splitlines()) == 2  # header + epoch 1
    assert json.loads((cli_run / "run.json").read_text())["train_config"]["epochs"] == 1
    new_events = {n for _, _, files in os.walk(cli_run / "logs") for n in files}
    assert new_events and not new_events & old_events  # no old TensorBoard logs mixed in
    capsys.readouterr()
    (cli_run / "notes.txt").write_text("mine")
    before = tree_digest(cli_run)
    assert main(["train", "--out", str(cli_run), "--overwrite", *CLI_TINY]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "notes.txt" in line and "not written by tfvae" in line
    assert tree_digest(cli_run) == before


# ------------------------------------------------------------------- history.csv
def test_history_csv_is_rebuilt_from_the_checkpoints_on_resume(tmp_path, digits):
    """A kill between a checkpoint and its CSV row, or a cut history.csv, ends in the CSV of
    an uninterrupted run."""
    reference = tmp_path / "reference"
    _api_run(reference, digits, FAST.replace(epochs=3))
    want = (reference / "history.csv").read_text()
    assert len(want.splitlines()) == 4
    run = tmp_path / "run"
    _api_run(run, digits)  # 2 epochs, then as if killed before its final writes
    shutil.rmtree(run / "model")
    os.remove(run / "metrics.json")
    rows = (run / "history.csv").read_text().splitlines()
    (run / "history.csv").write_text("\n".join(rows[:2]) + "\n")  # epoch 2's row never came
    _api_run(run, digits)  # nothing left to train: the final writes only
    assert (run / "history.csv").read_text() == "\n".join(want.splitlines()[:3]) + "\n"
    shutil.rmtree(run / "model")
    os.remove(run / "metrics.json")
    cut = (run / "history.csv").read_text()
    (run / "history.csv").write_text(cut[: len(cut) - 25])  # cut mid-row
    _api_run(run, digits, FAST.replace(epochs=3))  # resumes after epoch 2, trains epoch 3
    assert (run / "history.csv").read_text() == want


# -------------------------------------------------------- finishing an interrupted run
def test_a_run_killed_after_saving_its_model_is_finished_by_resume(cli_run, tmp_path, capsys):
    """Killed between model/ and metrics.json: `tfvae train --out RUN --resume` (no other
    option: the run's own are in run.json) finishes it with the same model and metrics."""
    want = json.loads((cli_run / "metrics.json").read_text())
    reference = load_model(cli_run)
    os.remove(cli_run / "metrics.json")
    assert main(["train", "--out", str(cli_run), "--resume"]) == 0
    assert json.loads((cli_run / "metrics.json").read_text()) == want
    assert_same_weights(load_model(cli_run), reference)
    capsys.readouterr()
    # A finished run: --resume has nothing to do, and says so; a longer run is refused.
    assert main(["train", "--out", str(cli_run), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().err
    assert main(["train", "--out", str(cli_run), "--resume", "--epochs", "5"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "finished" in line and "--resume" not in line


def test_a_failure_worth_resuming_names_the_command_that_finishes_the_run(
    tmp_path, capsys, monkeypatch
):
    """A full disk after epoch 1's checkpoint: the note names `--resume`, which finishes
    the run with both rows of history.csv."""
    from tfvae.training import checkpointing

    save = checkpointing.TrainingCheckpoint.save

    def save_then_fail(self, epochs_done):
        save(self, epochs_done)
        raise OSError(28, "No space left on device", "history.csv")

    monkeypatch.setattr(checkpointing.TrainingCheckpoint, "save", save_then_fail)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *CLI_TINY]) != 0
    err = capsys.readouterr().err
    assert f"finish the run with `tfvae train --out {run} --resume`" in err
    monkeypatch.undo()
    assert main(["train", "--out", str(run), "--resume"]) == 0
    rows = (run / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def test_train_and_evaluate_finishes_a_run_killed_after_saving_its_model(tmp_path, digits):
    model, history, metrics = _api_run(tmp_path, digits)
    os.remove(tmp_path / "metrics.json")
    again, history_again, metrics_again = _api_run(tmp_path, digits)
    assert (history_again, metrics_again) == (history, metrics)
    assert_same_weights(again, model)
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == metrics
    with pytest.raises(FileExistsError, match="finished run"):  # finished: refused as before
        _api_run(tmp_path, digits)


# ------------------------------------------------------------------ corrupt checkpoints
def test_a_corrupt_latest_checkpoint_is_skipped_for_the_newest_intact_one(tmp_path, digits, caplog):
    reference, _, _ = _api_run(tmp_path / "reference", digits)
    run = tmp_path / "run"
    _api_run(run, digits)
    shutil.rmtree(run / "model")  # as if killed before the final writes
    os.remove(run / "metrics.json")
    latest = run / "checkpoints" / "epoch-000002"
    data_file = next(p for p in latest.iterdir() if ".data-" in p.name)
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte
    data_file.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="tfvae.training.checkpointing"):
        model, history, _ = _api_run(run, digits)
    skipped = [r.getMessage() for r in caplog.records if "epoch-000002" in r.getMessage()]
    assert len(skipped) == 1 and "is corrupt or truncated" in skipped[0], skipped
    assert "ckpt.data" in skipped[0] and "resuming from" in skipped[0]
    assert skipped[0].endswith("epoch-000001'")
    assert len(history["loss"]) == 2  # epoch 2 trained again, from epoch 1's state
    assert_same_weights(model, reference)
    rows = (run / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def _truncate_every_state_file(run):
    for checkpoint in (run / "checkpoints").iterdir():
        state = checkpoint / "state.json"
        state.write_text(state.read_text()[:40])


def test_no_intact_checkpoint_is_an_error_that_suggests_no_failing_command(cli_run, digits, capsys):
    api_run = cli_run.parent / "api"
    _api_run(api_run, digits)
    os.remove(api_run / "metrics.json")
    _truncate_every_state_file(api_run)
    with pytest.raises(CheckpointError, match="no intact checkpoint") as e:
        _api_run(api_run, digits)
    assert "epoch-000001" in str(e.value) and "epoch-000002" in str(e.value)
    os.remove(cli_run / "metrics.json")
    _truncate_every_state_file(cli_run)
    assert main(["train", "--out", str(cli_run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint" in one_line_error(err)
    assert "--resume" not in err  # resuming again would fail the same way
    assert "--overwrite" in err


# ------------------------------------------------------------ SIGKILL, then --resume
def _child(hook, *args):
    return run_python([CHILD, hook, *map(str, args)], timeout=600)


@pytest.mark.slow
def test_a_run_killed_at_any_point_is_finished_by_one_command(tmp_path):
    """SIGKILL mid-epoch before any checkpoint, right after a checkpoint (before its CSV
    row), mid-epoch later, after model/, while writing metrics.json and before the curves:
    after each, `tfvae train --out RUN --resume` goes on; the last one completes the run with
    the weights, metrics and history.csv of a run never interrupted (bit-identical)."""
    options = [*CLI_TINY, "--epochs", "3"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    done = _child("none", "train", "--out", reference, *options)
    assert done.returncode == 0, done.stderr[-2000:]

    killed = _child("kill-mid-epoch:0", "train", "--out", run, *options)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert os.listdir(run / "checkpoints") == [] and (run / "run.json").exists()
    expected_after = {
        "kill-after-checkpoint:1": lambda: (
            sorted(os.listdir(run / "checkpoints")) == ["epoch-000001"]
            and not (run / "history.csv").exists()
        ),
        "kill-mid-epoch:2": lambda: len((run / "history.csv").read_text().splitlines()) == 3,
        "kill-after-model": lambda: (
            (run / "model").is_dir() and not (run / "metrics.json").exists()
        ),
        "kill-writing-metrics": lambda: (
            not (run / "metrics.json").exists()
            and any(n.startswith(".metrics.json.tmp-") for n in os.listdir(run))
        ),
        "kill-before-curves": lambda: (
            (run / "metrics.json").exists() and not (run / "pictures" / "curves.png").exists()
        ),
    }
    for hook, check in expected_after.items():
        killed = _child(hook, "train", "--out", run, "--resume")
        assert killed.returncode == -9, (hook, killed.stderr[-2000:])
        assert check(), (hook, sorted(os.listdir(run)))
    finished = _child("none", "train", "--out", run, "--resume")
    assert finished.returncode == 0, finished.stderr[-2000:]

    assert (run / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    assert got == want  # test metrics and the whole history
    assert_same_weights(load_model(run), load_model(reference))
    assert (run / "pictures" / "curves.png").is_file()
    assert not [n for n in os.listdir(run) if n.startswith(".")]  # no debris, no lock file


# The library's own path, no CLI: `train_and_evaluate` locks its workdir itself. A KL warm-up
# runs across the kill; lifecycle_child's hooks place it.
API_CHILD = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {os.path.join(REPO, "tests")!r})
    import lifecycle_child
    from tfvae import TrainConfig, VAEConfig, train_and_evaluate
    from tfvae.data.datasets import load_default

    lifecycle_child._install(sys.argv[1])
    config = VAEConfig(input_dim=64, latent_dim=2, hidden_units=(16,), seed=3)
    train_config = TrainConfig(
        epochs=4, eval_samples=2, kl_warmup_epochs=2, seed=5, jit_compile=False,
        steps_per_execution=1,
    )
    train_and_evaluate(config, train_config, load_default(), sys.argv[2], verbose=0)
    """
)


@pytest.mark.slow
def test_train_and_evaluate_killed_mid_epoch_is_finished_by_calling_it_again(tmp_path):
    """SIGKILL in epoch 3 of 4 (KL warm-up over the first 2) leaves the last two checkpoints
    and no model; the same call again ends with the weights and metrics.json (test metrics,
    whole history) of a run never interrupted, bit for bit."""
    script = tmp_path / "api_child.py"
    script.write_text(API_CHILD)
    run, reference = tmp_path / "run", tmp_path / "reference"
    done = run_python([str(script), "none", str(reference)], timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    killed = run_python([str(script), "kill-mid-epoch:2", str(run)], timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-000001", "epoch-000002"]
    assert not (run / "model").exists()
    resumed = run_python([str(script), "none", str(run)], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    assert len(got["history"]["loss"]) == 4 and got == want
    assert_same_weights(load_model(run), load_model(reference))
    assert not [n for n in os.listdir(run) if n.startswith(".")]  # no debris, no lock file
