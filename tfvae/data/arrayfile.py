""".npy and .npz files read safely: every array's header is checked before it is loaded.

`np.load` believes the header: one claiming a huge shape allocates until `MemoryError`, and a
file that is not an array at all gets numpy's advice to load it with `allow_pickle=True`.
Here the magic bytes, the dtype and the shape come first, checked against the bytes the file
really holds and `tfvae.config.MAX_ARRAY_BYTES`; each problem is one `ValueError` line
naming the file (and the array, in an .npz). Pickles are never loaded.

    x = load_npy("x.npy")
    arrays = load_npz("data.npz", required=("train",), optional=("test",))
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import IO, Dict, Sequence

import numpy as np

from tfvae.config import MAX_ARRAY_BYTES

__all__ = ["file_kind", "load_npy", "load_npz", "npz_keys"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # an archive that holds no file starts with its end record


def file_kind(path: str) -> str:
    """ "npy" or "npz" from the file's first bytes (whatever its name says)."""
    with open(path, "rb") as f:
        start = f.read(6)
    if start == _NPY_MAGIC:
        return "npy"
    if start[:4] == _ZIP_MAGIC:
        return "npz"
    if not start or start[:4] == _EMPTY_ZIP_MAGIC:  # a zip's end record, with nothing before
        what = "an empty zip archive (no arrays in it)" if start else "an empty file (0 bytes)"
        raise ValueError(
            f"cannot read array file {path!r}: it is {what}; write the data with "
            "np.save(path, x) or np.savez(path, train=x_train, test=x_test)"
        )
    raise ValueError(
        f"cannot read array file {path!r}: it is not a .npy file nor an .npz archive (it "
        f"starts with {start!r}, not numpy's or zip's magic bytes)"
    )


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n} bytes"


def _check_header(f: IO[bytes], available: int, name: str) -> None:
    """Reads and checks the .npy header at `f`; `available`: the bytes from the header's start
    to the end of the array data (file or archive member size)."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, SyntaxError, TypeError) as e:
        raise ValueError(f"{name} has a corrupt .npy header: {e}") from e
    if dtype.hasobject:
        raise ValueError(
            f"{name} holds Python objects (dtype {dtype}): tfvae reads numbers only and never "
            "loads pickles"
        )
    needed = math.prod(shape) * dtype.itemsize
    held = available - f.tell()
    if needed != held:
        raise ValueError(
            f"{name} is truncated or corrupt: its header says shape {shape} of {dtype} "
            f"({needed} bytes) but it holds {held} bytes of data"
        )
    if needed > MAX_ARRAY_BYTES:
        raise ValueError(
            f"{name} is too large to load: shape {shape} of {dtype} is {_size(needed)}, more "
            f"than tfvae's limit of {_size(MAX_ARRAY_BYTES)} per array"
        )


def load_npy(path: str) -> np.ndarray:
    """The array in the .npy file `path`, after its header passed the checks."""
    if file_kind(path) != "npy":
        raise ValueError(f"{path!r} is an .npz archive, not a .npy file")
    with open(path, "rb") as f:
        _check_header(f, os.fstat(f.fileno()).st_size, repr(path))
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read array file {path!r}: {e}") from e


def npz_keys(path: str) -> list:
    """The names of the arrays in the .npz archive `path`."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path!r} is not a readable .npz archive: {e}") from e
    return [n[: -len(".npy")] for n in names if n.endswith(".npy")]


def load_npz(
    path: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Dict[str, np.ndarray]:
    """{name: array} of the `required` arrays (a missing one is an error naming the ones
    there) and of those `optional` ones present, each header checked before loading."""
    keys = npz_keys(path)
    missing = [k for k in required if k not in keys]
    if missing:
        raise ValueError(f"{path!r} has no array {missing[0]!r} (it holds {keys})")
    wanted = [k for k in (*required, *optional) if k in keys]
    with zipfile.ZipFile(path) as archive:
        for key in wanted:
            member = archive.getinfo(key + ".npy")
            try:
                with archive.open(member) as f:
                    _check_header(f, member.file_size, f"{path!r}[{key!r}]")
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise ValueError(f"cannot read {key!r} in .npz archive {path!r}: {e}") from e
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in wanted}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as e:
        raise ValueError(f"cannot read .npz archive {path!r}: {e}") from e
