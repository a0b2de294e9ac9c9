"""Benchmarks: tfvae against the PyTorch reference VAE and the TFP probabilistic-layers recipe.

Entry point: `PYTHONPATH=. python -m bench.run --epochs 20` (see BENCHMARKS.md). Each
contestant trains in its own subprocess on identical arrays, with the same thread pinning.
"""
