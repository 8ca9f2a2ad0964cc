"""The paper's predictions for incidental polysemanticity, as plain functions.

The idealisation behind all of them: each of ``n`` features ends on one winning neuron chosen
uniformly and independently among ``m``, with a fair independent sign. Two features that share a
winner *collide*; a neuron ends polysemantic when it receives a feature of each sign (a same-sign
pair interferes through the ReLU and is pushed apart, an opposite-sign pair does not).
"""

from __future__ import annotations

import math

import numpy as np

from . import _validate as check

__all__ = [
    "predicted_polysemantic",
    "expected_colliding_pairs",
    "expected_polysemantic_exact",
    "simulate_collisions",
]


#: Largest ``n`` or ``m`` the theory accepts: every integer up to 2^53 is exact in a float64.
SIZE_MAX = 2**53
#: Largest ``trials * (n + m)`` :func:`simulate_collisions` will allocate (about 2.4 GB of int64).
SIMULATION_MAX = 3 * 10**8


def _check_nm(n: int, m: int) -> tuple[int, int]:
    """Validate ``n`` and ``m`` (Python or numpy integers) and return them as Python ints."""
    check.integer("n", n, maximum=SIZE_MAX)
    check.integer("m", m, maximum=SIZE_MAX)
    return int(n), int(m)


def predicted_polysemantic(n: int, m: int) -> float:
    """The paper's estimate ``n^2 / (4m)`` of the number of polysemantic neurons.

    Introduced in the book: :ref:`birthday` (chapter collisions).

    Examples
    --------
    >>> predicted_polysemantic(256, 1024)
    16.0
    """
    n, m = _check_nm(n, m)
    return n * n / (4 * m)


def expected_colliding_pairs(n: int, m: int) -> float:
    """Exact expected number of feature pairs sharing a winner: ``C(n, 2) / m`` (about ``n^2/(2m)``).

    Introduced in the book: :ref:`birthday` (chapter collisions).
    """
    n, m = _check_nm(n, m)
    return n * (n - 1) / 2 / m


def expected_polysemantic_exact(n: int, m: int) -> float:
    """Exact expected number of neurons receiving at least one feature of each sign.

    Each neuron independently misses all positive features with probability
    ``(1 - 1/(2m))^n``, likewise the negative ones, and both with ``(1 - 1/m)^n``; inclusion and
    exclusion gives ``m [1 - 2 (1 - 1/(2m))^n + (1 - 1/m)^n]``, about ``m (1 - exp(-n/(2m)))^2``.

    Evaluated as written, the bracket cancels catastrophically when ``n << m`` (at ``n = 2``,
    ``m = 10^8`` it is ``1/(2 m^2) = 5e-17``, below float64's resolution of 1). With
    ``p = 1 - 1/(2m)`` and ``1 - 1/m = p^2 - 1/(4m^2)`` it equals
    ``(1 - p^n)^2 + p^(2n) [(1 - 1/(4 m^2 p^2))^n - 1]``, two terms computed with ``log1p`` and
    ``expm1`` to full relative precision, whose sum cancels by at most a factor of about 2.

    Introduced in the book: :ref:`superposition-m-equals-n` (chapter superposition).

    Examples
    --------
    >>> round(expected_polysemantic_exact(256, 256), 1)
    39.6
    >>> f"{expected_polysemantic_exact(2, 10**8):.6e}"  # exactly 1/(2m)
    '5.000000e-09'
    """
    n, m = _check_nm(n, m)
    if n == 1:  # one feature cannot meet another
        return 0.0
    if m == 1:  # (1 - 1/m)^n = 0: the neuron misses a sign only when every feature has the other
        return 1 - 2 * 0.5**n
    log_p = math.log1p(-1 / (2 * m))
    both_miss = math.expm1(n * log_p) ** 2  # (1 - p^n)^2
    correction = math.exp(2 * n * log_p) * math.expm1(n * math.log1p(-1 / (4 * m * m * math.exp(2 * log_p))))
    return m * (both_miss + correction)


def simulate_collisions(n: int, m: int, trials: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Brute force the idealisation: random winners and signs, ``trials`` times.

    Introduced in the book: :ref:`birthday` (chapter collisions).

    Returns
    -------
    dict
        ``"pairs"``: colliding pairs per trial; ``"polysemantic"``: neurons with features of both
        signs per trial; ``"shared"``: neurons with two or more features, whatever their signs.
    """
    n, m = _check_nm(n, m)
    check.integer("trials", trials)
    check.seed("seed", seed)
    if int(trials) * (n + m) > SIMULATION_MAX:
        check.fail("trials", trials, f"such that trials * (n + m) <= {SIMULATION_MAX:.0e} (memory), with n={n}, m={m}")
    rng = np.random.default_rng(seed)
    win = rng.integers(0, m, size=(int(trials), n))
    positive = rng.integers(0, 2, size=(int(trials), n)).astype(bool)
    return collision_counts(win, positive, m)


def collision_counts(winners: np.ndarray, positive: np.ndarray, m: int) -> dict[str, np.ndarray]:
    """Count collisions in each trial, given every feature's winning neuron and sign.

    Parameters
    ----------
    winners : array of int, shape ``(trials, n)``
        The neuron (``0 .. m-1``) each feature lands on.
    positive : array of bool, shape ``(trials, n)``
        The sign of each feature's weight there.

    Returns
    -------
    dict
        As :func:`simulate_collisions`, one entry per trial.

    Examples
    --------
    >>> collision_counts(np.array([[0, 0, 1, 1]]), np.array([[True, False, True, True]]), 2)
    {'pairs': array([2]), 'polysemantic': array([1]), 'shared': array([2])}
    """
    win = np.asarray(winners)
    positive = np.asarray(positive, dtype=bool)
    if win.ndim != 2 or positive.shape != win.shape:
        raise ValueError(f"winners and positive must both be (trials, n) arrays, got {win.shape} and {positive.shape}")
    if win.size and not (0 <= win.min() and win.max() < m):
        raise ValueError(f"winners must be neuron indices in 0 .. m-1 = {m - 1}, got {win.min()} .. {win.max()}")
    trials, n = win.shape
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
