"""Checks shared by every config dataclass: one clear ValueError per bad field.

Numbers must be finite *and* representable in float32, the precision polybook trains in
(``lr=1e300`` or ``l1=1e39`` would become infinite on the first step); integers must fit in
int64 (what torch indexes with) and may be numpy integers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

#: The largest finite float32, about 3.4e38.
FLOAT32_MAX = 3.4028234663852886e38
#: The largest int64.
INT64_MAX = 2**63 - 1


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise ``ValueError: <field> must be <allowed>, got <value>``."""
    raise ValueError(f"{field} must be {allowed}, got {value!r}")


def is_int(value: Any) -> bool:
    """True for Python and numpy integers, False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(field: str, value: Any, minimum: int = 1, maximum: int = INT64_MAX) -> None:
    """``value`` must be an integer (not a bool) in ``minimum..maximum``."""
    if not is_int(value) or not minimum <= int(value) <= maximum:
        if maximum == INT64_MAX:
            top = " that fits in int64 (<= 2^63-1)" if is_int(value) and int(value) > maximum else ""
        else:
            top = f" and <= {maximum}"
        fail(field, value, f"an integer >= {minimum}{top}")


def number(field: str, value: Any, minimum: float = 0.0, strict: bool = False, maximum: float = FLOAT32_MAX) -> None:
    """``value`` must be a finite real number >= ``minimum`` (> when ``strict``) and <= ``maximum``.

    The default ``maximum`` is the largest float32, so no value overflows when training casts it.
    """
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
        and value <= maximum
    )
    if not ok:
        allowed = f"a finite number {'>' if strict else '>='} {minimum:g}"
        if maximum != FLOAT32_MAX:
            allowed += f" and <= {maximum:g}"
        elif isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > maximum:
            allowed += " that float32 can hold (<= 3.4e38)"
        fail(field, value, allowed)


def choice(field: str, value: Any, options: Iterable[str]) -> None:
    """``value`` must be one of ``options``."""
    options = tuple(options)
    if value not in options:
        fail(field, value, "one of " + ", ".join(repr(o) for o in options))


def integers(field: str, values: Any, minimum: int = 1, maximum: int = INT64_MAX) -> None:
    """``values`` must be a non-empty tuple of integers, each in ``minimum..maximum``."""
    if not isinstance(values, tuple) or not values:
        fail(field, values, f"a non-empty tuple of integers >= {minimum}")
    for v in values:
        if not is_int(v) or not minimum <= int(v) <= maximum:
            fail(field, values, f"a non-empty tuple of integers >= {minimum}"
                 + ("" if maximum == INT64_MAX else f" and <= {maximum}"))


#: Seeds leave room for the offsets polybook adds (one per width, one for the noise generator).
SEED_MAX = 2**62


def seed(field: str, value: Any) -> None:
    """A seed: an integer in ``0..2^62``."""
    integer(field, value, minimum=0, maximum=SEED_MAX)
