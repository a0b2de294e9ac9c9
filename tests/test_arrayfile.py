""".npy/.npz files are checked from their header before numpy allocates anything: random bytes,
a header claiming a huge shape, a truncated file, pickled objects, arrays of the wrong rank
and arrays over the size limit are one-line errors naming the file."""

import io
import os
import zipfile

import numpy as np
import pytest

from tfvae.cli import app as cli
from tfvae.data import arrayfile
from tfvae.data import datasets as data


def npy_header(shape, descr="<f4"):
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)),
            r"cannot read array file '.*x\.npy': it is not a \.npy file nor an \.npz archive",
        ),
        (
            lambda p: p.write_bytes(npy_header((10**6, 10**6)) + b"\0" * 64),
            r"'.*x\.npy' is truncated or corrupt: its header says shape \(1000000, 1000000\) of "
            r"float32 \(4000000000000 bytes\) but it holds 64 bytes of data",
        ),
        (
            lambda p: p.write_bytes(npy_header((30, 6)) + b"\0" * 100),
            r"header says shape \(30, 6\) of float32 \(720 bytes\) but it holds 100 bytes",
        ),
        (
            lambda p: np.save(p, np.array([[{}]], dtype=object), allow_pickle=True),
            r"holds Python objects \(dtype object\): tfvae reads numbers only",
        ),
        (
            lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 3}    \n"),
            r"'.*x\.npy' has a corrupt \.npy header",
        ),
        (
            lambda p: np.save(p, np.full((3, 1, 2, 1, 1), 0.5, np.float32)),
            r"\[train\]: expected a non-empty array \[num_examples, D\], \[num_examples, H, W\] "
            r"or \[num_examples, H, W, C\], got shape \(3, 1, 2, 1, 1\) \(rank 5\)",
        ),
        (
            lambda p: np.save(p, np.zeros((0, 4), np.float32)),
            r"expected a non-empty array .* got shape \(0, 4\) \(rank 2\)",
        ),
    ],
)
def test_bad_npy_files_are_refused_before_loading(tmp_path, make, message):
    path = tmp_path / "x.npy"
    make(path)
    with pytest.raises(ValueError, match=message):
        data.load_array(str(path))


def test_npz_members_are_checked_too(tmp_path):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.npy", npy_header((10**6, 10**6)) + b"\0" * 64)
    with pytest.raises(ValueError, match=r"x\.npz'\['train'\] is truncated or corrupt"):
        data.load_array(str(path))
    np.savez(path, x=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"x\.npz' has no array 'train' \(it holds \['x'\]\)"):
        data.load_array(str(path))
    np.savez(path, train=np.full((4, 2), 0.5), test=np.full((3, 1, 1, 1, 2), 0.5))
    with pytest.raises(ValueError, match=r"\[test\]: expected .* \(rank 5\)"):
        data.load_array(str(path))
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match=r"has no array 'x_test'"):
        data.load_mnist(str(path))


def test_an_array_over_the_size_limit_is_refused_naming_it(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.full((64, 16), 0.5, np.float32))  # 4096 bytes
    monkeypatch.setattr(arrayfile, "MAX_ARRAY_BYTES", 4095)
    with pytest.raises(ValueError, match=r"too large to load: shape \(64, 16\) of float32 is 4096"):
        data.load_array(str(tmp_path / "x.npy"))
    monkeypatch.setattr(arrayfile, "MAX_ARRAY_BYTES", 4096)
    assert data.load_array(str(tmp_path / "x.npy")).input_dim == 16


def test_good_files_load_as_before(tmp_path):
    x = np.random.default_rng(0).random((20, 3, 2)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", train=x, test=x[:5])
    a, b = data.load_array(str(tmp_path / "a.npy")), data.load_array(str(tmp_path / "b.npz"))
    assert a.image_shape == b.image_shape == (3, 2, 1)
    np.testing.assert_array_equal(b.x_test, x[:5].reshape(5, 6))
    assert sorted(arrayfile.npz_keys(str(tmp_path / "b.npz"))) == ["test", "train"]
    assert arrayfile.file_kind(str(tmp_path / "b.npz")) == "npz"


def test_cli_names_the_file_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rand.npy").write_bytes(os.urandom(200))
    assert cli.main(["train", "--dataset", "rand.npy", "--out", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'rand.npy': it is not a .npy file" in err, err
    assert "allow_pickle" not in err
    (tmp_path / "huge.npy").write_bytes(npy_header((10**7, 10**7)))
    assert cli.main(["train", "--dataset", "huge.npy", "--out", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'huge.npy' is truncated or corrupt" in err, err
    assert sorted(os.listdir(tmp_path)) == ["huge.npy", "rand.npy"]  # no "o"
