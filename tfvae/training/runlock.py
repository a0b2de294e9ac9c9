"""The mechanism of a run directory's lock (`tfvae.training.rundir`): a `flock` naming its holder.

    with runlock.hold("runs/a"):   # LockHeldError if another process holds it
        ...

The kernel releases the lock when the holding process ends, however it ends (SIGKILL
included), so a crashed run never leaves its directory locked. The file records who holds
it (pid, host, start time, command) for the message a second process gets; a clean release
deletes it. A process takes it once per run (`rundir.claim`); taking it again while held is
a bug, refused. A filesystem without locks (some network mounts) gets a warning, no lock.
Imports nothing from tfvae, so a test can load this file alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from typing import Iterator

__all__ = ["LOCK_FILE", "LockHeldError", "hold", "check", "is_held"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_TRIES = 4  # a lock found taken is tried again 3 times, 50 ms apart (`check` takes it briefly)

_held: dict = {}  # lock file path -> fd (None without filesystem locks) of the locks held here
_guard = threading.Lock()


class LockHeldError(RuntimeError):
    """Another process holds the lock of the run directory; `holder` is what it recorded
    (`tfvae.training.rundir.RunLockedError` is what the library raises for it)."""

    def __init__(self, message: str, path: str, holder: dict):
        super().__init__(message)
        self.path = path
        self.holder = holder


def __getattr__(name: str):
    if name == "RunLockedError":
        raise AttributeError(
            "tfvae.training.runlock.RunLockedError moved to tfvae.training.rundir.RunLockedError"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def hold(workdir) -> Iterator[str]:
    """Holds the lock of `workdir` (created if missing) for the block; yields the lock path.

    Raises:
      LockHeldError: another process holds it; the message names that process.
      RuntimeError: this process holds it already (a run takes its lock once).
    """
    path = _acquire(os.fspath(workdir))
    try:
        yield path
    finally:
        _release(path)


def is_held(workdir) -> bool:
    """Whether this process holds the lock of `workdir` (`hold`)."""
    with _guard:
        return _path(workdir) in _held


def check(workdir) -> None:
    """Raises `LockHeldError` if another process holds the lock of `workdir`; creates
    nothing (for a quick answer before any other check)."""
    path = _path(workdir)
    with _guard:
        if path in _held:
            return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # no lock file: nobody holds it (or it cannot be read, and `hold` will say)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        raise LockHeldError(_message(path, holder), path, holder) from None
    except OSError:
        pass
    finally:
        os.close(fd)


def _path(workdir) -> str:
    return os.path.join(os.path.realpath(os.fspath(workdir)), LOCK_FILE)


def _acquire(workdir: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    path = _path(workdir)
    with _guard:
        if path in _held:
            raise RuntimeError(f"{path!r} is already held by this process (pid {os.getpid()})")
        _held[path] = _lock(path)
    return path


def _lock(path: str):
    """An fd of `path` holding its exclusive flock, with our record written; None without
    filesystem locks."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _flock(fd)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise LockHeldError(_message(path, holder), path, holder) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_LOCKS:
                raise
            logger.warning("cannot lock %s (%s): a second trainer would not be stopped", path, e)
            return None
        try:  # the previous holder may have deleted the file between our open and flock
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]]),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return fd


def _flock(fd: int) -> None:
    for attempt in range(_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == _TRIES - 1:
                raise
            time.sleep(0.05)


def _release(path: str) -> None:
    with _guard:
        fd = _held.pop(path)
    if fd is None:
        return
    try:  # delete it only while it is still ours (a replaced run directory has another)
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            os.remove(path)
    except OSError:
        pass
    os.close(fd)  # releases the flock


def _read(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _message(path: str, holder: dict) -> str:
    run = os.path.dirname(path)
    if not holder:
        who = "another process (it has not written its name yet)"
    else:
        who = (
            f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since "
            f"{holder.get('since', '?')} ({holder.get('command', '?')})"
        )
    return (
        f"run directory {run!r} is in use by {who}; lock file {path!r}. Wait for it to end, "
        "or use another directory"
    )
