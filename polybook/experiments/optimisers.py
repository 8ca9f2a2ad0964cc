"""Experiment ``optimisers``: the same initial weights trained by four optimisers, to the finish rule.

The paper's theory is gradient flow; its experiments use AdamW. This experiment asks which of the
book's findings belong to the model and which to the optimiser. At each ``(n, m)`` point it draws
``instances`` initial weights once and trains every instance under each optimiser of
``optimizers`` from those very weights (paired: a difference between optimisers is never a
difference of draws), with the same L1 strength, to its own number of steps:

- ``gd``: plain full-batch gradient descent, the setting of the paper's theory;
- ``momentum``: gradient descent with heavy-ball momentum 0.9;
- ``adamw``: AdamW (betas 0.9, 0.999, no weight decay), the setting of the paper's experiments;
- ``rmsprop``: Adam without momentum (``beta1 = 0``), i.e. RMSprop with Adam's bias correction:
  AdamW's per-weight normalisation alone, to tell what the normalisation does from what the
  momentum does.

Each run records, per instance: the finish measure (share of one-hot encodings, the book's rule
``FINISHED_SHARE``), the band-rule count of polysemantic neurons and the exact birthday
expectation, the share of features won by their initial leader, the share of final shared pairs
whose two features already shared their initial leader, and the three assumptions of the
birthday count: how many features each neuron wins (occupancy, against the multinomial), and the
pairs of features whose winners coincide, split by the relative sign of their weights (against
``C(n, 2) / (2m)`` each for independent winners with fair signs). The same pair counts are
followed over training at ``points`` log-spaced steps.
"""

from __future__ import annotations

import dataclasses
import math
import types

import torch

from ..metrics import one_hot_share, polysemantic_neurons
from ..models import init_weights, loss_and_grad
from ..theory import expected_polysemantic_exact
from ..train import make_optimizer, resolve_device, run_steps
from .config import ExperimentConfig, param
from .registry import Experiment
from .sparsification import _log_grid

__all__ = ["optimiser_rows"]

#: The optimisers this experiment knows, in the order the chapter shows them.
KINDS = ("gd", "momentum", "adamw", "rmsprop")


@dataclasses.dataclass(frozen=True)
class OptimisersConfig(ExperimentConfig):
    """Paired runs of the L1 autoencoder under several optimisers.

    Point ``j`` of the grid ``n x m_over_n`` (``n`` outer) draws its initial weights with seed
    ``seed + j``; every optimiser of ``optimizers`` trains those same weights with L1 strength
    ``l1``, its own learning rate ``<kind>_lr`` and ``<kind>_steps`` steps.
    """

    n: tuple[int, ...] = param((64, 128), minimum=2, unique=True)
    m_over_n: tuple[int, ...] = param((2, 8), unique=True)
    instances: int = param(8, minimum=2)
    optimizers: tuple[str, ...] = param(KINDS, choices=KINDS, unique=True)
    l1: float = 0.01
    gd_lr: float = 0.05
    gd_steps: int = 16000
    momentum_lr: float = 0.005
    momentum_steps: int = 16000
    adamw_lr: float = 1e-3
    adamw_steps: int = 8000
    rmsprop_lr: float = 2.5e-4
    rmsprop_steps: int = 16000
    points: int = param(12, minimum=2)
    seed: int = 4000

    def grid(self) -> list[tuple[int, int]]:
        """The ``(n, m)`` points in run order."""
        return [(n, n * k) for n in self.n for k in self.m_over_n]

    def peak_bytes(self, device: torch.device) -> int:
        """The largest point: weights, gradient, optimiser state (up to two copies), the initial weights,
        the ``(instances, n, n)`` products of a step (three), in float32; the record is small."""
        return max(4 * self.instances * (6 * n * m + 3 * n * n) for n, m in self.grid()) + 2**20

    def flops(self) -> float:
        """Floating-point operations: 4 n^2 m per instance and step, every optimiser at every point."""
        steps = sum(getattr(self, f"{k}_steps") for k in self.optimizers)
        return float(sum(4 * n * n * m * self.instances * steps for n, m in self.grid()))


def _optimizer(kind: str, W: torch.Tensor, lr: float) -> torch.optim.Optimizer:
    if kind == "gd":
        return make_optimizer([W], "sgd", lr)
    if kind == "momentum":
        return torch.optim.SGD([W], lr=lr, momentum=0.9)
    if kind == "adamw":
        return make_optimizer([W], "adamw", lr, 0.0)
    return torch.optim.Adam([W], lr=lr, betas=(0.0, 0.999), foreach=False)


def winner_pairs(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per instance: pairs of features whose winners (arg-max ``|W_ik|``) coincide, by relative sign.

    ``same`` counts pairs on one neuron whose winning weights have the same sign, ``opposite``
    those of opposite signs, and ``crowded`` the neurons that win three or more features. For
    independent, uniform winners with fair signs each pair count has expectation ``C(n, 2) / (2m)``.
    The package's answer to the chapter's exercise *winner pairs by sign*.

    >>> W = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]])
    >>> {k: v.tolist() for k, v in winner_pairs(W).items()}
    {'same': [0], 'opposite': [1], 'crowded': [0]}
    """
    win = W.abs().argmax(-1)  # (instances, n)
    sign = torch.sign(W.gather(-1, win.unsqueeze(-1)).squeeze(-1))
    m = W.shape[-1]
    pos = torch.zeros(W.shape[0], m, dtype=torch.long).scatter_add_(-1, win, (sign > 0).long())
    neg = torch.zeros(W.shape[0], m, dtype=torch.long).scatter_add_(-1, win, (sign <= 0).long())
    tot = pos + neg
    return {"same": (pos * (pos - 1) // 2 + neg * (neg - 1) // 2).sum(-1), "opposite": (pos * neg).sum(-1),
            "crowded": (tot >= 3).sum(-1)}


def _shared_pairs(W: torch.Tensor) -> list[set[tuple[int, int]]]:
    """Per instance: the feature pairs in the band ``0.8 <= |W_ik| <= 1.2`` on a common neuron."""
    band = (W.abs() >= 0.8) & (W.abs() <= 1.2)
    out = []
    for b in band:
        pairs = set()
        for k in torch.nonzero(b.sum(0) >= 2).flatten().tolist():
            feats = torch.nonzero(b[:, k]).flatten().tolist()
            pairs |= {(i, j) for a, i in enumerate(feats) for j in feats[a + 1:]}
        out.append(pairs)
    return out


def _summary(W0: torch.Tensor, W: torch.Tensor, n: int, m: int) -> dict:
    lead0 = W0.abs().argmax(-1)
    win = W.abs().argmax(-1)
    pairs = _shared_pairs(W)
    from_init = [sum(int(lead0[i, a] == lead0[i, b]) for a, b in p) for i, p in enumerate(pairs)]
    occupancy = torch.zeros(W.shape[0], m, dtype=torch.long).scatter_add_(-1, win, torch.ones_like(win))
    hist = torch.stack([(occupancy == k).sum(-1) for k in range(4)] + [(occupancy >= 4).sum(-1)], -1)
    wp = winner_pairs(W)
    return {
        "one_hot": [round(float(v), 6) for v in one_hot_share(W)],
        "count": polysemantic_neurons(W).tolist(),
        "leader": [round(float(v), 6) for v in (win == lead0).double().mean(-1)],
        "shared_pairs": [len(p) for p in pairs],
        "pairs_from_init": from_init,
        "same": wp["same"].tolist(),
        "opposite": wp["opposite"].tolist(),
        "occupancy": hist.tolist(),  # neurons winning 0, 1, 2, 3, >= 4 features, per instance
    }


def train_paired(kind: str, W0: torch.Tensor, *, lr: float, l1: float, steps: int, points: int,
                 device: torch.device, progress: bool = False) -> tuple[torch.Tensor, dict]:
    """Train a copy of ``W0`` under optimiser ``kind``; return the final weights and the followed pair counts.

    The followed record holds, at ``points`` log-spaced steps, the mean over instances of
    :func:`winner_pairs`' ``same`` and ``opposite`` and of the one-hot share.
    """
    W = W0.to(device).clone()
    opt = _optimizer(kind, W, lr)
    grid = set(_log_grid(steps, points).tolist())
    follow: dict[str, list] = {"steps": [], "same": [], "opposite": [], "one_hot": []}

    def record(t: int) -> None:
        wp = winner_pairs(W.cpu())
        follow["steps"].append(t)
        follow["same"].append(round(float(wp["same"].double().mean()), 4))
        follow["opposite"].append(round(float(wp["opposite"].double().mean()), 4))
        follow["one_hot"].append(round(float(one_hot_share(W.cpu()).mean()), 4))

    def step(t: int) -> torch.Tensor:
        loss, grad = loss_and_grad(W, l1=l1)
        W.grad = grad
        opt.step()
        return loss

    def after(t: int) -> None:
        if t + 1 in grid:
            record(t + 1)

    n, m = W0.shape[-2:]
    record(0)
    run_steps(step, steps, device=device, watch=lambda: [W], instances=W0.shape[0], after=after,
              settings=types.SimpleNamespace(lr=lr, l1=l1),
              desc=f"optimisers n={n} m={m} {kind}", progress=progress, work=W0.shape[0] * n * n * m)
    return W.detach().cpu(), follow


def run_optimisers(cfg: OptimisersConfig, device: torch.device, progress: bool = True) -> dict:
    """Per ``(n, m)`` point and optimiser: :func:`_summary` per instance and the followed pair counts."""
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    out: dict = {"points": []}
    for j, (n, m) in enumerate(cfg.grid()):
        W0 = init_weights(cfg.instances, n, m, seed=cfg.seed + j)
        point = {"n": n, "m": m, "seed": cfg.seed + j, "expected": round(expected_polysemantic_exact(n, m), 6),
                 "pairs_independent": round(n * (n - 1) / (4 * m), 6), "runs": {}}
        for kind in cfg.optimizers:
            lr, steps = getattr(cfg, f"{kind}_lr"), getattr(cfg, f"{kind}_steps")
            W, follow = train_paired(kind, W0, lr=lr, l1=cfg.l1, steps=steps, points=cfg.points,
                                     device=device, progress=progress)
            point["runs"][kind] = {"lr": lr, "steps": steps, **_summary(W0, W, n, m), "follow": follow}
        out["points"].append(point)
    return out


def replay_optimisers(record: dict, instances: int = 2, device: str = "cpu") -> dict:
    """Re-train the first ``instances`` instances of the first point under AdamW (the shortest run).

    Returns ``{"stored": ..., "replayed": ...}``: the band-rule counts and leader shares per instance.
    """
    if record.get("experiment") != "optimisers":
        raise ValueError(f"record must be an optimisers result, got {record.get('experiment')!r}")
    cfg = OptimisersConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    n, m = cfg.grid()[0]
    W0 = init_weights(cfg.instances, n, m, seed=cfg.seed)[:instances]
    W, _ = train_paired("adamw", W0, lr=cfg.adamw_lr, l1=cfg.l1, steps=cfg.adamw_steps, points=cfg.points,
                        device=torch.device(device))
    stored = record["results"]["points"][0]["runs"]["adamw"]
    mine = _summary(W0, W, n, m)
    return {"stored": [stored["count"][:instances], stored["leader"][:instances]],
            "replayed": [mine["count"], mine["leader"]]}


def _mean_se(values: list[float]) -> tuple[float, float]:
    k = len(values)
    mean = sum(values) / k
    var = sum((v - mean) ** 2 for v in values) / (k - 1) if k > 1 else math.nan
    return mean, math.sqrt(var / k)


def optimiser_rows(record: dict) -> list[dict]:
    """One row per point and optimiser: means and standard errors over instances (the independent draws).

    ``count`` and ``ratio`` (count over the exact birthday expectation), ``leader`` (share of features
    won by their initial leader), ``from_init`` (share of final shared pairs that shared an initial
    leader; ``nan`` without shared pairs), ``same``/``opposite`` (winner pairs per model, over
    ``C(n, 2) / (2m)``) and ``one_hot`` (the finish measure, mean over instances; the chapter applies
    the book's finish rule to it).

    Introduced in the book: :doc:`/book/optimisers` (chapter optimisers).
    """
    rows = []
    for p in record["results"]["points"]:
        for kind, r in p["runs"].items():
            count = _mean_se(r["count"])
            pairs = sum(r["shared_pairs"])
            rows.append({
                "n": p["n"], "m": p["m"], "optimizer": kind, "steps": r["steps"],
                "count": count[0], "count_se": count[1], "expected": p["expected"],
                "ratio": count[0] / p["expected"], "ratio_se": count[1] / p["expected"],
                "leader": _mean_se(r["leader"])[0], "leader_se": _mean_se(r["leader"])[1],
                "from_init": sum(r["pairs_from_init"]) / pairs if pairs else math.nan, "pairs": pairs,
                "same": _mean_se(r["same"])[0] / p["pairs_independent"],
                "opposite": _mean_se(r["opposite"])[0] / p["pairs_independent"],
                "opposite_se": _mean_se(r["opposite"])[1] / p["pairs_independent"],
                "one_hot": sum(r["one_hot"]) / len(r["one_hot"]),
            })
    return rows


EXPERIMENT = Experiment(
    "optimisers",
    "the same initial weights under gradient descent, momentum, AdamW and RMSprop: leaders, pairs, counts",
    OptimisersConfig,
    book=OptimisersConfig(),
    paper=OptimisersConfig(n=(256,), m_over_n=(2, 8), instances=16),
    run=run_optimisers,
    replay=replay_optimisers,
    rows=optimiser_rows,
    stored=("optimisers",),
)
