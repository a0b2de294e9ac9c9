"""`tfvae train`, `run` and `evaluate` as library calls: the jobs around `train_and_evaluate`.

`train_and_evaluate` trains a config on arrays; `train_run` is the job around it: it loads a
dataset by name, completes the model config from the data, claims the run directory
(`tfvae.training.rundir`: the lock once, an overwrite swapped in only when complete), trains,
and draws the run's pictures; `evaluation_report` is `tfvae evaluate`'s. The command line's
commands are thin shells over them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, List, Mapping, Optional

from tfvae.base import schema
from tfvae.config import (
    PICTURE_LATENT_EXAMPLES,
    PICTURE_RECONSTRUCTIONS,
    TrainConfig,
    VAEConfig,
)
from tfvae.data import choice
from tfvae.training import rundir

logger = logging.getLogger(__name__)

__all__ = [
    "TrainedRun",
    "train_run",
    "draw_run_pictures",
    "draw_run_curves",
    "finished_run_metrics",
    "with_elbo_bits_per_dim",
    "evaluation_report",
    "run_record",
    "data_source",
    "binarization",
    "check_evaluation_data",
]

Note = Callable[[str], None]


@dataclasses.dataclass
class TrainedRun:
    """What `train_run` made: the model, the data it loaded, the test metrics, the PNGs."""

    model: Any  # tfvae.VAE
    data: Any  # tfvae.data.datasets.Data
    metrics: dict
    pictures: List[str]


def train_run(
    out: str,
    dataset: str,
    data_dir: Optional[str],
    model_fields: Mapping[str, Any],
    train_config: TrainConfig,
    mode: str = rundir.NEW,
    strategy: str = "default",
    verbose: int = 2,
    pictures: bool = False,
    note: Note = logger.warning,
    image_shape: Optional[tuple] = None,
) -> TrainedRun:
    """Trains a VAE on `dataset` into run directory `out`, as `tfvae train` does.

    Args:
      dataset: a dataset name (`tfvae.data.choice`; `auto` already chosen) or an array file.
      data_dir: where the named datasets are (None: `$TFVAE_DATA_DIR`, else the default).
      model_fields: `VAEConfig` fields; `input_dim` and `image_shape` come from the data, and
        `decoder`, unless given, is bernoulli for binary (or dynamically binarized) data,
        else gaussian.
      mode: `rundir.NEW`, `rundir.OVERWRITE` or `rundir.RESUME` (see `rundir.claim`).
      strategy: a `tfvae.engine.distribute.make_strategy` name.
      verbose: `train_and_evaluate`'s.
      pictures: also draw `tfvae run`'s pictures (`draw_run_pictures`), once published.
      note: where progress lines go (the CLI's stderr).
      image_shape: the data's image shape, if not its own (`tfvae.data.choice.load_data`).

    Raises:
      tfvae.training.rundir.RunDirError: `out` is in use or not what `mode` needs.
    """
    from tfvae.engine.distribute import barrier, is_chief, make_strategy

    made = make_strategy(strategy)  # before any TF op: multi-worker requires it
    chief = is_chief(made)
    with rundir.claim(out, mode, chief, note, sync=lambda: barrier(made)) as run:
        dynamic = train_config.dynamic_binarization
        data = choice.load_data(dataset, data_dir, train_config.seed, binarization(dynamic), note)
        source = data_source(dataset, data_dir, train_config.seed)
        if mode == rundir.RESUME:  # before the image shape: the run's may not fit other data
            _check_resumed_data(out, data, source)
        if image_shape is not None:
            from tfvae.data.datasets import with_image_shape

            data = with_image_shape(data, image_shape)
        fields = dict(model_fields)
        fields.setdefault("decoder", "bernoulli" if data.binary or dynamic else "gaussian")
        config = VAEConfig(input_dim=data.input_dim, image_shape=data.image_shape, **fields)
        workdir = run.stage()  # an overwrite's staging directory: all workers sync on it
        model, metrics = _fit(config, train_config, data, workdir, made, verbose, source, note)
        run.publish()
        drawn = draw_run_pictures(out, model, data) if pictures else []
    return TrainedRun(model, data, metrics, drawn)


def _check_resumed_data(out: str, data, source: dict) -> None:
    """Refuses to resume `out` on other data than it recorded (`rundir.other_data_problem`)."""
    from tfvae.training.checkpointing import dataset_identity

    saved = rundir.recorded_run(out).get("dataset")
    problem = rundir.other_data_problem(out, saved, dataset_identity(data.x_train, source))
    if problem is not None:
        raise rundir.RunDirError(problem)


def binarization(dynamic: bool) -> str:
    """How a run loads its data (`choice.load_data`): dynamic binarization keeps grey levels,
    redrawn as binary pixels every epoch; otherwise one static, seeded draw."""
    return "dynamic" if dynamic else "static"


def data_source(dataset: str, data_dir: Optional[str], seed: int) -> dict:
    """How to load the data again, recorded in run.json (paths made absolute)."""
    dataset = os.path.abspath(dataset) if os.path.isfile(dataset) else dataset
    data_dir = os.path.abspath(data_dir) if data_dir else None
    return {"dataset": dataset, "data_dir": data_dir, "seed": seed}


def _fit(config, train_config, data, workdir: str, strategy, verbose, source, note: Note):
    """`train_and_evaluate` into `workdir` with the run directory's logs and curves."""
    from tfvae.engine.distribute import is_chief
    from tfvae.training.train import make_callbacks, train_and_evaluate

    note(
        f"training a {_networks_said(config, workdir)} on {data.name}: {len(data.x_train)} "
        f"train / {len(data.x_test)} test examples, D={data.input_dim}, "
        f"{train_config.epochs} epochs"
    )
    model, _, metrics = train_and_evaluate(
        config,
        train_config,
        data,
        workdir,
        verbose=verbose,
        callbacks=make_callbacks(workdir),
        strategy=strategy,
        dataset_source=source,
    )
    if is_chief(strategy):
        draw_run_curves(workdir)
    return model, metrics


def _networks_said(config, workdir: str) -> str:
    """The VAE in words: its built-in networks, or those of the user's its run recorded."""
    from tfvae.training.checkpointing import recorded_networks

    own = sorted(recorded_networks(workdir))
    if own:
        return f"VAE (J={config.latent_dim}) of your own {' and '.join(own)} (recorded in the run)"
    return (
        f"{config.decoder} VAE (J={config.latent_dim}, {config.architecture} "
        f"{list(config.hidden_units)})"
    )


def draw_run_curves(run_dir: str) -> Optional[str]:
    """RUN/pictures/curves.png from RUN/history.csv (None if there is no history yet)."""
    from tfvae.plots import draw_curves

    return draw_curves(os.path.join(run_dir, rundir.HISTORY_FILE), _curves_path(run_dir))


def _curves_path(run_dir: str) -> str:
    """RUN/pictures/curves.png."""
    return os.path.join(run_dir, rundir.PICTURES_DIR, rundir.CURVES_FILE)


def draw_run_pictures(run_dir: str, model, data) -> List[str]:
    """RUN/pictures/: reconstructions and latent space of test examples, samples drawn with
    the model's seed, and the curves if drawn. Returns the paths."""
    from tfvae.plots import draw_latent, draw_reconstructions, draw_samples

    pictures = os.path.join(run_dir, rundir.PICTURES_DIR)
    x = data.x_test
    paths = [
        draw_reconstructions(
            model, x[:PICTURE_RECONSTRUCTIONS], os.path.join(pictures, rundir.RECONSTRUCTIONS_FILE)
        ),
        draw_samples(model, os.path.join(pictures, rundir.SAMPLES_FILE), seed=model.config.seed),
    ]
    count = PICTURE_LATENT_EXAMPLES
    labels = None if data.y_test is None else data.y_test[:count]
    paths += draw_latent(model, x[:count], labels, os.path.join(pictures, rundir.LATENT_FILE))
    curves = _curves_path(run_dir)
    return paths + ([curves] if os.path.isfile(curves) else [])


def finished_run_metrics(
    out: str, recorded: dict, epochs: Optional[int] = None, note: Note = logger.warning
) -> dict:
    """A resume of finished run `out` (`recorded`: its run.json): nothing to train, more
    `epochs` refused; the curves drawn if a kill came before them. Its metrics.json."""
    rundir.check_finished_epochs(out, recorded, epochs)
    with rundir.claim(out, rundir.RESUME, note=note):
        if not os.path.isfile(_curves_path(out)):
            draw_run_curves(out)
    return rundir.finished_metrics(out)


def with_elbo_bits_per_dim(metrics: dict, input_dim: int) -> dict:
    """`metrics` and, after them, the ELBO in bits per dimension (`elbo_bits_per_dim`)."""
    from tfvae.model.objectives import bits_per_dim

    return {**metrics, "elbo_bits_per_dim": float(bits_per_dim(-metrics["elbo"], input_dim))}


def evaluation_report(model, data, samples: int, batch_size: int) -> dict:
    """`tfvae evaluate`'s report: `tfvae.training.train.evaluate_model` on `data`'s test split,
    plus what it lacks, the ELBO in bits/dim and the dataset's name."""
    from tfvae.training.train import evaluate_model

    metrics = evaluate_model(model, data.x_test, batch_size, samples)
    return {**with_elbo_bits_per_dim(metrics, model.config.input_dim), "dataset": data.name}


# ---------------------------------------------------------------- a trained run's data
def run_record(run_dir: str) -> dict:
    """`run_dir`'s run.json, checked; {} for a directory without one (a saved model's)."""
    path = os.path.join(run_dir, rundir.RUN_FILE)
    if not os.path.isfile(path):
        return {}
    return schema.read_json(path, rundir.RUN_SCHEMA, "run file", rundir.RunDirError)


def check_evaluation_data(
    run_dir: str, run: dict, data, source: dict, other_data: bool, note: Note = logger.warning
) -> None:
    """Refuses to evaluate run `run_dir` (`run`: its run.json) on `data` (loaded from
    `source`) unless its training split is the one the run recorded, as `--resume` does;
    with `other_data` it evaluates, saying on which data. Runs that recorded none pass."""
    from tfvae.training.checkpointing import dataset_identity

    difference = rundir.data_difference(run.get("dataset"), dataset_identity(data.x_train, source))
    if difference is None:
        return
    if not other_data:
        raise ValueError(
            f"RUN {run_dir!r} was trained on other data than the data loaded now ({difference})"
            ": evaluate it on its own data, or pass --other-data to evaluate on this data"
        )
    note(f"evaluating {run_dir} on other data than it was trained on ({difference})")
