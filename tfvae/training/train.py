"""Training pipeline: `train_and_evaluate(model_config, train_config, data, workdir)`.

Builds the model from its config, fits it with Keras, evaluates the test ELBO and an
importance-weighted log p(x), and saves config + weights + metrics under `workdir`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, NamedTuple, Optional

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae.base import atomic
from tfvae.base.checks import renamed_argument
from tfvae.config import IMPORTANCE_SAMPLES, TrainConfig, VAEConfig
from tfvae.data import input_pipeline
from tfvae.data.datasets import Data
from tfvae.data.validation import check_data
from tfvae.engine import distribute, keras3
from tfvae.engine.callbacks import EpochLine, HistoryCSV, StopOnNonFiniteLoss
from tfvae.engine.jit_choice import replicas_on_cpu
from tfvae.model.network_saving import NetworkLoadError, build_network, in_scope
from tfvae.model.objectives import bits_per_dim
from tfvae.model.saving import save_model
from tfvae.model.vae import VAE
from tfvae.training import checkpointing, rundir
from tfvae.training.tensorboard import EvalSummaries

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "KLWarmup", "train_and_evaluate", "evaluate_model", "make_callbacks"]


class KLWarmup(tfk.callbacks.Callback):
    """Raises beta linearly from 0 to `target` over `epochs` epochs (Bowman et al. 2016)."""

    def __init__(self, epochs: int, target: float = 1.0):
        super().__init__()
        self.epochs = int(epochs)
        self.target = float(target)

    def on_epoch_begin(self, epoch, logs=None):
        fraction = 1.0 if self.epochs <= 0 else min(1.0, epoch / self.epochs)
        self.model.kl_weight.assign(self.target * fraction)


def make_callbacks(workdir: str) -> list:
    """Logging callbacks for a run directory: TensorBoard under `workdir/logs` (Keras'
    training scalars, plus `tfvae.training.tensorboard.EvalSummaries`: evaluation ELBO,
    pictures and hyperparameters, given the test split by `train_and_evaluate`) and one CSV
    row per epoch in `workdir/history.csv` (`HistoryCSV`: a resumed run keeps its rows)."""
    os.makedirs(workdir, exist_ok=True)
    logs = os.path.join(workdir, rundir.LOGS_DIR)
    return [
        tfk.callbacks.TensorBoard(logs, write_graph=False),
        EvalSummaries(logs),
        HistoryCSV(os.path.join(workdir, rundir.HISTORY_FILE)),
    ]


def train_and_evaluate(
    model_config: VAEConfig,
    train_config: TrainConfig,
    data: Data,
    workdir: Optional[str] = None,
    verbose: int = 2,
    overwrite: bool = False,
    resume: bool = True,
    callbacks: Optional[list] = None,
    strategy: Optional[tf.distribute.Strategy] = None,
    dataset_source: Optional[dict] = None,
    encoder: Optional[tfk.Model] = None,
    decoder: Optional[tfk.Model] = None,
):
    """Fits a VAE on `data.x_train`, evaluates on `data.x_test`, saves under `workdir/model`.

    With a `workdir`, the training state is checkpointed after every epoch
    (`tfvae.training.checkpointing`) and a rerun with the same workdir and configuration
    resumes from the last completed epoch (`resume=True`), ending with the same weights as an
    uninterrupted run. A workdir holding a finished run, or one of another configuration, is
    refused unless `overwrite=True` (which starts afresh). The workdir is locked while this
    runs (`tfvae.training.rundir.RunLockedError` if another process trains there).

    Training stops with `tfvae.engine.callbacks.NonFiniteLossError` (epoch, batch and term) if
    the loss becomes NaN/inf; the workdir then keeps the checkpoints of the epochs before, and
    nothing of the diverged one is written (no checkpoint, history row or model), so its last
    checkpoint holds finite weights. `callbacks` are extra Keras callbacks for `fit` (e.g.
    `make_callbacks(workdir)` for TensorBoard and a CSV log); each
    `tfvae.training.tensorboard.EvalSummaries` among them is fitted as a copy given
    `data.x_test` and the configs (`EvalSummaries.for_run`; the caller's is left as it was).
    `verbose=2` prints one line per epoch (`tfvae.engine.callbacks.EpochLine`), 1 a progress bar.

    Args:
      strategy: a `tf.distribute.Strategy` (see `tfvae.engine.distribute.make_strategy`); default:
        the current one (single device). `train_config.batch_size` is the GLOBAL batch,
        split over all replicas. Under `MultiWorkerMirroredStrategy` every worker must call
        this with the same arguments and see the same `workdir` (a shared filesystem); only
        the chief keeps what it writes (checkpoints, model, metrics), the others write to
        temporary directories that are deleted. Every strategy resumes the same way.
        Networks passed as `encoder`/`decoder` are copied into its scope when not made there.
      dataset_source: how to load the data again (JSON-able, e.g. the CLI's
        `{"dataset": "mnist", "data_dir": ..., "seed": 0}`), recorded in `workdir/run.json`
        with the training data's shape and sha256; resuming on other data is refused.
      encoder, decoder: networks of your own (`VAE(config, encoder=..., decoder=...)`); their
        architecture is recorded in `workdir/run.json`, so a resume without them rebuilds
        them from there (their weights from the checkpoint), and a resume with other ones
        is refused. A resume before the first checkpoint starts them afresh.

    Returns:
      `(model, history_dict, test_metrics_dict)`; the history covers every epoch of the
      run, resumed ones included.
    """
    _check_arguments(model_config, train_config, data, callbacks)
    strategy = strategy or tf.distribute.get_strategy()
    with _open_workdir(workdir, overwrite, resume, strategy) as resave:
        networks = _networks(workdir, overwrite, encoder=encoder, decoder=decoder)
        model = create_model(model_config, train_config, strategy, **networks)
        start = restore_or_start(
            model, train_config, data, workdir, strategy, overwrite, resume, dataset_source
        )
        # history.csv from the checkpointed history: a row lost to a kill, or a cut file, return.
        history_logs = _history_logs(callbacks, workdir)
        _rewrite(history_logs, start.history, strategy)
        history = _train(model, train_config, data, workdir, strategy, start, callbacks, verbose)
        # Evaluate at the configured beta: a KL warm-up longer than the run leaves it lower.
        model.kl_weight.assign(model_config.kl_weight)
        metrics = evaluate_model(
            model, data.x_test, train_config.batch_size, train_config.eval_samples
        )
        _rewrite(history_logs, history, strategy)
        _save(model, workdir, strategy, history, metrics, train_config, overwrite or resave)
        return model, history, metrics


# ----------------------------------------------------------------- the phases, in order
def _check_arguments(model_config, train_config, data, callbacks) -> None:
    """Refuses arguments of the wrong type, data that does not fit the config, Keras 3 callbacks."""
    if not isinstance(model_config, VAEConfig):
        raise TypeError(f"model_config must be a VAEConfig, got {type(model_config).__name__}")
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    if not hasattr(data, "x_train"):
        raise TypeError(f"data must be a tfvae.data.datasets.Data, got {type(data).__name__}")
    if model_config.input_dim != data.input_dim:
        raise ValueError(
            f"VAEConfig.input_dim is {model_config.input_dim} but the data has "
            f"{data.input_dim} features"
        )
    check_data(data, model_config)
    keras3.check(callbacks, "train_and_evaluate(callbacks=...)")


@contextlib.contextmanager
def _open_workdir(
    workdir: Optional[str], overwrite: bool, resume: bool, strategy
) -> Iterator[bool]:
    """Holds `workdir`'s lock for the run and refuses a finished run, or an interrupted one
    without `resume`; yields whether the saved model is written again (`resave`).

    With `overwrite` the run is no longer finished (metrics.json goes) should this one be
    killed. Write debris of a killed run is removed. No workdir: nothing to claim.
    """
    chief = distribute.is_chief(strategy)
    # One process trains in a workdir (`tfvae.training.rundir`): its lock, unless the CLI's
    # claim holds it already; a multi-worker run's other workers share the chief's, unlocked.
    locked = rundir.hold(workdir) if workdir is not None and chief else contextlib.nullcontext()
    with locked:
        model_dir = None if workdir is None else os.path.join(workdir, rundir.MODEL_DIR)
        # model/ without metrics.json: killed during the final writes, which a resume redoes.
        resave = model_dir is not None and os.path.exists(model_dir) and not overwrite
        if resave and (rundir.is_finished(workdir) or not rundir.is_interrupted(workdir)):
            # On every worker (they share the workdir), so none waits for another that stopped.
            raise FileExistsError(
                f"{workdir!r} holds a finished run ({model_dir!r} and its metrics); choose "
                "another workdir or pass overwrite=True"
            )
        if resave and not resume:
            raise FileExistsError(
                f"{workdir!r} holds a run interrupted during its final writes; pass resume=True "
                "to finish it or overwrite=True to start over"
            )
        if workdir is not None and chief:
            rundir.remove_temps(workdir)  # of writes killed half-way; none is in progress now
            if overwrite:  # no longer a finished run, should this one be killed
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(workdir, rundir.METRICS_FILE))
        yield resave


def _networks(workdir: Optional[str], overwrite: bool, **given) -> dict:
    """{part: network} for the VAE: those `given`, else those `workdir`'s run recorded (a
    resume; not for an `overwrite`, which starts afresh)."""
    networks = {part: network for part, network in given.items() if network is not None}
    if workdir is None or overwrite:
        return networks
    for part, config in checkpointing.recorded_networks(workdir).items():
        if part not in networks:
            try:
                networks[part] = build_network(config, part)
            except NetworkLoadError as e:
                raise ValueError(
                    f"cannot resume {workdir!r}: its {part} is a network of your own that "
                    f"cannot be rebuilt here ({e.cause}); register its layer classes with "
                    "tf_keras.saving.register_keras_serializable, or pass it: "
                    f"train_and_evaluate(..., {part}=...)"
                ) from None
    return networks


def create_model(
    model_config: VAEConfig,
    train_config: TrainConfig,
    strategy,
    encoder: Optional[tfk.Model] = None,
    decoder: Optional[tfk.Model] = None,
) -> VAE:
    """A compiled VAE with its optimizer's slots built, its variables under `strategy` (the
    `encoder`/`decoder` given, if any, copied there when made outside its scope)."""
    jit_compile = train_config.jit_compile  # None: the engine's rule (jit_choice)
    if jit_compile and replicas_on_cpu(strategy):
        # XLA compiles a CPU cluster for one device: replicas on logical CPUs then fail with
        # "Trying to access resource ... located in device CPU:1 from device CPU:0".
        logger.info("jit_compile turned off: XLA does not run one replica per CPU device")
        jit_compile = False
    with strategy.scope():  # variables (model, optimizer, metrics) mirrored on every replica
        given = {"encoder": encoder, "decoder": decoder}
        own = {p: in_scope(n, p, strategy) for p, n in given.items() if n is not None}
        model = VAE(model_config, **own)
        optimizer = tfk.optimizers.Adam(
            train_config.learning_rate, global_clipnorm=train_config.clipnorm
        )
        model.compile(
            optimizer,
            jit_compile=jit_compile,
            steps_per_execution=train_config.steps_per_execution,
            fused_steps=train_config.fused_steps,
        )
        # Slots now, not inside the first step: spares a retrace and lets a restore fill them.
        model.optimizer.build(model.trainable_variables)
    return model


class RunStart(NamedTuple):
    """Where a run's fit starts: the epochs already done and their history (`{}` if none)."""

    initial_epoch: int
    history: dict


def restore_or_start(
    model: VAE,
    train_config: TrainConfig,
    data: Data,
    workdir: Optional[str],
    strategy,
    overwrite: bool = False,
    resume: bool = True,
    dataset_source: Optional[dict] = None,
) -> RunStart:
    """The state of `workdir`'s newest checkpoint restored into `model`, or a fresh start,
    whose decoder output biases may begin at the data's statistics.

    `tfvae.training.checkpointing.resume_state` refuses a workdir recorded with another
    configuration or other data (unless `overwrite`, which clears it).
    """
    initial_epoch, past_history = 0, {}
    if workdir is not None:
        dataset = checkpointing.dataset_identity(data.x_train, dataset_source)
        initial_epoch, past_history = checkpointing.resume_state(
            model, model.config, train_config, workdir, overwrite, resume, strategy, dataset
        )
    if train_config.output_bias_from_data and initial_epoch == 0:
        model.set_output_bias(data.x_train)
    return RunStart(initial_epoch, past_history)


def _history_logs(callbacks: Optional[list], workdir: Optional[str]) -> list:
    """The `HistoryCSV` logs among `callbacks`, rewritten from the run's history (none
    without a workdir: no checkpointed history to rewrite them from)."""
    if workdir is None:
        return []
    return [c for c in callbacks or [] if isinstance(c, HistoryCSV)]


def _rewrite(history_logs: list, history: dict, strategy) -> None:
    for log in history_logs:
        log.rewrite(history, write=distribute.is_chief(strategy))


def make_pipeline(x_train: np.ndarray, train_config: TrainConfig, initial_epoch: int):
    """(dataset, steps per epoch) of the epochs still to run: each epoch's batches a fixed
    function of (seed, epoch), sharded across workers (`tfvae.data.input_pipeline`)."""
    return input_pipeline.epoch_dataset(
        x_train,
        train_config.batch_size,
        train_config.seed,
        initial_epoch,
        max(train_config.epochs, initial_epoch + 1),
        dynamic_binarization=train_config.dynamic_binarization,
    )


def _train(model, train_config, data, workdir, strategy, start: RunStart, callbacks, verbose):
    """Fits the epochs from `start` on, checkpointing each one; returns the whole run's history."""
    train_ds, steps = make_pipeline(data.x_train, train_config, start.initial_epoch)
    history = dict(start.history)
    checkpoint_dir = None if workdir is None else os.path.join(workdir, rundir.CHECKPOINT_DIR)
    with distribute.write_dir(checkpoint_dir, strategy) as checkpoint_out:
        fit_callbacks = _callbacks(model.config, train_config, checkpoint_out, start, verbose)
        fit_callbacks += [
            _for_run(c, data.x_test, model.config, train_config) for c in callbacks or []
        ]
        if start.initial_epoch < train_config.epochs:
            chief = distribute.is_chief(strategy)
            fitted = model.fit(
                train_ds,
                epochs=train_config.epochs,
                verbose=verbose if chief and verbose != 2 else 0,  # one progress log, the chief's
                callbacks=fit_callbacks,
                initial_epoch=start.initial_epoch,
                steps_per_epoch=steps,
            )
            for key, values in fitted.history.items():
                history[key] = list(start.history.get(key, [])) + [float(v) for v in values]
    return history


def _callbacks(model_config, train_config, checkpoint_out, start: RunStart, verbose) -> list:
    """The run's own fit callbacks: stop on NaN, KL warm-up, per-epoch checkpoints, one line
    per epoch (`verbose=2`); the caller's come after them."""
    callbacks = [StopOnNonFiniteLoss()]
    if train_config.kl_warmup_epochs:
        callbacks.append(KLWarmup(train_config.kl_warmup_epochs, model_config.kl_weight))
    if checkpoint_out is not None:
        callbacks.append(checkpointing.TrainingCheckpoint(checkpoint_out, start.history))
    if verbose == 2:
        callbacks.append(EpochLine())  # Keras' own prints a negative ELBO as -3.3e+01
    return callbacks


def _for_run(callback, x_test, model_config, train_config):
    """A caller's callback as this run fits it: an `EvalSummaries` becomes a copy given the
    test split and the configs; any other callback is itself."""
    if isinstance(callback, EvalSummaries):
        return callback.for_run(x_test, model_config, train_config)
    return callback


def evaluate_model(
    model: VAE,
    x: np.ndarray,
    batch_size: int = 100,
    importance_samples: int = IMPORTANCE_SAMPLES,
    **renamed,
) -> dict:
    """Test metrics in nats per example: ELBO, reconstruction, KL, IWAE log p(x) at
    `importance_samples` draws, bits/dim; for a model trained with the IWAE objective also
    that objective, `iwae` (the bound at its `iwae_num_samples` = `VAEConfig.num_samples`
    training draws, history.csv's `iwae` column on the test split)."""
    importance_samples = renamed_argument(
        "evaluate_model", "importance_samples", importance_samples, renamed
    )
    logs = model.evaluate(x, batch_size=batch_size, verbose=0, return_dict=True)
    log_px = model.log_likelihood(x, importance_samples=importance_samples, batch_size=batch_size)
    nll = float(-np.mean(log_px))
    metrics = {
        "elbo": float(logs["elbo"]),
        "reconstruction": float(logs["reconstruction"]),
        "kl": float(logs["kl"]),
        "log_likelihood": -nll,
        "log_likelihood_samples": int(importance_samples),
        "nll_bits_per_dim": float(bits_per_dim(nll, model.config.input_dim)),
        "num_examples": int(len(x)),
    }
    if "iwae" in logs:
        metrics.update(iwae=float(logs["iwae"]), iwae_num_samples=int(model.config.num_samples))
    return metrics


def _save(model, workdir, strategy, history, metrics, train_config, overwrite):
    """Writes `workdir/model`, then `workdir/metrics.json`: the last file of a run, which
    marks it finished (`tfvae.training.rundir`). Other workers than the chief write to a
    temporary directory that is deleted (`tfvae.engine.distribute.write_dir`)."""
    with distribute.write_dir(workdir, strategy) as out:
        if out is None:
            return
        os.makedirs(out, exist_ok=True)
        save_model(model, os.path.join(out, rundir.MODEL_DIR), overwrite=overwrite)
        atomic.write_json(
            os.path.join(out, rundir.METRICS_FILE),
            {"test": metrics, "history": history, "train_config": train_config.to_dict()},
            sort_keys=False,
        )
