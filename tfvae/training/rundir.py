"""A run directory: its names, its lock, how far its run got, and its safe replacement.

`tfvae train --out RUN` and `train_and_evaluate(..., workdir=RUN)` write here:

    model/          config + weights (`tfvae.model.saving`)
    run.json        the configs and the data's identity, checked on resume
    checkpoints/    the training state of the last epochs (`tfvae.training.checkpointing`)
    history.csv     one row per epoch; logs/: TensorBoard; pictures/: PNGs
    metrics.json    the test metrics, written last: it marks the run finished
    .lock           held while one process trains here (`tfvae.training.runlock`)

States: new (nothing there), interrupted (`run.json` but not finished: a resume finishes it,
whatever moment it was killed at), finished (`model/` and `metrics.json`). `claim` takes the
lock once per run, refuses what it must, trains an overwrite beside the old run and swaps it
in only once complete (else rolls it back), and removes on failure what it created.
Refusals raise `RunDirError`, naming the `tfvae train` option that resolves them. No
TensorFlow: the CLI asks here before it loads any.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
from typing import Callable, Iterator, List, Optional

from tfvae.base import atomic, schema
from tfvae.config import MAX_SEED, TrainConfig, VAEConfig
from tfvae.model.saving import MANIFEST, RUN_MODEL_DIR
from tfvae.training import runlock

logger = logging.getLogger(__name__)

__all__ = [
    "RUN_FILE",
    "CHECKPOINT_DIR",
    "METRICS_FILE",
    "HISTORY_FILE",
    "LOGS_DIR",
    "PICTURES_DIR",
    "CURVES_FILE",
    "RECONSTRUCTIONS_FILE",
    "SAMPLES_FILE",
    "LATENT_FILE",
    "MANIFOLD_FILE",
    "MODEL_DIR",
    "DATA_FILE",
    "LOCK_FILE",
    "RUN_ENTRIES",
    "NEW",
    "OVERWRITE",
    "RESUME",
    "RunDirError",
    "RunLockedError",
    "DATASET_SOURCE_SCHEMA",
    "RUN_SCHEMA",
    "RUN_NETWORKS_SCHEMA",
    "METRICS_SCHEMA",
    "is_finished",
    "is_interrupted",
    "foreign_entries",
    "remove_temps",
    "check_new",
    "recorded_run",
    "dataset_source",
    "data_difference",
    "other_data_problem",
    "finished_metrics",
    "check_finished_epochs",
    "check_lock",
    "hold",
    "claim",
    "Claim",
]

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
LOGS_DIR = "logs"
PICTURES_DIR = "pictures"
# In PICTURES_DIR: the curves drawn from HISTORY_FILE, and `tfvae run`'s pictures (the
# picture commands' defaults; MANIFOLD_FILE goes beside the latent space's for J = 2).
CURVES_FILE = "curves.png"
RECONSTRUCTIONS_FILE = "reconstructions.png"
SAMPLES_FILE = "samples.png"
LATENT_FILE = "latent.png"
MANIFOLD_FILE = "manifold.png"
MODEL_DIR = RUN_MODEL_DIR  # "model": `tfvae.model.loading.load_model` finds a run's model there
DATA_FILE = "dataset.json"  # what runs recorded their data in before run.json did
LOCK_FILE = runlock.LOCK_FILE
# Everything tfvae writes into a run directory.
RUN_ENTRIES = (
    RUN_FILE,
    CHECKPOINT_DIR,
    MODEL_DIR,
    METRICS_FILE,
    HISTORY_FILE,
    LOGS_DIR,
    PICTURES_DIR,
    DATA_FILE,
    LOCK_FILE,
)
NEW, OVERWRITE, RESUME = "new", "overwrite", "resume"  # what a claim may find and do
_TEMP = re.compile(r"^\.(.+)\.tmp-")  # `tfvae.base.atomic`'s temporary siblings


class RunDirError(Exception):
    """A run directory cannot be used as asked: in use, not empty, not a run, a corrupt record."""


class RunLockedError(RunDirError, RuntimeError):
    """Another process holds the lock of the run directory; `holder` is what it recorded (a
    RuntimeError too, as `tfvae.runlock.RunLockedError` was)."""

    def __init__(self, message: str, path: str, holder: dict):
        super().__init__(message)
        self.path = path
        self.holder = holder


# ---------------------------------------------------------------- the files it reads back
# How a run's data is loaded again: `run.json`'s dataset.source, and older runs' dataset.json.
DATASET_SOURCE_SCHEMA = schema.obj(
    {},
    {
        "dataset": schema.nullable(schema.text()),
        "data_dir": schema.nullable(schema.text()),
        "seed": schema.integer(0, MAX_SEED),
    },
)
# run.json: the configs of a run and the identity of its training data.
RUN_SCHEMA = schema.obj(
    {"model_config": schema.config(VAEConfig), "train_config": schema.config(TrainConfig)},
    {
        "dataset": schema.obj(
            {"train_shape": schema.list_of(schema.integer(0), 8), "sha256": schema.SHA256},
            {"source": DATASET_SOURCE_SCHEMA},
        )
    },
)
# run.json's "networks": the Keras configs of the networks the user passed
# (`tfvae.model.network_saving`), checked where they are read.
RUN_NETWORKS_SCHEMA = schema.obj(
    {},
    {
        "networks": schema.mapping(
            schema.obj({"class_name": schema.text()}), schema.one_of(("encoder", "decoder"))
        )
    },
)
# metrics.json: a finished run's test metrics and per-epoch history (a diverged bound may be
# infinite).
METRICS_SCHEMA = schema.obj(
    {"test": schema.mapping(schema.number(finite=False))},
    {"history": schema.mapping(schema.list_of(schema.number(finite=False)))},
)


# ---------------------------------------------------------------- how far its run got
def is_finished(workdir) -> bool:
    """True when `workdir` holds a complete run: its saved model and its metrics."""
    workdir = os.fspath(workdir)
    return os.path.isfile(os.path.join(workdir, METRICS_FILE)) and os.path.isfile(
        os.path.join(workdir, MODEL_DIR, MANIFEST)
    )


def is_interrupted(workdir) -> bool:
    """True when `workdir` records a run (`run.json`) that is not finished."""
    return os.path.isfile(os.path.join(os.fspath(workdir), RUN_FILE)) and not is_finished(workdir)


def foreign_entries(workdir) -> List[str]:
    """The names in `workdir` that tfvae did not write (which an overwrite will not delete)."""
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


def check_new(out: str, overwrite: bool) -> None:
    """`out` must be new or empty; to be overwritten, a run directory (nothing else in it)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunDirError(f"--out {out!r} exists and is not a directory")
    if not os.path.isdir(out) or not [n for n in os.listdir(out) if n != LOCK_FILE]:
        return
    if not overwrite:
        finish = " or --resume to finish its run" if is_interrupted(out) else ""
        raise RunDirError(
            f"--out {out!r} already exists and is not empty; choose another --out "
            f"or pass --overwrite to replace it{finish}"
        )
    foreign = foreign_entries(out)
    if foreign:
        raise RunDirError(
            f"--overwrite: {out!r} holds files not written by tfvae ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}), and --overwrite replaces only a run "
            "directory: move them away or choose another --out"
        )


# ---------------------------------------------------------------- what it recorded
def recorded_run(out: str) -> dict:
    """What `out/run.json` records (the configs, the data), to resume the run."""
    if not os.path.isdir(out):
        raise RunDirError(f"--resume: no run directory at {out!r}")
    path = os.path.join(out, RUN_FILE)
    again = f"start it again with `tfvae train --out {out} --overwrite` and its options"
    if not os.path.isfile(path):
        raise RunDirError(f"--resume: {out!r} records no run ({RUN_FILE} missing); {again}")
    try:
        return schema.read_json(path, RUN_SCHEMA, "--resume: run file")
    except ValueError as e:
        raise RunDirError(f"{e}; {again}") from None


def dataset_source(run_dir: str, run: Optional[dict] = None) -> dict:
    """How the run's data is loaded again: `dataset.source` of its run.json (`run`, if read
    already; or, for runs made before run.json recorded it, its dataset.json); {} if neither
    says."""

    def read(name, spec, what):
        path = os.path.join(run_dir, name)
        return schema.read_json(path, spec, what, RunDirError) if os.path.isfile(path) else {}

    if run is None:
        run = read(RUN_FILE, RUN_SCHEMA, "run file")
    return (
        run.get("dataset", {}).get("source")
        or read(DATA_FILE, DATASET_SOURCE_SCHEMA, "dataset file")
        or {}
    )


def data_difference(saved: Optional[dict], now: Optional[dict]) -> Optional[str]:
    """How the training data `now` (a `checkpointing.dataset_identity`) differs from the
    `saved` one: "saved 'a.npy' of shape S, sha256 H...; now ..." (None: the same, or nothing
    to compare: a run recorded before run.json held its data)."""
    if not isinstance(saved, dict) or now is None:
        return None
    keys = ("train_shape", "sha256")
    if [saved.get(k) for k in keys] == [now.get(k) for k in keys]:
        return None
    return "; ".join(
        f"{when} {_source_said(d.get('source'))} of shape {d.get('train_shape')}, sha256 "
        f"{str(d.get('sha256'))[:12]}..."
        for when, d in (("saved", saved), ("now", now))
    )


def _source_said(source) -> str:
    """A recorded data source in words: the dataset's name or path, and its data_dir."""
    if not isinstance(source, dict) or not source.get("dataset"):
        return "data"
    where = f" in {source['data_dir']!r}" if source.get("data_dir") else ""
    return f"{source['dataset']!r}{where}"


def other_data_problem(out: str, saved: Optional[dict], now: Optional[dict]) -> Optional[str]:
    """Why the run in `out` cannot resume on the data `now` (None: it can), naming the data
    first: check it before the configuration, which other data changes too (input_dim,
    image_shape), so that a resume on the wrong data is not blamed on a config field."""
    difference = data_difference(saved, now)
    if difference is None:
        return None
    return (
        f"cannot resume in {out!r}: it was trained on other data than the data given now "
        f"({difference}); resume it on its own data, or start a new run in another directory "
        "or over this one (--overwrite, overwrite=True)"
    )


def finished_metrics(run_dir: str) -> dict:
    """The `metrics.json` of a finished run: its test metrics and history."""
    path = os.path.join(run_dir, METRICS_FILE)
    return schema.read_json(path, METRICS_SCHEMA, "metrics file", RunDirError)


def check_finished_epochs(out: str, recorded: dict, epochs: Optional[int]) -> None:
    """A finished run is not continued: `epochs` (None: not given) must be its own."""
    done = recorded["train_config"].get("epochs")
    if epochs is not None and epochs != done:
        raise RunDirError(
            f"{out!r} holds a finished run of {done} epochs, which is not continued "
            f"to {epochs}: start a new run (another --out, or --overwrite)"
        )


# ---------------------------------------------------------------- its lock, taken once
_claimed: set = set()  # real paths of the directories this process's claims cover
_guard = threading.Lock()


def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


@contextlib.contextmanager
def _run_locked_error() -> Iterator[None]:
    """The flock's `LockHeldError` raised as this module's `RunLockedError`."""
    try:
        yield
    except runlock.LockHeldError as e:
        raise RunLockedError(str(e), e.path, e.holder) from None


def _lock(workdir) -> contextlib.ExitStack:
    """The lock of `workdir`, held until the returned stack closes."""
    stack = contextlib.ExitStack()
    with _run_locked_error():
        stack.enter_context(runlock.hold(workdir))
    return stack


def check_lock(workdir) -> None:
    """Raises `RunLockedError` if another process holds the lock of `workdir`; creates
    nothing (the quick answer, before any other check)."""
    with _run_locked_error():
        runlock.check(workdir)


@contextlib.contextmanager
def hold(workdir) -> Iterator[None]:
    """The lock of `workdir` for the block, unless this process holds it already (a `claim`,
    the CLI's around `train_and_evaluate`, or a caller's `runlock.hold`): then nothing more."""
    with _guard:
        claimed = _real(workdir) in _claimed or runlock.is_held(workdir)
    with contextlib.nullcontext() if claimed else _lock(workdir):
        yield


@contextlib.contextmanager
def _covered(path: str) -> Iterator[None]:
    with _guard:
        _claimed.add(_real(path))
    try:
        yield
    finally:
        with _guard:
            _claimed.discard(_real(path))


class Claim:
    """A claimed run directory (`claim`): where its run trains, and the swap of an overwrite."""

    def __init__(self, out: str, mode: str, chief: bool, note: Callable[[str], None], sync):
        self.out, self.mode, self.chief, self.note = out, mode, chief, note
        self._sync = sync
        self._stack = contextlib.ExitStack()
        self._staged: Optional[str] = None

    def stage(self) -> str:
        """Where the run trains: `out`; for an overwrite, an empty hidden sibling that
        `publish` swaps over it (one name for all workers: the chief makes it, then every
        worker calls the claim's `sync`, so none looks for it before)."""
        if self.mode != OVERWRITE:
            return self.out
        out = os.path.abspath(self.out)
        path = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tmp-overwrite")
        if self.chief:  # holding out's lock: a staging directory there is a killed overwrite's
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path)
            self._stack.enter_context(_covered(path))
        self._sync()
        self._staged = path
        return path

    def publish(self) -> None:
        """Swaps a complete overwrite over `out` (`tfvae.base.atomic.publish_dir`: atomic
        where the OS allows); until then `out` is untouched. Nothing to do otherwise."""
        if self._staged is not None and self.chief:
            atomic.publish_dir(self._staged, self.out, overwrite=True)
        self._staged = None

    def _roll_back(self) -> None:
        """After a failure: an overwrite's staging directory goes, `out` is as it was."""
        if self._staged is not None and self.chief:
            shutil.rmtree(self._staged, ignore_errors=True)
            self.note(f"{self.out} was not replaced: it is as it was")


@contextlib.contextmanager
def claim(
    out: str,
    mode: str = NEW,
    chief: bool = True,
    note: Callable[[str], None] = logger.warning,
    sync: Callable[[], None] = lambda: None,
) -> Iterator[Claim]:
    """Holds the lock of run directory `out` for the block (on the chief only: the workers
    of a multi-worker run share `out`), once for the whole run: `hold`, inside, takes nothing.

    `mode`: NEW (`out` must be new or empty), OVERWRITE (a run directory, replaced once the
    new run is complete: `Claim.stage`, `Claim.publish`) or RESUME (its recorded run goes
    on). If the block fails, an `out` this claim created is removed unless it holds trained
    epochs: those are kept, and `note` names the command that finishes them when it would work.
    `sync` waits for all workers (a multi-worker run's barrier): `Claim.stage` calls it on each
    once an overwrite's staging directory is made.

    Raises:
      RunLockedError: another process holds the lock.
      RunDirError: `out` is not what `mode` needs.
    """
    created = _first_missing(out)  # the top folder this claim creates, if any
    run = Claim(out, mode, chief, note, sync)
    with contextlib.ExitStack() as stack:
        if chief:
            stack.enter_context(_lock(out))
            stack.enter_context(_covered(out))
        stack.enter_context(run._stack)
        try:
            if chief and mode != RESUME:
                check_new(out, overwrite=mode == OVERWRITE)  # again: no other process writes now
            yield run
        except BaseException as e:
            run._roll_back()
            if chief and os.path.isdir(out):
                _after_failure(out, created, e, note)
            raise


def _after_failure(out: str, created: Optional[str], error: BaseException, note) -> None:
    checkpoints = os.path.join(out, CHECKPOINT_DIR)
    trained = os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))
    if created is not None and not trained:
        shutil.rmtree(created, ignore_errors=True)
    elif is_interrupted(out) and _resumable(error):  # Ctrl-C, a full disk...
        note(
            f"training state kept in {out}; finish the run with `tfvae train --out {out} --resume`"
        )


def _first_missing(path: str) -> Optional[str]:
    """The outermost folder of `path` that does not exist yet (None if `path` exists)."""
    path, top = os.path.abspath(path), None
    while not os.path.lexists(path):
        top, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return top


def _resumable(error: BaseException) -> bool:
    """Whether resuming after `error` can work: not after bad input, a diverged loss or a
    corrupt file, which a resume would meet again."""
    return not isinstance(
        error, (RunDirError, ValueError, TypeError, ArithmeticError, FileExistsError)
    )
