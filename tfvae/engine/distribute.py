"""Distributed training on TensorFlow's own engine, `tf.distribute`.

`make_strategy(name)` builds one of three strategies:

- `default`: the single-device strategy (`tf.distribute.get_strategy()`), what plain Keras uses.
- `mirrored`: `MirroredStrategy`, one replica per local GPU (or the given devices), gradients
  all-reduced every step.
- `multi-worker`: `MultiWorkerMirroredStrategy`, the same across machines; each process reads
  its role from the standard `TF_CONFIG` environment variable.

The helpers below hold what the training code needs to be correct under any of them: the
global-batch loss average (`replica_average`), a per-replica sampling seed (`replica_seed`)
and the chief/worker split of who writes what (`is_chief`, `write_dir`, `barrier`). The
sharded input is `tfvae.data.input_pipeline`'s.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import tensorflow as tf

from tfvae.base.checks import check_integer

__all__ = [
    "STRATEGIES",
    "make_strategy",
    "is_chief",
    "is_multi_worker",
    "barrier",
    "write_dir",
    "replica_average",
    "replica_seed",
    "use_logical_cpus",
]

logger = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multi-worker")


def make_strategy(name: str = "default", devices: Optional[Sequence[str]] = None):
    """A `tf.distribute.Strategy` by name: `default`, `mirrored` or `multi-worker`.

    Args:
      name: one of `STRATEGIES`.
      devices: for `mirrored` only, the devices to mirror over (e.g. `["/gpu:0", "/gpu:1"]`);
        default: every local GPU, else the CPU.

    `multi-worker` reads the cluster from `TF_CONFIG` (`{"cluster": {"worker": [...]},
    "task": {"type": "worker", "index": i}}`); it must be created at program start, before
    any other TensorFlow op runs. Without `TF_CONFIG` it trains as a single worker.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {name!r}")
    if devices is not None and name != "mirrored":
        raise ValueError(f"devices: only used with strategy='mirrored', got strategy={name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if not os.environ.get("TF_CONFIG"):
        logger.warning("strategy='multi-worker' without TF_CONFIG: training as a single worker")
    else:
        _check_tf_config(os.environ["TF_CONFIG"])
    return tf.distribute.MultiWorkerMirroredStrategy()


def _check_tf_config(text: str) -> None:
    """Clear errors for a malformed TF_CONFIG (TensorFlow's own are obscure)."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG: not valid JSON ({e}): {text!r}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(
            'TF_CONFIG: expected {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": i}}}}, got {text!r}'
        )
    members = cluster.get(task.get("type"), [])
    if not isinstance(task.get("index"), int) or not 0 <= task["index"] < len(members):
        raise ValueError(
            f"TF_CONFIG: task {task!r} is not in the cluster {cluster!r} "
            f"(index must be 0..{len(members) - 1} of cluster[{task.get('type')!r}])"
        )


def is_multi_worker(strategy) -> bool:
    """True when `strategy` spans several processes (workers)."""
    from tfvae.engine.keras_internals import in_multi_worker_mode

    return in_multi_worker_mode(strategy)


def is_chief(strategy) -> bool:
    """True on the one process that writes checkpoints, logs, metrics and the saved model.

    With `TF_CONFIG` that is the task of type `chief`, or worker 0 when the cluster has none.
    """
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def barrier(strategy) -> None:
    """Returns once every worker of `strategy` has reached this call: an all-reduce of one
    number, which no worker can finish before all have joined. A no-op in one process."""
    if not is_multi_worker(strategy):
        return
    ones = strategy.run(lambda: tf.constant(1.0))
    strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None).numpy()


@contextmanager
def write_dir(directory: Optional[str], strategy) -> Iterator[Optional[str]]:
    """Where this process writes: `directory` on the chief, a temporary directory elsewhere.

    Every worker runs the same saving code (so a failure shows on every worker, and
    collective reads stay in step), but only the chief's files are kept: the others' are
    deleted when the block exits, whether it succeeded or not. The temporary directory is
    named after `directory` and the task, so a worker killed mid-block (whose files stay)
    clears them when it runs the block again.
    """
    if directory is None or is_chief(strategy):
        yield directory
        return
    resolver = strategy.cluster_resolver
    key = hashlib.sha256(os.path.abspath(os.fspath(directory)).encode()).hexdigest()[:16]
    prefix = f"tfvae-worker-{resolver.task_type}-{resolver.task_id}-{key}-"
    for stale in glob.glob(os.path.join(tempfile.gettempdir(), glob.escape(prefix) + "*")):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replica_average(per_example: tf.Tensor) -> tf.Tensor:
    """This replica's share of the mean over the GLOBAL batch: sum(own) / global size.

    The optimizer SUMS gradients over replicas (tf_keras does no scaling for a custom
    `train_step`), so each replica must divide by the global batch, not by its own:
    then the summed gradient is the gradient of the global-batch mean, whatever the number
    of replicas. The global size is all-reduced rather than assumed to be
    `local * replicas`, so uneven or empty final batches are averaged exactly. Under the
    default strategy this is the plain mean.
    """
    per_example = tf.convert_to_tensor(per_example)
    count = tf.cast(tf.shape(per_example)[0], per_example.dtype)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(tf.reduce_sum(per_example), count)


def replica_seed(seed: tf.Tensor) -> tf.Tensor:
    """A stateless seed distinct on every replica (the same `seed` when there is only one).

    A seed keyed on the step alone would give every replica the SAME noise for its
    examples; folding in `replica_id_in_sync_group` keeps replicas independent.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return seed
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    folded = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), replica)
    return tf.cast(folded, tf.int32)


def use_logical_cpus(count: int) -> list:
    """Splits the CPU into `count` logical devices (for tests and benchmarks without GPUs).

    Must run before TensorFlow initialises its devices (i.e. first thing in a fresh process).
    Returns the device names, e.g. `["/cpu:0", "/cpu:1"]`.
    """
    count = check_integer(count, "count")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )
    return [f"/cpu:{i}" for i in range(count)]
