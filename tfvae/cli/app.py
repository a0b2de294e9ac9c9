"""The `tfvae` command: train, evaluate, draw and export a VAE (also `python -m tfvae`).

    tfvae run                      # the main job: train -> evaluate -> pictures -> export
    tfvae train --dataset mnist --epochs 50 --out runs/mnist
    tfvae evaluate runs/mnist --json
    tfvae sample runs/mnist        # decoder means beside draws x ~ p(x|z), same z per row
    tfvae reconstruct runs/mnist   # test inputs beside their reconstructions
    tfvae latent runs/mnist        # latent means coloured by label (+ manifold if J = 2)
    tfvae export runs/mnist        # TF Serving layout: saved_models/<name>/<version>

A thin shell: the options come from the configs (`tfvae.cli.parser`), each subcommand is a
short function over the library (`tfvae.cli.commands`), and this module runs one and turns
its error into one line on stderr and an exit status: 2 for bad input (unknown names,
missing files, impossible values, a model that does not fit the data, a run directory in
use or not as expected), 1 for a run that failed on good input (a full disk, a diverging
loss). Compiled XLA programs are kept across runs (`tfvae.engine.xla_cache`).
"""

from __future__ import annotations

import sys
import warnings
from typing import Optional, Sequence, Tuple

from tfvae.base.atomic import as_disk_full, is_disk_full
from tfvae.cli import commands
from tfvae.cli.flags import config_field_flag
from tfvae.cli.parser import EXIT_FAILED, EXIT_USAGE, UsageError, make_parser
from tfvae.cli.quiet import tensorflow_log_level
from tfvae.engine import xla_cache
from tfvae.training.rundir import RunDirError

__all__ = ["main", "parser", "EXIT_USAGE", "EXIT_FAILED", "UsageError"]


def parser():
    """The `tfvae` parser, running the functions of `tfvae.cli.commands` (looked up now)."""
    return make_parser({name: getattr(commands, name) for name in commands.COMMANDS})


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the `tfvae` command; returns the exit status (0 ok, 1 failed: a full disk, 2 bad
    input)."""
    args = parser().parse_args(argv)
    tensorflow_log_level(args.verbose)
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
    usage = (UsageError, RunDirError, ValueError, TypeError, FileNotFoundError, FileExistsError)
    if isinstance(error, usage):
        message = str(error) or type(error).__name__
        option = config_field_flag(message)  # a config field's error names its flag too
        return EXIT_USAGE, f"{option}: {message}" if option else message
    if isinstance(error, OSError):  # unreadable files, permissions
        where = f": {error.filename!r}" if error.filename is not None else ""
        return EXIT_USAGE, f"{error.strerror or error}{where}"
    raise error
