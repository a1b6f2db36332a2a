"""Field values every format checks the same way: numbers (and, in one place, what they may be).

A format plugin reads untyped JSON; a box corner or a score is a number only when the JSON says
so. Strings that hold numbers are accepted only where a format's own tools write them (Azure
ML's exports), and then reported, never silently converted.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from transforms import errors
from transforms.errors import RecordError


def _shown(value: Any) -> str:
    return repr(value) if value is None or isinstance(value, (str, int, float, bool)) else type(value).__name__


def number(
    value: Any,
    what: str,
    *,
    optional: bool = False,
    finite: bool = False,
    on_string: Callable[[str], None] | None = None,
) -> float | None:
    """`value` as a float, or INVALID_FIELD_TYPE naming `what`.

    optional: None passes through as None. finite: inf / nan are refused too. on_string: a
    numeric string is accepted, and reported through this callback (e.g. NUMBER_AS_STRING)."""
    if value.__class__ is float or value.__class__ is int:  # the common case, first (not bool)
        result = float(value)
        if finite and not math.isfinite(result):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must be finite, got {value!r}")
        return result
    if value is None and optional:
        return None
    if isinstance(value, str) and on_string is not None:
        try:
            result = float(value.strip())
        except ValueError:
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must be a number, got {value!r}") from None
        on_string(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must be a number, got {_shown(value)}")
    else:
        result = float(value)
    if finite and not math.isfinite(result):
        raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must be finite, got {value!r}")
    return result
