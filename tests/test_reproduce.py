"""bench/reproduce.py: Burda et al.'s schedule, and a stopped run resumes to the same numbers."""

import json
import math

import numpy as np
import pytest

from bench import reproduce


def test_burda_schedule_is_3280_passes_at_decaying_rates():
    ends = reproduce.stage_ends(reproduce.BURDA_STAGES)
    assert ends == [1, 4, 13, 40, 121, 364, 1093, 3280]
    rates = [lr for _, lr in reproduce.BURDA_STAGES]
    np.testing.assert_allclose(rates, [1e-3 * 10 ** (-i / 7) for i in range(8)], rtol=1e-12)
    np.testing.assert_allclose(rates[-1], 1e-4, rtol=1e-12)  # 10^(-7/7) = a tenth after 8 stages
    assert [reproduce.stage_of(e, reproduce.BURDA_STAGES) for e in (0, 1, 3, 4, 12, 13, 3279)] == [
        0,
        1,
        1,
        2,
        2,
        3,
        7,
    ]


def test_burda_runs_follow_the_paper():
    run = reproduce.RUNS["iwae_k5"]
    assert run["model"]["hidden_units"] == [200, 200] and run["model"]["latent_dim"] == 50
    assert run["model"]["activation"] == "tanh" and run["batch_size"] == 20
    assert run["optimizer"] == {"name": "adam", "epsilon": 1e-4}
    assert (run["model"]["objective"], run["model"]["num_samples"]) == ("iwae", 5)
    assert "objective" not in reproduce.RUNS["vae_k1"]["model"]  # the library's default ELBO


TINY = {
    "dataset": "digits",
    "model": {"latent_dim": 2, "hidden_units": [16], "activation": "tanh"},
    "optimizer": {"name": "adam", "epsilon": 1e-4},
    "batch_size": 100,
    "stages": [[1, 1e-2], [2, 1e-3]],
}


def _state(workdir):
    with open(workdir / "tiny" / "state.json") as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("output_bias", [False, True])
def test_a_stopped_run_resumes_to_the_same_numbers(tmp_path, monkeypatch, output_bias):
    """A _bias run too: its bias is set once, at the start, not again after a restore."""
    monkeypatch.setitem(
        reproduce.RUNS, "tiny", {**TINY, **({"output_bias": "data"} if output_bias else {})}
    )
    common = ["tiny", "--eval-every", "1", "--final-samples", "20", "--threads", "1"]
    assert reproduce.main([*common, "--workdir", str(tmp_path / "whole")]) == 0
    # A tiny time budget stops after the first block of one epoch; two more calls finish.
    parts = [*common, "--workdir", str(tmp_path / "parts"), "--stop-after-minutes", "1e-9"]
    for _ in range(3):
        assert reproduce.main(parts) == 0
    whole, parts = _state(tmp_path / "whole"), _state(tmp_path / "parts")
    assert parts["epoch"] == whole["epoch"] == 3
    for key in ("loss", "train_elbo"):
        assert [e[key] for e in parts["epochs"]] == [e[key] for e in whole["epochs"]]
    assert [e["iwae_k50"] for e in parts["evals"]] == [e["iwae_k50"] for e in whole["evals"]]
    assert parts["final"][0]["log_likelihood"] == whole["final"][0]["log_likelihood"]
    # Bounds ordered as they must be: ELBO <= the k-sample bound.
    assert all(e["elbo"] <= e["iwae_k50"] for e in whole["evals"])
    assert len(list((tmp_path / "parts" / "tiny").glob("ckpt-*"))) == 1  # older ones removed


def test_a_changed_protocol_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(reproduce.RUNS, "tiny", {**TINY, "stages": [[1, 1e-2]]})
    args = ["tiny", "--workdir", str(tmp_path), "--threads", "1", "--final-samples", "2"]
    assert reproduce.main(args) == 0
    monkeypatch.setitem(reproduce.RUNS, "tiny", {**TINY, "batch_size": 50})
    with pytest.raises(SystemExit, match="recorded protocol differs"):
        reproduce.main(args)


def test_a_run_whose_checkpoint_is_gone_says_so(tmp_path, monkeypatch, capsys):
    """A finished run keeps its state only: rerunning it prints the bound it recorded; an
    unfinished one, or --final, stops with the missing checkpoint's path (not a traceback)."""
    import shutil

    monkeypatch.setitem(reproduce.RUNS, "tiny", {**TINY, "stages": [[1, 1e-2], [1, 1e-3]]})
    args = ["tiny", "--workdir", str(tmp_path), "--threads", "1", "--final-samples", "2"]
    assert reproduce.main([*args, "--stop-after-minutes", "1e-9"]) == 0  # 1 of 2 epochs
    state = _state(tmp_path)
    shutil.rmtree(tmp_path / "tiny" / state["checkpoint"])
    with pytest.raises(SystemExit, match=f"{state['checkpoint']}: the checkpoint .* is missing"):
        reproduce.main(args)
    shutil.rmtree(tmp_path / "tiny")
    assert reproduce.main(args) == 0  # the whole run and its final bound
    state = _state(tmp_path)
    shutil.rmtree(tmp_path / "tiny" / state["checkpoint"])
    capsys.readouterr()
    assert reproduce.main(args) == 0
    recorded = state["final"][-1]["log_likelihood"]
    printed = capsys.readouterr().out
    assert f"finished at epoch 2: test log p(x) >= {recorded:.2f} (k = 2)" in printed
    assert _state(tmp_path) == state  # nothing recomputed or rewritten
    with pytest.raises(SystemExit, match="is missing"):
        reproduce.main([*args, "--final"])


def test_bias_runs_are_their_base_runs_with_the_output_bias_from_data():
    for base in ("vae_k1", "iwae_k5"):
        assert reproduce.RUNS[f"{base}_bias"] == {**reproduce.RUNS[base], "output_bias": "data"}
    assert "output_bias" not in reproduce.RUNS["vae_k1"]  # the paper's text: no such step


def test_a_bias_run_starts_at_the_data_marginal(tmp_path, monkeypatch):
    """Before any training the bound of a decoder started at the training mean is far above
    that of one started at random biases (Bernoulli(~1/2) per pixel: ~64 log 2 nats)."""
    monkeypatch.setitem(reproduce.RUNS, "tiny", TINY)
    monkeypatch.setitem(reproduce.RUNS, "tiny_bias", {**TINY, "output_bias": "data"})
    bounds = {}
    for name in ("tiny", "tiny_bias"):
        args = [
            name,
            "--workdir",
            str(tmp_path),
            "--threads",
            "1",
            "--final",
            "--final-samples",
            "5",
        ]
        assert reproduce.main(args) == 0
        with open(tmp_path / name / "state.json") as f:
            final = json.load(f)["final"][0]
        assert final["epoch"] == 0
        bounds[name] = final["log_likelihood"]
    assert bounds["tiny_bias"] > bounds["tiny"] + 5.0, bounds


def test_the_report_tables_each_run_beside_its_papers_number(tmp_path, capsys):
    """Made-up states: the table's last bounds, the final k = 5000 bound, the paper's figure
    (a _bias run is compared with its base run's), and the curve is written."""
    for name, final in (
        ("vae_k1", [{"epoch": 3280, "log_likelihood": -87.16}]),
        ("vae_k1_bias", []),
    ):
        state = {
            "protocol": {"run": name, **reproduce.RUNS[name], "seed": 0},
            "epoch": 3280 if final else 250,
            "epochs": [],
            "evals": [
                {"epoch": 10, "elbo": -95.0, "iwae_k50": -91.0},
                {"epoch": 20, "elbo": -93.5, "iwae_k50": -89.25},
            ],
            **({"final": final} if final else {}),  # what train() writes: none until the end
        }
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.json").write_text(json.dumps(state))
    png = tmp_path / "curve.png"
    assert reproduce.main(["--report", str(png), "--workdir", str(tmp_path)]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    assert rows["vae_k1"] == "| vae_k1 | 3280/3280 | 93.50 | 89.25 | 87.16 (at 3280) | 86.76 |"
    assert rows["vae_k1_bias"] == "| vae_k1_bias | 250/3280 | 93.50 | 89.25 | nan | 86.76 |"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


COMMITTED = sorted(reproduce.COMMITTED_RUNS.glob("*/state.json"))
# (input size, image shape, training examples) of the datasets the runs use
SHAPES = {"mnist": (784, (28, 28, 1), 60_000), "frey": (560, (28, 20, 1), 1_768)}


def _assert_restores_at_its_recorded_step(state_file, dim, shape, n):
    """The checkpoint that an unfinished run's state names restores into the run's model at
    the step count the state records (the learning-rate schedule and the noise are keyed on
    it); returns the model."""
    state = json.loads(state_file.read_text())
    run = {k: v for k, v in state["protocol"].items() if k not in ("run", "train_sha256", "seed")}
    ckpts = sorted(p.name for p in state_file.parent.glob("ckpt-*"))
    assert ckpts == [state["checkpoint"]] == [f"ckpt-{state['epoch']:05d}"]
    steps = math.ceil(n / run["batch_size"])
    model = reproduce._model(run, dim, shape, steps)
    reproduce._restore(model, str(state_file.parent), state["checkpoint"])
    assert int(model.optimizer.iterations.numpy()) == state["epoch"] * steps
    return model


@pytest.mark.parametrize("state_file", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_a_committed_run_continues_from_its_checkpoint(state_file):
    """The runs committed in bench/results/reproduce (a fresh machine continues them): each
    still matches its protocol; a finished one holds its final bound and no checkpoint (the
    state alone is kept), an unfinished one's checkpoint restores."""
    state = json.loads(state_file.read_text())
    name = state_file.parent.name
    run = reproduce.RUNS[name]
    assert state["protocol"] == {
        "run": name,
        **run,
        "train_sha256": state["protocol"]["train_sha256"],
        "seed": state["protocol"]["seed"],
    }
    assert [e["epoch"] for e in state["epochs"]] == list(range(1, state["epoch"] + 1))
    if state["epoch"] < reproduce.stage_ends(run["stages"])[-1]:
        _assert_restores_at_its_recorded_step(state_file, *SHAPES[run["dataset"]])
        return
    assert [f["epoch"] for f in state["final"]][-1] == state["epoch"], "its final bound"
    assert state["checkpoint"] == f"ckpt-{state['epoch']:05d}"
    assert not (state_file.parent / state["checkpoint"]).exists()


@pytest.mark.slow
def test_a_stopped_runs_checkpoint_restores_the_trained_model(tmp_path, monkeypatch):
    """The restore check above, on a run this test stops itself after 1 of 3 epochs: the
    restored model's test bounds are the ones the run recorded at that epoch."""
    monkeypatch.setitem(reproduce.RUNS, "tiny", TINY)
    args = ["tiny", "--workdir", str(tmp_path), "--threads", "1", "--eval-every", "1"]
    assert reproduce.main([*args, "--stop-after-minutes", "1e-9"]) == 0
    state = _state(tmp_path)
    assert state["epoch"] == 1 and [e["epoch"] for e in state["evals"]] == [1]
    x_train, x_test, shape, _ = reproduce._load(TINY, None)
    model = _assert_restores_at_its_recorded_step(
        tmp_path / "tiny" / "state.json", x_train.shape[1], shape, len(x_train)
    )
    assert reproduce._bounds(model, x_test, reproduce.EVAL_K) == {
        k: v for k, v in state["evals"][0].items() if k != "epoch"
    }


def test_the_record_run_is_burdas_model_and_data_and_names_its_prior_and_posterior():
    """Issue 35's run keeps Burda's networks, data and schedule and changes only what its
    protocol names: the objective's K and estimator, the prior, the posterior, the batch."""
    run = reproduce.RUNS["iwae_k5_dreg_vamp"]
    burda = reproduce.RUNS["iwae_k5_bias"]
    assert run["model"]["prior"] == "vamp" and run["model"]["posterior"] == "diagonal"
    assert run["model"]["prior_components"] == 500
    changed = {"gradient_estimator", "prior", "posterior", "prior_components", "pseudo_inputs"}
    assert {k: v for k, v in run["model"].items() if k not in changed} == burda["model"]
    assert {k: v for k, v in run.items() if k not in ("model", "batch_size")} == {
        k: v for k, v in burda.items() if k not in ("model", "batch_size")
    }
    assert run["batch_size"] == 100 and reproduce.stage_ends(run["stages"])[-1] == 3280
