"""Checks shared by every config dataclass: one clear ValueError per bad field."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise ``ValueError: <field> must be <allowed>, got <value>``."""
    raise ValueError(f"{field} must be {allowed}, got {value!r}")


def integer(field: str, value: Any, minimum: int = 1) -> None:
    """``value`` must be an int (not a bool) and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        fail(field, value, f"an integer >= {minimum}")


def number(field: str, value: Any, minimum: float = 0.0, strict: bool = False) -> None:
    """``value`` must be a finite real number >= ``minimum`` (> when ``strict``)."""
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
    )
    if not ok:
        fail(field, value, f"a finite number {'>' if strict else '>='} {minimum:g}")


def choice(field: str, value: Any, options: Iterable[str]) -> None:
    """``value`` must be one of ``options``."""
    options = tuple(options)
    if value not in options:
        fail(field, value, "one of " + ", ".join(repr(o) for o in options))


def integers(field: str, values: Any, minimum: int = 1) -> None:
    """``values`` must be a non-empty tuple of ints, each >= ``minimum``."""
    if not isinstance(values, tuple) or not values:
        fail(field, values, f"a non-empty tuple of integers >= {minimum}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            fail(field, values, f"a non-empty tuple of integers >= {minimum}")
