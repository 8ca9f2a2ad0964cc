"""The chapter on superposition: what the toy model's trained weights say about features and neurons.

The model, its training loop and the measures its experiment records (``represented``,
``superposition``, ``feature_norms``, ``dimensions_per_feature``, ``REPRESENTED``) live with the
experiment in :mod:`polybook.experiments.superposition` and are importable from here. This module
adds the chapter's analyses of trained weights ``W`` of shape ``(..., n, m)``:

- the geometry of features in few dimensions (:func:`feature_dimensionality`, ``angles``,
  :func:`neighbour_angles`);
- neurons of a hidden-ReLU model and the features they respond to (``features_per_neuron``,
  :func:`neuron_census`, :func:`effective_neurons`);
- what one-winner collisions could give at ``m = n`` (:func:`expected_shared_winners`).

The figures and the explorer are in :mod:`polybook.views.superposition`.
"""

from __future__ import annotations

import torch

from . import _validate as check

# The experiment's names, importable from the chapter's module (the notebook, the exercises, the tests).
from .experiments.superposition import (
    REPRESENTED,
    SuperpositionConfig,
    SuperpositionResult,
    dimensions_per_feature,
    feature_norms,
    forward,
    importances,
    replay_superposition,
    represented,
    run_superposition,
    sample_batch,
    superposition,
    train_superposition,
)
from .metrics import uses_by_response

__all__ = [
    "feature_dimensionality",
    "neighbour_angles",
    "neuron_census",
    "effective_neurons",
    "expected_shared_winners",
]


def feature_dimensionality(W: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Elhage et al.'s fraction of a dimension each feature owns: ``||W_i||^2 / sum_j (W_i_hat . W_j)^2``.

    1 for a feature with a dimension of its own, 1/2 for one of an antipodal pair, 2/5 in a
    regular pentagon; near 0 for a feature that is not represented. Shape ``W.shape[:-1]``.

    Introduced in the book: :ref:`superposition-geometry` (chapter superposition).
    """
    norm2 = (W**2).sum(dim=-1)
    unit = W / W.norm(dim=-1, keepdim=True).clamp_min(eps)
    return norm2 / ((unit @ W.transpose(-1, -2)) ** 2).sum(dim=-1).clamp_min(eps)


def angles(W: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Angles in degrees between every pair of feature directions, shape ``W.shape[:-2] + (n, n)``."""
    unit = W / W.norm(dim=-1, keepdim=True).clamp_min(eps)
    cos = (unit @ unit.transpose(-1, -2)).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def neighbour_angles(W: torch.Tensor, threshold: float = REPRESENTED) -> torch.Tensor:
    """For ``m = 2``: the angles between consecutive represented directions around the circle.

    ``W`` is one ``(n, 2)`` matrix. The represented features (norm above ``threshold``) are sorted
    by polar angle; the result (degrees, summing to 360) has one entry per represented feature.

    >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.1]])
    >>> neighbour_angles(W).tolist()
    [90.0, 90.0, 180.0]

    Introduced in the book: :ref:`superposition-geometry` (chapter superposition).
    """
    if W.dim() != 2 or W.shape[-1] != 2:
        raise ValueError(f"W must have shape (n, 2), got {tuple(W.shape)}")
    keep = W[feature_norms(W) > threshold]
    if keep.shape[0] == 0:
        return torch.empty(0)
    theta = torch.sort(torch.rad2deg(torch.atan2(keep[:, 1], keep[:, 0])) % 360).values
    gaps = torch.diff(theta, append=theta[:1] + 360)
    return gaps


def features_per_neuron(W: torch.Tensor, threshold: float = REPRESENTED) -> torch.Tensor:
    """For a hidden-ReLU model: how many features each neuron responds to, shape ``W.shape[:-2] + (m,)``.

    Input ``e_i`` (feature ``i`` alone, at full strength) gives neuron ``k`` the activation
    ``ReLU(W_ik)``; neuron ``k`` *responds* to feature ``i`` when that activation exceeds
    ``threshold``. A neuron with 2 or more is polysemantic by the *response rule* of
    :mod:`polybook.metrics` (``uses_by_response(W, threshold, relu=True)``), not by the book's band
    rule: in this model weights need not approach 1.

    >>> features_per_neuron(torch.tensor([[0.9, 0.0], [0.7, -0.8], [0.1, 1.0]])).tolist()
    [2, 1]
    """
    return uses_by_response(W, threshold, relu=True).sum(dim=-2)


def neuron_census(W: torch.Tensor, threshold: float = REPRESENTED) -> torch.Tensor:
    """Neurons that respond to no feature, to one, and to two or more: shape ``W.shape[:-2] + (3,)``.

    Uses ``features_per_neuron`` (``W_ik > threshold``).

    >>> neuron_census(torch.tensor([[0.9, 0.0, 0.0], [0.7, -0.8, 0.0], [0.1, 1.0, 0.0]])).tolist()
    [1, 1, 1]

    Introduced in the book: :ref:`neurons-not-directions` (chapter superposition).
    """
    k = features_per_neuron(W, threshold)
    return torch.stack([(k == 0).sum(-1), (k == 1).sum(-1), (k >= 2).sum(-1)], dim=-1)


def effective_neurons(W: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """How many neurons each feature switches on, counted smoothly: shape ``W.shape[:-1]``.

    With ``p = ReLU(W_i)`` (the activations feature ``i`` alone produces in a hidden-ReLU model),
    this is the participation ratio ``(sum_k p_k^2)^2 / sum_k p_k^4``: 1 for a one-hot code, 2 for
    two equal weights, ``j`` for ``j`` equal weights; 0 for a feature with no positive weight.

    >>> effective_neurons(torch.tensor([[1.0, 0.0, -3.0], [0.7, 0.7, 0.0], [-1.0, 0.0, 0.0]])).tolist()
    [1.0, 2.0, 0.0]

    Introduced in the book: :ref:`neurons-not-directions` (chapter superposition).
    """
    p2 = torch.relu(W) ** 2
    s2 = p2.sum(dim=-1)
    return s2**2 / (p2**2).sum(dim=-1).clamp_min(eps)


def expected_shared_winners(n: int, m: int) -> float:
    """Expected number of neurons that two or more of ``n`` features choose, each choosing one of ``m`` at random.

    ``m [1 - (1 - 1/m)^n - (n/m) (1 - 1/m)^(n-1)]``: the birthday problem counted by neurons, with
    no condition on signs. It bounds what one-winner-per-feature collisions can produce when
    same-sign pairs are not pushed apart; the opposite-sign law of the collisions chapter
    (:func:`polybook.theory.expected_polysemantic_exact`) is smaller.

    >>> round(expected_shared_winners(20, 20), 3)
    5.283

    Introduced in the book: :ref:`superposition-m-equals-n` (chapter superposition).
    """
    check.integer("n", n)
    check.integer("m", m)
    q = 1.0 - 1.0 / m
    return m * (1.0 - q**n - (n / m) * q ** (n - 1))
