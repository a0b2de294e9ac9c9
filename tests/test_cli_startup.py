"""The `tfvae` command starts without TensorFlow and keeps TF's start-up lines quiet.

`import tfvae` (and tfvae.cli.app, tfvae.training.rundir, tfvae.serving.client's REST
helpers) must not import TensorFlow, so `--help` and argument errors answer at once; commands
that do load TF hide its C++ lines unless `--verbose` or the user's own $TF_CPP_MIN_LOG_LEVEL
asks for them. Timings live in
bench/bench_cli_startup.py, not here.
"""

import os
import platform
import re
import textwrap

import pytest
from helpers import run_python

from tfvae.cli import app as cli
from tfvae.cli import quiet

# Prints, at exit, which of these modules the process imported (--help exits early).
_REPORT = (
    "import atexit, sys; atexit.register(lambda: print('LOADED', "
    "sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tensorflow_serving', "
    "'tensorflow_probability', 'tf_keras'}), file=sys.stderr)); "
)
ABSL_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]|absl::InitializeLog", re.M)


def python(code, *args, env=None, cwd=None):
    """`python -c CODE ARGS` with the user's TF log level unset (the CLI's default applies)."""
    return run_python(
        ["-c", code, *args], env={"TF_CPP_MIN_LOG_LEVEL": None, **(env or {})}, cwd=cwd, timeout=300
    )


def loaded(result):
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("LOADED")]
    return eval(line.split(" ", 1)[1])


def test_importing_tfvae_cli_and_serving_leaves_tensorflow_out():
    code = _REPORT + textwrap.dedent(
        """
        import tfvae, tfvae.cli.app, tfvae.serving.client, tfvae.training.rundir
        from tfvae.serving.client import rest_url, rest_body, parse_rest_response
        assert set(tfvae.__all__) <= set(dir(tfvae)), set(tfvae.__all__) - set(dir(tfvae))
        body = rest_body("encode", x=[[0.5, 0.5]], seed=1)
        assert parse_rest_response({"outputs": [1, 2]})["output"].tolist() == [1, 2]
        assert rest_url("vae").endswith("/v1/models/vae:predict"), body
        assert tfvae.serving.client.rest_url is rest_url  # submodules reachable as attributes
        try:
            tfvae.no_such_name
        except AttributeError:
            pass
        else:
            raise AssertionError("tfvae.no_such_name did not raise AttributeError")
        """
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert loaded(result) == []


@pytest.mark.parametrize(
    "args, status",
    [
        (["--help"], 0),
        (["train", "--help"], 0),
        (["export", "--help"], 0),
        (["train", "--epochs", "-1"], 2),
        (["frobnicate"], 2),
        (["evaluate"], 2),
        (["train", "--dataset", "missing.npy", "--out", "x"], 2),
        (["train", "--resume", "--out", "not-there"], 2),
    ],
)
def test_help_and_argument_errors_do_not_import_tensorflow(args, status, tmp_path):
    result = python(
        _REPORT + "from tfvae.cli import main; raise SystemExit(main())", *args, cwd=tmp_path
    )
    assert result.returncode == status, result.stderr
    assert loaded(result) == []
    assert not ABSL_LINE.search(result.stderr), result.stderr
    if status == 2:
        (error,) = [x for x in result.stderr.splitlines() if not x.startswith("LOADED")]
        assert error.startswith("tfvae")


def test_public_names_resolve_lazily_and_export_stays_the_function():
    import tfvae
    import tfvae.serving.export  # the module lives in serving/: no clash with the function
    from tfvae import VAE, export
    from tfvae.model.vae import VAE as model_vae

    assert VAE is model_vae and tfvae.VAE is VAE
    assert callable(export) and tfvae.export is export
    assert export is tfvae.serving.export.export and export.__module__ == "tfvae.serving.export"
    with pytest.raises(
        ModuleNotFoundError, match=r"^tfvae\.export moved to tfvae\.serving\.export$"
    ):
        import tfvae.export  # noqa: F401
    assert sorted(tfvae.__all__) == sorted(n for n in dir(tfvae) if n in tfvae.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tfvae.nope  # noqa: B018


def test_verbose_is_accepted_before_or_after_the_command():
    parser = cli.parser()
    assert parser.parse_args(["--verbose", "train"]).verbose is True
    assert parser.parse_args(["train", "--verbose"]).verbose is True
    assert parser.parse_args(["train"]).verbose is False


@pytest.mark.parametrize(
    "env, verbose, level, hooked",
    [
        ({}, False, "3", True),
        ({"TF_CPP_MIN_LOG_LEVEL": "1"}, False, "1", True),
        ({"TF_CPP_MIN_LOG_LEVEL": "0"}, False, "0", False),
        ({}, True, "0", False),
        ({"TF_CPP_MIN_LOG_LEVEL": "3"}, True, "0", False),
    ],
)
def test_log_level_default_user_setting_and_verbose(env, verbose, level, hooked):
    code = _REPORT + textwrap.dedent(
        f"""
        import os, sys
        from tfvae.cli import quiet
        quiet.tensorflow_log_level({verbose})
        hooks = [f for f in sys.meta_path if isinstance(f, quiet.QuietImport)]
        print(os.environ["TF_CPP_MIN_LOG_LEVEL"], bool(hooks))
        """
    )
    result = python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [level, str(hooked)]
    assert loaded(result) == []


def test_filtered_stderr_drops_absl_lines_below_the_level_and_keeps_the_rest(capfd):
    with quiet.filtered_stderr(2):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are\n")
        os.write(2, b"I0000 00:00:1796073657.112299   15485 port.cc:153] oneDNN custom ops\n")
        os.write(2, b"W1130 21:14:53.246161    7675 cudart_stub.cc:31] no cuda drivers\n")
        os.write(2, b"E0000 00:00:1796073686.574370   16088 cuda_platform.cc:52] cuInit\n")
        os.write(2, b"a real warning\n")
    err = capfd.readouterr().err
    assert err.splitlines() == [
        "E0000 00:00:1796073686.574370   16088 cuda_platform.cc:52] cuInit",
        "a real warning",
    ]


@pytest.mark.slow
def test_a_command_that_loads_tensorflow_is_quiet_unless_verbose(tmp_path):
    """`train --epochs 0` imports TF, builds and saves a model: stderr has only tfvae's lines."""
    run = "from tfvae.cli import main; raise SystemExit(main())"
    args = ["train", "--epochs", "0", "--quiet", "--hidden-units", "8", "--eval-samples", "2"]
    quiet = python(run, *args, "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert not ABSL_LINE.search(quiet.stderr), quiet.stderr
    assert all(line.startswith("tfvae") for line in quiet.stderr.splitlines()), quiet.stderr
    verbose = python(run, "--verbose", *args, "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    # x86-64 builds of TF announce oneDNN at start-up, before any log level applies.
    if platform.machine() == "x86_64" and "TF_ENABLE_ONEDNN_OPTS" not in os.environ:
        assert "oneDNN" in verbose.stderr and ABSL_LINE.search(verbose.stderr)
