"""The paper's predictions for incidental polysemanticity, as plain functions.

The idealisation behind all of them: each of ``n`` features ends on one winning neuron chosen
uniformly and independently among ``m``, with a fair independent sign. Two features that share a
winner *collide*; a neuron ends polysemantic when it receives a feature of each sign (a same-sign
pair interferes through the ReLU and is pushed apart, an opposite-sign pair does not).
"""

from __future__ import annotations

import numpy as np

from . import _validate as check

__all__ = [
    "predicted_polysemantic",
    "expected_colliding_pairs",
    "expected_polysemantic_exact",
    "simulate_collisions",
]


def _check_nm(n: int, m: int) -> None:
    check.integer("n", n)
    check.integer("m", m)


def predicted_polysemantic(n: int, m: int) -> float:
    """The paper's estimate ``n^2 / (4m)`` of the number of polysemantic neurons.

    Examples
    --------
    >>> predicted_polysemantic(256, 1024)
    16.0
    """
    _check_nm(n, m)
    return n * n / (4 * m)


def expected_colliding_pairs(n: int, m: int) -> float:
    """Exact expected number of feature pairs sharing a winner: ``C(n, 2) / m`` (about ``n^2/(2m)``)."""
    _check_nm(n, m)
    return n * (n - 1) / 2 / m


def expected_polysemantic_exact(n: int, m: int) -> float:
    """Exact expected number of neurons receiving at least one feature of each sign.

    Each neuron independently misses all positive features with probability
    ``(1 - 1/(2m))^n``, likewise the negative ones, and both with ``(1 - 1/m)^n``; inclusion and
    exclusion gives ``m [1 - 2 (1 - 1/(2m))^n + (1 - 1/m)^n]``, about ``m (1 - exp(-n/(2m)))^2``.

    Examples
    --------
    >>> round(expected_polysemantic_exact(256, 256), 1)
    39.6
    """
    _check_nm(n, m)
    return m * (1 - 2 * (1 - 1 / (2 * m)) ** n + (1 - 1 / m) ** n)


def simulate_collisions(n: int, m: int, trials: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Brute force the idealisation: random winners and signs, ``trials`` times.

    Returns
    -------
    dict
        ``"pairs"``: colliding pairs per trial; ``"polysemantic"``: neurons with features of both
        signs per trial; ``"shared"``: neurons with two or more features, whatever their signs.
    """
    _check_nm(n, m)
    check.integer("trials", trials)
    rng = np.random.default_rng(seed)
    win = rng.integers(0, m, size=(trials, n))
    positive = rng.integers(0, 2, size=(trials, n)).astype(bool)
    rows = np.repeat(np.arange(trials), n)
    counts = np.zeros((trials, m), dtype=np.int64)
    np.add.at(counts, (rows, win.ravel()), 1)
    pos = np.zeros((trials, m), dtype=np.int64)
    np.add.at(pos, (rows, win.ravel()), positive.ravel())
    neg = counts - pos
    return {
        "pairs": (counts * (counts - 1) // 2).sum(axis=1),
        "polysemantic": ((pos > 0) & (neg > 0)).sum(axis=1),
        "shared": (counts >= 2).sum(axis=1),
    }
