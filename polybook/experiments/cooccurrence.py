"""Experiment ``cooccurrence``: polysemantic neurons when features are sometimes active together.

The paper's inputs are the basis vectors ``e_i``: one feature at a time. Here an input may also be
a *pair* ``e_i + e_j``. The data are a finite list of inputs, the rows of ``X`` (``(R, n)``), each
with a probability, and the loss is their expected summed squared error times ``n``::

    L(W) = n * sum_r prob_r * || x_r - ReLU(W W^T x_r) ||^2 + l1 * sum_{i,k} |W_ik|.

Every input is seen in every step with its weight ``n prob_r`` (full batch, no sampling), so a
run is deterministic. With only the ``n`` singletons, each of probability ``1/n``, this is exactly
the loss of :mod:`polybook.models`.

This file holds what the experiment runs: the inputs and their weights (:func:`input_weights`),
the weighted loss and its hand-written gradient (``weighted_loss_and_grad``), the training loop
for many instances at once (:func:`train_inputs`), the config (:class:`CoocConfig`), the run, its
replay and its table rows (:func:`level_rows`), and the two measures the run stores beside the
counts: the birthday argument restricted to pairs that never co-occur (``restricted_birthday``)
and the shared pairs split by whether they co-occur (``shared_pairs_by_cooccurrence``). The
chapter's derivation is :mod:`polybook.cooccurrence`.

Shapes: ``W`` is ``(instances, n, m)``; ``X`` is ``(R, n)``; input weights are ``(instances, R)``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import _validate as check
from ..metrics import (
    band_mask,
    one_hot_share,
    polysemantic_neurons,
    polysemantic_neurons_by_mass,
    polysemantic_sign_pattern,
)
from ..models import init_weights
from ..theory import expected_polysemantic_exact, predicted_polysemantic
from ..train import OPTIMIZERS, make_optimizer, resolve_device, run_steps, sample_noise, seeded_generator
from .config import ExperimentConfig, param
from .registry import Experiment

__all__ = ["input_weights", "train_inputs", "InputsRun", "CoocConfig", "level_rows"]


# --------------------------------------------------------------------------- inputs


def pair_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n(n-1)/2`` pairs ``i < j`` as two index arrays, in the order of the rows of the pair inputs.

    >>> [a.tolist() for a in pair_index(3)]
    [[0, 0, 1], [1, 2, 2]]
    """
    check.integer("n", n, minimum=2)
    return np.triu_indices(n, k=1)


def _group_of(n: int, groups: int) -> np.ndarray:
    """The block of each of the ``n`` features when they form ``groups`` equal blocks."""
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


def weighted_loss_and_grad(
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
    >>> float(weighted_loss_and_grad(W, X, w)[0])  # one at a time: perfect
    0.0
    >>> X, w = input_weights(2, 0.5)
    >>> round(float(weighted_loss_and_grad(W, X, w)[0]), 6)  # half the inputs are the pair: both its outputs lost
    2.0
    """
    if noise is None:
        return _weighted_fast(W, X, _scaled_inputs(X, weight), weight, l1)
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


def _weighted_fast(W, X, XsT, weight, l1):
    """:func:`weighted_loss_and_grad` without noise, with few passes over the ``(instances, R, n)`` outputs."""
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

    The loop is :func:`polybook.train`'s (the same optimisers and scaffold,
    ``run_steps``, with its divergence checks every
    ``polybook.train.CHECK_EVERY`` steps) with the loss of ``weighted_loss_and_grad``. On the CPU
    it runs on one thread (restored afterwards). Noise (one of ``polybook.train.NOISE_KINDS``) is
    drawn independently per instance, input and neuron.

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
    W = W0.detach().to(device=dev, dtype=torch.float32).clone().requires_grad_(True)
    X, weight = X.to(dev, torch.float32), weight.to(dev, torch.float32)
    XsT = _scaled_inputs(X, weight)
    opt = make_optimizer([W], optimizer, lr, weight_decay)
    gen = seeded_generator(seed, dev)
    noise_shape = (W.shape[0], X.shape[0], W.shape[2])

    def step(t: int) -> torch.Tensor:
        if noise == "none":
            loss, grad = _weighted_fast(W, X, XsT, weight, l1)
        else:
            xi = sample_noise(noise, sigma, noise_shape, gen, dev)
            loss, grad = weighted_loss_and_grad(W, X, weight, l1, xi)
        W.grad = grad
        opt.step()
        return loss

    start = time.perf_counter()
    losses = run_steps(step, steps, device=dev, watch=lambda: (W,), instances=W.shape[0],
                       settings=types.SimpleNamespace(lr=lr, l1=l1, sigma=sigma), desc=desc, progress=progress)
    return InputsRun(W0.detach().cpu().clone(), W.detach().cpu(), losses.cpu(), time.perf_counter() - start, str(dev))


# --------------------------------------------------------------------------- what the run measures


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


def shared_pairs_by_cooccurrence(W: torch.Tensor, groups: int) -> dict[str, list[int]]:
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
    >>> shared_pairs_by_cooccurrence(W, 2)
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


@dataclasses.dataclass(frozen=True)
class CoocConfig(ExperimentConfig):
    """The paper's L1 setting trained on inputs that are sometimes pairs of features.

    One batched program trains, from the same ``instances`` initial weights (seed ``seed``):

    - every co-occurrence level in ``levels`` (uniform: every pair equally likely), the first 0;
    - structured co-occurrence at ``structured_level`` for each entry of ``groups`` (features in
      that many blocks; pairs co-occur only inside a block).

    The comparisons between levels are therefore paired: a level changes only the data.

    The levels double from ``0.001`` and are spaced by ``sqrt(2)`` from ``0.002`` to ``0.032``,
    around the scale ``q_lambda = l1 (n - 1)/2`` (``0.0155`` here), where the count falls.

    Besides, ``fresh_instances`` models from their own initial weights (seed ``fresh_seed``, a draw
    independent of ``seed``'s) are trained at level 0 alone: a second, independent measurement of
    the paper's setting at this ``(n, m)``. ``0`` leaves them out.

    Introduced in the book: :ref:`sharing-cost` (chapter cooccurrence).
    """

    n: int = param(32, minimum=4)
    m: int = 128
    instances: int = param(24, minimum=2)
    steps: int = 7000
    lr: float = 1e-3
    l1: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    levels: tuple[float, ...] = param((0.0, 0.001, 0.002, 0.0028, 0.004, 0.0057, 0.008, 0.0113, 0.016, 0.0226,
                                       0.032, 0.064, 0.128), maximum=1.0, unique=True)
    groups: tuple[int, ...] = param((2, 4), minimum=2, empty=True, unique=True)
    structured_level: float = param(0.128, maximum=1.0)
    seed: int = 0
    fresh_instances: int = param(96, minimum=0)
    fresh_seed: int = param(5000, minimum=0)

    def check(self) -> None:
        """The first level is 0; each grouping has blocks of at least two features dividing ``n``;
        plain gradient descent has no weight decay."""
        if self.levels[0] != 0:
            check.fail("levels", self.levels, "a non-empty tuple of levels in [0, 1] starting with 0")
        if self.groups:
            check.integers("groups", self.groups, minimum=2, maximum=self.n // 2)
            for g in self.groups:
                if self.n % g:
                    check.fail("groups", g, f"a divisor of n = {self.n}")
        if self.optimizer == "sgd" and self.weight_decay:
            check.fail("weight_decay", self.weight_decay, "0 with optimizer 'sgd' (plain gradient descent)")
        if self.fresh_instances and self.fresh_seed == self.seed:
            check.fail("fresh_seed", self.fresh_seed, f"a seed other than seed = {self.seed} (an independent draw)")

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
        fresh = self.fresh_instances * (4 * self.n**3 + 4 * self.n**2 * self.m)  # singletons only
        return float(self.steps * (B * (4 * R * self.n**2 + 4 * self.n**2 * self.m) + fresh))


def _setting_summary(W: torch.Tensor, losses: torch.Tensor, X: torch.Tensor, weight: torch.Tensor) -> dict:
    """The numbers kept for one setting: counts per instance, sign split, sparsity and losses."""
    n = W.shape[-2]
    signs = polysemantic_sign_pattern(W)
    pair_w = weight.clone()
    pair_w[:n] = 0
    pair_loss, _ = weighted_loss_and_grad(W, X, pair_w)
    return {
        "polysemantic": polysemantic_neurons(W).tolist(),
        "polysemantic_by_mass": polysemantic_neurons_by_mass(W).tolist(),
        "same_sign": signs[:, 1].tolist(),
        "one_hot": round(float(one_hot_share(W).mean()), 6),
        "loss": [round(float(v), 6) for v in losses[-1]],
        "pair_loss": [round(float(v), 6) for v in pair_loss],
    }


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
    parts = [_setting_summary(run.W[s * I:(s + 1) * I], run.losses[:, s * I:(s + 1) * I], X, weights[s])
             for s in range(S)]
    L = len(cfg.levels)
    out = {"n": cfg.n, "m": cfg.m, "level": list(cfg.levels)}
    for key in parts[0]:
        out[key] = [p[key] for p in parts[:L]]
    out["structured"] = []
    for g, p, s in zip(cfg.groups, parts[L:], range(L, S)):
        sim = restricted_birthday(cfg.n, cfg.m, g, trials=20000, seed=cfg.seed)
        out["structured"].append({"groups": g, "level": cfg.structured_level, **p,
                                  **shared_pairs_by_cooccurrence(run.W[s * I:(s + 1) * I], g),
                                  "predicted": round(sim["mean"], 4), "predicted_sem": round(sim["sem"], 4),
                                  "predicted_first_order": sim["first_order"]})
    out["predicted"] = predicted_polysemantic(cfg.n, cfg.m)
    out["predicted_exact"] = round(expected_polysemantic_exact(cfg.n, cfg.m), 6)
    if cfg.fresh_instances:
        out["fresh"] = _fresh_summary(cfg, device, progress)
    return out


def _fresh_level_zero(cfg: CoocConfig, instances: int, device: str, progress: bool = False) -> InputsRun:
    """Train the first ``instances`` fresh-seed models at level 0: the ``n`` singletons, each of weight 1.

    At level 0 every pair input has weight 0 (:func:`input_weights`), so the loss on the singletons
    alone is the same loss; leaving the pairs out makes these runs about four times cheaper.
    """
    W0 = init_weights(cfg.fresh_instances, cfg.n, cfg.m, seed=cfg.fresh_seed)[:instances]
    return train_inputs(W0, torch.eye(cfg.n), torch.ones(cfg.n), steps=cfg.steps, lr=cfg.lr, l1=cfg.l1,
                        optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, seed=cfg.fresh_seed,
                        device=device, progress=progress, desc="cooccurrence fresh seeds")


def _fresh_summary(cfg: CoocConfig, device: torch.device, progress: bool) -> dict:
    """The fresh-seed models at level 0: counts, one-hot share and loss per instance."""
    run = _fresh_level_zero(cfg, cfg.fresh_instances, str(device), progress)
    return {"seed": cfg.fresh_seed, "polysemantic": polysemantic_neurons(run.W).tolist(),
            "one_hot": [round(float(v), 6) for v in one_hot_share(run.W)],
            "loss": [round(float(v), 6) for v in run.losses[-1]]}


def replay_cooccurrence(record: dict, settings: Sequence[int] = (0,), instances: int = 2, device: str = "cpu",
                        fresh: int = 0) -> dict:
    """Re-train a cheap slice of a stored ``cooccurrence`` record and return both sets of counts.

    The slice is the first ``instances`` instances of the levels numbered ``settings``, trained from
    the very same initial weights (the stored run's draw, sliced). Returns ``{"stored": [...],
    "replayed": [...]}``, one list of band-rule counts per level; with ``fresh`` above 0 also
    ``fresh_stored`` and ``fresh_replayed``, the counts of the first ``fresh`` fresh-seed models.
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
    out = {"stored": [record["results"]["polysemantic"][s][:instances] for s in settings], "replayed": counts}
    if fresh:
        if "fresh" not in record["results"]:
            raise ValueError("the record holds no fresh-seed models to replay (fresh_instances was 0)")
        out["fresh_stored"] = record["results"]["fresh"]["polysemantic"][:fresh]
        out["fresh_replayed"] = polysemantic_neurons(_fresh_level_zero(cfg, fresh, device).W).tolist()
    return out


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


EXPERIMENT = Experiment(
    "cooccurrence",
    "polysemantic neurons when features co-occur: uniform pairs at levels from 0 up, and mutually exclusive groups",
    CoocConfig,
    book=CoocConfig(),
    paper=CoocConfig(n=64, m=512, instances=32, steps=10000),
    run=run_cooccurrence,
    replay=replay_cooccurrence,
    rows=level_rows,
    stored=("cooccurrence",),
)
