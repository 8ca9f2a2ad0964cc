"""Measurements on weight matrices ``W`` of shape ``(instances, n, m)`` (or ``(n, m)``).

All functions are pure: tensors in, tensors out, nothing modified. A ``W`` holding a NaN or an
infinity (a diverged run) is refused with a ``ValueError``: a NaN weight fails every comparison,
so it would otherwise be counted silently as "not in the band", making a broken model look
monosemantic.
"""

from __future__ import annotations

import torch

from .models import reconstruction_loss

__all__ = [
    "BAND",
    "finite",
    "band_mask",
    "polysemantic_neurons",
    "polysemantic_neurons_by_mass",
    "polysemantic_sign_pattern",
    "winners",
    "winner_initial_rank",
    "fourth_norm",
    "start_end_overlap",
    "reconstruction_loss",
]

#: The band of the authors' code for a large weight, ``0.8 <= |W_ik| <= 1.2``.
BAND = (0.8, 1.2)


def finite(W: torch.Tensor, name: str = "W") -> torch.Tensor:
    """Return ``W`` unchanged; ``ValueError`` when it holds a NaN or an infinity."""
    if not bool(torch.isfinite(W).all()):
        raise ValueError(f"{name} must be finite, got a tensor with NaN or infinite entries (a diverged run?)")
    return W


def band_mask(W: torch.Tensor, band: tuple[float, float] = BAND) -> torch.Tensor:
    """Boolean mask of the weights whose magnitude lies in ``band`` (inclusive)."""
    finite(W)
    lo, hi = band
    a = W.abs()
    return (a >= lo) & (a <= hi)


def polysemantic_neurons(W: torch.Tensor, band: tuple[float, float] = BAND) -> torch.Tensor:
    """Number of neurons on which two or more features have a weight in ``band``.

    This is the rule of the authors' code.

    Returns
    -------
    torch.Tensor
        Integer counts, shape ``W.shape[:-2]`` (one per instance).

    Examples
    --------
    >>> W = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])  # features 0 and 1 share neuron 0
    >>> int(polysemantic_neurons(W))
    1
    """
    return (band_mask(W, band).sum(dim=-2) >= 2).sum(dim=-1)


def polysemantic_neurons_by_mass(W: torch.Tensor, share: float = 0.5) -> torch.Tensor:
    """Threshold-free count: neurons on which two or more features put >= ``share`` of their L2 mass.

    Feature ``i`` *uses* neuron ``k`` when ``W_ik^2 >= share * ||W_i||^2``; with ``share = 0.5``
    each feature uses at most one neuron (two could tie at exactly one half). Unlike the band rule
    it does not care whether the weights have grown to about 1.
    """
    sq = finite(W) ** 2
    mass = sq.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(W.dtype).tiny)
    uses = sq >= share * mass
    return (uses.sum(dim=-2) >= 2).sum(dim=-1)


def polysemantic_sign_pattern(W: torch.Tensor, band: tuple[float, float] = BAND) -> torch.Tensor:
    """Split the band-rule polysemantic neurons by the signs of their in-band weights.

    Returns
    -------
    torch.Tensor
        Shape ``W.shape[:-2] + (2,)``: ``[..., 0]`` neurons whose in-band weights have mixed signs,
        ``[..., 1]`` neurons whose in-band weights all share one sign.
    """
    mask = band_mask(W, band)
    poly = mask.sum(dim=-2) >= 2
    has_pos = (mask & (W > 0)).any(dim=-2)
    has_neg = (mask & (W < 0)).any(dim=-2)
    mixed = (poly & has_pos & has_neg).sum(dim=-1)
    same = (poly & ~(has_pos & has_neg)).sum(dim=-1)
    return torch.stack([mixed, same], dim=-1)


def winners(W: torch.Tensor) -> torch.Tensor:
    """The neuron with the largest ``|W_ik|`` for each feature, shape ``W.shape[:-1]``."""
    return finite(W).abs().argmax(dim=-1)


def winner_initial_rank(W_start: torch.Tensor, W_end: torch.Tensor) -> torch.Tensor:
    """Where each feature's final winning neuron stood at the start, shape ``W_end.shape[:-1]``.

    0 means the final winner was the initial arg-max of ``|W_ik|`` (the "initial leader wins"
    story), 1 the runner-up, and so on. ``(rank == 0).float().mean()`` is the fraction of
    features won by their initial leader, ``(rank < 3)`` the fraction won from the initial top 3.

    Examples
    --------
    >>> W0 = torch.tensor([[0.5, -0.9, 0.1]])
    >>> winner_initial_rank(W0, torch.tensor([[0.0, -1.0, 0.0]])).tolist()
    [0]
    >>> winner_initial_rank(W0, torch.tensor([[1.0, 0.0, 0.0]])).tolist()
    [1]
    """
    win = winners(W_end).unsqueeze(-1)  # (..., n, 1)
    start = W_start.abs()
    return (start > start.gather(-1, win)).sum(dim=-1)


def fourth_norm(W: torch.Tensor) -> torch.Tensor:
    """Sparsity of each encoding: ``sum_k W_ik^4``, shape ``W.shape[:-1]``.

    It is 1 for a one-hot unit encoding and about ``3/m`` for a dense random unit encoding.
    """
    return finite(W).pow(4).sum(dim=-1)


def start_end_overlap(W_start: torch.Tensor, W_end: torch.Tensor) -> torch.Tensor:
    """``W_start W_end^T``: entry ``[i, j]`` is the overlap of initial encoding ``i`` with final ``j``."""
    return W_start @ W_end.transpose(-1, -2)
