"""`python -m tfvae`: the command line (see tfvae.cli.app)."""

from tfvae.cli import main

raise SystemExit(main())
