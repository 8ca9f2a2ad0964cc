"""Experiment ``interventions``: polysemantic neurons per intervention at fixed width, and pairings across seeds.

The chapter's science is :mod:`polybook.prevention`; this file holds the experiment: the
interventions (the paper's L1 setting changed in one respect at a time: initialisation, optimiser,
L1 strength or schedule, weight decay, width then pruning, resampling of shared neurons), their
training, the config, the run, its replay and its table rows.

Training uses :func:`polybook.train.train` where it fits; an L1 warm-up and resampling need a
change *during* training, so ``train_schedule`` is the same loop (same loss, gradient and
optimiser; it reproduces :func:`polybook.train.train` exactly when neither is switched on) with
those two hooks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from .. import _validate as check
from ..metrics import band_mask, one_hot_share, polysemantic_neurons, uses_by_response
from ..models import init_weights, loss_and_grad, reconstruction_loss
from ..train import TrainConfig, make_optimizer, run_steps, seeded_generator, train, train_memory_bytes
from .config import ExperimentConfig, param
from .registry import Experiment
from .superposition import SuperpositionConfig, train_superposition

__all__ = ["intervention_rows"]


@dataclass(frozen=True)
class Intervention:
    """One change to the baseline (the paper's setting); unset fields keep the baseline's values.

    Every initialisation is made from the baseline's draw ``init_weights(instances, n, m, seed)``,
    so that each intervention's models are paired with the baseline's (:func:`initial_weights`).
    ``init``: ``"normal"`` (the paper's ``N(0, 1/m)``, the draw itself), ``"orthogonal"`` (the draw's
    polar factor: the nearest matrix with orthonormal rows, unit norm and zero initial overlaps),
    ``"sparse"`` (the draw kept on ``k = 8`` random neurons per feature and scaled to ``N(0, 1/k)``),
    ``"one_hot"`` (feature ``i`` starts at weight 1 on its own neuron, plus the draw scaled by 0.1:
    needs the features to be known). ``init_scale`` multiplies the initial weights. ``width_factor``
    trains ``width_factor * m`` neurons (initial std ``1/sqrt(width_factor * m)``: the draw's columns
    rescaled, then fresh ones) and keeps the ``m`` of largest norm, after ``prune_at`` steps (a fresh
    optimiser afterwards) or at the end (``prune_at = None``).
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

#: Offset added to a run's seed for the generator of ``train_schedule``'s resampling.
RESAMPLE_OFFSET = 2_000_003
#: Offset added to a run's seed for the extra columns of a wider start (the baseline's columns come first).
WIDE_OFFSET = 104_729


# --------------------------------------------------------------------------- initial weights and training


def initial_weights(kind: str, instances: int, n: int, m: int, seed: int = 0, scale: float = 1.0,
                    width_factor: int = 1) -> torch.Tensor:
    """Initial weights ``(instances, n, width_factor * m)`` of one of the initialisations of :class:`Intervention`.

    Every kind is made from the baseline's draw ``D = init_weights(instances, n, m, seed)``, so that
    instance ``b`` of every intervention is paired with instance ``b`` of the baseline: ``"normal"`` is
    ``D`` itself; ``"orthogonal"`` is its polar factor ``U V^T`` (``D = U S V^T``), the matrix with
    orthonormal rows nearest to ``D`` (Haar-distributed, as ``D`` is Gaussian); ``"sparse"`` keeps ``D``
    on ``k = 8`` random neurons per feature, scaled by ``sqrt(m / k)`` to ``N(0, 1/k)``; ``"one_hot"``
    is ``0.1 D`` with weight 1 on a distinct random neuron per feature. The result is multiplied by
    ``scale``. With ``width_factor > 1`` (``"normal"`` only) the ``m`` columns of ``D`` are rescaled
    to the wider model's ``N(0, 1/(width_factor m))`` and followed by fresh columns of that law.

    >>> W = initial_weights("orthogonal", 2, 4, 8)
    >>> torch.allclose(W @ W.transpose(-1, -2), torch.eye(4).expand(2, 4, 4), atol=1e-5)
    True
    >>> torch.equal(initial_weights("normal", 2, 4, 8, width_factor=4)[..., :8], init_weights(2, 4, 8) / 2)
    True
    """
    check.choice("init", kind, INIT_KINDS)
    check.number("init_scale", scale, 0.0, strict=True)
    check.integer("width_factor", width_factor, minimum=1)
    if width_factor > 1 and kind != "normal":
        check.fail("init", kind, "'normal' for a wider start")
    base = init_weights(instances, n, m, seed=seed)
    gen = torch.Generator().manual_seed(seed + 7_919)
    if kind == "normal":
        W = base
    elif kind == "orthogonal":
        if n > m:
            check.fail("n", n, f"at most m = {m} for orthogonal rows")
        U, _, Vh = torch.linalg.svd(base.double(), full_matrices=False)
        W = (U @ Vh).to(base.dtype)  # n orthonormal rows: the polar factor of the draw
    elif kind == "sparse":
        k = min(8, m)
        keep = torch.rand(instances, n, m, generator=gen).argsort(dim=-1)[..., :k]
        W = base * torch.zeros(instances, n, m).scatter(-1, keep, 1.0) * math.sqrt(m / k)
    else:
        if n > m:
            check.fail("n", n, f"at most m = {m} for one neuron per feature")
        own = torch.rand(instances, m, generator=gen).argsort(dim=-1)[:, :n]  # distinct neurons
        W = 0.1 * base
        W.scatter_(-1, own.unsqueeze(-1), 1.0)
    W = W * scale
    if width_factor > 1:
        M = width_factor * m
        fresh = init_weights(instances, n, M - m, seed=seed + WIDE_OFFSET, std=1.0 / math.sqrt(M))
        W = torch.cat([W * math.sqrt(m / M), fresh], dim=-1)
    return W


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
    """:func:`polybook.train.train`'s loop with an L1 warm-up and resampling; returns ``(W, resampled)``.

    At step ``t`` L1 is ``cfg.l1 * min(1, t / (l1_warmup * steps))``; every ``resample_every`` steps
    up to step ``resample_until`` :func:`resample_shared` runs, right after that step's update. With
    neither it gives the weights :func:`polybook.train.train` gives (the tests check this). Runs on
    the CPU, one thread.

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
    opt = make_optimizer([W], cfg.optimizer, cfg.lr, cfg.weight_decay)
    gen = seeded_generator(cfg.seed, "cpu", offset=RESAMPLE_OFFSET)
    warm = l1_warmup * cfg.steps
    resampled = 0

    def step(t: int) -> torch.Tensor:
        l1 = cfg.l1 * min(1.0, t / warm) if warm else cfg.l1
        loss, grad = loss_and_grad(W, l1)
        W.grad = grad
        opt.step()
        return loss

    def resample(t: int) -> None:
        nonlocal resampled
        if resample_every and (t + 1) % resample_every == 0 and t + 1 <= resample_until:
            resampled += resample_shared(W, opt, gen)

    run_steps(step, cfg.steps, device=torch.device("cpu"), watch=lambda: (W,), instances=cfg.instances,
              settings=cfg, desc="interventions", after=resample)
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
    W0 = initial_weights(iv.init, instances, n, m, seed=seed, scale=iv.init_scale, width_factor=iv.width_factor)
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


def pairs_sharing_a_neuron(uses: torch.Tensor) -> list[list[tuple[int, int]]]:
    """The pairs ``(i, j)``, ``i < j``, of features that use a common neuron, per instance (sorted, no repeats).

    ``uses`` is a ``(instances, n, m)`` mask, e.g. :func:`polybook.metrics.band_mask` (the book's
    rule) or :func:`polybook.metrics.uses_by_response`.

    >>> pairs_sharing_a_neuron(band_mask(torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 0.9]]])))
    [[(0, 1), (2, 3)]]
    """
    out = []
    for b in range(uses.shape[0]):
        found = set()
        for k in torch.nonzero(uses[b].sum(0) >= 2).flatten().tolist():
            found.update(combinations(torch.nonzero(uses[b, :, k]).flatten().tolist(), 2))
        out.append(sorted(found))
    return out


# --------------------------------------------------------------------------- the experiment


@dataclasses.dataclass(frozen=True)
class InterventionsConfig(ExperimentConfig):
    """Every intervention at one ``n``, ``m``, budget of steps; and the three regimes for detection.

    Interventions: ``instances`` models each, all made from the initial draw of seed ``seed`` (see
    :func:`initial_weights`: instance ``b`` of every intervention is paired with the baseline's).
    Detection, incidental regime: the baseline's models. Necessary regime with a hierarchy: the toy
    model of superposition with a hidden ReLU (:mod:`polybook.superposition`), ``sup_n`` features
    with importances ``sup_decay**i`` in ``sup_m`` neurons at sparsity ``sup_sparsity``, ``sup_seeds``
    seeds, ``sup_steps`` steps, seed ``seed + 1``. Necessary regime with exchangeable features: the
    paper's own model (equal importances, tied weights) at ``n`` features in ``n // 2`` neurons, so
    that every neuron must hold two features; ``instances`` models of the baseline's optimiser and
    L1, ``exch_steps`` steps (it sparsifies more slowly than at ``m > n``), seed ``seed + 2``.

    The default seed, 1100, lies in the interventions' block (1000 to 1999) clear of
    ``collisions-n``'s seeds 1000 to 1008: :func:`polybook.models.init_weights` draws the same
    numbers for a seed whatever the shape, so a shared seed would share raw draws.
    """

    n: int = param(32, minimum=2)
    m: int = 128
    instances: int = param(32, minimum=2)
    steps: int = param(7500, minimum=2)
    lr: float = 1e-3
    l1: float = 1e-3
    interventions: tuple[str, ...] = param(tuple(INTERVENTIONS), choices=tuple(INTERVENTIONS), unique=True)
    sup_n: int = param(20, minimum=2)
    sup_m: int = 10
    sup_sparsity: float = param(0.9, maximum=0.999)
    sup_decay: float = param(0.8, strict=True, maximum=1.0)
    sup_seeds: int = param(16, minimum=2)
    sup_steps: int = 3000
    exch_steps: int = param(20000, minimum=1)
    seed: int = 1100

    def check(self) -> None:
        """``m`` at least ``n``; the interventions start with ``"baseline"`` and are known ones."""
        check.integer("m", self.m, minimum=self.n)
        if self.interventions[0] != "baseline" or any(k not in INTERVENTIONS for k in self.interventions):
            check.fail("interventions", self.interventions,
                       f"a tuple starting with 'baseline', from {', '.join(INTERVENTIONS)}")

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory: the widest intervention's training or the necessary regime's, whichever
        is larger (they run one after another); the latter trains ``sup_seeds`` toy models at once."""
        widest = max(INTERVENTIONS[k].width_factor for k in self.interventions)
        # The config superposition_pairs trains.
        sup = SuperpositionConfig(n=self.sup_n, m=self.sup_m, sparsity=(self.sup_sparsity,),
                                  importance_decay=self.sup_decay, repeats=self.sup_seeds, hidden_relu=True,
                                  steps=self.sup_steps, seed=self.seed)
        return max(train_memory_bytes(TrainConfig(n=self.n, m=widest * self.m, instances=self.instances,
                                                  steps=self.steps)),
                   sup.peak_bytes(device))

    def flops(self) -> float:
        """Rough floating-point operations (the widest interventions counted at their width, and the
        exchangeable regime)."""
        per = 4.0 * self.n**2 * self.m * self.instances * self.steps
        exch = 4.0 * self.n**2 * (self.n // 2) * self.instances * self.exch_steps
        return per * sum(INTERVENTIONS[k].width_factor for k in self.interventions) + exch


def _intervention_summary(name: str, out: dict, cfg: InterventionsConfig, base_flops: float) -> dict:
    """The stored numbers of one trained intervention (one value or one list per instance per field)."""
    W = out["W"]
    return {"name": name, "label": INTERVENTIONS[name].label,
            "polysemantic": polysemantic_neurons(W).tolist(),
            "final_loss": [float(f"{float(v):.5g}") for v in reconstruction_loss(W)],
            "one_hot": [round(float(v), 4) for v in one_hot_share(W, tol=0.1)],
            "flops_ratio": round(out["flops"] / base_flops, 4), "resampled": out["resampled"],
            "pairs": [[list(p) for p in ps] for ps in pairs_sharing_a_neuron(band_mask(W))]}


def superposition_pairs(cfg: InterventionsConfig, device: str = "cpu") -> dict:
    """Train the necessary regime's seeds; the pairs sharing a neuron by the response rule ``ReLU(W_ik) > 1/2``."""
    sc = SuperpositionConfig(n=cfg.sup_n, m=cfg.sup_m, sparsity=(cfg.sup_sparsity,), importance_decay=cfg.sup_decay,
                             repeats=cfg.sup_seeds, hidden_relu=True, steps=cfg.sup_steps, seed=cfg.seed)
    res = train_superposition(sc, device=device, progress=False, seed=cfg.seed + 1)
    uses = uses_by_response(res.W, 0.5, relu=True)
    return {"n": cfg.sup_n, "m": cfg.sup_m, "pairs": [[list(p) for p in ps] for ps in pairs_sharing_a_neuron(uses)],
            "polysemantic": (uses.sum(-2) >= 2).sum(-1).tolist(),
            "final_loss": [float(f"{float(v):.5g}") for v in res.final_loss()]}


def exchangeable_pairs(cfg: InterventionsConfig, device: str = "cpu") -> dict:
    """Train the exchangeable necessary regime: the paper's model at ``n`` features in ``n // 2`` neurons.

    Equal importances and tied weights, the baseline's optimiser and L1, ``exch_steps`` steps, seed
    ``seed + 2``. Returns ``n``, ``m``, ``steps``, per instance ``pairs`` and ``polysemantic`` (band
    rule), ``one_hot`` and ``final_loss``.
    """
    m = cfg.n // 2
    tc = TrainConfig(n=cfg.n, m=m, instances=cfg.instances, steps=cfg.exch_steps, lr=cfg.lr, l1=cfg.l1,
                     seed=cfg.seed + 2)
    W = train(tc, W0=init_weights(cfg.instances, cfg.n, m, seed=cfg.seed + 2), device=device, progress=False).W
    return {"n": cfg.n, "m": m, "steps": cfg.exch_steps,
            "pairs": [[list(p) for p in ps] for ps in pairs_sharing_a_neuron(band_mask(W))],
            "polysemantic": polysemantic_neurons(W).tolist(),
            "one_hot": [round(float(v), 4) for v in one_hot_share(W, tol=0.1)],
            "final_loss": [float(f"{float(v):.5g}") for v in reconstruction_loss(W)]}


def run_interventions(cfg: InterventionsConfig, device: torch.device, progress: bool = True) -> dict:
    """``results``: ``n``, ``m``, ``steps``, ``interventions`` (per intervention: ``name``, ``label``,
    ``polysemantic`` and ``final_loss`` per instance, ``one_hot`` per instance (share of encodings with
    one weight above 0.1), ``flops_ratio`` against the baseline, ``resampled``, ``pairs`` per instance),
    ``necessary`` (the superposition seeds' pairs, counts and losses) and ``exchangeable`` (the paper's
    model at ``m = n // 2``: :func:`exchangeable_pairs`)."""
    base_flops = 4.0 * cfg.n**2 * cfg.m * cfg.instances * cfg.steps
    rows = []
    for name in cfg.interventions:
        out = train_intervention(name, cfg.n, cfg.m, cfg.instances, cfg.steps, cfg.lr, cfg.l1, cfg.seed, str(device))
        rows.append(_intervention_summary(name, out, cfg, base_flops))
    return {"n": cfg.n, "m": cfg.m, "steps": cfg.steps, "interventions": rows,
            "necessary": superposition_pairs(cfg, str(device)),
            "exchangeable": exchangeable_pairs(cfg, str(device))}


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
    ``one_hot`` (mean share), ``paired`` (whether instance ``b`` starts from the baseline's draw ``b``:
    every intervention of ``INTERVENTIONS`` does, see ``initial_weights``), ``d_count``,
    ``d_count_se``, ``d_loss``, ``d_loss_se`` (intervention minus baseline; paired differences when
    ``paired``, else independent samples), and ``rel_loss``, ``rel_loss_se``: the mean over instances
    of ``ln(loss / baseline's loss)`` (paired) or the difference of the mean log losses, with its
    standard error; ``exp(rel_loss)`` is the loss ratio.

    Introduced in the book: :ref:`interventions` (chapter prevention).
    """
    res = record.get("results", record)
    base = res["interventions"][0]
    b_c, b_l = np.asarray(base["polysemantic"], float), np.asarray(base["final_loss"], float)
    rows = []
    for r in res["interventions"]:
        c, loss = np.asarray(r["polysemantic"], float), np.asarray(r["final_loss"], float)
        k = c.size
        paired = c.size == b_c.size  # instance b of every intervention starts from the baseline's draw b

        def diff(x, y):
            if paired:
                d = x - y
                return float(d.mean()), float(d.std(ddof=1) / math.sqrt(k))
            return float(x.mean() - y.mean()), float(math.sqrt(x.var(ddof=1) / k + y.var(ddof=1) / y.size))

        dc, dcs = diff(c, b_c)
        dl, dls = diff(loss, b_l)
        rl, rls = diff(np.log(loss), np.log(b_l))
        rows.append({"name": r["name"], "label": r["label"], "count": float(c.mean()),
                     "count_se": float(c.std(ddof=1) / math.sqrt(k)), "loss": float(loss.mean()),
                     "loss_se": float(loss.std(ddof=1) / math.sqrt(k)), "flops_ratio": r["flops_ratio"],
                     "one_hot": float(np.mean(r["one_hot"])), "paired": paired,
                     "d_count": dc, "d_count_se": dcs, "d_loss": dl, "d_loss_se": dls,
                     "rel_loss": rl, "rel_loss_se": rls})
    return rows


EXPERIMENT = Experiment(
    "interventions",
    "polysemantic count and loss per intervention at fixed width; pairings across seeds in three regimes",
    InterventionsConfig,
    book=InterventionsConfig(),
    paper=InterventionsConfig(n=64, m=256, instances=32, sup_seeds=32),
    run=run_interventions,
    replay=replay_interventions,
    rows=intervention_rows,
    stored=("interventions",),
)
