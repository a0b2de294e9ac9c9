"""The export runs with no Python at all: a C program against the TF wheel's C API."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import INPUT_DIM, exported
from helpers import REPO

SOURCE = os.path.join(REPO, "tests", "c", "run_saved_model.c")


@pytest.fixture(scope="module")
def c_runner(tmp_path_factory):
    """Compiles tests/c/run_saved_model.c against the installed TensorFlow wheel."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: cannot build the C API client")
    include, lib = tf.sysconfig.get_include(), tf.sysconfig.get_lib()
    if not os.path.exists(os.path.join(include, "tensorflow", "c", "c_api.h")):
        pytest.skip(f"TF C API header missing under {include}")
    libs = ["libtensorflow_cc.so.2", "libtensorflow_framework.so.2"]
    if not all(os.path.exists(os.path.join(lib, name)) for name in libs):
        pytest.skip(f"TF C API libraries {libs} missing under {lib}")
    binary = str(tmp_path_factory.mktemp("c") / "run_saved_model")
    cmd = [gcc, "-O1", "-o", binary, SOURCE, f"-I{include}", f"-L{lib}"]
    cmd += [f"-l:{name}" for name in libs] + [f"-Wl,-rpath,{lib}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return binary


def _run(binary, path, x, tmp_path):
    from tensorflow.python.tools import saved_model_utils

    sig = saved_model_utils.get_meta_graph_def(path, "serve").signature_def["serving_default"]
    input_op = sig.inputs["x"].name.split(":")[0]
    output_op, index = sig.outputs["reconstruction"].name.split(":")
    np.ascontiguousarray(x, np.float32).tofile(tmp_path / "in.f32")
    args = [binary, path, input_op, output_op, index, *map(str, x.shape)]
    args += [str(tmp_path / "in.f32"), str(tmp_path / "out.f32")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.slow
def test_c_api_runs_serving_default_and_rejects_bad_shape(c_runner, tmp_path):
    model, path = exported("bernoulli")
    x = (np.random.default_rng(4).random((3, INPUT_DIM)) > 0.5).astype(np.float32)
    proc = _run(c_runner, path, x, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"shape: 3 {INPUT_DIM}" in proc.stdout
    got = np.fromfile(tmp_path / "out.f32", np.float32).reshape(3, INPUT_DIM)
    expected = model.decode(model.encode(x).mean()).mean().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    bad = _run(c_runner, path, np.zeros((2, INPUT_DIM + 1), np.float32), tmp_path)
    assert bad.returncode == 2
    assert (
        f"x must have shape [batch, {INPUT_DIM}] (data), got shape (2, {INPUT_DIM + 1})"
        in bad.stderr
    )
