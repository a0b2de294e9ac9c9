"""Frozen dataclass configs whose fields carry their help and check, and round-trip to JSON.

The machinery under `tfvae.config` (pythae's base config is the model): `field` attaches help
text and a check to a dataclass field, `Config` validates every field by name in
`__post_init__` and gives `to_dict`/`from_dict`/JSON/`save`/`load`, `document` writes the
`Args:` section from the help. The small check builders are here too. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Optional, Tuple

from tfvae.base import atomic, checks

__all__ = [
    "Check",
    "integer",
    "number",
    "optional",
    "one_of",
    "flag",
    "shorten",
    "field",
    "Config",
    "document",
    "cli_fields",
    "check_field",
    "int_tuple",
]

Check = Callable[[Any], Optional[str]]  # a field's value -> what is wrong with it, or None


# ----------------------------------------------------------------- checks of one value
def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(minimum: int, maximum: Optional[int] = None, why: str = "") -> Check:
    """An integer in [minimum, maximum] (`tfvae.base.checks`); the help shows the maximum,
    and a refusal above it says `why` there is one, when given."""

    def check(value):
        problem = checks.integer_problem(value, minimum, maximum)
        if problem and why and problem.startswith("must be at most"):
            return f"{problem}; {why}"
        return problem

    check.limit = None if maximum is None else f"at most {maximum}"
    return check


def number(above: Optional[float] = None, at_least: Optional[float] = None) -> Check:
    """A finite int or float (not a bool), `> above` or `>= at_least` when given."""
    bound = (
        f" > {above}" if above is not None else f" >= {at_least}" if at_least is not None else ""
    )

    def check(value):
        ok = _is_finite_number(value)
        ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
        if not ok:
            return f"must be a finite number{bound}, got {value!r}"

    return check


def optional(check: Check) -> Check:
    """None, or what `check` accepts."""

    def optional(value):
        problem = None if value is None else check(value)
        if problem:
            return "must be None or " + problem[len("must be ") :]

    optional.limit = getattr(check, "limit", None)
    return optional


def one_of(choices: Tuple[str, ...]) -> Check:
    def check(value):
        if value not in choices:
            return f"must be one of {choices}, got {value!r}"

    return check


def flag(value) -> Optional[str]:
    if not isinstance(value, bool):
        return f"must be True or False, got {value!r}"


def shorten(value) -> str:
    """`repr(value)`, cut to about 60 characters for a message."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(value)} values)"


def field(default: Any, help: str, check: Optional[Check] = None, choices=None, from_data=False):
    """A config field carrying its help text, its check (by default: one of `choices`), its
    choices and whether the data determines it (then the command line has no flag for it).

    A check's upper bound (`check.limit`) is added to the help text.
    """
    check = check or one_of(choices)
    if getattr(check, "limit", None):
        help = f"{help} ({check.limit})"
    metadata = {"help": help, "check": check, "choices": choices, "from_data": from_data}
    return dataclasses.field(default=default, metadata=metadata)


# ----------------------------------------------------------------- shared behaviour
class Config:
    """Validation by field and a JSON round trip (with a `name` checked on reload)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            is_optional = f.type.startswith("Optional[")
            if f.type.startswith(("Tuple", "Optional[Tuple")) and not (
                is_optional and value is None
            ):
                value = int_tuple(value, f"{type(self).__name__}.{f.name}")
                object.__setattr__(self, f.name, value)  # JSON hands back lists
            problem = f.metadata["check"](value)
            if problem:
                raise ValueError(f"{type(self).__name__}.{f.name}: {problem}")
            if f.type == "int" and type(value) is not int:
                object.__setattr__(self, f.name, int(value))  # a numpy integer: JSON needs int
        self._check_together()

    def _check_together(self) -> None:
        """Checks that involve several fields (each field alone is already valid)."""

    def replace(self, **changes: Any):
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        name = cls.__name__
        if not isinstance(data, dict):
            raise ValueError(f"a {name} must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        found = data.pop("name", name)
        if found != name:
            raise ValueError(f"config is for {found!r}, expected {name!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {name} fields {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps({**self.to_dict(), "name": type(self).__name__}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config is not valid JSON: {e}") from e
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        atomic.write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {os.fspath(path)!r}")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"{os.fspath(path)!r}: {e}") from e


def document(cls):
    """Appends an `Args:` section built from the fields' help text to `cls.__doc__`."""
    lines = [f"      {f.name}: {f.metadata['help']}" for f in dataclasses.fields(cls)]
    cls.__doc__ = cls.__doc__.rstrip() + "\n\n    Args:\n" + "\n".join(lines) + "\n    "
    return cls


# ----------------------------------------------------------------- fields one at a time
def cli_fields(cls) -> Tuple[dataclasses.Field, ...]:
    """The fields of config class `cls` that a user sets (the data determines the others)."""
    return tuple(f for f in dataclasses.fields(cls) if not f.metadata["from_data"])


def check_field(cls, name: str, value: Any) -> Optional[str]:
    """What is wrong with `value` for field `name` of `cls` on its own, or None."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.type.startswith(("Tuple", "Optional[Tuple")) and value is not None:
        try:
            value = int_tuple(value, name)
        except ValueError as e:
            return str(e).split(": ", 1)[-1]
    return field.metadata["check"](value)


def int_tuple(value: Any, field: str) -> Tuple[int, ...]:
    """A list/tuple of integers as a tuple; anything else is refused, naming the field."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{field}: must be a list or tuple of integers, got {value!r} ({type(value).__name__})"
        )
    if not all(
        checks.is_integer(v) or (hasattr(v, "__index__") and not isinstance(v, bool)) for v in value
    ):
        raise ValueError(f"{field}: must contain only integers, got {value!r}")
    return tuple(int(v) for v in value)
