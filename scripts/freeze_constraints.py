"""Writes constraints.txt: the installed version of everything `tfvae[test,bench,serving,peers]`
pulls in (`pip freeze`, filtered to that dependency closure), for `pip install -c`. CI
installs `test` (which holds `peers`, bench/'s JAX contestant), `bench` and `serving`.

Run it after upgrading what CI installs: python3 scripts/freeze_constraints.py
"""

from __future__ import annotations

import importlib.metadata as md
import os
import pathlib
import re
import subprocess
import sys
import tempfile

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

EXTRAS = ("test", "bench", "serving", "peers")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "constraints.txt")
HEADER = """\
# The exact versions CI tests with (scripts/test.sh: pip install -c constraints.txt ...).
# setup.py holds the ranges users get; this file only pins, it installs nothing by itself.
# Written by scripts/freeze_constraints.py from the installed packages; local version labels
# (torch's +cpu) are dropped so the pins match PyPI's and the CPU wheel index's builds alike.
# Frozen on CI's Python 3.11: some pins (numpy 2.4) need Python >= 3.11.
# The `peers` extra (bench/'s JAX contestant: jax, flax, optax) is also in `test`: CI installs
# it, and `pip install -c constraints.txt -e ".[bench,peers]"` installs it for benchmark runs.
"""


def closure(project: md.Distribution, extras: tuple) -> dict:
    """{canonical name: installed version} of `project[extras]`'s requirements, recursively."""
    seen, todo = {}, [(project, extras)]
    while todo:
        dist, wanted = todo.pop()
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [dict(default_environment(), extra=e) for e in ("", *wanted)]
            if req.marker and not any(req.marker.evaluate(env) for env in envs):
                continue
            key = canonicalize_name(req.name)
            extras_ = tuple(sorted(req.extras))
            if (key, extras_) in seen:
                continue
            seen[(key, extras_)] = True
            todo.append((md.distribution(req.name), extras_))
    name = canonicalize_name(project.metadata["Name"])
    return {k: md.version(k) for k, _ in seen if k != name}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:  # this checkout's metadata, from setup.py
        subprocess.run(
            [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", tmp], cwd=REPO, check=True
        )
        (info,) = pathlib.Path(tmp).glob("*.egg-info")
        pins = closure(md.PathDistribution(info), EXTRAS)
    lines = [f"{name}=={re.sub(r'[+].*', '', version)}" for name, version in sorted(pins.items())]
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(HEADER + "\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(lines)} pins")


if __name__ == "__main__":
    main()
