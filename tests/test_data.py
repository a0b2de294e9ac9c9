"""Data loaders: the embedded default and the real files in ../shared/data."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from tfvae.data import datasets as data


def test_default_is_embedded_and_binary():
    d = data.load_default()
    assert d.x_train.shape[1] == 64 and d.image_shape == (8, 8, 1)
    assert len(d.x_train) + len(d.x_test) == 1797
    assert set(np.unique(d.x_train)) <= {0.0, 1.0} and d.binary


def test_default_is_scikit_learns_digits():
    """The embedded file holds scikit-learn's digits, pixel for pixel (the `test` extra
    installs scikit-learn for this check only), with their licence beside it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    with np.load(data.DIGITS_FILE) as npz:
        np.testing.assert_array_equal(npz["images"].reshape(-1, 64), digits.data)
        np.testing.assert_array_equal(npz["labels"], digits.target)
    assert os.path.isfile(os.path.join(os.path.dirname(data.DIGITS_FILE), "DIGITS_LICENSE.txt"))


def test_default_loads_without_scikit_learn():
    """scikit-learn made unimportable (TensorFlow imports it when present): tfvae never needs it."""
    code = (
        "import sys; sys.modules['sklearn'] = None; import tfvae.data.datasets as d; "
        "data = d.load_default(); print(len(data.x_train) + len(data.x_test))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "1797"


def test_mnist_idx(data_dir):
    d = data.load_mnist(data_dir, binarization="none")
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert abs(d.x_train.mean() - 0.130660) < 1e-5  # the README's pixel mean
    np.testing.assert_array_equal(
        np.bincount(d.y_test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    s = data.load_mnist(data_dir, binarization="static", seed=0, subset=1000)
    assert set(np.unique(s.x_train)) == {0.0, 1.0}
    np.testing.assert_array_equal(
        s.x_train, data.load_mnist(data_dir, binarization="static", seed=0, subset=1000).x_train
    )


def test_binarized_mnist(data_dir):
    d = data.load_binarized_mnist(data_dir)
    assert d.x_train.shape == (50000, 784) and d.x_test.shape == (10000, 784)
    assert abs(d.x_test.mean() - 0.13251) < 1e-4


def test_frey_face(data_dir):
    d = data.load_frey_face(data_dir)
    assert d.x_train.shape[1] == 560 and len(d.x_train) + len(d.x_test) == 1965
    assert not d.binary and d.image_shape == (28, 20, 1)
    assert 0 < d.x_train.min() and d.x_train.max() < 1


def test_missing_and_corrupt_files(tmp_path, monkeypatch):
    # conftest sends downloads to a closed port: a missing file is a one-line DownloadError
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz.*by hand"):
        data.load_mnist(str(tmp_path / "nope"))
    (tmp_path / "mnist").mkdir()
    header = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big")
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(tmp_path / "mnist" / f"{stem}.gz", "wb") as f:
            f.write(header + b"\0" * 10)
    with gzip.open(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(
            bytes([0, 0, 8, 3])
            + (10).to_bytes(4, "big")
            + (28).to_bytes(4, "big") * 2
            + b"\0" * 100
        )
    with pytest.raises(ValueError, match="truncated"):
        data.load_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("cifar")
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match="home/.tfvae/datasets/mnist"):
        data.load_mnist()


def test_load_array(tmp_path):
    x = np.random.default_rng(0).random((50, 4, 5)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    d = data.load_array(str(tmp_path / "a.npy"))
    assert d.input_dim == 20 and d.image_shape == (4, 5, 1)
    assert len(d.x_train) + len(d.x_test) == 50 and not d.binary
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        data.load_array(str(tmp_path / "bad.npy"))
