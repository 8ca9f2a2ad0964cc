"""Prevention and detection: what it costs to avoid incidental polysemanticity, and how to recognise it.

Three pieces of science for the chapter ``book/prevention.ipynb``:

- **the width price** (:func:`width_needed`): the smallest ``m`` at which the idealised birthday
  expectation of polysemantic neurons (:func:`polybook.theory.expected_polysemantic_exact`) drops
  below a target, and what that width costs in parameters and training flops against ``m = n``;
- **interventions at fixed width** (``INTERVENTIONS``, ``train_intervention``, the
  ``interventions`` experiment of :mod:`polybook.experiments.interventions`): the paper's L1
  setting changed in one respect at a time (initialisation, optimiser, L1 strength or schedule,
  weight decay, width then pruning, resampling of shared neurons); model ``b`` of every
  intervention starts from a function of the baseline's initial draw ``b`` (the draw itself, scaled,
  its polar factor, masked, or widened by fresh columns), so that differences from the baseline are
  paired;
- **telling incidental from necessary** (``pairs_sharing_a_neuron``, :func:`seed_consistency`,
  :func:`pair_test_power`): the pairs of features that share a neuron, how many of them two
  seeds have in common (``pairs_in_common``), and that overlap's null distribution when feature
  labels are permuted; measured in an incidental regime and in two necessary ones (a hierarchy of
  importances, and exchangeable features, where the pairs are not singled out by the data).

The figures and the explorer are in :mod:`polybook.views.prevention`.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from . import _validate as check
from .experiments.interventions import (  # the experiment's pieces, for the chapter, its exercises and tests
    INTERVENTIONS,
    Intervention,
    InterventionsConfig,
    initial_weights,
    intervention_rows,
    pairs_sharing_a_neuron,
    replay_interventions,
    resample_shared,
    train_intervention,
    train_schedule,
)
from .theory import expected_polysemantic_exact

__all__ = [
    "width_needed",
    "width_price",
    "seed_consistency",
    "pair_test_power",
]


# --------------------------------------------------------------------------- the width price


def width_needed(n: int, target: float = 1.0, per_feature: bool = False) -> int:
    """Smallest ``m >= n`` whose idealised expected count of polysemantic neurons is below ``target``.

    With ``per_feature=True`` the target is a share of the ``n`` features instead: the expected
    count divided by ``n`` must fall below ``target``. The expectation is
    :func:`polybook.theory.expected_polysemantic_exact`, which falls with ``m``; about
    ``n^2 / (4 target)`` for a count, about ``n / (4 target)`` for a share. (Below ``m = n`` the count
    is capped by ``m`` itself, so tiny widths also have small counts; from ``m = n`` on it falls.)

    Introduced in the book: :ref:`width-price` (chapter prevention).

    Examples
    --------
    >>> width_needed(32), width_needed(64)
    (233, 977)
    >>> width_needed(64, 0.05, per_feature=True)
    283
    """
    check.integer("n", n, minimum=2)
    check.number("target", target, 0.0, strict=True)
    goal = target * n if per_feature else target
    lo, hi = n, n
    if expected_polysemantic_exact(n, n) < goal:
        return n
    while expected_polysemantic_exact(n, hi) >= goal:
        lo, hi = hi, hi * 2
    while lo < hi:  # the smallest m with E < goal lies in (lo, hi]
        mid = (lo + hi) // 2
        if expected_polysemantic_exact(n, mid) < goal:
            hi = mid
        else:
            lo = mid + 1
    return hi


def width_price(n: int, m: int) -> dict:
    """What width ``m`` costs against ``m = n``: parameters ``n m`` and flops ``4 n^2 m`` per step.

    >>> width_price(32, 256)
    {'params': 8192, 'params_ratio': 8.0, 'flops_per_step': 1048576, 'flops_ratio': 8.0}

    Introduced in the book: :ref:`width-price` (chapter prevention).
    """
    check.integer("n", n)
    check.integer("m", m)
    return {"params": n * m, "params_ratio": m / n, "flops_per_step": 4 * n * n * m, "flops_ratio": m / n}


# --------------------------------------------------------------------------- pairs two seeds have in common


def _codes(pairs, n: int) -> np.ndarray:
    return np.array([i * n + j for i, j in pairs], dtype=np.int64)


def pairs_in_common(a, b) -> int:
    """Number of pairs two seeds have in common.

    >>> pairs_in_common([(0, 1), (2, 5)], [(2, 5), (3, 4)])
    1
    """
    return len(set(map(tuple, a)) & set(map(tuple, b)))


def _permuted_overlaps(a, b, n: int, perms: np.ndarray) -> np.ndarray:
    """Overlap of ``a`` with ``b`` relabelled by each row of ``perms`` (``(P, n)``): the null's draws."""
    if not len(a) or not len(b):
        return np.zeros(len(perms), dtype=np.int64)
    B = np.asarray(b)
    x, y = perms[:, B[:, 0]], perms[:, B[:, 1]]  # (P, |b|)
    mapped = np.minimum(x, y) * n + np.maximum(x, y)
    return np.isin(mapped, _codes(a, n)).sum(axis=1)


def seed_consistency(pairs: list, n: int, permutations: int = 2000, seed: int = 0) -> dict:
    """How many shared pairs two seeds have in common, averaged over every two seeds, against its null.

    The null relabels the features of each seed by an independent uniform permutation: what the
    overlap would be if which features end up sharing were unrelated across seeds (incidental).
    Returns ``observed``, ``null_mean``, ``null_sd``, ``z`` (``(observed - null_mean) / null_sd``),
    ``p`` (share of null draws at least as large, with the observed one counted), ``null`` (the draws)
    and ``pairs_per_seed``.

    >>> r = seed_consistency([[(0, 1)], [(0, 1)], [(0, 1)]], n=10, permutations=200)
    >>> r["observed"], r["p"] < 0.05
    (1.0, True)

    Introduced in the book: :ref:`detect` (chapter prevention).
    """
    check.integer("n", n, minimum=2)
    check.integer("permutations", permutations)
    if len(pairs) < 2:
        check.fail("pairs", len(pairs), "a list with the pairs of at least 2 seeds")
    rng = np.random.default_rng(seed)
    S = len(pairs)
    obs = float(np.mean([pairs_in_common(pairs[a], pairs[b]) for a, b in combinations(range(S), 2)]))
    perms = np.argsort(rng.random((S, permutations, n)), axis=-1)  # one relabelling per seed and draw
    total = np.zeros(permutations)
    for a, b in combinations(range(S), 2):
        # relabel both seeds: overlap of pi_a(A) with pi_b(B) has the law of A with pi_a^-1 pi_b (B)
        rel = np.take_along_axis(np.argsort(perms[a], axis=-1), perms[b], axis=-1)
        total += _permuted_overlaps(pairs[a], pairs[b], n, rel)
    null = total / (S * (S - 1) / 2)
    sd = float(null.std(ddof=1))
    return {"observed": obs, "null_mean": float(null.mean()), "null_sd": sd, "null": null,
            "z": (obs - float(null.mean())) / sd if sd > 0 else math.inf if obs > null.mean() else 0.0,
            "p": float((1 + (null >= obs).sum()) / (permutations + 1)),
            "pairs_per_seed": float(np.mean([len(p) for p in pairs]))}


def pair_test_power(pairs: list, n: int, alpha: float = 0.05, permutations: int = 1000, seed: int = 0) -> dict:
    """The two-seed test on every two seeds: share whose overlap is significant at ``alpha``.

    For seeds ``a`` and ``b`` the p-value is the share of ``permutations`` relabellings of ``b`` whose
    overlap with ``a`` is at least the observed one (the observed counted). Under the null the
    share rejected is at most ``alpha``; where pairings repeat across seeds it is the test's power.
    Returns ``rejected`` (share), ``tests`` (how many pairs of seeds) and ``p`` (each p-value).

    >>> pair_test_power([[(0, 1)], [(0, 1)], [(2, 3)]], n=10, permutations=200)["rejected"]
    0.3333333333333333

    Introduced in the book: :ref:`detect` (chapter prevention).
    """
    check.number("alpha", alpha, 0.0, strict=True, maximum=1.0)
    rng = np.random.default_rng(seed)
    ps = []
    for a, b in combinations(range(len(pairs)), 2):
        perms = np.argsort(rng.random((permutations, n)), axis=-1)
        null = _permuted_overlaps(pairs[a], pairs[b], n, perms)
        ps.append(float((1 + (null >= pairs_in_common(pairs[a], pairs[b])).sum()) / (permutations + 1)))
    ps_arr = np.array(ps)
    return {"rejected": float((ps_arr <= alpha).mean()), "tests": len(ps), "p": ps}
