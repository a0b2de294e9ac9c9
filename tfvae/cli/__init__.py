"""The `tfvae` command: a thin shell over the library (`tfvae.cli.app`)."""


def main(argv=None) -> int:
    """Runs `tfvae ARGS` (argv without the program name; default sys.argv[1:])."""
    from tfvae.cli.app import main as run

    return run(argv)
