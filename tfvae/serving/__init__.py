"""The deployment side: SavedModel export, in-graph request checks, clients."""


def __getattr__(name: str):
    from tfvae import moved_attribute

    raise moved_attribute(__name__, name)
