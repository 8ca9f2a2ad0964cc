"""The toy model of superposition (Elhage et al. 2022), batched over instances.

Necessary polysemanticity: ``n`` features squeezed through ``m < n`` hidden dimensions.

- Input ``x`` in R^n: each feature is independently 0 with probability ``S`` (the *sparsity*)
  and uniform on [0, 1] otherwise.
- Feature ``i`` has importance ``I_i = r**i`` (``r`` is the *importance decay*; ``r = 1``
  makes every feature equally important).
- ``W`` has shape ``(instances, n, m)`` as everywhere in polybook: row ``W_i`` is the direction
  of feature ``i`` in the hidden space. The hidden layer is ``h = W^T x`` (``m`` numbers) and
  the output ``x' = ReLU(W h + b)``. Elhage et al. store the transpose (``m x n``) and write
  ``h = W x``, ``x' = ReLU(W^T h + b)``: the same model.
- With ``hidden_relu=True`` the hidden layer is ``h = ReLU(W^T x)``: a layer of real neurons,
  whose basis now matters (the "privileged basis" variant).
- Loss of one instance: ``E_x sum_i I_i (x_i - x'_i)^2``, estimated on fresh random batches.

Instances are independent models trained side by side, one per (sparsity level, repeat); each
instance draws its own inputs with its own sparsity. :func:`train_superposition` runs them as
one batched tensor program; the metrics below take ``W`` of shape ``(..., n, m)``.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _validate as check
from .experiments import register
from .train import CHECK_EVERY, check_finite, resolve_device
from .metrics import uses_by_response

__all__ = [
    "REPRESENTED",
    "SuperpositionConfig",
    "train_superposition",
    "feature_norms",
    "represented",
    "superposition",
    "dimensions_per_feature",
    "feature_dimensionality",
    "neighbour_angles",
    "neuron_census",
    "effective_neurons",
    "expected_shared_winners",
    "plot_phase_change",
    "plot_directions",
    "explore",
    "SuperpositionResult",
]

#: A feature counts as *represented* when its direction has norm above this (Elhage et al.).
#:
#: Introduced in the book: :ref:`superposition-phase-change` (chapter superposition).
REPRESENTED = 0.5


@dataclass(frozen=True)
class SuperpositionConfig:
    """Everything that defines a batch of toy models of superposition.

    Introduced in the book: :ref:`superposition-geometry` (chapter superposition).

    Parameters
    ----------
    n, m : int
        Features and hidden dimensions (``m < n`` is the interesting case, but any is allowed).
    sparsity : tuple of float
        Sparsity levels ``S`` in [0, 1), one group of instances per level.
    importance_decay : float
        ``r`` in (0, 1]: feature ``i`` (counted from 0) has importance ``r**i``.
    repeats : int
        Independent initialisations per sparsity level. Instance ``level * repeats + j``.
    hidden_relu : bool
        ``h = ReLU(W^T x)`` instead of ``h = W^T x``.
    steps, batch_size : int
        AdamW steps, each on a fresh batch of ``batch_size`` inputs per instance.
    lr : float
        Peak learning rate; it decays to 0 along a cosine over the last half of training, so the
        weights settle instead of jittering with the batch noise.
    weight_decay : float
        AdamW's decoupled weight decay (0: the model has no such term).
    l1 : float
        ``lambda``: adds ``lambda * sum_ik |W_ik|`` to each instance's loss (0: no L1). With one
        feature active, the hidden activation is proportional to ``W_i``, so this is also an L1
        penalty on the activations, the winner-take-all force of the regularisation chapter.
    seed : int
        Seeds the initial weights and every batch.
    """

    n: int = 20
    m: int = 5
    sparsity: tuple[float, ...] = (0.0, 0.7, 0.9, 0.97, 0.99, 0.999)
    importance_decay: float = 0.7
    repeats: int = 1
    hidden_relu: bool = False
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-2
    weight_decay: float = 0.0
    l1: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check.integer("n", self.n)
        check.integer("m", self.m)
        s = self.sparsity
        if (
            not isinstance(s, tuple)
            or not s
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1 for v in s)
        ):
            check.fail("sparsity", s, "a non-empty tuple of numbers in [0, 1)")
        r = self.importance_decay
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
            check.fail("importance_decay", r, "a number in (0, 1]")
        check.integer("repeats", self.repeats)
        if not isinstance(self.hidden_relu, bool):
            check.fail("hidden_relu", self.hidden_relu, "True or False")
        check.integer("steps", self.steps)
        check.integer("batch_size", self.batch_size)
        check.number("lr", self.lr, 0.0, strict=True)
        check.number("weight_decay", self.weight_decay)
        check.number("l1", self.l1)
        check.seed("seed", self.seed)

    @property
    def instances(self) -> int:
        """``len(sparsity) * repeats``."""
        return len(self.sparsity) * self.repeats

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory: weights with AdamW's state and a few batch-sized activations, in bytes."""
        return 4 * (self.instances * (6 * self.n * self.m + 6 * self.batch_size * self.n) + 2 * self.steps * self.instances)

    def flops(self) -> float:
        """Floating-point operations: forward and backward through both layers, 6 n m per input."""
        return float(6 * self.n * self.m * self.batch_size * self.instances * self.steps)

    def instance_sparsity(self) -> torch.Tensor:
        """Sparsity of each instance, shape ``(instances,)``."""
        return torch.tensor(self.sparsity, dtype=torch.float32).repeat_interleave(self.repeats)


@dataclass
class SuperpositionResult:
    """What :func:`train_superposition` returns; tensors live on the CPU.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).

    Attributes
    ----------
    config : SuperpositionConfig
    W : torch.Tensor
        ``(instances, n, m)`` final weights; row ``W[b, i]`` is feature ``i``'s direction.
    b : torch.Tensor
        ``(instances, n)`` final output biases.
    losses : torch.Tensor
        ``(steps, instances)`` reconstruction loss of each batch before the update (without
        the L1 term).
    device : str
    seconds : float
    W0 : torch.Tensor
        ``(instances, n, m)`` initial weights.
    """

    config: SuperpositionConfig
    W: torch.Tensor
    b: torch.Tensor
    losses: torch.Tensor
    device: str = "cpu"
    seconds: float = 0.0
    W0: torch.Tensor | None = field(default=None, repr=False)

    def by_level(self, x: torch.Tensor) -> torch.Tensor:
        """Reshape a per-instance tensor ``(instances, ...)`` to ``(levels, repeats, ...)``."""
        return x.reshape(len(self.config.sparsity), self.config.repeats, *x.shape[1:])

    def final_loss(self, window: int = 200) -> torch.Tensor:
        """Mean batch loss over the last ``window`` steps, shape ``(instances,)``."""
        return self.losses[-window:].mean(dim=0)

    def eval_loss(self, batch_size: int = 8192, seed: int = 0) -> torch.Tensor:
        """Reconstruction loss of the final weights on one fresh batch per instance, shape ``(instances,)``.

        Unlike :meth:`final_loss` (the training batches of the last steps, taken while the
        weights still moved), every instance is scored at its end point on ``batch_size`` inputs
        drawn from ``seed``; the L1 term is not included.
        """
        cfg = self.config
        x = sample_batch(cfg.instance_sparsity(), cfg.n, batch_size, torch.Generator().manual_seed(seed))
        err = (x - forward(self.W, self.b, x, cfg.hidden_relu)) ** 2  # (instances, batch, n)
        return (err * importances(cfg.n, cfg.importance_decay)).sum(dim=-1).mean(dim=-1)

    def best(self) -> torch.Tensor:
        """``(levels, n, m)``: per sparsity level, the weights of the repeat with the lowest final loss."""
        pick = self.by_level(self.final_loss()).argmin(dim=1)  # (levels,)
        W = self.by_level(self.W)  # (levels, repeats, n, m)
        return W[torch.arange(W.shape[0]), pick]


def importances(n: int, r: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``I_i = r**i`` for ``i = 0..n-1``.

    >>> importances(3, 0.5).tolist()
    [1.0, 0.5, 0.25]
    """
    return r ** torch.arange(n, dtype=torch.float32, device=device)


def sample_batch(
    sparsity: torch.Tensor, n: int, batch_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw inputs: each feature 0 with probability ``S`` (per instance), else uniform on [0, 1].

    One uniform draw ``u`` per entry does both jobs: the feature is on when ``u >= S`` (probability
    ``1 - S``), and given that, ``(u - S) / (1 - S)`` is uniform on [0, 1).

    Parameters
    ----------
    sparsity : torch.Tensor
        ``(instances,)`` sparsity of each instance, on the device the batch should live on.

    Returns
    -------
    torch.Tensor
        ``(instances, batch_size, n)``.

    Examples
    --------
    >>> x = sample_batch(torch.tensor([0.0, 0.99]), 4, 1000, torch.Generator().manual_seed(0))
    >>> [round(v, 2) for v in (x > 0).float().mean(dim=(1, 2)).tolist()]
    [1.0, 0.01]
    """
    S = sparsity[:, None, None]
    u = torch.rand(sparsity.shape[0], batch_size, n, generator=generator, device=sparsity.device)
    return torch.relu(u - S) / (1 - S)


def forward(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor, hidden_relu: bool = False) -> torch.Tensor:
    """``x' = ReLU(W h + b)`` with ``h = W^T x`` (or ``ReLU(W^T x)``); ``x`` is ``(instances, batch, n)``."""
    h = x @ W  # (instances, batch, m)
    if hidden_relu:
        h = torch.relu(h)
    return torch.relu(h @ W.transpose(-1, -2) + b[:, None, :])  # (instances, batch, n)


def _cosine_lr(step: int, steps: int, lr: float) -> float:
    """Constant ``lr`` for the first half, then a cosine down to 0."""
    half = steps // 2
    if step < half:
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * (step - half) / max(steps - half, 1)))


def train_superposition(
    config: SuperpositionConfig,
    *,
    device: str = "auto",
    progress: bool = True,
    desc: str | None = None,
) -> SuperpositionResult:
    """Train every instance of ``config`` at once with AdamW on fresh random batches.

    Initial weights are Xavier-normal, ``N(0, 2 / (n + m))``, drawn on the CPU from the seed;
    biases start at 0.

    Introduced in the book: :ref:`superposition-phase-change` (chapter superposition).

    Examples
    --------
    >>> cfg = SuperpositionConfig(n=6, m=2, sparsity=(0.0, 0.9), steps=10, batch_size=8)
    >>> res = train_superposition(cfg, device="cpu", progress=False)
    >>> tuple(res.W.shape), tuple(res.b.shape), tuple(res.losses.shape)
    ((2, 6, 2), (2, 6), (10, 2))
    """
    cfg = config
    dev = resolve_device(device)
    gen0 = torch.Generator().manual_seed(cfg.seed)
    W0 = torch.randn(cfg.instances, cfg.n, cfg.m, generator=gen0) * math.sqrt(2.0 / (cfg.n + cfg.m))
    W = W0.clone().to(dev).requires_grad_(True)  # (instances, n, m); W0 stays the initial weights
    b = torch.zeros(cfg.instances, cfg.n, device=dev, requires_grad=True)  # (instances, n)
    imp = importances(cfg.n, cfg.importance_decay, dev)  # (n,)
    sparsity = cfg.instance_sparsity().to(dev)  # (instances,)
    opt = torch.optim.AdamW([W, b], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed + 1_000_003)
    losses = torch.empty(cfg.steps, cfg.instances, device=dev)

    # The tensors are tiny: on a CPU, intra-op threads cost more in synchronisation than they
    # save (measured: 12x the CPU time with 2 threads on a busy 2-core machine), so use one.
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        _loop(cfg, W, b, imp, sparsity, opt, gen, losses, progress, desc)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return SuperpositionResult(
        config=cfg, W=W.detach().cpu(), b=b.detach().cpu(), losses=losses.cpu(), device=str(dev),
        seconds=seconds, W0=W0,
    )


def _loop(cfg, W, b, imp, sparsity, opt, gen, losses, progress, desc) -> None:
    """The optimisation steps of :func:`train_superposition` (updates ``W``, ``b``, ``losses``)."""
    for t in tqdm(range(cfg.steps), desc=desc, disable=not progress, file=sys.stderr, mininterval=0.5, leave=False):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(t, cfg.steps, cfg.lr)
        x = sample_batch(sparsity, cfg.n, cfg.batch_size, gen)
        err = (x - forward(W, b, x, cfg.hidden_relu)) ** 2  # (instances, batch, n)
        loss = (err * imp).sum(dim=-1).mean(dim=-1)  # (instances,): the reconstruction loss
        opt.zero_grad(set_to_none=True)
        objective = loss.sum() + cfg.l1 * W.abs().sum() if cfg.l1 else loss.sum()
        objective.backward()  # instances are independent: the sum gives each its own gradient
        opt.step()
        losses[t] = loss.detach()
        if (t + 1) % CHECK_EVERY == 0 or t + 1 == cfg.steps:
            check_finite(W.detach(), losses[max(0, t + 1 - CHECK_EVERY):t + 1], t + 1, cfg, desc)


# --------------------------------------------------------------------------- metrics


def feature_norms(W: torch.Tensor) -> torch.Tensor:
    """``||W_i||`` for every feature, shape ``W.shape[:-1]``.

    Introduced in the book: :ref:`superposition-phase-change` (chapter superposition).
    """
    return W.norm(dim=-1)


def represented(W: torch.Tensor, threshold: float = REPRESENTED) -> torch.Tensor:
    """Number of features with ``||W_i|| > threshold``, shape ``W.shape[:-2]``.

    >>> int(represented(torch.tensor([[1.0, 0.0], [0.3, 0.3], [0.0, 0.9]])))
    2

    Introduced in the book: :ref:`superposition-phase-change` (chapter superposition).
    """
    return (feature_norms(W) > threshold).sum(dim=-1)


def superposition(W: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """How much each feature shares its direction: ``sum_{j != i} (W_i_hat . W_j)^2``.

    0 when feature ``i`` has a dimension of its own (orthogonal to every other feature); about 1
    or more when other features load heavily on its direction. Shape ``W.shape[:-1]``.

    >>> superposition(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])).tolist()
    [0.0, 1.0, 1.0]

    Introduced in the book: :ref:`superposition-phase-change` (chapter superposition).
    """
    unit = W / W.norm(dim=-1, keepdim=True).clamp_min(eps)
    overlap = unit @ W.transpose(-1, -2)  # (..., n, n): [i, j] = W_i_hat . W_j
    sq = overlap**2
    return sq.sum(dim=-1) - sq.diagonal(dim1=-2, dim2=-1)


def dimensions_per_feature(W: torch.Tensor) -> torch.Tensor:
    """``m / ||W||_F^2``: hidden dimensions per (norm-weighted) feature, shape ``W.shape[:-2]``.

    1 when ``m`` features each own a dimension; ``2/5`` for a pentagon of 5 unit features in 2D.

    Introduced in the book: :ref:`superposition-geometry` (chapter superposition).
    """
    return W.shape[-1] / (W**2).sum(dim=(-1, -2))


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


# --------------------------------------------------------------------------- figures


def plot_phase_change(W: torch.Tensor, sparsity, fig=None, superposition_max: float = 1.0):
    """The classic figure: per sparsity level, ``W W^T`` above and the bars ``||W_i||`` below.

    ``W`` is ``(levels, n, m)``; bars of represented features are coloured by
    :func:`superposition` (dark: the feature has a dimension of its own; bright: it shares its
    direction), the others are grey. Returns the figure.

    Introduced in the book: :ref:`superposition-phase-change` (chapter superposition).
    """
    import matplotlib.pyplot as plt

    from .plots import WEIGHT_CMAP

    W = torch.as_tensor(W)
    levels, n, _ = W.shape
    fig = fig or plt.figure(figsize=(1.55 * levels + 1.2, 5.6))
    axes = fig.subplots(2, levels, sharey="row", gridspec_kw={"height_ratios": [1, 1.15]}, squeeze=False)
    cmap = plt.get_cmap("plasma")
    for col in range(levels):
        gram = (W[col] @ W[col].T).numpy()
        top, bottom = axes[0, col], axes[1, col]
        im = top.imshow(gram, cmap=WEIGHT_CMAP, vmin=-1.2, vmax=1.2, interpolation="nearest")
        top.set_title(f"$1-S = {1 - sparsity[col]:.3g}$")
        top.set_xticks([]), top.set_yticks([]), top.grid(False)
        norms = feature_norms(W[col]).numpy()
        sup = superposition(W[col]).numpy()
        colours = cmap(np.clip(sup / superposition_max, 0, 1) * 0.9)
        colours[norms <= REPRESENTED] = (0.8, 0.8, 0.8, 1.0)  # not represented: grey
        bottom.barh(np.arange(n), norms, color=colours, height=0.8)
        bottom.axvline(REPRESENTED, color="0.5", lw=0.8, ls=":")
        bottom.set_xlim(0, max(1.3, float(norms.max()) * 1.05))
        bottom.set_xlabel(r"$\Vert W_i \Vert$")
        bottom.grid(axis="y", visible=False)
        bottom.set_yticks(range(0, n, max(1, n // 4)))
    axes[0, 0].set_ylabel(r"$W W^{T}$")
    axes[1, 0].set_ylabel("feature $i$ (most important on top)")
    axes[1, 0].invert_yaxis()
    fig.colorbar(im, ax=axes[0, :], shrink=0.85, label=r"$W_i \cdot W_j$")
    sm = plt.cm.ScalarMappable(cmap=plt.matplotlib.colors.ListedColormap(cmap(np.linspace(0, 0.9, 256))),
                               norm=plt.Normalize(0, superposition_max))
    bar = fig.colorbar(sm, ax=axes[1, :], shrink=0.85,
                       label=r"superposition $\sum_{j \neq i} (\hat W_i \cdot W_j)^2$")
    ticks = np.linspace(0, superposition_max, 5)
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks[:-1]] + [f"$\\geq${ticks[-1]:g}"])
    return fig


def plot_directions(ax, W: torch.Tensor, title: str | None = None) -> None:
    """Draw the rows of one ``(n, 2)`` matrix as arrows from the origin, one colour per feature.

    Introduced in the book: :ref:`superposition-geometry` (chapter superposition).
    """
    import matplotlib.pyplot as plt

    W = torch.as_tensor(W)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, W.shape[0]))
    lim = max(1.25, float(feature_norms(W).max()) * 1.15)
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.8", lw=0.8))
    for i, (x, y) in enumerate(W.tolist()):
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=colours[i], lw=2))
        if x * x + y * y > 0.05:
            ax.text(1.13 * x, 1.13 * y, str(i), ha="center", va="center", fontsize=8, color=colours[i])
    ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)


@functools.lru_cache(maxsize=64)
def _explore_weights(density: float, importance_decay: float, n: int, m: int, steps: int, seed: int) -> torch.Tensor:
    cfg = SuperpositionConfig(
        n=n, m=m, sparsity=(round(1.0 - density, 12),), importance_decay=importance_decay, steps=steps, seed=seed
    )
    return train_superposition(cfg, progress=False).W  # (1, n, m)


def explore(density: float = 0.1, importance_decay: float = 0.7, *, n: int = 20, m: int = 5,
            steps: int = 2000, seed: int = 0):
    """Train one model with feature probability ``density = 1 - S`` and draw its column of the figure.

    Results are cached, so moving a slider back to a setting already seen is instant. Returns
    ``(figure, number of represented features)``.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    if not 0 < density <= 1:
        check.fail("density", density, "a number in (0, 1]")
    W = _explore_weights(float(density), float(importance_decay), n, m, steps, seed)
    import matplotlib.pyplot as plt

    fig = plot_phase_change(W, (1.0 - density,), fig=plt.figure(figsize=(4.8, 5.6)))
    fig.suptitle(f"$r = {importance_decay:g}$: {int(represented(W)[0])} of {n} features represented", fontsize=10)
    return fig, int(represented(W)[0])


# --------------------------------------------------------------------------- the experiment


@register(
    "superposition",
    "toy model of superposition: represented features vs sparsity (n=20, m=5)",
    book=SuperpositionConfig(),
    paper=SuperpositionConfig(
        sparsity=(0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999), repeats=8, steps=10_000,
    ),
)
def run_superposition(cfg: SuperpositionConfig, device: torch.device, progress: bool = True) -> dict:
    """Per sparsity level and repeat: represented features, norms, superposition, dimensions per feature."""
    res = train_superposition(cfg, device=str(device), progress=progress, desc="superposition")

    def per_level(x: torch.Tensor, digits: int = 4) -> list:
        def rnd(v):
            return [rnd(u) for u in v] if isinstance(v, list) else round(v, digits)

        return rnd(res.by_level(x).double().tolist())

    return {
        "n": cfg.n,
        "m": cfg.m,
        "sparsity": list(cfg.sparsity),
        "represented": res.by_level(represented(res.W)).tolist(),
        "norms": per_level(feature_norms(res.W)),
        "superposition": per_level(superposition(res.W)),
        "dimensions_per_feature": per_level(dimensions_per_feature(res.W)),
        "final_loss": per_level(res.final_loss(), 6),
    }
