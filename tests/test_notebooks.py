"""Every notebook under notebooks/ runs top to bottom (small settings) and is committed clean.

Executed with nbclient in a fresh kernel (`python3`), `TFVAE_SMALL=1` (a few epochs),
PYTHONPATH at this checkout and a temporary working directory.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def _errors(nb):
    return [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]


@pytest.mark.slow
def test_decoder_notebook_runs(tmp_path):
    nb = execute("decoder_is_a_distribution.ipynb", tmp_path)
    assert not _errors(nb)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "same parameters: True" in text
    assert "mean == sigmoid(logits): True" in text
    assert "log p(x|z) == -BCE:      True" in text
    assert "const: True" in text
    assert "x_log_var  <- decoder_hidden_0" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3


@pytest.mark.slow
def test_frey_face_notebook_runs(tmp_path, data_dir):
    nb = execute("frey_face_gaussian_decoder.ipynb", tmp_path, TFVAE_DATA_DIR=data_dir)
    assert not _errors(nb)


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
    nb = execute("quickstart.ipynb", tmp_path)
    assert not _errors(nb)


@pytest.mark.slow
def test_serving_notebook_runs(tmp_path):
    nb = execute("serving.ipynb", tmp_path)
    assert not _errors(nb)
