"""The `tfvae` subcommands: each a short function from parsed options to library calls.

A command's docstring is its help: the first line in `tfvae --help`, the rest in
`tfvae COMMAND --help` (`tfvae.cli.parser.make_parser`). The work is the library's:
`tfvae.training.jobs` (train, run, evaluate), `tfvae.training.rundir` (the run directory),
`tfvae.data.choice` (data by name), `tfvae.plots` (pictures), `tfvae.serving.export`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

from tfvae.cli.flags import config_values
from tfvae.cli.parser import UsageError, given
from tfvae.config import TrainConfig
from tfvae.data import choice
from tfvae.training import jobs, rundir

__all__ = ["COMMANDS", "run", "train", "evaluate", "export", "sample", "reconstruct", "latent"]

COMMANDS = ("run", "train", "evaluate", "export", "sample", "reconstruct", "latent")


def note(message: str) -> None:
    """A progress line on stderr (`tfvae: ...`), apart from the command's output."""
    print(f"tfvae: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- training
def run(args) -> int:
    """The main job: train, evaluate, draw the pictures, export.

    Train on MNIST (downloaded on first use; offline, the embedded 8x8 digits, saying so)
    or --dataset, evaluate the test ELBO and log p(x), write the pictures and export for TF
    Serving. Writes RUNS_DIR/NAME and BASE_DIR/NAME/1. If either exists it is kept and the run
    is named NAME-2, NAME-3, ... (RUNS_DIR/NAME-2, BASE_DIR/NAME-2/1): a run never becomes a
    new version of another run's model. To serve a run as a new version of a model, use
    `tfvae export RUN --name`.
    """
    _check_plain_name(args.name, "--name must be a plain name")
    run_name = _free_run_name(args.runs_dir, args.base_dir, args.name)
    out = os.path.join(args.runs_dir, run_name)
    if run_name != args.name:
        note(
            f"{os.path.join(args.runs_dir, args.name)} or {os.path.join(args.base_dir, args.name)}"
            f" already exists and is kept; this run writes {out} and exports to "
            f"{os.path.join(args.base_dir, run_name)}"
        )
    trained = _train_run(args, out, pictures=True)
    m = jobs.with_elbo_bits_per_dim(trained.metrics, trained.model.config.input_dim)
    print(
        f"test ELBO {m['elbo']:.3f} nats/example ({m['elbo_bits_per_dim']:.4f} "
        f"bits/dim), log p(x) >= {m['log_likelihood']:.3f} "
        f"(IWAE K={m['log_likelihood_samples']}, {m['nll_bits_per_dim']:.4f} bits/dim)"
    )
    for path in trained.pictures:
        _wrote(path)
    print(f"exported {_export(trained.model, args.base_dir, run_name, version=1)}")
    print(f"run directory: {out}")
    return 0


def train(args) -> int:
    """Train a VAE and save it with its logs.

    Train a VAE and save config + weights (OUT/model), test metrics (OUT/metrics.json), one
    CSV row per epoch (OUT/history.csv), TensorBoard logs (OUT/logs) and the training curves
    (OUT/pictures/curves.png). The training state is checkpointed every epoch
    (OUT/checkpoints): a run killed at any point is finished by `tfvae train --out OUT
    --resume`. Refuses an existing OUT unless --overwrite or --resume, and an OUT in which
    another process trains.
    """
    if args.strategy != "multi-worker":  # (there the chief holds the lock its workers share)
        rundir.check_lock(args.out)  # first: "in use" says more than what is found there
    recorded = None
    if args.resume:
        recorded = rundir.recorded_run(args.out)
        if rundir.is_finished(args.out):
            metrics = jobs.finished_run_metrics(
                args.out, recorded, getattr(args, "epochs", None), note
            )
            note(f"{args.out} holds a finished run: already finished, nothing to resume")
            print(json.dumps(metrics["test"], indent=2))
            print(f"saved {os.path.join(args.out, rundir.MODEL_DIR)}")
            return 0
    else:
        rundir.check_new(args.out, args.overwrite)
    mode = rundir.RESUME if args.resume else rundir.OVERWRITE if args.overwrite else rundir.NEW
    trained = _train_run(args, args.out, mode, recorded)
    print(json.dumps(trained.metrics, indent=2))
    print(f"saved {os.path.join(args.out, rundir.MODEL_DIR)}")
    return 0


def _train_run(args, out: str, mode: str = rundir.NEW, recorded=None, pictures=False):
    """`jobs.train_run` per the options: the data (on --resume the run's own unless
    --dataset says), the configs (the preset's, or the recorded ones, then the flags)."""
    dataset, data_dir = args.dataset, args.data_dir
    if recorded is not None and not given(args, "dataset"):
        source = rundir.dataset_source(out, recorded)
        dataset = source.get("dataset") or dataset
        data_dir = data_dir or source.get("data_dir")
    choice.check_dataset_file(dataset)  # before TensorFlow: bad input is answered at once
    dataset = choice.choose_dataset(dataset, data_dir, note)  # the preset follows the data
    model_fields, train_fields = config_values(args, recorded, dataset)
    train_config = TrainConfig(**train_fields)
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    return jobs.train_run(
        out, dataset, data_dir, model_fields, train_config, mode, args.strategy, verbose,
        pictures, note, _image_shape(args, recorded),
    )  # fmt: skip


def _image_shape(args, recorded=None):
    """--image-shape; on --resume without it, the shape the run recorded (the data's rule
    may have changed since: a flat array file was once one row of pixels)."""
    if args.image_shape is not None or recorded is None:
        return args.image_shape
    shape = recorded.get("model_config", {}).get("image_shape")
    return None if shape is None else tuple(shape)


def _free_run_name(runs_dir: str, base_dir: str, name: str) -> str:
    """`name`, else the first of `name-2`, `name-3`, ... free both as a run directory and as
    an export: a run never adds a version to another run's model."""
    run_name, k = name, 2
    while os.path.exists(os.path.join(runs_dir, run_name)) or os.path.exists(
        os.path.join(base_dir, run_name)
    ):
        run_name, k = f"{name}-{k}", k + 1
    return run_name


# ---------------------------------------------------------------- a trained run
def evaluate(args) -> int:
    """Test ELBO and importance-weighted log p(x).

    ELBO (one z per example; the mean over K draws for a model trained with --num-samples K)
    and the importance-weighted bound on log p(x) (Burda et al. 2015) on the test split, in
    nats per example and bits per dimension. Refuses data other than the run's (the
    sha256 its run.json recorded) unless --other-data.
    """
    model, run = _open_run(args.run_dir)
    data = _run_data(args, run, model)
    source = _run_source(args, run)
    jobs.check_evaluation_data(args.run_dir, run, data, source, args.other_data, note)
    m = jobs.evaluation_report(model, data, args.samples, args.batch_size)
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    print(f"{data.name} test split: {m['num_examples']} examples, D = {model.config.input_dim}")
    print(
        f"  ELBO                 {m['elbo']:10.3f} nats/example   "
        f"{m['elbo_bits_per_dim']:.4f} bits/dim"
    )
    print(f"    log p(x|z)         {m['reconstruction']:10.3f}")
    print(f"    KL(q(z|x) || p(z)) {m['kl']:10.3f}")
    if "iwae" in m:  # the training objective, at the draws it trained with
        k, bound = m["iwae_num_samples"], m["iwae"]
        print(f"  IWAE bound (K={k}, trained on) {bound:10.3f} nats/example")
    print(
        f"  log p(x) (IWAE K={m['log_likelihood_samples']}) {m['log_likelihood']:10.3f} "
        f"nats/example   NLL {m['nll_bits_per_dim']:.4f} bits/dim"
    )
    return 0


def export(args) -> int:
    """Export for TF Serving (saved_models/<name>/<version>).

    Export the run's model as a SavedModel in TF Serving's layout BASE_DIR/NAME/VERSION with
    signatures serving_default, encode, decode, generate and log_likelihood. VERSION defaults
    to the next free integer; an existing version is kept unless --overwrite.
    """
    name = args.name or os.path.basename(os.path.normpath(os.path.abspath(args.run_dir)))
    if args.version is not None and not args.overwrite:
        target = os.path.join(args.base_dir, name, str(args.version))
        if os.path.exists(target):
            raise UsageError(
                f"{target!r} already exists: pass --overwrite to replace it, or leave out "
                f"--version to export the next free version"
            )
    if args.max_request_elements is not None and args.max_request_elements < args.iwae_samples:
        raise UsageError(
            f"--max-request-elements must be at least --iwae-samples ({args.iwae_samples}): "
            f"one log_likelihood row takes that many, got {args.max_request_elements}"
        )
    model, _ = _open_run(args.run_dir)
    options = {"iwae_samples": args.iwae_samples, "max_request_elements": args.max_request_elements}
    print(
        f"exported {_export(model, args.base_dir, name, args.version, args.overwrite, **options)}"
    )
    return 0


def sample(args) -> int:
    """Picture: decoder means beside draws x ~ p(x|z).

    Draw NUM latents z ~ p(z). Each row of the PNG shows, for one z, the decoder mean E[x|z]
    (fixed by z) and DRAWS samples x ~ p(x|z) (random): the decoder is a distribution. The PNG
    is (NUM*100 + 50) x ((DRAWS+1)*100) pixels (height x width).
    """
    from tfvae.plots import draw_samples

    path = _picture_path(args, rundir.SAMPLES_FILE)
    model, _ = _open_run(args.run_dir)
    _wrote(draw_samples(model, path, args.num, args.draws, args.seed, args.image_shape))
    return 0


def reconstruct(args) -> int:
    """Picture: test inputs beside their reconstructions.

    Top row: NUM test inputs x; bottom row: the decoder mean for z = E[q(z|x)]. The PNG is
    250 x (NUM*100) pixels (height x width).
    """
    from tfvae.plots import draw_reconstructions

    path = _picture_path(args, rundir.RECONSTRUCTIONS_FILE)
    model, run = _open_run(args.run_dir)
    data = _run_data(args, run, model)
    x = data.x_test[: args.num]
    _wrote(draw_reconstructions(model, x, path, args.image_shape, data.image_shape))
    return 0


def latent(args) -> int:
    """Picture: the latent space (and the manifold for J = 2).

    Scatter of the means of q(z|x) over NUM test examples coloured by label (600 x 700
    pixels, height x width; the two leading principal components when J > 2). For a 2-D latent
    space also the decoded manifold over a GRID x GRID grid of z through the inverse Gaussian
    CDF (Kingma & Welling 2013, Fig. 4; 850 x 800 pixels) as manifold.png beside it.
    """
    from tfvae.plots import draw_latent

    path = _picture_path(args, rundir.LATENT_FILE)
    model, run = _open_run(args.run_dir)
    data = _run_data(args, run, model)
    labels = None if data.y_test is None else data.y_test[: args.num]
    x = data.x_test[: args.num]
    shapes = (args.image_shape, data.image_shape)
    for drawn in draw_latent(model, x, labels, path, args.grid, *shapes):
        _wrote(drawn)
    return 0


# ---------------------------------------------------------------- helpers
def _open_run(run_dir: str):
    """(model, its run.json: {} for a saved-model directory) of a run directory."""
    from tfvae.model.loading import load_model
    from tfvae.model.saving import MANIFEST

    if not os.path.isdir(run_dir):
        raise UsageError(f"RUN {run_dir!r} not found: expected a directory written by tfvae train")
    is_model = os.path.isfile(os.path.join(run_dir, MANIFEST))
    if not is_model and not os.path.isdir(os.path.join(run_dir, rundir.MODEL_DIR)):
        raise UsageError(
            f"RUN {run_dir!r} holds no trained model (no {rundir.MODEL_DIR!r} directory): "
            f"expected a directory written by tfvae train"
        )
    return load_model(run_dir), jobs.run_record(run_dir)  # load_model finds model/


def _run_source(args, run: dict) -> dict:
    """How a command loads its data: --dataset and --data-dir if given, else the run's."""
    info = rundir.dataset_source(args.run_dir, run)
    dataset = args.dataset or info.get("dataset")
    if dataset is None:
        raise UsageError(f"RUN {args.run_dir!r} does not say its dataset: pass --dataset")
    data_dir = args.data_dir or info.get("data_dir")
    return jobs.data_source(dataset, data_dir, int(info.get("seed", 0)))


def _run_data(args, run: dict, model):
    """The data a command looks at (`_run_source`), loaded as the run loaded it."""
    source = _run_source(args, run)
    dataset = source["dataset"]
    dynamic = run.get("train_config", {}).get("dynamic_binarization", False)
    binarization = jobs.binarization(dynamic)
    data = choice.load_data(dataset, source["data_dir"], source["seed"], binarization, note)
    if data.input_dim != model.config.input_dim:
        raise UsageError(
            f"the model expects {model.config.input_dim} features per example but "
            f"dataset {dataset!r} has {data.input_dim}: pass the --dataset it was trained on"
        )
    return data


def _picture_path(args, default_name: str) -> str:
    path = args.out or os.path.join(args.run_dir, rundir.PICTURES_DIR, default_name)
    if not path.lower().endswith(".png"):
        raise UsageError(f"--out must name a .png file, got {path!r}")
    return path


def _wrote(path: str) -> str:
    from matplotlib.image import imread

    h, w = imread(path).shape[:2]
    print(f"wrote {path} ({h} x {w} pixels)")
    return path


def _check_plain_name(name: Optional[str], message: str) -> None:
    if not name or os.sep in name or name in (".", ".."):
        raise UsageError(f"{message}, got {name!r}")


def _export(model, base_dir: str, name: str, version=None, overwrite=False, **options) -> str:
    """`tfvae.serving.export.export` into BASE_DIR/NAME; `options` are its keyword arguments."""
    try:
        from tfvae.serving.export import export as export_model
    except ImportError as e:
        raise UsageError(f"export is not available in this installation ({e})")
    _check_plain_name(name, "--name must be a plain model name")
    target = os.path.join(base_dir, name)
    return export_model(model, target, version=version, overwrite=overwrite, **options)
