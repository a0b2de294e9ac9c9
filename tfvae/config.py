"""Hyperparameters: `VAEConfig` (the model), `TrainConfig` (its training) and named presets.

The one home of every hyperparameter's name, default, validation and help text: the
command line's options are generated from these fields (`tfvae.cli.app`), and a model is
rebuilt from its saved `VAEConfig` when its weights are loaded. No TensorFlow here: the
CLI builds its parser before TensorFlow is imported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Mapping, Optional, Tuple

from tfvae.base import atomic

__all__ = [
    "VAEConfig",
    "TrainConfig",
    "Preset",
    "PRESETS",
    "DEFAULT_PRESET",
    "preset",
    "preset_for",
    "cli_fields",
    "check_field",
    "DECODERS",
    "ARCHITECTURES",
    "KL_METHODS",
    "OBJECTIVES",
    "GRADIENT_ESTIMATORS",
    "WEIGHT_INITS",
    "ACTIVATIONS",
    "FUSED_STEPS",
    "STEPS_PER_EXECUTION",
    "DATASETS",
    "LIMITS",
    "MAX_LATENT_DIM",
    "MAX_UNITS",
    "MAX_LAYERS",
    "MAX_WEIGHTS",
    "MAX_EPOCHS",
    "MAX_BATCH_SIZE",
    "MAX_SAMPLES",
    "MAX_STEPS_PER_EXECUTION",
    "MAX_FUSED_STEPS",
    "MAX_SEED",
    "MAX_PICTURE",
    "MAX_ARRAY_BYTES",
    "weight_count",
]

DECODERS = ("bernoulli", "gaussian", "isotropic", "fixed_variance")
ARCHITECTURES = ("mlp", "conv")
KL_METHODS = ("analytic", "monte_carlo")
OBJECTIVES = ("elbo", "iwae")
GRADIENT_ESTIMATORS = ("reparameterized", "dreg")
WEIGHT_INITS = ("fan_in_uniform", "glorot_uniform")
ACTIVATIONS = ("tanh", "relu", "elu", "softplus", "sigmoid", "swish", "gelu")

# Training steps per XLA program by default (see `VAE.compile`, `tfvae.engine.fused_steps`).
FUSED_STEPS = 32
# Steps per call into the compiled graph by default (`VAE.compile`, `TrainConfig`); data that
# may end mid-call runs one step per call (`tfvae.engine.executions`).
STEPS_PER_EXECUTION = 128

CONFIG_NAME = "VAEConfig"

# ----------------------------------------------------------------- upper bounds
# Far above any use of a VAE on one machine, low enough that a slip of the keyboard (three
# extra zeros) is refused in one line before anything is allocated, instead of a process
# killed for memory, a TensorFlow shape overflow or a loop that runs for hours. The field
# help (so `--help`) and README ("Reliability and security") show them.
MAX_LATENT_DIM = 10_000  # J
MAX_UNITS = 100_000  # width of one hidden layer, filters of one conv layer
MAX_LAYERS = 100  # hidden layers, conv layers
MAX_WEIGHTS = 10**9  # Dense and conv kernels of one VAE: 4 GB of float32, x3 with Adam's moments
MAX_EPOCHS = 1_000_000
MAX_BATCH_SIZE = 100_000
MAX_SAMPLES = 100_000  # importance samples K (evaluation), examples generated in one call
MAX_STEPS_PER_EXECUTION = 1_000_000
MAX_FUSED_STEPS = 1_024  # steps traced into one XLA program: its compile time grows with it
MAX_SEED = 2**29 - 1  # VAEConfig.seed * 4 + 3 must fit TensorFlow's int32 seeds
MAX_PICTURE = 100  # rows / columns of a picture: the CLI's --num, --draws, --grid
MAX_ARRAY_BYTES = 8 * 2**30  # one array read from a .npy/.npz file (8 GiB)
LIMITS = {
    "latent_dim": MAX_LATENT_DIM,
    "hidden_units, conv_filters (each)": MAX_UNITS,
    "hidden_units, conv_filters (layers)": MAX_LAYERS,
    "weights of the model": MAX_WEIGHTS,
    "epochs, kl_warmup_epochs, eval_every_epochs": MAX_EPOCHS,
    "batch_size": MAX_BATCH_SIZE,
    "eval_samples, num_samples": MAX_SAMPLES,
    "steps_per_execution": MAX_STEPS_PER_EXECUTION,
    "fused_steps": MAX_FUSED_STEPS,
    "seed": MAX_SEED,
    "pictures (--num, --draws, --grid)": MAX_PICTURE,
    "bytes of an array file": MAX_ARRAY_BYTES,
}

Check = Callable[[Any], Optional[str]]  # a field's value -> what is wrong with it, or None


# ----------------------------------------------------------------- checks of one value
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(minimum: int, maximum: Optional[int] = None) -> Check:
    def check(value):
        if not (_is_int(value) and value >= minimum):
            return f"must be an integer >= {minimum}, got {value!r}"
        if maximum is not None and value > maximum:
            return f"must be at most {maximum} (tfvae's limit), got {value!r}"

    check.limit = None if maximum is None else f"at most {maximum}"
    return check


def _number(above: Optional[float] = None, at_least: Optional[float] = None) -> Check:
    bound = (
        f" > {above}" if above is not None else f" >= {at_least}" if at_least is not None else ""
    )

    def check(value):
        ok = _is_finite_number(value)
        ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
        if not ok:
            return f"must be a finite number{bound}, got {value!r}"

    return check


def _optional(check: Check) -> Check:
    def optional(value):
        problem = None if value is None else check(value)
        if problem:
            return "must be None or " + problem[len("must be ") :]

    return optional


def _one_of(choices: Tuple[str, ...]) -> Check:
    def check(value):
        if value not in choices:
            return f"must be one of {choices}, got {value!r}"

    return check


def _flag(value) -> Optional[str]:
    if not isinstance(value, bool):
        return f"must be True or False, got {value!r}"


def _sizes(value) -> Optional[str]:
    if not (len(value) > 0 and all(v > 0 for v in value)):
        return f"must be one or more positive sizes, got {value!r}"
    if len(value) > MAX_LAYERS or max(value) > MAX_UNITS:
        return (
            f"must be at most {MAX_LAYERS} sizes of at most {MAX_UNITS} each (tfvae's limit), "
            f"got {_shorten(value)}"
        )


_sizes.limit = f"at most {MAX_LAYERS} layers of at most {MAX_UNITS}"


def _shorten(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(value)} values)"


def _image_shape(value) -> Optional[str]:
    if value is not None and not (len(value) == 3 and all(s > 0 for s in value)):
        return f"must be (height, width, channels), got {value!r}"


def _field(default: Any, help: str, check: Optional[Check] = None, choices=None, from_data=False):
    """A config field carrying its help text, its check (by default: one of `choices`), its
    choices and whether the data determines it (then the command line has no flag for it).

    A check's upper bound (`check.limit`) is added to the help text.
    """
    check = check or _one_of(choices)
    if getattr(check, "limit", None):
        help = f"{help} ({check.limit})"
    metadata = {"help": help, "check": check, "choices": choices, "from_data": from_data}
    return dataclasses.field(default=default, metadata=metadata)


# ----------------------------------------------------------------- shared behaviour
class _Config:
    """Validation by field and a JSON round trip (with a `name` checked on reload)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            optional = f.type.startswith("Optional[")
            if f.type.startswith(("Tuple", "Optional[Tuple")) and not (optional and value is None):
                value = _int_tuple(value, f"{type(self).__name__}.{f.name}")
                object.__setattr__(self, f.name, value)  # JSON hands back lists
            problem = f.metadata["check"](value)
            if problem:
                raise ValueError(f"{type(self).__name__}.{f.name}: {problem}")
        self._check_together()

    def _check_together(self) -> None:
        """Checks that involve several fields (each field alone is already valid)."""

    def replace(self, **changes: Any):
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        name = cls.__name__
        if not isinstance(data, dict):
            raise ValueError(f"a {name} must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        found = data.pop("name", name)
        if found != name:
            raise ValueError(f"config is for {found!r}, expected {name!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {name} fields {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps({**self.to_dict(), "name": type(self).__name__}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config is not valid JSON: {e}") from e
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        atomic.write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {os.fspath(path)!r}")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"{os.fspath(path)!r}: {e}") from e


def _document(cls):
    """Appends an `Args:` section built from the fields' help text to `cls.__doc__`."""
    lines = [f"      {f.name}: {f.metadata['help']}" for f in dataclasses.fields(cls)]
    cls.__doc__ = cls.__doc__.rstrip() + "\n\n    Args:\n" + "\n".join(lines) + "\n    "
    return cls


# ----------------------------------------------------------------- the configs
@_document
@dataclasses.dataclass(frozen=True)
class VAEConfig(_Config):
    """Hyperparameters of a VAE (Kingma & Welling 2013, App. C) with defaults from the paper.

    `to_dict()` includes `"name": "VAEConfig"`, checked by `from_dict`.
    """

    input_dim: int = _field(
        64,
        "D, the number of pixels/features of one example; data is [batch, D]",
        _int_at_least(1),
        from_data=True,
    )
    latent_dim: int = _field(2, "J, the size of z", _int_at_least(1, MAX_LATENT_DIM))
    decoder: str = _field(
        "bernoulli",
        "p(x|z): bernoulli (App. C.1, data in [0, 1]), gaussian (App. C.2, two parallel Dense "
        "heads for mean and log-variance), isotropic (D means plus one shared log-variance "
        "unit) or fixed_variance (D means, variance fixed_variance)",
        choices=DECODERS,
    )
    architecture: str = _field(
        "mlp",
        "mlp (the paper's) or conv (needs image_shape)",
        choices=ARCHITECTURES,
    )
    hidden_units: Tuple[int, ...] = _field(
        (500,),
        "sizes of the hidden layers of the MLP encoder (the decoder mirrors them), or the "
        "Dense width after the conv stack",
        _sizes,
    )
    activation: str = _field(
        "tanh",
        "the hidden nonlinearity (the paper uses tanh)",
        choices=ACTIVATIONS,
    )
    image_shape: Optional[Tuple[int, int, int]] = _field(
        None,
        "(height, width, channels) with product D; for conv nets and pictures",
        _image_shape,
        from_data=True,
    )
    conv_filters: Tuple[int, ...] = _field(
        (32, 64),
        "filters of the conv encoder's stride-2 layers (the decoder mirrors them)",
        lambda value: None,  # checked with architecture (unused by mlp)
    )
    kl_method: str = _field(
        "analytic",
        "analytic (closed form, App. B) or monte_carlo (log q(z|x) - log p(z)); objective "
        "elbo only: iwae's weights always use log q(z_k|x) - log p(z_k) per draw",
        choices=KL_METHODS,
    )
    kl_weight: float = _field(
        1.0,
        "beta, the weight of KL(q(z|x) || p(z)) in the loss (1 is the ELBO); with objective "
        "iwae each draw's log-weight is log p(x|z_k) - beta (log q(z_k|x) - log p(z_k)) "
        "(1 is the IWAE bound)",
        _number(at_least=0),
    )
    min_log_var: float = _field(
        -8.0,
        "soft lower bound on every learned log-variance: stops a Gaussian head collapsing "
        "its variance until the likelihood is infinite (smooth, so gradients never vanish)",
        _number(),
    )
    max_log_var: float = _field(8.0, "soft upper bound on every learned log-variance", _number())
    fixed_variance: float = _field(0.01, "sigma^2 of the fixed_variance decoder", _number(above=0))
    weight_init: str = _field(
        "fan_in_uniform",
        "how weights start: fan_in_uniform (PyTorch's nn.Linear and nn.Conv2d default: "
        "kernels and biases U(+-1/sqrt(fan_in))) or glorot_uniform (Keras' default: kernels "
        "U(+-sqrt(6/(fan_in + fan_out))), biases 0); BENCHMARKS.md compares them",
        choices=WEIGHT_INITS,
    )
    seed: int = _field(
        0,
        "seeds weight initialisation and the model's sampling generator",
        _int_at_least(0, MAX_SEED),
    )
    objective: str = _field(
        "elbo",
        "the training loss over num_samples draws z_k ~ q(z|x) per example: elbo (the mean "
        "over the draws of log p(x|z_k) - KL: one draw is the paper's ELBO, K draws Burda et "
        "al.'s 'VAE k=K') or iwae (the importance-weighted bound log (1/K) sum_k "
        "p(x|z_k) p(z_k) / q(z_k|x), Burda et al. 2015); fit's validation and evaluate use it too",
        choices=OBJECTIVES,
    )
    num_samples: int = _field(
        1,
        "K, the draws z ~ q(z|x) per example in the TRAINING objective (memory grows as "
        "K x batch); not TrainConfig.eval_samples, the K of the test log p(x) estimate",
        _int_at_least(1, MAX_SAMPLES),
    )
    gradient_estimator: str = _field(
        "reparameterized",
        "the encoder's gradient of objective iwae: reparameterized (autodiff of the bound) or "
        "dreg (doubly reparameterized, Tucker et al. 2018: the same expectation without the "
        "score-function term whose noise drowns the encoder's signal as K grows; the "
        "decoder's gradient is unchanged)",
        choices=GRADIENT_ESTIMATORS,
    )

    def _check_together(self) -> None:
        def check(condition: bool, field: str, message: str) -> None:
            if not condition:
                raise ValueError(f"VAEConfig.{field}: {message}")

        check(
            self.min_log_var < self.max_log_var,
            "min_log_var",
            f"min_log_var ({self.min_log_var!r}) must be finite and below "
            f"max_log_var ({self.max_log_var!r})",
        )
        check(
            self.gradient_estimator == "reparameterized" or self.objective == "iwae",
            "gradient_estimator",
            f"{self.gradient_estimator!r} applies to objective='iwae' only, "
            f"got objective={self.objective!r}",
        )
        if self.image_shape is not None:
            check(
                math.prod(self.image_shape) == self.input_dim,
                "image_shape",
                f"{self.image_shape} has {math.prod(self.image_shape)} values but "
                f"input_dim is {self.input_dim}",
            )
        if self.architecture == "conv":
            check(self.image_shape is not None, "image_shape", "is required by architecture='conv'")
            problem = _sizes(self.conv_filters)
            check(problem is None, "conv_filters", problem)
            h, w, _ = self.image_shape
            factor = 2 ** len(self.conv_filters)
            check(
                h % factor == 0 and w % factor == 0,
                "image_shape",
                f"height and width of {self.image_shape} must be divisible by "
                f"2**len(conv_filters) = {factor}",
            )
        weights = weight_count(self)
        check(
            weights <= MAX_WEIGHTS,
            "hidden_units",
            f"a VAE of {weights:.3g} weights (input_dim {self.input_dim}, hidden_units "
            f"{_shorten(self.hidden_units)}, latent_dim {self.latent_dim}) is more than tfvae's "
            f"limit of {MAX_WEIGHTS:.0e}; use fewer or smaller hidden layers",
        )

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "name": CONFIG_NAME}


@_document
@dataclasses.dataclass(frozen=True)
class TrainConfig(_Config):
    """How to train: epochs, batch size, optimizer, KL warm-up, evaluation.

    `to_dict()` is the fields alone (as `run.json` and `metrics.json` record them);
    `to_json()` adds `"name": "TrainConfig"`, checked by `from_dict`.
    """

    epochs: int = _field(10, "passes over the training data", _int_at_least(0, MAX_EPOCHS))
    batch_size: int = _field(
        100,
        "examples per step (the global batch, split over replicas, under a distribution strategy)",
        _int_at_least(1, MAX_BATCH_SIZE),
    )
    learning_rate: float = _field(1e-3, "the step size of Adam", _number(above=0))
    kl_warmup_epochs: int = _field(
        0,
        "beta rises linearly from 0 to VAEConfig.kl_weight over this many epochs (0: no "
        "warm-up; Bowman et al. 2016)",
        _int_at_least(0, MAX_EPOCHS),
    )
    dynamic_binarization: bool = _field(
        False, "redraw binary x from grey levels every epoch", _flag
    )
    output_bias_from_data: bool = _field(
        False,
        "start the decoder's output biases at the training data's per-pixel statistics "
        "(VAE.set_output_bias: the logit of the mean for a Bernoulli decoder, as Burda et al.'s "
        "code does) instead of their seeded initialisation; a fresh run only (a resumed one has "
        "its weights)",
        _flag,
    )
    clipnorm: Optional[float] = _field(
        None,
        "clip the global gradient norm (all variables together) to this before each update "
        "(None: no clip); a guard against the rare huge gradient of a collapsing variance",
        _optional(_number(above=0)),
    )
    eval_samples: int = _field(
        100,
        "K of the importance-weighted log p(x) estimate at evaluation",
        _int_at_least(1, MAX_SAMPLES),
    )
    eval_every_epochs: int = _field(
        1,
        "evaluate the test split every this many epochs for TensorBoard's val_elbo, "
        "val_reconstruction, val_kl (and val_iwae with the iwae objective) (0: never; only "
        "with tfvae.training.tensorboard.EvalSummaries, which tfvae train and run use); training is the "
        "same whatever its value",
        _int_at_least(0, MAX_EPOCHS),
    )
    jit_compile: bool = _field(True, "compile the training step with XLA", _flag)
    steps_per_execution: int = _field(
        STEPS_PER_EXECUTION,
        "train steps run per call into the compiled graph: amortises Keras' per-call Python "
        "and dispatch over many steps; batch callbacks then fire once per call",
        _int_at_least(1, MAX_STEPS_PER_EXECUTION),
    )
    fused_steps: int = _field(
        FUSED_STEPS,
        "with XLA, train steps per compiled program (VAE.compile): the same steps with fewer "
        "launches (1 keeps Keras' one program per step); leftover steps run in smaller "
        "groups (tfvae.engine.fused_steps)",
        _int_at_least(1, MAX_FUSED_STEPS),
    )
    seed: int = _field(
        0, "seeds the data order (and the dynamic binarization noise)", _int_at_least(0, MAX_SEED)
    )


def weight_count(config: VAEConfig) -> int:
    """The weights in the Dense and conv kernels of a VAE built from `config` (what
    `MAX_WEIGHTS` bounds; biases and one-unit heads aside, a few percent at most)."""
    d, j, hidden = config.input_dim, config.latent_dim, config.hidden_units
    out = 2 * d if config.decoder == "gaussian" else d  # the decoder's parameters per pixel
    if config.architecture != "conv":
        pairs = sum(a * b for a, b in zip(hidden, hidden[1:]))
        return 2 * pairs + d * hidden[0] + 2 * hidden[-1] * j + j * hidden[-1] + hidden[0] * out
    h, w, c = config.image_shape
    filters = config.conv_filters
    factor = 2 ** len(filters)
    flat = (h // factor) * (w // factor) * filters[-1]
    back = filters[::-1]
    convs = sum(a * b for a, b in zip((c, *filters), filters))  # the encoder's
    convs += sum(a * b for a, b in zip((back[0], *back), back))  # the decoder's, transposed
    convs += filters[0] * c * out // d  # the decoder's head
    # 3x3 kernels; Dense flat -> h0 -> 2J in the encoder, J -> h0 -> flat in the decoder
    return 9 * convs + 2 * flat * hidden[0] + 3 * hidden[0] * j


# ----------------------------------------------------------------- presets
@dataclasses.dataclass(frozen=True)
class Preset:
    """Named changes to the library's defaults: `model` for VAEConfig, `train` for TrainConfig."""

    description: str
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)


PRESETS = {
    "digits": Preset(
        "sized for the 1438 training images of the embedded 8x8 digits",
        model={"hidden_units": (200,)},
        train={"epochs": 100, "batch_size": 32, "eval_every_epochs": 5},
    ),
    "mnist": Preset(
        "the main job (`tfvae run`) on MNIST: a short run that draws legible 28x28 digits",
        model={"hidden_units": (500,)},
        train={"epochs": 10, "batch_size": 100},
    ),
    "library": Preset("the library's defaults, VAEConfig() and TrainConfig() (the paper's MNIST)"),
}
DEFAULT_PRESET = "digits"  # what the command line uses unless --preset or the dataset says
# The datasets known by name (`tfvae.data.datasets.load_dataset`; here so the CLI can list them
# without importing TensorFlow) and the preset each one trains with by default.
DATASETS = ("default", "mnist", "binarized_mnist", "frey")
DATASET_PRESETS = {"mnist": "mnist", "binarized_mnist": "mnist"}


def preset(name: str) -> Preset:
    """The preset called `name`; a ValueError lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_for(dataset: str) -> str:
    """The preset the command line uses for `dataset` unless `--preset` is given."""
    return DATASET_PRESETS.get(dataset, DEFAULT_PRESET)


def cli_fields(cls) -> Tuple[dataclasses.Field, ...]:
    """The fields of config class `cls` that a user sets (the data determines the others)."""
    return tuple(f for f in dataclasses.fields(cls) if not f.metadata["from_data"])


def check_field(cls, name: str, value: Any) -> Optional[str]:
    """What is wrong with `value` for field `name` of `cls` on its own, or None."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.type.startswith(("Tuple", "Optional[Tuple")) and value is not None:
        try:
            value = _int_tuple(value, name)
        except ValueError as e:
            return str(e).split(": ", 1)[-1]
    return field.metadata["check"](value)


def _int_tuple(value: Any, field: str) -> Tuple[int, ...]:
    """A list/tuple of integers as a tuple; anything else is refused, naming the field."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{field}: must be a list or tuple of integers, got {value!r} ({type(value).__name__})"
        )
    if not all(_is_int(v) or (hasattr(v, "__index__") and not isinstance(v, bool)) for v in value):
        raise ValueError(f"{field}: must contain only integers, got {value!r}")
    return tuple(int(v) for v in value)
