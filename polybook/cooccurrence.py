"""Features that are active together: what co-occurrence does to incidental polysemanticity.

The paper's inputs are the basis vectors ``e_i``: one feature at a time. Here an input may also be
a *pair* ``e_i + e_j``. The data are a finite list of inputs, the rows of ``X`` (``(R, n)``), each
with a probability, and the loss is their expected summed squared error times ``n``::

    L(W) = n * sum_r prob_r * || x_r - ReLU(W W^T x_r) ||^2 + l1 * sum_{i,k} |W_ik|.

Every input is seen in every step with its weight ``n prob_r`` (full batch, no sampling), so a
run is deterministic. With only the ``n`` singletons, each of probability ``1/n``, this is exactly
the loss of :mod:`polybook.models`.

**The co-occurrence level** ``q`` is the share of inputs that hold two active features. A
singleton ``e_i`` has probability ``(1 - q)/n``; the rest, ``q``, is spread evenly over the
*allowed* pairs: every pair (uniform co-occurrence) or only pairs inside a group (structured
co-occurrence: features in ``groups`` equal blocks, and features of different blocks never
active together). The L1 term stays on the weights, as in the rest of the book.

What the chapter needs:

- the inputs and their weights (:func:`input_weights`), the loss and its hand-written gradient
  (``loss_and_grad``), and one training loop for many instances at once (:func:`train_inputs`);
- the derivation's numbers: the two-feature loss with co-occurrence (:func:`two_feature_loss`),
  the pair's weight and the level where it matches L1 (:func:`pair_weight`, :func:`balance_level`);
- the birthday argument restricted to pairs that never co-occur (``restricted_birthday``);
- the ``cooccurrence`` experiment (:class:`CoocConfig`, ``run_cooccurrence``) and which pairs
  end up sharing a neuron (``shared_pairs``);
- an explorer (:func:`explorer_figure`, :func:`explorer`).

Shapes: ``W`` is ``(instances, n, m)``; ``X`` is ``(R, n)``; input weights are ``(instances, R)``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _validate as check
from .experiments import register
from .metrics import (
    band_mask,
    one_hot_share,
    polysemantic_neurons,
    polysemantic_neurons_by_mass,
    polysemantic_sign_pattern,
)
from .models import init_weights
from .plots import PALETTE
from .theory import expected_polysemantic_exact, predicted_polysemantic
from .train import CHECK_EVERY, OPTIMIZERS, _optimizer, check_finite, one_cpu_thread, resolve_device, sample_noise

__all__ = [
    "input_weights",
    "train_inputs",
    "two_feature_loss",
    "pair_weight",
    "balance_level",
    "CoocConfig",
    "level_rows",
    "vanishing_level",
    "plot_levels",
    "explorer_figure",
    "explorer",
    "InputsRun",
]


# --------------------------------------------------------------------------- inputs


def pair_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n(n-1)/2`` pairs ``i < j`` as two index arrays, in the order of the rows of the pair inputs.

    >>> [a.tolist() for a in pair_index(3)]
    [[0, 0, 1], [1, 2, 2]]
    """
    check.integer("n", n, minimum=2)
    return np.triu_indices(n, k=1)


def _group_of(n: int, groups: int) -> np.ndarray:
    check.integer("groups", groups)
    if n % groups:
        check.fail("groups", groups, f"a divisor of n = {n}")
    return np.arange(n) // (n // groups)


def input_weights(n: int, level: float, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs (singletons, then every pair) and their weights in the loss at co-occurrence ``level``.

    Introduced in the book: :ref:`sharing-cost` (chapter cooccurrence).

    Parameters
    ----------
    n : int
        Features (at least 2).
    level : float
        ``q``, the share of inputs with two active features, in ``[0, 1]``.
    groups : int
        Features ``0..n-1`` form ``groups`` equal blocks; only pairs inside a block co-occur.
        ``1`` is uniform co-occurrence.

    Returns
    -------
    X : torch.Tensor
        ``(n + n(n-1)/2, n)``: the ``n`` basis vectors, then ``e_i + e_j`` for every pair ``i < j``.
    weight : torch.Tensor
        ``(n + n(n-1)/2,)``: ``n`` times each input's probability, so the weights add up to ``n``;
        singletons ``1 - q``, each allowed pair ``n q / (allowed pairs)``, the others 0.

    Examples
    --------
    >>> X, w = input_weights(3, 0.3)
    >>> X.tolist()[3:], [round(v, 3) for v in w.tolist()]
    ([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], [0.7, 0.7, 0.7, 0.3, 0.3, 0.3])
    """
    check.integer("n", n, minimum=2)
    check.number("level", level, 0.0, maximum=1.0)
    group = _group_of(n, groups)
    ii, jj = pair_index(n)
    X = torch.cat([torch.eye(n), torch.zeros(len(ii), n)])
    X[n + np.arange(len(ii)), ii] = 1.0
    X[n + np.arange(len(ii)), jj] = 1.0
    allowed = torch.from_numpy(group[ii] == group[jj])
    if groups > 1 and n // groups < 2:
        check.fail("groups", groups, f"at most n/2 = {n // 2} (every group needs two features to co-occur)")
    weight = torch.cat([torch.full((n,), 1.0 - level), allowed.float() * (n * level / int(allowed.sum()))])
    return X, weight


# --------------------------------------------------------------------------- loss and training


def loss_and_grad(
    W: torch.Tensor, X: torch.Tensor, weight: torch.Tensor, l1: float = 0.0, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted reconstruction loss of the inputs ``X`` per instance, and the gradient of the full loss.

    Without noise the outputs are ``P = X G`` with ``G = W W^T``; with ``D = dL/dP =
    -2 weight (X - ReLU(P)) [P > 0]`` the gradient is ``(X^T D + D^T X) W``. With hidden-layer
    noise ``xi`` (``(instances, R, m)``, row ``r`` added to the hidden layer of input ``r``) the
    hidden layer is ``H = X W + xi``, the outputs ``P = H W^T`` and the gradient
    ``D^T H + X^T D W``. The L1 term adds ``l1 * sign(W)``.

    Parameters
    ----------
    W : torch.Tensor
        ``(instances, n, m)``.
    X : torch.Tensor
        ``(R, n)`` inputs.
    weight : torch.Tensor
        ``(R,)`` or ``(instances, R)``: each input's weight in the loss.

    Returns
    -------
    loss : torch.Tensor
        ``(instances,)``, without the L1 term.
    grad : torch.Tensor
        ``(instances, n, m)``.

    Examples
    --------
    >>> W = torch.tensor([[[1.0], [-1.0]]])  # two features share one neuron with opposite signs
    >>> X, w = input_weights(2, 0.0)
    >>> float(loss_and_grad(W, X, w)[0])  # one at a time: perfect
    0.0
    >>> X, w = input_weights(2, 0.5)
    >>> round(float(loss_and_grad(W, X, w)[0]), 6)  # half the inputs are the pair: both its outputs lost
    2.0
    """
    if noise is None:
        return _loss_and_grad(W, X, _scaled_inputs(X, weight), weight, l1)
    wt = weight.unsqueeze(-1)  # (R, 1) or (instances, R, 1)
    H = X @ W + noise  # (instances, R, m)
    P = H @ W.transpose(-1, -2)  # (instances, R, n)
    E = X - torch.relu(P)
    loss = (wt * E * E).sum(dim=(-1, -2))
    D = -2.0 * wt * E * (P > 0)  # dL/dP
    grad = D.transpose(-1, -2) @ H + X.transpose(-1, -2) @ (D @ W)
    if l1:
        grad = grad + l1 * torch.sign(W)
    return loss, grad


def _scaled_inputs(X: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``(-2 weight_r X_r)^T``: ``(n, R)`` or ``(instances, n, R)``, what ``X^T D`` needs."""
    return (-2.0 * weight.unsqueeze(-1) * X).transpose(-1, -2)


def _loss_and_grad(W, X, XsT, weight, l1):
    """:func:`loss_and_grad` without noise, with few passes over the ``(instances, R, n)`` outputs."""
    G = W @ W.transpose(-1, -2)  # (instances, n, n)
    P = (X @ G).clamp_(min=0.0)  # ReLU(X G), (instances, R, n)
    E = X - P
    loss = (torch.linalg.vector_norm(E, dim=-1).square_() * weight).sum(dim=-1)
    E.mul_(P > 0)  # the gradient flows only where the ReLU is on (X G > 0 exactly where ReLU(X G) > 0)
    dG = XsT @ E  # (instances, n, n)
    grad = (dG + dG.transpose(-1, -2)) @ W
    if l1:
        grad.add_(torch.sign(W), alpha=l1)
    return loss, grad


@dataclass
class InputsRun:
    """What :func:`train_inputs` returns (tensors on the CPU): ``W0``, ``W`` ``(instances, n, m)``,
    ``losses`` ``(steps, instances)`` before each update, ``seconds``, ``device``.

    Introduced in the book: :doc:`/book/cooccurrence` (chapter cooccurrence).
    """

    W0: torch.Tensor
    W: torch.Tensor
    losses: torch.Tensor
    seconds: float
    device: str


@dataclass(frozen=True)
class _Opt:
    optimizer: str
    lr: float
    weight_decay: float
    steps: int


def train_inputs(
    W0: torch.Tensor,
    X: torch.Tensor,
    weight: torch.Tensor,
    *,
    steps: int,
    lr: float = 1e-3,
    l1: float = 1e-3,
    optimizer: str = "adamw",
    weight_decay: float = 0.0,
    noise: str = "none",
    sigma: float = 0.0,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    desc: str | None = None,
) -> InputsRun:
    """Train the tied ReLU autoencoder on the weighted inputs ``X``, every instance at once.

    The loop is :func:`polybook.train`'s (same optimisers, same divergence checks every
    ``polybook.train.CHECK_EVERY`` steps) with the loss of ``loss_and_grad``. On the CPU
    it runs on one thread (restored afterwards). Noise (one of
    ``polybook.train.NOISE_KINDS``) is drawn independently per instance, input and neuron.

    Introduced in the book: :ref:`sharing-cost` (chapter cooccurrence).

    Parameters
    ----------
    W0 : torch.Tensor
        ``(instances, n, m)`` initial weights.
    X, weight : torch.Tensor
        ``(R, n)`` inputs; ``(R,)`` or ``(instances, R)`` weights (:func:`input_weights`).

    Examples
    --------
    >>> X, w = input_weights(4, 0.1)
    >>> run = train_inputs(init_weights(2, 4, 8), X, w, steps=5)
    >>> tuple(run.W.shape), tuple(run.losses.shape)
    ((2, 4, 8), (5, 2))
    """
    check.integer("steps", steps)
    check.number("lr", lr, 0.0, strict=True)
    check.number("l1", l1)
    check.choice("optimizer", optimizer, OPTIMIZERS)
    check.number("weight_decay", weight_decay)
    check.number("sigma", sigma)
    if W0.dim() != 3 or X.dim() != 2 or X.shape[1] != W0.shape[1]:
        raise ValueError(f"W0 must be (instances, n, m) and X (R, n) with the same n, got {tuple(W0.shape)} "
                         f"and {tuple(X.shape)}")
    if weight.shape[-1] != X.shape[0] or (weight.dim() == 2 and weight.shape[0] != W0.shape[0]) or weight.dim() > 2:
        raise ValueError(f"weight must be (R,) or (instances, R) = ({X.shape[0]},) or ({W0.shape[0]}, {X.shape[0]}), "
                         f"got {tuple(weight.shape)}")
    dev = resolve_device(device)
    opt_cfg = _Opt(optimizer, lr, weight_decay, steps)
    W = W0.detach().to(device=dev, dtype=torch.float32).clone().requires_grad_(True)
    X, weight = X.to(dev, torch.float32), weight.to(dev, torch.float32)
    XsT = _scaled_inputs(X, weight)
    opt = _optimizer(opt_cfg, W)
    gen = torch.Generator(device=dev).manual_seed(seed + 1_000_003)
    losses = torch.empty(steps, W.shape[0], device=dev)
    start = time.perf_counter()
    with one_cpu_thread(dev):
        with torch.no_grad():
            for t in tqdm(range(steps), desc=desc, disable=not progress, file=sys.stderr, mininterval=0.5, leave=False):
                if noise == "none":
                    loss, grad = _loss_and_grad(W, X, XsT, weight, l1)
                else:
                    xi = sample_noise(noise, sigma, (W.shape[0], X.shape[0], W.shape[2]), gen, dev)
                    loss, grad = loss_and_grad(W, X, weight, l1, xi)
                losses[t] = loss
                W.grad = grad
                opt.step()
                if (t + 1) % CHECK_EVERY == 0 or t + 1 == steps:
                    check_finite(W, losses[max(0, t + 1 - CHECK_EVERY):t + 1], t + 1, opt_cfg, desc)
    return InputsRun(W0.detach().cpu().clone(), W.detach().cpu(), losses.cpu(), time.perf_counter() - start, str(dev))


# --------------------------------------------------------------------------- the derivation


def two_feature_loss(a, b, level: float = 0.0) -> np.ndarray:
    """Loss of two features that both live on one neuron (weights ``a`` and ``b``) at co-occurrence ``level``.

    The package's own loss (``loss_and_grad``) on an ``n = 2``, ``m = 1`` model, where a
    share ``level`` of the inputs is the pair ``e_1 + e_2``::

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
    loss, _ = loss_and_grad(W, X, weight)
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


def restricted_birthday(n: int, m: int, groups: int, trials: int = 20000, seed: int = 0) -> dict[str, float]:
    """The birthday argument restricted to pairs of features that never co-occur, by simulation.

    Winners are uniform on the ``m`` neurons and independent, signs fair; features form ``groups``
    equal blocks, and pairs inside a block co-occur (so they cannot share a neuron for free). A
    neuron counts as polysemantic when it holds a positive and a negative feature from different
    blocks. ``groups = n`` (blocks of one: nothing co-occurs) is the paper's setting, whose mean is
    :func:`~polybook.theory.expected_polysemantic_exact`; ``groups = 1`` gives 0.

    Returns
    -------
    dict
        ``mean`` and ``sem`` of the simulated count, and ``first_order``: the number of allowed
        (never co-occurring) pairs over ``2m``, the analogue of ``n^2/(4m)``.

    Examples
    --------
    >>> r = restricted_birthday(32, 128, 2, trials=4000)
    >>> r["first_order"]
    1.0
    """
    check.integer("m", m)
    check.integer("trials", trials, minimum=2)
    group = torch.from_numpy(_group_of(n, groups))
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(trials, dtype=torch.float64)
    for lo in range(0, trials, 1000):  # in chunks, so memory stays small at large m
        t = min(1000, trials - lo)
        win = torch.randint(0, m, (t, n), generator=gen)
        pos = torch.randint(0, 2, (t, n), generator=gen).bool()
        cell = win * groups + group  # (neuron, block) of each feature
        present = torch.zeros(t, m * groups, dtype=torch.bool)
        present.scatter_(1, cell, True)
        # neuron m is a spare slot that collects the features of the other sign
        has_pos = torch.zeros(t, m + 1, dtype=torch.bool).scatter_(1, torch.where(pos, win, m), True)[:, :m]
        has_neg = torch.zeros(t, m + 1, dtype=torch.bool).scatter_(1, torch.where(pos, m, win), True)[:, :m]
        blocks = present.view(t, m, groups).sum(-1)
        total[lo:lo + t] = (has_pos & has_neg & (blocks >= 2)).sum(-1).double()
    ii, jj = pair_index(n)
    never = int((group.numpy()[ii] != group.numpy()[jj]).sum())
    return {"mean": float(total.mean()), "sem": float(total.std() / math.sqrt(trials)), "first_order": never / (2 * m)}


def shared_pairs(W: torch.Tensor, groups: int) -> dict[str, list[int]]:
    """Pairs of features sharing a band-rule polysemantic neuron, split by whether they co-occur.

    Parameters
    ----------
    W : torch.Tensor
        ``(instances, n, m)``.
    groups : int
        The blocks of :func:`input_weights` (pairs inside a block co-occur).

    Returns
    -------
    dict
        ``within`` and ``across``: per instance, the number of in-band feature pairs on a shared
        neuron whose features are in the same block (co-occur) or in different blocks (never do).

    Examples
    --------
    >>> W = torch.tensor([[[1.0, 0], [-1.0, 0], [0, 1.0], [0, -1.0]]])  # 0-1 share, 2-3 share
    >>> shared_pairs(W, 2)
    {'within': [2], 'across': [0]}
    """
    group = _group_of(W.shape[-2], groups)
    mask = band_mask(W)
    within, across = [], []
    for b in range(W.shape[0]):
        w_ = a_ = 0
        for k in torch.nonzero(mask[b].sum(0) >= 2).flatten().tolist():
            feats = torch.nonzero(mask[b, :, k]).flatten().tolist()
            for x, i in enumerate(feats):
                for j in feats[x + 1:]:
                    if group[i] == group[j]:
                        w_ += 1
                    else:
                        a_ += 1
        within.append(w_)
        across.append(a_)
    return {"within": within, "across": across}


# --------------------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class CoocConfig:
    """The paper's L1 setting trained on inputs that are sometimes pairs of features.

    One batched program trains, from the same ``instances`` initial weights (seed ``seed``):

    - every co-occurrence level in ``levels`` (uniform: every pair equally likely), the first 0;
    - structured co-occurrence at ``structured_level`` for each entry of ``groups`` (features in
      that many blocks; pairs co-occur only inside a block).

    The comparisons between levels are therefore paired: a level changes only the data.

    Introduced in the book: :ref:`sharing-cost` (chapter cooccurrence).
    """

    n: int = 32
    m: int = 128
    instances: int = 24
    steps: int = 7000
    lr: float = 1e-3
    l1: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    levels: tuple[float, ...] = (0.0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)
    groups: tuple[int, ...] = (2, 4)
    structured_level: float = 0.128
    seed: int = 0

    def __post_init__(self) -> None:
        check.integer("n", self.n, minimum=4)
        check.integer("m", self.m)
        check.integer("instances", self.instances, minimum=2)
        check.integer("steps", self.steps)
        check.number("lr", self.lr, 0.0, strict=True)
        check.number("l1", self.l1)
        check.choice("optimizer", self.optimizer, OPTIMIZERS)
        check.number("weight_decay", self.weight_decay)
        if not isinstance(self.levels, tuple) or not self.levels or self.levels[0] != 0:
            check.fail("levels", self.levels, "a non-empty tuple of levels in [0, 1] starting with 0")
        for q in self.levels:
            check.number("levels", q, 0.0, maximum=1.0)
        if self.groups:
            check.integers("groups", self.groups, minimum=2, maximum=self.n // 2)
            for g in self.groups:
                _group_of(self.n, g)
        check.number("structured_level", self.structured_level, 0.0, maximum=1.0)
        check.seed("seed", self.seed)

    def weights(self) -> torch.Tensor:
        """Input weights of every setting, ``(levels + groups, R)``: the levels first, then the groups."""
        rows = [input_weights(self.n, q)[1] for q in self.levels]
        rows += [input_weights(self.n, self.structured_level, g)[1] for g in self.groups]
        return torch.stack(rows)

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory: about eight ``(instances, R, n)`` float tensors and eight of the weights."""
        B = self.instances * (len(self.levels) + len(self.groups))
        R = self.n + self.n * (self.n - 1) // 2
        return 4 * (8 * B * R * self.n + 8 * B * self.n * self.m + 2 * B * R * self.n)

    def flops(self) -> float:
        """Floating-point operations: two ``R x n x n`` products and two Gram-sized ones per instance and step."""
        B = self.instances * (len(self.levels) + len(self.groups))
        R = self.n + self.n * (self.n - 1) // 2
        return float(B * self.steps * (4 * R * self.n**2 + 4 * self.n**2 * self.m))


def _summary(W: torch.Tensor, losses: torch.Tensor, X: torch.Tensor, weight: torch.Tensor) -> dict:
    """The numbers kept for one setting: counts per instance, sign split, sparsity and losses."""
    n = W.shape[-2]
    signs = polysemantic_sign_pattern(W)
    pair_w = weight.clone()
    pair_w[:n] = 0
    pair_loss, _ = loss_and_grad(W, X, pair_w)
    return {
        "polysemantic": polysemantic_neurons(W).tolist(),
        "polysemantic_by_mass": polysemantic_neurons_by_mass(W).tolist(),
        "same_sign": signs[:, 1].tolist(),
        "one_hot": round(float(one_hot_share(W).mean()), 6),
        "loss": [round(float(v), 6) for v in losses[-1]],
        "pair_loss": [round(float(v), 6) for v in pair_loss],
    }


@register(
    "cooccurrence",
    "polysemantic neurons when features co-occur: uniform pairs at levels from 0 up, and mutually exclusive groups",
    book=CoocConfig(),
    paper=CoocConfig(n=64, m=512, instances=32, steps=10000),
)
def run_cooccurrence(cfg: CoocConfig, device: torch.device, progress: bool = True) -> dict:
    """Counts per instance at every level and for every grouping, with the predictions beside them.

    ``results``: ``level`` (the share of inputs that are pairs, 0 first), ``polysemantic`` (per level,
    one band-rule count per instance), ``polysemantic_by_mass``, ``same_sign``, ``one_hot``, ``loss``
    and ``pair_loss`` (per instance: the reconstruction loss and the part of it on pair inputs),
    ``structured`` (per grouping: the same, plus ``within`` and ``across``, the pairs on shared
    neurons inside a block and across blocks, and ``predicted``, the restricted birthday mean),
    and the level-0 predictions ``predicted`` (``n^2/(4m)``) and ``predicted_exact``.
    """
    X, _ = input_weights(cfg.n, 0.0)
    weights = cfg.weights()  # (settings, R)
    S, I = weights.shape[0], cfg.instances
    W0 = init_weights(I, cfg.n, cfg.m, seed=cfg.seed)
    run = train_inputs(W0.repeat(S, 1, 1), X, weights.repeat_interleave(I, dim=0), steps=cfg.steps, lr=cfg.lr,
                       l1=cfg.l1, optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, seed=cfg.seed,
                       device=str(device), progress=progress, desc="cooccurrence")
    parts = [_summary(run.W[s * I:(s + 1) * I], run.losses[:, s * I:(s + 1) * I], X, weights[s]) for s in range(S)]
    L = len(cfg.levels)
    out = {"n": cfg.n, "m": cfg.m, "level": list(cfg.levels)}
    for key in parts[0]:
        out[key] = [p[key] for p in parts[:L]]
    out["structured"] = []
    for g, p, s in zip(cfg.groups, parts[L:], range(L, S)):
        sim = restricted_birthday(cfg.n, cfg.m, g, trials=20000, seed=cfg.seed)
        out["structured"].append({"groups": g, "level": cfg.structured_level, **p,
                                  **shared_pairs(run.W[s * I:(s + 1) * I], g),
                                  "predicted": round(sim["mean"], 4), "predicted_sem": round(sim["sem"], 4),
                                  "predicted_first_order": sim["first_order"]})
    out["predicted"] = predicted_polysemantic(cfg.n, cfg.m)
    out["predicted_exact"] = round(expected_polysemantic_exact(cfg.n, cfg.m), 6)
    return out


def replay_cooccurrence(record: dict, settings: Sequence[int] = (0,), instances: int = 2, device: str = "cpu") -> dict:
    """Re-train a cheap slice of a stored ``cooccurrence`` record and return both sets of counts.

    The slice is the first ``instances`` instances of the levels numbered ``settings``, trained from
    the very same initial weights (the stored run's draw, sliced). Returns ``{"stored": [...],
    "replayed": [...]}``, one list of band-rule counts per level.
    """
    if record.get("experiment") != "cooccurrence":
        raise ValueError(f"record must be a cooccurrence result, got {record.get('experiment')!r}")
    conf = record["config"]
    cfg = CoocConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in conf.items()})
    X, _ = input_weights(cfg.n, 0.0)
    weights = cfg.weights()[list(settings)]
    W0 = init_weights(cfg.instances, cfg.n, cfg.m, seed=cfg.seed)[:instances]
    run = train_inputs(W0.repeat(len(settings), 1, 1), X, weights.repeat_interleave(instances, dim=0),
                       steps=cfg.steps, lr=cfg.lr, l1=cfg.l1, optimizer=cfg.optimizer,
                       weight_decay=cfg.weight_decay, seed=cfg.seed, device=device)
    counts = polysemantic_neurons(run.W).view(len(settings), instances).tolist()
    return {"stored": [record["results"]["polysemantic"][s][:instances] for s in settings], "replayed": counts}


def level_rows(record: dict) -> list[dict]:
    """One row per level of a ``cooccurrence`` record (the whole record or its ``results``).

    Keys: ``level``, ``mean`` and ``sem`` of the band-rule count over instances, ``by_mass``
    (mean), ``same_sign`` (mean), ``one_hot`` (share of one-hot encodings), ``loss`` (mean
    reconstruction loss), ``pair_share`` (the part of it on pair inputs), ``zero`` (instances with
    no polysemantic neuron), ``drop`` and ``drop_sem`` (mean paired difference from level 0 and
    its standard error; the instances start from the same weights at every level).

    Introduced in the book: :ref:`uniform-cooccurrence` (chapter cooccurrence).
    """
    res = record.get("results", record)
    base = np.asarray(res["polysemantic"][0], dtype=float)
    rows = []
    for j, q in enumerate(res["level"]):
        c = np.asarray(res["polysemantic"][j], dtype=float)
        k = c.size
        d = base - c
        loss, pair = np.asarray(res["loss"][j]), np.asarray(res["pair_loss"][j])
        rows.append({
            "level": q, "mean": float(c.mean()), "sem": float(c.std(ddof=1) / math.sqrt(k)),
            "by_mass": float(np.mean(res["polysemantic_by_mass"][j])),
            "same_sign": float(np.mean(res["same_sign"][j])), "one_hot": float(res["one_hot"][j]),
            "loss": float(loss.mean()), "pair_share": float(pair.sum() / loss.sum()) if loss.sum() > 0 else 0.0,
            "zero": int((c == 0).sum()), "drop": float(d.mean()), "drop_sem": float(d.std(ddof=1) / math.sqrt(k)),
        })
    return rows


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


def plot_levels(ax, rows: Sequence[dict], q_l1: float | None = None, exact: float | None = None,
                label: str = "trained") -> None:
    """Mean polysemantic count (with standard error) against the co-occurrence level.

    Level 0 sits at the left edge of a symmetric-log axis (linear below the smallest positive
    level, logarithmic above). ``q_l1`` draws :func:`balance_level`, ``exact`` the level-0
    expectation of the birthday argument.

    Introduced in the book: :ref:`uniform-cooccurrence` (chapter cooccurrence).
    """
    q = np.array([r["level"] for r in rows])
    pos = q[q > 0]
    ax.errorbar(q, [r["mean"] for r in rows], yerr=[r["sem"] for r in rows], fmt="o-", color=PALETTE["measured"],
                ms=5, capsize=3, label=f"{label}: mean $\\pm$ s.e.")
    if exact is not None:
        ax.axhline(exact, color=PALETTE["theory_alt"], ls="-.", lw=1.4, label="birthday expectation at $q = 0$")
    if q_l1 is not None:
        ax.axvline(q_l1, color=PALETTE["theory"], ls=":", lw=1.4, label="$q_\\lambda$: pair weight $= \\lambda$")
    ax.set_xscale("symlog", linthresh=pos.min() if pos.size else 1e-3, linscale=0.5)
    ax.set_xlim(-pos.min() * 0.2 if pos.size else -1e-4, q.max() * 1.5)
    ax.set_xlabel("co-occurrence level $q$: share of inputs that are pairs (log scale above 0)")
    ax.set_ylabel("polysemantic neurons per model")


# --------------------------------------------------------------------------- explorer


def explorer_figure(level: float = 0.004, n: int = 32, m: int = 128, instances: int = 8, steps: int = 6000,
                    l1: float = 1e-3, seed: int = 0, device: str = "cpu"):
    """Train ``instances`` models at level 0 and at ``level`` from the same weights; draw what changed.

    Left: polysemantic neurons per model at both levels (paired lines) beside the level-0
    expectation. Right: at ``level``, the encodings of the model with the most polysemantic
    neurons, on the neurons that some feature wins. Returns the figure and ``(counts at 0, counts at level)``.

    Introduced in the book: :doc:`/book/cooccurrence` (chapter cooccurrence).
    """
    import matplotlib.pyplot as plt

    from .plots import weight_heatmap

    X, _ = input_weights(n, 0.0)
    weights = torch.stack([input_weights(n, 0.0)[1], input_weights(n, level)[1]])
    W0 = init_weights(instances, n, m, seed=seed)
    run = train_inputs(W0.repeat(2, 1, 1), X, weights.repeat_interleave(instances, 0), steps=steps, l1=l1,
                       seed=seed, device=device)
    counts = polysemantic_neurons(run.W).view(2, instances).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), gridspec_kw={"width_ratios": [1, 1.6]})
    ax = axes[0]
    for b in range(instances):
        ax.plot([0, 1], counts[:, b] + 0.06 * (b - instances / 2) / instances, color=PALETTE["measured"], alpha=0.4,
                marker="o", ms=4)
    ax.errorbar([0, 1], counts.mean(1), yerr=counts.std(1, ddof=1) / math.sqrt(instances), color="k", fmt="s",
                capsize=4, ms=6, label="mean $\\pm$ s.e.")
    ax.axhline(expected_polysemantic_exact(n, m), color=PALETTE["theory_alt"], ls="-.", label="birthday, $q = 0$")
    ax.set_xticks([0, 1], ["$q = 0$", f"$q = {level:g}$"])
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylabel("polysemantic neurons per model")
    ax.legend(fontsize=8)
    show = int(np.argmax(counts[1]))  # the model with the most shared neurons at ``level`` (the first of ties)
    W = run.W[instances + show]
    used = list(dict.fromkeys(W.abs().argmax(-1).tolist()))
    weight_heatmap(axes[1], W[:, used], vmax=1.2,
                   title=f"model {show + 1} at $q = {level:g}$ ({counts[1, show]} shared): winning neurons")
    axes[1].set_xlabel("winning neuron (reordered)")
    fig.suptitle(f"n = {n}, m = {m}, {instances} models, {steps} AdamW steps, L1 {l1:g}", fontsize=10)
    return fig, (counts[0], counts[1])


def explorer(level: float = 0.004, n: int = 32, m: int = 128, instances: int = 8, steps: int = 6000):
    """Sliders for the level (log scale), ``n`` and ``m``, and a button redrawing :func:`explorer_figure`.

    Only in a live kernel (Colab, Jupyter); nothing is drawn until the button is pressed.

    Introduced in the book: :doc:`/book/cooccurrence` (chapter cooccurrence).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def show(level, n, m):
        explorer_figure(level, n, m, instances=instances, steps=steps)
        plt.show()

    return widgets.interact_manual.options(manual_name="Train")(
        show,
        level=widgets.FloatLogSlider(value=level, base=10, min=-4, max=0, step=0.25, description="level q",
                                     continuous_update=False),
        n=widgets.IntSlider(value=n, min=4, max=64, step=2, description="features n", continuous_update=False),
        m=widgets.IntSlider(value=m, min=4, max=512, step=4, description="neurons m", continuous_update=False),
    )
