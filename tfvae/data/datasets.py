"""Dataset loaders: `[N, D]` float32 arrays in [0, 1] (pipelines: `tfvae.data.input_pipeline`).

The default dataset, scikit-learn's 8x8 digits, ships inside the package (`tfvae/data/_data`), so
the main job runs with no download and no scikit-learn. MNIST, Larochelle's binarized MNIST
and Frey Face are read from a data directory (an argument, else `$TFVAE_DATA_DIR`, else
`~/.tfvae/datasets`) and downloaded into it on first use (`tfvae.data.download`).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import struct
from typing import Optional, Sequence, Tuple

import numpy as np

from tfvae.config import DATASETS
from tfvae.data import arrayfile
from tfvae.data.download import DATA_DIR_ENV, fetch
from tfvae.data.download import cache_dir as data_dir
from tfvae.data.input_pipeline import (
    make_dataset,  # re-exported: `tfvae.data.datasets.make_dataset` works
)

__all__ = [
    "Data",
    "DATA_DIR_ENV",
    "data_dir",
    "load_default",
    "load_mnist",
    "load_binarized_mnist",
    "is_keras_mnist",
    "find_mnist",
    "load_frey_face",
    "load_array",
    "load_dataset",
    "square_image_shape",
    "with_image_shape",
    "binarize",
    "make_dataset",
    "DATASETS",
]

DIGITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_data", "digits.npz")
KERAS_MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass(frozen=True)
class Data:
    """Train and test splits: `x_*` float32 `[N, D]` in [0, 1], `y_*` int labels or None.

    `binary` says whether x is {0, 1} (Bernoulli decoder) or continuous (Gaussian decoder).
    """

    x_train: np.ndarray
    x_test: np.ndarray
    image_shape: Tuple[int, int, int]
    y_train: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    binary: bool = True
    name: str = ""

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])


def _require_file(path: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path!r}")
    return path


def binarize(x: np.ndarray, method: str = "static", seed: int = 0) -> np.ndarray:
    """Grey levels in [0, 1] to {0, 1}: `static` draws x ~ Bernoulli(p) once with `seed`,
    `threshold` rounds at 0.5, `none` leaves x as it is."""
    if method == "none":
        return x
    if method == "threshold":
        return (x >= 0.5).astype(np.float32)
    if method == "static":
        rng = np.random.default_rng(seed)
        return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
    raise ValueError(
        f"binarize method must be 'static', 'threshold', 'dynamic' or 'none', got {method!r}"
    )


def load_default(binarization: str = "static", test_fraction: float = 0.2, seed: int = 0) -> Data:
    """scikit-learn's 8x8 digits (1797 images, shipped inside tfvae: no download).

    Pixels 0..16 are scaled to [0, 1] then binarized (`binarization`, see `binarize`).
    """
    with np.load(DIGITS_FILE, allow_pickle=False) as npz:
        pixels, labels = npz["images"], npz["labels"]
    x = (pixels.reshape(len(pixels), -1).astype(np.float64) / 16.0).astype(np.float32)
    y = labels.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(round(len(x) * test_fraction))
    x = binarize(x, "none" if binarization == "dynamic" else binarization, seed)
    return Data(
        x[n_test:],
        x[:n_test],
        (8, 8, 1),
        y[n_test:],
        y[:n_test],
        binary=binarization not in ("none", "dynamic"),
        name="default",
    )


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    _require_file(path)
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read IDX file {path!r}: {e}") from e
    if len(raw) < 8:
        raise ValueError(f"{path!r} is not an IDX file: only {len(raw)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path!r} is not a uint8 IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise ValueError(
            f"{path!r} is truncated or corrupt: header says {dims} "
            f"({int(np.prod(dims))} bytes), found {len(body)}"
        )
    return np.frombuffer(body, np.uint8).reshape(dims)


def _first_file(*paths: str) -> Optional[str]:
    return next((p for p in paths if os.path.isfile(p)), None)


_IDX_STEMS = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)


def _idx_splits(folder: str):
    """[(train images, labels), (test images, labels)] from the four IDX files (.gz or not)."""

    def read(stem):
        plain = os.path.join(folder, stem)
        return _read_idx(_first_file(plain + ".gz", plain) or plain + ".gz")

    return [(read(images), read(labels)) for images, labels in _IDX_STEMS]


def _keras_mnist_splits(file: str):
    """The same from Keras' `mnist.npz` (`x_train`, `y_train`, `x_test`, `y_test`, uint8)."""
    try:
        npz = arrayfile.load_npz(file, KERAS_MNIST_KEYS)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read Keras-style MNIST {file!r}: {e}") from e
    splits = [(npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])]
    for x, y in splits:
        if x.dtype != np.uint8 or x.shape[1:] != (28, 28):
            raise ValueError(
                f"{file!r}: expected uint8 images [N, 28, 28], got {x.dtype} {x.shape}"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{file!r}: expected integer labels [N], got {y.dtype} {y.shape}")
    return splits


def is_keras_mnist(path: str) -> bool:
    """Whether `path` is an .npz in Keras' MNIST layout (`x_train`, `y_train`, ...)."""
    try:
        return "x_train" in arrayfile.npz_keys(path)
    except (OSError, ValueError):
        return False


def find_mnist(path: Optional[str] = None) -> str:
    """Where MNIST is: a Keras `mnist.npz` file or a folder of the four IDX files.

    `path` is such a file or folder, or a data directory holding `mnist/` (default
    `$TFVAE_DATA_DIR`, else `~/.tfvae/datasets`); the IDX files are downloaded into
    `<data dir>/mnist` when neither layout is there (`tfvae.data.download.DownloadError` offline).
    """
    if path is not None and os.path.isfile(path):
        return path
    root = data_dir(path)
    for folder in (os.path.join(root, "mnist"), root):
        if all(_first_file(os.path.join(folder, s) + ".gz", os.path.join(folder, s))
               for pair in _IDX_STEMS for s in pair):  # fmt: skip
            return folder
    keras_file = _first_file(
        os.path.join(root, "mnist.npz"), os.path.join(root, "mnist", "mnist.npz")
    )
    return keras_file or fetch("mnist", root)


def load_mnist(
    path: Optional[str] = None,
    binarization: str = "static",
    seed: int = 0,
    subset: Optional[int] = None,
) -> Data:
    """MNIST, 60000/10000, downloaded into the data directory on first use.

    `path`: see `find_mnist` (a data directory, a folder of the IDX files or Keras'
    `mnist.npz`). `binarization`: `static` (one seeded Bernoulli draw), `threshold`,
    `dynamic` (keep grey levels and redraw them every epoch in the input pipeline) or `none`
    (grey levels).
    """
    source = find_mnist(path)
    splits = []
    for x, y in _keras_mnist_splits(source) if os.path.isfile(source) else _idx_splits(source):
        x = x.reshape(len(x), -1).astype(np.float32) / 255.0
        y = y.astype(np.int64)
        if len(x) != len(y):
            raise ValueError(f"MNIST: {len(x)} images but {len(y)} labels")
        if subset:
            x, y = x[:subset], y[:subset]
        splits.append((x, y))
    (x_tr, y_tr), (x_te, y_te) = splits
    method = "none" if binarization == "dynamic" else binarization
    x_tr = binarize(x_tr, method, seed)
    x_te = binarize(x_te, method, seed + 1)
    return Data(x_tr, x_te, (28, 28, 1), y_tr, y_te, binary=method != "none", name="mnist")


_AMAT_ROW = 2 * 784  # "0 1 0 ... 1\n": one digit and one separator per pixel


def _read_amat(file: str) -> np.ndarray:
    """One of Larochelle's `binarized_mnist_*.amat` text files as uint8 `[N, 784]`."""
    with open(_require_file(file), "rb") as f:
        raw = np.frombuffer(f.read(), np.uint8)
    if len(raw) == 0 or len(raw) % _AMAT_ROW:
        raise ValueError(f"{file!r} is not a binarized MNIST .amat file ({len(raw)} bytes)")
    rows = raw.reshape(-1, _AMAT_ROW)
    digits, separators = rows[:, 0::2] - ord("0"), rows[:, 1::2]
    if (
        (digits > 1).any()
        or (separators[:, :-1] != ord(" ")).any()
        or (separators[:, -1] != ord("\n")).any()
    ):
        raise ValueError(f"{file!r} is not a binarized MNIST .amat file (784 0/1 digits a row)")
    return digits


def _binarized_mnist_splits(path: Optional[str]):
    """(train, valid, test) from `binarized_mnist.npz` or the three .amat files."""
    root = data_dir(path)
    npz_file = _first_file(
        os.path.join(root, "binarized_mnist", "binarized_mnist.npz"),
        os.path.join(root, "binarized_mnist.npz"),
    )
    if npz_file:
        try:
            npz = arrayfile.load_npz(npz_file, ("train", "valid", "test"))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {npz_file!r} (need keys train/valid/test): {e}") from e
        for key, x in npz.items():
            if x.ndim != 2 or x.shape[1] != 784:
                raise ValueError(f"{npz_file!r}[{key!r}]: expected [N, 784], got shape {x.shape}")
        return tuple(npz[k] for k in ("train", "valid", "test"))
    names = [f"binarized_mnist_{split}.amat" for split in ("train", "valid", "test")]
    for folder in (os.path.join(root, "binarized_mnist"), root):
        if all(os.path.isfile(os.path.join(folder, n)) for n in names):
            break
    else:
        folder = fetch("binarized_mnist", root)
    return tuple(_read_amat(os.path.join(folder, n)) for n in names)


def load_binarized_mnist(path: Optional[str] = None, use_valid_for_train: bool = False) -> Data:
    """Larochelle's static binarized MNIST (50000/10000/10000), the likelihood benchmark.

    Read from `binarized_mnist/` in the data directory: the three `binarized_mnist_*.amat`
    files (downloaded there on first use) or one `binarized_mnist.npz` (keys train/valid/test).
    """
    train, valid, test = (s.astype(np.float32) for s in _binarized_mnist_splits(path))
    if use_valid_for_train:
        train = np.concatenate([train, valid])
    return Data(train, test, (28, 28, 1), binary=True, name="binarized_mnist")


def load_frey_face(path: Optional[str] = None, test_fraction: float = 0.1, seed: int = 0) -> Data:
    """Frey Face: 1965 grey 28x20 faces scaled to [0, 1], continuous (App. C.2's Gaussian case).

    `path`: `frey_rawface.mat` itself, or a data directory holding it (in `frey/`, downloaded
    there on first use).
    """
    from scipy.io import loadmat

    if path is not None and os.path.isfile(path):
        file = path
    else:
        root = data_dir(path)
        file = _first_file(
            os.path.join(root, "frey", "frey_rawface.mat"), os.path.join(root, "frey_rawface.mat")
        ) or os.path.join(fetch("frey", root), "frey_rawface.mat")
    try:
        ff = loadmat(_require_file(file))["ff"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read Frey Face from {file!r}: {e}") from e
    x = ff.T.astype(np.float32) / 255.0  # [1965, 560]
    order = np.random.default_rng(seed).permutation(len(x))
    x = x[order]
    n_test = int(round(len(x) * test_fraction))
    return Data(x[n_test:], x[:n_test], (28, 20, 1), binary=False, name="frey")


MIN_RGB_SIDE = 8  # D = 3 s^2 reads as s x s RGB from 8 x 8 up (D = 12 is not a picture)


def square_image_shape(input_dim: int) -> Optional[Tuple[int, int, int]]:
    """The image a flat example of `input_dim` values most likely is: `(s, s, 1)` when
    D = s^2, `(s, s, 3)` (channels last) when D = 3 s^2 and s >= `MIN_RGB_SIDE`, else None.

    A flat `[N, 784]` array is MNIST-shaped; drawn as one row of 784 pixels it looks blank.
    (3 s^2 is never a square, so the two cases cannot both hold.)
    """
    d = int(input_dim)
    side = math.isqrt(d)
    if side >= 2 and side * side == d:
        return (side, side, 1)
    side = math.isqrt(d // 3)
    if d % 3 == 0 and side >= MIN_RGB_SIDE and 3 * side * side == d:
        return (side, side, 3)
    return None


def with_image_shape(data: Data, image_shape: Sequence[int]) -> Data:
    """`data` drawn as `image_shape` (`(H, W, C)`, or `(H, W)` for one channel), checked to
    hold its D values per example."""
    shape = tuple(int(s) for s in image_shape) + ((1,) if len(image_shape) == 2 else ())
    if len(shape) != 3 or min(shape) < 1 or math.prod(shape) != data.input_dim:
        raise ValueError(
            f"image shape {tuple(image_shape)} does not fit {data.name or 'the data'}: it has "
            f"{data.input_dim} values per example, so give H, W, C with H * W * C = "
            f"{data.input_dim}"
        )
    return dataclasses.replace(data, image_shape=shape)


def load_array(
    path: str,
    test_fraction: float = 0.1,
    seed: int = 0,
    image_shape: Optional[Sequence[int]] = None,
) -> Data:
    """A `.npy` array `[N, D]`, `[N, H, W]` or `[N, H, W, C]`, or an `.npz` with `train` (and
    `test`) arrays, values in [0, 1]. Headers are checked before loading (`data.arrayfile`).

    The image shape is `image_shape` if given, else the array's own, else for `[N, D]` square
    images (`square_image_shape`), else one row of D pixels.
    """
    _require_file(path)
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    try:
        if arrayfile.file_kind(path) == "npz":
            arrays = arrayfile.load_npz(path, ("train",), ("test",))
            x_train, x_test = arrays["train"], arrays.get("test")
        else:
            x_train, x_test = arrayfile.load_npy(path), None
    except OSError as e:
        raise ValueError(f"cannot read array file {path!r}: {e}") from e
    for split, x in (("train", x_train), ("test", x_test)):
        if x is not None and not (2 <= x.ndim <= 4 and len(x) > 0):
            raise ValueError(
                f"{path!r}[{split}]: expected a non-empty array [num_examples, D], "
                f"[num_examples, H, W] or [num_examples, H, W, C], got shape {x.shape} "
                f"(rank {x.ndim})"
            )
    shape = (tuple(x_train.shape[1:]) + (1,))[:3]  # [N, H, W] or [N, H, W, C]
    if x_train.ndim == 2:
        d = int(x_train.shape[1])
        shape = square_image_shape(d) or (1, d, 1)
    from tfvae.data.validation import check_array

    def flat(a, split):
        a = a.reshape(len(a), -1)
        return check_array(a, a.shape[1], f"{path!r}[{split}]", what="features", as_numpy=True)

    x_train = flat(x_train, "train")
    if x_test is None:
        order = np.random.default_rng(seed).permutation(len(x_train))
        n_test = max(1, int(round(len(x_train) * test_fraction)))
        if n_test >= len(x_train):
            raise ValueError(_too_few_rows_to_split(path, len(x_train), test_fraction))
        x_train, x_test = x_train[order[n_test:]], x_train[order[:n_test]]
    else:
        x_test = flat(x_test, "test")
    binary = bool(np.isin(x_train, (0.0, 1.0)).all())
    data = Data(x_train, x_test, shape, binary=binary, name=os.path.basename(path))
    return data if image_shape is None else with_image_shape(data, image_shape)


def _too_few_rows_to_split(path: str, rows: int, test_fraction: float) -> str:
    """Why one array cannot be split into a train and a test split, and what to do."""
    needed = rows + 1
    while max(1, int(round(needed * test_fraction))) >= needed:
        needed += 1
    return (
        f"{path!r} holds {rows} example{'s' if rows != 1 else ''}, too few to split: the test "
        f"split takes {test_fraction:g} of the rows (at least one) and training needs at least "
        f"one, so give at least {needed} rows, or an .npz with 'train' and 'test' arrays"
    )


def load_dataset(
    name: str,
    path: Optional[str] = None,
    binarization: str = "static",
    seed: int = 0,
    image_shape: Optional[Sequence[int]] = None,
) -> Data:
    """A dataset by name: `default`, `mnist`, `binarized_mnist`, `frey`, or a .npy/.npz path
    (an .npz in Keras' MNIST layout loads as `mnist`); `image_shape`, if given, replaces the
    data's own (`with_image_shape`)."""
    if name == "default":
        data = load_default(binarization=binarization, seed=seed)
    elif name == "mnist":
        data = load_mnist(path, binarization=binarization, seed=seed)
    elif name == "binarized_mnist":
        data = load_binarized_mnist(path)
    elif name == "frey":
        data = load_frey_face(path, seed=seed)
    elif name.endswith(".npz") and is_keras_mnist(name):
        data = load_mnist(name, binarization=binarization, seed=seed)
    elif name.endswith((".npy", ".npz")):
        data = load_array(name, seed=seed)
    else:
        raise ValueError(
            f"unknown dataset {name!r}: expected one of {DATASETS} or a .npy/.npz path"
        )
    return data if image_shape is None else with_image_shape(data, image_shape)
