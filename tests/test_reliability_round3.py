"""Faults provoked on purpose, third round (issue 34 item 4): messages that were correct but
unclear now say in one sentence what is wrong and what to do.

The export's requests go through `tf.saved_model.load(...).signatures`, the in-process call
whose runtime folds a declared shape (`x [None, D]`) into the graph's checks; the messages
are compared with what the Python API says for the same input.
"""

import json
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import INPUT_DIM, LATENT_DIM, exported

from tfvae import VAE, VAEConfig, export, load_exported, save_model
from tfvae.base import atomic
from tfvae.cli import main
from tfvae.config import MAX_SAMPLES
from tfvae.data.arrayfile import file_kind
from tfvae.data.datasets import load_array
from tfvae.serving.export import refusal
from tfvae.training import rundir
from tfvae.training.checkpointing import CheckpointError, dataset_identity, prepare_run

UNWRITABLE = "/proc"  # a folder that exists, yet takes no new names (not even root's)
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")


@pytest.fixture(scope="module")
def served():
    """(model, export path, the SavedModel loaded by TensorFlow): one tiny export."""
    model, path = exported("bernoulli")
    return model, path, tf.saved_model.load(path)


def _graph_sentence(signature, **inputs) -> str:
    """The sentence the graph refuses a request with (fails if it is answered)."""
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        signature(**{k: tf.constant(v) for k, v in inputs.items()})
    sentence = refusal(e.value.message)
    assert sentence is not None, e.value.message  # an assertion's sentence, not an op's error
    return sentence


def _python_api_message(call, value) -> str:
    with pytest.raises(ValueError) as e:
        call(value)
    return str(e.value)


# ------------------------------------------------------------------ a. x of another rank
@pytest.mark.parametrize(
    "label, shape",
    [("rank 1", (INPUT_DIM,)), ("rank 3", (3, INPUT_DIM, 1)), ("scalar", ())],
)
@pytest.mark.parametrize("name", ["serving_default", "encode", "log_likelihood"])
def test_x_of_another_rank_gets_the_shape_sentence(served, name, label, shape):
    """Before: `indices = 2 is not in [0, 2)` (rank 1), `The second input must be a scalar`
    (rank 3): the declared rank 2 had been folded into the graph's rank check."""
    model, _, loaded = served
    x = np.full(shape, 0.5, np.float32)
    inputs = {"x": x, **({"seed": np.int64(1)} if name == "encode" else {})}
    sentence = _graph_sentence(loaded.signatures[name], **inputs)
    assert sentence == _python_api_message(model.encode, x)
    assert sentence.startswith(f"x must have shape [batch, {INPUT_DIM}] (data), got shape ")


def test_z_of_another_rank_gets_the_shape_sentence(served):
    model, _, loaded = served
    z = np.zeros([LATENT_DIM], np.float32)
    sentence = _graph_sentence(loaded.signatures["decode"], z=z)
    assert sentence == _python_api_message(model.decode, z)


def test_a_good_request_is_still_answered_after_the_refusals(served):
    model, _, loaded = served
    x = np.full((2, INPUT_DIM), 0.5, np.float32)
    out = loaded.signatures["serving_default"](x=tf.constant(x))
    expected = model.decode(model.encode(x).mean()).mean().numpy()
    np.testing.assert_allclose(out["reconstruction"].numpy(), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ b. generate's num_samples
@pytest.mark.parametrize("num_samples", [[[2]], [[2, 2]], np.zeros([0], np.int32)])
def test_num_samples_must_be_one_value(served, num_samples):
    """Before: [[2]] (rank 2) generated 2 examples; an empty tensor failed elsewhere."""
    _, _, loaded = served
    n = np.asarray(num_samples, np.int32)
    sentence = _graph_sentence(loaded.signatures["generate"], num_samples=n, seed=np.int64(1))
    assert sentence == (
        "num_samples must be one value, sent as a scalar, as [1] or repeated once per row, got "
        f"shape {n.shape}; send a single number"
    )


def test_generate_has_the_librarys_cap(served):
    """Before: the export generated 100,001 examples, which `VAE.generate` refuses."""
    model, path, loaded = served
    with pytest.raises(ValueError, match=f"must be at most {MAX_SAMPLES} "):
        model.generate(MAX_SAMPLES + 1)
    sentence = _graph_sentence(
        loaded.signatures["generate"], num_samples=np.int32(MAX_SAMPLES + 1), seed=np.int64(1)
    )
    assert sentence == (
        f"num_samples must be at most {MAX_SAMPLES} (the limit of generate, "
        f"tfvae.config.MAX_SAMPLES), got {MAX_SAMPLES + 1}; ask for the rest in further requests"
    )
    with pytest.raises(ValueError, match=f"^num_samples must be at most {MAX_SAMPLES} "):
        load_exported(path)["generate"](num_samples=MAX_SAMPLES + 1, seed=1)
    # the cap itself, a scalar, [1] and one value per row (REST rows) are answered
    out = loaded.signatures["generate"](
        num_samples=tf.constant(MAX_SAMPLES), seed=tf.constant(1, tf.int64)
    )
    assert out["sample"].shape == (MAX_SAMPLES, INPUT_DIM)
    for n in ([3], [3, 3]):
        out = loaded.signatures["generate"](
            num_samples=tf.constant(n), seed=tf.constant([1] * len(n), tf.int64)
        )
        assert out["z"].shape == (3, LATENT_DIM)


# ------------------------------------------------------------------ c. a one-row array
def test_a_one_row_array_says_how_many_rows_a_split_needs(tmp_path):
    """Before: `data.x_train is empty: got 0 examples` (the row went to the test split)."""
    path = str(tmp_path / "one.npy")
    np.save(path, np.full((1, 4), 0.5, np.float32))
    with pytest.raises(ValueError) as e:
        load_array(path)
    assert str(e.value) == (
        f"{path!r} holds 1 example, too few to split: the test split takes 0.1 of the rows (at "
        "least one) and training needs at least one, so give at least 2 rows, or an .npz with "
        "'train' and 'test' arrays"
    )
    np.save(path, np.full((2, 4), 0.5, np.float32))
    data = load_array(path)  # the least that splits: one row each
    assert (len(data.x_train), len(data.x_test)) == (1, 1)
    np.save(path, np.full((3, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match="holds 3 examples, .* give at least 5 rows"):
        load_array(path, test_fraction=0.9)  # the test split takes round(3 x 0.9) = 3 rows
    np.save(path, np.full((5, 4), 0.5, np.float32))
    assert len(load_array(path, test_fraction=0.9).x_train) == 1  # round(4.5) = 4 for test
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\), got 1.0"):
        load_array(path, test_fraction=1.0)


def test_the_cli_says_it_for_a_one_row_file(tmp_path, capsys):
    path = str(tmp_path / "one.npy")
    np.save(path, np.full((1, 4), 0.5, np.float32))
    assert main(["train", "--dataset", path, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "too few to split" in err and "at least 2 rows" in err and "is empty" not in err


# ------------------------------------------------------------------ d. an empty --out
@pytest.mark.parametrize(
    "argv, give",
    [
        (["train", "--out", ""], "give the run directory, e.g. --out runs/mnist"),
        (["sample", "RUN", "--out", ""], "give a .png file, or leave --out out for RUN/pictures"),
    ],
)
def test_an_empty_out_is_named_as_such(argv, give, capsys):
    """Before (train): `[Errno 2] No such file or directory: ''`; (sample): the default."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tfvae {argv[0]}: error: argument --out: the path is empty; {give}")
    assert len(err.splitlines()) == 1


# ------------------------------------------------------------------ e. the user's path
@needs_proc
@pytest.mark.parametrize(
    "write, path, what",
    [
        (lambda p: atomic.write_text(p, "x"), "s.json", "file"),
        (lambda p: atomic.write_with(p, lambda tmp: open(tmp, "w").close()), "s.png", "file"),
        (lambda p: atomic.staged_dir(p).__enter__(), "model", "directory"),
    ],
)
def test_an_atomic_write_names_the_users_path_not_its_temporary(write, path, what):
    """Before: `[Errno 2] No such file or directory: '/proc/.s.png.tmp-...'`."""
    target = os.path.join(UNWRITABLE, path)
    with pytest.raises(FileNotFoundError) as e:
        write(target)
    assert str(e.value) == (
        f"cannot write the {what} {target!r}: its folder {UNWRITABLE!r} exists but takes no new "
        "files (No such file or directory); choose a path in a folder you can write to"
    )
    assert e.value.errno == 2 and ".tmp-" not in str(e.value)


@needs_proc
def test_an_atomic_write_in_a_folder_it_cannot_make_names_both(tmp_path):
    target = os.path.join(UNWRITABLE, "new", "s.json")
    with pytest.raises(
        FileNotFoundError, match=r"its folder '/proc/new' cannot be created in '/proc'"
    ):
        atomic.write_text(target, "x")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(IsADirectoryError) as e:
        atomic.write_text(tmp_path / "dir.json", "x")
    assert str(e.value).endswith("dir.json': Is a directory; choose another path")


@needs_proc
def test_tfvae_sample_names_the_out_it_was_given(tmp_path, capsys):
    model = VAE(VAEConfig(input_dim=4, latent_dim=2, hidden_units=(3,)))
    run = save_model(model, str(tmp_path / "model"))
    out = os.path.join(UNWRITABLE, "s.png")
    assert main(["sample", run, "--out", out, "--num", "1", "--draws", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"tfvae sample: error: cannot write the file {out!r}: its folder {UNWRITABLE!r} exists "
        "but takes no new files (No such file or directory); choose a path in a folder you can "
        "write to"
    )


# ------------------------------------------------------------------ f. export's base_dir
@needs_proc
def test_export_says_why_base_dir_cannot_be_created(served, tmp_path):
    """Before: `PermissionError: cannot create base_dir '/proc/x': No such file or directory`."""
    model = served[0]
    base = os.path.join(UNWRITABLE, "x")
    with pytest.raises(PermissionError) as e:
        export(model, base)
    assert str(e.value) == (
        f"cannot create base_dir {base!r}: {UNWRITABLE!r} exists but takes no new folders (No "
        "such file or directory); choose a base_dir in a folder you can write to"
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match=rf"{blocker}' is a file, not a folder"):
        export(model, blocker / "vae" / "deeper")


# ------------------------------------------------------------------ g. resume on other data
def test_other_data_is_named_before_the_config_it_changes(tmp_path):
    """Data of another width changes input_dim and image_shape too: the refusal names the data
    (it used to list model_config.image_shape and input_dim as if the config were wrong)."""
    x = np.zeros((10, 4), np.float32)
    saved = dataset_identity(x, {"dataset": "a.npy"})
    prepare_run(
        str(tmp_path), VAEConfig(input_dim=4, image_shape=(2, 2, 1)), _train(), dataset=saved
    )
    other = dataset_identity(np.zeros((10, 9), np.float32), {"dataset": "c.npy"})
    config = VAEConfig(input_dim=9, image_shape=(3, 3, 1))
    with pytest.raises(CheckpointError) as e:
        prepare_run(str(tmp_path), config, _train(), dataset=other)
    message = str(e.value)
    assert message.startswith(
        f"cannot resume in {str(tmp_path)!r}: it was trained on other data than the data given "
        "now (saved 'a.npy' of shape [10, 4], sha256 "
    )
    assert "now 'c.npy' of shape [10, 9]" in message and "model_config" not in message


def test_other_data_problem_is_none_for_the_same_data_or_an_old_record():
    x = np.ones((3, 2), np.float32)
    saved = dataset_identity(x, {"dataset": "a.npy", "data_dir": "/data"})
    assert rundir.other_data_problem("RUN", saved, dataset_identity(x, {"dataset": "b"})) is None
    assert rundir.other_data_problem("RUN", None, saved) is None  # recorded before datasets
    problem = rundir.other_data_problem("RUN", saved, dataset_identity(x + 1))
    assert "saved 'a.npy' in '/data' of shape [3, 2]" in problem and "now data of shape" in problem


def test_the_cli_names_the_data_on_resume(tmp_path, capsys):
    """Before: `image shape (2, 2, 1) does not fit c.npy` (the run's recorded image shape,
    blamed on the new data), or, with --image-shape, the differing config fields."""
    a, c = str(tmp_path / "a.npy"), str(tmp_path / "c.npy")
    np.save(a, (np.random.default_rng(0).random((12, 4)) > 0.5).astype(np.float32))
    np.save(c, (np.random.default_rng(1).random((12, 9)) > 0.5).astype(np.float32))
    run = str(tmp_path / "run")
    tiny = ["--hidden-units", "3", "--latent-dim", "2", "--quiet", "--batch-size", "4"]
    assert main(["train", "--dataset", a, "--out", run, "--epochs", "1", *tiny]) == 0
    os.remove(os.path.join(run, rundir.METRICS_FILE))  # as if killed before its metrics
    capsys.readouterr()
    for extra in ([], ["--image-shape", "3,3"]):
        assert main(["train", "--dataset", c, "--out", run, "--resume", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(
            f"tfvae train: error: cannot resume in {run!r}: it was trained on other data"
        ), err
    recorded = json.loads(open(os.path.join(run, rundir.RUN_FILE)).read())["dataset"]
    assert recorded["source"]["dataset"] == a  # the run still records its own data


def _train():
    from tfvae import TrainConfig

    return TrainConfig()


# ------------------------------------------------------------------ h. an empty archive
def test_an_empty_zip_or_file_is_called_empty(tmp_path):
    """Before: `not a .npy file nor an .npz archive (it starts with b'PK\\x05\\x06...')`."""
    archive, blank = str(tmp_path / "empty.npz"), str(tmp_path / "blank.npy")
    zipfile.ZipFile(archive, "w").close()
    open(blank, "wb").close()
    for path, what in (
        (archive, "an empty zip archive (no arrays in it)"),
        (blank, "an empty file (0 bytes)"),
    ):
        with pytest.raises(ValueError) as e:
            file_kind(path)
        assert str(e.value) == (
            f"cannot read array file {path!r}: it is {what}; write the data with np.save(path, x) "
            "or np.savez(path, train=x_train, test=x_test)"
        )
        with pytest.raises(ValueError, match="it is an empty"):
            load_array(path)


# ------------------------------------------------------------------ the table
def test_the_fault_table_and_the_readme_count_the_same_faults_and_tests():
    """docs/reliability.md's table of provoked faults: its total row and the README's sentence
    are the sums of its rows; each file it cites holds at least the tests it counts there."""
    import re

    from helpers import REPO

    doc = open(os.path.join(REPO, "docs", "reliability.md")).read()
    table = doc[doc.index("| fault provoked |") :].split("\n\n")[0].splitlines()[2:]
    rows, total = table[:-1], table[-1]
    per_file = {}
    for row in rows:
        cited = re.findall(r"`(test_\w+\.py)` (\d+)", row.split("|")[-2])
        assert cited, row
        for name, count in cited:
            per_file[name] = per_file.get(name, 0) + int(count)
    tests = sum(per_file.values())
    assert total == f"| **total** | **{len(rows)} faults** | **{tests} tests** |"
    readme = open(os.path.join(REPO, "README.md")).read()
    assert f"{len(rows)} faults the tests provoke on purpose, with the {tests} tests" in readme
    for name, count in per_file.items():
        source = open(os.path.join(REPO, "tests", name)).read()
        assert len(re.findall(r"^def test_", source, re.M)) >= count, name
