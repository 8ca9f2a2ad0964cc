"""Features that are active together: what co-occurrence does to incidental polysemanticity.

The paper's inputs are the basis vectors ``e_i``: one feature at a time. Here an input may also be
a *pair* ``e_i + e_j``, and the loss weighs each input by its probability (the data, the loss and
the training loop are the ``cooccurrence`` experiment's, :mod:`polybook.experiments.cooccurrence`).

**The co-occurrence level** ``q`` is the share of inputs that hold two active features. A
singleton ``e_i`` has probability ``(1 - q)/n``; the rest, ``q``, is spread evenly over the
*allowed* pairs: every pair (uniform co-occurrence) or only pairs inside a group (structured
co-occurrence: features in ``groups`` equal blocks, and features of different blocks never
active together). The L1 term stays on the weights, as in the rest of the book.

What the chapter derives here:

- the two-feature loss with co-occurrence (:func:`two_feature_loss`);
- the pair's weight and the level where it matches L1 (:func:`pair_weight`, :func:`balance_level`);
- the lowest level from which no model keeps a polysemantic neuron (:func:`vanishing_level`), a
  description of one sample that grows easier to reach with fewer models; and the level where the
  mean count falls to a fixed fraction of its level-0 value, with a bootstrap interval over the
  models (:func:`falling_level`), which does not.

The experiment file holds what its run measures (``restricted_birthday``,
``shared_pairs_by_cooccurrence``, ``level_rows``); they are importable from here as well. The
figures and the explorer are in :mod:`polybook.views.cooccurrence`.

Shapes: ``W`` is ``(instances, n, m)``; ``X`` is ``(R, n)``; input weights are ``(instances, R)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import _validate as check
from .experiments.cooccurrence import (
    CoocConfig,
    InputsRun,
    _group_of,
    input_weights,
    level_rows,
    pair_index,
    replay_cooccurrence,
    restricted_birthday,
    run_cooccurrence,
    shared_pairs_by_cooccurrence,
    train_inputs,
    weighted_loss_and_grad,
)

__all__ = [
    "two_feature_loss",
    "pair_weight",
    "balance_level",
    "vanishing_level",
    "falling_level",
]


# --------------------------------------------------------------------------- the derivation


def two_feature_loss(a, b, level: float = 0.0) -> np.ndarray:
    """Loss of two features that both live on one neuron (weights ``a`` and ``b``) at co-occurrence ``level``.

    The weighted loss of the experiment (``weighted_loss_and_grad``) on an ``n = 2``, ``m = 1``
    model, where a share ``level`` of the inputs is the pair ``e_1 + e_2``::

        (1 - q) [(1 - a^2)^2 + (1 - b^2)^2 + 2 ReLU(ab)^2]
          + 2q [(1 - ReLU(a(a+b)))^2 + (1 - ReLU(b(a+b)))^2].

    Introduced in the book: :ref:`sharing-cost` (chapter cooccurrence).

    Examples
    --------
    >>> two_feature_loss([1.0, 1.0], [-1.0, 0.0], 0.0).round(6).tolist()  # shared for free; or one lost
    [0.0, 1.0]
    >>> two_feature_loss([1.0, 1.0], [-1.0, 0.0], 0.25).round(6).tolist()  # the pair costs 2 x 2q
    [1.0, 1.25]
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    W = torch.from_numpy(np.stack([a.ravel(), b.ravel()], axis=-1)).unsqueeze(-1)  # (points, 2, 1)
    check.number("level", level, 0.0, maximum=1.0)
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)  # as input_weights(2, level)
    weight = torch.tensor([1.0 - level, 1.0 - level, 2.0 * level], dtype=torch.float64)
    loss, _ = weighted_loss_and_grad(W, X, weight)
    return loss.numpy().reshape(a.shape)


def pair_weight(n: int, level: float, groups: int = 1) -> float:
    """Weight ``w`` of one allowed pair in the loss at co-occurrence ``level``: ``n q / (allowed pairs)``.

    For uniform co-occurrence (``groups = 1``) it is ``2q / (n - 1)``.

    >>> round(pair_weight(32, 0.0155), 6)
    0.001

    Introduced in the book: :ref:`sharing-cost` (chapter cooccurrence).
    """
    return float(input_weights(n, level, groups)[1][n:].max())


def balance_level(n: int, l1: float, groups: int = 1) -> float:
    """The co-occurrence level at which one pair's weight in the loss equals the L1 strength.

    Two colliding features ``i`` and ``j`` (weights ``a > 0`` and ``b < 0`` on a shared neuron)
    lose the outputs of the pair input ``e_i + e_j``: its hidden activation is ``a + b``, about 0.
    The pair's term ``w [(1 - ReLU(a(a+b)))^2 + (1 - ReLU(b(a+b)))^2]`` has gradients of size ``w``
    times factors of order one in the weights (``2 a (1 - y_i)`` on ``b``; ``4 (1 - y_i)`` per unit
    of any other weight of ``i``), while L1 pulls every weight by ``l1``, and the winner-take-all
    race that makes or breaks a collision is decided where the pulls on the leading weights nearly
    cancel. So co-occurrence should decide collisions once ``w`` is comparable with ``l1``, at

        q_l1 = l1 * (allowed pairs) / n,

    which is ``l1 (n - 1) / 2`` for uniform co-occurrence. This is a scale, not a sharp threshold.

    >>> round(balance_level(32, 1e-3), 6)
    0.0155

    Introduced in the book: :ref:`sharing-cost` (chapter cooccurrence).
    """
    check.integer("n", n, minimum=2)
    check.number("l1", l1)
    group = _group_of(n, groups)
    ii, jj = pair_index(n)
    return l1 * int((group[ii] == group[jj]).sum()) / n


def vanishing_level(rows: Sequence[dict]) -> float | None:
    """The lowest level from which on no instance has a polysemantic neuron (``None`` if there is none).

    >>> vanishing_level([{"level": 0, "mean": 2.0}, {"level": 0.01, "mean": 0.0}, {"level": 0.1, "mean": 0.0}])
    0.01

    Introduced in the book: :ref:`uniform-cooccurrence` (chapter cooccurrence).
    """
    found = None
    for r in reversed(rows):
        if r["mean"] > 0:
            break
        found = r["level"]
    return found


def _crossing(levels: np.ndarray, ratio: np.ndarray, fraction: float) -> float:
    """First level where ``ratio`` falls below ``fraction``, interpolated linearly in ``log q``.

    Between the last level above and the first below, ``log q`` is interpolated linearly in the
    ratio; where the first level below follows level 0 (no logarithm) it is returned itself.
    ``inf`` when the ratio never falls below ``fraction``.
    """
    below = np.nonzero(ratio < fraction)[0]
    if below.size == 0:
        return float("inf")
    j = int(below[0])
    if j == 0 or levels[j - 1] <= 0:
        return float(levels[j])
    r0, r1 = ratio[j - 1], ratio[j]
    t = (r0 - fraction) / (r0 - r1)
    return float(np.exp(np.log(levels[j - 1]) + t * (np.log(levels[j]) - np.log(levels[j - 1]))))


def falling_level(levels: Sequence[float], counts, fraction: float = 0.1, boot: int = 4000, seed: int = 0,
                  level: float = 0.95) -> dict[str, float]:
    """The co-occurrence level where the mean count falls below ``fraction`` of its level-0 mean.

    ``counts`` is ``(levels, instances)``, the same instances (initial weights) at every level, the
    first level 0. The crossing is interpolated between the grid's levels in ``log q``. Its
    uncertainty comes from resampling the instances (the same draw at every level, so the
    comparison stays paired); a sample that never falls below the fraction gives ``inf``. Unlike
    "no model keeps a polysemantic neuron", the criterion does not get easier to meet with fewer
    models: fewer models only widen the interval.

    Returns
    -------
    dict
        ``level`` (the crossing), ``lo`` and ``hi`` (the central ``level`` of the bootstrap
        crossings), ``grid`` (the first level of the grid whose mean is below the fraction, or
        ``inf``) and ``fraction``. Where the level-0 mean is 0 there is no fraction of it: the
        numbers are NaN and a ``note`` says "too little data".

    Introduced in the book: :ref:`uniform-cooccurrence` (chapter cooccurrence).

    Examples
    --------
    >>> r = falling_level([0.0, 0.01, 0.02, 0.04], [[4, 4], [2, 2], [0.8, 0.8], [0, 0]], fraction=0.1)
    >>> round(r["level"], 4), r["grid"]
    (0.0283, 0.04)
    """
    q = np.asarray(levels, dtype=float)
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[0] != q.size or c.shape[1] < 2:
        raise ValueError(f"counts must have shape (len(levels) = {q.size}, instances >= 2), got {c.shape}")
    if q[0] != 0 or np.any(np.diff(q) <= 0):
        raise ValueError(f"levels must start at 0 and increase, got {q.tolist()}")
    check.number("fraction", fraction, 0.0, maximum=1.0, strict=True)
    means = c.mean(axis=1)
    if means[0] <= 0:  # no count at level 0 (models trained a few steps): no fraction of it to fall to
        nan = float("nan")
        return {"level": nan, "lo": nan, "hi": nan, "grid": nan, "fraction": fraction,
                "note": "too little data: the level-0 mean count is 0"}
    point = _crossing(q, means / means[0], fraction)
    below = np.nonzero(means / means[0] < fraction)[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, c.shape[1], size=(boot, c.shape[1]))
    crossings = []
    for row in idx:
        m = c[:, row].mean(axis=1)
        crossings.append(_crossing(q, m / m[0], fraction) if m[0] > 0 else float("inf"))
    a = (1 - level) / 2
    lo, hi = np.quantile(np.asarray(crossings), [a, 1 - a], method="inverted_cdf")  # no interpolation: may be inf
    return {"level": point, "lo": float(lo), "hi": float(hi),
            "grid": float(q[below[0]]) if below.size else float("inf"), "fraction": fraction}
