"""The README keeps its promises: its examples run and mean what their comments say, its
commands are what CI and the CLI really run, its layout is the tree, its links resolve."""

import glob
import importlib
import os
import re

import numpy as np
import pytest
from helpers import REPO, run_python

README = os.path.join(REPO, "README.md")
GUIDES = sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
MARKDOWN = [README, os.path.join(REPO, "BENCHMARKS.md"), *GUIDES] + sorted(
    glob.glob(os.path.join(REPO, "bench", "results", "*.md"))
)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _section(title: str) -> str:
    """The README's text under `## title`, up to the next `## ` heading."""
    text = _read(README)
    assert f"\n## {title}\n" in text, f"README has no section {title!r}"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _block(section: str, lang: str) -> str:
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


# ------------------------------------------------------------------ sizes


def test_readme_and_benchmarks_stay_short():
    assert len(_read(README).splitlines()) <= 350
    assert len(_read(os.path.join(REPO, "BENCHMARKS.md")).splitlines()) < 250


# ------------------------------------------------------------------ links and layout


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: os.path.relpath(p, REPO))
def test_relative_links_resolve(path):
    text = re.sub(r"```.*?```", "", _read(path), flags=re.S)  # links, not code
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target.split("#")[0]))
        assert os.path.exists(resolved), f"{os.path.relpath(path, REPO)} links to {target}"


def _layout_paths() -> list:
    """Every path the README's Layout section names: the tree's entries and the table's files."""
    section = _section("Layout")
    paths, parent = [], ""
    for line in _block(section, "").splitlines():
        m = re.match(r"( {0,2})(\S+)", line)
        if not m or line.startswith(" " * 3):
            continue  # a description carried over to the next line
        indent, name = m.groups()
        if not indent:
            parent = name if name == "tfvae/" else ""
            paths.append(name)
        else:
            paths.append(parent + name)
    paths += re.findall(r"`(tfvae/[\w/]+\.py)`", section)
    return paths


def test_layout_names_only_paths_that_exist():
    missing = [p for p in _layout_paths() if not os.path.exists(os.path.join(REPO, p))]
    assert not missing, f"README's Layout names paths that do not exist: {missing}"


def test_layout_shows_every_folder_and_top_level_module():
    named = set(_layout_paths())
    package = os.path.join(REPO, "tfvae")
    for entry in sorted(os.listdir(package)):
        if os.path.isfile(os.path.join(package, entry, "__init__.py")):
            assert f"tfvae/{entry}/" in named, f"README's Layout lacks the folder tfvae/{entry}/"
        elif entry.endswith(".py"):
            assert f"tfvae/{entry}" in named, f"README's Layout lacks tfvae/{entry}"


def test_guides_name_only_files_that_exist():
    missing = {
        f"{os.path.relpath(path, REPO)}: {name}"
        for path in [README, *GUIDES]
        for name in re.findall(r"`(tfvae/[\w/]+\.py)`", _read(path))
        if not os.path.exists(os.path.join(REPO, name))
    }
    assert not missing, f"files named but absent: {sorted(missing)}"


def _resolve(dotted: str):
    """The object a dotted name means: the longest importable module, then its attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj


def test_guides_name_only_python_names_that_exist():
    missing = set()
    for path in [README, *GUIDES]:
        for dotted in set(re.findall(r"`(tfvae(?:\.\w+)+)", _read(path))):
            try:
                _resolve(dotted)
            except AttributeError:
                missing.add(f"{os.path.relpath(path, REPO)}: {dotted}")
    assert not missing, f"names that tfvae does not define: {sorted(missing)}"


# ------------------------------------------------------------------ the two commands


def _two_commands() -> list:
    block = _block(_section("Two commands on a fresh machine"), "bash")
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_test_command_is_what_ci_runs():
    main_job, test_command = _two_commands()
    assert test_command == "bash scripts/test.sh"
    ci = [line for line in _read(os.path.join(REPO, ".ci", "run")).splitlines() if line]
    assert ci[-1] == f"exec {test_command}"  # CI runs the README's command, nothing else
    script = _read(os.path.join(REPO, "scripts", "test.sh"))
    assert "-c constraints.txt" in script  # "CI's exact versions, constraints.txt"
    assert re.search(r"pytest .* tests \"\$@\"$", script, re.M)  # `-m "not slow"` reaches pytest
    assert 'markers = ["slow:' in _read(os.path.join(REPO, "pyproject.toml"))


def test_main_job_is_the_installed_command_with_its_defaults():
    main_job, _ = _two_commands()
    assert main_job == "pip install -e . && tfvae run"
    assert '"tfvae=tfvae.cli:main"' in _read(os.path.join(REPO, "setup.py"))
    shown = run_python(["-m", "tfvae", "run", "--help"])
    assert shown.returncode == 0, shown.stderr
    help = shown.stdout
    default = {
        flag: re.search(rf"^\s+{flag} \S+\s+.*?\(default: (\S+?)\)", help, re.M | re.S).group(1)
        for flag in ("--name", "--base-dir", "--runs-dir")
    }
    promised = re.search(r"#\s+-> (\S+), (\S+)\n", _read(README)).groups()
    name = default["--name"]
    assert promised == (f"{default['--runs-dir']}/{name}", f"{default['--base-dir']}/{name}/1")


# ------------------------------------------------------------------ the examples


def _numpy_decoder_mean(decoder, z):
    """E[x|z] of a Bernoulli MLP decoder, from its weights in numpy: sigmoid of the logits."""
    import tf_keras as tfk

    activations = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "linear": lambda a: a}
    h = np.asarray(z, np.float64)
    for layer in decoder.layers:
        if isinstance(layer, tfk.layers.Dense):
            kernel, bias = (w.numpy().astype(np.float64) for w in layer.weights)
            h = activations[layer.activation.__name__](h @ kernel + bias)
    return 1.0 / (1.0 + np.exp(-h))


def test_why_example_runs_and_its_comments_hold():
    code = _block(_section('"If z is fixed the decoder output is fixed, so why p(x|z)?"'), "python")
    code = code.replace("epochs=10", "epochs=2")  # same code, shorter training
    code = code.replace("importance_samples=1000", "importance_samples=20")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    px, data, model = scope["px"], scope["data"], scope["model"]
    assert px.mean().shape == (5, 64)
    mean = px.mean().numpy()
    assert np.all((mean > 0) & (mean < 1))  # x-hat: probabilities, not an image of 0/1
    draws = np.stack([px.sample().numpy() for _ in range(4)])
    assert set(np.unique(draws)) <= {0.0, 1.0} and not np.all(draws == draws[0])
    z = model.encoder(data.x_test[:5]).mean()
    fixed = model.decoder(z)
    # fixed parameters: the decoder's mean is the numpy forward pass of its weights at z...
    np.testing.assert_allclose(fixed.mean(), _numpy_decoder_mean(model.decoder, z), atol=1e-5)
    # ...and it is E[x|z]: the average of many random x drawn at that same z
    many = fixed.sample(4000, seed=7).numpy()
    assert np.abs(many.mean(axis=0) - fixed.mean().numpy()).max() < 0.05
    assert model.predict(data.x_test[:7], output="sample", verbose=0).shape == (7, 64)


@pytest.mark.slow
def test_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _block(_section("The API on one screen"), "python").replace("epochs=30", "epochs=1")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert set(scope["metrics"]) >= {"elbo", "log_likelihood"}
    assert os.path.isfile(tmp_path / "runs" / "api" / "metrics.json")
    assert os.path.isfile(tmp_path / "saved_models" / "api" / "1" / "saved_model.pb")
    reply = scope["served"]["serving_default"](x=scope["data"].x_test[:2])
    assert reply["reconstruction"].shape == (2, 64)
    assert scope["x_new"].shape == (16, 64)
