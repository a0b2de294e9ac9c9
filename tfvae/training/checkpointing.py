"""Resumable training: per-epoch checkpoints under a workdir, one resume path for every strategy.

A run killed at any moment (SIGKILL included) resumes from its last completed epoch and
ends exactly where an uninterrupted run would, because everything that step `t` of epoch
`e` depends on is either saved or a pure function of (seed, e, t):

- saved at the end of every epoch: the weights, the optimizer (its step counter
  `iterations` and Adam's moment slots), `kl_weight`, the epoch and the per-epoch history;
- the sampling noise of step `t` is stateless, seeded by `optimizer.iterations` (see
  `VAE.train_step`), so it continues from the restored counter;
- the data order of epoch `e` (and its dynamic binarization) is a stateless function of
  `(seed, e)` (`tfvae.data.input_pipeline.epoch_dataset`), not of how many epochs this process
  has iterated.

Under `MultiWorkerMirroredStrategy` every worker runs the same callback (a checkpoint write
can be collective); the chief writes into the workdir, the others into temporary
directories (`tfvae.engine.distribute.write_dir`), and every worker restores from the workdir,
which the workers must share.

Layout of `<workdir>/`:

    run.json                     the VAEConfig and TrainConfig of the run (refuses a mismatch)
    checkpoints/epoch-000007/    one directory per kept epoch (the last `keep`)
        ckpt.index, ckpt.data-*  tf.train.Checkpoint of model + optimizer
        state.json               epoch, history, sha256 of every file above

A checkpoint directory is published whole or not at all (`tfvae.base.atomic.staged_dir`), so
a crash mid-write leaves the previous checkpoint as the latest; on restore every file is
checked against `state.json`, and a checkpoint with a truncated or corrupt file is skipped,
with a warning naming the file, for the newest intact one (`restore_latest`).
(`tf.train.CheckpointManager` keeps its files in one directory with one "latest" pointer;
it cannot pair a checkpoint with its history nor name the corrupt file, hence this layout.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
import shutil
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae.base import atomic, schema
from tfvae.config import MAX_EPOCHS
from tfvae.engine import distribute
from tfvae.model.saving import network_configs, sha256_file, verify_files
from tfvae.training import rundir
from tfvae.training.rundir import CHECKPOINT_DIR, RUN_FILE, RUN_NETWORKS_SCHEMA, RUN_SCHEMA

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "TrainingCheckpoint",
    "resume_state",
    "prepare_run",
    "recorded_networks",
    "latest_checkpoint",
    "restore_checkpoint",
    "restore_latest",
    "checkpoint_state",
]

STATE_FILE = "state.json"
_PREFIX = "ckpt"
_FORMAT = "tfvae-train-state-v1"
_EPOCH_DIR = re.compile(r"^epoch-(\d{6,})$")
_STALE_EPOCH_DIR = re.compile(r"^\.(epoch-\d{6,})\.tmp-")  # `atomic.staged_dir` debris
# TrainConfig fields that may change between a run and its resumption: they do not alter
# the training trajectory up to the last checkpoint (more epochs extend it).
RESUMABLE_CHANGES = ("epochs", "eval_samples", "eval_every_epochs")


class CheckpointError(ValueError):
    """A checkpoint or run file is missing, truncated, corrupt or from another run."""


# ------------------------------------------------------------------------ files on disk
def _read_json(path: str, what: str) -> dict:
    """The JSON document at `path`, checked against the schema of its file type
    (`tfvae.base.schema`): `run.json`, or a checkpoint's `state.json`, whose epoch must be its
    directory's; `CheckpointError` names the file, the key and what was expected."""
    return schema.read_json(path, _schema(path), what, CheckpointError)


def _schema(path: str) -> schema.Spec:
    name = os.path.basename(path)
    if name == RUN_FILE:
        return RUN_SCHEMA
    if name == STATE_FILE:
        found = _EPOCH_DIR.match(os.path.basename(os.path.dirname(os.path.abspath(path))))
        return checkpoint_state(_FORMAT, int(found.group(1)) if found else None)
    return schema.obj({})


def checkpoint_state(format: str, epoch: Optional[int] = None) -> schema.Spec:
    """A checkpoint's state.json: its `epoch` (that of its directory, when known), the
    history of at most that many epochs, the sha256 of each checkpoint file."""
    epochs = (
        schema.integer(epoch, epoch, f"{epoch} (its directory's epoch)")
        if epoch is not None
        else schema.integer(0, MAX_EPOCHS)
    )
    limit = MAX_EPOCHS if epoch is None else epoch
    return schema.obj(
        {
            "format": schema.exactly(format),
            "epoch": epochs,
            "history": schema.mapping(schema.list_of(schema.number(), limit)),
            "sha256": schema.mapping(schema.SHA256, schema.FILE_NAME),
        }
    )


# ------------------------------------------------------------------------- run identity
def dataset_identity(x_train, source: Optional[dict] = None) -> dict:
    """What run.json records of the training data: how to load it again (`source`, e.g. the
    CLI's dataset name or path), its shape and a sha256 of its float32 values."""
    x = np.ascontiguousarray(x_train, dtype=np.float32)
    return {
        "source": dict(source or {}),
        "train_shape": list(x.shape),
        "sha256": hashlib.sha256(x.view(np.uint8)).hexdigest(),
    }


def _run_record(model_config, train_config, dataset: Optional[dict], networks) -> dict:
    run = {"model_config": model_config.to_dict(), "train_config": train_config.to_dict()}
    if dataset is not None:
        run["dataset"] = dataset
    if networks:
        run["networks"] = dict(networks)
    return run


def recorded_networks(workdir: str) -> dict:
    """{part: Keras config} of the networks of the user's that `workdir`'s run.json records
    (`tfvae.model.network_saving`); {} for a run of built-in networks, or no run."""
    path = os.path.join(workdir, RUN_FILE)
    if not os.path.isfile(path):
        return {}
    return _networks_of(_read_json(path, "run file"), path)


def _networks_of(run: dict, path: str) -> dict:
    """The checked "networks" of run.json's document `run`."""
    schema.check(run, RUN_NETWORKS_SCHEMA, path, "run file", CheckpointError)
    return run.get("networks") or {}


def prepare_run(
    workdir: str,
    model_config,
    train_config,
    record: bool = True,
    dataset: Optional[dict] = None,
    networks: Optional[dict] = None,
) -> None:
    """Records the run in `workdir/run.json` (configs, the `dataset_identity` and the
    `networks` of the user's, {part: Keras config}, if given), or checks it against the
    saved one.

    With `record=False` (a worker that is not the chief) it only checks, and writes nothing.

    Raises:
      CheckpointError: `run.json` is corrupt, or records a different config (the message
        lists every differing field; only the fields in `RESUMABLE_CHANGES` may change),
        other networks (their layers' names aside) or different training data (it names both).
    """
    path = os.path.join(workdir, RUN_FILE)
    run = _run_record(model_config, train_config, dataset, networks)
    if not os.path.exists(path):
        if record:
            os.makedirs(workdir, exist_ok=True)
            atomic.write_json(path, run)
        return
    saved = _read_json(path, "run file")
    problem = rundir.other_data_problem(workdir, saved.get("dataset"), dataset)
    if problem is not None:  # first: other data changes the configuration too
        raise CheckpointError(problem)
    diffs = []
    configs = {"model_config": model_config, "train_config": train_config}
    for section in ("model_config", "train_config"):
        old, new = saved.get(section), run[section]
        if not isinstance(old, dict):
            raise CheckpointError(f"run file {path!r} is corrupt: no {section!r} object")
        # A field added since the run was recorded had its default then.
        old = {**_defaults(configs[section]), **old}
        for key in sorted(set(old) | set(new)):
            if section == "train_config" and key in RESUMABLE_CHANGES:
                continue
            if _normalise(old.get(key)) != _normalise(new.get(key)):
                diffs.append(f"{section}.{key}: saved {old.get(key)!r}, now {new.get(key)!r}")
    diffs += _network_diffs(_networks_of(saved, path), networks or {})
    if saved.get("networks"):  # the same architectures: keep the names recorded first
        run["networks"] = saved["networks"]
    if diffs:
        raise CheckpointError(
            f"cannot resume in {workdir!r}: it holds a run with a different configuration ("
            + "; ".join(diffs)
            + "). Use another workdir, the saved configuration, or overwrite=True to "
            "discard the saved run."
        )
    if record and any(saved.get(k) != run[k] for k in run):
        atomic.write_json(path, run)  # new values of RESUMABLE_CHANGES, or the dataset


def _network_diffs(saved: dict, now: dict) -> list:
    """What differs between the networks a run recorded and those given now, per part."""
    from tfvae.model.network_saving import same_architecture

    def said(networks, part):
        return "a network of your own" if part in networks else "the built-in one"

    diffs = []
    for part in sorted(set(saved) | set(now)):
        if part not in saved or part not in now:
            diffs.append(f"networks.{part}: saved {said(saved, part)}, now {said(now, part)}")
        elif not same_architecture(saved[part], now[part]):
            diffs.append(f"networks.{part}: saved another architecture than the one given")
    return diffs


def _defaults(config) -> dict:
    """The default of every field of the config dataclass `config` (those that have one)."""
    return {
        f.name: f.default
        for f in dataclasses.fields(config)
        if f.default is not dataclasses.MISSING
    }


def _normalise(value):
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------- checkpoints
def _epoch_dirs(directory: str):
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = _EPOCH_DIR.match(name)
        if match and os.path.isdir(os.path.join(directory, name)):
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found)


def latest_checkpoint(directory: str) -> Optional[str]:
    """The newest complete checkpoint directory under `directory`, or None."""
    dirs = _epoch_dirs(directory)
    return dirs[-1][1] if dirs else None


def _trackable(model) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer)


def _build_optimizer(model) -> None:
    """Creates the optimizer's slot variables now, so a restore fills them immediately."""
    model.optimizer.build(model.trainable_variables)


def restore_checkpoint(path: str, model) -> Tuple[int, dict]:
    """Loads a checkpoint directory into a compiled `model`; returns (epochs done, history).

    Raises:
      CheckpointError: a file is missing, truncated or corrupt, or does not fit the model.
    """
    state = _read_json(os.path.join(path, STATE_FILE), "checkpoint state")
    epoch, history, digests = state["epoch"], state["history"], state["sha256"]
    verify_files(path, digests, STATE_FILE, "checkpoint file", CheckpointError, CheckpointError)
    _build_optimizer(model)
    try:
        status = _trackable(model).read(os.path.join(path, _PREFIX))
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path!r} does not fit this model (input_dim="
            f"{model.config.input_dim}, latent_dim={model.config.latent_dim}): {e}"
        ) from e
    return epoch, history


def resume_state(
    model,
    model_config,
    train_config,
    workdir: str,
    overwrite=False,
    resume=True,
    strategy=None,
    dataset: Optional[dict] = None,
) -> Tuple[int, dict]:
    """(epochs already done, their history) for `workdir`: restores the newest intact
    checkpoint (`restore_latest`).

    `overwrite` discards a previous run's checkpoints; otherwise the run's configs (and
    `dataset`, a `dataset_identity`) must match `run.json`, and an interrupted run is
    resumed only if `resume` is True. Under a multi-worker `strategy` only the chief writes
    or clears; then every worker restores the same checkpoint from the shared `workdir`.

    Raises:
      CheckpointError: `run.json` is corrupt or from another run, or no checkpoint is
        intact.
      FileExistsError: the workdir holds an interrupted run and `resume` is False.
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    if overwrite and chief:
        clear_checkpoints(workdir)
    if chief or not overwrite:  # the chief may still be clearing what another worker reads
        # A network of the user's that cannot be saved is refused now, before training.
        networks = network_configs(model)
        prepare_run(workdir, model_config, train_config, chief, dataset, networks)
    distribute.barrier(strategy)  # every worker now sees the chief's files
    latest = latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))
    if latest is None:
        return 0, {}
    if not resume:
        raise FileExistsError(
            f"{workdir!r} holds checkpoints of an interrupted run (latest {latest!r}); pass "
            f"resume=True to continue it or overwrite=True to start over"
        )
    path, epoch, history = restore_latest(os.path.join(workdir, CHECKPOINT_DIR), model)
    logger.info("resuming %s from %s (epoch %d)", workdir, path, epoch)
    return epoch, history


def restore_latest(directory: str, model) -> Tuple[str, int, dict]:
    """Restores the newest intact checkpoint under `directory` into `model`; returns (its
    path, epochs done, history).

    A checkpoint that is corrupt, truncated or incomplete is skipped for the one before it,
    with one logged warning naming it and why (the epochs after the one restored are
    trained again, to the same weights).

    Raises:
      CheckpointError: no checkpoint there is intact (the message lists what is wrong with
        each).
    """
    skipped = []
    for _, path in reversed(_epoch_dirs(directory)):
        try:
            epoch, history = restore_checkpoint(path, model)
        except CheckpointError as e:
            skipped.append((path, e))
            continue
        for bad, why in skipped:
            logger.warning("skipping checkpoint %r (%s); resuming from %r", bad, why, path)
        return path, epoch, history
    problems = [f"{os.path.basename(path)}: {why}" for path, why in skipped]
    raise CheckpointError(
        f"no intact checkpoint in {directory!r} to resume from ({'; '.join(problems)}); the "
        "run can only start afresh (overwrite=True, or tfvae train --overwrite)"
    )


def clear_checkpoints(workdir: str) -> None:
    """Removes a run's checkpoints and run file (for `overwrite=True`)."""
    shutil.rmtree(os.path.join(workdir, CHECKPOINT_DIR), ignore_errors=True)
    run = os.path.join(workdir, RUN_FILE)
    if os.path.exists(run):
        os.remove(run)


class TrainingCheckpoint(tfk.callbacks.Callback):
    """Saves model + optimizer + epoch + history at the end of every epoch, atomically.

    Args:
      directory: where `epoch-NNNNNN/` checkpoint directories go.
      history: the per-epoch logs of epochs already done (from `restore_checkpoint`),
        extended here so the saved history always covers the whole run.
      keep: how many of the newest checkpoints to keep (older ones are deleted only
        after a newer one is complete).
    """

    def __init__(self, directory: str, history: Optional[dict] = None, keep: int = 2):
        super().__init__()
        self.directory = os.fspath(directory)
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.keep = max(1, int(keep))

    def on_train_begin(self, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):  # debris of a write killed half-way
            stale = _STALE_EPOCH_DIR.match(name)
            if stale:
                atomic.remove_stale_temps(os.path.join(self.directory, stale.group(1)))

    def on_epoch_end(self, epoch, logs=None):
        if any(not math.isfinite(float(v)) for v in (logs or {}).values()):
            return  # never checkpoint a diverged state over a good one
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.save(int(epoch) + 1)

    def save(self, epochs_done: int) -> str:
        """Writes `epoch-NNNNNN/` for `epochs_done` (replacing a stale one), then prunes."""
        final = os.path.join(self.directory, f"epoch-{epochs_done:06d}")
        # overwrite: a stale one from a run that went past this epoch
        with atomic.staged_dir(final, overwrite=True) as tmp:
            _trackable(self.model).write(os.path.join(tmp, _PREFIX))
            digests = {
                name: sha256_file(os.path.join(tmp, name)) for name in sorted(os.listdir(tmp))
            }
            state = {"format": _FORMAT, "epoch": epochs_done, "history": self.history}
            atomic.write_json(os.path.join(tmp, STATE_FILE), dict(state, sha256=digests))
        for _, old in _epoch_dirs(self.directory)[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final
