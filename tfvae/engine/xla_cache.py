"""TensorFlow's persistent XLA cache for the `tfvae` command: a second run loads the programs
the first compiled instead of compiling them again.

`--tf_xla_persistent_cache_directory` in `TF_XLA_FLAGS` makes TensorFlow write every program
it jit-compiles to a file there and, in later processes, load it after checking that the
program (its HLO) is the same. The flag is read when TensorFlow starts, so `enable` must
run before `import tensorflow`; this module imports nothing heavy.

TensorFlow writes the files in place and fails a run on an unreadable one (a truncated file
reads as "your input ran out of data"), so `enable` hands the directory to one process at a
time (a lock held until exit; others compile as usual), first dropping files that are not
whole entries, and keeps it under `MAX_BYTES` by dropping the least recently used.
Directories are per TensorFlow version and CPU (programs are compiled for its instruction
set): `$TFVAE_XLA_CACHE` (default `~/.cache/tfvae/xla`, under `$XDG_CACHE_HOME` if set) /
`<tf version>-<cpu hash>`. `TFVAE_XLA_CACHE=off` turns it off.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import sys
import time
from typing import Mapping, MutableMapping, Optional

__all__ = ["ENV", "FLAG", "MAX_BYTES", "cache_directory", "enable", "is_whole_entry"]

ENV = "TFVAE_XLA_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"
OFF = ("0", "off", "false", "no", "none")
MAX_BYTES = 1 << 30  # least recently used entries go beyond this
_LOCK_NAME = ".lock"
_CHECKED_NAME = ".checked"  # its mtime: when the files were last checked whole
_lock_file = None  # held open (locked) for the life of the process


def cache_directory(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The cache directory for this TensorFlow version and CPU, or None when turned off."""
    value = environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    if not value:
        base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        value = os.path.join(base, "tfvae", "xla")
    value = os.path.expanduser(value)
    if value.startswith("~"):  # no home directory to put it in
        return None
    return os.path.join(os.path.abspath(value), _machine_key())


def _machine_key() -> str:
    """`<tensorflow version>-<hash of the CPU's model and instruction-set flags>`."""
    try:
        version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    cpu = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu += sorted({line for line in f if line.startswith(("model name", "flags"))})
    except OSError:
        pass
    return f"tf{version}-{hashlib.sha256(repr(cpu).encode()).hexdigest()[:12]}"


def enable(
    environ: MutableMapping[str, str] = os.environ, modules: Mapping = sys.modules
) -> Optional[str]:
    """Points TensorFlow's persistent XLA cache at `cache_directory()`; returns it, or None
    when nothing was set: turned off, TensorFlow already imported (too late), the flag set
    by the caller already, the directory unusable, or another process holding it."""
    global _lock_file
    directory = cache_directory(environ)
    flags = environ.get("TF_XLA_FLAGS", "")
    if directory is None or "tensorflow" in modules or FLAG in flags or _lock_file is not None:
        return None
    try:
        import fcntl

        os.makedirs(directory, exist_ok=True)
        lock = open(os.path.join(directory, _LOCK_NAME), "a+b")  # noqa: SIM115 (held)
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            _tidy(directory)
        except BaseException:
            lock.close()
            raise
    except (OSError, ImportError):
        return None
    _lock_file = lock
    environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={directory}".strip()
    return directory


def _tidy(directory: str) -> None:
    """Drops files that are not whole entries (checked once each) and, past `MAX_BYTES`,
    the least recently used."""
    checked = os.path.join(directory, _CHECKED_NAME)
    since = os.stat(checked).st_mtime if os.path.exists(checked) else 0.0
    now = time.time()
    entries = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        info = os.stat(path)
        if info.st_mtime >= since and not _read_whole_entry(path):
            os.remove(path)
            continue
        entries.append((max(info.st_atime, info.st_mtime), info.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= MAX_BYTES:
            break
        os.remove(path)
        total -= size
    with open(checked, "a", encoding="utf-8"):
        pass
    os.utime(checked, (now, now))


def _read_whole_entry(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return is_whole_entry(f.read())
    except OSError:
        return False


def is_whole_entry(data: bytes) -> bool:
    """Whether `data` is a complete serialized `XlaSerializedCacheEntry` (protobuf wire
    format: well-formed fields to the last byte, with its key (1), HLO (2) and a non-empty
    executable (3)); a file cut short fails this."""
    seen, i, end = set(), 0, len(data)
    try:
        while i < end:
            key, i = _varint(data, i)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(data, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                length, i = _varint(data, i)
                if field == 3 and length == 0:
                    return False
                i += length
            else:
                return False
            if i > end or field == 0:
                return False
            seen.add(field)
    except IndexError:
        return False
    return {1, 2, 3} <= seen


def _varint(data: bytes, i: int):
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")
