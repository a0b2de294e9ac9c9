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
`metrics.json`, `history.csv`, TensorBoard `logs/` and `pictures/`. One process at a time
trains in a run directory (`tfvae.training.runlock`). Compiled XLA programs are kept across runs in a
per-user cache (`tfvae.engine.xla_cache`; `TFVAE_XLA_CACHE=off` turns it off), so a second run does
not compile them again. Bad input (unknown names, missing files, impossible values, a model
that does not fit the data, a directory in use) ends with one line on stderr and exit status
2; nothing already written is replaced unless `--overwrite` says so, and then only once the
new run is complete.
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

from tfvae.base.atomic import as_disk_full, is_disk_full
from tfvae.config import (
    DATASETS,
    DEFAULT_PRESET,
    MAX_BATCH_SIZE,
    MAX_PICTURE,
    MAX_SAMPLES,
    MAX_SEED,
    PRESETS,
    TrainConfig,
    VAEConfig,
    check_field,
    cli_fields,
    preset,
    preset_for,
)
from tfvae.engine import xla_cache

__all__ = ["main", "EXIT_USAGE", "EXIT_FAILED"]

EXIT_FAILED = 1  # the run failed (a full disk, a diverging loss): the input was fine
EXIT_USAGE = 2
MAX_VERSION = 2**63 - 1  # TF Serving's versions are int64
DATA_FILE = "dataset.json"  # what runs recorded their dataset in before run.json did
NAMED_DATASETS = ("auto", *DATASETS)  # auto: MNIST when present or downloadable


class UsageError(Exception):
    """Bad input found by the CLI itself: reported as one line, exit status 2."""


class _Given(argparse.Action):
    """Stores the option's value and records that it was given (`_given`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"given_{self.dest}", True)


def _given(args, name: str) -> bool:
    return bool(getattr(args, f"given_{name}", False))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) so scripts can read stderr."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- value checks
def _int_in(minimum: int, maximum: int):
    """argparse `type`: an integer in [minimum, maximum] (the upper bound is tfvae's limit)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        if value > maximum:
            raise argparse.ArgumentTypeError(
                f"must be at most {maximum} (tfvae's limit), got {text!r}"
            )
        return value

    parse.__name__ = f"integer in [{minimum}, {maximum}]"
    return parse


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


def _whole_tuple_check(owners: list):
    """argparse action for a tuple flag: after each element's own check, the whole tuple's
    (how many sizes, e.g. at most `MAX_LAYERS` hidden layers)."""

    class CheckedTuple(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            for cls, field in owners:
                problem = check_field(cls, field.name, tuple(values))
                if problem:
                    raise argparse.ArgumentError(self, f"{problem} ({cls.__name__}.{field.name})")
            setattr(namespace, self.dest, values)

    return CheckedTuple


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
            kwargs.update(
                nargs="+",
                metavar="N",
                type=_value_parser(owners, element=True),
                action=_whole_tuple_check(owners),
            )
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
        from tfvae.data.datasets import is_keras_mnist

        return "mnist" if is_keras_mnist(dataset) else dataset
    return dataset


def _config_values(args, recorded: Optional[dict] = None) -> Tuple[dict, dict]:
    """The VAEConfig and TrainConfig fields `args` sets: its preset's (or, for --resume,
    those the run `recorded` in its run.json), then the flags given.

    Fields left out take the dataclass defaults; `decoder` (unless given) and the fields
    the data determines are the caller's to add.
    """
    if recorded is None:
        chosen = preset(args.preset or preset_for(_dataset_kind(args.dataset)))
        model, train = dict(chosen.model), dict(chosen.train)
    else:
        fields = [{f.name for f in cli_fields(cls)} for cls in (VAEConfig, TrainConfig)]
        model, train = (
            {k: v for k, v in recorded[section].items() if k in names}
            for section, names in zip(("model_config", "train_config"), fields)
        )
    given = vars(args)
    model.update({f.name: given[f.name] for f in cli_fields(VAEConfig) if f.name in given})
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
        action=_Given,
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
        a tuple (file name, default NUM, what NUM counts, its limit), adds RUN, --out
        (default RUN/pictures/<file name>) and --num.
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
            file_name, num, counts, limit = picture
            p.add_argument(
                "--out", default=None, help=f"PNG path (default: RUN/pictures/{file_name})"
            )
            p.add_argument(
                "--num",
                type=_int_in(1, limit),
                default=num,
                help=f"{counts} (default: {num}; at most {limit})",
            )
        return p

    p = add("run", _cmd_run)
    _add_export_target(p, "default", "run and model name (default: default)")
    p.add_argument("--runs-dir", default="runs", help="(default: runs)")
    _add_train_options(p, "auto")

    p = add("train", _cmd_train)
    p.add_argument("--out", default="runs/default", help="output directory (default: runs/default)")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in OUT: the new run trains beside it and replaces it once "
        "complete (a failed or refused one leaves it as it was)",
    )
    how.add_argument(
        "--resume",
        action="store_true",
        help="finish the run in OUT, killed at whatever point, from its last intact "
        "checkpoint; its options and data are those in OUT/run.json (--epochs may grow)",
    )
    _add_train_options(p, "default")

    p = add("evaluate", _cmd_evaluate, reads_run=True, reads_data=True)
    p.add_argument(
        "--samples",
        type=_int_in(1, MAX_SAMPLES),
        default=1000,
        help=f"K importance samples (default: 1000; at most {MAX_SAMPLES})",
    )
    p.add_argument(
        "--batch-size",
        type=_int_in(1, MAX_BATCH_SIZE),
        default=100,
        help=f"(default: 100; at most {MAX_BATCH_SIZE})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    p = add("export", _cmd_export, reads_run=True)
    _add_export_target(p, None, "model name (default: the run directory's name)")
    p.add_argument(
        "--version", type=_int_in(1, MAX_VERSION), default=None, help="(default: next free)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument(
        "--iwae-samples",
        type=_int_in(1, MAX_SAMPLES),
        default=100,
        help=f"K of the log_likelihood signature's iwae output (default: 100; at most "
        f"{MAX_SAMPLES})",
    )
    p.add_argument(
        "--max-request-elements",
        type=_int_in(1, 2**63 - 1),
        default=None,
        help="the most rows x samples one request may ask for, at least --iwae-samples "
        "(default: what fits in 1 GiB of float32 tensors)",
    )

    p = add("sample", _cmd_sample, picture=("samples.png", 8, "rows: latents z", MAX_PICTURE))
    p.add_argument(
        "--draws",
        type=_int_in(1, MAX_PICTURE),
        default=5,
        help=f"draws per z (default: 5; at most {MAX_PICTURE})",
    )
    p.add_argument(
        "--seed", type=_int_in(0, MAX_SEED), default=0, help=f"(default: 0; at most {MAX_SEED})"
    )

    add(
        "reconstruct",
        _cmd_reconstruct,
        reads_data=True,
        picture=("reconstructions.png", 10, "examples", MAX_PICTURE),
    )
    p = add(
        "latent",
        _cmd_latent,
        reads_data=True,
        picture=("latent.png", 2000, "examples", MAX_SAMPLES),
    )
    p.add_argument(
        "--grid",
        type=_int_in(2, MAX_PICTURE),
        default=15,
        help=f"manifold grid (default: 15; at most {MAX_PICTURE})",
    )
    return parser


# ---------------------------------------------------------------- helpers
def _note(message: str) -> None:
    print(f"tfvae: {message}", file=sys.stderr, flush=True)


def _choose_dataset(dataset: str, data_dir: Optional[str]) -> str:
    """`auto`: MNIST when present or downloadable, else (one line on stderr) the digits."""
    if dataset != "auto":
        return dataset
    from tfvae.data.datasets import find_mnist
    from tfvae.data.download import DownloadError

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
    from tfvae.data.datasets import load_dataset

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

    splits = [x for x in (data.x_train, data.x_test) if x.size]  # an empty one: said later
    if not splits:
        return
    low, high = min(float(x.min()) for x in splits), max(float(x.max()) for x in splits)
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
    """--out must be new or empty; with --overwrite, a run directory (nothing else in it)."""
    from tfvae.training import rundir
    from tfvae.training.runlock import LOCK_FILE

    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path!r} exists and is not a directory")
    if not os.path.isdir(path) or not [n for n in os.listdir(path) if n != LOCK_FILE]:
        return
    if not overwrite:
        finish = " or --resume to finish its run" if rundir.is_interrupted(path) else ""
        raise UsageError(
            f"--out {path!r} already exists and is not empty; choose another --out "
            f"or pass --overwrite to replace it{finish}"
        )
    foreign = rundir.foreign_entries(path)
    if foreign:
        raise UsageError(
            f"--overwrite: {path!r} holds files not written by tfvae ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}), and --overwrite replaces only a run "
            "directory: move them away or choose another --out"
        )


def _recorded_run(out: str) -> dict:
    """What `out/run.json` records (the configs, the data) for --resume, checked against its
    schema (`tfvae.base.schema.RUN`) like every JSON file tfvae reads back."""
    from tfvae.base import schema
    from tfvae.training.rundir import RUN_FILE

    if not os.path.isdir(out):
        raise UsageError(f"--resume: no run directory at {out!r}")
    path = os.path.join(out, RUN_FILE)
    again = f"start it again with `tfvae train --out {out} --overwrite` and its options"
    if not os.path.isfile(path):
        raise UsageError(f"--resume: {out!r} records no run ({RUN_FILE} missing); {again}")
    try:
        return schema.read_json(path, schema.RUN, "--resume: run file")
    except ValueError as e:
        raise UsageError(f"{e}; {again}") from None


@contextlib.contextmanager
def _training(args, out: str, overwrite: bool = False, recorded: Optional[dict] = None):
    """Trains per `args` into `out`, holding its lock; yields (model, data, metrics) with
    the lock still held.

    With `overwrite`, the new run trains in a hidden sibling directory that replaces `out`
    only once complete (`tfvae.base.atomic.publish_dir`: an atomic swap where the OS allows);
    until then `out` is untouched. `recorded` (--resume): the run's run.json, whose configs
    and data are used unless options say otherwise.
    """
    # Argument checks that need no TensorFlow come first, so bad input is answered at once.
    if recorded is not None and not _given(args, "dataset"):
        source = _dataset_source(out, recorded)
        args.dataset = source.get("dataset") or args.dataset
        args.data_dir = args.data_dir or source.get("data_dir")
    _check_dataset_file(args.dataset)
    args.dataset = _choose_dataset(args.dataset, args.data_dir)  # the preset follows the data
    model_values, train_values = _config_values(args, recorded)
    train_config = _build(TrainConfig, **train_values)
    from tfvae.engine.distribute import is_chief, make_strategy

    strategy = make_strategy(args.strategy)  # before any TF op: multi-worker requires it
    chief = is_chief(strategy)
    with _owned(out, chief):
        if recorded is None and chief:
            _check_new_dir(out, overwrite)  # again: now no other process writes there
        # --dynamic-binarization keeps grey levels, redrawn as binary pixels every epoch.
        dynamic = train_config.dynamic_binarization
        data = _load_data(
            args.dataset, args.data_dir, train_config.seed, "dynamic" if dynamic else "static"
        )
        model_values.setdefault("decoder", "bernoulli" if data.binary or dynamic else "gaussian")
        config = _build(
            VAEConfig, input_dim=data.input_dim, image_shape=data.image_shape, **model_values
        )
        workdir = _staging_dir(out, strategy, chief) if overwrite else out
        try:
            model, metrics = _fit(args, config, train_config, data, workdir, strategy)
            if overwrite and chief:
                from tfvae.base.atomic import publish_dir

                publish_dir(workdir, out, overwrite=True)
        except BaseException:
            if overwrite and chief:
                shutil.rmtree(workdir, ignore_errors=True)
                _note(f"{out} was not replaced: it is as it was")
            raise
        yield model, data, metrics


def _staging_dir(out: str, strategy, chief: bool) -> str:
    """The empty hidden sibling of `out` where --overwrite trains (one name for all workers)."""
    from tfvae.engine.distribute import barrier

    out = os.path.abspath(out)
    path = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tmp-overwrite")
    if chief:  # holding out's lock: a staging directory there is a killed --overwrite's
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
    barrier(strategy)  # the other workers find it made
    return path


def _fit(args, config, train_config, data, workdir: str, strategy):
    """`train_and_evaluate` into `workdir` with the CLI's logs and curves; (model, metrics)."""
    from tfvae.engine.distribute import is_chief
    from tfvae.training.train import make_callbacks, train_and_evaluate

    dataset = os.path.abspath(args.dataset) if os.path.isfile(args.dataset) else args.dataset
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    _note(
        f"training a {config.decoder} VAE (J={config.latent_dim}, {config.architecture} "
        f"{list(config.hidden_units)}) on {data.name}: {len(data.x_train)} train / "
        f"{len(data.x_test)} test examples, D={data.input_dim}, {train_config.epochs} epochs"
    )
    model, _, metrics = train_and_evaluate(
        config,
        train_config,
        data,
        workdir,
        verbose=verbose,
        callbacks=make_callbacks(workdir),
        strategy=strategy,
        dataset_source={"dataset": dataset, "data_dir": data_dir, "seed": train_config.seed},
    )
    if is_chief(strategy):
        _draw_curves(workdir)
    return model, metrics


def _draw_curves(run_dir: str) -> None:
    """RUN/pictures/curves.png from RUN/history.csv."""
    from tfvae.plots import read_history_csv, save_figure, training_curves

    csv_path = os.path.join(run_dir, "history.csv")
    if os.path.isfile(csv_path):
        save_figure(
            training_curves(read_history_csv(csv_path)),
            os.path.join(run_dir, "pictures", "curves.png"),
        )


def _open_run(run_dir: str):
    """(model, run_info) of a run directory (or a bare saved-model directory)."""
    from tfvae.model.saving import MANIFEST, RUN_MODEL_DIR, load_model

    if not os.path.isdir(run_dir):
        raise UsageError(f"RUN {run_dir!r} not found: expected a directory written by tfvae train")
    is_model = os.path.isfile(os.path.join(run_dir, MANIFEST))
    if not is_model and not os.path.isdir(os.path.join(run_dir, RUN_MODEL_DIR)):
        raise UsageError(
            f"RUN {run_dir!r} holds no trained model (no {RUN_MODEL_DIR!r} directory): "
            f"expected a directory written by tfvae train"
        )
    return load_model(run_dir), _dataset_source(run_dir)  # load_model resolves a run dir


def _dataset_source(run_dir: str, run: Optional[dict] = None) -> dict:
    """How the run's data is loaded again: `dataset.source` of its run.json (`run`, if the
    caller has read it already; or, for runs made before run.json recorded it, its
    dataset.json); {} if neither says. Each file is checked against its schema
    (`tfvae.base.schema`)."""
    from tfvae.base import schema
    from tfvae.training.checkpointing import RUN_FILE

    def read(name, spec, what):
        path = os.path.join(run_dir, name)
        return schema.read_json(path, spec, what, UsageError) if os.path.isfile(path) else {}

    if run is None:
        run = read(RUN_FILE, schema.RUN, "run file")
    return (
        run.get("dataset", {}).get("source")
        or read(DATA_FILE, schema.DATASET_SOURCE, "dataset file")
        or {}
    )


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
@contextlib.contextmanager
def _owned(out: str, chief: bool = True):
    """Holds the lock of run directory `out` for the block (`tfvae.training.runlock`; on the chief
    only: the workers of a multi-worker run share `out`). If the block fails, an `out` this
    command created is removed, unless it holds trained epochs: those are kept, and the
    command that finishes them is named when it would work."""
    from tfvae.training import rundir, runlock

    created = _first_missing(out)  # the top folder this command creates, if any
    with contextlib.ExitStack() as stack:
        if chief:
            try:
                stack.enter_context(runlock.hold(out))
            except runlock.RunLockedError as e:
                raise UsageError(str(e)) from None
        try:
            yield
        except BaseException as e:
            if chief and os.path.isdir(out):
                checkpoints = os.path.join(out, rundir.CHECKPOINT_DIR)
                trained = os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))
                if created is not None and not trained:
                    shutil.rmtree(created, ignore_errors=True)
                elif rundir.is_interrupted(out) and _resumable(e):
                    # Ctrl-C, a full disk...: not what a resume would meet again
                    _note(
                        f"training state kept in {out}; finish the run with "
                        f"`tfvae train --out {out} --resume`"
                    )
            raise


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
        error, (UsageError, ValueError, TypeError, ArithmeticError, FileExistsError)
    )


def _cmd_train(args) -> int:
    """Train a VAE and save it with its logs.

    Train a VAE and save config + weights (OUT/model), test metrics (OUT/metrics.json), one
    CSV row per epoch (OUT/history.csv), TensorBoard logs (OUT/logs) and the training curves
    (OUT/pictures/curves.png). The training state is checkpointed every epoch
    (OUT/checkpoints): a run killed at any point is finished by `tfvae train --out OUT
    --resume`. Refuses an existing OUT unless --overwrite or --resume, and an OUT in which
    another process trains.
    """
    from tfvae.training import rundir, runlock

    if args.strategy != "multi-worker":  # (there the chief holds the lock its workers share)
        try:
            runlock.check(args.out)  # first: "in use" says more than what is found there
        except runlock.RunLockedError as e:
            raise UsageError(str(e)) from None
    recorded = None
    if args.resume:
        recorded = _recorded_run(args.out)
        if rundir.is_finished(args.out):
            return _resume_finished(args, recorded)
    else:
        _check_new_dir(args.out, args.overwrite)
    with _training(args, args.out, args.overwrite, recorded) as (_, _, metrics):
        pass
    print(json.dumps(metrics, indent=2))
    print(f"saved {os.path.join(args.out, 'model')}")
    return 0


def _resume_finished(args, recorded: dict) -> int:
    """--resume of a finished run: nothing to train. Draws the curves if a kill came before
    them; refuses more epochs (a finished run is not continued)."""
    from tfvae.training.rundir import METRICS_FILE

    epochs = recorded["train_config"].get("epochs")
    if getattr(args, "epochs", epochs) != epochs:
        raise UsageError(
            f"{args.out!r} holds a finished run of {epochs} epochs, which is not continued "
            f"to {args.epochs}: start a new run (another --out, or --overwrite)"
        )
    with _owned(args.out):
        if not os.path.isfile(os.path.join(args.out, "pictures", "curves.png")):
            _draw_curves(args.out)
    from tfvae.base import schema

    path = os.path.join(args.out, METRICS_FILE)
    metrics = schema.read_json(path, schema.METRICS, "metrics file", UsageError)
    _note(f"{args.out} holds a finished run: already finished, nothing to resume")
    print(json.dumps(metrics["test"], indent=2))
    print(f"saved {os.path.join(args.out, 'model')}")
    return 0


def _metrics(model, data, samples: int, batch_size: int) -> dict:
    from tfvae.model.objectives import bits_per_dim
    from tfvae.training.train import evaluate_model

    metrics = evaluate_model(model, data.x_test, batch_size, samples)
    metrics["elbo_bits_per_dim"] = float(bits_per_dim(-metrics["elbo"], model.config.input_dim))
    metrics["dataset"] = data.name
    return metrics


def _cmd_evaluate(args) -> int:
    """Test ELBO and importance-weighted log p(x).

    ELBO (one z per example; the mean over K draws for a model trained with --num-samples K)
    and the importance-weighted bound on log p(x) (Burda et al. 2015) on the test split, in
    nats per example and bits per dimension.
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
    if "iwae" in m:  # the training objective, at the draws it trained with
        k, bound = m["iwae_num_samples"], m["iwae"]
        print(f"  IWAE bound (K={k}, trained on) {bound:10.3f} nats/example")
    print(
        f"  log p(x) (IWAE K={m['log_likelihood_samples']}) {m['log_likelihood']:10.3f} "
        f"nats/example   NLL {m['nll_bits_per_dim']:.4f} bits/dim"
    )
    return 0


def _export(model, base_dir: str, name: str, version=None, overwrite=False, **options) -> str:
    """`tfvae.serving.export.export` into BASE_DIR/NAME; `options` are its keyword arguments."""
    try:
        from tfvae.serving.export import export
    except ImportError as e:
        raise UsageError(f"export is not available in this installation ({e})")
    if not name or os.sep in name or name in (".", ".."):
        raise UsageError(f"--name must be a plain model name, got {name!r}")
    target = os.path.join(base_dir, name)
    return export(model, target, version=version, overwrite=overwrite, **options)


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
    if args.max_request_elements is not None and args.max_request_elements < args.iwae_samples:
        raise UsageError(
            f"--max-request-elements must be at least --iwae-samples ({args.iwae_samples}): "
            f"one log_likelihood row takes that many, got {args.max_request_elements}"
        )
    model, _ = _open_run(args.run_dir)
    options = {
        "iwae_samples": args.iwae_samples,
        "max_request_elements": args.max_request_elements,
    }
    path = _export(model, args.base_dir, name, args.version, args.overwrite, **options)
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
    with _training(args, out) as (model, data, metrics):
        pictures = os.path.join(out, "pictures")
        x = data.x_test
        paths = [
            draw_reconstructions(model, x[:10], os.path.join(pictures, "reconstructions.png")),
            draw_samples(model, os.path.join(pictures, "samples.png"), seed=model.config.seed),
        ]
        labels = None if data.y_test is None else data.y_test[:2000]
        paths += draw_latent(model, x[:2000], labels, os.path.join(pictures, "latent.png"))
    from tfvae.model.objectives import bits_per_dim

    metrics["elbo_bits_per_dim"] = float(bits_per_dim(-metrics["elbo"], model.config.input_dim))
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
    """Runs the `tfvae` command; returns the exit status (0 ok, 1 failed: a full disk, 2 bad
    input)."""
    args = _parser().parse_args(argv)
    _tensorflow_log_level(args.verbose)
    xla_cache.enable()  # before TensorFlow starts; a no-op once it has
    # tf-keras warns that TFP's layers hold lambdas whenever a model config is serialized
    # (the TensorBoard callback does): harmless here, weights are saved, not configs.
    warnings.filterwarnings("ignore", message="The object being serialized includes a `lambda`")
    try:
        return args.command_fn(args)
    except Exception as e:
        status, message = _failure(e)
        print(f"tfvae {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return status


def _failure(error: Exception) -> Tuple[int, str]:
    """(exit status, one-line message) for an error a command ended with; re-raises the
    unexpected ones (a bug's traceback is worth seeing)."""
    if is_disk_full(error):  # tfvae's writes say which file; TensorFlow's own are parsed
        return EXIT_FAILED, str(as_disk_full(error))
    callbacks = sys.modules.get("tfvae.engine.callbacks")  # loaded wherever training ran
    if callbacks is not None and isinstance(error, callbacks.NonFiniteLossError):
        return EXIT_FAILED, str(error)  # names epoch, batch, term and likely causes
    if isinstance(error, (UsageError, ValueError, TypeError, FileNotFoundError, FileExistsError)):
        return EXIT_USAGE, str(error) or type(error).__name__
    if isinstance(error, OSError):  # unreadable files, permissions
        where = f": {error.filename!r}" if error.filename is not None else ""
        return EXIT_USAGE, f"{error.strerror or error}{where}"
    raise error
