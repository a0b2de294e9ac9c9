"""The `tfvae` command: a thin shell over the library (`tfvae.cli.app` runs it, the
options are `tfvae.cli.parser`'s, each subcommand is a function of `tfvae.cli.commands`)."""

# The old module `tfvae.cli`'s public names (before the package): where each lives now.
_MOVED = {
    "EXIT_USAGE": "tfvae.cli.parser.EXIT_USAGE",
    "EXIT_FAILED": "tfvae.cli.parser.EXIT_FAILED",
    "UsageError": "tfvae.cli.parser.UsageError",
    "MAX_VERSION": "tfvae.config.MAX_VERSION",
    "DATA_FILE": "tfvae.training.rundir.DATA_FILE",
    "NAMED_DATASETS": "tfvae.data.choice.NAMED_DATASETS",
    "draw_samples": "tfvae.plots.draw_samples",
    "draw_reconstructions": "tfvae.plots.draw_reconstructions",
    "draw_latent": "tfvae.plots.draw_latent",
}


def main(argv=None) -> int:
    """Runs `tfvae ARGS` (argv without the program name; default sys.argv[1:])."""
    from tfvae.cli.app import main as run

    return run(argv)


def __getattr__(name: str):
    """An old name fails in one line naming its new home, as an ImportError so that
    `from tfvae.cli import NAME` shows it too (an AttributeError there reads "cannot import")."""
    if name in _MOVED:
        raise ImportError(f"tfvae.cli.{name} moved to {_MOVED[name]}", name=__name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
