"""Experiment ``winners``: how often a feature's initial leader ends as its only neuron.

Under gradient descent and AdamW, with interference and without, and under AdamW across learning
rates at a fixed product of learning rate and steps. The chapter (:mod:`polybook.regularisation`)
loads a stored run. This file holds the experiment: its config, its run, its replay and its table rows.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..metrics import one_hot_share, winner_initial_rank
from ..train import TrainConfig, train, train_memory_bytes
from .config import ExperimentConfig, param
from .registry import Experiment
from .sparsification import _log_grid

__all__ = ["dominance"]


def dominance(W: torch.Tensor) -> torch.Tensor:
    """Share of each encoding's squared norm on its largest weight, ``max_k W_ik^2 / ||W_i||^2``.

    1 for a one-hot encoding; a feature counts as settled on one neuron when it exceeds 0.9.

    Introduced in the book: :ref:`verdict-wta` (chapter regularisation).
    """
    sq = W * W
    return sq.max(-1).values / sq.sum(-1).clamp_min(torch.finfo(W.dtype).tiny)


def _winner_index(W: torch.Tensor) -> torch.Tensor:
    """The arg-max of ``|W_ik|`` per feature as a float tensor (to stack with :func:`dominance`)."""
    return W.abs().argmax(-1).to(W.dtype)


@dataclasses.dataclass(frozen=True)
class WinnersConfig(ExperimentConfig):
    """Does each feature's initial leader (largest ``|W_ik(0)|``) end as its only neuron?

    For each ``m`` and optimiser: train ``instances`` autoencoders with ``n`` features (with
    interference) and ``n * instances`` single features (``n = 1``: no interference; this is
    exactly what ``interference=False`` computes, feature by feature). AdamW uses ``adamw_lr``,
    ``adamw_l1``, ``adamw_steps``; gradient descent ``sgd_lr``, ``sgd_l1``, ``sgd_steps``. The
    ``j``-th ``m`` uses seed ``seed + j``. Winners are recorded at ``points`` log-spaced steps.

    The learning-rate sweep trains, at ``m = lr_m`` (one of ``m``) and from the same initial
    weights as the main run there, AdamW with each learning rate of ``adamw_lr_sweep`` for
    ``adamw_lr * adamw_steps / lr`` steps (the product of learning rate and steps held fixed),
    with interference. An empty sweep skips it.
    """

    n: int = 64
    m: tuple[int, ...] = param((128, 256, 512), unique=True)
    instances: int = 8
    adamw_lr: float = 1e-3
    adamw_l1: float = 1e-3
    adamw_steps: int = 6000
    sgd_lr: float = 0.05
    sgd_l1: float = 0.01
    sgd_steps: int = 12000
    points: int = param(24, minimum=2)
    lr_m: int = 256
    adamw_lr_sweep: tuple[float, ...] = param((1e-4, 3e-4, 1e-3, 3e-3), strict=True, empty=True, unique=True)
    seed: int = 0

    def check(self) -> None:
        """A learning-rate sweep needs ``lr_m`` to be one of ``m``."""
        if self.adamw_lr_sweep and self.lr_m not in self.m:
            raise ValueError(f"lr_m must be one of m {self.m}, got {self.lr_m!r}")

    def train_config(self, j: int, optimizer: str, single: bool) -> TrainConfig:
        """The run for the ``j``-th ``m``, ``optimizer``, with interference or as single features."""
        lr, l1, steps = (getattr(self, f"{optimizer}_{k}") for k in ("lr", "l1", "steps"))
        n, inst = (1, self.n * self.instances) if single else (self.n, self.instances)
        return TrainConfig(n=n, m=self.m[j], instances=inst, steps=steps, lr=lr, l1=l1,
                           optimizer=optimizer, seed=self.seed + j)

    def sweep_config(self, lr: float) -> TrainConfig:
        """The AdamW run of the learning-rate sweep at ``lr``: ``lr * steps = adamw_lr * adamw_steps``."""
        j = self.m.index(self.lr_m)
        steps = max(1, round(self.adamw_lr * self.adamw_steps / lr))
        return dataclasses.replace(self.train_config(j, "adamw", False), lr=lr, steps=steps)

    def _runs(self) -> list[TrainConfig]:
        main = [self.train_config(j, opt, single) for j in range(len(self.m))
                for opt in ("sgd", "adamw") for single in (False, True)]
        return main + [self.sweep_config(lr) for lr in self.adamw_lr_sweep if lr != self.adamw_lr]

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory of the largest single run with its snapshots, and the record, in bytes.

        A run makes its log-spaced grid of ``points`` steps (about 16 bytes a point), keeps the
        winner and dominance of every instance and feature at each distinct step of it (at most
        ``min(points, steps) + 1``, one tensor a step: about 1 KiB besides its numbers), and stacks
        them again to score them: about 24 bytes per instance, feature and kept step. The record
        holds two curves per run, each number taking about 128 bytes (a Python float in a list and
        its JSON text).
        """
        runs = self._runs()
        kept = [min(self.points, tc.steps) + 1 for tc in runs]
        one = max(train_memory_bytes(tc) + 16 * self.points + k * (1024 + 24 * tc.instances * tc.n)
                  for tc, k in zip(runs, kept))
        return one + 128 * 2 * sum(kept)

    def flops(self) -> float:
        """Floating-point operations of every run (4 n^2 m per instance and step)."""
        return float(sum(4 * tc.n**2 * tc.m * tc.instances * tc.steps for tc in self._runs()))


def winner_record(W0: torch.Tensor, snapshots: dict[int, torch.Tensor]) -> dict:
    """Leader statistics from ``W0`` and snapshots of ``torch.stack([winners, dominance], -1)``.

    Returns the final fractions of features won by the initial leader (``leader``; per instance
    in ``leader_by_instance``, the independent units for a standard error), by one of
    the initial top 3 (``top3``), settled on one neuron (``settled``: dominance > 0.9), and
    whose arg-max did not change over the second half of the run (``stable``: the winner is
    decided); and, over the recorded ``steps``, the fraction whose current arg-max is still the
    initial leader (``leader_curve``) and is already the final winner (``final_curve``).
    """
    steps = sorted(snapshots)
    win = torch.stack([snapshots[s][..., 0].long() for s in steps])  # (points, instances, n)
    lead = W0.abs().argmax(-1)  # (instances, n)
    final = win[-1]
    rank = (W0.abs() > W0.abs().gather(-1, final.unsqueeze(-1))).sum(-1)
    half = [k for k, s in enumerate(steps) if 2 * s >= steps[-1]]
    stable = (win[half] == final).all(0)
    return {
        "leader": round(float((rank == 0).double().mean()), 4),
        "leader_by_instance": [round(float(v), 4) for v in (rank == 0).double().mean(-1)],
        "stable": round(float(stable.double().mean()), 4),
        "top3": round(float((rank < 3).double().mean()), 4),
        "settled": round(float((snapshots[steps[-1]][..., 1] > 0.9).double().mean()), 4),
        "steps": steps,
        "leader_curve": [round(float(v), 4) for v in (win == lead).double().mean((1, 2))],
        "final_curve": [round(float(v), 4) for v in (win == final).double().mean((1, 2))],
    }


def pair_record(W0: torch.Tensor, W: torch.Tensor) -> dict:
    """Pairs of features that share a neuron at the end, and whether they shared one at the start.

    Per instance (the independent units): ``final_pairs``, the pairs of features whose final
    arg-max ``|W_ik|`` is the same neuron; ``final_pairs_shared_leader``, how many of those pairs
    also had the same initial leader (arg-max of ``|W0_ik|``); ``initial_pairs``, the pairs that
    shared an initial leader. If the final winners kept no memory of the initial leaders, a final
    pair would have shared an initial leader with probability about ``1/m``; if every feature were
    won by its initial leader, every final pair would have.

    Examples
    --------
    >>> W0 = torch.tensor([[[0.9, 0.1, 0.0], [0.8, 0.0, 0.2], [0.0, 0.1, 0.7]]])
    >>> W = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    >>> pair_record(W0, W)
    {'final_pairs': [3], 'final_pairs_shared_leader': [1], 'initial_pairs': [1]}
    """
    n = W.shape[-2]
    upper = torch.ones(n, n, dtype=torch.bool, device=W.device).triu(1)
    lead, win = W0.abs().argmax(-1), W.abs().argmax(-1)  # (instances, n)
    same_final = (win.unsqueeze(-1) == win.unsqueeze(-2)) & upper
    same_lead = (lead.unsqueeze(-1) == lead.unsqueeze(-2)) & upper
    count = lambda x: [int(v) for v in x.sum((-2, -1))]  # noqa: E731
    return {"final_pairs": count(same_final), "final_pairs_shared_leader": count(same_final & same_lead),
            "initial_pairs": count(same_lead)}


def run_winners(cfg: WinnersConfig, device: torch.device, progress: bool = True) -> dict:
    """Per ``m``, optimiser and regime (``"interference"`` or ``"single"``): :func:`winner_record`,
    and for the runs with interference :func:`pair_record` of the initial and final weights.

    ``lr_sweep`` holds the AdamW learning-rate sweep at ``m = lr_m`` (each entry with its
    ``lr`` and ``steps``; the entry at ``adamw_lr`` is the main run's) and the main gradient
    descent run there.
    """
    out: dict = {"n": cfg.n, "m": list(cfg.m), "runs": [], "lr_sweep": []}

    def one(tc: TrainConfig, desc: str) -> dict:
        snaps = _log_grid(tc.steps, cfg.points).tolist()
        res = train(tc, snapshot_steps=snaps, device=str(device), progress=progress,
                    snapshot_fn=lambda W: torch.stack([_winner_index(W), dominance(W)], -1), desc=desc)
        rec = winner_record(res.W0, res.snapshots)
        top = res.W.abs().argmax(-1, keepdim=True)
        rec["same_sign"] = round(float((torch.sign(res.W0.gather(-1, top))
                                        == torch.sign(res.W.gather(-1, top))).double().mean()), 4)
        # the book's finish rule (polybook.collisions.FINISHED_SHARE) reads the share of one-hot encodings
        rec["one_hot"] = round(float(one_hot_share(res.W).mean()), 4)
        if tc.n > 1:  # pairs of features exist only in the runs with interference
            rec.update(pair_record(res.W0, res.W))
        return rec

    for j, m in enumerate(cfg.m):
        for opt in ("sgd", "adamw"):
            for single in (False, True):
                tc = cfg.train_config(j, opt, single)
                rec = one(tc, f"winners m={m} {opt}{' single' if single else ''}")
                out["runs"].append({"m": m, "optimizer": opt, "regime": "single" if single else "interference",
                                    "features": tc.n * tc.instances, "lr": tc.lr, **rec})
    if cfg.adamw_lr_sweep:
        main = {r["optimizer"]: r for r in out["runs"] if r["m"] == cfg.lr_m and r["regime"] == "interference"}
        for lr in cfg.adamw_lr_sweep:
            tc = cfg.sweep_config(lr)
            rec = main["adamw"] if lr == cfg.adamw_lr else {
                "m": cfg.lr_m, "optimizer": "adamw", "regime": "interference", "features": tc.n * tc.instances,
                "lr": lr, **one(tc, f"winners m={cfg.lr_m} adamw lr={lr:g}")}
            out["lr_sweep"].append({**rec, "run_steps": tc.steps})
        out["lr_sweep"].append({**main["sgd"], "run_steps": cfg.sgd_steps})
    return out

def replay_winners(record: dict, instances: int = 2, device: str = "cpu") -> dict:
    """Re-train the first ``instances`` instances of the shortest run of a stored ``winners`` record.

    The shortest run is the AdamW run at the largest learning rate of the sweep (the main AdamW
    run at the first ``m`` when there is no sweep), trained again from the record's own config and
    seed. Returns ``{"stored": [...], "replayed": [...]}``: the share of features won by their
    initial leader, per instance. Float32 sums may round differently with another thread count
    or device, which can move a borderline feature.
    """
    if record.get("experiment") != "winners":
        raise ValueError(f"record must be a winners result, got {record.get('experiment')!r}")
    cfg = WinnersConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    if cfg.adamw_lr_sweep:
        lr = max(cfg.adamw_lr_sweep)  # the fewest steps
        stored = next(r for r in record["results"]["lr_sweep"] if r["lr"] == lr)
        tc = cfg.sweep_config(lr)
    else:
        stored = next(r for r in record["results"]["runs"]
                      if (r["m"], r["optimizer"], r["regime"]) == (cfg.m[0], "adamw", "interference"))
        tc = cfg.train_config(0, "adamw", False)
    # The same seed: the first ``instances`` instances of the stored run.
    res = train(dataclasses.replace(tc, instances=instances), progress=False, device=device)
    leader = (winner_initial_rank(res.W0, res.W) == 0).double().mean(-1)
    return {"stored": stored["leader_by_instance"][:instances], "replayed": [round(float(v), 4) for v in leader]}


def winners_rows(record: dict) -> list[dict]:
    """One row per run (``m``, optimiser, regime): the share of features won by the initial leader
    (mean and standard error over instances), by one of the top 3, decided, settled, and keeping its sign."""
    rows = []
    for r in record["results"]["runs"]:
        share = r["leader_by_instance"]
        mean = sum(share) / len(share)
        var = sum((x - mean) ** 2 for x in share) / (len(share) - 1) if len(share) > 1 else math.nan
        se = math.sqrt(var / len(share))
        rows.append({"m": r["m"], "optimizer": r["optimizer"], "regime": r["regime"], "features": r["features"],
                     "leader": mean, "leader_se": se, "top3": r["top3"], "stable": r["stable"],
                     "settled": r["settled"], "same_sign": r["same_sign"]})
    return rows


EXPERIMENT = Experiment(
    "winners",
    "how often the initial leader of a feature wins, SGD vs AdamW, with and without interference",
    WinnersConfig,
    book=WinnersConfig(),
    paper=WinnersConfig(n=256, m=(512, 1024, 2048, 4096), instances=4, adamw_steps=10000, sgd_steps=6000, lr_m=1024),
    run=run_winners,
    replay=replay_winners,
    rows=winners_rows,
    stored=("winners",),
)
