"""Verdicts on the paper's claims: one word from a rule stated before the data, with the rule's power.

Every row of the introduction's verdict table is made by :func:`record_verdict` in the chapter
that measured it. A verdict carries

- its **word**, one of ``WORDS``, chosen by a rule written in the chapter before the data are
  looked at (the rule must be able to give another word);
- what was **measured**, in a short line of numbers;
- its **power**: how far apart, in standard errors of the measurement, the rule expects the
  outcome under the paper's claim and under the alternative the rule tests against. A rule of
  power below 3 cannot tell the two apart reliably, and the table says so.

The introduction's verdict table (:ref:`verdict`) shows the three glued values of every verdict.
"""

from __future__ import annotations

import math

from .display import glue

__all__ = ["separation", "record_verdict", "z_score"]

#: The words a verdict may take. "unfinished" is for runs that have not met the book's finish rule
#: (an unfinished run is never evidence); "a finding" is for rows the paper never claimed, which
#: report a measurement without judging it; "depends on the optimiser" is for claims about the
#: training dynamics whose answer differs between gradient descent and AdamW.
WORDS: tuple[str, ...] = ("holds", "holds with a correction", "does not hold here", "depends on the optimiser",
                          "unfinished", "untested", "a finding")


def z_score(difference: float, se: float) -> float:
    """``difference / se``: how many standard errors a difference is. Where ``se`` is 0 (every model
    gave the same number, as after a few steps of training) it is NaN for no difference and an
    infinity of the difference's sign otherwise, instead of a ``ZeroDivisionError``.

    Introduced in the book: :doc:`/book/cooccurrence` (chapter cooccurrence).

    >>> z_score(0.5, 0.25), z_score(0.0, 0.0), z_score(-1.0, 0.0)
    (2.0, nan, -inf)
    """
    difference, se = float(difference), float(se)
    if se > 0:
        return difference / se
    return math.copysign(math.inf, difference) if difference else math.nan


def separation(expected_if_true: float, expected_if_false: float, se: float) -> float:
    """The power of a rule: ``|expected_if_true - expected_if_false| / se``, in standard errors.

    ``se`` is the standard error of the measured statistic (from the number of independent
    seeds, not from the data being judged). Infinite when ``se`` is 0 and the two differ.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).

    >>> separation(1.0, 0.5, 0.1)
    5.0
    """
    for name, v in (("expected_if_true", expected_if_true), ("expected_if_false", expected_if_false), ("se", se)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
            raise ValueError(f"{name} must be a number, got {v!r}")
    if se < 0:
        raise ValueError(f"se must be >= 0, got {se!r}")
    gap = abs(expected_if_true - expected_if_false)
    if se == 0:
        return math.inf if gap > 0 else 0.0
    return gap / se


def record_verdict(key: str, word: str, measured: str, power: float | None) -> str:
    """Glue a verdict under ``key`` (measured), ``key_word`` and ``key_power``, and return its line.

    ``power`` is :func:`separation` for the rule that chose ``word``; ``None`` only for "a finding",
    "untested" and "unfinished", which judge nothing. The returned line is what a chapter prints.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).

    >>> record_verdict("verdict_demo", "holds", "slope -0.98 ± 0.04", 6.2)
    'verdict_demo: holds | slope -0.98 ± 0.04 | power 6.2 s.e.'
    """
    if word not in WORDS:
        raise ValueError(f"verdict word must be one of {', '.join(map(repr, WORDS))}; got {word!r}")
    if not isinstance(key, str) or not key.startswith("verdict_"):
        raise ValueError(f"a verdict key starts with 'verdict_', got {key!r}")
    if power is None:
        if word not in ("a finding", "untested", "unfinished"):
            raise ValueError(f"a verdict {word!r} needs the power of its rule")
        power_text = "no rule (nothing judged)"
    else:
        if not isinstance(power, (int, float)) or isinstance(power, bool) or math.isnan(power) or power < 0:
            raise ValueError(f"power must be a number >= 0, got {power!r}")
        power_text = f"{power:.1f} s.e." if math.isfinite(power) else "exact"
        if math.isfinite(power) and power < 3:
            power_text += " (weak: below 3)"
    glue(key, measured, display=False)
    glue(f"{key}_word", word, display=False)
    glue(f"{key}_power", power_text, display=False)
    return f"{key}: {word} | {measured} | power {power_text}"
