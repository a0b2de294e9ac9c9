"""Dataset loaders: `[N, D]` float32 arrays in [0, 1] (pipelines: `tfvae.input_pipeline`).

The default dataset ships inside scikit-learn (8x8 digits), so the main job runs with no
download. MNIST (IDX or the static-binarized npz) and Frey Face are read from files under a
data directory: an argument, else `$TFVAE_DATA_DIR`.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
from typing import Optional, Tuple

import numpy as np

from tfvae.input_pipeline import make_dataset  # re-exported: `tfvae.data.make_dataset` works

__all__ = [
    "Data",
    "DATA_DIR_ENV",
    "data_dir",
    "load_default",
    "load_mnist",
    "load_binarized_mnist",
    "load_frey_face",
    "load_array",
    "load_dataset",
    "binarize",
    "make_dataset",
    "DATASETS",
]

DATA_DIR_ENV = "TFVAE_DATA_DIR"
DATASETS = ("default", "mnist", "binarized_mnist", "frey")


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


def data_dir(path: Optional[str] = None) -> str:
    """The data directory: `path`, else `$TFVAE_DATA_DIR`; a clear error if neither exists."""
    path = path or os.environ.get(DATA_DIR_ENV)
    if not path:
        raise FileNotFoundError(f"no data directory given: pass one or set ${DATA_DIR_ENV}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"data directory not found: {path!r}")
    return path


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
    """scikit-learn's 8x8 digits (1797 images, shipped with the package: no download).

    Pixels 0..16 are scaled to [0, 1] then binarized (`binarization`, see `binarize`).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
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


def load_mnist(
    path: Optional[str] = None,
    binarization: str = "static",
    seed: int = 0,
    subset: Optional[int] = None,
) -> Data:
    """MNIST from the four IDX files in `<data dir>/mnist` (or `path` itself), 60000/10000.

    `binarization`: `static` (one seeded Bernoulli draw), `threshold`, `dynamic` (keep
    grey levels and redraw them every epoch in the input pipeline) or `none` (grey levels).
    """
    root = data_dir(path)
    if os.path.isdir(os.path.join(root, "mnist")):
        root = os.path.join(root, "mnist")

    def read(stem):
        return _read_idx(
            os.path.join(root, f"{stem}.gz")
            if os.path.isfile(os.path.join(root, f"{stem}.gz"))
            else os.path.join(root, stem)
        )

    splits = []
    for images, labels in (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        x = read(images).reshape(-1, 784).astype(np.float32) / 255.0
        y = read(labels).astype(np.int64)
        if len(x) != len(y):
            raise ValueError(f"{images}: {len(x)} images but {len(y)} labels")
        if subset:
            x, y = x[:subset], y[:subset]
        splits.append((x, y))
    (x_tr, y_tr), (x_te, y_te) = splits
    method = "none" if binarization == "dynamic" else binarization
    x_tr = binarize(x_tr, method, seed)
    x_te = binarize(x_te, method, seed + 1)
    return Data(x_tr, x_te, (28, 28, 1), y_tr, y_te, binary=method != "none", name="mnist")


def load_binarized_mnist(path: Optional[str] = None, use_valid_for_train: bool = False) -> Data:
    """Larochelle's static binarized MNIST (50000/10000/10000), the likelihood benchmark."""
    root = data_dir(path)
    file = os.path.join(root, "binarized_mnist", "binarized_mnist.npz")
    if not os.path.isfile(file):
        file = os.path.join(root, "binarized_mnist.npz")
    try:
        with np.load(_require_file(file), allow_pickle=False) as npz:
            train, valid, test = (npz[k].astype(np.float32) for k in ("train", "valid", "test"))
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read {file!r} (need keys train/valid/test): {e}") from e
    if use_valid_for_train:
        train = np.concatenate([train, valid])
    return Data(train, test, (28, 28, 1), binary=True, name="binarized_mnist")


def load_frey_face(path: Optional[str] = None, test_fraction: float = 0.1, seed: int = 0) -> Data:
    """Frey Face: 1965 grey 28x20 faces scaled to [0, 1], continuous (App. C.2's Gaussian case)."""
    from scipy.io import loadmat

    root = data_dir(path) if path is None or os.path.isdir(path) else None
    file = path if root is None else os.path.join(root, "frey", "frey_rawface.mat")
    if root is not None and not os.path.isfile(file):
        file = os.path.join(root, "frey_rawface.mat")
    try:
        ff = loadmat(_require_file(file))["ff"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read Frey Face from {file!r}: {e}") from e
    x = ff.T.astype(np.float32) / 255.0  # [1965, 560]
    order = np.random.default_rng(seed).permutation(len(x))
    x = x[order]
    n_test = int(round(len(x) * test_fraction))
    return Data(x[n_test:], x[:n_test], (28, 20, 1), binary=False, name="frey")


def load_array(
    path: str,
    test_fraction: float = 0.1,
    seed: int = 0,
    image_shape: Optional[Tuple[int, int, int]] = None,
) -> Data:
    """A `.npy` array `[N, ...]` or `.npz` with `train` (and `test`) keys, values in [0, 1]."""
    _require_file(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read array file {path!r}: {e}") from e
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if "train" not in loaded:
                raise ValueError(f"{path!r}: an .npz needs a 'train' array, has {loaded.files}")
            x_train = loaded["train"]
            x_test = loaded["test"] if "test" in loaded else None
    else:
        x_train, x_test = loaded, None
    if x_train.ndim < 2 or len(x_train) == 0:
        raise ValueError(
            f"{path!r}: expected an array [num_examples, ...], got shape {x_train.shape}"
        )
    shape = image_shape or (
        tuple(x_train.shape[1:]) + (1,)
        if x_train.ndim == 3
        else tuple(x_train.shape[1:])
        if x_train.ndim == 4
        else (1, int(x_train.shape[1]), 1)
    )
    from tfvae.validation import check_array

    def flat(a, split):
        a = a.reshape(len(a), -1)
        return check_array(a, a.shape[1], f"{path!r}[{split}]", what="features").numpy()

    x_train = flat(x_train, "train")
    if x_test is None:
        order = np.random.default_rng(seed).permutation(len(x_train))
        n_test = max(1, int(round(len(x_train) * test_fraction)))
        x_train, x_test = x_train[order[n_test:]], x_train[order[:n_test]]
    else:
        x_test = flat(x_test, "test")
    binary = bool(np.isin(x_train, (0.0, 1.0)).all())
    return Data(x_train, x_test, shape, binary=binary, name=os.path.basename(path))


def load_dataset(
    name: str, path: Optional[str] = None, binarization: str = "static", seed: int = 0
) -> Data:
    """A dataset by name: `default`, `mnist`, `binarized_mnist`, `frey`, or a .npy/.npz path."""
    if name == "default":
        return load_default(binarization=binarization, seed=seed)
    if name == "mnist":
        return load_mnist(path, binarization=binarization, seed=seed)
    if name == "binarized_mnist":
        return load_binarized_mnist(path)
    if name == "frey":
        return load_frey_face(path, seed=seed)
    if name.endswith((".npy", ".npz")):
        return load_array(name, seed=seed)
    raise ValueError(f"unknown dataset {name!r}: expected one of {DATASETS} or a .npy/.npz path")
