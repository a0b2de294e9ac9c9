"""Dataset files fetched on first use into a cache, verified by sha256, placed atomically.

Like `keras.utils.get_file`: `fetch("mnist")` returns `<cache>/mnist` holding the files,
downloading the missing ones from their public source (or `$TFVAE_DATASETS_URL/<dataset>/`)
the first time. The cache is `$TFVAE_DATA_DIR`, else `~/.tfvae/datasets`. A download is
written to a hidden temporary sibling and renamed into place only once its size and sha256
match the pinned values, so a killed download leaves nothing that looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import sys
import urllib.request
from typing import Optional, Tuple

from tfvae.base import atomic

__all__ = [
    "DATA_DIR_ENV",
    "DATASETS_URL_ENV",
    "DEFAULT_CACHE_DIR",
    "DownloadError",
    "Remote",
    "SOURCES",
    "cache_dir",
    "fetch",
]

DATA_DIR_ENV = "TFVAE_DATA_DIR"
DATASETS_URL_ENV = "TFVAE_DATASETS_URL"  # replaces every source's base: BASE/<dataset>/<file>
DEFAULT_CACHE_DIR = os.path.join("~", ".tfvae", "datasets")
_CHUNK = 1 << 16
# A temp file not written to for this long is a killed download's (a live one grows by the
# chunk); younger ones may be another process's download of the same file, and are kept.
STALE_DOWNLOAD_SECONDS = 600


class DownloadError(FileNotFoundError):
    """A dataset file is missing and could not be downloaded (offline, corrupt, cut short)."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """One file of a dataset: its name, its size in bytes and its sha256."""

    name: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a dataset's files come from: a base URL and the files under it."""

    url: str
    files: Tuple[Remote, ...]


# Hashes: ../shared/data/README.md. The three .amat files are Larochelle's; their sha256 was
# computed from the shared npz written back as text, whose md5 and git blob ids match the
# originals' (that README lists both).
SOURCES = {
    "mnist": Source(
        # The CVDF mirror of yann.lecun.com/exdb/mnist (which now refuses most downloads).
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        (
            Remote(
                "train-images-idx3-ubyte.gz",
                9912422,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            Remote(
                "train-labels-idx1-ubyte.gz",
                28881,
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
            Remote(
                "t10k-images-idx3-ubyte.gz",
                1648877,
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            Remote(
                "t10k-labels-idx1-ubyte.gz",
                4542,
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
    ),
    "binarized_mnist": Source(
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
        (
            Remote(
                "binarized_mnist_train.amat",
                78400000,
                "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
            ),
            Remote(
                "binarized_mnist_valid.amat",
                15680000,
                "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
            ),
            Remote(
                "binarized_mnist_test.amat",
                15680000,
                "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
            ),
        ),
    ),
    "frey": Source(
        "https://cs.nyu.edu/~roweis/data/",
        (
            Remote(
                "frey_rawface.mat",
                1100584,
                "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64",
            ),
        ),
    ),
}


def cache_dir(path: Optional[str] = None) -> str:
    """The data directory: `path`, else `$TFVAE_DATA_DIR`, else `~/.tfvae/datasets`."""
    return os.path.expanduser(path or os.environ.get(DATA_DIR_ENV) or DEFAULT_CACHE_DIR)


def _base_url(dataset: str) -> str:
    override = os.environ.get(DATASETS_URL_ENV)
    if override:
        return f"{override.rstrip('/')}/{dataset}/"
    return SOURCES[dataset].url


def _progress(name: str, done: int, total: int, end: bool = False) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "=" * filled + ">" * (filled < width) + " " * (width - filled - 1)
    sys.stderr.write(
        f"\r{name}: [{bar[:width]}] {done / 1e6:6.1f}/{total / 1e6:.1f} MB" + ("\n" if end else "")
    )
    sys.stderr.flush()


def _download(url: str, remote: Remote, target: str, timeout: float, progress: bool) -> None:
    """Streams `url` into a temporary sibling of `target`; renames it there if it verifies."""

    def write(tmp: str) -> None:
        digest, done = hashlib.sha256(), 0
        with open(tmp, "wb") as f:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if done > remote.size:
                    raise DownloadError(f"larger than the expected {remote.size} bytes")
                if progress:
                    _progress(remote.name, done, remote.size)
        if progress:
            _progress(remote.name, done, remote.size, end=True)
        if done != remote.size:
            raise DownloadError(f"cut short: {done} of {remote.size} bytes arrived")
        if digest.hexdigest() != remote.sha256:
            raise DownloadError(
                f"sha256 {digest.hexdigest()}, expected {remote.sha256}: a different or "
                "corrupt file"
            )

    atomic.check_space(target, remote.size)  # a full disk is known before the download
    # Connect first: an unreachable host leaves not even an empty folder behind.
    with urllib.request.urlopen(url, timeout=timeout) as response:
        # What a killed download left behind; a younger temp may be another process's download.
        atomic.remove_stale_temps(target, older_than=STALE_DOWNLOAD_SECONDS)
        # verified: any copy already there is the same
        atomic.write_with(target, write, needed=remote.size)


def _by_hand(dataset: str, folder: str, missing) -> str:
    names = ", ".join(r.name for r in missing)
    return f"download {names} from {_base_url(dataset)} into {folder}/ by hand"


def fetch(
    dataset: str,
    path: Optional[str] = None,
    progress: Optional[bool] = None,
    timeout: float = 30.0,
) -> str:
    """The folder `<cache>/<dataset>` with every file of `dataset`, downloading missing ones.

    Args:
      dataset: a key of `SOURCES`: `mnist`, `binarized_mnist` or `frey`.
      path: the cache (see `cache_dir`). Default value: `$TFVAE_DATA_DIR` or `~/.tfvae/datasets`.
      progress: draw a progress bar on stderr. Default value: when stderr is a terminal.
      timeout: seconds without an answer before a connection is given up.

    Returns:
      The folder's path. Files already there are used as they are (no hash check).

    Raises:
      DownloadError: a file could not be fetched or verified; the one-line message names the
        files, their URL and the folder to place them in by hand. Nothing is left in place.
      tfvae.base.atomic.DiskFullError: the disk has no room for a file (checked before the
        download, and raised if it fills meanwhile); the temporary is removed.
    """
    if dataset not in SOURCES:
        raise ValueError(f"no download for dataset {dataset!r}: expected one of {tuple(SOURCES)}")
    folder = os.path.join(cache_dir(path), dataset)
    missing = [
        r for r in SOURCES[dataset].files if not os.path.isfile(os.path.join(folder, r.name))
    ]
    if progress is None:
        progress = sys.stderr.isatty()
    for remote in missing:
        url = _base_url(dataset) + remote.name
        try:
            _download(url, remote, os.path.join(folder, remote.name), timeout, progress)
        except atomic.DiskFullError:
            raise  # one line naming the file and the space it needs, not "cannot download"
        except (OSError, ValueError, http.client.HTTPException) as e:
            reason = " ".join(str(getattr(e, "reason", None) or e).split()) or type(e).__name__
            raise DownloadError(
                f"{dataset}: cannot download {url} ({reason}); "
                f"{_by_hand(dataset, folder, missing)}, or point $TFVAE_DATA_DIR at a "
                "folder holding them"
            ) from e
    return folder
