import json

import pytest

from tfvae import VAEConfig


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


def test_cli_choices_are_the_configs():
    # The CLI keeps its own copies (its parser is built before TensorFlow is imported).
    from tfvae import cli, config

    for name in ("DECODERS", "ARCHITECTURES", "ACTIVATIONS", "WEIGHT_INITS"):
        assert getattr(cli, name) == getattr(config, name), name
    # ... and its own copies of the defaults.
    train = cli._parser().parse_args(["train", "--out", "unused"])
    assert train.weight_init == config.VAEConfig().weight_init
