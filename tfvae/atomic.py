"""Atomic writes: every file and directory tfvae writes appears whole or not at all.

One recipe for all of them: write into a hidden temporary sibling, fsync it, rename it onto
the final name (atomic on POSIX within one filesystem), fsync the parent. A crash at any
moment leaves either the old content or the new, plus at most a hidden `.NAME.tmp-*`
sibling that the next write of the same name removes. Nothing existing is replaced unless
the caller says `overwrite=True`.

    write_json("run/metrics.json", {"elbo": -24.4})
    with staged_dir("runs/a/model") as tmp:   # build the directory in tmp ...
        save_into(tmp)                         # ... renamed onto runs/a/model on success
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Iterator, Union

__all__ = [
    "write_bytes",
    "write_text",
    "write_json",
    "write_with",
    "staged_dir",
    "publish_dir",
    "exchange",
    "fsync_dir",
    "fsync_tree",
    "remove_stale_temps",
]

PathLike = Union[str, os.PathLike]


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_mode(path: str, directory: bool) -> None:
    """Gives a temp file/dir the mode `open`/`mkdir` would (mkstemp/mkdtemp make them owner-only),
    so another user (a model server) can read what is published."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def fsync_dir(path: PathLike) -> None:
    """Flushes a directory's entries (a rename into it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: PathLike) -> None:
    """fsyncs every file and directory under `root` (before it is renamed into place)."""
    for dirpath, _, files in os.walk(os.fspath(root)):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(dirpath)


def remove_stale_temps(path: PathLike, older_than: float = 0.0) -> None:
    """Removes the temporary siblings that killed writes of `path` left behind.

    `older_than` (seconds): keep temps modified more recently, which may belong to a write
    still in progress in another process (two downloads of one file, say).
    """
    path = os.path.abspath(os.fspath(path))
    parent, prefix = os.path.dirname(path), _temp_prefix(path)
    if not os.path.isdir(parent):
        return
    for name in os.listdir(parent):
        stale = os.path.join(parent, name)
        if name.startswith(prefix) and _age(stale) >= older_than:
            if os.path.isdir(stale) and not os.path.islink(stale):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(stale)


def _age(path: str) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _check_overwrite(path: str, overwrite: bool) -> None:
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it")


def write_with(path: PathLike, write_fn: Callable[[str], None], overwrite: bool = True) -> str:
    """Calls `write_fn(tmp_path)` to write a file, then moves it atomically onto `path`.

    For writers that want a file name (matplotlib's `savefig`, h5py, TFRecord writers).
    Returns the absolute path written.
    """
    path = os.path.abspath(os.fspath(path))
    _check_overwrite(path, overwrite)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=parent)
    os.close(fd)
    _usual_mode(tmp, directory=False)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:  # link fails if `path` appeared meanwhile: never clobber a concurrent writer
            os.link(tmp, path)
            os.remove(tmp)
        fsync_dir(parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


def write_bytes(path: PathLike, data: bytes, overwrite: bool = True) -> str:
    """Writes `data` to `path` atomically; returns the absolute path."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_with(path, write, overwrite)


def write_text(path: PathLike, text: str, overwrite: bool = True) -> str:
    """Writes UTF-8 `text` to `path` atomically; returns the absolute path."""
    return write_bytes(path, text.encode("utf-8"), overwrite)


def write_json(path: PathLike, obj, overwrite: bool = True, **dump_kwargs) -> str:
    """Writes `obj` as JSON (indented, keys sorted unless told otherwise) atomically."""
    dump_kwargs.setdefault("indent", 2)
    dump_kwargs.setdefault("sort_keys", True)
    return write_text(path, json.dumps(obj, **dump_kwargs) + "\n", overwrite)


def exchange(a: PathLike, b: PathLike) -> bool:
    """Swaps the paths `a` and `b` in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`);
    returns False, touching nothing, where the OS or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    at_cwd, rename_exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), os.fspath(a), None, os.fspath(b))


def publish_dir(tmp: PathLike, target: PathLike, overwrite: bool = False) -> str:
    """Moves the complete directory `tmp` onto `target` (fsynced first).

    An existing `target` is refused (FileExistsError) unless `overwrite`; then the two are
    swapped atomically (`exchange`; where that is not possible, the old one is moved aside
    and the new one renamed in) and the old one is deleted only after that succeeded.
    """
    tmp, target = os.path.abspath(os.fspath(tmp)), os.path.abspath(os.fspath(target))
    fsync_tree(tmp)
    parent = os.path.dirname(target)
    if os.path.lexists(target):
        if not overwrite:
            raise FileExistsError(f"{target!r} already exists; pass overwrite=True to replace it")
        if exchange(tmp, target):  # one atomic step: `target` is never missing
            shutil.rmtree(tmp, ignore_errors=True)  # the old content, now at `tmp`
        else:
            backup = tempfile.mkdtemp(prefix=_temp_prefix(target), dir=parent)
            os.rmdir(backup)  # only the unique name is wanted
            os.rename(target, backup)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(backup, target)
                raise
            shutil.rmtree(backup, ignore_errors=True)
    else:
        try:
            os.rename(tmp, target)
        except OSError as e:
            if os.path.lexists(target):  # appeared meanwhile (ENOTEMPTY/EEXIST)
                raise FileExistsError(
                    f"{target!r} appeared while it was being written (another writer?); "
                    "it was left untouched"
                ) from e
            raise
    fsync_dir(parent)
    return target


@contextlib.contextmanager
def staged_dir(target: PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yields a hidden temporary sibling of `target` to fill; publishes it on success.

    On an exception the temporary directory is removed and `target` is untouched.
    """
    target = os.path.abspath(os.fspath(target))
    _check_overwrite(target, overwrite)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=_temp_prefix(target), dir=parent)
    _usual_mode(tmp, directory=True)
    try:
        yield tmp
        publish_dir(tmp, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
