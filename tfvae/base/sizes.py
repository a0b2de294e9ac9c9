"""How many weights a VAE of a given `VAEConfig` has: what `MAX_WEIGHTS` bounds before
anything is built (no TensorFlow here: the CLI checks configs before importing it)."""

from __future__ import annotations

__all__ = ["weight_count"]


def weight_count(config) -> int:
    """The weights in the Dense and conv kernels of a VAE built from `config` (what
    `MAX_WEIGHTS` bounds; biases and one-unit heads aside, a few percent at most), the
    posterior's included (full_covariance's J(J-1)/2 off-diagonal head, iaf's context head
    and its `flow_steps` MADEs, masked kernels counted whole) and the learned prior's."""
    return _networks(config) + _prior(config)


def _prior(config) -> int:
    """The learned prior's weights: a mixture's means and scales, a VampPrior's pseudo-inputs."""
    k = config.prior_components
    if config.prior == "mixture":
        return 2 * (k or 10) * config.latent_dim
    if config.prior == "vamp":
        return (k or 500) * config.input_dim
    return 0


def _networks(config) -> int:
    """The encoder's and decoder's kernels (`weight_count` without the prior)."""
    d, j, hidden = config.input_dim, config.latent_dim, config.hidden_units
    out = 2 * d if config.decoder == "gaussian" else d  # the decoder's parameters per pixel
    last = hidden[0] if config.architecture == "conv" else hidden[-1]  # under q's heads
    posterior = 0
    if config.posterior == "full_covariance":
        posterior = last * j * (j - 1) // 2
    elif config.posterior == "iaf":
        made = (j + config.flow_context, *config.flow_hidden_units, 2 * j)
        made_kernels = sum(a * b for a, b in zip(made, made[1:]))
        posterior = last * config.flow_context + config.flow_steps * made_kernels
    if config.architecture != "conv":
        pairs = sum(a * b for a, b in zip(hidden, hidden[1:]))
        networks = 2 * pairs + d * hidden[0] + 2 * hidden[-1] * j + j * hidden[-1] + hidden[0] * out
        return networks + posterior
    h, w, c = config.image_shape
    filters = config.conv_filters
    factor = 2 ** len(filters)
    flat = (h // factor) * (w // factor) * filters[-1]
    back = filters[::-1]
    convs = sum(a * b for a, b in zip((c, *filters), filters))  # the encoder's
    convs += sum(a * b for a, b in zip((back[0], *back), back))  # the decoder's, transposed
    convs += filters[0] * c * out // d  # the decoder's head
    # 3x3 kernels; Dense flat -> h0 -> 2J in the encoder, J -> h0 -> flat in the decoder
    return 9 * convs + 2 * flat * hidden[0] + 3 * hidden[0] * j + posterior
