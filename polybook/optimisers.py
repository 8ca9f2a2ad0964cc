"""The science of the chapter *optimisers*: which findings belong to the model and which to the optimiser.

The stored experiment (:mod:`polybook.experiments.optimisers`) trains the same initial weights
under gradient descent, momentum, AdamW and RMSprop. This module turns its record into the
chapter's comparisons:

- ``leader_share``: the share of features won by their initial leader, per instance;
- :func:`paired_difference`: a per-instance difference between two optimisers at one point
  (paired: the same initial weights), with its standard error over instances;
- :func:`pair_ratios`: the pairs of features whose winners coincide, by relative sign, over the
  expectation for independent winners with fair signs, at the end and over training.
"""

from __future__ import annotations

import math

import torch

from .experiments.optimisers import KINDS, OptimisersConfig, optimiser_rows, winner_pairs

__all__ = ["pair_ratios", "paired_difference"]


def leader_share(W0: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Per instance, the share of features whose final winner (arg-max ``|W_ik|``) is their initial one.

    The package's answer to the chapter's exercise *the initial leader's share*.

    >>> W0 = torch.tensor([[[0.9, 0.1], [0.2, 0.3]]])
    >>> leader_share(W0, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])).tolist()
    [0.5]
    """
    if W0.shape != W.shape or W.dim() < 2:
        raise ValueError(f"W0 and W must be weights of one shape (..., n, m), got {tuple(W0.shape)} and {tuple(W.shape)}")
    return (W0.abs().argmax(-1) == W.abs().argmax(-1)).double().mean(-1)


def _point(record: dict, n: int, m: int) -> dict:
    for p in record["results"]["points"]:
        if (p["n"], p["m"]) == (n, m):
            return p
    known = [(p["n"], p["m"]) for p in record["results"]["points"]]
    raise ValueError(f"no point n = {n}, m = {m} in this record; it has {known}")


def paired_difference(record: dict, n: int, m: int, key: str, a: str, b: str) -> tuple[float, float]:
    """Mean and standard error over instances of ``runs[a][key] - runs[b][key]`` at point ``(n, m)``.

    The instances are the independent draws; both optimisers trained each from the same weights,
    so the difference removes the draw's own luck.

    Introduced in the book: :doc:`/book/optimisers` (chapter optimisers).
    """
    runs = _point(record, n, m)["runs"]
    for kind in (a, b):
        if kind not in runs:
            raise ValueError(f"optimiser {kind!r} was not run; this record has {sorted(runs)}")
    d = [x - y for x, y in zip(runs[a][key], runs[b][key])]
    mean = sum(d) / len(d)
    var = sum((v - mean) ** 2 for v in d) / (len(d) - 1)
    return mean, math.sqrt(var / len(d))


def pair_ratios(record: dict, n: int, m: int, kind: str) -> dict:
    """Winner pairs by relative sign over ``C(n, 2) / (2m)``, the expectation for independent fair winners.

    Returns ``same`` and ``opposite`` at the end (mean and standard error over instances), and
    ``follow``: the steps and the mean ratios over training (step 0 is the initialisation, whose
    winners are the independent initial leaders).

    Introduced in the book: :doc:`/book/optimisers` (chapter optimisers).
    """
    p = _point(record, n, m)
    r = p["runs"][kind]
    ref = p["pairs_independent"]

    def mean_se(xs):
        mean = sum(xs) / len(xs)
        return mean / ref, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) / ref

    f = r["follow"]
    return {"same": mean_se(r["same"]), "opposite": mean_se(r["opposite"]),
            "follow": {"steps": f["steps"], "same": [v / ref for v in f["same"]],
                       "opposite": [v / ref for v in f["opposite"]], "one_hot": f["one_hot"]}}
