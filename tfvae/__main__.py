"""`python -m tfvae`: the command line (see tfvae.cli)."""

from tfvae.cli import main

raise SystemExit(main())
