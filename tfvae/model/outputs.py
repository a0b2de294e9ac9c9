"""What `VAE.predict` and `VAE.generate` return from p(x|z): its mean, a sample, ...

The names of the outputs a decoder distribution gives as one tensor per example.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["PREDICT_OUTPUTS", "check_output", "select"]

PREDICT_OUTPUTS = ("mean", "mode", "sample", "probs", "logits", "stddev")


def check_output(output: str, decoder: str) -> None:
    """Refuses an `output` of p(x|z) that is not in `PREDICT_OUTPUTS` or not of `decoder`."""
    if output not in PREDICT_OUTPUTS:
        raise ValueError(f"output must be one of {PREDICT_OUTPUTS}, got {output!r}")
    if output in ("probs", "logits") and decoder != "bernoulli":
        raise ValueError(
            f"output={output!r} needs a bernoulli decoder, this model's is {decoder!r}"
        )


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
    logits = px.distribution.logits_parameter()  # Independent(Bernoulli)
    return tf.sigmoid(logits) if output == "probs" else logits
