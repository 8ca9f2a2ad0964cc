"""Experiment ``superposition``: the toy model of superposition (Elhage et al. 2022), batched over instances.

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
one batched tensor program. This file holds the model, its training loop, the measures the
experiment records (:func:`represented`, :func:`superposition`, ...) and the experiment itself;
the chapter's analyses are in :mod:`polybook.superposition`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .. import _validate
from ..train import make_optimizer, resolve_device, run_steps, seeded_generator
from .config import ExperimentConfig, param
from .registry import Experiment

__all__ = [
    "REPRESENTED",
    "SuperpositionConfig",
    "SuperpositionResult",
    "train_superposition",
    "feature_norms",
    "represented",
    "superposition",
    "dimensions_per_feature",
]

#: A feature counts as *represented* when its direction has norm above this (Elhage et al.).
#:
#: Introduced in the book: :ref:`superposition-phase-change` (chapter superposition).
REPRESENTED = 0.5


@dataclass(frozen=True)
class SuperpositionConfig(ExperimentConfig):
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
    importance_decay: float = param(0.7, minimum=0.0, strict=True, maximum=1.0)
    repeats: int = 1
    hidden_relu: bool = False
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-2
    weight_decay: float = 0.0
    l1: float = 0.0
    seed: int = 0

    def check(self) -> None:
        """Each sparsity level is below 1 (a level of 1 would never switch a feature on)."""
        if any(s >= 1 for s in self.sparsity):
            _validate.fail("sparsity", self.sparsity, "a non-empty tuple of numbers in [0, 1)")

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
    seed: int | None = None,
) -> SuperpositionResult:
    """Train every instance of ``config`` at once with AdamW on fresh random batches.

    ``seed`` replaces ``config.seed`` where another experiment derives it from its user's seed
    (the user's seed plus an offset, which may exceed the largest seed a user may give).

    Initial weights are Xavier-normal, ``N(0, 2 / (n + m))``, drawn on the CPU from the seed;
    biases start at 0. Every batch is drawn on the device from a second generator, seeded with
    ``seed + 1_000_003``.

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
    if seed is None:
        seed = cfg.seed
    _validate.internal_seed("seed", seed)
    gen0 = seeded_generator(seed, "cpu", 0)
    W0 = torch.randn(cfg.instances, cfg.n, cfg.m, generator=gen0) * math.sqrt(2.0 / (cfg.n + cfg.m))
    W = W0.clone().to(dev).requires_grad_(True)  # (instances, n, m); W0 stays the initial weights
    b = torch.zeros(cfg.instances, cfg.n, device=dev, requires_grad=True)  # (instances, n)
    imp = importances(cfg.n, cfg.importance_decay, dev)  # (n,)
    sparsity = cfg.instance_sparsity().to(dev)  # (instances,)
    opt = make_optimizer([W, b], "adamw", cfg.lr, cfg.weight_decay, fused=False)
    gen = seeded_generator(seed, dev)

    def step(t: int) -> torch.Tensor:
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(t, cfg.steps, cfg.lr)
        x = sample_batch(sparsity, cfg.n, cfg.batch_size, gen)
        err = (x - forward(W, b, x, cfg.hidden_relu)) ** 2  # (instances, batch, n)
        loss = (err * imp).sum(dim=-1).mean(dim=-1)  # (instances,): the reconstruction loss
        opt.zero_grad(set_to_none=True)
        objective = loss.sum() + cfg.l1 * W.abs().sum() if cfg.l1 else loss.sum()
        objective.backward()  # instances are independent: the sum gives each its own gradient
        opt.step()
        return loss.detach()

    start = time.perf_counter()
    losses = run_steps(step, cfg.steps, device=dev, watch=lambda: (W,), instances=cfg.instances, settings=cfg,
                       desc=desc, progress=progress, autograd=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return SuperpositionResult(
        config=cfg, W=W.detach().cpu(), b=b.detach().cpu(), losses=losses.cpu(), device=str(dev),
        seconds=seconds, W0=W0,
    )


# --------------------------------------------------------------------------- what the experiment records


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


# --------------------------------------------------------------------------- the experiment


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


def replay_superposition(record: dict, device: str = "cpu") -> dict:
    """Re-train a stored ``superposition`` record from its own config and return both summaries.

    Every instance draws its batches from one shared stream, so no instance can be re-made
    without the others: the replay re-trains the whole config (about ten seconds on one CPU
    core at book scale). Returns ``{"stored": ..., "replayed": ...}``, each the represented
    features and final losses per level and repeat; on the device that made the record the two
    agree exactly.
    """
    if record.get("experiment") != "superposition":
        raise ValueError(f"record must be a superposition result, got {record.get('experiment')!r}")
    cfg = SuperpositionConfig(**{**record["config"], "sparsity": tuple(record["config"]["sparsity"])})
    again = run_superposition(cfg, torch.device(device), progress=False)
    keys = ("represented", "final_loss")
    return {"stored": {k: record["results"][k] for k in keys}, "replayed": {k: again[k] for k in keys}}


EXPERIMENT = Experiment(
    "superposition",
    "toy model of superposition: represented features vs sparsity (n=20, m=5)",
    SuperpositionConfig,
    book=SuperpositionConfig(),
    paper=SuperpositionConfig(
        sparsity=(0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999), repeats=8, steps=10_000,
    ),
    run=run_superposition,
    replay=replay_superposition,
)
