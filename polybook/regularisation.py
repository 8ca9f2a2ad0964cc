"""How L1 regularisation sparsifies an encoding: the forces, the winner-take-all dynamic, its speed.

Two normalisations meet here.

- The **package loss** (what :func:`polybook.train` minimises) is the summed squared error
  ``sum_{i,j} (delta_ij - ReLU(W_j . W_i))^2 + l1 * sum |W_ik|``. Its negative gradient on the
  encoding ``W_i`` is the sum of three forces (:func:`forces`)::

      4 (1 - ||W_i||^2) W_i  -  4 sum_{j != i} ReLU(W_i . W_j) W_j  -  l1 sign(W_i)
      feature benefit           interference                          regularisation

- The **paper's normalisation** drops the factor 4: ``dW_i/dt = (1 - ||W_i||^2) W_i - ... -
  lam sign(W_i)``. Gradient descent on the package loss with learning rate ``lr`` and L1
  strength ``l1`` is the Euler scheme of the paper's flow with time step ``dt = 4 lr`` and
  ``lam = l1 / 4``.

For one feature (no interference) every weight that is still alive moves by the same affine map,
``w_k(t) = A(t) (w_k(0) - B(t))``, where the feature benefit multiplies (``A``) and the penalty
subtracts (``B``): a weight is alive at time ``t`` exactly when ``|w_k(0)| > B(t)``. So
:func:`polybook.experiments.sparsification.simulate_affine` runs the dynamics of ``m`` weights on the sorted initial magnitudes with
prefix sums, in ``O(log m)`` per step, and reproduces the plain Euler loop
:func:`polybook.experiments.sparsification.simulate_euler` survivor for survivor. All simulation quantities are in the paper's
normalisation and work on magnitudes ``|w_k|`` (the sign of a weight never changes).

The chapter's two experiments have files of their own: ``sparsification`` (simulation, predictions
and training curves of one feature's sparsification; :mod:`polybook.experiments.sparsification`,
which also holds the simulations and predictions it runs) and ``winners`` (how often a feature's
initial leader wins, under gradient descent and AdamW, with interference and without, and under
AdamW across learning rates at a fixed product of learning rate and steps;
:mod:`polybook.experiments.winners`). The book loads a stored ``winners`` run. Their names are
importable from here too.

The chapter derives, under the balance ``1 - ||w||_2^2 = lam ||w||_1``, the L1 law
``d(1 / ||w||_1)/dt = lam (m' / ||w||_1^2 - 1) = lam ((1 + RV) / ||w||_2^2 - 1)``, with ``RV`` the
relative variance of the surviving magnitudes; :func:`polybook.experiments.sparsification.threshold_prediction` solves it with ``RV``
from the moving threshold.
"""

from __future__ import annotations

import numpy as np
import torch

# The experiments' names, importable from the chapter's module (the notebook, the exercises, the tests).
from .experiments.sparsification import (
    SparsificationConfig,
    ThresholdPrediction,
    Trajectory,
    _tail_moments,
    affine_step,
    initial_magnitudes,
    paper_l1,
    paper_survivors,
    replay_sparsification,
    run_sparsification,
    simulate_affine,
    simulate_euler,
    sparsification_rows,
    threshold_prediction,
    training_summary,
)
from .experiments.winners import (
    WinnersConfig,
    dominance,
    pair_record,
    replay_winners,
    run_winners,
    winner_record,
    winners_rows,
)

__all__ = ["forces"]


# --------------------------------------------------------------------------- the forces


def forces(W: torch.Tensor, l1: float = 0.0) -> dict[str, torch.Tensor]:
    """The three forces on every encoding, for the package loss (their sum is minus the gradient).

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).

    Parameters
    ----------
    W : torch.Tensor
        ``(instances, n, m)`` or ``(n, m)``.
    l1 : float
        Strength of the L1 penalty ``l1 * sum |W_ik|``.

    Returns
    -------
    dict
        ``"benefit"`` ``4 (1 - ||W_i||^2) W_i``; ``"interference"``
        ``-4 sum_{j != i} ReLU(W_i . W_j) W_j``; ``"regularisation"`` ``-l1 sign(W_i)``; each
        shaped like ``W``.

    Examples
    --------
    >>> from polybook.models import loss_and_grad
    >>> W = torch.tensor([[0.6, 0.0, 0.3], [0.5, -0.4, 0.0]])
    >>> f = forces(W, l1=0.1)
    >>> (100 * f["interference"]).round().tolist()  # W_0 . W_1 = 0.3 > 0: pushed apart
    [[-60.0, 48.0, -0.0], [-72.0, -0.0, -36.0]]
    >>> bool(torch.allclose(f["benefit"] + f["interference"] + f["regularisation"], -loss_and_grad(W, 0.1)[1]))
    True
    """
    P = W @ W.transpose(-1, -2)  # (instances, n, n): P_ij = W_i . W_j
    norm2 = torch.diagonal(P, dim1=-2, dim2=-1).unsqueeze(-1)  # (instances, n, 1)
    off = torch.relu(P) * (1 - torch.eye(W.shape[-2], dtype=W.dtype, device=W.device))
    return {
        "benefit": 4 * (1 - norm2) * W,
        "interference": -4 * (off @ W),
        "regularisation": -l1 * torch.sign(W),
    }


# --------------------------------------------------------------------------- the moving threshold


def relative_variance_of_excess(beta) -> np.ndarray:
    """Relative variance of ``|X| - b`` given ``|X| > b``, ``X ~ N(0, 1)``, at ``b = beta``.

    ``pi/2 - 1`` at ``beta = 0`` (a half-normal), rising to 1 as ``beta`` grows (the excess over a
    high threshold is nearly exponential).

    Examples
    --------
    >>> [round(float(v), 4) for v in relative_variance_of_excess([0.0, 8.0])]
    [0.5708, 0.9725]
    """
    p, e1, e2 = _tail_moments(np.asarray(beta, dtype=np.float64))
    return p * e2 / e1**2 - 1
