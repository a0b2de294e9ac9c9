"""The CLI's persistent XLA cache (`tfvae.engine.xla_cache`): where it lives, when it is set, which
files it keeps, and that a second process loads what the first compiled.

conftest turns the cache off for every test; these turn it on in a temporary directory.
"""

import os
import re
import time

import pytest
from helpers import run_python

from tfvae.engine import xla_cache


@pytest.fixture
def released():
    """Closes the lock `enable` holds for the process, so each test starts without one."""
    yield
    if xla_cache._lock_file is not None:
        xla_cache._lock_file.close()
        xla_cache._lock_file = None


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2); lengths here stay below 128."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


WHOLE = field(1, b"key") + field(2, b"hlo module") + field(3, b"executable bytes")


def test_whole_entries_and_cut_ones():
    assert xla_cache.is_whole_entry(WHOLE)
    assert not any(xla_cache.is_whole_entry(WHOLE[:n]) for n in range(len(WHOLE)))
    assert not xla_cache.is_whole_entry(field(1, b"key") + field(2, b"hlo"))  # no executable
    assert not xla_cache.is_whole_entry(field(1, b"k") + field(2, b"h") + field(3, b""))
    assert not xla_cache.is_whole_entry(b"not a protobuf at all\xff")


def test_the_directory_is_per_user_tensorflow_version_and_cpu(tmp_path):
    home = {"XDG_CACHE_HOME": str(tmp_path)}
    default = xla_cache.cache_directory(home)
    assert os.path.dirname(default) == os.path.join(str(tmp_path), "tfvae", "xla")
    assert re.fullmatch(r"tf2\.21\.\d+-[0-9a-f]{12}", os.path.basename(default))
    mine = xla_cache.cache_directory({xla_cache.ENV: str(tmp_path / "mine")})
    assert mine == os.path.join(str(tmp_path / "mine"), os.path.basename(default))
    for off in ("off", "0", "false", "OFF"):
        assert xla_cache.cache_directory({xla_cache.ENV: off}) is None


def test_no_home_directory_means_no_cache(monkeypatch):
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # as when HOME is unknown
    assert xla_cache.cache_directory({}) is None


def test_enable_sets_the_flag_once_and_keeps_the_callers(tmp_path, released):
    env = {xla_cache.ENV: str(tmp_path), "TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}
    directory = xla_cache.enable(env, modules={})
    assert os.path.isdir(directory) and directory.startswith(str(tmp_path))
    assert env["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {xla_cache.FLAG}={directory}"
    assert xla_cache.enable(env, modules={}) is None  # set already


@pytest.mark.parametrize("why", ["off", "tensorflow loaded", "flag given", "unusable", "locked"])
def test_enable_leaves_tensorflow_alone_when_it_cannot_or_should_not(why, tmp_path, released):
    env = {xla_cache.ENV: str(tmp_path / "cache")}
    modules = {}
    if why == "off":
        env[xla_cache.ENV] = "off"
    elif why == "tensorflow loaded":
        modules = {"tensorflow": object()}
    elif why == "flag given":
        env["TF_XLA_FLAGS"] = f"{xla_cache.FLAG}=/elsewhere"
    elif why == "unusable":
        (tmp_path / "file").write_text("in the way")
        env[xla_cache.ENV] = str(tmp_path / "file")
    elif why == "locked":  # another process training with the cache
        import fcntl

        directory = xla_cache.cache_directory(env)
        os.makedirs(directory)
        other = open(os.path.join(directory, ".lock"), "a+b")  # noqa: SIM115
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    before = dict(env)
    assert xla_cache.enable(env, modules=modules) is None
    assert env == before
    assert xla_cache._lock_file is None
    if why == "locked":
        other.close()


def test_cut_and_foreign_files_are_dropped_and_checked_files_are_not_reread(tmp_path, released):
    env = {xla_cache.ENV: str(tmp_path)}
    directory = xla_cache.cache_directory(env)
    os.makedirs(directory)
    files = {"whole.pb": WHOLE, "cut.pb": WHOLE[:-3], "foreign.pb": b"\xff\xff"}
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    assert xla_cache.enable(env, modules={}) == directory
    assert sorted(n for n in os.listdir(directory) if not n.startswith(".")) == ["whole.pb"]
    # A file older than the last check is not read again (each file is checked once).
    old = os.path.join(directory, "old-but-cut.pb")
    with open(old, "wb") as f:
        f.write(WHOLE[:-3])
    past = time.time() - 3600
    os.utime(old, (past, past))
    xla_cache._lock_file.close()
    xla_cache._lock_file = None
    assert xla_cache.enable({xla_cache.ENV: str(tmp_path)}, modules={}) == directory
    assert os.path.exists(old)


def test_the_least_recently_used_entries_go_beyond_the_size_limit(tmp_path, released, monkeypatch):
    monkeypatch.setattr(xla_cache, "MAX_BYTES", 2 * len(WHOLE))
    env = {xla_cache.ENV: str(tmp_path)}
    directory = xla_cache.cache_directory(env)
    os.makedirs(directory)
    now = time.time()
    for age, name in ((300, "oldest.pb"), (200, "older.pb"), (100, "newest.pb")):
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(WHOLE)
        os.utime(path, (now - age, now - age))
    xla_cache.enable(env, modules={})
    assert sorted(n for n in os.listdir(directory) if n.endswith(".pb")) == [
        "newest.pb",
        "older.pb",
    ]


FIT = """
import sys
from tfvae.engine import xla_cache
print("cache", xla_cache.enable())
import numpy as np
from tfvae import VAE, VAEConfig
x = (np.random.default_rng(0).random((1000, 16)) < 0.3).astype(np.float32)
model = VAE(VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,), seed=1))
model.compile(steps_per_execution=128, fused_steps=32)  # compile()'s defaults, said
history = model.fit(x, batch_size=96, epochs=1, shuffle=False, verbose=0).history
print("loss", repr(history["loss"][0]))
"""


def _entries(directory):
    return {
        name: os.stat(os.path.join(directory, name)).st_mtime_ns
        for name in os.listdir(directory)
        if name.endswith(".pb")
    }


@pytest.mark.slow
def test_an_epoch_compiles_one_program_per_batch_shape_and_a_second_process_loads_them(
    tmp_path,
):
    """`fit` on 1000 examples in batches of 96, 128 steps per call, groups of 32: 11
    batches, the last of 40, run as a fused group of 8 and three single steps. One XLA
    program per batch shape (before the single launch function, three: the group of 8,
    single steps at 96 and at 40).
    A second process writes nothing, loads both (TensorFlow's own log line) and trains
    the same."""
    env = {xla_cache.ENV: str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "0"}
    env["TF_CPP_VMODULE"] = "device_executable_persistor=1"
    first = run_python(["-c", FIT], env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    directory = xla_cache.cache_directory({xla_cache.ENV: str(tmp_path)})
    assert f"cache {directory}" in first.stdout
    written = _entries(directory)
    assert len(written) == 2, sorted(written)
    assert "Loading cached entry" not in first.stderr
    second = run_python(["-c", FIT], env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert _entries(directory) == written
    assert second.stderr.count("Loading cached entry") == 2, second.stderr[-3000:]
    loss = [line for line in first.stdout.splitlines() if line.startswith("loss")]
    assert loss and loss == [line for line in second.stdout.splitlines() if line.startswith("loss")]


@pytest.mark.slow
def test_a_second_tfvae_train_loads_what_the_first_compiled(tmp_path):
    """The CLI turns the cache on by default (here in a temporary directory); `off` is
    `enable`'s (test_enable_leaves_tensorflow_alone_when_it_cannot_or_should_not)."""
    env = {xla_cache.ENV: str(tmp_path / "xla"), "TF_CPP_VMODULE": "device_executable_persistor=1"}
    args = ["-m", "tfvae", "--verbose", "train", "--epochs", "1", "--hidden-units", "16"]
    args += ["--eval-samples", "2", "--batch-size", "200", "--data-dir", str(tmp_path / "none")]
    first = run_python([*args, "--out", str(tmp_path / "a")], env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    directory = xla_cache.cache_directory({xla_cache.ENV: str(tmp_path / "xla")})
    written = _entries(directory)
    assert written and "Loading cached entry" not in first.stderr
    second = run_python([*args, "--out", str(tmp_path / "b")], env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert _entries(directory) == written
    assert second.stderr.count("Loading cached entry") == len(written)
    metrics = [(tmp_path / run / "metrics.json").read_text() for run in ("a", "b")]
    assert metrics[0] == metrics[1]
