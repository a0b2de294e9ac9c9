"""The `tfvae` command's parser: its subcommands and their options.

The options that configure the model or its training are generated from the configs
(`tfvae.cli.flags`); the others are the commands' own. Nothing here imports TensorFlow, so
`--help` and bad input answer at once.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Callable, Mapping

from tfvae.base.checks import integer_problem
from tfvae.cli.flags import add_config_options
from tfvae.config import (
    IMPORTANCE_SAMPLES,
    MAX_BATCH_SIZE,
    MAX_PICTURE,
    MAX_SAMPLES,
    MAX_VERSION,
    PICTURE_DRAWS,
    PICTURE_GRID,
    PICTURE_LATENT_EXAMPLES,
    PICTURE_RECONSTRUCTIONS,
    PICTURE_SAMPLES,
)
from tfvae.data.choice import dataset_name_problem
from tfvae.training.rundir import LATENT_FILE, PICTURES_DIR, RECONSTRUCTIONS_FILE, SAMPLES_FILE

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "UsageError",
    "make_parser",
    "given",
]

EXIT_FAILED = 1  # the run failed (a full disk, a diverging loss): the input was fine
EXIT_USAGE = 2
VERBOSE_HELP = (
    "show all of TensorFlow's C++ log lines, start-up included (default: those at "
    "$TF_CPP_MIN_LOG_LEVEL and above if set, else none)"
)


class UsageError(ValueError):
    """Bad input found by the CLI itself: reported as one line, exit status 2."""


class _Given(argparse.Action):
    """Stores the option's value and records that it was given (`given`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"given_{self.dest}", True)


def given(args, name: str) -> bool:
    """Whether option `name` was on the command line (not its default)."""
    return bool(getattr(args, f"given_{name}", False))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) so scripts can read stderr."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_in(minimum: int, maximum: int):
    """argparse `type`: an integer in [minimum, maximum] (`tfvae.base.checks`' rule)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = text
        problem = integer_problem(value, minimum, maximum)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = f"integer in [{minimum}, {maximum}]"
    return parse


def _path(what: str):
    """argparse `type`: a path that is not empty (for '' the OS says only "No such file or
    directory: ''", without naming the option)."""

    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"the path is empty; give {what}")
        return text

    parse.__name__ = "path"
    return parse


def _image_shape(text: str) -> tuple:
    """argparse `type`: `H,W,C` (or `H,W`: one channel) as a tuple of three integers >= 1."""
    values = []
    for part in text.split(","):
        try:
            values.append(int(part))
        except ValueError:
            values.append(part)
    if len(values) not in (2, 3) or any(integer_problem(v, 1) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected H,W,C (or H,W for one channel) of integers >= 1, e.g. 28,28,1, got {text!r}"
        )
    return tuple(values) + ((1,) if len(values) == 2 else ())


IMAGE_SHAPE_HELP = (
    "H,W,C: draw each example's D values as H x W images with C channels, channels last "
    "(H * W * C = D; default: the data's own shape; a flat [N, D] array is square s x s x 1 "
    "when D = s^2, s x s x 3 when D = 3 s^2 and s >= 8, else one row of D pixels)"
)


def _dataset(text: str) -> str:
    problem = dataset_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


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
    g.add_argument("--image-shape", type=_image_shape, default=None, help=IMAGE_SHAPE_HELP)
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
    add_config_options(p)


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


def _int_option(p, name: str, low: int, high: int, default: int, help: str, why: str = "") -> None:
    """An integer option in [low, high]; its help ends with the default (`why`: after it) and
    the limit."""
    shown = f"(default: {default}{why}; at most {high})"
    p.add_argument(name, type=_int_in(low, high), default=default, help=help + shown)


def make_parser(commands: Mapping[str, Callable]) -> argparse.ArgumentParser:
    """The `tfvae` parser; each subcommand runs `commands[name]`, whose docstring's first
    line is its help and the rest its --help description."""
    parser = _Parser(
        prog="tfvae",
        description="Variational autoencoders whose decoder is a distribution p(x|z).",
        epilog="`tfvae COMMAND --help` describes each command.",
    )
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, reads_run=False, reads_data=False, picture=None):
        """`reads_run` adds RUN, `reads_data` --dataset/--data-dir; `picture`, a tuple (file
        name, default NUM, what NUM counts, its limit), adds RUN, --out and --num."""
        summary, _, description = inspect.getdoc(commands[name]).partition("\n\n")
        p = sub.add_parser(name, help=summary.rstrip("."), description=description)
        p.set_defaults(command_fn=commands[name])
        p.add_argument(
            "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )
        if reads_run or picture:
            p.add_argument(
                "run_dir", metavar="RUN", help="a run directory written by `tfvae train`"
            )
        if reads_data:
            _add_data_override(p)
        if picture:
            file_name, num, counts, limit = picture
            p.add_argument(
                "--out",
                type=_path(f"a .png file, or leave --out out for RUN/{PICTURES_DIR}/{file_name}"),
                default=None,
                help=f"PNG path (default: RUN/{PICTURES_DIR}/{file_name})",
            )
            _int_option(p, "--num", 1, limit, num, f"{counts} ")
            p.add_argument(
                "--image-shape",
                type=_image_shape,
                default=None,
                help=IMAGE_SHAPE_HELP.replace("the data's own shape", "the run's"),
            )
        return p

    _add_training_commands(add)
    _add_run_commands(add)
    return parser


def _add_training_commands(add) -> None:
    """`run` and `train`: the data, how to run, and the configs' flags."""
    p = add("run")
    _add_export_target(p, "default", "run and model name (default: default)")
    p.add_argument("--runs-dir", default="runs", help="(default: runs)")
    _add_train_options(p, "auto")

    p = add("train")
    p.add_argument(
        "--out",
        type=_path("the run directory, e.g. --out runs/mnist"),
        default="runs/default",
        help="output directory (default: runs/default)",
    )
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


def _add_run_commands(add) -> None:
    """The commands that read a trained run: evaluate, export and the pictures."""
    p = add("evaluate", reads_run=True, reads_data=True)
    same = ", the same K as TrainConfig.eval_samples, so the run's metrics.json is reproduced"
    _int_option(p, "--samples", 1, MAX_SAMPLES, IMPORTANCE_SAMPLES, "K importance samples ", same)
    _int_option(p, "--batch-size", 1, MAX_BATCH_SIZE, 100, "")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--other-data",
        action="store_true",
        help="evaluate on data other than the run's own (its training split's sha256 differs "
        "from the one in RUN/run.json), saying which on stderr; without it that is refused",
    )

    p = add("export", reads_run=True)
    _add_export_target(p, None, "model name (default: the run directory's name)")
    p.add_argument(
        "--version", type=_int_in(1, MAX_VERSION), default=None, help="(default: next free)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    iwae = "K of the log_likelihood signature's iwae output "
    _int_option(p, "--iwae-samples", 1, MAX_SAMPLES, IMPORTANCE_SAMPLES, iwae)
    p.add_argument(
        "--max-request-elements",
        type=_int_in(1, 2**63 - 1),
        default=None,
        help="the most rows x samples one request may ask for, at least --iwae-samples "
        "(default: what fits in 1 GiB of float32 tensors)",
    )

    p = add("sample", picture=(SAMPLES_FILE, PICTURE_SAMPLES, "rows: latents z", MAX_PICTURE))
    _int_option(p, "--draws", 1, MAX_PICTURE, PICTURE_DRAWS, "draws per z ")
    # The draws' seed is the library's (`tfvae.model.seeds.as_seed`): every int below 2**64.
    _int_option(p, "--seed", 0, 2**64 - 1, 0, "seed of the draws, each integer its own ")
    pictures = (RECONSTRUCTIONS_FILE, PICTURE_RECONSTRUCTIONS, "examples", MAX_PICTURE)
    add("reconstruct", reads_data=True, picture=pictures)
    pictures = (LATENT_FILE, PICTURE_LATENT_EXAMPLES, "examples", MAX_SAMPLES)
    p = add("latent", reads_data=True, picture=pictures)
    _int_option(p, "--grid", 2, MAX_PICTURE, PICTURE_GRID, "manifold grid ")
