"""`tfvae.data.download` against a loopback HTTP server holding ../shared/data (never the internet):
success and reuse, a wrong hash, a cut-short transfer, an unreachable host; and the main job's
choice of data (MNIST when it can be had, else the embedded digits, saying so)."""

import contextlib
import functools
import hashlib
import http.server
import json
import os
import threading
import time

import numpy as np
import pytest
from conftest import closed_port_url

from tfvae.config import PRESETS
from tfvae.data import datasets as data
from tfvae.data import download
from tfvae.data.download import SOURCES, DownloadError, fetch


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; `truncate` sends half of each file under a full Content-Length."""

    truncate = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        if not self.truncate:
            return super().do_GET()
        path = self.translate_path(self.path)
        with open(path, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@contextlib.contextmanager
def serve(root, truncate=False):
    """An HTTP server on 127.0.0.1 (a free port) serving `root`; yields it (`.requests`, `.url`)."""
    handler = type("Handler", (_Handler,), {"truncate": truncate})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty data directory as $TFVAE_DATA_DIR."""
    path = tmp_path / "cache"
    monkeypatch.setenv(download.DATA_DIR_ENV, str(path))
    return path


def listing(folder):
    """Every name under `folder`, hidden temporaries included."""
    return sorted(
        os.path.relpath(os.path.join(b, n), folder) for b, _, ns in os.walk(folder) for n in ns
    )


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_pinned_hashes_are_the_shared_files(data_dir):
    checked = 0
    for dataset, source in SOURCES.items():
        for remote in source.files:
            path = os.path.join(data_dir, dataset, remote.name)
            if os.path.isfile(path):  # the .amat files are not kept there (see the README)
                assert (os.path.getsize(path), sha256(path)) == (remote.size, remote.sha256)
                checked += 1
    assert checked == 5


def test_download_then_reuse(data_dir, cache, monkeypatch, capsys):
    with serve(data_dir) as server:
        monkeypatch.setenv(download.DATASETS_URL_ENV, server.url)
        got = data.load_mnist(binarization="none")
        assert sorted(server.requests) == sorted(f"/mnist/{r.name}" for r in SOURCES["mnist"].files)
        want = data.load_mnist(data_dir, binarization="none")
        np.testing.assert_array_equal(got.x_train, want.x_train)
        np.testing.assert_array_equal(got.y_test, want.y_test)
        assert listing(cache) == sorted(f"mnist/{r.name}" for r in SOURCES["mnist"].files)
        # Reuse: nothing fetched again.
        data.load_mnist(binarization="none", subset=10)
        assert len(server.requests) == 4
        # Frey Face, with the progress bar asked for.
        assert fetch("frey", progress=True) == str(cache / "frey")
        assert "frey_rawface.mat: [" in capsys.readouterr().err
        assert data.load_frey_face().x_train.shape == (1769, 560)
        assert len(server.requests) == 5


def test_wrong_hash_places_nothing(data_dir, cache, tmp_path, monkeypatch):
    served = tmp_path / "served" / "frey"
    served.mkdir(parents=True)
    with open(os.path.join(data_dir, "frey", "frey_rawface.mat"), "rb") as f:
        body = bytearray(f.read())
    body[-1] ^= 1  # same size, one bit off
    (served / "frey_rawface.mat").write_bytes(bytes(body))
    with serve(served.parent) as server:
        monkeypatch.setenv(download.DATASETS_URL_ENV, server.url)
        with pytest.raises(DownloadError) as e:
            data.load_frey_face()
    message = str(e.value)
    assert "sha256" in message and "expected " + SOURCES["frey"].files[0].sha256 in message
    assert f"{server.url}/frey/frey_rawface.mat" in message and "\n" not in message
    assert listing(cache) == []


def test_cut_short_transfer_places_nothing(data_dir, cache, monkeypatch):
    with serve(data_dir, truncate=True) as server:
        monkeypatch.setenv(download.DATASETS_URL_ENV, server.url)
        with pytest.raises(DownloadError, match="frey_rawface.mat"):
            fetch("frey")
    assert listing(cache) == []


def test_unreachable_host_says_what_to_place_where(cache, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv(download.DATASETS_URL_ENV, url)
    start = time.monotonic()
    with pytest.raises(DownloadError) as e:
        data.load_mnist()
    assert time.monotonic() - start < 10
    message = str(e.value)
    assert "\n" not in message and f"{url}/mnist/" in message
    assert all(r.name in message for r in SOURCES["mnist"].files)
    assert str(cache / "mnist") in message
    assert not os.path.exists(cache)  # not even an empty folder
    # The public sources, when no override is set.
    monkeypatch.delenv(download.DATASETS_URL_ENV)
    assert download._base_url("binarized_mnist").startswith("http://www.cs.toronto.edu/~larocheh")


def test_a_killed_download_leaves_nothing_that_looks_complete(data_dir, cache, monkeypatch):
    folder = cache / "frey"
    folder.mkdir(parents=True)
    stale = folder / ".frey_rawface.mat.tmp-killed"  # what atomic.write_with leaves on SIGKILL
    stale.write_bytes(b"half a file")
    old = time.time() - download.STALE_DOWNLOAD_SECONDS - 1
    os.utime(stale, (old, old))
    live = folder / ".frey_rawface.mat.tmp-live"  # another process's download in progress
    live.write_bytes(b"growing")
    with pytest.raises(DownloadError):  # the closed port of conftest: offline
        data.load_frey_face()
    with serve(data_dir) as server:
        monkeypatch.setenv(download.DATASETS_URL_ENV, server.url)
        fetch("frey")
    assert listing(cache) == ["frey/.frey_rawface.mat.tmp-live", "frey/frey_rawface.mat"]


def test_default_cache_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv(download.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.cache_dir() == str(tmp_path / ".tfvae" / "datasets")
    assert download.cache_dir("x") == "x"


# ------------------------------------------------------------------ other layouts
def keras_mnist(path, mnist):
    """Writes `mnist` (grey levels) as Keras' mnist.npz."""

    def images(x):
        return np.round(x * 255).astype(np.uint8).reshape(-1, 28, 28)

    np.savez(
        path,
        x_train=images(mnist.x_train[:300]),
        y_train=mnist.y_train[:300].astype(np.uint8),
        x_test=images(mnist.x_test[:50]),
        y_test=mnist.y_test[:50].astype(np.uint8),
    )
    return str(path)


def test_keras_mnist_npz_is_a_dataset_and_a_cached_mnist(data_dir, cache):
    grey = data.load_mnist(data_dir, binarization="none", subset=300)
    os.makedirs(cache)
    keras_file = keras_mnist(cache / "mnist.npz", grey)
    for loaded in (
        data.load_dataset(keras_file, binarization="none"),
        data.load_mnist(None, "none"),
    ):
        assert loaded.name == "mnist" and loaded.image_shape == (28, 28, 1)
        np.testing.assert_array_equal(loaded.x_train, grey.x_train)
        np.testing.assert_array_equal(loaded.y_train, grey.y_train)
    binary = data.load_dataset(keras_file)
    assert binary.binary and set(np.unique(binary.x_train)) == {0.0, 1.0}
    # The command line trains it with the MNIST preset.
    from tfvae.cli.flags import config_values as _config_values

    assert _config_values(run_args("--dataset", keras_file))[0] == dict(PRESETS["mnist"].model)


def test_binarized_mnist_from_amat_files(data_dir, cache):
    with np.load(os.path.join(data_dir, "binarized_mnist", "binarized_mnist.npz")) as npz:
        splits = {k: npz[k][:20] for k in ("train", "valid", "test")}
    folder = cache / "binarized_mnist"
    folder.mkdir(parents=True)
    for split, b in splits.items():
        text = "".join(" ".join(map(str, row)) + "\n" for row in b)  # Larochelle's layout
        (folder / f"binarized_mnist_{split}.amat").write_text(text)
    d = data.load_binarized_mnist(use_valid_for_train=True)
    np.testing.assert_array_equal(d.x_test, splits["test"])
    assert d.x_train.shape == (40, 784) and d.x_train.dtype == np.float32
    (folder / "binarized_mnist_test.amat").write_text("0 2\n")
    with pytest.raises(ValueError, match="not a binarized MNIST .amat"):
        data.load_binarized_mnist()


# ------------------------------------------------------------------ the main job's data
def run_args(*words):
    from tfvae.cli.app import parser as _parser

    return _parser().parse_args(["run", *words])


def test_run_takes_mnist_when_it_can_be_downloaded(data_dir, cache, monkeypatch):
    from tfvae.cli.flags import config_values as _config_values
    from tfvae.data.choice import choose_dataset as _choose_dataset

    with serve(data_dir) as server:
        monkeypatch.setenv(download.DATASETS_URL_ENV, server.url)
        assert _choose_dataset("auto", None) == "mnist"
        assert len(server.requests) == 4
    args = run_args()
    args.dataset = "mnist"
    model, train = _config_values(args)
    assert model == dict(PRESETS["mnist"].model) and train == dict(PRESETS["mnist"].train)
    assert _config_values(run_args("--dataset", "default"))[0]["hidden_units"] == (200,)


def test_run_falls_back_to_the_embedded_digits_offline(cache, tmp_path, capsys):
    from tfvae.cli import main

    status = main(["run", "--runs-dir", str(tmp_path / "runs"), "--base-dir",
                   str(tmp_path / "saved"), "--epochs", "1", "--hidden-units", "4",
                   "--batch-size", "500", "--eval-samples", "1", "--quiet"])  # fmt: skip
    assert status == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "MNIST" in line]
    assert len(notes) == 1 and "embedded 8x8 digits" in notes[0], notes
    assert "train-images-idx3-ubyte.gz" in notes[0] and str(cache / "mnist") in notes[0]
    recorded = json.loads((tmp_path / "runs" / "default" / "run.json").read_text())
    assert recorded["dataset"]["source"]["dataset"] == "default"


def test_offline_named_dataset_is_one_line_error(cache, capsys):
    from tfvae.cli import main

    assert main(["train", "--dataset", "frey", "--out", str(cache / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "frey_rawface.mat" in err[0] and "by hand" in err[0], err
    assert not os.path.exists(cache / "run")
