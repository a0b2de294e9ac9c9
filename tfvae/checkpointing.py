"""Resumable training: per-epoch checkpoints under a workdir, and an epoch-keyed data order.

A run killed at any moment (SIGKILL included) resumes from its last completed epoch and
ends exactly where an uninterrupted run would, because everything that step `t` of epoch
`e` depends on is either saved or a pure function of (seed, e, t):

- saved at the end of every epoch: the weights, the optimizer (its step counter
  `iterations` and Adam's moment slots), `kl_weight`, the epoch and the per-epoch history;
- the sampling noise of step `t` is stateless, seeded by `optimizer.iterations` (see
  `VAE.train_step`), so it continues from the restored counter;
- the data order of epoch `e` (and its dynamic binarization) is a stateless function of
  `(seed, e)` (`epoch_dataset`), not of how many epochs this process has iterated.

Layout of `<workdir>/`:

    run.json                     the VAEConfig and TrainConfig of the run (refuses a mismatch)
    checkpoints/epoch-000007/    one directory per kept epoch (the last `keep`)
        ckpt.index, ckpt.data-*  tf.train.Checkpoint of model + optimizer
        state.json               epoch, history, sha256 of every file above

A checkpoint is written into a hidden temporary directory and renamed into place only
once complete (rename is atomic), so a crash mid-write leaves the previous checkpoint as
the latest; on restore every file is checked against `state.json`, and a truncated or
corrupt one is reported by name.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae.data import compact_storage, prefetched, slice_batches
from tfvae.saving import sha256_file, verify_files

__all__ = [
    "RUN_FILE",
    "CHECKPOINT_DIR",
    "CheckpointError",
    "TrainingCheckpoint",
    "epoch_dataset",
    "prepare_run",
    "latest_checkpoint",
    "restore_checkpoint",
]

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
_PREFIX = "ckpt"
_FORMAT = "tfvae-train-state-v1"
_EPOCH_DIR = re.compile(r"^epoch-(\d{6,})$")
# TrainConfig fields that may change between a run and its resumption: they do not alter
# the training trajectory up to the last checkpoint (more epochs extend it).
RESUMABLE_CHANGES = ("epochs", "eval_samples")


class CheckpointError(ValueError):
    """A checkpoint or run file is missing, truncated, corrupt or from another run."""


# --------------------------------------------------------------------------- data order
def epoch_dataset(
    x: np.ndarray,
    batch_size: int,
    seed: int,
    initial_epoch: int,
    epochs: int,
    dynamic_binarization: bool = False,
) -> Tuple[tf.data.Dataset, int]:
    """Batches for epochs `initial_epoch .. epochs-1`, each epoch's order keyed on (seed, e).

    Returns `(dataset, steps_per_epoch)`; pass both to `fit` (with `initial_epoch`). The
    permutation of epoch `e` is `stateless_shuffle(range(N), seed=(2*seed, e))` and the
    dynamic binarization noise of its step `t` is keyed on `(2*seed+1, e*steps + t)`, so a
    resumed run sees exactly the batches an uninterrupted one would.
    """
    x = np.asarray(x, np.float32)
    n = int(x.shape[0])
    steps = int(math.ceil(n / batch_size))
    stored, decode = compact_storage(x)  # uint8 for binary or 8-bit data: same batches
    stored = tf.constant(stored)
    shuffle_key = tf.constant(2 * int(seed), tf.int64)
    noise_key = tf.constant(2 * int(seed) + 1, tf.int64)

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([shuffle_key, epoch])
        )

        def gather(step, indices):
            batch = decode(tf.gather(stored, indices))
            if dynamic_binarization:
                noise = tf.random.stateless_uniform(
                    tf.shape(batch), seed=tf.stack([noise_key, epoch * steps + step])
                )
                batch = tf.cast(noise < batch, tf.float32)
            return batch

        return slice_batches(order, batch_size, steps).map(gather)

    ds = tf.data.Dataset.range(int(initial_epoch), int(epochs)).flat_map(one_epoch)
    return prefetched(ds), steps


# ------------------------------------------------------------------------ files on disk


def _write_json_atomic(path: str, obj) -> None:
    """Writes JSON to a temporary sibling, fsyncs it, then renames it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{what} {path!r} is missing") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{what} {path!r} is corrupt or truncated: {e}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} {path!r} is corrupt: expected a JSON object")
    return obj


# ------------------------------------------------------------------------- run identity
def _run_record(model_config, train_config) -> dict:
    return {"model_config": model_config.to_dict(), "train_config": train_config.to_dict()}


def prepare_run(workdir: str, model_config, train_config) -> None:
    """Records the run's configs in `workdir/run.json`, or checks them against the saved ones.

    Raises:
      CheckpointError: `run.json` is corrupt, or records a different config (the message
        lists every differing field); changing only `epochs`/`eval_samples` is allowed.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, RUN_FILE)
    record = _run_record(model_config, train_config)
    if not os.path.exists(path):
        _write_json_atomic(path, record)
        return
    saved = _read_json(path, "run file")
    diffs = []
    for section in ("model_config", "train_config"):
        old, new = saved.get(section), record[section]
        if not isinstance(old, dict):
            raise CheckpointError(f"run file {path!r} is corrupt: no {section!r} object")
        for key in sorted(set(old) | set(new)):
            if section == "train_config" and key in RESUMABLE_CHANGES:
                continue
            if _normalise(old.get(key)) != _normalise(new.get(key)):
                diffs.append(f"{section}.{key}: saved {old.get(key)!r}, now {new.get(key)!r}")
    if diffs:
        raise CheckpointError(
            f"cannot resume in {workdir!r}: it holds a run with a different configuration ("
            + "; ".join(diffs)
            + "). Use another workdir, the saved configuration, or overwrite=True to "
            "discard the saved run."
        )
    if saved["train_config"] != record["train_config"]:
        _write_json_atomic(path, record)  # the new epochs/eval_samples


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
    try:
        if state.get("format") != _FORMAT:
            raise KeyError("format")
        epoch, history, digests = int(state["epoch"]), dict(state["history"]), state["sha256"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint state {os.path.join(path, STATE_FILE)!r} is corrupt: bad field {e}"
        ) from e
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
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def on_epoch_end(self, epoch, logs=None):
        if any(not math.isfinite(float(v)) for v in (logs or {}).values()):
            return  # never checkpoint a diverged state over a good one
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.save(int(epoch) + 1)

    def save(self, epochs_done: int) -> str:
        final = os.path.join(self.directory, f"epoch-{epochs_done:06d}")
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=self.directory)
        try:
            _trackable(self.model).write(os.path.join(tmp, _PREFIX))
            digests = {
                name: sha256_file(os.path.join(tmp, name)) for name in sorted(os.listdir(tmp))
            }
            _write_json_atomic(
                os.path.join(tmp, STATE_FILE),
                {
                    "format": _FORMAT,
                    "epoch": epochs_done,
                    "history": self.history,
                    "sha256": digests,
                },
            )
            _fsync_dir(tmp)
            if os.path.exists(final):  # a stale one from a run that went past this epoch
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(self.directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for _, old in _epoch_dirs(self.directory)[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
