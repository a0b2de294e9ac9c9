"""What `VAE.predict` and `VAE.generate` return from p(x|z): its mean, a sample, ...

The names of the outputs a decoder distribution gives as one tensor per example.
"""

from __future__ import annotations

import tensorflow as tf

from tfvae.model import distributions

__all__ = ["PREDICT_OUTPUTS", "PREDICT_LATENTS", "check_output", "check_latent", "select"]

PREDICT_OUTPUTS = ("mean", "mode", "sample", "probs", "logits", "stddev")
PREDICT_LATENTS = ("sample", "mean")


def check_output(output: str, decoder: str) -> None:
    """Refuses an `output` of p(x|z) that is not in `PREDICT_OUTPUTS` or not of p(x|z);
    `decoder` is p(x|z)'s kind (`tfvae.model.distributions.kind`: "bernoulli", "Normal", ...)."""
    if output not in PREDICT_OUTPUTS:
        raise ValueError(f"output must be one of {PREDICT_OUTPUTS}, got {output!r}")
    if output in ("probs", "logits") and decoder != "bernoulli":
        raise ValueError(
            f"output={output!r} needs a bernoulli decoder, this model's p(x|z) is {decoder!r}"
        )


def check_latent(latent: str) -> None:
    """Refuses a `latent` (which z `predict` decodes) not in `PREDICT_LATENTS`."""
    if latent not in PREDICT_LATENTS:
        raise ValueError(f"latent must be 'sample' or 'mean', got {latent!r}")


def select(px, output: str, seed):
    """The `output` (checked by `check_output`) of p(x|z) `px`; `seed` for a `sample`."""
    if output == "mean":
        return px.mean()
    if output == "mode":
        return px.mode()
    if output == "sample":
        return px.sample(seed=seed)
    if output == "stddev":
        return px.stddev()
    logits = distributions.bernoulli_logits(px)
    return tf.sigmoid(logits) if output == "probs" else logits
