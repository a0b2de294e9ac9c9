"""Shared by the tests: the repo root, subprocesses, CLI error lines, weight comparisons, and
the numpy twins of formulas several test files check against (written from the papers)."""

import hashlib
import os
import re
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(args, env=None, timeout=240, cwd=REPO):
    """Runs `python ARGS` (in `cwd`, the repo root by default) with quiet TF logs and this
    checkout on PYTHONPATH; an `env` value of None unsets that variable. Returns the
    CompletedProcess."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    full_env.update(env or {})
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree_digest(root):
    """sha256 of every file under `root` by relative path: proves nothing was touched."""
    out = {}
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ------------------------------------------------------------------------ one-line errors
CLI_ERROR = re.compile(r"^tfvae(?: [\w-]+)?: error: ")


def one_line_error(stderr):
    """The CLI's one error line (`tfvae CMD: error: ...`) in `stderr`: exactly one such line
    and no traceback (`tfvae: ...` notes and warnings may stand around it)."""
    lines = [line for line in stderr.splitlines() if CLI_ERROR.match(line)]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def assert_one_line_naming(excinfo, *names):
    """The raised exception's message is one line that contains each of `names`."""
    message = str(excinfo.value)
    assert "\n" not in message, message
    for name in names:
        assert name in message, message


# ------------------------------------------------------------------------------ weights
def assert_same_weights(a, b, rtol=0.0, atol=0.0):
    """The encoder's and decoder's weights of models `a` and `b` are equal: bit-identical by
    default, else within `rtol`/`atol`."""
    got = a.encoder.weights + a.decoder.weights
    want = b.encoder.weights + b.decoder.weights
    assert len(got) == len(want) > 0
    for x, y in zip(got, want):
        if rtol == atol == 0.0:
            np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.name)
        else:
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=rtol, atol=atol, err_msg=x.name)


# ---------------------------------------------------------------------- numpy references
def np_log_mean_exp(log_w, axis=0):
    """log (1/K) sum_k exp(log_w_k) along `axis` in float64 (Burda et al. 2015, eq. 8),
    shifted by the maximum so that very negative weights do not underflow."""
    log_w = np.asarray(log_w, np.float64)
    top = np.max(log_w, axis=axis, keepdims=True)
    out = top + np.log(np.mean(np.exp(log_w - top), axis=axis, keepdims=True))
    return np.squeeze(out, axis=axis)


def np_soft_clip(x, low=-8.0, high=8.0):
    """The decoder's and encoder's bound on a log-variance: low + softplus(x - low) -
    softplus(x - high) (`VAEConfig.min_log_var`, `max_log_var`)."""
    return low + np.logaddexp(0.0, x - low) - np.logaddexp(0.0, x - high)


def np_gaussian_ll(x, mu, log_var):
    """log N(x; mu, exp(log_var)) summed over the last axis (Kingma & Welling, App. C.2)."""
    return np.sum(
        -0.5 * np.log(2 * np.pi) - 0.5 * log_var - (x - mu) ** 2 / (2 * np.exp(log_var)), -1
    )


def np_kl(mu, log_var):
    """KL(N(mu, exp(log_var)) || N(0, I)) summed over the last axis (App. B)."""
    return -0.5 * np.sum(1 + log_var - mu**2 - np.exp(log_var), axis=-1)
