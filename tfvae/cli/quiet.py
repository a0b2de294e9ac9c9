"""TensorFlow's start-up quiet: its C++ log lines filtered below the chosen level.

TF's libraries write some absl lines while they load, before absl is initialised, and those
ignore `TF_CPP_MIN_LOG_LEVEL` (oneDNN, CUDA). A meta-path hook runs the first
`import tensorflow` with file descriptor 2 captured, then replays it without them.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

__all__ = ["tensorflow_log_level", "QuietImport", "filtered_stderr"]

# A line of absl's C++ log (severity letter first).
_ABSL_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]")
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"


def tensorflow_log_level(verbose: bool) -> None:
    """Sets TF's C++ log level before TensorFlow loads, and applies it also to the start-up
    lines that ignore it (TensorFlow's first import, when a command needs it, is filtered).

    The level: 0 (everything) with --verbose, else $TF_CPP_MIN_LOG_LEVEL if set, else 3
    (errors hidden too). Nothing is imported here.
    """
    if "tensorflow" in sys.modules:
        return
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if level in ("1", "2", "3"):
        sys.meta_path.insert(0, QuietImport(int(level)))


class QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs the first `import tensorflow` under `filtered_stderr`, then steps aside."""

    def __init__(self, level: int):
        self.level = level

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None:
            self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        with filtered_stderr(self.level):
            self.loader.exec_module(module)


@contextlib.contextmanager
def filtered_stderr(level: int):
    """Captures file descriptor 2 (C++ writes there too), then replays it without absl's
    lines below `level` (0 info, 1 warning, 2 error, 3 fatal) and its start-up notice."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                absl = _ABSL_LINE.match(line)
                if (absl and "IWEF".index(absl.group(1)) < level) or line.startswith(_ABSL_NOTICE):
                    continue
                sys.stderr.write(line)
            sys.stderr.flush()
