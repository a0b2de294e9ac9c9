"""The deployment side: SavedModel export, in-graph request checks, clients."""
