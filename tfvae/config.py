"""Configuration of a VAE: one frozen dataclass, validated on creation, JSON round trip.

The config is the only route for hyperparameters: the model is rebuilt from it when
weights are loaded, so it is saved beside every set of weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional, Tuple

DECODERS = ("bernoulli", "gaussian", "isotropic", "fixed_variance")
ARCHITECTURES = ("mlp", "conv")
KL_METHODS = ("analytic", "monte_carlo")
WEIGHT_INITS = ("fan_in_uniform", "glorot_uniform")
ACTIVATIONS = ("tanh", "relu", "elu", "softplus", "sigmoid", "swish", "gelu")

CONFIG_NAME = "VAEConfig"


def _check(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ValueError(f"VAEConfig.{field}: {message}")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Hyperparameters of a VAE (Kingma & Welling 2013, App. C) with defaults from the paper.

    Args:
      input_dim: D, the number of pixels/features of one example; data is `[batch, D]`.
      latent_dim: J, the size of z.
      decoder: p(x|z): `bernoulli` (App. C.1, data in [0, 1]), `gaussian` (App. C.2, two
        parallel Dense heads for mean and log-variance), `isotropic` (D means plus one
        shared log-variance unit) or `fixed_variance` (D means, variance `fixed_variance`).
      architecture: `mlp` (the paper's) or `conv` (needs `image_shape`).
      hidden_units: sizes of the hidden layers of the MLP (encoder order; the decoder
        mirrors them), or the Dense width after the conv stack.
      activation: the hidden nonlinearity (the paper uses tanh).
      image_shape: `(height, width, channels)` with product D; for conv nets and pictures.
      conv_filters: the filters of the conv encoder's stride-2 layers (decoder mirrors).
      kl_method: `analytic` (closed form, App. B) or `monte_carlo` (log q(z|x) - log p(z)).
      kl_weight: beta, the weight of KL(q(z|x) || p(z)) in the loss (1 is the ELBO).
      min_log_var, max_log_var: soft bounds on every learned log-variance. Keeping
        log sigma^2 inside them stops a Gaussian head from collapsing its variance until
        the likelihood is infinite; the bound is smooth, so gradients never vanish at it.
      fixed_variance: sigma^2 of the `fixed_variance` decoder.
      weight_init: how weights start. `fan_in_uniform` (the default; PyTorch's `nn.Linear`
        and `nn.Conv2d` default): kernels and biases U(+-1 / sqrt(fan_in)), the start of
        the PyTorch reference VAE. `glorot_uniform` (Keras' default): kernels
        U(+-sqrt(6 / (fan_in + fan_out))), biases 0. On MNIST (8 seeds, BENCHMARKS.md),
        from Glorot tfvae's test -ELBO trailed the PyTorch reference by 1.6 nats after 1
        epoch and 0.9 after 5; from fan-in no difference was detectable.
      seed: seeds weight initialisation and the model's sampling generator.
    """

    input_dim: int = 64
    latent_dim: int = 2
    decoder: str = "bernoulli"
    architecture: str = "mlp"
    hidden_units: Tuple[int, ...] = (500,)
    activation: str = "tanh"
    image_shape: Optional[Tuple[int, int, int]] = None
    conv_filters: Tuple[int, ...] = (32, 64)
    kl_method: str = "analytic"
    kl_weight: float = 1.0
    min_log_var: float = -8.0
    max_log_var: float = 8.0
    fixed_variance: float = 0.01
    weight_init: str = "fan_in_uniform"
    seed: int = 0

    def __post_init__(self):
        # Normalise sequences that JSON hands back as lists.
        for name in ("hidden_units", "conv_filters", "image_shape"):
            value = getattr(self, name)
            if value is not None or name != "image_shape":
                object.__setattr__(self, name, _int_tuple(value, name))
        _check(
            _is_int(self.input_dim) and self.input_dim > 0,
            "input_dim",
            f"must be a positive integer, got {self.input_dim!r}",
        )
        _check(
            _is_int(self.latent_dim) and self.latent_dim > 0,
            "latent_dim",
            f"must be a positive integer, got {self.latent_dim!r}",
        )
        _check(
            self.decoder in DECODERS, "decoder", f"must be one of {DECODERS}, got {self.decoder!r}"
        )
        _check(
            self.architecture in ARCHITECTURES,
            "architecture",
            f"must be one of {ARCHITECTURES}, got {self.architecture!r}",
        )
        _check(
            len(self.hidden_units) > 0 and all(u > 0 for u in self.hidden_units),
            "hidden_units",
            f"must be one or more positive sizes, got {self.hidden_units!r}",
        )
        _check(
            self.activation in ACTIVATIONS,
            "activation",
            f"must be one of {ACTIVATIONS}, got {self.activation!r}",
        )
        _check(
            self.weight_init in WEIGHT_INITS,
            "weight_init",
            f"must be one of {WEIGHT_INITS}, got {self.weight_init!r}",
        )
        _check(
            self.kl_method in KL_METHODS,
            "kl_method",
            f"must be one of {KL_METHODS}, got {self.kl_method!r}",
        )
        _check(
            _is_finite_number(self.kl_weight) and self.kl_weight >= 0,
            "kl_weight",
            f"must be a finite number >= 0, got {self.kl_weight!r}",
        )
        for name in ("min_log_var", "max_log_var"):
            _check(
                _is_finite_number(getattr(self, name)),
                name,
                f"must be a finite number, got {getattr(self, name)!r}",
            )
        _check(
            self.min_log_var < self.max_log_var,
            "min_log_var",
            f"min_log_var ({self.min_log_var!r}) must be finite and below "
            f"max_log_var ({self.max_log_var!r})",
        )
        _check(
            _is_finite_number(self.fixed_variance) and self.fixed_variance > 0,
            "fixed_variance",
            f"must be a finite number > 0, got {self.fixed_variance!r}",
        )
        _check(
            _is_int(self.seed) and self.seed >= 0,
            "seed",
            f"must be an integer >= 0, got {self.seed!r}",
        )
        if self.image_shape is not None:
            _check(
                len(self.image_shape) == 3 and all(s > 0 for s in self.image_shape),
                "image_shape",
                f"must be (height, width, channels), got {self.image_shape!r}",
            )
            _check(
                math.prod(self.image_shape) == self.input_dim,
                "image_shape",
                f"{self.image_shape} has {math.prod(self.image_shape)} values but "
                f"input_dim is {self.input_dim}",
            )
        if self.architecture == "conv":
            _check(
                self.image_shape is not None, "image_shape", "is required by architecture='conv'"
            )
            _check(
                len(self.conv_filters) > 0 and all(f > 0 for f in self.conv_filters),
                "conv_filters",
                f"must be one or more positive sizes, got {self.conv_filters!r}",
            )
            h, w, _ = self.image_shape
            factor = 2 ** len(self.conv_filters)
            _check(
                h % factor == 0 and w % factor == 0,
                "image_shape",
                f"height and width of {self.image_shape} must be divisible by "
                f"2**len(conv_filters) = {factor}",
            )

    def replace(self, **changes: Any) -> "VAEConfig":
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["name"] = CONFIG_NAME
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "VAEConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a VAEConfig must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        name = data.pop("name", CONFIG_NAME)
        if name != CONFIG_NAME:
            raise ValueError(f"config is for {name!r}, expected {CONFIG_NAME!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown VAEConfig fields {unknown}; known fields are {sorted(known)}"
            )
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "VAEConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config is not valid JSON: {e}") from e
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "VAEConfig":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {os.fspath(path)!r}")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"{os.fspath(path)!r}: {e}") from e


def _int_tuple(value: Any, field: str) -> Tuple[int, ...]:
    """A list/tuple of integers as a tuple; anything else is refused, naming the field."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(
            f"VAEConfig.{field}: must be a list or tuple of integers, got {value!r} "
            f"({type(value).__name__})"
        )
    if not all(_is_int(v) or (hasattr(v, "__index__") and not isinstance(v, bool)) for v in value):
        raise ValueError(f"VAEConfig.{field}: must contain only integers, got {value!r}")
    return tuple(int(v) for v in value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
