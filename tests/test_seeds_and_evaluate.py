"""Integer seeds and `tfvae evaluate`'s data (issue 34, items 2 and 3).

Every int seed in [0, 2**64) is its own stateless seed (its low and high 32 bits), so seeds
that differ by 2**31 - 1 no longer draw the same numbers; what cannot be one is refused in
one line. The config seed keeps its cap, and says why. `tfvae evaluate` checks the data it
loads against the sha256 run.json recorded, as `--resume` does, unless --other-data.
"""

import hashlib
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

COLLIDED = 5 + 2**31 - 1  # reduced modulo 2**31 - 1, this seed was 5
SEED_RULE = "seed must be an integer >= 0 and < 2**64, or a pair of int32 integers, got "


@pytest.fixture
def model(small_config):
    from tfvae import VAE

    return VAE(small_config)


# ---------------------------------------------------------------- library seeds
@pytest.mark.parametrize(
    "seed, pair",
    [
        (0, [0, 0]),
        (5, [5, 0]),
        (2**31 - 2, [2**31 - 2, 0]),
        (2**31 - 1, [2**31 - 1, 0]),  # was [0, 0], seed 0's
        (COLLIDED, [-(2**31) + 4, 0]),  # low 32 bits 2**31 + 4, read as an int32
        (2**32, [0, 1]),
        (2**32 + 5, [5, 1]),
        (2**63, [0, -(2**31)]),
        (2**64 - 1, [-1, -1]),
        (np.uint64(2**64 - 1), [-1, -1]),
    ],
)
def test_an_int_seed_is_its_low_and_high_32_bits(seed, pair):
    from tfvae.model.seeds import as_seed

    got = as_seed(seed)
    assert got.dtype == tf.int32
    assert got.numpy().tolist() == pair


def test_seeds_that_collided_draw_different_numbers(model, binary_x):
    x = binary_x[:8]
    for a, b in [(5, COLLIDED), (2**63, 2**63 + 1), (7, 7 + 2**32)]:
        assert np.all(model.elbo(x, seed=a).numpy() != model.elbo(x, seed=b).numpy()), (a, b)
        first = model.log_likelihood(x, importance_samples=3, seed=a)
        assert not np.array_equal(first, model.log_likelihood(x, importance_samples=3, seed=b))
        assert not np.array_equal(model.generate(4, seed=a), model.generate(4, seed=b))
        # ... and each is reproducible
        np.testing.assert_array_equal(model.generate(4, seed=b), model.generate(4, seed=b))


def test_small_seeds_give_the_numbers_of_their_seed_pair(model, binary_x):
    """An int below 2**31 draws as the stateless seed (seed, 0): the numbers every seed below
    2**31 - 1 gave before, now 2**31 - 1 too (it drew as seed 0)."""
    x = binary_x[:8]
    for seed in (0, 5, 2**31 - 1):
        pair = tf.constant([seed, 0], tf.int32)
        np.testing.assert_array_equal(model.elbo(x, seed=seed), model.elbo(x, seed=pair))
        np.testing.assert_array_equal(
            model.log_likelihood(x, importance_samples=3, seed=seed),
            model.log_likelihood(x, importance_samples=3, seed=pair),
        )
        np.testing.assert_array_equal(model.generate(3, seed=seed), model.generate(3, seed=pair))
    assert np.all(model.elbo(x, seed=2**31 - 1).numpy() != model.elbo(x, seed=0).numpy())


@pytest.mark.parametrize(
    "seed, error, got",
    [
        (2**64, ValueError, str(2**64)),
        (2**70, ValueError, str(2**70)),
        (-1, ValueError, "-1"),
        (True, TypeError, "True"),
        (1.5, TypeError, "1.5"),
        ([2**40, 0], ValueError, f"the pair [{2**40}, 0]"),
        (np.array([2**31, 0]), ValueError, f"the pair [{2**31}, 0]"),
    ],
)
def test_seeds_that_cannot_be_told_apart_are_refused_in_one_line(model, binary_x, seed, error, got):
    from tfvae.data.validation import check_seed
    from tfvae.model.seeds import as_seed

    calls = [
        lambda: check_seed(seed),
        lambda: as_seed(seed),
        lambda: model.elbo(binary_x[:4], seed=seed),
        lambda: model.log_likelihood(binary_x[:4], importance_samples=2, seed=seed),
        lambda: model.generate(2, seed=seed),
    ]
    for call in calls:
        with pytest.raises(error) as excinfo:
            call()
        message = str(excinfo.value)
        assert "\n" not in message and message.startswith(SEED_RULE + got), message


def test_pairs_of_int32_are_taken_as_they_are(model, binary_x):
    x = binary_x[:4]
    for pair in ([-(2**31), 2**31 - 1], np.array([3, -7], np.int64)):
        want = model.elbo(x, seed=tf.constant(np.asarray(pair), tf.int32))
        np.testing.assert_array_equal(model.elbo(x, seed=pair), want)


# ---------------------------------------------------------------- the config seed's cap
def test_the_config_seed_cap_and_its_help_say_why():
    from tfvae import TrainConfig, VAEConfig
    from tfvae.config import MAX_SEED

    assert 4 * MAX_SEED + 3 == 2**31 - 1  # the model's last stream: the largest int32
    for cls in (VAEConfig, TrainConfig):
        with pytest.raises(ValueError, match=rf"{cls.__name__}.seed: must be at most {MAX_SEED}"):
            cls(seed=MAX_SEED + 1)
        assert cls(seed=MAX_SEED).seed == MAX_SEED
    help = VAEConfig.__dataclass_fields__["seed"].metadata["help"]
    assert help.endswith(
        "4 sampling streams, 4 * seed + 0..3, in TensorFlow's int32 seeds (at most 536870911)"
    )


def test_cli_seed_help_says_why_it_is_capped_and_sample_takes_64_bit_seeds(capsys):
    from tfvae.cli.app import main, parser

    with pytest.raises(SystemExit) as excinfo:
        main(["train", "--seed", str(2**29)])
    assert excinfo.value.code == 2
    assert "--seed: must be at most 536870911" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help = " ".join(capsys.readouterr().out.split())
    assert "4 sampling streams, 4 * seed + 0..3, in TensorFlow's int32 seeds (at most" in help
    # `tfvae sample`'s seed is the draws', the library's: every int below 2**64
    for seed in (2**29, 2**63, 2**64 - 1):
        assert parser().parse_args(["sample", "r", "--seed", str(seed)]).seed == seed
    with pytest.raises(SystemExit):
        parser().parse_args(["sample", "r", "--seed", str(2**64)])
    assert f"--seed: must be at most {2**64 - 1}" in capsys.readouterr().err


# ---------------------------------------------------------------- tfvae evaluate's data
TRAIN = ["--epochs", "1", "--hidden-units", "8", "--latent-dim", "2", "--eval-samples", "2"]
EVALUATE = ["--samples", "2", "--batch-size", "50", "--json"]


def _arrays(seed, n_test):
    rng = np.random.default_rng(seed)
    return {"train": rng.random((40, 16)), "test": rng.random((n_test, 16))}


def _sha256(x):
    return hashlib.sha256(np.ascontiguousarray(x, np.float32)).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained on data.npz (40 train, 10 test examples of 16 values)."""
    from tfvae.cli import main

    root = tmp_path_factory.mktemp("evaluate")
    np.savez(root / "data.npz", **_arrays(0, 10))
    argv = ["train", "--dataset", str(root / "data.npz"), *TRAIN, "--batch-size", "20"]
    assert main([*argv, "--out", str(root / "run"), "--quiet"]) == 0
    return root


def _copy(trained, tmp_path):
    """The trained run and its data, copied; run.json names the copy's data file."""
    shutil.copy(trained / "data.npz", tmp_path / "data.npz")
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    recorded = json.loads((run / "run.json").read_text())
    recorded["dataset"]["source"]["dataset"] = str(tmp_path / "data.npz")
    (run / "run.json").write_text(json.dumps(recorded))
    return run


def _evaluate(capsys, *argv):
    from tfvae.cli import main

    capsys.readouterr()
    status = main(["evaluate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
def test_evaluate_takes_the_runs_own_data(trained, capsys):
    status, out, err = _evaluate(capsys, str(trained / "run"), *EVALUATE)
    assert status == 0, err
    assert json.loads(out)["num_examples"] == 10 and "other data" not in err


@pytest.mark.slow
@pytest.mark.parametrize("how", ["file replaced", "run.json edited"])
def test_evaluate_refuses_other_data_naming_both_hashes(trained, tmp_path, capsys, how):
    run = _copy(trained, tmp_path)
    saved = json.loads((run / "run.json").read_text())["dataset"]["sha256"]
    assert saved == _sha256(_arrays(0, 10)["train"])
    other = _arrays(1, 30)
    if how == "file replaced":
        np.savez(tmp_path / "data.npz", **other)
    else:
        np.savez(tmp_path / "other.npz", **other)
        recorded = json.loads((run / "run.json").read_text())
        recorded["dataset"]["source"]["dataset"] = str(tmp_path / "other.npz")
        (run / "run.json").write_text(json.dumps(recorded))
    now = _sha256(other["train"])

    status, out, err = _evaluate(capsys, str(run), *EVALUATE)
    assert status == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("tfvae evaluate: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"sha256 {saved[:12]}" in lines[0] and f"sha256 {now[:12]}" in lines[0]
    assert "--other-data" in lines[0]

    # --other-data evaluates the data it found, saying which
    status, out, err = _evaluate(capsys, str(run), *EVALUATE, "--other-data")
    assert status == 0, err
    assert json.loads(out)["num_examples"] == 30  # the other file's test split
    note = next(line for line in err.splitlines() if "other data" in line)
    assert f"sha256 {saved[:12]}" in note and f"sha256 {now[:12]}" in note


@pytest.mark.slow
def test_evaluate_loads_a_dynamically_binarized_run_as_it_trained(tmp_path, capsys):
    """Its data is the grey levels it trained on (the sha256 run.json recorded), so evaluate
    neither refuses it nor evaluates a static binarization: it reproduces metrics.json."""
    from tfvae.cli import main

    out = tmp_path / "run"
    argv = ["train", "--dataset", "default", *TRAIN, "--batch-size", "200"]
    assert main([*argv, "--dynamic-binarization", "--out", str(out), "--quiet"]) == 0
    status, printed, err = _evaluate(
        capsys, str(out), "--samples", "2", "--batch-size", "200", "--json"
    )
    assert status == 0, err
    want = json.loads((out / "metrics.json").read_text())["test"]
    got = json.loads(printed)
    for key in ("elbo", "log_likelihood"):
        assert got[key] == pytest.approx(want[key], abs=1e-3), key
