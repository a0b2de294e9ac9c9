"""A full disk at every kind of write: one line naming the file and the space, exit 1 from the
CLI, no temporary left, the previous version intact.

The disk is filled by injection (Python writes that fail with ENOSPC after some bytes,
TensorFlow writes that raise its `ResourceExhaustedError`); where the tests run as root and
may mount a small tmpfs, the slow tests at the end fill a real one.
"""

import builtins
import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import one_line_error, run_python

from tfvae import VAE, VAEConfig, export, load_model
from tfvae.base import atomic
from tfvae.base.atomic import DiskFullError
from tfvae.cli import app as cli
from tfvae.data import download
from tfvae.model import saving
from tfvae.training import checkpointing

TINY = VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,))


def filling_open(room):
    """An `open` whose files take `room` bytes in all, then fail as a full disk does."""
    left = [room]

    class Filling:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            n = min(len(data), left[0])
            self.file.write(data[:n])
            left[0] -= n
            if n < len(data):
                raise OSError(errno.ENOSPC, "No space left on device", self.file.name)
            return n

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def open_(path, mode="r", *args, **kwargs):
        file = builtins.open(path, mode, *args, **kwargs)
        return Filling(file) if any(m in mode for m in "wax") else file

    return open_


def tf_disk_full(path):
    """The error TensorFlow raises when a file write finds the disk full."""
    return tf.errors.ResourceExhaustedError(
        None, None, f"{{{{function_node __wrapped__SaveV2}}}} {path}; No space left on device"
    )


def everything_under(root):
    return sorted(
        os.path.relpath(os.path.join(b, n), root) for b, ds, fs in os.walk(root) for n in ds + fs
    )


# ------------------------------------------------------------------------ atomic writes
def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic.write_text(path, "old")
    monkeypatch.setattr(atomic, "open", filling_open(10), raising=False)
    with pytest.raises(DiskFullError) as e:
        atomic.write_bytes(path, b"x" * 5000)
    message = str(e.value)
    assert f"no space left on device to write {str(path)!r}" in message
    assert f"free in {str(tmp_path)!r}" in message and "5.00 kB needed" in message
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError)
    assert e.value.needed == 5000 and e.value.free == atomic.free_space(tmp_path)
    assert "\n" not in message
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_a_writer_that_fills_the_disk_and_a_staged_dir_that_does(tmp_path):
    def writer(tmp):
        with open(tmp, "wb") as f:
            f.write(b"y" * 3000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=r"picture\.png.*3\.00 kB were written before"):
        atomic.write_with(tmp_path / "picture.png", writer)
    assert os.listdir(tmp_path) == []

    target = tmp_path / "model"
    with atomic.staged_dir(target) as tmp:
        (open(os.path.join(tmp, "a"), "w")).write("v1")
    with pytest.raises(DiskFullError, match=r"'.*/model' \(.* free in"):
        with atomic.staged_dir(target, overwrite=True) as tmp:
            atomic.write_bytes(os.path.join(tmp, "a"), b"v2")  # an inner write names `target`
            raise tf_disk_full(os.path.join(tmp, "b"))
    assert os.listdir(tmp_path) == ["model"] and (target / "a").read_text() == "v1"


def test_out_of_memory_is_not_a_full_disk():
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape")
    assert not atomic.is_disk_full(oom)
    assert atomic.is_disk_full(tf_disk_full("/x/ckpt"))
    assert atomic.as_disk_full(tf_disk_full("/x/y/ckpt")).path == "/x/y/ckpt"
    assert atomic.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not atomic.is_disk_full(OSError(errno.EACCES, "Permission denied"))


# ------------------------------------------------------------------------ save_model
def test_save_model_checks_the_space_first_and_writes_nothing(tmp_path, monkeypatch):
    model = VAE(TINY)
    monkeypatch.setattr(atomic, "free_space", lambda folder: 1000)
    with pytest.raises(DiskFullError) as e:
        saving.save_model(model, tmp_path / "m")
    needed = sum(len(b) for b in saving._model_files(model).values())
    assert e.value.needed == needed and f"{needed / 1e3:.2f} kB needed" in str(e.value)
    assert "1.00 kB free" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_save_model_on_a_disk_that_fills_keeps_the_previous_model(tmp_path, monkeypatch):
    model = VAE(TINY)
    path = saving.save_model(model, tmp_path / "m")
    other = VAE(TINY.replace(seed=7))
    monkeypatch.setattr(saving, "open", filling_open(3000), raising=False)
    with pytest.raises(DiskFullError, match=r"to write '.*/m' \(.* free in .* needed\)"):
        saving.save_model(other, path, overwrite=True)
    assert os.listdir(tmp_path) == ["m"]
    x = np.random.default_rng(0).random((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(load_model(path).encoder(x).mean(), model.encoder(x).mean())


# ------------------------------------------------------------------------ checkpoints
def _fail_checkpoint_write_at(monkeypatch, epoch):
    """tf.train.Checkpoint.write raises TF's disk-full error at `epoch`'s checkpoint,
    having written part of it."""
    write = tf.train.Checkpoint.write

    def filling(self, prefix, *args, **kwargs):
        if f"epoch-{epoch:06d}" in prefix:
            with open(prefix + ".data-00000-of-00001", "wb") as f:
                f.write(b"\0" * 2000)
            raise tf_disk_full(prefix + "_temp/part-00000-of-00001.data")
        return write(self, prefix, *args, **kwargs)

    monkeypatch.setattr(tf.train.Checkpoint, "write", filling)


def test_checkpoint_on_a_full_disk_keeps_the_previous_one(
    checkpoint_callback, tmp_path, monkeypatch
):
    callback, model = checkpoint_callback
    callback.on_epoch_end(0, {"loss": 1.0})
    _fail_checkpoint_write_at(monkeypatch, 2)
    with pytest.raises(DiskFullError) as e:
        callback.on_epoch_end(1, {"loss": 0.5})
    assert e.value.path == str(tmp_path / "epoch-000002")
    assert "2.00 kB were written before it filled" in str(e.value)
    assert os.listdir(tmp_path) == ["epoch-000001"]
    assert checkpointing.restore_checkpoint(str(tmp_path / "epoch-000001"), model)[0] == 1


@pytest.mark.slow
def test_cli_train_on_a_full_disk_exits_1_keeping_the_trained_epochs(tmp_path, monkeypatch, capsys):
    _fail_checkpoint_write_at(monkeypatch, 2)
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--epochs", "3", "--hidden-units", "8", "--quiet"]
    assert cli.main([*argv, "--eval-samples", "2", "--steps-per-execution", "8"]) == 1
    line = one_line_error(capsys.readouterr().err)
    expected = f"tfvae train: error: no space left on device to write {str(out)!r}"
    assert line.startswith(expected[:-1] + "/checkpoints/epoch-000002'"), line
    assert "free in" in line
    assert sorted(os.listdir(out / "checkpoints")) == ["epoch-000001"]
    assert not any(".tmp-" in name for name in everything_under(out))


# ------------------------------------------------------------------------ export
def test_export_on_a_full_disk_keeps_earlier_versions(tmp_path, monkeypatch, capsys):
    model = VAE(TINY)
    model_dir = saving.save_model(model, tmp_path / "model")
    base = tmp_path / "served"
    (base / "1").mkdir(parents=True)  # an earlier version, served meanwhile
    (base / "1" / "saved_model.pb").write_bytes(b"version 1")
    before = everything_under(base)

    def filling(obj, export_dir, *args, **kwargs):  # the variables do not fit
        os.makedirs(os.path.join(export_dir, "variables"))
        with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
            f.write(b"\0" * 3000)
        raise tf_disk_full(os.path.join(export_dir, "variables", "variables.data-00000-of-00001"))

    monkeypatch.setattr(tf.saved_model, "save", filling)
    with pytest.raises(DiskFullError) as e:
        export(model, str(base))
    assert e.value.path == str(base / "2") and "3.00 kB were written before it" in str(e.value)
    assert everything_under(base) == before
    assert (base / "1" / "saved_model.pb").read_bytes() == b"version 1"
    assert cli.main(["export", model_dir, "--base-dir", str(tmp_path / "new")]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith("tfvae export: error: no space left on device to write ")
    assert str(tmp_path / "new" / "model" / "1") in line
    assert not (tmp_path / "new").exists()  # nor the folders made for it


# ------------------------------------------------------------------------ downloads
def test_download_checks_the_space_before_fetching(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(atomic, "free_space", lambda folder: 5000)
    with pytest.raises(DiskFullError) as e:
        download.fetch("frey", str(tmp_path))
    assert e.value.path == str(tmp_path / "frey" / "frey_rawface.mat")
    assert "1.10 MB needed" in str(e.value) and "5.00 kB free" in str(e.value)
    assert os.listdir(tmp_path) == []
    argv = ["train", "--dataset", "frey", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 1
    line = one_line_error(capsys.readouterr().err)
    assert "frey_rawface.mat" in line and "1.10 MB needed" in line
    assert os.listdir(tmp_path) == []


def test_a_download_that_fills_the_disk_leaves_nothing(tmp_path, monkeypatch):
    from test_download import serve

    (tmp_path / "remote" / "frey").mkdir(parents=True)
    body = os.urandom(20000)
    (tmp_path / "remote" / "frey" / "f.mat").write_bytes(body)
    import hashlib

    remote = download.Remote("f.mat", len(body), hashlib.sha256(body).hexdigest())
    monkeypatch.setitem(download.SOURCES, "frey", download.Source("unused", (remote,)))
    monkeypatch.setattr(download, "open", filling_open(8000), raising=False)
    with serve(tmp_path / "remote") as server:
        monkeypatch.setenv(download.DATASETS_URL_ENV, server.url)
        with pytest.raises(DiskFullError, match=r"f\.mat' \(.* free in .*, 20\.00 kB needed\)"):
            download.fetch("frey", str(tmp_path / "cache"), progress=False)
    assert everything_under(tmp_path / "cache") == ["frey"]


def test_cli_names_the_file_of_a_disk_full_error_it_did_not_raise(tmp_path, capsys, monkeypatch):
    """TF's own writers (TensorBoard's event files) raise a disk-full error that no tfvae
    write converted: the CLI still says it in one line, with the file from TF's message."""

    def command(args):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{tmp_path}/logs/events.out.tfevents.1.v2; No space left on device"
        )

    from tfvae.cli import commands

    command.__doc__ = commands.sample.__doc__

    monkeypatch.setattr(commands, "sample", command)
    assert cli.main(["sample", str(tmp_path)]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"tfvae sample: error: no space left on device to write '{tmp_path}")
    assert "events.out.tfevents.1.v2" in line and "free in" in line


# ------------------------------------------------------------------------ a real tmpfs
@pytest.fixture
def tmpfs(tmp_path):
    """`tmpfs(size)`: a directory with a tmpfs of `size` mounted on it (unmounted after);
    skips the test where this process may not mount one (not root, no mount permission)."""
    mounted = []

    def mount(size):
        where = tmp_path / f"tmpfs-{size}-{len(mounted)}"
        where.mkdir()
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a tmpfs needs root: the injected-error tests above cover this")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): injection covers it")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True)


SAVE_ON_FULL_DISK = """
import os, sys
from tfvae import VAE, VAEConfig, save_model
from tfvae.base import atomic
model = VAE(VAEConfig(input_dim=784, latent_dim=20, hidden_units=(500,)))
if sys.argv[2] == "unchecked":  # as if the disk filled after the space was checked
    atomic.check_space = lambda path, needed: None
try:
    save_model(model, os.path.join(sys.argv[1], "m"))
except OSError as e:
    print(type(e).__name__, e)
print(os.listdir(sys.argv[1]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("check", ["checked", "unchecked"])
def test_save_model_on_a_real_full_disk_does_not_crash(tmpfs, check):
    """The encoder's 1.6 MB of HDF5 weights fill a 1600 kB tmpfs: h5py used to segfault in
    File.close (4 of 4 trials), leaving its temporary directory."""
    where = tmpfs("1600k")
    done = run_python(["-c", SAVE_ON_FULL_DISK, str(where), check])
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"DiskFullError no space left on device to write '{where}/m' (")
    assert lines[-1] == "[]"  # no temporary left


@pytest.mark.slow
def test_train_and_export_filling_a_real_tmpfs(tmpfs, tmp_path):
    where = tmpfs("800k")  # two checkpoints of this model fit, a third does not
    out = where / "run"
    tiny = ["--epochs", "3", "--hidden-units", "200", "--eval-samples", "2", "--quiet"]
    done = run_python(["-m", "tfvae", "train", *tiny, "--out", str(out)], timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    line = one_line_error(done.stderr)
    assert line.startswith(f"tfvae train: error: no space left on device to write '{out}/"), line
    assert "free in" in line
    assert sorted(os.listdir(out / "checkpoints")) == ["epoch-000001", "epoch-000002"]
    assert not any(".tmp-" in name for name in everything_under(where))
    state = json.loads((out / "checkpoints" / "epoch-000002" / "state.json").read_text())
    assert state["epoch"] == 2

    run = tmp_path / "small"
    done = run_python(["-m", "tfvae", "train", *tiny[:1], "1", *tiny[2:], "--out", str(run)])
    assert done.returncode == 0, done.stderr[-3000:]
    base = tmpfs("300k")
    done = run_python(["-m", "tfvae", "export", str(run), "--base-dir", str(base)])
    assert done.returncode == 1, done.stderr[-3000:]
    line = one_line_error(done.stderr)
    assert line.startswith(f"tfvae export: error: no space left on device to write '{base}/"), line
    assert everything_under(base) == []


def test_the_test_helpers_fill_as_promised(tmp_path):
    opener = filling_open(4)
    with opener(tmp_path / "f", "wb") as f:
        with pytest.raises(OSError) as e:
            f.write(b"123456")
    assert e.value.errno == errno.ENOSPC and (tmp_path / "f").read_bytes() == b"1234"
    assert sys.modules["tfvae.base.atomic"] is atomic
