"""`tfvae.config`: validation, JSON round trips, presets, and the CLI flags made from it."""

import dataclasses
import json
import re

import numpy as np
import pytest

from tfvae import TrainConfig, VAEConfig
from tfvae.cli import app as cli
from tfvae.cli import flags
from tfvae.config import DEFAULT_PRESET, LIMITS, PRESETS, cli_fields, preset

DATA_FIELDS = {"input_dim", "image_shape"}  # set by the data, never by a flag


def test_json_round_trip(tmp_path):
    config = VAEConfig(
        input_dim=784,
        latent_dim=20,
        decoder="gaussian",
        hidden_units=(400, 200),
        image_shape=(28, 28, 1),
        architecture="conv",
        kl_weight=0.5,
    )
    path = tmp_path / "c.json"
    config.save(path)
    assert VAEConfig.load(path) == config
    assert json.loads(path.read_text())["name"] == "VAEConfig"


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("latent_dim", 0, "latent_dim"),
        ("input_dim", -3, "input_dim"),
        ("decoder", "poisson", "decoder"),
        ("kl_method", "exact", "kl_method"),
        ("kl_weight", float("nan"), "kl_weight"),
        ("hidden_units", (), "hidden_units"),
        ("min_log_var", 9.0, "min_log_var"),
        ("activation", "tanhh", "activation"),
        ("weight_init", "he_normal", "weight_init"),
    ],
)
def test_bad_values_name_the_field(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        VAEConfig(**{field: value})


def test_conv_needs_matching_image_shape():
    with pytest.raises(ValueError, match="image_shape"):
        VAEConfig(input_dim=784, architecture="conv")
    with pytest.raises(ValueError, match="784"):
        VAEConfig(input_dim=784, image_shape=(28, 27, 1))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        VAEConfig.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        VAEConfig.load(bad)
    bad.write_text(json.dumps({"latent_dim": 2, "colour": "red"}))
    with pytest.raises(ValueError, match="colour"):
        VAEConfig.load(bad)


# ------------------------------------------------------------------ TrainConfig
def test_train_config_json_round_trip(tmp_path):
    config = TrainConfig(epochs=3, clipnorm=1.5, jit_compile=False, steps_per_execution=4)
    path = tmp_path / "t.json"
    config.save(path)
    assert TrainConfig.load(path) == config
    assert json.loads(path.read_text())["name"] == "TrainConfig"
    # to_dict is the fields alone: what run.json and metrics.json record.
    assert config.to_dict() == dataclasses.asdict(config)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="config is for 'VAEConfig', expected 'TrainConfig'"):
        TrainConfig.from_json(VAEConfig().to_json())
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields \['momentum'\]"):
        TrainConfig.from_dict({"momentum": 0.9})
    with pytest.raises(ValueError, match="must be a JSON object"):
        TrainConfig.from_json("[1, 2]")


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("epochs", -1, "TrainConfig.epochs: must be an integer >= 0, got -1"),
        ("batch_size", 0, "TrainConfig.batch_size: must be an integer >= 1, got 0"),
        ("batch_size", 2.0, "TrainConfig.batch_size: must be an integer >= 1, got 2.0"),
        ("learning_rate", 0, "TrainConfig.learning_rate: must be a finite number > 0, got 0"),
        ("clipnorm", -1.0, "TrainConfig.clipnorm: must be None or a finite number > 0"),
        ("jit_compile", 1, "TrainConfig.jit_compile: must be None or True or False, got 1"),
        ("fused_steps", 0, "TrainConfig.fused_steps: must be an integer >= 1, got 0"),
        ("seed", True, "TrainConfig.seed: must be an integer >= 0, got True"),
    ],
)
def test_train_config_bad_values_name_the_field(field, value, message):
    with pytest.raises(ValueError) as e:
        TrainConfig(**{field: value})
    assert str(e.value).startswith(message)


def _documented(cls):
    """[(name, help)] read from the `Args:` section of `cls.__doc__`, in order."""
    args = cls.__doc__.split("\n    Args:\n", 1)[1]
    return re.findall(r"^      (\w+): (.+)$", args, re.M)


def test_docstrings_document_every_field_in_order():
    for cls in (VAEConfig, TrainConfig):
        documented = _documented(cls)
        assert [name for name, _ in documented] == [f.name for f in dataclasses.fields(cls)]
        for name, help in documented:
            assert len(help.split()) >= 3, (cls.__name__, name)  # a sentence, not a stub


def test_a_limited_field_documents_its_limit():
    docs = {name: help for cls in (VAEConfig, TrainConfig) for name, help in _documented(cls)}
    checked = set()
    for what, limit in LIMITS.items():
        for name in re.findall(r"\w+", what.split("(")[0]):
            if name in docs:
                assert re.search(rf"at most {limit}\b", docs[name]), (name, limit, docs[name])
                checked.add(name)
    assert {"latent_dim", "hidden_units", "conv_filters", "epochs", "num_samples"} <= checked


def test_numpy_integers_are_integers_and_stored_as_int():
    config = VAEConfig(latent_dim=np.int64(3), seed=np.uint8(7))
    assert type(config.latent_dim) is int and config.latent_dim == 3 and config.seed == 7
    assert VAEConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="VAEConfig.latent_dim: must be an integer >= 1"):
        VAEConfig(latent_dim=np.bool_(True))


# ------------------------------------------------------------------ presets
def test_presets_are_valid_and_digits_keeps_the_main_jobs_settings():
    for name, chosen in PRESETS.items():
        assert preset(name) is chosen
        VAEConfig(**chosen.model)
        TrainConfig(**chosen.train)
    assert PRESETS["library"].model == {} and PRESETS["library"].train == {}
    # The settings `tfvae run` has always trained with.
    digits = preset("digits")
    assert VAEConfig(**digits.model).hidden_units == (200,)
    assert (TrainConfig(**digits.train).epochs, TrainConfig(**digits.train).batch_size) == (100, 32)
    with pytest.raises(ValueError, match="unknown preset 'cifar': expected one of digits"):
        preset("cifar")


# ------------------------------------------------------------------ the CLI's flags
def _configs(argv):
    """The (VAEConfig, TrainConfig) the CLI would build from `argv` for 8x8 binary digits."""
    model, train = flags.config_values(cli.parser().parse_args(argv))
    model.setdefault("decoder", "bernoulli")
    return VAEConfig(input_dim=64, image_shape=(8, 8, 1), **model), TrainConfig(**train)


def _sample(field):
    """A valid value of `field` that is not its default, and its command-line words."""
    flag = flags.flag(field.name)
    if field.type == "bool":
        return (not field.default), [f"--no-{flag[2:]}" if field.default else flag]
    if field.type == "Optional[bool]":  # None: the library's rule; the flag says either
        return False, [f"--no-{flag[2:]}"]
    if field.metadata["choices"]:
        value = field.metadata["choices"][-1]
        return value, [flag, value]
    if field.type.startswith("Tuple"):
        return (3, 4), [flag, "3", "4"]
    if field.default is None:
        value = 3 if field.type == "Optional[int]" else 1.5
        return value, [flag, str(value)]
    value = field.default + (1 if field.type == "int" else 0.5)
    return value, [flag, str(value)]


@pytest.mark.parametrize("command", [["train", "--out", "x"], ["run"]])
def test_every_field_has_a_flag(command):
    fields = [(cls, f) for cls in (VAEConfig, TrainConfig) for f in dataclasses.fields(cls)]
    for cls, field in fields:
        if field.name in DATA_FIELDS:
            assert field not in cli_fields(cls)
            continue
        value, words = _sample(field)
        model, train = flags.config_values(cli.parser().parse_args(command + words))
        got = model if cls is VAEConfig else train
        assert got[field.name] == (list(value) if isinstance(value, tuple) else value), words


def test_seed_sets_both_configs():
    model, train = _configs(["train", "--out", "x", "--seed", "7"])
    assert model.seed == train.seed == 7


@pytest.mark.parametrize(
    "flag, error",
    [
        ("--input-dim", "unrecognized arguments"),  # the data's
        ("--image-shape", "argument --image-shape: expected H,W,C"),  # a data option, not a field's
    ],
)
def test_data_fields_have_no_flag(flag, error, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", flag, "3"])
    assert e.value.code == 2
    assert error in capsys.readouterr().err


def test_cli_defaults_are_the_presets_and_the_dataclasses():
    model, train = _configs(["train", "--out", "x"])
    digits = preset(DEFAULT_PRESET)
    assert model == VAEConfig(input_dim=64, image_shape=(8, 8, 1), **digits.model)
    assert train == TrainConfig(**digits.train)
    model, train = _configs(["train", "--out", "x", "--preset", "library"])
    assert model == VAEConfig(input_dim=64, image_shape=(8, 8, 1))
    assert train == TrainConfig()
    # A flag beats the preset.
    model, train = _configs(["train", "--out", "x", "--hidden-units", "7", "--epochs", "2"])
    assert model.hidden_units == (7,) and train.epochs == 2 and train.batch_size == 32


def test_run_uses_the_default_preset():
    assert _configs(["run"]) == _configs(["train", "--out", "x"])
    assert _configs(["run"]) == _configs(["run", "--preset", DEFAULT_PRESET])
    assert _configs(["run"]) != _configs(["run", "--preset", "library"])


@pytest.mark.parametrize(
    "words, message",
    [
        (["--latent-dim", "0"], "argument --latent-dim: must be an integer >= 1, got 0"),
        (["--latent-dim", "two"], "argument --latent-dim: must be an integer >= 1, got 'two'"),
        (["--hidden-units", "8", "-1"], "argument --hidden-units: must be one or more positive"),
        (["--clipnorm", "0"], "argument --clipnorm: must be None or a finite number > 0"),
        (["--min-log-var", "inf"], "argument --min-log-var: must be a finite number, got inf"),
        (["--steps-per-execution", "0"], "argument --steps-per-execution: must be an integer"),
        (["--kl-method", "exact"], "argument --kl-method: invalid choice: 'exact'"),
        (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    ],
)
def test_a_bad_value_names_its_flag(words, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--out", "x", *words])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_bad_combination_names_the_flag(capsys, tmp_path, monkeypatch):
    # Each value alone is fine; together the config refuses them, before anything is written.
    monkeypatch.chdir(tmp_path)
    status = cli.main(["train", "--out", "o", "--min-log-var", "2", "--max-log-var", "1"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfvae train: error: --min-log-var: VAEConfig.min_log_var:"), err
    assert list(tmp_path.iterdir()) == []


def test_clipnorm_accepts_none():
    assert _configs(["run", "--clipnorm", "none"])[1].clipnorm is None
    assert _configs(["run", "--clipnorm", "2"])[1].clipnorm == 2.0
