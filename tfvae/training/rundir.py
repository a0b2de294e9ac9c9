"""What a run directory holds, and how far its run got (no TensorFlow: the CLI checks first).

A run is finished once `metrics.json`, its last file, is written beside `model/`; a
directory with `run.json` and no such pair holds an interrupted run, which `--resume`
(`train_and_evaluate(resume=True)`) finishes, whatever moment it was killed at.
"""

from __future__ import annotations

import os
import re
from typing import List

from tfvae.base import atomic
from tfvae.model.saving import MANIFEST, RUN_MODEL_DIR
from tfvae.training.runlock import LOCK_FILE

__all__ = [
    "RUN_FILE",
    "CHECKPOINT_DIR",
    "METRICS_FILE",
    "HISTORY_FILE",
    "RUN_ENTRIES",
    "is_finished",
    "is_interrupted",
    "foreign_entries",
    "remove_temps",
]

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
# Everything tfvae writes into a run directory (`dataset.json`: older runs' data record).
RUN_ENTRIES = (
    RUN_FILE,
    CHECKPOINT_DIR,
    RUN_MODEL_DIR,
    METRICS_FILE,
    HISTORY_FILE,
    "logs",
    "pictures",
    "dataset.json",
    LOCK_FILE,
)
_TEMP = re.compile(r"^\.(.+)\.tmp-")  # `tfvae.base.atomic`'s temporary siblings


def is_finished(workdir) -> bool:
    """True when `workdir` holds a complete run: its saved model and its metrics."""
    workdir = os.fspath(workdir)
    return os.path.isfile(os.path.join(workdir, METRICS_FILE)) and os.path.isfile(
        os.path.join(workdir, RUN_MODEL_DIR, MANIFEST)
    )


def is_interrupted(workdir) -> bool:
    """True when `workdir` records a run (`run.json`) that is not finished."""
    return os.path.isfile(os.path.join(os.fspath(workdir), RUN_FILE)) and not is_finished(workdir)


def foreign_entries(workdir) -> List[str]:
    """The names in `workdir` that tfvae did not write (which `--overwrite` will not delete)."""
    names = sorted(os.listdir(os.fspath(workdir)))
    temp = [_TEMP.match(n) for n in names]
    return [
        n for n, t in zip(names, temp) if n not in RUN_ENTRIES and not (t and t[1] in RUN_ENTRIES)
    ]


def remove_temps(workdir) -> None:
    """Removes the temporary files and directories that writes killed half-way left in
    `workdir` (call it holding the run's lock: then no write is in progress)."""
    for name in RUN_ENTRIES:
        atomic.remove_stale_temps(os.path.join(os.fspath(workdir), name))
