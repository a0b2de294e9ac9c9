"""Hyperparameters: `VAEConfig` (the model), `TrainConfig` (its training) and named presets.

The one home of every hyperparameter's name, default, validation and help text: the
command line's options are generated from these fields (`tfvae.cli.flags`), and a model is
rebuilt from its saved `VAEConfig` when its weights are loaded. No TensorFlow here: the
CLI builds its parser before TensorFlow is imported.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Tuple

from tfvae.base.configs import (
    Config,
    check_field,
    cli_fields,
    document,
    field,
    flag,
    integer,
    number,
    optional,
    shorten,
)
from tfvae.base.sizes import weight_count

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
    "PRIORS",
    "POSTERIORS",
    "PSEUDO_INPUTS",
    "MAX_PRIOR_COMPONENTS",
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
    "MAX_VERSION",
    "MAX_PICTURE",
    "PICTURE_SAMPLES",
    "PICTURE_DRAWS",
    "PICTURE_RECONSTRUCTIONS",
    "PICTURE_LATENT_EXAMPLES",
    "PICTURE_GRID",
    "MAX_ARRAY_BYTES",
    "weight_count",
]

DECODERS = ("bernoulli", "gaussian", "isotropic", "fixed_variance")
ARCHITECTURES = ("mlp", "conv")
KL_METHODS = ("analytic", "monte_carlo")
OBJECTIVES = ("elbo", "iwae")
GRADIENT_ESTIMATORS = ("reparameterized", "dreg")
PRIORS = ("standard_normal", "mixture", "vamp")
POSTERIORS = ("diagonal", "full_covariance", "iaf")
PSEUDO_INPUTS = ("unit", "free")
WEIGHT_INITS = ("fan_in_uniform", "glorot_uniform")
ACTIVATIONS = ("tanh", "relu", "elu", "softplus", "sigmoid", "swish", "gelu")

# Training steps per XLA program by default (see `VAE.compile`, `tfvae.engine.fused_steps`).
FUSED_STEPS = 32
# Steps per call into the compiled graph by default (`VAE.compile`, `TrainConfig`); data that
# may end mid-call runs one step per call (`tfvae.engine.executions`).
STEPS_PER_EXECUTION = 128

CONFIG_NAME = "VAEConfig"

# The one default K of the importance-weighted log p(x) estimate (Burda et al. 2015):
# TrainConfig.eval_samples, VAE.log_likelihood, evaluate_model, the export's iwae output.
IMPORTANCE_SAMPLES = 100

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
MAX_PRIOR_COMPONENTS = 100_000  # Gaussians of a mixture prior, pseudo-inputs of a VampPrior
MAX_SAMPLES = 100_000  # importance samples K (evaluation), examples generated in one call
MAX_STEPS_PER_EXECUTION = 1_000_000
MAX_FUSED_STEPS = 1_024  # steps traced into one XLA program: its compile time grows with it
MAX_SEED = 2**29 - 1  # VAEConfig.seed * 4 + 3 must fit TensorFlow's int32 seeds
SEED_LIMIT = "a seed's 4 sampling streams, 4 * seed + 0..3, must fit TensorFlow's 32-bit seeds"
MAX_VERSION = 2**63 - 1  # an export's version: TF Serving reads versions as int64
MAX_PICTURE = 100  # rows / columns of a picture: the CLI's --num, --draws, --grid
# The pictures' default sizes: `tfvae run`'s, and those of the picture commands' options.
PICTURE_SAMPLES = 8  # samples.png: latents z, one row each (--num)
PICTURE_DRAWS = 5  # samples.png: draws x ~ p(x|z) beside each z's mean (--draws)
PICTURE_RECONSTRUCTIONS = 10  # reconstructions.png: test examples (--num)
PICTURE_LATENT_EXAMPLES = 2000  # latent.png: test examples (--num)
PICTURE_GRID = 15  # manifold.png: z per side of its grid (--grid)
MAX_ARRAY_BYTES = 8 * 2**30  # one array read from a .npy/.npz file (8 GiB)
LIMITS = {
    "latent_dim": MAX_LATENT_DIM,
    "hidden_units, conv_filters (each)": MAX_UNITS,
    "hidden_units, conv_filters (layers)": MAX_LAYERS,
    "weights of the model": MAX_WEIGHTS,
    "epochs, kl_warmup_epochs, eval_every_epochs": MAX_EPOCHS,
    "batch_size": MAX_BATCH_SIZE,
    "eval_samples, num_samples": MAX_SAMPLES,
    "prior_components": MAX_PRIOR_COMPONENTS,
    "steps_per_execution": MAX_STEPS_PER_EXECUTION,
    "fused_steps": MAX_FUSED_STEPS,
    "seed": MAX_SEED,
    "pictures (--num, --draws, --grid)": MAX_PICTURE,
    "bytes of an array file": MAX_ARRAY_BYTES,
}


# ----------------------------------------------------------------- checks of sizes
def _sizes(value) -> Optional[str]:
    if not (len(value) > 0 and all(v > 0 for v in value)):
        return f"must be one or more positive sizes, got {value!r}"
    if len(value) > MAX_LAYERS or max(value) > MAX_UNITS:
        return (
            f"must be at most {MAX_LAYERS} sizes of at most {MAX_UNITS} each (tfvae's limit), "
            f"got {shorten(value)}"
        )


_sizes.limit = f"at most {MAX_LAYERS} layers of at most {MAX_UNITS}"


def _checked_with_architecture(value) -> None:
    """conv_filters: `_sizes`, checked with architecture='conv' (an mlp does not use them)."""


_checked_with_architecture.limit = _sizes.limit


def _image_shape(value) -> Optional[str]:
    if value is not None and not (len(value) == 3 and all(s > 0 for s in value)):
        return f"must be (height, width, channels), got {value!r}"


# ----------------------------------------------------------------- the configs
@document
@dataclasses.dataclass(frozen=True)
class VAEConfig(Config):
    """Hyperparameters of a VAE (Kingma & Welling 2013, App. C) with defaults from the paper.

    `to_dict()` includes `"name": "VAEConfig"`, checked by `from_dict`.
    """

    input_dim: int = field(
        64,
        "D, the number of pixels/features of one example; data is [batch, D]",
        integer(1),
        from_data=True,
    )
    latent_dim: int = field(2, "J, the size of z", integer(1, MAX_LATENT_DIM))
    decoder: str = field(
        "bernoulli",
        "p(x|z): bernoulli (App. C.1, data in [0, 1]), gaussian (App. C.2, two parallel Dense "
        "heads for mean and log-variance), isotropic (D means plus one shared log-variance "
        "unit) or fixed_variance (D means, variance fixed_variance)",
        choices=DECODERS,
    )
    architecture: str = field(
        "mlp",
        "mlp (the paper's) or conv (needs image_shape)",
        choices=ARCHITECTURES,
    )
    hidden_units: Tuple[int, ...] = field(
        (500,),
        "sizes of the hidden layers of the MLP encoder (the decoder mirrors them), or the "
        "Dense width after the conv stack",
        _sizes,
    )
    activation: str = field(
        "tanh",
        "the hidden nonlinearity (the paper uses tanh)",
        choices=ACTIVATIONS,
    )
    image_shape: Optional[Tuple[int, int, int]] = field(
        None,
        "(height, width, channels) with product D; for conv nets and pictures",
        _image_shape,
        from_data=True,
    )
    conv_filters: Tuple[int, ...] = field(
        (32, 64),
        "filters of the conv encoder's stride-2 layers (the decoder mirrors them)",
        _checked_with_architecture,
    )
    kl_method: str = field(
        "analytic",
        "analytic (closed form, App. B) or monte_carlo (log q(z|x) - log p(z)); objective "
        "elbo only: iwae's weights always use log q(z_k|x) - log p(z_k) per draw",
        choices=KL_METHODS,
    )
    kl_weight: float = field(
        1.0,
        "beta, the weight of KL(q(z|x) || p(z)) in the loss (1 is the ELBO); with objective "
        "iwae each draw's log-weight is log p(x|z_k) - beta (log q(z_k|x) - log p(z_k)) "
        "(1 is the IWAE bound)",
        number(at_least=0),
    )
    min_log_var: float = field(
        -8.0,
        "soft lower bound on every learned log-variance: stops a Gaussian head collapsing "
        "its variance until the likelihood is infinite (smooth, so gradients never vanish)",
        number(),
    )
    max_log_var: float = field(8.0, "soft upper bound on every learned log-variance", number())
    fixed_variance: float = field(0.01, "sigma^2 of the fixed_variance decoder", number(above=0))
    weight_init: str = field(
        "fan_in_uniform",
        "how weights start: fan_in_uniform (PyTorch's nn.Linear and nn.Conv2d default: "
        "kernels and biases U(+-1/sqrt(fan_in))) or glorot_uniform (Keras' default: kernels "
        "U(+-sqrt(6/(fan_in + fan_out))), biases 0); BENCHMARKS.md compares them",
        choices=WEIGHT_INITS,
    )
    seed: int = field(
        0,
        "seeds the weights and 4 sampling streams, 4 * seed + 0..3, in TensorFlow's int32 seeds",
        integer(0, MAX_SEED, SEED_LIMIT),
    )
    objective: str = field(
        "elbo",
        "the training loss over num_samples draws z_k ~ q(z|x) per example: elbo (the mean "
        "over the draws of log p(x|z_k) - KL: one draw is the paper's ELBO, K draws Burda et "
        "al.'s 'VAE k=K') or iwae (the importance-weighted bound log (1/K) sum_k "
        "p(x|z_k) p(z_k) / q(z_k|x), Burda et al. 2015); fit's validation and evaluate use it too",
        choices=OBJECTIVES,
    )
    num_samples: int = field(
        1,
        "K, the draws z ~ q(z|x) per example in the TRAINING objective (memory grows as "
        "K x batch); not TrainConfig.eval_samples, the K of the test log p(x) estimate",
        integer(1, MAX_SAMPLES),
    )
    gradient_estimator: str = field(
        "reparameterized",
        "the encoder's gradient of objective iwae: reparameterized (autodiff of the bound) or "
        "dreg (doubly reparameterized, Tucker et al. 2018: the same expectation without the "
        "score-function term whose noise drowns the encoder's signal as K grows; the "
        "decoder's gradient is unchanged)",
        choices=GRADIENT_ESTIMATORS,
    )

    prior: str = field(
        "standard_normal",
        "p(z): standard_normal (N(0, I), the paper's), mixture (a learned mixture of "
        "prior_components diagonal Gaussians) or vamp (the VampPrior of Tomczak & Welling "
        "2018: (1/K) sum_k q(z|u_k) over K = prior_components learned pseudo-inputs u_k)",
        choices=PRIORS,
    )
    prior_components: Optional[int] = field(
        None,
        "K, the Gaussians of the mixture prior or the pseudo-inputs of the vamp prior "
        "(None: 10 for mixture, 500 for vamp, Tomczak & Welling's MNIST setting)",
        optional(integer(1, MAX_PRIOR_COMPONENTS)),
    )
    pseudo_inputs: str = field(
        "unit",
        "the vamp prior's pseudo-inputs u_k: unit (clipped to [0, 1], the range of the data a "
        "Bernoulli decoder models: the paper's hardtanh) or free (any real values)",
        choices=PSEUDO_INPUTS,
    )
    posterior: str = field(
        "diagonal",
        "q(z|x) of the built-in encoder: diagonal (N(mu, diag sigma^2), the paper's), "
        "full_covariance (N(mu, L L^T), a MultivariateNormalTriL) or iaf (the diagonal "
        "Gaussian pushed through flow_steps inverse autoregressive steps conditioned on x, "
        "Kingma et al. 2016; its KL is estimated by Monte Carlo)",
        choices=POSTERIORS,
    )
    flow_steps: int = field(2, "autoregressive steps of the iaf posterior", integer(1, MAX_LAYERS))
    flow_hidden_units: Tuple[int, ...] = field(
        (320, 320),
        "hidden layers of each iaf step's masked autoregressive network (MADE)",
        _sizes,
    )
    flow_context: int = field(
        100,
        "size of the context vector h(x) the encoder passes to every iaf step",
        integer(1, MAX_UNITS),
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
            f"{shorten(self.hidden_units)}, latent_dim {self.latent_dim}) is more than tfvae's "
            f"limit of {MAX_WEIGHTS:.0e}; use fewer or smaller hidden layers",
        )

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "name": CONFIG_NAME}


@document
@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """How to train: epochs, batch size, optimizer, KL warm-up, evaluation.

    `to_dict()` is the fields alone (as `run.json` and `metrics.json` record them);
    `to_json()` adds `"name": "TrainConfig"`, checked by `from_dict`.
    """

    epochs: int = field(10, "passes over the training data", integer(0, MAX_EPOCHS))
    batch_size: int = field(
        100,
        "examples per step (the global batch, split over replicas, under a distribution strategy)",
        integer(1, MAX_BATCH_SIZE),
    )
    learning_rate: float = field(1e-3, "the step size of Adam", number(above=0))
    kl_warmup_epochs: int = field(
        0,
        "beta rises linearly from 0 to VAEConfig.kl_weight over this many epochs (0: no "
        "warm-up; Bowman et al. 2016)",
        integer(0, MAX_EPOCHS),
    )
    dynamic_binarization: bool = field(False, "redraw binary x from grey levels every epoch", flag)
    output_bias_from_data: bool = field(
        False,
        "start the decoder's output biases at the training data's per-pixel statistics "
        "(VAE.set_output_bias: the logit of the mean for a Bernoulli decoder, as Burda et al.'s "
        "code does) instead of their seeded initialisation; a fresh run only (a resumed one has "
        "its weights)",
        flag,
    )
    clipnorm: Optional[float] = field(
        None,
        "clip the global gradient norm (all variables together) to this before each update "
        "(None: no clip); a guard against the rare huge gradient of a collapsing variance",
        optional(number(above=0)),
    )
    eval_samples: int = field(
        IMPORTANCE_SAMPLES,
        "K of the importance-weighted log p(x) estimate at evaluation",
        integer(1, MAX_SAMPLES),
    )
    eval_every_epochs: int = field(
        1,
        "evaluate the test split every this many epochs for TensorBoard's val_elbo, "
        "val_reconstruction, val_kl (and val_iwae with the iwae objective) (0: never; only "
        "with tfvae.training.tensorboard.EvalSummaries, which tfvae train and run use); "
        "training is the same whatever its value",
        check=integer(0, MAX_EPOCHS),
    )
    jit_compile: Optional[bool] = field(
        None,
        "compile the training step with XLA (None: VAE.compile's rule, XLA where every layer "
        "runs well under it: tfvae.engine.jit_choice)",
        optional(flag),
    )
    steps_per_execution: int = field(
        STEPS_PER_EXECUTION,
        "train steps run per call into the compiled graph: amortises Keras' per-call Python "
        "and dispatch over many steps; batch callbacks then fire once per call",
        integer(1, MAX_STEPS_PER_EXECUTION),
    )
    fused_steps: int = field(
        FUSED_STEPS,
        "with XLA, train steps per compiled program (VAE.compile): the same steps with fewer "
        "launches (1 keeps Keras' one program per step); leftover steps run in smaller "
        "groups (tfvae.engine.fused_steps)",
        integer(1, MAX_FUSED_STEPS),
    )
    seed: int = field(
        0,
        "seeds the data order (and the dynamic binarization noise)",
        integer(0, MAX_SEED, SEED_LIMIT),
    )


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
