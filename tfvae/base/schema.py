"""Schemas of the JSON files tfvae reads back, and the one reader that checks them.

Each file is checked whole before any field is used, so a document of the wrong type, a
missing key or an out-of-range number is refused in one line naming the file, the key and
what was expected, instead of a KeyError deep inside or a value silently believed (a
checkpoint claiming a million epochs). TensorFlow-free: the CLI reads run files with it.
The file types' schemas live with their owners (`tfvae.training.rundir` for run.json and
metrics.json, `tfvae.training.checkpointing` for a checkpoint's state.json).

    source = read_json(path, obj({}, {"seed": integer(0, 9)}), "dataset file")
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Callable, Mapping, Optional, Tuple

from tfvae.base import checks

__all__ = [
    "Spec",
    "read_json",
    "check",
    "integer",
    "number",
    "text",
    "exactly",
    "one_of",
    "nullable",
    "list_of",
    "mapping",
    "obj",
    "all_of",
    "config",
    "SHA256",
    "FILE_NAME",
    "model_manifest",
]

# The file types' schemas that moved to their owners: the old names fail naming the new ones.
_MOVED = {
    "DATASET_SOURCE": "tfvae.training.rundir.DATASET_SOURCE_SCHEMA",
    "RUN": "tfvae.training.rundir.RUN_SCHEMA",
    "METRICS": "tfvae.training.rundir.METRICS_SCHEMA",
    "checkpoint_state": "tfvae.training.checkpointing.checkpoint_state",
}


def __getattr__(name: str):
    if name in _MOVED:
        raise AttributeError(f"tfvae.base.schema.{name} moved to {_MOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A problem found: (where in the document, what was expected there, the value found).
Problem = Tuple[str, str, Any]


class Spec:
    """What one value must be: `expected` says it in words, `problem` finds the first fault."""

    def __init__(self, expected: str, test: Callable[[Any, str], Optional[Problem]]):
        self.expected = expected
        self._test = test

    def problem(self, value: Any, where: str = "") -> Optional[Problem]:
        return self._test(value, where)


def _simple(expected: str, ok: Callable[[Any], bool]) -> Spec:
    return Spec(expected, lambda v, where: None if ok(v) else (where, expected, v))


def integer(low: Optional[int] = None, high: Optional[int] = None, expected: str = "") -> Spec:
    """An integer (not a bool) in [low, high] (either bound may be None)."""
    if not expected:
        bounds = {(True, True): f" in [{low}, {high}]", (True, False): f" >= {low}"}
        expected = "an integer" + bounds.get((low is not None, high is not None), "")
        if low is None and high is not None:
            expected += f" <= {high}"
    return _simple(expected, lambda v: checks.integer_problem(v, low, high) is None)


def number(finite: bool = True) -> Spec:
    """An int or float (not a bool), finite unless `finite=False`."""
    return _simple(
        "a finite number" if finite else "a number",
        lambda v: (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and (not finite or math.isfinite(v))
        ),
    )


def text(pattern: Optional[str] = None, expected: str = "a string") -> Spec:
    """A string (matching `pattern` whole, if given)."""
    regex = re.compile(pattern) if pattern else None
    return _simple(expected, lambda v: isinstance(v, str) and (not regex or regex.fullmatch(v)))


def exactly(value: Any) -> Spec:
    return _simple(repr(value), lambda v: v == value and type(v) is type(value))


def one_of(values) -> Spec:
    """One of `values` (each compared as `exactly` does)."""
    values = tuple(values)
    expected = " or ".join(map(repr, values))
    return _simple(expected, lambda v: any(v == w and type(v) is type(w) for w in values))


def nullable(spec: Spec) -> Spec:
    """`spec` or null."""
    expected = f"{spec.expected} or null"

    def test(v, where):
        found = None if v is None else spec.problem(v, where)
        return (where, expected, v) if found and found[0] == where else found

    return Spec(expected, test)


def _item(where: str, key) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    if re.fullmatch(r"[A-Za-z_]\w*", key):
        return f"{where}.{key}" if where else key
    return f"{where}[{key!r}]"


def list_of(item: Spec, max_length: Optional[int] = None) -> Spec:
    """A JSON array of `item`s (at most `max_length` of them)."""
    most = "" if max_length is None else f" of at most {max_length} items"
    expected = f"a list{most}, each {item.expected}"

    def test(v, where):
        if not isinstance(v, list) or (max_length is not None and len(v) > max_length):
            return where, expected, v
        for i, each in enumerate(v):
            found = item.problem(each, _item(where, i))
            if found:
                return found
        return None

    return Spec(expected, test)


def mapping(value: Spec, key: Optional[Spec] = None) -> Spec:
    """A JSON object whose keys match `key` (any string by default) and values `value`."""
    expected = f"an object, each value {value.expected}"

    def test(v, where):
        if not isinstance(v, dict):
            return where, expected, v
        for k, each in v.items():
            if key is not None and key.problem(k):
                return _item(where, k), f"a key that is {key.expected}", k
            found = value.problem(each, _item(where, k))
            if found:
                return found
        return None

    return Spec(expected, test)


def obj(required: Mapping[str, Spec], optional: Optional[Mapping[str, Spec]] = None) -> Spec:
    """A JSON object with the `required` keys (and maybe the `optional` ones) as specified;
    other keys are allowed (later versions may add some)."""
    optional = optional or {}
    expected = "an object" + (" with " + ", ".join(map(repr, required)) if required else "")
    if optional:
        expected += f" (optional: {', '.join(map(repr, optional))})"

    def test(v, where):
        if not isinstance(v, dict):
            return where, expected, v
        for k, spec in required.items():
            if k not in v:
                return _item(where, k), f"present ({spec.expected})", "nothing"
        for k, spec in {**required, **optional}.items():
            if k in v:
                found = spec.problem(v[k], _item(where, k))
                if found:
                    return found
        return None

    return Spec(expected, test)


def all_of(*specs: Spec) -> Spec:
    """Every one of `specs`."""

    def test(v, where):
        return next((p for p in (spec.problem(v, where) for spec in specs) if p), None)

    return Spec(" and ".join(spec.expected for spec in specs), test)


def config(cls) -> Spec:
    """A dict that `cls.from_dict` accepts (its field checks and limits included)."""

    def test(v, where):
        try:
            cls.from_dict(v)
        except (TypeError, ValueError) as e:
            return where, f"a valid {cls.__name__} ({e})", v
        return None

    return Spec(f"a {cls.__name__}", test)


def _short(value: Any) -> str:
    shown = "nothing" if value == "nothing" else repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check(document: Any, spec: Spec, path: str, what: str, error=ValueError) -> Any:
    """Raises `error` naming `what`, `path`, the key and the expectation if `document` does
    not fit `spec`; returns `document`."""
    found = spec.problem(document)
    if found:
        where, expected, value = found
        if "(" in expected and expected.startswith("a valid "):  # the config's own message
            raise error(f"{what} {path!r} is corrupt: {where or 'the document'} is not {expected}")
        raise error(
            f"{what} {path!r} is corrupt: {where or 'the document'} must be {expected}, "
            f"got {_short(value)}"
        )
    return document


def read_json(
    path: str | os.PathLike, spec: Spec, what: str, error=ValueError, missing_error=None
) -> Any:
    """The JSON document at `path`, checked against `spec`.

    Raises `missing_error` (default: `error`) if the file is missing, and `error` if it is
    unreadable, not JSON, or does not fit `spec`; each message names `what` and `path`.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        raise (missing_error or error)(f"{what} {path!r} is missing") from None
    except (OSError, ValueError) as e:
        raise error(f"{what} {path!r} is corrupt or truncated: {e}") from e
    return check(document, spec, path, what, error)


# ------------------------------------------------------------------------ the file types
SHA256 = text(r"[0-9a-f]{64}", "a sha256 (64 hex digits)")
FILE_NAME = text(r"[^/\\]+", "a plain file name")


def model_manifest(format: str, files, fields: Optional[Mapping[str, Spec]] = None) -> Spec:
    """A saved model's manifest.json: its format, the sha256 of each of `files`, and the
    other `fields` its format has."""
    return obj(
        {
            "format": exactly(format),
            **(fields or {}),
            "sha256": all_of(obj({name: SHA256 for name in files}), mapping(SHA256, FILE_NAME)),
        }
    )
