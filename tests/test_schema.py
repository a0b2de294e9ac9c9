"""Every JSON file tfvae reads back is checked against its schema: a document of the wrong type,
a missing key or an out-of-range number is refused in one line naming the file, the key and
what was expected (before, some gave tracebacks and some were believed)."""

import json
import os
import re

import pytest

from tfvae import VAE, TrainConfig, VAEConfig, load_model, save_model
from tfvae.base import schema
from tfvae.cli import app as cli
from tfvae.training import checkpointing, rundir
from tfvae.training.checkpointing import CheckpointError

TINY = VAEConfig(input_dim=16, latent_dim=2, hidden_units=(8,))


def write(path, document):
    path.write_text(json.dumps(document))
    return path


def run_record(**changes):
    """A complete run.json as train_and_evaluate writes it."""
    record = {
        "model_config": TINY.to_dict(),
        "train_config": TrainConfig().to_dict(),
        "dataset": {
            "source": {"dataset": "default", "data_dir": None, "seed": 0},
            "train_shape": [1438, 16],
            "sha256": "ab" * 32,
        },
    }
    record.update(changes)
    return record


# ------------------------------------------------------------------------ run.json
@pytest.mark.parametrize(
    "document, message",
    [
        (
            [1, 2],
            r"the document must be an object with 'model_config', 'train_config' "
            r"\(optional: 'dataset'\), got \[1",
        ),
        (run_record(model_config=None), r"model_config is not a valid VAEConfig"),
        (
            run_record(train_config={"epochs": 1000000000}),
            r"train_config is not a valid TrainConfig \(TrainConfig.epochs: must be at most",
        ),
        (run_record(dataset={"train_shape": [5, 16], "sha256": ["a"]}), r"dataset.sha256 must"),
        (
            run_record(dataset={"train_shape": "5x16", "sha256": "ab" * 32}),
            r"dataset.train_shape must be a list of at most 8 items, each an integer >= 0",
        ),
    ],
)
def test_a_wrong_run_json_is_refused_naming_the_key(tmp_path, document, message):
    write(tmp_path / "run.json", document)
    with pytest.raises(CheckpointError, match=r"run file '.*run\.json' is corrupt: " + message):
        checkpointing.prepare_run(str(tmp_path), TINY, TrainConfig())
    with pytest.raises(rundir.RunDirError, match=r"run\.json' is corrupt: " + message):
        rundir.dataset_source(str(tmp_path))
    # `tfvae train --resume` too, saying how to start again.
    with pytest.raises(rundir.RunDirError, match=r"run\.json' is corrupt: .*--overwrite"):
        rundir.recorded_run(str(tmp_path))


def test_a_good_run_json_and_an_older_runs_dataset_json_are_read(tmp_path):
    write(tmp_path / "run.json", run_record())
    assert rundir.dataset_source(str(tmp_path))["dataset"] == "default"
    checkpointing.prepare_run(str(tmp_path), TINY, TrainConfig(epochs=20))  # epochs may grow
    old = tmp_path / "old"
    old.mkdir()
    write(old / "dataset.json", {"dataset": "x.npy", "data_dir": None, "seed": 3})
    assert rundir.dataset_source(str(old)) == {"dataset": "x.npy", "data_dir": None, "seed": 3}


@pytest.mark.parametrize(
    "document, message",
    [
        (
            ["x.npy"],
            r"the document must be an object \(optional: 'dataset', 'data_dir', 'seed'\), got \['x",
        ),
        ({"dataset": 3}, r"dataset must be a string or null, got 3"),
        ({"dataset": "x.npy", "seed": "1"}, r"seed must be an integer in \[0, 536870911\]"),
        ({"dataset": "x.npy", "seed": 10**30}, r"seed must be an integer in \[0, 536870911\]"),
    ],
)
def test_a_wrong_dataset_json_is_refused(tmp_path, document, message):
    write(tmp_path / "dataset.json", document)
    with pytest.raises(rundir.RunDirError, match=r"dataset file '.*dataset\.json' is corrupt: "):
        rundir.dataset_source(str(tmp_path))
    with pytest.raises(rundir.RunDirError, match=message):
        rundir.dataset_source(str(tmp_path))


# ------------------------------------------------------------------------ state.json
@pytest.fixture
def checkpoint(checkpoint_callback, tmp_path):
    """(directory of epoch 2's checkpoint, a model it fits), written by TrainingCheckpoint."""
    callback, model = checkpoint_callback
    callback.on_epoch_end(0, {"loss": 3.0})
    callback.on_epoch_end(1, {"loss": 2.0})
    return tmp_path / "epoch-000002", model


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epoch": 1000000}, r"epoch must be 2 \(its directory's epoch\), got 1000000"),
        ({"epoch": "2"}, r"epoch must be 2 \(its directory's epoch\), got '2'"),
        (
            {"history": [3.0, 2.0]},
            r"history must be an object, each value a list of at most 2 items, each a finite",
        ),
        (
            {"history": {"loss": [3.0, 2.0, 1.0]}},
            r"history.loss must be a list of at most 2 items, each a finite number, got \[3",
        ),
        ({"history": {"loss": [3.0, None]}}, r"history.loss\[1\] must be a finite number"),
        (
            {"sha256": ["ab"]},
            r"sha256 must be an object, each value a sha256 \(64 hex digits\), got \['ab'\]",
        ),
        ({"sha256": {"../run.json": "ab" * 32}}, r"sha256\['../run.json'\] must be a key"),
        ({"format": "other"}, r"format must be 'tfvae-train-state-v1', got 'other'"),
        ({"format": None, "epoch": None}, r"format must be"),
    ],
)
def test_a_wrong_state_json_is_refused_naming_the_key(checkpoint, change, message):
    path, model = checkpoint
    state = json.loads((path / "state.json").read_text())
    write(path / "state.json", {**state, **change})
    with pytest.raises(CheckpointError, match=r"checkpoint state '.*state\.json' is corrupt: "):
        checkpointing.restore_checkpoint(str(path), model)
    with pytest.raises(CheckpointError, match=message):
        checkpointing.restore_checkpoint(str(path), model)


def test_a_missing_state_key_is_named(checkpoint):
    path, model = checkpoint
    state = json.loads((path / "state.json").read_text())
    del state["history"]
    write(path / "state.json", state)
    with pytest.raises(
        CheckpointError, match=r"history must be present \(an object, each value a list"
    ):
        checkpointing.restore_checkpoint(str(path), model)


def test_a_good_state_json_restores(checkpoint):
    path, model = checkpoint
    assert checkpointing.restore_checkpoint(str(path), model) == (2, {"loss": [3.0, 2.0]})


# ------------------------------------------------------------------------ a saved model
@pytest.mark.parametrize(
    "change, message",
    [
        ({"sha256": ["config.json"]}, r"sha256 must be an object with 'config.json'"),
        ({"sha256": {"config.json": "ab" * 32}}, r"sha256\['encoder.weights.h5'\] must be pres"),
        ({"format": 1}, r"format must be 'tfvae-weights-v1', got 1"),
        ("a string", r"the document must be an object with 'format', 'sha256'"),
    ],
)
def test_a_wrong_manifest_is_refused_naming_the_key(tmp_path, change, message, capsys):
    path = save_model(VAE(TINY), tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    changed = {**manifest, **change} if isinstance(change, dict) else change
    write(tmp_path / "m" / "manifest.json", changed)
    with pytest.raises(ValueError, match=r"saved model manifest '.*manifest\.json' is corrupt: "):
        load_model(path)
    with pytest.raises(ValueError, match=message):
        load_model(path)
    assert cli.main(["sample", path, "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "manifest.json' is corrupt" in err, err
    assert not os.path.exists(tmp_path / "s.png")


@pytest.mark.parametrize(
    "document, message",
    [
        ([1], r"a VAEConfig must be a JSON object, got list"),
        ({"latent_dim": 1000000000}, r"VAEConfig.latent_dim: must be at most 10000"),
        ({"hidden_units": "500"}, r"VAEConfig.hidden_units: must be a list or tuple of integers"),
    ],
)
def test_a_wrong_config_json_is_refused(tmp_path, document, message):
    write(tmp_path / "config.json", document)
    with pytest.raises(ValueError, match=r"config\.json': " + message):
        VAEConfig.load(tmp_path / "config.json")


# ------------------------------------------------------------------------ the checker
def test_schema_messages_name_nested_keys_and_stay_short():
    spec = schema.obj({"a": schema.list_of(schema.mapping(schema.integer(0, 9)))})
    with pytest.raises(ValueError) as e:
        schema.check({"a": [{"x": 1}, {"y z": 12}]}, spec, "f.json", "test file")
    assert str(e.value) == (
        "test file 'f.json' is corrupt: a[1]['y z'] must be an integer in [0, 9], got 12"
    )
    with pytest.raises(ValueError, match=r"got 'xxxxx.*\.\.\.$"):
        schema.check("x" * 500, schema.integer(), "f.json", "test file")
    assert schema.check({"a": []}, spec, "f.json", "test file") == {"a": []}
    assert schema.integer(0).problem(True) is not None  # a bool is not an integer
    assert schema.number().problem(float("nan")) is not None


# ------------------------------------------------------------------------ metrics.json
@pytest.mark.parametrize(
    "document, message",
    [
        ({"history": {}}, r"test must be present"),
        ({"test": {"elbo": "-90"}}, r"test\.elbo must be a number, got '-90'"),
    ],
)
def test_resuming_a_finished_run_with_a_wrong_metrics_json_names_it(
    tmp_path, capsys, document, message
):
    run = tmp_path / "run"
    save_model(VAE(TINY), str(run / "model"))
    write(run / "run.json", run_record(train_config=TrainConfig(epochs=3).to_dict()))
    (run / "pictures").mkdir()
    (run / "pictures" / "curves.png").write_bytes(b"")
    write(run / "metrics.json", document)
    assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(r"metrics file '.*metrics\.json' is corrupt: " + message, err), err
    write(run / "metrics.json", {"test": {"elbo": -90.5, "kl": float("inf")}})
    assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "3"]) == 0
    assert '"elbo": -90.5' in capsys.readouterr().out
