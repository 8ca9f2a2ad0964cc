"""Measurements on weight matrices ``W`` of shape ``(instances, n, m)`` (or ``(n, m)``).

**The book's definition of a polysemantic neuron** (every count in the book uses it unless it
says otherwise): feature ``i`` *uses* neuron ``k`` when ``0.8 <= |W_ik| <= 1.2``, and a neuron is
polysemantic when two or more features use it. This is the rule of the authors' code (the *band
rule*), so our counts compare directly with theirs; it presumes what training with a
winner-take-all force produces, encodings that are one-hot with norm about 1. Two other rules
appear only in sensitivity analyses, each with its own threshold:

- the *mass rule* (:func:`polysemantic_neurons_by_mass`): feature ``i`` uses neuron ``k`` when
  ``W_ik^2 >= share * ||W_i||^2`` (threshold ``share = 1/2``); it ignores the size of the weights;
- the *response rule* (``polysemantic_neurons_by_response``): feature ``i`` uses neuron ``k``
  when the neuron's activation for feature ``i`` alone, ``|W_ik|`` (or ``ReLU(W_ik)`` in a model
  with a ReLU on the hidden layer), exceeds ``threshold = 1/2``; it has no upper end.

``RULES`` names all three, and :func:`polysemantic_by_rule` counts with each.

All functions are pure: tensors in, tensors out, nothing modified. A ``W`` holding a NaN or an
infinity (a diverged run) is refused with a ``ValueError``: a NaN weight fails every comparison,
so it would otherwise be counted silently as "not in the band", making a broken model look
monosemantic.

What every metric accepts (anything else is a ``ValueError`` naming the argument):

- a ``torch.Tensor`` or a numpy array (converted to a tensor) of real numbers: a float tensor is
  used as it is (the book's float32 weights give exactly the numbers they always gave), an integer
  one is cast to float32; booleans and complex numbers are refused;
- of shape ``(..., n, m)``: at least two dimensions for the metrics of a whole matrix (the
  counts, ``polysemantic_sign_pattern``, :func:`one_hot_share`, :func:`start_end_overlap`),
  at least one for those of single weights or encodings (:func:`band_mask`, the ``uses_*``
  masks, :func:`winners`, :func:`winner_initial_rank`, :func:`fourth_norm`);
- ``m = 0`` means no neurons: no weight is in any band, no neuron is polysemantic (counts 0), a
  fourth norm is 0, no encoding is one-hot, overlaps are 0; :func:`winners` and
  :func:`winner_initial_rank` refuse it, since no neuron can win. :func:`one_hot_share` refuses
  ``n = 0`` (a share of no encodings);
- the metrics of two weight tensors of one problem (:func:`winner_initial_rank`,
  :func:`start_end_overlap`) need the same shape for both.
"""

from __future__ import annotations

import numpy as np
import torch

from .models import reconstruction_loss

__all__ = [
    "BAND",
    "band_mask",
    "polysemantic_neurons",
    "polysemantic_neurons_by_mass",
    "polysemantic_neurons_by_response",
    "polysemantic_by_rule",
    "winners",
    "winner_initial_rank",
    "fourth_norm",
    "one_hot_share",
    "start_end_overlap",
]

#: The band of the authors' code for a large weight, ``0.8 <= |W_ik| <= 1.2``.
#:
#: Introduced in the book: :ref:`superposition-m-equals-n` (chapter superposition).
BAND = (0.8, 1.2)


def finite(W: torch.Tensor, name: str = "W") -> torch.Tensor:
    """Return ``W`` unchanged; ``ValueError`` when it holds a NaN or an infinity."""
    if not bool(torch.isfinite(W).all()):
        raise ValueError(f"{name} must be finite, got a tensor with NaN or infinite entries (a diverged run?)")
    return W


def as_weights(W, name: str = "W", dims: int = 2) -> torch.Tensor:
    """``W`` as a real tensor of at least ``dims`` dimensions, checked as the module's docstring says.

    A float tensor comes back unchanged; a numpy array becomes a tensor and integers become float32.
    ``ValueError`` (naming ``name``) for any other type, booleans, complex numbers, too few
    dimensions, or a NaN or an infinity.
    """
    if isinstance(W, np.ndarray):
        if W.dtype.kind not in "fiu":
            raise ValueError(f"{name} must hold real numbers (a float or integer dtype), got numpy {W.dtype}")
        W = torch.from_numpy(np.array(W, order="C", copy=True))
    elif not isinstance(W, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or a numpy array, got {type(W).__name__}")
    if W.dtype == torch.bool or W.is_complex():
        raise ValueError(f"{name} must hold real numbers (a float or integer dtype), got {W.dtype}")
    if not W.is_floating_point():
        W = W.to(torch.float32)
    if W.dim() < dims:
        want = "(..., n, m)" if dims >= 2 else "(..., m)"
        raise ValueError(f"{name} must have shape {want}, at least {dims} dimension{'s' * (dims > 1)}, "
                         f"got shape {tuple(W.shape)}")
    return finite(W, name)


def _with_neurons(W: torch.Tensor, name: str, what: str) -> torch.Tensor:
    """``W`` unchanged; ``ValueError`` when it has no neurons (``m = 0``)."""
    if W.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one neuron (m >= 1) for {what}, got shape {tuple(W.shape)}")
    return W


def _same_problem(W_start, W_end) -> tuple[torch.Tensor, torch.Tensor]:
    """Both weights checked by :func:`as_weights`, of one shape, in one float dtype."""
    W_start, W_end = as_weights(W_start, "W_start", 1), as_weights(W_end, "W_end", 1)
    if W_start.shape != W_end.shape:
        raise ValueError(f"W_start and W_end must have the same shape (one problem: instances, n and m), "
                         f"got {tuple(W_start.shape)} and {tuple(W_end.shape)}")
    dtype = torch.promote_types(W_start.dtype, W_end.dtype)
    return W_start.to(dtype), W_end.to(dtype)


def band_mask(W: torch.Tensor, band: tuple[float, float] = BAND) -> torch.Tensor:
    """Boolean mask of the weights whose magnitude lies in ``band`` (inclusive).

    Introduced in the book: :ref:`superposition-m-equals-n` (chapter superposition).
    """
    W = as_weights(W, dims=1)
    lo, hi = band
    a = W.abs()
    return (a >= lo) & (a <= hi)


#: The band rule's "feature i uses neuron k": the mask of :func:`band_mask`.
uses_band = band_mask


def uses_by_mass(W: torch.Tensor, share: float = 0.5) -> torch.Tensor:
    """Mass rule: feature ``i`` uses neuron ``k`` when ``W_ik^2 >= share * ||W_i||^2``.

    With ``share = 0.5`` each feature uses at most one neuron (two could tie at exactly one half).
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    W = as_weights(W, dims=1)
    sq = W**2
    mass = sq.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(W.dtype).tiny)
    return sq >= share * mass


def uses_by_response(W: torch.Tensor, threshold: float = 0.5, relu: bool = False) -> torch.Tensor:
    """Response rule: feature ``i`` uses neuron ``k`` when its activation there exceeds ``threshold``.

    Input ``e_i`` gives neuron ``k`` the hidden activation ``W_ik``; the rule compares ``|W_ik|``
    with ``threshold``, or ``ReLU(W_ik)`` with ``relu=True`` (a model with a ReLU on the hidden
    layer, where a negative weight leaves the neuron silent).
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    W = as_weights(W, dims=1)
    return (W > threshold) if relu else (W.abs() > threshold)


def shared_neurons(uses: torch.Tensor) -> torch.Tensor:
    """Number of neurons that two or more features use, from a ``(..., n, m)`` "uses" mask."""
    return (uses.sum(dim=-2) >= 2).sum(dim=-1)


def polysemantic_neurons(W: torch.Tensor, band: tuple[float, float] = BAND) -> torch.Tensor:
    """The book's definition: neurons on which two or more features have a weight in ``band``.

    This is the band rule of the authors' code (see the module's docstring for the other rules).

    Introduced in the book: :ref:`neurons-not-directions` (chapter superposition).

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
    return shared_neurons(uses_band(as_weights(W), band))


def polysemantic_neurons_by_mass(W: torch.Tensor, share: float = 0.5) -> torch.Tensor:
    """Mass rule (sensitivity only): neurons on which two or more features put >= ``share`` of their L2 mass.

    Unlike the band rule it does not care whether the weights have grown to about 1; its
    threshold is ``share``.

    >>> W = torch.tensor([[0.3, 0.1], [-0.2, 0.0], [0.0, 2.0]])  # small weights, same pattern
    >>> int(polysemantic_neurons_by_mass(W)), int(polysemantic_neurons(W))
    (1, 0)

    Introduced in the book: :ref:`neurons-not-directions` (chapter superposition).
    """
    return shared_neurons(uses_by_mass(as_weights(W), share))


def polysemantic_neurons_by_response(W: torch.Tensor, threshold: float = 0.5, relu: bool = False) -> torch.Tensor:
    """Response rule: neurons whose activation exceeds ``threshold`` for two or more features.

    A sensitivity rule for the tied autoencoder; with ``relu=True`` the headline rule of the
    superposition chapter, whose hidden-ReLU model switches a neuron on only by a positive weight.

    Introduced in the book: :ref:`neurons-not-directions` (chapter superposition).

    >>> W = torch.tensor([[0.9, 0.0], [0.7, -0.8], [0.1, 1.0]])
    >>> int(polysemantic_neurons_by_response(W)), int(polysemantic_neurons_by_response(W, relu=True))
    (2, 1)
    """
    return shared_neurons(uses_by_response(as_weights(W), threshold, relu))


#: The three rules by name, each with what it means; ``"band"`` is :data:`DEFINITION`.
RULES = {
    "band": "the book's definition: 0.8 <= |W_ik| <= 1.2 for two or more features",
    "mass": "two or more features with W_ik^2 >= 1/2 of ||W_i||^2",
    "response": "two or more features with |W_ik| > 1/2",
}
#: The name of the book's definition in :data:`RULES`.
DEFINITION = "band"


def polysemantic_by_rule(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """Counts of polysemantic neurons under each rule of ``RULES``, at their default thresholds.

    Introduced in the book: :ref:`verdict-noise-poly` (chapter noise).
    """
    W = as_weights(W)
    return {
        "band": polysemantic_neurons(W),
        "mass": polysemantic_neurons_by_mass(W),
        "response": polysemantic_neurons_by_response(W),
    }


def polysemantic_sign_pattern(W: torch.Tensor, band: tuple[float, float] = BAND) -> torch.Tensor:
    """Split the band-rule polysemantic neurons by the signs of their in-band weights.

    Returns
    -------
    torch.Tensor
        Shape ``W.shape[:-2] + (2,)``: ``[..., 0]`` neurons whose in-band weights have mixed signs,
        ``[..., 1]`` neurons whose in-band weights all share one sign.
    """
    W = as_weights(W)
    mask = band_mask(W, band)
    poly = mask.sum(dim=-2) >= 2
    has_pos = (mask & (W > 0)).any(dim=-2)
    has_neg = (mask & (W < 0)).any(dim=-2)
    mixed = (poly & has_pos & has_neg).sum(dim=-1)
    same = (poly & ~(has_pos & has_neg)).sum(dim=-1)
    return torch.stack([mixed, same], dim=-1)


def winners(W: torch.Tensor) -> torch.Tensor:
    """The neuron with the largest ``|W_ik|`` for each feature, shape ``W.shape[:-1]``.

    Introduced in the book: :ref:`sensitivity` (chapter collisions).
    """
    return _with_neurons(as_weights(W, dims=1), "W", "winners").abs().argmax(dim=-1)


def winner_initial_rank(W_start: torch.Tensor, W_end: torch.Tensor) -> torch.Tensor:
    """Where each feature's final winning neuron stood at the start, shape ``W_end.shape[:-1]``.

    0 means the final winner was the initial arg-max of ``|W_ik|`` (the "initial leader wins"
    story), 1 the runner-up, and so on. ``(rank == 0).float().mean()`` is the fraction of
    features won by their initial leader, ``(rank < 3)`` the fraction won from the initial top 3.

    Introduced in the book: :ref:`verdict-noise-poly` (chapter noise).

    Examples
    --------
    >>> W0 = torch.tensor([[0.5, -0.9, 0.1]])
    >>> winner_initial_rank(W0, torch.tensor([[0.0, -1.0, 0.0]])).tolist()
    [0]
    >>> winner_initial_rank(W0, torch.tensor([[1.0, 0.0, 0.0]])).tolist()
    [1]
    """
    W_start, W_end = _same_problem(W_start, W_end)
    _with_neurons(W_end, "W_end", "a winner")
    win = winners(W_end).unsqueeze(-1)  # (..., n, 1)
    start = W_start.abs()
    return (start > start.gather(-1, win)).sum(dim=-1)


def fourth_norm(W: torch.Tensor) -> torch.Tensor:
    """Sparsity of each encoding: ``sum_k W_ik^4``, shape ``W.shape[:-1]``.

    It is 1 for a one-hot unit encoding and about ``3/m`` for a dense random unit encoding.

    Introduced in the book: :ref:`verdict-noise-poly` (chapter noise).
    """
    return as_weights(W, dims=1).pow(4).sum(dim=-1)


def one_hot_share(W: torch.Tensor, tol: float = 1e-3) -> torch.Tensor:
    """Share of encodings with exactly one weight above ``tol`` in magnitude, shape ``W.shape[:-2]``.

    It tells whether the winner-take-all dynamic has finished: 1 when every feature is one-hot.

    >>> one_hot_share(torch.tensor([[1.0, 0.0], [0.5, 0.5]])).item()
    0.5

    Introduced in the book: :ref:`sharing-cost` (chapter cooccurrence).
    """
    W = as_weights(W)
    if W.shape[-2] == 0:
        raise ValueError(f"W must have at least one feature (n >= 1) for a share of encodings, "
                         f"got shape {tuple(W.shape)}")
    return ((W.abs() > tol).sum(dim=-1) == 1).double().mean(dim=-1)


def start_end_overlap(W_start: torch.Tensor, W_end: torch.Tensor) -> torch.Tensor:
    """``W_start W_end^T``: entry ``[i, j]`` is the overlap of initial encoding ``i`` with final ``j``.

    Introduced in the book: :ref:`leaders-to-winners` (chapter collisions).
    """
    W_start, W_end = _same_problem(W_start, W_end)
    if W_start.dim() < 2:
        raise ValueError(f"W_start must have shape (..., n, m), at least 2 dimensions, "
                         f"got shape {tuple(W_start.shape)}")
    return W_start @ W_end.transpose(-1, -2)
