"""The `tfvae` command: train, evaluate, draw and export a VAE (also `python -m tfvae`).

    tfvae run                      # the main job: train -> evaluate -> pictures -> export
    tfvae train --dataset mnist --epochs 50 --out runs/mnist
    tfvae evaluate runs/mnist --json
    tfvae sample runs/mnist        # decoder means beside draws x ~ p(x|z), same z per row
    tfvae reconstruct runs/mnist   # test inputs beside their reconstructions
    tfvae latent runs/mnist        # latent means coloured by label (+ manifold if J = 2)
    tfvae export runs/mnist        # TF Serving layout: saved_models/<name>/<version>

`train` and `run` have one flag per field of `VAEConfig` and `TrainConfig`, generated from
`tfvae.config` (names, choices, help, checks); `--preset` picks their defaults (unless told
otherwise, the dataset's: `mnist` for MNIST, `digits` for the rest).

A run directory holds `model/` (config + weights), `run.json` (the configs and the data it
was trained on, checked on resume), `checkpoints/` (the training state of the last epochs),
`metrics.json`, `history.csv`, TensorBoard `logs/` and `pictures/`. Compiled XLA programs are
kept across runs in a per-user cache (`tfvae.xla_cache`; `TFVAE_XLA_CACHE=off` turns it off),
so a second run does not compile them again. Bad input
(unknown names, missing files, impossible values, a model that does not fit the data)
ends with one line on stderr and exit status 2; nothing already written is replaced
unless `--overwrite` says so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.abc
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from typing import Optional, Sequence, Tuple

from tfvae import xla_cache
from tfvae.config import (
    DATASETS,
    DEFAULT_PRESET,
    PRESETS,
    TrainConfig,
    VAEConfig,
    check_field,
    cli_fields,
    preset,
    preset_for,
)

__all__ = ["main", "EXIT_USAGE"]

EXIT_USAGE = 2
DATA_FILE = "dataset.json"  # what runs recorded their dataset in before run.json did
NAMED_DATASETS = ("auto", *DATASETS)  # auto: MNIST when present or downloadable


class UsageError(Exception):
    """Bad input found by the CLI itself: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) so scripts can read stderr."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- value checks
def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)


def _dataset(text: str) -> str:
    if text in NAMED_DATASETS or text.endswith((".npy", ".npz")):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown dataset {text!r}: expected one of {', '.join(NAMED_DATASETS)} "
        f"or a path to a .npy/.npz file"
    )


# ---------------------------------------------------------------- config flags
# Every flag below is generated from a field of VAEConfig or TrainConfig (`tfvae.config`):
# its name, choices, help text, default (the preset's) and validation are the field's.
_CONFIGS = (VAEConfig, TrainConfig)
# The decoder's default depends on the data; the other fields the data sets have no flag.
_DATA_DEFAULTS = {"decoder": "bernoulli if the data is binary, else gaussian"}


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _config_flags() -> dict:
    """{field name: [(config class, field), ...]}: one flag per name (`seed` sets both)."""
    flags = {}
    for cls in _CONFIGS:
        for field in cli_fields(cls):
            flags.setdefault(field.name, []).append((cls, field))
    return flags


def _value_parser(owners: list, element: bool = False):
    """argparse `type` for one config flag: converts the text, then runs the field's check."""
    field = owners[0][1]
    convert = int if "int" in field.type else float if "float" in field.type else str

    def parse(text: str):
        if text.lower() == "none" and field.type.startswith("Optional"):
            return None
        try:
            value = convert(text)
        except ValueError:
            value = text  # the check says what was expected
        for cls, _ in owners:
            problem = check_field(cls, field.name, (value,) if element else value)
            if problem:
                raise argparse.ArgumentTypeError(f"{problem} ({cls.__name__}.{field.name})")
        return value

    parse.__name__ = field.name
    return parse


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """`--preset` and one flag per user-set field of the configs."""
    g = p.add_argument_group("configuration")
    g.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=None,
        help="named defaults for the options below ("
        + "; ".join(f"{name}: {each.description}" for name, each in PRESETS.items())
        + f") (default: the dataset's: mnist for MNIST, else {DEFAULT_PRESET})",
    )
    groups = {cls: p.add_argument_group(f"{cls.__name__} (tfvae.config)") for cls in _CONFIGS}
    for name, owners in _config_flags().items():
        cls, field = owners[0]
        if len(owners) == 1:
            help = field.metadata["help"]
        else:
            help = "; ".join(f"{c.__name__}.{name}: {f.metadata['help']}" for c, f in owners)
        help = help.replace("%", "%%") + _default_text(cls, field)
        kwargs = {"default": argparse.SUPPRESS, "help": help}
        if field.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif field.metadata["choices"]:
            kwargs["choices"] = field.metadata["choices"]
        elif field.type.startswith("Tuple"):
            kwargs.update(nargs="+", metavar="N", type=_value_parser(owners, element=True))
        else:
            metavar = "N" if field.type == "int" else "X"
            kwargs.update(type=_value_parser(owners), metavar=metavar)
        groups[cls].add_argument(_flag(name), **kwargs)


def _default_text(cls, field: dataclasses.Field) -> str:
    """The help's "(default: ...)": the presets' values where they set one, else the dataclass's."""

    def show(value):
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    if field.name in _DATA_DEFAULTS:
        return f" (default: {_DATA_DEFAULTS[field.name]})"
    by_preset = [
        f"{name} {show(values[field.name])}"
        for name, each in PRESETS.items()
        for values in [each.model if cls is VAEConfig else each.train]
        if field.name in values
    ]
    if by_preset:
        return (
            f" (default: the preset's: {', '.join(by_preset)}; "
            f"the library's: {show(field.default)})"
        )
    return f" (default: {show(field.default)})"


def _dataset_kind(dataset: str) -> str:
    """The named dataset a file holds (Keras' mnist.npz is `mnist`), else `dataset` itself."""
    if dataset.endswith(".npz") and os.path.isfile(dataset):
        from tfvae.data import is_keras_mnist

        return "mnist" if is_keras_mnist(dataset) else dataset
    return dataset


def _config_values(args) -> Tuple[dict, dict]:
    """The VAEConfig and TrainConfig fields `args` sets: its preset's, then the flags given.

    Fields left out take the dataclass defaults; `decoder` (unless given) and the fields
    the data determines are the caller's to add.
    """
    chosen = preset(args.preset or preset_for(_dataset_kind(args.dataset)))
    given = vars(args)
    model = dict(chosen.model)
    model.update({f.name: given[f.name] for f in cli_fields(VAEConfig) if f.name in given})
    train = dict(chosen.train)
    train.update({f.name: given[f.name] for f in cli_fields(TrainConfig) if f.name in given})
    return model, train


def _build(cls, **values):
    """`cls(**values)`; a field's error also names its flag."""
    try:
        return cls(**values)
    except ValueError as e:
        match = re.match(rf"{cls.__name__}\.(\w+):", str(e))
        names = {f.name for f in cli_fields(cls)}
        if match and match.group(1) in names:
            raise UsageError(f"{_flag(match.group(1))}: {e}") from e
        raise


# ---------------------------------------------------------------- the parser
def _add_train_options(p: argparse.ArgumentParser, dataset: str) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        type=_dataset,
        default=dataset,
        help="default (8x8 digits shipped inside tfvae, no download), mnist, binarized_mnist, "
        "frey (these three download into --data-dir on first use), auto (mnist if present or "
        "downloadable, else default), a .npy/.npz file of values in [0, 1], or Keras' "
        f"mnist.npz (default: {dataset})",
    )
    g.add_argument(
        "--data-dir",
        default=None,
        help="directory of the real data and download cache "
        "(default: $TFVAE_DATA_DIR, else ~/.tfvae/datasets)",
    )
    g = p.add_argument_group("running")
    g.add_argument("--quiet", action="store_true", help="no per-epoch progress output")
    g.add_argument(
        "--strategy",
        default="default",
        choices=("default", "mirrored", "multi-worker"),
        help="tf.distribute strategy: one device, all local GPUs (mirrored), or the cluster "
        "in $TF_CONFIG (multi-worker); --batch-size is the global batch (default: default)",
    )
    _add_config_options(p)


def _add_run_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="a run directory written by `tfvae train`")


def _add_data_override(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        type=_dataset,
        default=None,
        help="data to use instead of the one the run was trained on (same choices as train)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="(default: the run's, else $TFVAE_DATA_DIR, else ~/.tfvae/datasets)",
    )


def _add_export_target(p: argparse.ArgumentParser, name_default, name_help: str) -> None:
    """--name and --base-dir: an export goes to BASE_DIR/NAME/<version>."""
    p.add_argument("--name", default=name_default, help=name_help)
    p.add_argument("--base-dir", default="saved_models", help="export root (default: saved_models)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tfvae",
        description="Variational autoencoders whose decoder is a distribution p(x|z).",
        epilog="`tfvae COMMAND --help` describes each command.",
    )
    verbose = (
        "show all of TensorFlow's C++ log lines, start-up included (default: those at "
        "$TF_CPP_MIN_LOG_LEVEL and above if set, else none)"
    )
    parser.add_argument("--verbose", action="store_true", help=verbose)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, command, reads_run=False, reads_data=False, picture=None):
        """A subcommand run by `command`: its docstring's first line is the command's help,
        the rest its --help description.

        `reads_run` adds the RUN argument, `reads_data` --dataset/--data-dir; `picture`,
        a tuple (file name, default NUM, what NUM counts), adds RUN, --out (default
        RUN/pictures/<file name>) and --num.
        """
        summary, _, description = inspect.getdoc(command).partition("\n\n")
        p = sub.add_parser(name, help=summary.rstrip("."), description=description)
        p.set_defaults(command_fn=command)
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose)
        if reads_run or picture:
            _add_run_arg(p)
        if reads_data:
            _add_data_override(p)
        if picture:
            file_name, num, counts = picture
            p.add_argument(
                "--out", default=None, help=f"PNG path (default: RUN/pictures/{file_name})"
            )
            p.add_argument("--num", type=_positive, default=num, help=f"{counts} (default: {num})")
        return p

    p = add("run", _cmd_run)
    _add_export_target(p, "default", "run and model name (default: default)")
    p.add_argument("--runs-dir", default="runs", help="(default: runs)")
    _add_train_options(p, "auto")

    p = add("train", _cmd_train)
    p.add_argument("--out", default="runs/default", help="output directory (default: runs/default)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    how.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in OUT from its last completed epoch "
        "(same options as that run; --epochs may grow)",
    )
    _add_train_options(p, "default")

    p = add("evaluate", _cmd_evaluate, reads_run=True, reads_data=True)
    p.add_argument("--samples", type=_positive, default=1000, help="K importance samples (1000)")
    p.add_argument("--batch-size", type=_positive, default=100, help="(default: 100)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    p = add("export", _cmd_export, reads_run=True)
    _add_export_target(p, None, "model name (default: the run directory's name)")
    p.add_argument("--version", type=_positive, default=None, help="(default: next free)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")

    p = add("sample", _cmd_sample, picture=("samples.png", 8, "rows: latents z"))
    p.add_argument("--draws", type=_positive, default=5, help="draws per z (default: 5)")
    p.add_argument("--seed", type=_non_negative, default=0, help="(default: 0)")

    add(
        "reconstruct",
        _cmd_reconstruct,
        reads_data=True,
        picture=("reconstructions.png", 10, "examples"),
    )
    p = add("latent", _cmd_latent, reads_data=True, picture=("latent.png", 2000, "examples"))
    p.add_argument("--grid", type=_int_at_least(2), default=15, help="manifold grid (default: 15)")
    return parser


# ---------------------------------------------------------------- helpers
def _note(message: str) -> None:
    print(f"tfvae: {message}", file=sys.stderr, flush=True)


def _choose_dataset(dataset: str, data_dir: Optional[str]) -> str:
    """`auto`: MNIST when present or downloadable, else (one line on stderr) the digits."""
    if dataset != "auto":
        return dataset
    from tfvae.data import find_mnist
    from tfvae.download import DownloadError

    try:
        find_mnist(data_dir)
    except DownloadError as e:
        _note(f"MNIST is not available, training on the embedded 8x8 digits instead: {e}")
        return "default"
    return "mnist"


def _check_dataset_file(dataset: str) -> None:
    """A .npy/.npz --dataset must exist (checked before TensorFlow is imported)."""
    if dataset.endswith((".npy", ".npz")) and not os.path.isfile(dataset):
        raise UsageError(f"--dataset: file not found: {dataset!r} (expected a .npy/.npz file)")


def _load_data(dataset: str, data_dir: Optional[str], seed: int, binarization: str = "static"):
    from tfvae.data import load_dataset

    _check_dataset_file(dataset)
    name = _choose_dataset(dataset, data_dir)
    data = load_dataset(name, data_dir, binarization=binarization, seed=seed)
    if dataset.endswith((".npy", ".npz")):
        _check_unit_range(dataset, data)
    return data


def _check_unit_range(path: str, data) -> None:
    """Refuses array files outside [0, 1]: the decoders (the Bernoulli's support, the
    Gaussian's variance bounds) are made for it, and 8-bit pixels would train silently."""
    import numpy as np

    low = min(float(data.x_train.min()), float(data.x_test.min()))
    high = max(float(data.x_train.max()), float(data.x_test.max()))
    if low >= 0 and high <= 1:
        return
    pixels = (
        low >= 0
        and high <= 255
        and all(np.array_equal(x, np.round(x)) for x in (data.x_train, data.x_test))
    )
    fix = (
        "divide by 255 (np.save(path, x / 255))"
        if pixels
        else "rescale it, e.g. (x - x.min()) / (x.max() - x.min())"
    )
    raise UsageError(
        f"--dataset {path!r} has values in [{low:g}, {high:g}]"
        f"{' (8-bit pixels?)' if pixels else ''}; tfvae expects data in [0, 1]: {fix}"
    )


def _check_new_dir(path: str, overwrite: bool) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path!r} exists and is not a directory")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise UsageError(
            f"--out {path!r} already exists and is not empty; choose another --out "
            f"or pass --overwrite to replace it"
        )


def _train(args, out: str, overwrite: bool):
    """Trains per `args` into `out`; returns (model, data, metrics)."""
    # Argument checks that need no TensorFlow come first, so bad input is answered at once.
    _check_dataset_file(args.dataset)
    args.dataset = _choose_dataset(args.dataset, args.data_dir)  # the preset follows the data
    model_values, train_values = _config_values(args)
    train_config = _build(TrainConfig, **train_values)
    from tfvae.distribute import make_strategy

    strategy = make_strategy(args.strategy)  # before any TF op: multi-worker requires it
    from tfvae.plots import read_history_csv, save_figure, training_curves
    from tfvae.train import make_callbacks, train_and_evaluate

    # --dynamic-binarization keeps grey levels, redrawn as binary pixels every epoch.
    dynamic = train_config.dynamic_binarization
    data = _load_data(
        args.dataset, args.data_dir, train_config.seed, "dynamic" if dynamic else "static"
    )
    model_values.setdefault("decoder", "bernoulli" if data.binary or dynamic else "gaussian")
    config = _build(
        VAEConfig, input_dim=data.input_dim, image_shape=data.image_shape, **model_values
    )
    if overwrite:  # asked for: the old logs would otherwise mix with the new run's
        for stale in ("history.csv", "logs", "pictures", DATA_FILE):
            path = os.path.join(out, stale)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(out, exist_ok=True)
    dataset = os.path.abspath(args.dataset) if os.path.isfile(args.dataset) else args.dataset
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    _note(
        f"training a {config.decoder} VAE (J={config.latent_dim}, {config.architecture} "
        f"{list(config.hidden_units)}) on {data.name}: {len(data.x_train)} train / "
        f"{len(data.x_test)} test examples, D={data.input_dim}, {train_config.epochs} epochs"
    )
    model, history, metrics = train_and_evaluate(
        config,
        train_config,
        data,
        out,
        verbose=verbose,
        overwrite=overwrite,
        callbacks=make_callbacks(out),
        strategy=strategy,
        dataset_source={"dataset": dataset, "data_dir": data_dir, "seed": train_config.seed},
    )
    csv_path = os.path.join(out, "history.csv")
    if os.path.isfile(csv_path):
        save_figure(
            training_curves(read_history_csv(csv_path)),
            os.path.join(out, "pictures", "curves.png"),
        )
    return model, data, metrics


def _open_run(run_dir: str):
    """(model, run_info) of a run directory (or a bare saved-model directory)."""
    from tfvae.saving import MANIFEST, RUN_MODEL_DIR, load_model

    if not os.path.isdir(run_dir):
        raise UsageError(f"RUN {run_dir!r} not found: expected a directory written by tfvae train")
    is_model = os.path.isfile(os.path.join(run_dir, MANIFEST))
    if not is_model and not os.path.isdir(os.path.join(run_dir, RUN_MODEL_DIR)):
        raise UsageError(
            f"RUN {run_dir!r} holds no trained model (no {RUN_MODEL_DIR!r} directory): "
            f"expected a directory written by tfvae train"
        )
    return load_model(run_dir), _dataset_source(run_dir)  # load_model resolves a run dir


def _dataset_source(run_dir: str) -> dict:
    """How the run's data is loaded again: `dataset.source` of its run.json (or, for runs
    made before run.json recorded it, its dataset.json); {} if neither says."""
    from tfvae.checkpointing import RUN_FILE

    for name, read in ((RUN_FILE, lambda d: d.get("dataset", {}).get("source")), (DATA_FILE, dict)):
        path = os.path.join(run_dir, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                info = read(json.load(f))
        except (ValueError, AttributeError, TypeError) as e:
            raise UsageError(f"{path!r} is not valid JSON of a run ({e}); pass --dataset")
        if info:
            if not isinstance(info, dict):
                raise UsageError(f"{path!r} records its dataset as {info!r}; pass --dataset")
            return info
    return {}


def _run_data(args, info: dict, model):
    """The data a command looks at: --dataset if given, else the run's own."""
    dataset = args.dataset or info.get("dataset")
    if dataset is None:
        raise UsageError(f"RUN {args.run_dir!r} does not say its dataset: pass --dataset")
    data = _load_data(dataset, args.data_dir or info.get("data_dir"), int(info.get("seed", 0)))
    if data.input_dim != model.config.input_dim:
        raise UsageError(
            f"the model expects {model.config.input_dim} features per example but "
            f"dataset {dataset!r} has {data.input_dim}: pass the --dataset it was trained on"
        )
    return data


def _image_shape(model, data=None):
    shape = model.config.image_shape or (data.image_shape if data is not None else None)
    return shape or (1, model.config.input_dim, 1)


def _picture_path(args, default_name: str) -> str:
    path = args.out or os.path.join(args.run_dir, "pictures", default_name)
    if not path.lower().endswith(".png"):
        raise UsageError(f"--out must name a .png file, got {path!r}")
    return path


def _wrote(path: str) -> str:
    from matplotlib.image import imread

    h, w = imread(path).shape[:2]
    print(f"wrote {path} ({h} x {w} pixels)")
    return path


# ---------------------------------------------------------------- pictures
def draw_samples(model, path: str, num: int = 8, draws: int = 5, seed: int = 0) -> str:
    """PNG of `num` prior latents: each row the decoder mean, then `draws` x ~ p(x|z)."""
    from tfvae.plots import model_mean_and_draws, save_figure

    return save_figure(model_mean_and_draws(model, num, draws, seed, _image_shape(model)), path)


def draw_reconstructions(model, x, path: str, image_shape=None) -> str:
    """PNG of inputs `x` above the decoder means for z = E[q(z|x)]."""
    from tfvae.plots import model_reconstructions, save_figure

    figure = model_reconstructions(model, x, image_shape or _image_shape(model))
    return save_figure(figure, path)


def draw_latent(model, x, labels, path: str, grid: int = 15, image_shape=None) -> list:
    """PNG of latent means by label; for J = 2 also `manifold.png` beside it. Returns paths."""
    from tfvae.plots import latent_scatter, manifold, manifold_latents, save_figure

    z_mean = model.encode(x).mean().numpy()
    paths = [save_figure(latent_scatter(z_mean, labels), path)]
    if model.config.latent_dim == 2:
        decoded = model.decode(manifold_latents(grid)).mean().numpy()
        figure = manifold(decoded, image_shape or _image_shape(model), grid)
        paths.append(save_figure(figure, os.path.join(os.path.dirname(path), "manifold.png")))
    return paths


# ---------------------------------------------------------------- commands
def _fresh(out: str):
    """A context that removes `out` if the block fails and `out` did not exist before:
    a failed run leaves no half-written directory, and never touches an earlier one."""
    import contextlib

    existed = os.path.exists(out)

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except BaseException:
            if os.path.isdir(out):  # else nothing was written (and TF need not be imported)
                from tfvae.checkpointing import CHECKPOINT_DIR

                checkpoints = os.path.join(out, CHECKPOINT_DIR)
                if os.path.isdir(checkpoints) and os.listdir(checkpoints):
                    # Epochs already trained are worth keeping (Ctrl-C, a crash mid-run).
                    _note(
                        f"training state kept in {checkpoints}; continue with "
                        f"`tfvae train --out {out} --resume` and the same options"
                    )
                elif not existed:
                    shutil.rmtree(out, ignore_errors=True)
            raise

    return guard()


def _cmd_train(args) -> int:
    """Train a VAE and save it with its logs.

    Train a VAE and save config + weights (OUT/model), test metrics (OUT/metrics.json), one
    CSV row per epoch (OUT/history.csv), TensorBoard logs (OUT/logs) and the training curves
    (OUT/pictures/curves.png). The training state is checkpointed every epoch
    (OUT/checkpoints): an interrupted run continues with --resume. Refuses an existing OUT
    unless --overwrite or --resume.
    """
    if args.resume:
        if not os.path.isdir(args.out):
            raise UsageError(f"--resume: no run directory at {args.out!r}")
        from tfvae.checkpointing import CHECKPOINT_DIR
        from tfvae.saving import RUN_MODEL_DIR

        if os.path.exists(os.path.join(args.out, RUN_MODEL_DIR)):
            raise UsageError(f"--resume: {args.out!r} holds a finished run (model/ exists)")
        if not os.path.isdir(os.path.join(args.out, CHECKPOINT_DIR)):
            raise UsageError(
                f"--resume: {args.out!r} has no checkpoints of an interrupted run "
                f"({CHECKPOINT_DIR}/ missing)"
            )
    else:
        _check_new_dir(args.out, args.overwrite)
    with _fresh(args.out):
        _, _, metrics = _train(args, args.out, args.overwrite)
    print(json.dumps(metrics, indent=2))
    print(f"saved {os.path.join(args.out, 'model')}")
    return 0


def _metrics(model, data, samples: int, batch_size: int) -> dict:
    from tfvae.objectives import bits_per_dim
    from tfvae.train import evaluate_model

    metrics = evaluate_model(model, data.x_test, batch_size, samples)
    metrics["elbo_bits_per_dim"] = float(bits_per_dim(-metrics["elbo"], model.config.input_dim))
    metrics["dataset"] = data.name
    return metrics


def _cmd_evaluate(args) -> int:
    """Test ELBO and importance-weighted log p(x).

    ELBO (one z per example) and the importance-weighted bound on log p(x) (Burda et al.
    2015) on the test split, in nats per example and bits per dimension.
    """
    model, info = _open_run(args.run_dir)
    data = _run_data(args, info, model)
    m = _metrics(model, data, args.samples, args.batch_size)
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    d = model.config.input_dim
    print(f"{data.name} test split: {m['num_examples']} examples, D = {d}")
    print(
        f"  ELBO                 {m['elbo']:10.3f} nats/example   "
        f"{m['elbo_bits_per_dim']:.4f} bits/dim"
    )
    print(f"    log p(x|z)         {m['reconstruction']:10.3f}")
    print(f"    KL(q(z|x) || p(z)) {m['kl']:10.3f}")
    print(
        f"  log p(x) (IWAE K={m['log_likelihood_samples']}) {m['log_likelihood']:10.3f} "
        f"nats/example   NLL {m['nll_bits_per_dim']:.4f} bits/dim"
    )
    return 0


def _export(model, base_dir: str, name: str, version=None, overwrite=False) -> str:
    try:
        from tfvae.export import export
    except ImportError as e:
        raise UsageError(f"export is not available in this installation ({e})")
    if not name or os.sep in name or name in (".", ".."):
        raise UsageError(f"--name must be a plain model name, got {name!r}")
    return export(model, os.path.join(base_dir, name), version=version, overwrite=overwrite)


def _cmd_export(args) -> int:
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
    model, _ = _open_run(args.run_dir)
    path = _export(model, args.base_dir, name, args.version, args.overwrite)
    print(f"exported {path}")
    return 0


def _cmd_sample(args) -> int:
    """Picture: decoder means beside draws x ~ p(x|z).

    Draw NUM latents z ~ p(z). Each row of the PNG shows, for one z, the decoder mean E[x|z]
    (fixed by z) and DRAWS samples x ~ p(x|z) (random): the decoder is a distribution. The PNG
    is (NUM*100 + 50) x ((DRAWS+1)*100) pixels (height x width).
    """
    path = _picture_path(args, "samples.png")
    model, _ = _open_run(args.run_dir)
    _wrote(draw_samples(model, path, args.num, args.draws, args.seed))
    return 0


def _cmd_reconstruct(args) -> int:
    """Picture: test inputs beside their reconstructions.

    Top row: NUM test inputs x; bottom row: the decoder mean for z = E[q(z|x)]. The PNG is
    250 x (NUM*100) pixels (height x width).
    """
    path = _picture_path(args, "reconstructions.png")
    model, info = _open_run(args.run_dir)
    data = _run_data(args, info, model)
    _wrote(draw_reconstructions(model, data.x_test[: args.num], path, data.image_shape))
    return 0


def _cmd_latent(args) -> int:
    """Picture: the latent space (and the manifold for J = 2).

    Scatter of the means of q(z|x) over NUM test examples coloured by label (600 x 700
    pixels, height x width; the two leading principal components when J > 2). For a 2-D latent
    space also the decoded manifold over a GRID x GRID grid of z through the inverse Gaussian
    CDF (Kingma & Welling 2013, Fig. 4; 850 x 800 pixels) as manifold.png beside it.
    """
    path = _picture_path(args, "latent.png")
    model, info = _open_run(args.run_dir)
    data = _run_data(args, info, model)
    labels = None if data.y_test is None else data.y_test[: args.num]
    for p in draw_latent(model, data.x_test[: args.num], labels, path, args.grid, data.image_shape):
        _wrote(p)
    return 0


def _free_run_name(runs_dir: str, base_dir: str, name: str) -> str:
    """`name`, else the first of `name-2`, `name-3`, ... free both as a run directory and as
    an export: a run never adds a version to another run's model."""
    run_name, k = name, 2
    while os.path.exists(os.path.join(runs_dir, run_name)) or os.path.exists(
        os.path.join(base_dir, run_name)
    ):
        run_name, k = f"{name}-{k}", k + 1
    return run_name


def _cmd_run(args) -> int:
    """The main job: train, evaluate, draw the pictures, export.

    Train on MNIST (downloaded on first use; offline, the embedded 8x8 digits, saying so)
    or --dataset, evaluate the test ELBO and log p(x), write the pictures and export for TF
    Serving. Writes RUNS_DIR/NAME and BASE_DIR/NAME/1. If either exists it is kept and the run
    is named NAME-2, NAME-3, ... (RUNS_DIR/NAME-2, BASE_DIR/NAME-2/1): a run never becomes a
    new version of another run's model. To serve a run as a new version of a model, use
    `tfvae export RUN --name`.
    """
    if not args.name or os.sep in args.name or args.name in (".", ".."):
        raise UsageError(f"--name must be a plain name, got {args.name!r}")
    run_name = _free_run_name(args.runs_dir, args.base_dir, args.name)
    out = os.path.join(args.runs_dir, run_name)
    if run_name != args.name:
        _note(
            f"{os.path.join(args.runs_dir, args.name)} or {os.path.join(args.base_dir, args.name)}"
            f" already exists and is kept; this run writes {out} and exports to "
            f"{os.path.join(args.base_dir, run_name)}"
        )
    with _fresh(out):
        model, data, metrics = _train(args, out, overwrite=False)
    from tfvae.objectives import bits_per_dim

    metrics["elbo_bits_per_dim"] = float(bits_per_dim(-metrics["elbo"], model.config.input_dim))
    pictures = os.path.join(out, "pictures")
    x = data.x_test
    paths = [
        draw_reconstructions(model, x[:10], os.path.join(pictures, "reconstructions.png")),
        draw_samples(model, os.path.join(pictures, "samples.png"), seed=model.config.seed),
    ]
    labels = None if data.y_test is None else data.y_test[:2000]
    paths += draw_latent(model, x[:2000], labels, os.path.join(pictures, "latent.png"))
    if os.path.isfile(os.path.join(pictures, "curves.png")):
        paths.append(os.path.join(pictures, "curves.png"))
    print(
        f"test ELBO {metrics['elbo']:.3f} nats/example ({metrics['elbo_bits_per_dim']:.4f} "
        f"bits/dim), log p(x) >= {metrics['log_likelihood']:.3f} "
        f"(IWAE K={metrics['log_likelihood_samples']}, {metrics['nll_bits_per_dim']:.4f} bits/dim)"
    )
    for p in paths:
        _wrote(p)
    print(f"exported {_export(model, args.base_dir, run_name, version=1)}")
    print(f"run directory: {out}")
    return 0


# ---------------------------------------------------------------- quiet start-up
# A line of absl's C++ log (severity letter first). TF's libraries write some while they
# load, before absl is initialised, and those ignore TF_CPP_MIN_LOG_LEVEL (oneDNN, CUDA).
_ABSL_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]")
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"


def _tensorflow_log_level(verbose: bool) -> None:
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
        sys.meta_path.insert(0, _QuietImport(int(level)))


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs the first `import tensorflow` under `_filtered_stderr`, then steps aside."""

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
        with _filtered_stderr(self.level):
            self.loader.exec_module(module)


@contextlib.contextmanager
def _filtered_stderr(level: int):
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the `tfvae` command; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    _tensorflow_log_level(args.verbose)
    xla_cache.enable()  # before TensorFlow starts; a no-op once it has
    # tf-keras warns that TFP's layers hold lambdas whenever a model config is serialized
    # (the TensorBoard callback does): harmless here, weights are saved, not configs.
    warnings.filterwarnings("ignore", message="The object being serialized includes a `lambda`")
    try:
        return args.command_fn(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError, FileExistsError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"tfvae {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # unreadable files, permissions, a full disk
        print(f"tfvae {args.command}: error: {e.strerror or e}: {e.filename!r}", file=sys.stderr)
        return EXIT_USAGE
