"""TensorFlow-free infrastructure: atomic writes, the JSON schemas tfvae reads back."""
