"""The one rule for "an integer in [minimum, maximum]": what counts, the range, the message.

Config fields, the library's arguments, the command line and the schemas of the run files all
ask it here, so they accept the same values and refuse them in the same words. No TensorFlow,
no numpy: numpy's integers count through `numbers.Integral`. Also `renamed_argument`: the
one-line refusal of the keyword an integer argument was once called (`num_samples=`).
"""

from __future__ import annotations

import numbers
from typing import Any, Optional

__all__ = [
    "is_integer",
    "too_small",
    "too_large",
    "integer_problem",
    "check_integer",
    "renamed_argument",
]


def is_integer(value: Any) -> bool:
    """An int or a numpy integer; bools (Python's or numpy's), floats and strings are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def too_small(minimum: Optional[int], got: str) -> str:
    """The message for a value that is not an integer, or one below `minimum`."""
    if minimum is None:
        return f"must be an integer, got {got}"
    return f"must be an integer >= {minimum}, got {got}"


def too_large(maximum: int, got: str) -> str:
    """The message for an integer above `maximum` (tfvae's limit for that size)."""
    return f"must be at most {maximum} (tfvae's limit), got {got}"


def integer_problem(
    value: Any, minimum: Optional[int] = None, maximum: Optional[int] = None
) -> Optional[str]:
    """What is wrong with `value` as an integer in [minimum, maximum] (None: unbounded), or None.

    The text starts with "must be" so callers prefix the name: `f"{name} {problem}"` or
    `f"{name}: {problem}"`. An integer is shown as `int(value)`, anything else by its repr.
    """
    if not is_integer(value):
        return too_small(minimum, repr(value))
    if minimum is not None and value < minimum:
        return too_small(minimum, str(int(value)))
    if maximum is not None and value > maximum:
        return too_large(maximum, str(int(value)))
    return None


def check_integer(
    value: Any, name: str, minimum: Optional[int] = 1, maximum: Optional[int] = None
) -> int:
    """`value` as an int, if it is an integer in [minimum, maximum].

    Raises:
      TypeError: not an integer ("{name} must be an integer >= 1, got '3' (str)").
      ValueError: out of range ("{name} must be at most 100 (tfvae's limit), got 101").
    """
    problem = integer_problem(value, minimum, maximum)
    if problem is None:
        return int(value)
    if not is_integer(value):
        raise TypeError(f"{name} {problem} ({type(value).__name__})")
    raise ValueError(f"{name} {problem}")


def renamed_argument(method: str, name: str, value, given: dict):
    """`value` of `method`'s argument `name`, once called `num_samples`: a one-line TypeError
    for that old keyword (naming `name`) or any other unknown one in `given`. (A missing
    count is None, which the count's own check refuses by name.)"""
    if "num_samples" in given:
        raise TypeError(f"{method}() takes {name}= now, not num_samples=")
    if given:
        raise TypeError(f"{method}() got an unexpected keyword argument {next(iter(given))!r}")
    return value
