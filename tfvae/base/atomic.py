"""Atomic writes: every file and directory tfvae writes appears whole or not at all.

One recipe for all of them: write into a hidden temporary sibling, fsync it, rename it onto
the final name (atomic on POSIX within one filesystem), fsync the parent. A crash at any
moment leaves either the old content or the new, plus at most a hidden `.NAME.tmp-*`
sibling that the next write of the same name removes. Nothing existing is replaced unless
the caller says `overwrite=True`. A write that fails for lack of space (an `OSError` ENOSPC,
or TensorFlow's `ResourceExhaustedError` from a file write) removes its temporary and raises
`DiskFullError`, one line naming the final file, the space free in its folder and what it
needed.

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
import re
import shutil
import tempfile
import time
from typing import Callable, Iterator, Optional, Tuple, Union

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
    "DiskFullError",
    "is_disk_full",
    "as_disk_full",
    "raise_if_disk_full",
    "check_space",
    "check_overwrite",
    "free_space",
    "bytes_in",
]

PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------------- a full disk
# What the C library says for ENOSPC / EDQUOT; TensorFlow's file errors carry this text.
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")
_TF_FULL_PATH = re.compile(r"(/\S+?);? (?:No space left on device|Disk quota exceeded)")


def _human(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def _existing_folder(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def free_space(folder: PathLike) -> Optional[int]:
    """Bytes this process may still write in `folder`'s filesystem (root may also use the
    blocks reserved for it), or None where the filesystem does not say."""
    try:
        st = os.statvfs(os.fspath(folder))
    except (OSError, AttributeError):
        return None
    if st.f_blocks == 0:  # a pseudo or network filesystem that keeps no count
        return None
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


class DiskFullError(OSError):
    """A write failed, or would fail, for lack of space (errno ENOSPC).

    The message is one line: the file that was being written (its final name), the space
    free in its folder, and the bytes it needs where known. `path`, `free` and `needed`
    (None where unknown) hold the same facts.
    """

    def __init__(self, path: Optional[PathLike], needed: Optional[int] = None, written: int = 0):
        self.path = None if path is None else os.path.abspath(os.fspath(path))
        self.needed = needed
        if self.path is None:
            self.free, where = None, "a file it did not name"
        else:
            folder = _existing_folder(self.path)
            self.free = free_space(folder)
            free = "unknown" if self.free is None else _human(self.free)
            where = f"{self.path!r} ({free} free in {folder!r}"
            if needed is not None:
                where += f", {_human(needed)} needed)"
            elif written:
                where += f"; {_human(written)} were written before it filled)"
            else:
                where += ")"
        super().__init__(errno.ENOSPC, f"no space left on device to write {where}", self.path)

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` says the disk (or the user's quota) is full: an OSError ENOSPC/EDQUOT
    (Python's writes, h5py, matplotlib) or TensorFlow's `ResourceExhaustedError` from a file
    write, which is not an OSError (the same class also reports out-of-memory, whose message
    differs)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return type(error).__name__ == "ResourceExhaustedError" and any(
        text in str(error) for text in _FULL_TEXTS
    )


def as_disk_full(error: BaseException, path: Optional[PathLike] = None) -> DiskFullError:
    """`error` (see `is_disk_full`) as a `DiskFullError` naming `path`, else the file the
    error names (an OSError's filename, the path in TensorFlow's message)."""
    if isinstance(error, DiskFullError):
        return error
    if path is None:
        path = getattr(error, "filename", None)
    if path is None:
        found = _TF_FULL_PATH.search(str(error))
        path = found.group(1) if found else None
    return DiskFullError(path)


def raise_if_disk_full(
    error: BaseException,
    path: PathLike,
    needed: Optional[int] = None,
    written: int = 0,
    temp: Optional[str] = None,
) -> None:
    """Raises `DiskFullError(path, needed, written)` from `error` if it says the disk is full.

    A `DiskFullError` already raised for another file is raised as it is, unless that file
    lies in `temp`, the temporary being written for `path` (then `path` is named).
    """
    if isinstance(error, DiskFullError):
        temp = None if temp is None else os.path.abspath(temp)
        inner = temp is not None and error.path is not None
        if not (inner and os.path.commonpath([error.path, temp]) == temp):
            raise error
    if is_disk_full(error):
        raise DiskFullError(path, needed, written) from error


def check_space(path: PathLike, needed: int) -> None:
    """Raises `DiskFullError` before writing `needed` bytes to `path` if its folder has less
    free (filesystems that report no count are not checked)."""
    free = free_space(_existing_folder(os.fspath(path)))
    if free is not None and needed > free:
        raise DiskFullError(path, needed)


def bytes_in(path: Optional[PathLike]) -> int:
    """Bytes in the file or directory tree `path` (0 if absent)."""
    if path is None or not os.path.lexists(path):
        return 0
    path = os.fspath(path)
    if not os.path.isdir(path):
        return os.path.getsize(path)
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dirpath, name))
    return total


# ------------------------------------------------------------------------- temporaries
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


def _writable_target(path: PathLike, overwrite: bool) -> Tuple[str, str]:
    """`path` made absolute, and its parent; refused if it exists and `overwrite` is off."""
    path = os.path.abspath(os.fspath(path))
    check_overwrite(path, overwrite)
    return path, os.path.dirname(path)


def check_overwrite(path: str, overwrite: bool) -> None:
    """Raises FileExistsError if `path` exists and `overwrite` is False."""
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it")


def _about_the_write(error: BaseException, path: str, tmp: Optional[str]) -> bool:
    """Whether `error` is an OSError of this write itself: it names the temporary (or a file
    in it), `path` or one of its folders, rather than some other file a writer read."""
    if not isinstance(error, OSError):
        return False
    names = [n for n in (error.filename, error.filename2) if n is not None]
    if not names:
        return tmp is not None and tmp in str(error)  # h5py puts the name in the text
    for name in names:
        name = os.path.abspath(os.fsdecode(name))
        if tmp is not None and (name == tmp or name.startswith(tmp + os.sep)):
            return True
        if os.path.dirname(name) == os.path.dirname(path) and os.path.basename(name).startswith(
            _temp_prefix(path)
        ):  # a temporary not yet made (mkstemp failed)
            return True
        if name == path or path.startswith(name.rstrip(os.sep) + os.sep):
            return True
    return False


def _naming_the_target(error: OSError, path: str, what: str) -> OSError:
    """`error` (a failed write of `path`'s temporary, say) as the same kind of OSError whose
    one-line message names `path`, the name the caller gave, and why it cannot be written."""
    parent, folder = os.path.dirname(path), _existing_folder(path)
    why = error.strerror or str(error)
    if isinstance(error, FileExistsError):
        message = f"{path!r} appeared while it was being written (another writer?); it was left"
        return _same_kind(error, message + " untouched")
    remedy = "choose a path in a folder you can write to"
    if folder != parent:
        why = f"its folder {parent!r} cannot be created in {folder!r} ({why})"
    elif error.errno == errno.ENOENT:  # /proc, /sys: the folder is there, new names are not
        why = f"its folder {folder!r} exists but takes no new files ({why})"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"{why} in its folder {folder!r}"
    else:  # about the path itself (a directory there, a name too long)
        remedy = "choose another path"
    return _same_kind(error, f"cannot write the {what} {path!r}: {why}; {remedy}")


def _same_kind(error: OSError, message: str) -> OSError:
    """An OSError of `error`'s class and errno whose str() is `message` alone."""
    new = type(error)(message)
    new.errno = error.errno  # no strerror or filename: str() stays the message
    return new


def write_with(
    path: PathLike,
    write_fn: Callable[[str], None],
    overwrite: bool = True,
    needed: Optional[int] = None,
) -> str:
    """Calls `write_fn(tmp_path)` to write a file, then moves it atomically onto `path`.

    For writers that want a file name (matplotlib's `savefig`, h5py, TFRecord writers).
    `needed`, the file's size if known, goes into the `DiskFullError` of a full disk.
    Returns the absolute path written.
    """
    path, parent = _writable_target(path, overwrite)
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=parent)
        os.close(fd)
        _usual_mode(tmp, directory=False)
        write_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:  # link fails if `path` appeared meanwhile: never clobber a concurrent writer
            os.link(tmp, path)
            os.remove(tmp)
        fsync_dir(parent)
    except BaseException as e:
        written = bytes_in(tmp)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        raise_if_disk_full(e, path, needed, written, tmp)
        if _about_the_write(e, path, tmp):
            raise _naming_the_target(e, path, "file") from e
        raise
    return path


def write_bytes(path: PathLike, data: bytes, overwrite: bool = True) -> str:
    """Writes `data` to `path` atomically; returns the absolute path."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_with(path, write, overwrite, needed=len(data))


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
def staged_dir(
    target: PathLike, overwrite: bool = False, needed: Optional[int] = None
) -> Iterator[str]:
    """Yields a hidden temporary sibling of `target` to fill; publishes it on success.

    On an exception the temporary directory is removed and `target` is untouched; a full
    disk is raised as `DiskFullError` naming `target` (and `needed`, its size if known).
    """
    target, parent = _writable_target(target, overwrite)
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=_temp_prefix(target), dir=parent)
        _usual_mode(tmp, directory=True)
        yield tmp
        publish_dir(tmp, target, overwrite=overwrite)
    except BaseException as e:
        written = bytes_in(tmp)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise_if_disk_full(e, target, needed, written, tmp)
        if _about_the_write(e, target, tmp):
            raise _naming_the_target(e, target, "directory") from e
        raise
