"""The tied ReLU autoencoder of the paper, batched over independent instances.

Notation, used everywhere in polybook:

- ``n``: number of features (inputs and outputs); ``m``: number of neurons (hidden width).
- ``W``: weights of shape ``(instances, n, m)``; row ``W[:, i]`` is the *encoding* ``W_i`` of
  feature ``i`` and column ``k`` holds what neuron ``k`` reads from every feature.
- Input ``e_i`` gives hidden activation ``h = W_i`` (plus noise ``xi_i`` when training with
  hidden-layer noise) and output ``y = ReLU(W h)``, so output ``j`` for input ``i`` is
  ``ReLU(W_j . (W_i + xi_i))``.

Because the inputs are the ``n`` basis vectors, all ``n`` reconstructions at once are
``ReLU(W W^T)`` (the Gram matrix), which is how polybook computes them: never through a batch
of identity inputs. The loss of one instance is the summed squared error::

    L(W) = sum_{i,j} (delta_ij - ReLU(W_j . (W_i + xi_i)))^2 + l1 * sum_{i,k} |W_ik|.

Its gradient is written out by hand in :func:`loss_and_grad` (two batched matrix products per
step); ``tests/test_models.py`` checks it against autograd on the per-example model.
"""

from __future__ import annotations

import math

import torch

__all__ = ["init_weights", "reconstruction_loss", "loss_and_grad"]


def init_weights(
    instances: int,
    n: int,
    m: int,
    seed: int = 0,
    std: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw ``W ~ N(0, std^2)`` with the paper's default ``std = 1/sqrt(m)``.

    The draw happens on the CPU with its own generator, so the same seed gives the same
    initial weights on every device.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).

    Parameters
    ----------
    instances, n, m : int
        Batch of independent models, features, neurons.
    seed : int
        Seed of the generator.
    std : float, optional
        Standard deviation of each weight; ``None`` means ``1/sqrt(m)``.

    Returns
    -------
    torch.Tensor
        ``(instances, n, m)`` on the CPU.

    Examples
    --------
    >>> init_weights(2, 3, 4, seed=0).shape
    torch.Size([2, 3, 4])
    """
    std = 1.0 / math.sqrt(m) if std is None else std
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(instances, n, m, generator=gen, dtype=dtype) * std  # (instances, n, m)


def _preactivation(W: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(H, P)``: hidden activations ``W + noise`` and ``P[:, i, j] = H_i . W_j``."""
    H = W if noise is None else W + noise  # (instances, n, m)
    P = H @ W.transpose(-1, -2)  # (instances, n_in, n_out)
    return H, P


def reconstruction(W: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """All reconstructions at once: ``Y[:, i, j] = ReLU(W_j . (W_i + xi_i))``.

    Parameters
    ----------
    W : torch.Tensor
        ``(instances, n, m)`` or ``(n, m)``.
    noise : torch.Tensor, optional
        Hidden-layer noise ``xi``, broadcastable to ``W`` (row ``i`` is the noise added when the
        input is ``e_i``).

    Returns
    -------
    torch.Tensor
        ``(instances, n, n)``: row ``i`` is the output for input ``e_i``.
    """
    return torch.relu(_preactivation(W, noise)[1])


def reconstruction_loss(
    W: torch.Tensor, noise: torch.Tensor | None = None, interference: bool = True
) -> torch.Tensor:
    """Summed squared reconstruction error of each instance, shape ``(instances,)``.

    With ``interference=False`` only the diagonal terms ``(1 - ReLU(W_i . W_i))^2`` count: each
    feature is reconstructed as if the other features did not exist.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).
    """
    Y = reconstruction(W, noise)
    eye = torch.eye(W.shape[-2], dtype=W.dtype, device=W.device)
    err = (eye - Y) ** 2
    if not interference:
        err = err * eye
    return err.sum(dim=(-1, -2))


def loss_and_grad(
    W: torch.Tensor,
    l1: float = 0.0,
    noise: torch.Tensor | None = None,
    interference: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction loss per instance and the gradient of the full loss (with L1) in ``W``.

    With ``P = H W^T`` (``H = W + xi``), ``E = I - ReLU(P)`` and ``D = -2 E * [P > 0]`` the
    gradient is ``D W + D^T H``; without noise ``P`` and ``D`` are symmetric and it is ``2 D W``.
    The L1 term adds ``l1 * sign(W)``.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).

    Returns
    -------
    loss : torch.Tensor
        ``(instances,)`` reconstruction loss, *without* the L1 term.
    grad : torch.Tensor
        ``(instances, n, m)``.
    """
    H, P = _preactivation(W, noise)
    eye = torch.eye(W.shape[-2], dtype=W.dtype, device=W.device)
    E = eye - torch.relu(P)  # (instances, n, n)
    if not interference:
        E = E * eye
    loss = (E * E).sum(dim=(-1, -2))
    D = E.mul_(-2.0).mul_(P > 0)  # dL/dP, reusing E's memory
    if noise is None:
        grad = 2.0 * (D @ W)
    else:
        grad = D @ W + D.transpose(-1, -2) @ H
    if l1:
        grad.add_(torch.sign(W), alpha=l1)
    return loss, grad
