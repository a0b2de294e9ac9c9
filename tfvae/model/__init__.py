"""The model side: the VAE's mathematics, its networks, heads and objectives."""


def __getattr__(name: str):
    from tfvae import moved_attribute

    raise moved_attribute(__name__, name)
