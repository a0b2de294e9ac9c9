"""Start the decoder at the data's marginal: its output biases set from the training data.

A new decoder's output is its output bias plus a small term from its last kernel: with
zero or small random biases, p(x|z) starts near Bernoulli(1/2) or N(0, 1) per pixel
whatever z is, and the first passes are spent learning the average image. Set from the
data, p(x|z) starts near the data's per-pixel marginal, and training starts on what z
explains. Burda et al.'s (2015) code does this (the Bernoulli decoder's bias is the logit
of the training mean clipped to [0.001, 0.999]); the paper's text does not say so
(docs/reproduction.md).

`set_output_bias(decoder, config, x)` sets the biases of the head that `config.decoder`
names (`tfvae.model.heads`):

- `bernoulli`: `x_logits` = logit(clip(mean, 0.001, 0.999));
- `gaussian`: `x_mean` = mean, `x_log_var` = log variance about that mean;
- `isotropic`: `x_mean` = mean, the shared `x_log_var` = log of the average variance;
- `fixed_variance`: `x_mean` = mean.

A conv head's bias is one number per channel, so it gets the channel's statistics (all its
pixels together). Log-variances are kept inside the head's soft clip, 1 nat from each bound
(a pixel that never varies would otherwise ask for log 0; a quarter of the range if that
is narrower), and the raw bias is the soft clip's inverse, so where the head's kernel adds
nothing its log-variance is that number exactly.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfvae.data.validation import (
    check_dataset,
    check_inputs,
    non_finite_message,
    unit_interval_message,
)

__all__ = ["set_output_bias", "data_moments", "inverse_soft_clip", "PROBABILITY_CLIP"]

PROBABILITY_CLIP = (0.001, 0.999)  # Burda et al.'s code: keeps the logits finite
_LOG_VAR_MARGIN = 1.0  # nats kept between a log-variance bias and the soft clip's bounds
_CHUNK = 8192  # rows of an array summed at a time


def data_moments(x, config, name: str = "x") -> tuple:
    """(mean, mean of squares) of each of the `input_dim` features, float64, over `x`:
    an array `[n, input_dim]`, or a batched `tf.data.Dataset` of x or (x, ...), read once."""
    unchecked = isinstance(x, tf.data.Dataset)  # an array is checked whole by check_inputs
    if not unchecked:
        arr = check_inputs(x, config, name, require_examples=True, as_numpy=True)
        batches = (arr[i : i + _CHUNK] for i in range(0, len(arr), _CHUNK))
    else:
        x = check_dataset(x, config, name)
        if x.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError(
                f"{name}: the dataset repeats forever; pass one that ends after one pass"
            )
        batches = ((e[0] if isinstance(e, (tuple, list)) else e).numpy() for e in x)
    total = np.zeros(config.input_dim)
    squares = np.zeros(config.input_dim)
    count = 0
    for batch in batches:
        batch = batch.astype(np.float64)  # a chunk at a time: float64 sums without a full copy
        if unchecked:
            _check_batch(batch, count, config, name)
        total += batch.sum(axis=0)
        squares += np.square(batch).sum(axis=0)
        count += len(batch)
    if count == 0:
        raise ValueError(f"{name}: the dataset holds no examples")
    return total / count, squares / count


def _check_batch(batch, first_row: int, config, name: str) -> None:
    """What check_inputs checks of an array, for one dataset batch (rows numbered from the
    dataset's start, which check_inputs on the batch alone would not)."""
    if batch.ndim != 2 or batch.shape[1] != config.input_dim:
        raise ValueError(
            f"{name}: a batch of shape {batch.shape}; expected [batch, {config.input_dim}]"
        )
    if not np.isfinite(batch).all():
        row, col = np.argwhere(~np.isfinite(batch))[0]
        index = f"({first_row + int(row)}, {int(col)})"
        raise ValueError(non_finite_message(name, index, str(batch[row, col])))
    if config.decoder == "bernoulli" and batch.size and (batch.min() < 0 or batch.max() > 1):
        raise ValueError(unit_interval_message(name, f"{batch.min():g}", f"{batch.max():g}"))


def inverse_soft_clip(y, low: float, high: float) -> np.ndarray:
    """The x with `tfvae.model.heads.soft_clip(x, low, high) == y`, for `low < y < high`.

    soft_clip(x) = low + log((1 + e^(x - low)) / (1 + e^(x - high))); solving for e^x gives
    e^x = (T - 1) / (e^-low - T e^-high) with T = e^(y - low).
    """
    y = np.asarray(y, np.float64)
    if np.any(y <= low) or np.any(y >= high):
        raise ValueError(f"soft_clip takes values strictly inside ({low}, {high}), got {y}")
    t = np.exp(y - low)
    return np.log((t - 1.0) / (np.exp(-low) - t * np.exp(-high)))


def _per_bias(values: np.ndarray, bias_size: int, config) -> np.ndarray:
    """Feature statistics averaged into what a bias of `bias_size` holds: one per feature
    (Dense), one per channel (conv: features are the image's pixels, channels last), or one."""
    if bias_size == values.size:
        return values
    if bias_size == 1:
        return values.mean(keepdims=True)
    channels = config.image_shape[-1] if config.image_shape else 1
    if bias_size != channels:
        raise ValueError(
            f"an output bias of {bias_size} numbers fits neither the "
            f"{values.size} features nor their {channels} channels"
        )
    return values.reshape(-1, channels).mean(axis=0)


def _layer(decoder, name: str):
    try:
        return decoder.get_layer(name)
    except ValueError:
        raise ValueError(
            f"set_output_bias needs tfvae's decoder head, with a layer named {name!r}; this "
            f"decoder ({decoder.name!r}) has none (a custom decoder: set its bias yourself)"
        ) from None


def set_output_bias(decoder, config, x, name: str = "x") -> dict:
    """Sets the output biases of `decoder` (built by `tfvae.model.networks.make_decoder(config)`)
    from the data `x` (see the module docstring); returns {layer name: the bias set}.

    Raises ValueError for data that `fit` would refuse (shape, NaN, range) or a decoder
    without tfvae's head layers; nothing is changed then.
    """
    mean, second = data_moments(x, config, name)
    biases = {}
    if config.decoder == "bernoulli":
        logits = _layer(decoder, "x_logits")
        p = np.clip(_per_bias(mean, logits.bias.shape[0], config), *PROBABILITY_CLIP)
        biases["x_logits"] = (logits, np.log(p) - np.log1p(-p))
    else:
        head = _layer(decoder, "x_mean")
        center = _per_bias(mean, head.bias.shape[0], config)
        biases["x_mean"] = (head, center)
    if config.decoder in ("gaussian", "isotropic"):
        log_var = _layer(decoder, "x_log_var")
        # Variance about the mean the head starts at (a channel's, for a conv head).
        c = np.tile(center, mean.size // center.size)
        variance = _per_bias(
            np.maximum(second - 2 * c * mean + c * c, 0.0), log_var.bias.shape[0], config
        )
        margin = min(_LOG_VAR_MARGIN, (config.max_log_var - config.min_log_var) / 4)
        low, high = config.min_log_var + margin, config.max_log_var - margin
        target = np.clip(np.log(np.maximum(variance, np.exp(low))), low, high)
        raw = inverse_soft_clip(target, config.min_log_var, config.max_log_var)
        biases["x_log_var"] = (log_var, raw)
    for layer, value in biases.values():
        layer.bias.assign(tf.constant(value, layer.bias.dtype))
    return {key: np.asarray(value) for key, (_, value) in biases.items()}
