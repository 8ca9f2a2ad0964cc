"""Checks shared by every config dataclass: one clear ValueError per bad field.

Numbers must be finite *and* keep their meaning in float32, the precision polybook trains in:
``lr=1e300`` or ``l1=1e39`` would become infinite on the first step, and ``lr=1e-320`` would
become 0 (see :func:`number`). Integers must fit in int64 (what torch indexes with) and may be
numpy integers.
"""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Iterable
from typing import Any

#: The largest finite float32, about 3.4e38.
FLOAT32_MAX = 3.4028234663852886e38
#: The smallest positive float32 (a subnormal), about 1.4e-45: anything smaller rounds to 0.
FLOAT32_TINY = 2.0**-149
#: The largest int64.
INT64_MAX = 2**63 - 1


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (``value`` at most :data:`FLOAT32_MAX` in size)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise ``ValueError: <field> must be <allowed>, got <value>``."""
    raise ValueError(f"{field} must be {allowed}, got {value!r}")


def is_int(value: Any) -> bool:
    """True for Python and numpy integers, False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """True for Python and numpy real numbers (integers included), False for bools and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(field: str, value: Any, minimum: int = 1, maximum: int = INT64_MAX) -> None:
    """``value`` must be an integer (not a bool) in ``minimum..maximum``."""
    if not is_int(value) or not minimum <= int(value) <= maximum:
        if maximum == INT64_MAX:
            top = " that fits in int64 (<= 2^63-1)" if is_int(value) and int(value) > maximum else ""
        else:
            top = f" and <= {maximum}"
        fail(field, value, f"an integer >= {minimum}{top}")


def number(field: str, value: Any, minimum: float = 0.0, strict: bool = False, maximum: float = FLOAT32_MAX) -> None:
    """``value`` must be a finite real number >= ``minimum`` (> when ``strict``) and <= ``maximum``,
    and keep its meaning in float32, the precision polybook trains in.

    The rule, for the value as float32 holds it: it must not overflow (the default ``maximum`` is
    the largest float32, about 3.4e38), a value that is not 0 must not round to 0 (at least
    :data:`FLOAT32_TINY`, about 1.4e-45, in size: ``l1=1e-320`` would train as no L1 at all),
    and with ``strict`` it must still lie above ``minimum`` (``lr=1e-320`` passes ``> 0`` in
    Python but is 0 in float32).
    """
    real = is_real(value)
    ok = (
        real
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
        and value <= maximum
    )
    if not ok:
        allowed = f"a finite number {'>' if strict else '>='} {minimum:g}"
        if maximum != FLOAT32_MAX:
            allowed += f" and <= {maximum:g}"
        elif real and math.isfinite(value) and value > maximum:
            allowed += " that float32 can hold (<= 3.4e38)"
        fail(field, value, allowed)
    if abs(value) <= FLOAT32_MAX:
        held = as_float32(float(value))
        if strict and not held > minimum:
            fail(field, value, f"a finite number > {minimum:g} in float32 too (where it rounds to {held:g})")
        if value != 0 and held == 0:
            fail(field, value, f"0 or at least {FLOAT32_TINY:.2g} in size (float32 rounds smaller numbers to 0)")


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


#: The largest seed a user may give (``--seed``, a config's ``seed``): polybook adds small offsets
#: to it (one per width or setting, one per generator stream), which :data:`INTERNAL_SEED_MAX`
#: leaves room for.
SEED_MAX = 2**62
#: The largest seed polybook's own code passes on (a ``TrainConfig``'s, a generator's): a user's
#: seed plus the offsets polybook adds (``seed + j`` for the ``j``-th width, ``seed + n``,
#: ``seed + 100 + s``, ...), all far below 2^62. torch's generators take seeds up to 2^64 - 1, so a
#: generator's stream offset (``polybook.train.STREAM_OFFSET``) added on top still fits.
INTERNAL_SEED_MAX = INT64_MAX


def seed(field: str, value: Any) -> None:
    """A seed a user gives: an integer in ``0..2^62``."""
    integer(field, value, minimum=0, maximum=SEED_MAX)


def internal_seed(field: str, value: Any) -> None:
    """A seed polybook derives from a user's (their seed plus an offset): an integer in ``0..2^63-1``."""
    integer(field, value, minimum=0, maximum=INTERNAL_SEED_MAX)
