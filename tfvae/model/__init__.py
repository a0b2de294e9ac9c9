"""The model side: the VAE's mathematics, its networks, heads and objectives."""
