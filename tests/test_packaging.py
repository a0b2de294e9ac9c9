"""setup.py's requirements: ranges that install beside other stacks, TF Serving's protos in
the `serving` extra, and constraints.txt pinning CI inside those ranges."""

import importlib.metadata as md
import os
import subprocess
import sys

import pytest
from helpers import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


@pytest.fixture(scope="module")
def requirements(tmp_path_factory):
    """{extra ("" for install_requires): [Requirement, ...]} of this checkout's setup.py."""
    tmp = tmp_path_factory.mktemp("egg")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (info,) = tmp.glob("*.egg-info")
    out = {}
    for text in md.PathDistribution(info).requires:
        req = Requirement(text)
        extra = ""
        if req.marker:
            (extra,) = [
                e
                for e in ("serving", "test", "bench", "peers")
                if req.marker.evaluate({"extra": e})
            ]
        out.setdefault(extra, []).append(req)
    return out


def _pins():
    pins = {}
    with open(os.path.join(REPO, "constraints.txt"), encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, version = line.strip().split("==")
                pins[canonicalize_name(name)] = version
    return pins


def test_install_requires_are_ranges_without_the_serving_api(requirements):
    runtime = {canonicalize_name(r.name): r for r in requirements[""]}
    for name, req in runtime.items():
        operators = {s.operator for s in req.specifier}
        assert "==" not in operators and "<" in operators and ">=" in operators, req
    assert {"tensorflow", "tf-keras", "tensorflow-probability"} <= set(runtime)
    assert "tensorflow-serving-api" not in runtime
    serving = {canonicalize_name(r.name) for r in requirements["serving"]}
    assert serving == {"tensorflow-serving-api"}
    # the tests import the serving protos
    assert serving <= {canonicalize_name(r.name) for r in requirements["test"]}


def test_constraints_pin_every_requirement_inside_its_range(requirements):
    pins = _pins()
    for extra, reqs in requirements.items():
        for req in reqs:
            name = canonicalize_name(req.name)
            assert name in pins, f"constraints.txt has no pin for {req} ({extra or 'runtime'})"
            assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


def test_ci_installs_with_the_constraints():
    with open(os.path.join(REPO, "scripts", "test.sh"), encoding="utf-8") as f:
        script = f.read()
    assert 'pip install -q -c constraints.txt -e ".[test,bench,serving]"' in script
