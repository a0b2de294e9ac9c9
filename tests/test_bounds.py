"""Sizes beyond tfvae's documented limits are refused up front in one line naming the flag or
argument, the value and the limit (before, they ran for hours, ran out of memory or
overflowed TensorFlow's int32 shapes with a traceback)."""

import os
import re

import numpy as np
import pytest
from helpers import REPO

from tfvae import VAE, TrainConfig, VAEConfig, export
from tfvae.cli import app as cli
from tfvae.config import LIMITS, MAX_ARRAY_BYTES, weight_count

BIG = "1000000000"


def parse_error(argv, capsys):
    """The one stderr line of an argument error (exit status 2 from argparse)."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--eval-samples", BIG], f"--eval-samples: must be at most 100000 .*got {BIG}"),
        (["train", "--latent-dim", BIG], f"--latent-dim: must be at most 10000 .*got {BIG}"),
        (
            ["train", "--hidden-units", "100000000"],
            r"--hidden-units: must be at most 100 sizes of at most 100000 each .*got \(100000000,",
        ),
        (["run", "--hidden-units", *["8"] * 101], r"--hidden-units: must be at most 100 sizes"),
        (["run", "--epochs", BIG], f"--epochs: must be at most 1000000 .*got {BIG}"),
        (["train", "--batch-size", BIG], f"--batch-size: must be at most 100000 .*got {BIG}"),
        (["train", "--kl-warmup-epochs", BIG], "--kl-warmup-epochs: must be at most 1000000"),
        (["train", "--eval-every-epochs", BIG], "--eval-every-epochs: must be at most 1000000"),
        (["train", "--steps-per-execution", BIG], "--steps-per-execution: must be at most 1000000"),
        (["train", "--fused-steps", "5000"], "--fused-steps: must be at most 1024 .*got 5000"),
        (["train", "--seed", "1e23"], r"--seed: must be an integer >= 0, got '1e23'"),
        (
            ["run", "--seed", str(10**23)],
            f"--seed: must be at most 536870911 .*got {10**23}; a seed's 4 sampling streams, "
            r"4 \* seed \+ 0..3, must fit TensorFlow's 32-bit seeds",
        ),
        (["sample", "r", "--num", "100000000"], "--num: must be at most 100 .*got 100000000"),
        (["sample", "r", "--draws", "101"], "--draws: must be at most 100 .*got 101"),
        (["sample", "r", "--seed", "1e23"], "--seed: must be an integer >= 0, got '1e23'"),
        (["sample", "r", "--seed", str(10**23)], f"--seed: must be at most {2**64 - 1}"),
        (["reconstruct", "r", "--num", "101"], "--num: must be at most 100 "),
        (["latent", "r", "--num", BIG], f"--num: must be at most 100000 .*got {BIG}"),
        (["latent", "r", "--grid", "1000"], "--grid: must be at most 100 .*got 1000"),
        (["evaluate", "r", "--samples", BIG], f"--samples: must be at most 100000 .*got {BIG}"),
        (["evaluate", "r", "--batch-size", BIG], "--batch-size: must be at most 100000"),
        (["export", "r", "--version", str(2**63)], f"--version: must be at most {2**63 - 1}"),
    ],
)
def test_an_oversize_argument_names_the_flag_value_and_limit(argv, message, capsys):
    err = parse_error(argv, capsys)
    assert re.search(r"argument " + message, err), err
    assert "(tfvae's limit)" in err or "expected an integer" in err or ">= 0" in err


def test_too_many_weights_are_refused_before_training(tmp_path, capsys, monkeypatch):
    """Each width is within its limit, the model is not: refused once the data's D is known,
    naming --hidden-units, before any model is built or file written."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--hidden-units", "100000", "100000", "--out", "o"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tfvae train: error: --hidden-units: VAEConfig.hidden_units: a VAE "), err
    assert "2e+10 weights" in err and "limit of 1e+09" in err
    assert os.listdir(tmp_path) == []


def test_the_library_refuses_the_same_values():
    with pytest.raises(ValueError, match=r"VAEConfig.latent_dim: must be at most 10000"):
        VAEConfig(latent_dim=10**9)
    with pytest.raises(ValueError, match=r"VAEConfig.hidden_units: must be at most 100 sizes"):
        VAEConfig(hidden_units=(10**8,))
    with pytest.raises(ValueError, match=r"VAEConfig.hidden_units: a VAE of 4.02e\+10 weights"):
        VAEConfig(input_dim=784, hidden_units=(10**5, 10**5, 10**5))
    with pytest.raises(ValueError, match=r"VAEConfig.conv_filters: must be at most"):
        VAEConfig(input_dim=64, image_shape=(8, 8, 1), architecture="conv", conv_filters=(200000,))
    with pytest.raises(ValueError, match=r"TrainConfig.eval_samples: must be at most 100000"):
        TrainConfig(eval_samples=10**9)
    with pytest.raises(ValueError, match=r"VAEConfig.seed: must be at most 536870911"):
        VAEConfig(seed=2**40)
    # the limits themselves are allowed
    VAEConfig(latent_dim=10_000, hidden_units=(100,) * 100, seed=2**29 - 1)
    TrainConfig(epochs=10**6, batch_size=10**5, eval_samples=10**5, fused_steps=1024)


def test_generate_and_log_likelihood_refuse_oversize_counts():
    model = VAE(VAEConfig(input_dim=4, latent_dim=2, hidden_units=(3,)))
    with pytest.raises(ValueError, match=r"num_examples must be at most 100000 .*got 10000000000"):
        model.generate(10**10)
    with pytest.raises(ValueError, match=r"num_examples must be at most 100000"):
        model.sample_prior(100_001)
    x = np.full((2, 4), 0.5, np.float32)
    with pytest.raises(
        ValueError, match=r"importance_samples must be at most 100000 .*got 1000000000"
    ):
        model.log_likelihood(x, importance_samples=10**9)
    with pytest.raises(ValueError, match=r"batch_size must be at most 100000"):
        model.log_likelihood(x, batch_size=10**9)
    with pytest.raises(ValueError, match=r"fused_steps must be at most 1024"):
        model.compile(fused_steps=10**6)
    assert model.generate(3).shape == (3, 4)


def test_export_refuses_seeds_and_versions_beyond_int64(tmp_path):
    model = VAE(VAEConfig(input_dim=4, latent_dim=2, hidden_units=(3,)))
    with pytest.raises(ValueError, match=rf"likelihood_seed must be at most {2**63 - 1} .*got"):
        export(model, tmp_path / "m", likelihood_seed=2**70)
    with pytest.raises(TypeError, match=r"likelihood_seed must be an integer >= 0, got 1.5"):
        export(model, tmp_path / "m", likelihood_seed=1.5)
    with pytest.raises(ValueError, match=rf"version must be at most {2**63 - 1} .*\(or None"):
        export(model, tmp_path / "m", version=2**63)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(input_dim=784, latent_dim=20, hidden_units=(500,)),
        dict(input_dim=784, latent_dim=20, hidden_units=(400, 300), decoder="gaussian"),
        dict(input_dim=560, latent_dim=2, hidden_units=(200,), decoder="isotropic"),
        dict(input_dim=784, hidden_units=(64,), architecture="conv", image_shape=(28, 28, 1)),
        dict(
            input_dim=2352,
            hidden_units=(64,),
            architecture="conv",
            image_shape=(28, 28, 3),
            decoder="gaussian",
            conv_filters=(16, 32),
        ),
    ],
)
def test_weight_count_is_keras_count_of_the_built_model(kwargs):
    """What MAX_WEIGHTS bounds is the built model's size, within the biases (< 2%)."""
    config = VAEConfig(**kwargs)
    model = VAE(config)
    built = model.encoder.count_params() + model.decoder.count_params()
    assert weight_count(config) <= built <= 1.02 * weight_count(config)


def test_help_and_readme_show_the_limits(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    help = " ".join(capsys.readouterr().out.split())
    assert "J, the size of z (at most 10000)" in help
    assert "(at most 100 layers of at most 100000)" in help
    assert "K of the importance-weighted log p(x) estimate at evaluation (at most 100000)" in help
    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    assert "at most 100)" in capsys.readouterr().out
    clauses = " ".join(_limits_section().split()).split(";")
    for what, limit in LIMITS.items():
        shown = "8 GiB" if limit == MAX_ARRAY_BYTES else "1e9" if limit == 10**9 else str(limit)
        # the limit as a whole number ("100" is not inside "100000"), in a clause naming it
        number = re.compile(rf"(?<![\w.^]){re.escape(shown)}(?![\w^])")
        names = [w for w in re.findall(r"[a-z_]{4,}", what) if w not in ("each", "layers")]
        assert any(
            number.search(c) and any(re.search(rf"\b{n}\b", c) for n in names) for c in clauses
        ), (what, shown)


def _limits_section() -> str:
    """The paragraph after **Limits.** in README.md, or in docs/*.md if it moved there."""
    docs = os.path.join(REPO, "docs")
    files = [os.path.join(REPO, "README.md")]
    files += sorted(os.path.join(docs, n) for n in os.listdir(docs) if n.endswith(".md"))
    for path in files:
        text = open(path, encoding="utf-8").read()
        if "**Limits.**" in text:
            return text.split("**Limits.**")[1].split("**")[0]
    raise AssertionError("no **Limits.** paragraph in README.md or docs/")
