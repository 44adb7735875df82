"""A page's Papermill parameters, type-checked in the cell right after its parameters cell.

Papermill's ``-p NAME VALUE`` turns VALUE into an int, a float, a bool (``True`` / ``False``), None, or
else a string: ``-p iters 20`` is the int 20 but ``-p iters abc`` the string "abc", which without a
check fails cells later, far from its cause (``TypeError: unsupported operand type(s) for //``).
``-r NAME VALUE`` keeps VALUE a string and ``-y`` takes YAML (for a list). Each page calls::

    check_parameters(globals(), {"iters": int, "lr": float, "occl": bool, "baseline": (bool, None), ...})
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any

_NAMES = {bool: "True or False", int: "an integer", float: "a number", str: "a string", list: "a list"}
_EXAMPLES = {bool: "-p {name} True", int: "-p {name} 20", float: "-p {name} 0.05", str: "-r {name} TEXT"}


def _accepts(expected: Any, value: Any) -> bool:
    """Whether ``value`` is of the type ``expected`` as a page means it (no bool is a number)."""
    if expected is None:
        return value is None
    if expected in (int, float):  # an int is a float too
        return isinstance(value, (int, expected)) and not isinstance(value, bool)
    origin = typing.get_origin(expected)
    if origin is list:  # list[float]: a list whose items are floats
        (item,) = typing.get_args(expected)
        return isinstance(value, list) and all(_accepts(item, v) for v in value)
    return isinstance(value, expected)


def _describe(expected: Any) -> str:
    if expected is None:
        return "None"
    if typing.get_origin(expected) is list:
        return f"a list of {_describe(typing.get_args(expected)[0]).removeprefix('a ').removeprefix('an ')}s"
    return _NAMES.get(expected, expected.__name__)


def check_parameters(values: Mapping[str, Any], types: Mapping[str, Any]) -> None:
    """Check the type of each of a page's parameters, right after Papermill has set them.

    Args:
        values: the page's variables (``globals()``).
        types: parameter name -> its type: ``bool``, ``int``, ``float``, ``str``, ``list[float]``, or a
            tuple of them, ``None`` in the tuple allowing None. An int is accepted for a float (Papermill
            reads ``-p lr 1`` as an int); a bool is only ``True`` / ``False``, never a number; a float is
            finite.

    Raises:
        TypeError: one line naming the first parameter of the wrong type, its value, the type expected
            and how to pass it.
        ValueError: a float parameter is NaN or infinite, or a name of ``types`` is not set at all (a
            page whose check lists a parameter it does not have).
    """
    for name, expected in types.items():
        if name not in values:
            raise ValueError(
                f"parameter {name} is not set: the page's check names a parameter it does not have"
            )
        value = values[name]
        options = expected if isinstance(expected, tuple) else (expected,)
        if not any(_accepts(option, value) for option in options):
            wanted = " or ".join(_describe(option) for option in options)
            example = next((_EXAMPLES[o] for o in options if o in _EXAMPLES), "-y '{name}: VALUE'")
            hint = example.format(name=name)
            if str in options and not isinstance(value, str):
                hint += f" (Papermill's -p reads {value!r} as a number; -r keeps it text)"
            kind = type(value).__name__
            raise TypeError(
                f"parameter {name}={value!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}: expected "
                f"{wanted}, e.g. {hint}"
            )
        numbers = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ValueError(f"parameter {name}={value!r}: expected a finite number")
