"""Every notebook under notebooks/ runs top to bottom (small settings) and is committed clean.

Executed with nbclient in a fresh kernel (`python3`), `TFVAE_SMALL=1` (a few epochs),
PYTHONPATH at this checkout and a temporary working directory.
"""

import ast
import json
import math
import os
import re
import subprocess
import sys

import pytest
from helpers import REPO

NOTEBOOKS = os.path.join(REPO, "notebooks")
ALL = sorted(n for n in os.listdir(NOTEBOOKS) if n.endswith(".ipynb"))


def test_the_four_notebooks_exist():
    assert ALL == [
        "decoder_is_a_distribution.ipynb",
        "frey_face_gaussian_decoder.ipynb",
        "quickstart.ipynb",
        "serving.ipynb",
    ]


@pytest.mark.parametrize("name", ALL)
def test_committed_notebooks_carry_no_outputs(name):
    with open(os.path.join(NOTEBOOKS, name), encoding="utf-8") as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebooks_match_their_generator(tmp_path):
    """notebooks/*.ipynb are what scripts/make_notebooks.py writes (no hand edits lost)."""
    script = os.path.join(REPO, "scripts", "make_notebooks.py")
    subprocess.run([sys.executable, script, str(tmp_path)], check=True, capture_output=True)
    for name in ALL:
        with open(os.path.join(NOTEBOOKS, name), encoding="utf-8") as a:
            assert a.read() == (tmp_path / name).read_text(encoding="utf-8"), name


def execute(name, tmp_path, **extra_env):
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no python3 Jupyter kernel: run `python -m ipykernel install --user`")
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    env = {
        "TFVAE_SMALL": "1",
        "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **extra_env,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


# nbclient raises on a cell's error, so a notebook that returns ran clean: the tests below
# check what its cells print and draw against what the notebook says.
def _stdout(nb):
    """Everything the code cells printed to stdout, in order."""
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.get("name") == "stdout"
    )


def _images(nb):
    return [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def _numbers(pattern, text):
    """The floats of `pattern`'s groups in `text` (exactly one match)."""
    (match,) = re.findall(pattern, text)
    return [float(v) for v in (match if isinstance(match, tuple) else (match,))]


@pytest.mark.slow
def test_decoder_notebook_runs(tmp_path):
    nb = execute("decoder_is_a_distribution.ipynb", tmp_path)
    text = _stdout(nb)
    assert "same parameters: True" in text
    assert "mean == sigmoid(logits): True" in text
    assert "log p(x|z) == -BCE:      True" in text
    assert "const: True" in text
    assert "x_log_var  <- decoder_hidden_0" in text
    assert len(_images(nb)) >= 3


def _assert_bounds_ordered(elbo, log_px):
    """The importance-weighted log p(x) is the tighter bound: at least the ELBO, up to the
    one-draw noise of the ELBO's estimate (the tolerance the quickstart asserts itself)."""
    assert math.isfinite(elbo) and math.isfinite(log_px)
    assert log_px > elbo - 1.0, (elbo, log_px)


@pytest.mark.slow
def test_frey_face_notebook_runs(tmp_path, data_dir):
    nb = execute("frey_face_gaussian_decoder.ipynb", tmp_path, TFVAE_DATA_DIR=data_dir)
    text = _stdout(nb)
    # "1965 grey faces of 28x20 pixels", continuous in (0, 1)
    n_train, n_test, low, high = _numbers(
        r"\((\d+), 560\) \((\d+), 560\) pixels in (\S+) (\S+)", text
    )
    assert n_train + n_test == 1965 and 0 < low < high < 1
    _assert_bounds_ordered(*_numbers(r"test ELBO (\S+), log p\(x\) >= (\S+) nats/face", text))
    # "the log-variances stay inside the soft bounds" (min_log_var -8, max_log_var 8)
    low, mean, high, lo_bound, hi_bound = _numbers(
        r"log-variance: min (\S+), mean (\S+), max (\S+) \(bounds (\S+), (\S+)\)", text
    )
    assert (lo_bound, hi_bound) == (-8.0, 8.0) and lo_bound < low <= mean <= high < hi_bound
    assert len(_images(nb)) == 4  # curves, reconstructions, manifold, mean/stddev/sample


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
    from tfvae.serving.export import SIGNATURES

    nb = execute("quickstart.ipynb", tmp_path)
    text = _stdout(nb)
    assert "epochs: 3\n" in text  # TFVAE_SMALL reached the kernel
    (elbo,) = _numbers(r"test ELBO +(\S+) nats/example", text)
    log_px, k, bits = _numbers(
        r"test log p\(x\) >= +(\S+) nats/example \(K = (\d+)\), (\S+) bits/dim", text
    )
    _assert_bounds_ordered(elbo, log_px)
    assert k == 20  # eval_samples under TFVAE_SMALL
    # bits/dim = -log p(x) / (D log 2), D = 64 pixels: printed to 4 and 3 decimals
    assert abs(bits - (-log_px) / (64 * math.log(2))) < 1e-4
    # the export: TF Serving's layout <base>/<name>/<version>, its signatures and outputs
    ((listing,),) = [re.findall(r"^\S+/saved_models/digits/1 (\[.*\])$", text, re.M)]
    ((signatures, keys),) = re.findall(r"^(\[.*\])\ndict_keys\((\[.*\])\)$", text, re.M)
    assert {"saved_model.pb", "variables"} <= set(ast.literal_eval(listing))
    assert ast.literal_eval(signatures) == sorted(SIGNATURES)
    assert set(ast.literal_eval(keys)) == {"reconstruction", "z_mean", "z_stddev", "probs"}
    assert len(_images(nb)) == 3  # curves, prior samples, latent scatter


@pytest.mark.slow
def test_serving_notebook_runs(tmp_path):
    from tfvae.serving.export import SIGNATURES

    nb = execute("serving.ipynb", tmp_path)
    text = _stdout(nb)
    listed = re.findall(r"^(\w+)\n  inputs  (\{.*\})\n  outputs (\{.*\})$", text, re.M)
    assert sorted(name for name, _, _ in listed) == sorted(SIGNATURES)
    assert "POST http://localhost:8501/v1/models/digits:predict" in text
    # the REST reply of 3 instances: one row per example, the decoder's 64 pixels
    (shapes,) = re.findall(r"^(\{'\w+': \(\d+, \d+\).*\})$", text, re.M)
    assert ast.literal_eval(shapes) == {
        "z_mean": (3, 2),
        "z_stddev": (3, 2),
        "probs": (3, 64),
        "reconstruction": (3, 64),
    }
    # "The served encoder gives the same E[q(z|x)] as the library's own"
    (matches,) = re.findall(r"equal to E\[q\(z\|x\)\] from the library: (\[.*\])", text)
    assert ast.literal_eval(matches) == ["z_mean"]
