"""Prevention and detection: what it costs to avoid incidental polysemanticity, and how to recognise it.

Three pieces of science for the chapter ``book/prevention.ipynb``:

- **the width price** (:func:`width_needed`): the smallest ``m`` at which the idealised birthday
  expectation of polysemantic neurons (:func:`polybook.theory.expected_polysemantic_exact`) drops
  below a target, and what that width costs in parameters and training flops against ``m = n``;
- **interventions at fixed width** (``INTERVENTIONS``, ``train_intervention``, the
  ``interventions`` experiment): the paper's L1 setting changed in one respect at a time
  (initialisation, optimiser, L1 strength or schedule, weight decay, width then pruning,
  resampling of shared neurons), each trained from the same initial weights where the change
  leaves the initialisation alone, so that differences from the baseline are paired;
- **telling incidental from necessary** (``shared_pairs``, :func:`seed_consistency`,
  :func:`pair_test_power`): the pairs of features that share a neuron, how many of them two
  seeds have in common, and that overlap's null distribution when feature labels are permuted.

Training uses :func:`polybook.train` where it fits; an L1 warm-up and resampling need a change
*during* training, so ``train_schedule`` is the same loop (same loss, gradient and optimiser;
it reproduces :func:`polybook.train` exactly when neither is switched on) with those two hooks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from . import _validate as check
from .experiments import register
from .metrics import band_mask, one_hot_share, polysemantic_neurons, uses_by_response
from .models import init_weights, loss_and_grad, reconstruction_loss
from .plots import PALETTE
from .theory import expected_polysemantic_exact
from .train import CHECK_EVERY, TrainConfig, _optimizer, check_finite, resolve_device, train, train_memory_bytes

__all__ = [
    "width_needed",
    "width_price",
    "seed_consistency",
    "pair_test_power",
    "intervention_rows",
    "plot_tradeoff",
    "explorer_figure",
    "explorer",
]


# --------------------------------------------------------------------------- the width price


def width_needed(n: int, target: float = 1.0, per_feature: bool = False) -> int:
    """Smallest ``m >= n`` whose idealised expected count of polysemantic neurons is below ``target``.

    With ``per_feature=True`` the target is a share of the ``n`` features instead: the expected
    count divided by ``n`` must fall below ``target``. The expectation is
    :func:`polybook.theory.expected_polysemantic_exact`, which falls with ``m``; about
    ``n^2 / (4 target)`` for a count, about ``n / (4 target)`` for a share. (Below ``m = n`` the count
    is capped by ``m`` itself, so tiny widths also have small counts; from ``m = n`` on it falls.)

    Introduced in the book: :ref:`width-price` (chapter prevention).

    Examples
    --------
    >>> width_needed(32), width_needed(64)
    (233, 977)
    >>> width_needed(64, 0.05, per_feature=True)
    283
    """
    check.integer("n", n, minimum=2)
    check.number("target", target, 0.0, strict=True)
    goal = target * n if per_feature else target
    lo, hi = n, n
    if expected_polysemantic_exact(n, n) < goal:
        return n
    while expected_polysemantic_exact(n, hi) >= goal:
        lo, hi = hi, hi * 2
    while lo < hi:  # the smallest m with E < goal lies in (lo, hi]
        mid = (lo + hi) // 2
        if expected_polysemantic_exact(n, mid) < goal:
            hi = mid
        else:
            lo = mid + 1
    return hi


def width_price(n: int, m: int) -> dict:
    """What width ``m`` costs against ``m = n``: parameters ``n m`` and flops ``4 n^2 m`` per step.

    >>> width_price(32, 256)
    {'params': 8192, 'params_ratio': 8.0, 'flops_per_step': 1048576, 'flops_ratio': 8.0}

    Introduced in the book: :ref:`width-price` (chapter prevention).
    """
    check.integer("n", n)
    check.integer("m", m)
    return {"params": n * m, "params_ratio": m / n, "flops_per_step": 4 * n * n * m, "flops_ratio": m / n}


# --------------------------------------------------------------------------- interventions


@dataclass(frozen=True)
class Intervention:
    """One change to the baseline (the paper's setting); unset fields keep the baseline's values.

    ``init``: ``"normal"`` (the paper's ``N(0, 1/m)``, the shared draw), ``"orthogonal"`` (rows of a
    random orthogonal matrix: unit norm, zero initial overlaps), ``"sparse"`` (each feature
    ``N(0, 1/k)`` on ``k = 8`` random neurons), ``"one_hot"`` (feature ``i`` starts at weight 1 on
    its own neuron, plus the shared draw scaled by 0.1: needs the features to be known).
    ``init_scale`` multiplies the initial weights. ``width_factor`` trains ``width_factor * m``
    neurons (initial std ``1/sqrt(width_factor * m)``) and keeps the ``m`` of largest norm, after
    ``prune_at`` steps (a fresh optimiser afterwards) or at the end (``prune_at = None``).
    ``l1_warmup``: L1 rises linearly from 0 over this share of the steps. ``resample_every``:
    every so many steps up to ``resample_until`` (a share of the steps), :func:`resample_shared`.
    """

    label: str
    init: str = "normal"
    init_scale: float = 1.0
    optimizer: str | None = None
    lr: float | None = None
    l1: float | None = None
    weight_decay: float = 0.0
    l1_warmup: float = 0.0
    width_factor: int = 1
    prune_at: int | None = None
    resample_every: int = 0
    resample_until: float = 0.0


#: The interventions, by name; ``"baseline"`` is the paper's setting.
INTERVENTIONS: dict[str, Intervention] = {
    "baseline": Intervention("baseline: AdamW lr 1e-3, L1 1e-3"),
    "init_x0.5": Intervention("initial scale x0.5", init_scale=0.5),
    "init_x2": Intervention("initial scale x2", init_scale=2.0),
    "orthogonal": Intervention("orthogonal rows", init="orthogonal"),
    "sparse_init": Intervention("sparse start (8 neurons per feature)", init="sparse"),
    "one_hot_init": Intervention("one neuron per feature at the start", init="one_hot"),
    "wide4_pruned": Intervention("4x wider, pruned to m at the end", width_factor=4),
    "wide4_pruned_early": Intervention("4x wider, pruned to m at step 1500", width_factor=4, prune_at=1500),
    "sgd": Intervention("SGD lr 0.1, L1 1e-2", optimizer="sgd", lr=0.1, l1=1e-2),
    "lr_3e-4": Intervention("AdamW lr 3e-4", lr=3e-4),
    "lr_3e-3": Intervention("AdamW lr 3e-3", lr=3e-3),
    "l1_3e-4": Intervention("L1 3e-4", l1=3e-4),
    "l1_3e-3": Intervention("L1 3e-3", l1=3e-3),
    "l1_warmup": Intervention("L1 warm-up over the first half", l1_warmup=0.5),
    "wd_0.01": Intervention("weight decay 0.01", weight_decay=0.01),
    "wd_0.1": Intervention("weight decay 0.1", weight_decay=0.1),
    "resample": Intervention("resample shared leaders (every 500 steps to 3000)", resample_every=500,
                             resample_until=0.4),
}
INIT_KINDS = ("normal", "orthogonal", "sparse", "one_hot")


def initial_weights(kind: str, instances: int, n: int, m: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """Initial weights ``(instances, n, m)`` of one of the initialisations of :class:`Intervention`.

    ``"normal"`` is exactly :func:`polybook.models.init_weights` (times ``scale``), so interventions that keep
    it start from the baseline's weights.

    >>> W = initial_weights("orthogonal", 2, 4, 8)
    >>> torch.allclose(W @ W.transpose(-1, -2), torch.eye(4).expand(2, 4, 4), atol=1e-5)
    True
    """
    check.choice("init", kind, INIT_KINDS)
    check.number("init_scale", scale, 0.0, strict=True)
    base = init_weights(instances, n, m, seed=seed)
    gen = torch.Generator().manual_seed(seed + 7_919)
    if kind == "normal":
        W = base
    elif kind == "orthogonal":
        if n > m:
            check.fail("n", n, f"at most m = {m} for orthogonal rows")
        Q, R = torch.linalg.qr(torch.randn(instances, m, m, generator=gen))
        Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar-distributed
        W = Q[:, :n, :].contiguous()  # n orthonormal rows
    elif kind == "sparse":
        k = min(8, m)
        keep = torch.rand(instances, n, m, generator=gen).argsort(dim=-1)[..., :k]
        W = torch.zeros(instances, n, m).scatter(-1, keep, torch.randn(instances, n, k, generator=gen) / math.sqrt(k))
    else:
        if n > m:
            check.fail("n", n, f"at most m = {m} for one neuron per feature")
        own = torch.rand(instances, m, generator=gen).argsort(dim=-1)[:, :n]  # distinct neurons
        W = 0.1 * base
        W.scatter_(-1, own.unsqueeze(-1), 1.0)
    return W * scale


def resample_shared(W: torch.Tensor, opt: torch.optim.Optimizer | None = None, generator=None) -> int:
    """Re-draw encodings that share their leading neuron with another feature's; returns how many.

    For each neuron that is the arg-max of ``|W_ik|`` for two or more features, the feature with
    the largest weight there keeps it; every other one gets a fresh ``N(0, 1/m)`` encoding on the
    neurons that no feature leads (zero elsewhere), as sparse autoencoders resample dead units.
    ``W`` (``(instances, n, m)``) is changed in place; with ``opt`` (AdamW) the optimiser's moments
    of the re-drawn rows are reset to zero.

    >>> W = torch.tensor([[[1.0, 0.0, 0.0], [-0.9, 0.1, 0.0]]])
    >>> resample_shared(W, generator=torch.Generator().manual_seed(0)), W[0, 1, 0].item()
    (1, 0.0)
    """
    B, n, m = W.shape
    A = W.abs()
    lead = A.argmax(dim=-1)  # (B, n)
    state = opt.state.get(W, {}) if opt is not None else {}
    done = 0
    for b in range(B):
        counts = torch.bincount(lead[b], minlength=m)
        free = (counts == 0).to(W.dtype)
        for k in torch.nonzero(counts >= 2).flatten().tolist():
            feats = torch.nonzero(lead[b] == k).flatten()
            keep = feats[A[b, feats, k].argmax()]
            for j in feats.tolist():
                if j == int(keep):
                    continue
                W[b, j] = torch.randn(m, generator=generator).to(W) / math.sqrt(m) * free
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][b, j] = 0.0
                done += 1
    return done


def train_schedule(W0: torch.Tensor, cfg: TrainConfig, *, l1_warmup: float = 0.0, resample_every: int = 0,
                   resample_until: int = 0) -> tuple[torch.Tensor, int]:
    """:func:`polybook.train`'s loop with an L1 warm-up and resampling; returns ``(W, resampled)``.

    At step ``t`` L1 is ``cfg.l1 * min(1, t / (l1_warmup * steps))``; every ``resample_every`` steps
    up to step ``resample_until`` :func:`resample_shared` runs. With neither it gives the weights
    :func:`polybook.train` gives (the tests check this). Runs on the CPU, one thread.

    >>> W, k = train_schedule(init_weights(2, 4, 8), TrainConfig(n=4, m=8, instances=2, steps=20, l1=1e-3),
    ...                       l1_warmup=0.5, resample_every=10, resample_until=20)
    >>> tuple(W.shape), k >= 0
    ((2, 4, 8), True)
    """
    check.number("l1_warmup", l1_warmup, maximum=1.0)
    check.integer("resample_every", resample_every, minimum=0)
    check.integer("resample_until", resample_until, minimum=0)
    if tuple(W0.shape) != (cfg.instances, cfg.n, cfg.m):
        raise ValueError(f"W0 must have shape (instances, n, m) = {(cfg.instances, cfg.n, cfg.m)}, got {tuple(W0.shape)}")
    W = W0.detach().to(torch.float32).clone().requires_grad_(True)
    opt = _optimizer(cfg, W)
    gen = torch.Generator().manual_seed(cfg.seed + 2_000_003)
    losses = torch.empty(cfg.steps, cfg.instances)
    warm = l1_warmup * cfg.steps
    resampled = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for t in range(cfg.steps):
                l1 = cfg.l1 * min(1.0, t / warm) if warm else cfg.l1
                loss, grad = loss_and_grad(W, l1)
                losses[t] = loss
                W.grad = grad
                opt.step()
                if resample_every and (t + 1) % resample_every == 0 and t + 1 <= resample_until:
                    resampled += resample_shared(W, opt, gen)
                if (t + 1) % CHECK_EVERY == 0 or t + 1 == cfg.steps:
                    check_finite(W, losses[max(0, t + 1 - CHECK_EVERY):t + 1], t + 1, cfg, "interventions")
    finally:
        torch.set_num_threads(threads)
    return W.detach(), resampled


def _prune(W: torch.Tensor, m: int) -> torch.Tensor:
    """Keep, per instance, the ``m`` neurons (columns) of largest norm, in their original order."""
    keep = W.norm(dim=-2).topk(m, dim=-1).indices.sort(dim=-1).values  # (B, m)
    return W.gather(-1, keep.unsqueeze(-2).expand(-1, W.shape[-2], -1))


def train_intervention(name: str, n: int, m: int, instances: int, steps: int, lr: float = 1e-3, l1: float = 1e-3,
                       seed: int = 0, device: str = "cpu") -> dict:
    """Train intervention ``name`` of :data:`INTERVENTIONS` at ``n``, ``m``; return its final weights and cost.

    Returns ``{"W": (instances, n, m) final weights (pruned to m where it widens), "resampled": re-drawn
    encodings, "flops": training flops (4 n^2 m' per instance and step, m' the width trained)}``.

    >>> out = train_intervention("one_hot_init", 4, 8, instances=2, steps=10)
    >>> tuple(out["W"].shape), out["flops"]
    ((2, 4, 8), 10240.0)
    """
    if name not in INTERVENTIONS:
        raise ValueError(f"name must be one of {', '.join(INTERVENTIONS)}, got {name!r}")
    iv = INTERVENTIONS[name]
    M = m * iv.width_factor
    cfg = TrainConfig(n=n, m=M, instances=instances, steps=steps, lr=iv.lr or lr, optimizer=iv.optimizer or "adamw",
                      l1=l1 if iv.l1 is None else iv.l1, weight_decay=iv.weight_decay, seed=seed)
    W0 = initial_weights(iv.init, instances, n, M, seed=seed, scale=iv.init_scale)
    resampled = 0
    if iv.prune_at is not None:
        prune_at = min(iv.prune_at, steps - 1)  # a run shorter than the prune step (a smoke test) prunes before its last step
        first = train(TrainConfig(**{**cfg.__dict__, "steps": prune_at}), W0=W0, device=device, progress=False)
        rest = TrainConfig(**{**cfg.__dict__, "m": m, "steps": steps - prune_at})
        W = train(rest, W0=_prune(first.W, m), device=device, progress=False).W
        flops = 4.0 * n * n * instances * (M * prune_at + m * (steps - prune_at))
    elif iv.l1_warmup or iv.resample_every:
        W, resampled = train_schedule(W0, cfg, l1_warmup=iv.l1_warmup, resample_every=iv.resample_every,
                                      resample_until=int(iv.resample_until * steps))
        flops = 4.0 * n * n * M * instances * steps
    else:
        W = train(cfg, W0=W0, device=device, progress=False).W
        flops = 4.0 * n * n * M * instances * steps
    if M != m:
        W = _prune(W, m)
    return {"W": W, "resampled": resampled, "flops": flops}


# --------------------------------------------------------------------------- pairs of features on shared neurons


def shared_pairs(uses: torch.Tensor) -> list[list[tuple[int, int]]]:
    """The pairs ``(i, j)``, ``i < j``, of features that use a common neuron, per instance (sorted, no repeats).

    ``uses`` is a ``(instances, n, m)`` mask, e.g. :func:`polybook.metrics.band_mask` (the book's
    rule) or :func:`polybook.metrics.uses_by_response`.

    >>> shared_pairs(band_mask(torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 0.9]]])))
    [[(0, 1), (2, 3)]]
    """
    out = []
    for b in range(uses.shape[0]):
        found = set()
        for k in torch.nonzero(uses[b].sum(0) >= 2).flatten().tolist():
            found.update(combinations(torch.nonzero(uses[b, :, k]).flatten().tolist(), 2))
        out.append(sorted(found))
    return out


def _codes(pairs, n: int) -> np.ndarray:
    return np.array([i * n + j for i, j in pairs], dtype=np.int64)


def pair_overlap(a, b) -> int:
    """Number of pairs two seeds have in common.

    >>> pair_overlap([(0, 1), (2, 5)], [(2, 5), (3, 4)])
    1
    """
    return len(set(map(tuple, a)) & set(map(tuple, b)))


def _permuted_overlaps(a, b, n: int, perms: np.ndarray) -> np.ndarray:
    """Overlap of ``a`` with ``b`` relabelled by each row of ``perms`` (``(P, n)``): the null's draws."""
    if not len(a) or not len(b):
        return np.zeros(len(perms), dtype=np.int64)
    B = np.asarray(b)
    x, y = perms[:, B[:, 0]], perms[:, B[:, 1]]  # (P, |b|)
    mapped = np.minimum(x, y) * n + np.maximum(x, y)
    return np.isin(mapped, _codes(a, n)).sum(axis=1)


def seed_consistency(pairs: list, n: int, permutations: int = 2000, seed: int = 0) -> dict:
    """How many shared pairs two seeds have in common, averaged over every two seeds, against its null.

    The null relabels the features of each seed by an independent uniform permutation: what the
    overlap would be if which features end up sharing were unrelated across seeds (incidental).
    Returns ``observed``, ``null_mean``, ``null_sd``, ``z`` (``(observed - null_mean) / null_sd``),
    ``p`` (share of null draws at least as large, with the observed one counted), ``null`` (the draws)
    and ``pairs_per_seed``.

    >>> r = seed_consistency([[(0, 1)], [(0, 1)], [(0, 1)]], n=10, permutations=200)
    >>> r["observed"], r["p"] < 0.05
    (1.0, True)

    Introduced in the book: :ref:`detect` (chapter prevention).
    """
    check.integer("n", n, minimum=2)
    check.integer("permutations", permutations)
    if len(pairs) < 2:
        check.fail("pairs", len(pairs), "a list with the pairs of at least 2 seeds")
    rng = np.random.default_rng(seed)
    S = len(pairs)
    obs = float(np.mean([pair_overlap(pairs[a], pairs[b]) for a, b in combinations(range(S), 2)]))
    perms = np.argsort(rng.random((S, permutations, n)), axis=-1)  # one relabelling per seed and draw
    total = np.zeros(permutations)
    for a, b in combinations(range(S), 2):
        # relabel both seeds: overlap of pi_a(A) with pi_b(B) has the law of A with pi_a^-1 pi_b (B)
        rel = np.take_along_axis(np.argsort(perms[a], axis=-1), perms[b], axis=-1)
        total += _permuted_overlaps(pairs[a], pairs[b], n, rel)
    null = total / (S * (S - 1) / 2)
    sd = float(null.std(ddof=1))
    return {"observed": obs, "null_mean": float(null.mean()), "null_sd": sd, "null": null,
            "z": (obs - float(null.mean())) / sd if sd > 0 else math.inf if obs > null.mean() else 0.0,
            "p": float((1 + (null >= obs).sum()) / (permutations + 1)),
            "pairs_per_seed": float(np.mean([len(p) for p in pairs]))}


def pair_test_power(pairs: list, n: int, alpha: float = 0.05, permutations: int = 1000, seed: int = 0) -> dict:
    """The two-seed test on every two seeds: share whose overlap is significant at ``alpha``.

    For seeds ``a`` and ``b`` the p-value is the share of ``permutations`` relabellings of ``b`` whose
    overlap with ``a`` is at least the observed one (the observed counted). Under the null the
    share rejected is at most ``alpha``; where pairings repeat across seeds it is the test's power.
    Returns ``rejected`` (share), ``tests`` (how many pairs of seeds) and ``p`` (each p-value).

    >>> pair_test_power([[(0, 1)], [(0, 1)], [(2, 3)]], n=10, permutations=200)["rejected"]
    0.3333333333333333

    Introduced in the book: :ref:`detect` (chapter prevention).
    """
    check.number("alpha", alpha, 0.0, strict=True, maximum=1.0)
    rng = np.random.default_rng(seed)
    ps = []
    for a, b in combinations(range(len(pairs)), 2):
        perms = np.argsort(rng.random((permutations, n)), axis=-1)
        null = _permuted_overlaps(pairs[a], pairs[b], n, perms)
        ps.append(float((1 + (null >= pair_overlap(pairs[a], pairs[b])).sum()) / (permutations + 1)))
    ps_arr = np.array(ps)
    return {"rejected": float((ps_arr <= alpha).mean()), "tests": len(ps), "p": ps}


# --------------------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class InterventionsConfig:
    """Every intervention at one ``n``, ``m``, budget of steps; and the two regimes for detection.

    Interventions: ``instances`` models each, from initial weights of seed ``seed`` (shared by every
    intervention that keeps the paper's initialisation). Detection, necessary regime: the toy model
    of superposition with a hidden ReLU (:mod:`polybook.superposition`), ``sup_n`` features with
    importances ``sup_decay**i`` in ``sup_m`` neurons at sparsity ``sup_sparsity``, ``sup_seeds`` seeds,
    ``sup_steps`` steps. The incidental regime reuses the baseline's models.
    """

    n: int = 32
    m: int = 128
    instances: int = 32
    steps: int = 7500
    lr: float = 1e-3
    l1: float = 1e-3
    interventions: tuple[str, ...] = tuple(INTERVENTIONS)
    sup_n: int = 20
    sup_m: int = 10
    sup_sparsity: float = 0.9
    sup_decay: float = 0.8
    sup_seeds: int = 16
    sup_steps: int = 3000
    seed: int = 0

    def __post_init__(self) -> None:
        check.integer("n", self.n, minimum=2)
        check.integer("m", self.m, minimum=self.n)
        check.integer("instances", self.instances, minimum=2)
        check.integer("steps", self.steps, minimum=2)
        check.number("lr", self.lr, 0.0, strict=True)
        check.number("l1", self.l1)
        if not self.interventions or self.interventions[0] != "baseline" or any(
                k not in INTERVENTIONS for k in self.interventions):
            check.fail("interventions", self.interventions, f"a tuple starting with 'baseline', from {', '.join(INTERVENTIONS)}")
        check.integer("sup_n", self.sup_n, minimum=2)
        check.integer("sup_m", self.sup_m)
        check.number("sup_sparsity", self.sup_sparsity, maximum=0.999)
        check.number("sup_decay", self.sup_decay, 0.0, strict=True, maximum=1.0)
        check.integer("sup_seeds", self.sup_seeds, minimum=2)
        check.integer("sup_steps", self.sup_steps)
        check.seed("seed", self.seed)

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory: the widest intervention's training (interventions run one after another)."""
        widest = max(INTERVENTIONS[k].width_factor for k in self.interventions)
        return train_memory_bytes(TrainConfig(n=self.n, m=widest * self.m, instances=self.instances, steps=self.steps))

    def flops(self) -> float:
        """Rough floating-point operations (the widest interventions counted at their width)."""
        per = 4.0 * self.n**2 * self.m * self.instances * self.steps
        return per * sum(INTERVENTIONS[k].width_factor for k in self.interventions)


def _summary(name: str, out: dict, cfg: InterventionsConfig, base_flops: float) -> dict:
    W = out["W"]
    return {"name": name, "label": INTERVENTIONS[name].label,
            "polysemantic": polysemantic_neurons(W).tolist(),
            "final_loss": [float(f"{float(v):.5g}") for v in reconstruction_loss(W)],
            "one_hot": [round(float(v), 4) for v in one_hot_share(W, tol=0.1)],
            "flops_ratio": round(out["flops"] / base_flops, 4), "resampled": out["resampled"],
            "pairs": [[list(p) for p in ps] for ps in shared_pairs(band_mask(W))]}


def superposition_pairs(cfg: InterventionsConfig, device: str = "cpu") -> dict:
    """Train the necessary regime's seeds; the pairs sharing a neuron by the response rule ``ReLU(W_ik) > 1/2``."""
    from .superposition import SuperpositionConfig, train_superposition

    sc = SuperpositionConfig(n=cfg.sup_n, m=cfg.sup_m, sparsity=(cfg.sup_sparsity,), importance_decay=cfg.sup_decay,
                             repeats=cfg.sup_seeds, hidden_relu=True, steps=cfg.sup_steps, seed=cfg.seed)
    res = train_superposition(sc, device=device, progress=False)
    uses = uses_by_response(res.W, 0.5, relu=True)
    return {"n": cfg.sup_n, "m": cfg.sup_m, "pairs": [[list(p) for p in ps] for ps in shared_pairs(uses)],
            "polysemantic": (uses.sum(-2) >= 2).sum(-1).tolist(),
            "final_loss": [float(f"{float(v):.5g}") for v in res.final_loss()]}


@register(
    "interventions",
    "polysemantic count and loss per intervention at fixed width; pairings across seeds in two regimes",
    book=InterventionsConfig(),
    paper=InterventionsConfig(n=64, m=256, instances=32, sup_seeds=32),
)
def run_interventions(cfg: InterventionsConfig, device: torch.device, progress: bool = True) -> dict:
    """``results``: ``n``, ``m``, ``steps``, ``interventions`` (per intervention: ``name``, ``label``,
    ``polysemantic`` and ``final_loss`` per instance, ``one_hot`` per instance (share of encodings with
    one weight above 0.1), ``flops_ratio`` against the baseline, ``resampled``, ``pairs`` per instance)
    and ``necessary`` (the superposition seeds' pairs, counts and losses)."""
    base_flops = 4.0 * cfg.n**2 * cfg.m * cfg.instances * cfg.steps
    rows = []
    for name in cfg.interventions:
        out = train_intervention(name, cfg.n, cfg.m, cfg.instances, cfg.steps, cfg.lr, cfg.l1, cfg.seed, str(device))
        rows.append(_summary(name, out, cfg, base_flops))
    return {"n": cfg.n, "m": cfg.m, "steps": cfg.steps, "interventions": rows,
            "necessary": superposition_pairs(cfg, str(device))}


def replay_interventions(record: dict, names=("baseline",), instances: int = 2) -> dict:
    """Re-train the first ``instances`` instances of interventions ``names`` of a stored record.

    Only interventions whose instances do not depend on how many are trained together can be
    sliced: those with the paper's initialisation and no resampling (``ValueError`` otherwise).
    Returns ``{"stored": [...], "replayed": [...]}``: per name, the band-rule counts.
    """
    if record.get("experiment") != "interventions":
        raise ValueError(f"record must be an interventions result, got {record.get('experiment')!r}")
    for name in names:
        iv = INTERVENTIONS.get(name)
        if iv is None or iv.init != "normal" or iv.resample_every:
            raise ValueError(f"names must be interventions with the paper's initialisation and no resampling, got {name!r}")
    c = record["config"]
    stored = {r["name"]: r["polysemantic"][:instances] for r in record["results"]["interventions"]}
    out = {"stored": [], "replayed": []}
    for name in names:
        W = train_intervention(name, c["n"], c["m"], instances, c["steps"], c["lr"], c["l1"], c["seed"])["W"]
        out["stored"].append(stored[name])
        out["replayed"].append(polysemantic_neurons(W).tolist())
    return out


def intervention_rows(record: dict) -> list[dict]:
    """One row per intervention: means and standard errors of the count and the loss, and paired
    differences from the baseline where the intervention keeps the baseline's initial weights.

    Keys: ``name``, ``label``, ``count``, ``count_se``, ``loss``, ``loss_se``, ``flops_ratio``,
    ``one_hot`` (mean share), ``paired`` (whether the instances start from the baseline's weights),
    ``d_count``, ``d_count_se``, ``d_loss``, ``d_loss_se`` (intervention minus baseline; paired
    differences when ``paired``, else independent samples).

    Introduced in the book: :ref:`interventions` (chapter prevention).
    """
    res = record.get("results", record)
    base = res["interventions"][0]
    b_c, b_l = np.asarray(base["polysemantic"], float), np.asarray(base["final_loss"], float)
    rows = []
    for r in res["interventions"]:
        c, loss = np.asarray(r["polysemantic"], float), np.asarray(r["final_loss"], float)
        k = c.size
        iv = INTERVENTIONS[r["name"]]
        paired = iv.init == "normal" and iv.init_scale == 1.0 and iv.width_factor == 1

        def diff(x, y):
            if paired:
                d = x - y
                return float(d.mean()), float(d.std(ddof=1) / math.sqrt(k))
            return float(x.mean() - y.mean()), float(math.sqrt(x.var(ddof=1) / k + y.var(ddof=1) / y.size))

        dc, dcs = diff(c, b_c)
        dl, dls = diff(loss, b_l)
        rows.append({"name": r["name"], "label": r["label"], "count": float(c.mean()),
                     "count_se": float(c.std(ddof=1) / math.sqrt(k)), "loss": float(loss.mean()),
                     "loss_se": float(loss.std(ddof=1) / math.sqrt(k)), "flops_ratio": r["flops_ratio"],
                     "one_hot": float(np.mean(r["one_hot"])), "paired": paired,
                     "d_count": dc, "d_count_se": dcs, "d_loss": dl, "d_loss_se": dls})
    return rows


# --------------------------------------------------------------------------- figures and explorer


def plot_tradeoff(axes, rows, highlight=()) -> None:
    """Two panels: mean count against mean final loss (log scale), and against training compute.

    Points carry their position in ``rows`` as a label (the chapter's table numbers its rows the same
    way); on the compute panel only points away from the baseline's compute are labelled.

    Introduced in the book: :ref:`interventions` (chapter prevention).
    """
    for ax, key, xlabel in ((axes[0], "loss", "final reconstruction loss (mean $\\pm$ s.e.)"),
                            (axes[1], "flops_ratio", "training flops / baseline")):
        for idx, r in enumerate(rows):
            col = PALETTE["paper"] if r["name"] in highlight else PALETTE["theory"] if r["name"] == "baseline" \
                else PALETTE["measured"]
            ax.errorbar(r[key], r["count"], yerr=r["count_se"], xerr=r["loss_se"] if key == "loss" else None,
                        fmt="o", color=col, ms=5, capsize=2)
            if key == "loss" or r["flops_ratio"] > 1.05 or r["name"] == "baseline":
                ax.annotate(str(idx), (r[key], r["count"]), textcoords="offset points",
                            xytext=(5, 2) if idx % 2 else (-11, 2), fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("polysemantic neurons per model")
        ax.set_xscale("log")


def explorer_figure(name: str = "resample", n: int = 32, m: int = 128, instances: int = 8, steps: int = 7500,
                    seed: int = 0):
    """Train the baseline and intervention ``name`` from the same seed; draw their counts and losses.

    Returns the figure and ``(baseline counts, intervention counts)``.

    Introduced in the book: :doc:`/book/prevention` (chapter prevention).
    """
    import matplotlib.pyplot as plt

    outs = [train_intervention(k, n, m, instances, steps, seed=seed) for k in ("baseline", name)]
    counts = [polysemantic_neurons(o["W"]).numpy() for o in outs]
    losses = [reconstruction_loss(o["W"]).numpy() for o in outs]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for ax, vals, ylab in ((axes[0], counts, "polysemantic neurons per model"), (axes[1], losses, "final loss")):
        for b in range(instances):
            ax.plot([0, 1], [vals[0][b], vals[1][b]], color=PALETTE["measured"], alpha=0.4, marker="o", ms=4)
        ax.errorbar([0, 1], [v.mean() for v in vals], yerr=[v.std(ddof=1) / math.sqrt(instances) for v in vals],
                    fmt="s", color="k", capsize=4, label="mean $\\pm$ s.e.")
        ax.set_xticks([0, 1], ["baseline", name])
        ax.set_xlim(-0.4, 1.4)
        ax.set_ylabel(ylab)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"n = {n}, m = {m}, {instances} models, {steps} steps: {INTERVENTIONS[name].label}", fontsize=10)
    return fig, (counts[0], counts[1])


def explorer(name: str = "resample", n: int = 32, m: int = 128, instances: int = 8, steps: int = 7500):
    """A menu of interventions and sliders for ``n`` and ``m``; "Train" redraws :func:`explorer_figure`.

    Only in a live kernel (Colab, Jupyter).

    Introduced in the book: :doc:`/book/prevention` (chapter prevention).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def show(name, n, m):
        explorer_figure(name, n, max(m, n), instances=instances, steps=steps)
        plt.show()

    return widgets.interact_manual.options(manual_name="Train")(
        show,
        name=widgets.Dropdown(options=[k for k in INTERVENTIONS if k != "baseline"], value=name, description="intervention"),
        n=widgets.IntSlider(value=n, min=4, max=64, step=4, description="features n", continuous_update=False),
        m=widgets.IntSlider(value=m, min=8, max=512, step=8, description="neurons m", continuous_update=False),
    )
