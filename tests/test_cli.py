"""The `tfvae` command end to end, from subprocesses as a user runs it, plus bad input.

One tiny run (`tfvae run`, 2 epochs on the embedded digits) is shared by the tests; every
other command reads it. Bad-input cases check exit status 2, one line on stderr, no
traceback and that nothing written before was changed.
"""

import json
import math
import os

import numpy as np
import pytest
from helpers import one_line_error, run_python, tree_digest

TINY = ["--epochs", "2", "--hidden-units", "16", "--eval-samples", "5", "--batch-size", "200"]


def tfvae(*args, cwd=None):
    return run_python(["-m", "tfvae", *args], cwd=cwd, timeout=600)


def read_png(path):
    from matplotlib.image import imread

    assert os.path.isfile(path), path
    image = imread(path)
    assert image.ndim == 3 and image.dtype == np.float32
    return image


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """`tfvae run` in a fresh directory: runs/default, its pictures, and the export."""
    root = tmp_path_factory.mktemp("cli")
    # No MNIST in --data-dir and downloads refused (conftest): the offline path, the digits.
    result = tfvae("run", *TINY, "--data-dir", str(root / "offline"), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (root / "run-stdout.txt").write_text(result.stdout)
    return root


@pytest.mark.slow
def test_run_writes_model_logs_pictures(workdir):
    run = workdir / "runs" / "default"
    for name in (
        "model/manifest.json",
        "model/config.json",
        "run.json",
        "metrics.json",
    ):
        assert (run / name).is_file(), name
    with open(run / "history.csv") as f:
        rows = f.read().strip().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 3  # header + 2 epochs
    assert rows[1].startswith("1,") and "val_" not in rows[0]  # epochs counted as printed
    stdout = (workdir / "run-stdout.txt").read_text()
    assert "Epoch 1/2 - " in stdout and "elbo: -" in stdout and "e+01" not in stdout
    events = [n for _, _, files in os.walk(run / "logs") for n in files]
    assert any(n.startswith("events.out.tfevents") for n in events)
    for name, size in {
        "reconstructions.png": (250, 1000),
        "samples.png": (850, 600),
        "latent.png": (600, 700),
        "manifold.png": (850, 800),
        "curves.png": (350, 1200),
    }.items():
        image = read_png(run / "pictures" / name)
        assert image.shape[:2] == size, name
        assert image[..., :3].std() > 0, name
    # One run.json describes the run: the digits preset (offline, the data is the embedded
    # digits), the flags of TINY over it, and what the data decides (binary 8x8 images).
    from tfvae import TrainConfig, VAEConfig

    want_model = VAEConfig(
        hidden_units=(16,), input_dim=64, image_shape=(8, 8, 1), decoder="bernoulli"
    )
    want_train = TrainConfig(epochs=2, batch_size=200, eval_samples=5, eval_every_epochs=5)
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["model_config"] == json.loads(json.dumps(want_model.to_dict()))
    assert recorded["train_config"] == json.loads(json.dumps(want_train.to_dict()))
    # ... and the data: how to load it again, and what it was.
    assert recorded["dataset"]["source"]["dataset"] == "default"
    assert recorded["dataset"]["train_shape"][1] == 64 and len(recorded["dataset"]["sha256"]) == 64
    assert not (run / "dataset.json").exists()
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert math.isfinite(metrics["elbo"]) and metrics["elbo"] < 0
    assert (workdir / "saved_models" / "default" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_evaluate_json_matches_the_training_run(workdir):
    run = workdir / "runs" / "default"
    # Same K and batch size as the run's own evaluation (TINY): evaluation draws are seeded,
    # so a fresh process reloading the saved model on the same test split must agree.
    result = tfvae("evaluate", str(run), "--json", "--samples", "5", "--batch-size", "200")
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout)
    want = json.loads((run / "metrics.json").read_text())["test"]
    for key in ("elbo", "reconstruction", "kl", "log_likelihood"):
        assert got[key] == pytest.approx(want[key], abs=1e-3), key
    d = json.loads((run / "model" / "config.json").read_text())["input_dim"]
    assert got["nll_bits_per_dim"] == pytest.approx(-got["log_likelihood"] / (d * math.log(2)))
    assert got["elbo_bits_per_dim"] == pytest.approx(-got["elbo"] / (d * math.log(2)))
    assert got["num_examples"] == 359 and got["log_likelihood_samples"] == 5


@pytest.mark.slow
def test_sample_reconstruct_latent_write_documented_pngs(workdir, tmp_path):
    from tfvae.plots import grid_size_px

    run = str(workdir / "runs" / "default")
    sample = tfvae("sample", run, "--num", "3", "--draws", "2", "--out", str(tmp_path / "s.png"))
    assert sample.returncode == 0, sample.stderr[-3000:]
    image = read_png(tmp_path / "s.png")
    assert image.shape[:2] == grid_size_px(3, 3) == (350, 300)
    assert image[..., :3].std() > 0
    assert "(350 x 300 pixels)" in sample.stdout

    recon = tfvae("reconstruct", run, "--num", "4", "--out", str(tmp_path / "r.png"))
    assert recon.returncode == 0, recon.stderr[-3000:]
    image = read_png(tmp_path / "r.png")
    assert image.shape[:2] == grid_size_px(2, 4) == (250, 400)
    assert image[..., :3].std() > 0

    latent = tfvae("latent", run, "--grid", "5", "--out", str(tmp_path / "pics" / "z.png"))
    assert latent.returncode == 0, latent.stderr[-3000:]
    for name, size in (("z.png", (600, 700)), ("manifold.png", (850, 800))):
        image = read_png(tmp_path / "pics" / name)
        assert image.shape[:2] == size and image[..., :3].std() > 0


@pytest.mark.slow
def test_export_writes_tf_serving_layout(workdir, tmp_path, capsys):
    result = tfvae("export", str(workdir / "runs" / "default"), "--base-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "default" / "1" / "saved_model.pb").is_file()
    from tfvae.cli import main

    before = tree_digest(tmp_path)
    status = main(["export", str(workdir / "runs" / "default"), "--base-dir", str(tmp_path),
                   "--version", "1"])  # fmt: skip
    assert status == 2
    line = one_line_error(capsys.readouterr().err)
    assert "pass --overwrite" in line and "overwrite=True" not in line
    assert tree_digest(tmp_path) == before
    # The log_likelihood signature's K and the request budget, chosen and recorded.
    from tfvae.serving.export import METADATA_FILE

    status = main(["export", str(workdir / "runs" / "default"), "--base-dir", str(tmp_path),
                   "--iwae-samples", "7", "--max-request-elements", "6"])  # fmt: skip
    assert status == 2
    line = one_line_error(capsys.readouterr().err)
    assert "--max-request-elements must be at least --iwae-samples (7)" in line
    assert tree_digest(tmp_path) == before
    status = main(["export", str(workdir / "runs" / "default"), "--base-dir", str(tmp_path),
                   "--iwae-samples", "7", "--max-request-elements", "700"])  # fmt: skip
    assert status == 0
    meta = json.loads((tmp_path / "default" / "2" / "assets.extra" / METADATA_FILE).read_text())
    assert (meta["iwae_samples"], meta["max_request_elements"]) == (7, 700)


@pytest.mark.slow
def test_rerun_keeps_earlier_results(workdir, capsys):
    from tfvae.cli import main

    before = tree_digest(workdir / "runs" / "default")
    status = main(["run", "--runs-dir", str(workdir / "runs"), "--base-dir",
                   str(workdir / "saved_models"), "--epochs", "1", "--hidden-units", "4",
                   "--batch-size", "2000", "--eval-samples", "1", "--quiet",
                   "--dataset", "default"])  # fmt: skip
    assert status == 0
    assert tree_digest(workdir / "runs" / "default") == before
    assert (workdir / "runs" / "default-2" / "model" / "manifest.json").is_file()
    assert "runs/default-2" in capsys.readouterr().err
    # Its own model name: a short test run never becomes the version Serving serves.
    assert os.listdir(workdir / "saved_models" / "default") == ["1"]
    assert (workdir / "saved_models" / "default-2" / "1" / "saved_model.pb").is_file()


# ------------------------------------------------------------------ bad input
@pytest.mark.slow
def test_incompatible_checkpoint_from_subprocess(workdir, tmp_path):
    import shutil

    from tfvae.model.saving import sha256_file

    model = tmp_path / "run" / "model"
    shutil.copytree(workdir / "runs" / "default" / "model", model)
    config = json.loads((model / "config.json").read_text())
    config["latent_dim"] = 3  # weights were trained for J = 2
    (model / "config.json").write_text(json.dumps(config))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["sha256"]["config.json"] = sha256_file(str(model / "config.json"))
    (model / "manifest.json").write_text(json.dumps(manifest))
    before = tree_digest(tmp_path)
    result = tfvae("sample", str(tmp_path / "run"))
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert "does not fit the config" in line and "latent_dim=3" in line
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["train", "--decoder", "poisson"], "invalid choice: 'poisson'"),
        (["train", "--epochs", "-3"], "--epochs: must be an integer >= 0, got -3"),
        (["train", "--latent-dim", "0"], "--latent-dim: must be an integer >= 1, got 0"),
        (["train", "--learning-rate", "nan"], "--learning-rate: must be a finite number > 0"),
        (["train", "--dataset", "missing.npy"], "file not found: 'missing.npy'"),
        (["evaluate", "no/such/run"], "RUN 'no/such/run' not found"),
        (["sample", "no/such/run"], "RUN 'no/such/run' not found"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_one_line_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    from tfvae.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        status = main(argv)
    except SystemExit as e:  # argparse errors exit from inside parse_args
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert expected in one_line_error(err)
    assert os.listdir(tmp_path) == []  # nothing written


def test_unreadable_array_and_existing_out_are_refused(capsys, tmp_path, monkeypatch):
    from tfvae.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    assert main(["train", "--dataset", "bad.npy", "--out", "out"]) == 2
    assert "cannot read array file 'bad.npy'" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()

    np.save(tmp_path / "flat.npy", np.full((20, 6), 0.5, np.float32))  # image shape (1, 6, 1)
    assert main(["train", "--dataset", "flat.npy", "--architecture", "conv", "--out", "o"]) == 2
    assert "image_shape" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()

    pixels = np.random.default_rng(0).integers(0, 256, (20, 6)).astype(np.uint8)
    pixels[0, :2] = (0, 255)
    np.save(tmp_path / "pixels.npy", pixels)  # 8-bit values, not [0, 1]
    assert main(["train", "--dataset", "pixels.npy", "--out", "p"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "values in [0, 255]" in line and "divide by 255" in line
    assert not (tmp_path / "p").exists()

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier results")
    assert main(["train", "--out", "out", "--epochs", "1"]) == 2
    assert "already exists" in one_line_error(capsys.readouterr().err)
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


def test_every_subcommand_has_help_describing_it(capsys):
    """`tfvae --help` lists each command with the first line of the docstring of the function
    it runs; `tfvae COMMAND --help` shows the rest of that docstring."""
    import inspect

    from tfvae.cli import app as cli
    from tfvae.cli import commands as functions

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    commands = {"run", "train", "evaluate", "export", "sample", "reconstruct", "latent"}
    for command in sorted(commands):
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--help"])
        assert e.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"usage: tfvae {command}" in out
        summary, _, description = inspect.getdoc(getattr(functions, command)).partition("\n\n")
        assert f"{command} {summary.rstrip('.')}" in top
        assert " ".join(description.split())[:60] in out


@pytest.mark.parametrize(
    "name, home",
    [
        ("EXIT_USAGE", "tfvae.cli.parser.EXIT_USAGE"),
        ("EXIT_FAILED", "tfvae.cli.parser.EXIT_FAILED"),
        ("draw_samples", "tfvae.plots.draw_samples"),
        ("draw_reconstructions", "tfvae.plots.draw_reconstructions"),
        ("draw_latent", "tfvae.plots.draw_latent"),
    ],
)
def test_the_old_cli_modules_names_fail_in_one_line_naming_their_new_home(name, home):
    import importlib

    import tfvae.cli

    line = f"tfvae.cli.{name} moved to {home}"
    with pytest.raises(ImportError, match=f"^{line}$"):
        exec(f"from tfvae.cli import {name}")
    with pytest.raises(ImportError, match=f"^{line}$"):
        getattr(tfvae.cli, name)
    module, _, attribute = home.rpartition(".")
    assert hasattr(importlib.import_module(module), attribute)  # it does live there
    with pytest.raises(AttributeError):
        tfvae.cli._private  # noqa: B018
    from tfvae.cli import quiet  # a submodule still imports

    assert quiet.__name__ == "tfvae.cli.quiet"


@pytest.mark.slow
def test_train_resume_continues_an_interrupted_run(workdir, tmp_path):
    """A run whose process died after its checkpoints (no model/ yet) continues with --resume."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(workdir / "runs" / "default", out)
    shutil.rmtree(out / "model")  # as if killed after epoch 2, before the final save
    result = tfvae("train", *TINY[:1], "3", *TINY[2:], "--out", str(out), "--resume")
    assert result.returncode == 0, result.stderr
    history = json.load(open(out / "metrics.json"))["history"]
    assert len(history["loss"]) == 3  # epochs 1-2 restored, epoch 3 trained
    original = json.load(open(workdir / "runs" / "default" / "metrics.json"))["history"]
    assert history["loss"][:2] == pytest.approx(original["loss"][:2])
    again = tfvae("train", *TINY, "--out", str(out), "--resume")
    assert again.returncode == 2 and "finished run" in again.stderr
    assert "Traceback" not in again.stderr


def test_dynamic_binarization_trains_on_grey_levels_with_a_bernoulli_decoder(
    tmp_path, monkeypatch, capsys
):
    """--dynamic-binarization loads grey levels (redrawn as pixels each epoch), not a static
    binarization on which the redraw would change nothing; the decoder stays Bernoulli, and
    one epoch trains on them."""
    from tfvae.cli import app as cli
    from tfvae.data import datasets as data

    loaded = {}
    load_dataset = data.load_dataset

    def recording(name, path=None, binarization="static", seed=0, **options):
        loaded["data"] = load_dataset(name, path, binarization=binarization, seed=seed, **options)
        return loaded["data"]

    monkeypatch.setattr(data, "load_dataset", recording)
    out = tmp_path / "dyn"
    argv = ["train", "--dataset", "default", "--dynamic-binarization", "--epochs", "1"]
    assert cli.main([*argv, "--hidden-units", "8", "--eval-samples", "2", "--out", str(out)]) == 0
    x = loaded["data"].x_train
    assert not np.isin(x, (0.0, 1.0)).all()  # grey levels reach the training pipeline
    recorded = json.loads((out / "run.json").read_text())
    assert recorded["model_config"]["decoder"] == "bernoulli"
    assert recorded["train_config"]["dynamic_binarization"] is True
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])


def test_run_data_is_read_from_run_json_or_an_older_runs_dataset_json(tmp_path):
    from tfvae import TrainConfig, VAEConfig
    from tfvae.training.rundir import RunDirError
    from tfvae.training.rundir import dataset_source as _dataset_source

    (tmp_path / "dataset.json").write_text(json.dumps({"dataset": "old.npy", "seed": 1}))
    assert _dataset_source(str(tmp_path)) == {"dataset": "old.npy", "seed": 1}
    source = {"dataset": "mnist", "data_dir": None, "seed": 0}
    configs = {"model_config": VAEConfig().to_dict(), "train_config": TrainConfig().to_dict()}
    dataset = {"source": source, "train_shape": [60000, 784], "sha256": "0" * 64}
    (tmp_path / "run.json").write_text(json.dumps({**configs, "dataset": dataset}))
    assert _dataset_source(str(tmp_path)) == source
    dataset["source"] = ["mnist"]
    (tmp_path / "run.json").write_text(json.dumps({**configs, "dataset": dataset}))
    with pytest.raises(RunDirError, match=r"run\.json' is corrupt: dataset\.source must be an obj"):
        _dataset_source(str(tmp_path))
    assert _dataset_source(str(tmp_path / "empty")) == {}
