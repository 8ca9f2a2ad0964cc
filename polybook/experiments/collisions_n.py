"""Experiment ``collisions-n``: the ``n^2/(4m)`` law over ``n``, at a fixed ``m`` and at a fixed ``n^2/m``.

The chapter's science is :mod:`polybook.collisions`; this file holds the experiment: its config,
its run (resumable, one piece per point ``(n, m)``), its replay and its table rows.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _validate as check
from ..metrics import one_hot_share, polysemantic_neurons, polysemantic_neurons_by_mass, polysemantic_sign_pattern
from ..models import init_weights
from ..theory import expected_polysemantic_exact, predicted_polysemantic
from ..train import TrainConfig, TrainResult, train, train_memory_bytes
from .config import ExperimentConfig, param
from .registry import Experiment
from .runner import Pieces

__all__ = ["law_over_n_rows"]


@dataclasses.dataclass(frozen=True)
class LawOverNConfig(ExperimentConfig):
    """Train the collisions setting at pairs ``(n[j], m[j])``: the law tested over ``n`` as well as ``m``.

    The book's points vary ``n`` at a fixed ``m`` (where ``n^2/(4m)`` grows like ``n^2``) and at a
    fixed ``n^2/m`` (where it stays put while the idealised expectation creeps up towards it). Each
    point is counted at every step of ``checkpoint_steps`` and at the end, so a record also says
    what more training changes. Point ``j`` uses seed ``seed + j``.
    """

    n: tuple[int, ...] = (16, 32, 64, 96, 128, 32, 48, 96, 128)
    m: tuple[int, ...] = (256, 256, 256, 256, 256, 64, 144, 576, 1024)
    instances: int = param(32, minimum=2)
    steps: int = 10000
    checkpoint_steps: tuple[int, ...] = (2500, 5000, 7500)
    lr: float = 1e-3
    l1: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    seed: int = 1000

    def check(self) -> None:
        """One width per ``n``, each point ``(n[j], m[j])`` once (one piece each), and no checkpoint
        after the last step."""
        if len(self.n) != len(self.m):
            check.fail("m", self.m, f"a tuple of {len(self.n)} widths, one per n")
        points = list(zip(self.n, self.m))
        for j, point in enumerate(points):
            if point in points[:j]:
                raise ValueError(f"n and m must name each point (n[j], m[j]) once, got {point} twice")
        check.integers("checkpoint_steps", self.checkpoint_steps, maximum=self.steps)

    def capped(self, steps: int) -> LawOverNConfig:
        """This config with every step count capped at ``steps`` (the smoke test of the paper switch)."""
        return dataclasses.replace(self, steps=min(self.steps, steps),
                                   checkpoint_steps=tuple(sorted({min(c, steps) for c in self.checkpoint_steps})))

    def train_config(self, j: int) -> TrainConfig:
        """The :class:`~polybook.train.TrainConfig` of point ``j``."""
        return TrainConfig(n=self.n[j], m=self.m[j], instances=self.instances, steps=self.steps, lr=self.lr,
                           optimizer=self.optimizer, l1=self.l1, weight_decay=self.weight_decay, seed=self.seed + j)

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory: the largest point (points train one after another), with its snapshots."""
        snaps = len(self.checkpoint_steps) + 1
        return max(train_memory_bytes(self.train_config(j)) + snaps * 4 * self.instances * self.n[j] * self.m[j]
                   for j in range(len(self.n)))

    def flops(self) -> float:
        """Floating-point operations of all points (Gram forward and gradient, 4 n^2 m per step)."""
        return float(sum(4 * n * n * m * self.instances * self.steps for n, m in zip(self.n, self.m)))


def summarise_point(res: TrainResult) -> dict:
    """One trained point: counts and one-hot shares per instance at each snapshot, sign split at the end."""
    n, m = res.config.n, res.config.m
    steps = sorted(res.snapshots)
    return {
        "n": n,
        "m": m,
        "steps": steps,
        "polysemantic": [polysemantic_neurons(res.snapshots[t]).tolist() for t in steps],
        "one_hot": [[round(x, 6) for x in one_hot_share(res.snapshots[t]).tolist()] for t in steps],
        "polysemantic_by_mass": polysemantic_neurons_by_mass(res.W).tolist(),
        "same_sign": polysemantic_sign_pattern(res.W)[:, 1].tolist(),
        "predicted": predicted_polysemantic(n, m),
        "predicted_exact": expected_polysemantic_exact(n, m),
        "final_loss": round(float(res.losses[-1].mean()), 6),
    }


def run_law_over_n(cfg: LawOverNConfig, device: torch.device, progress: bool = True,
                   pieces: Pieces | None = None) -> dict:
    """Per point ``(n, m)``: counts per instance at each checkpoint and at the end, and the predictions.

    Each point is a piece (see :class:`~polybook.experiments.runner.Pieces`): an interrupted run resumes.
    """
    pieces = Pieces(None) if pieces is None else pieces
    names = [f"n={n},m={m}" for n, m in zip(cfg.n, cfg.m)]
    todo = [j for j, name in enumerate(names) if pieces.get(name) is None]
    with tqdm(total=len(names), initial=len(names) - len(todo), desc="collisions-n points", unit="point",
              disable=not progress, file=sys.stderr, leave=False) as bar:
        for j in todo:
            res = train(cfg.train_config(j), snapshot_steps=(*cfg.checkpoint_steps, cfg.steps), device=str(device),
                        progress=progress, desc=f"collisions-n {names[j]}")
            pieces.put(names[j], summarise_point(res))
            bar.update()
    return {"points": [pieces.get(name) for name in names]}


def replay_law_over_n(record: dict, points: int = 1, instances: int = 2, device: str = "cpu") -> dict:
    """Re-train a cheap slice of a stored ``collisions-n`` record: its first ``points`` points, first ``instances``.

    The slice starts from the very same initial weights (the stored run's draw, sliced) and is
    counted at the same steps. Returns ``{"stored": [...], "replayed": [...]}``: per point, the
    counts per checkpoint of the sliced instances.
    """
    if record.get("experiment") != "collisions-n":
        raise ValueError(f"record must be a collisions-n result, got {record.get('experiment')!r}")
    conf = record["config"]
    cfg = LawOverNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in conf.items()})
    out: dict[str, list] = {"stored": [], "replayed": []}
    for j in range(min(points, len(cfg.n))):
        full = cfg.train_config(j)
        W0 = init_weights(full.instances, full.n, full.m, seed=full.seed)[:instances]
        res = train(dataclasses.replace(full, instances=W0.shape[0]), W0=W0, device=device, progress=False,
                    snapshot_steps=(*cfg.checkpoint_steps, cfg.steps))
        out["stored"].append([c[:instances] for c in record["results"]["points"][j]["polysemantic"]])
        out["replayed"].append(summarise_point(res)["polysemantic"])
    return out


def law_over_n_rows(record: dict) -> list[dict]:
    """One row per point of a ``collisions-n`` record: the count at the end against three predictions.

    Keys: ``n``, ``m``, ``mean``, ``sem`` (standard error over instances), ``predicted``
    (``n^2/(4m)``), ``exact`` (the idealised expectation), ``double`` (``n^2/(2m)``, the count if
    every colliding pair made a polysemantic neuron), ``z_law``/``z_exact``/``z_double`` (the gap to
    each in standard errors), ``one_hot`` (share of one-hot encodings at the end), ``moved`` (mean
    count at the end minus at the last checkpoint) with its paired standard error ``moved_sem``,
    and ``same_sign`` (mean same-sign polysemantic neurons).

    Introduced in the book: :ref:`law-over-n` (chapter collisions).
    """
    rows = []
    for p in record["results"]["points"]:
        counts = np.asarray(p["polysemantic"], dtype=float)  # (checkpoints + end, instances)
        end = counts[-1]
        before = counts[-2] if len(counts) > 1 else end
        k = end.size
        sem = float(end.std(ddof=1) / math.sqrt(k))
        floor = max(sem, 1.0 / k)  # an all-equal sample has s.e. 0: one count in k is the floor
        d = end - before
        row = {
            "n": p["n"], "m": p["m"], "mean": float(end.mean()), "sem": sem,
            "predicted": p["predicted"], "exact": p["predicted_exact"], "double": 2 * p["predicted"],
            "one_hot": float(np.mean(p["one_hot"][-1])),
            "moved": float(d.mean()), "moved_sem": float(d.std(ddof=1) / math.sqrt(k)),
            "same_sign": float(np.mean(p["same_sign"])),
        }
        for key, ref in (("z_law", "predicted"), ("z_exact", "exact"), ("z_double", "double")):
            row[key] = (row["mean"] - row[ref]) / floor
        rows.append(row)
    return rows


EXPERIMENT = Experiment(
    "collisions-n",
    "the n^2/(4m) law over n: polysemantic neurons at fixed m and at fixed n^2/m",
    LawOverNConfig,
    book=LawOverNConfig(),
    paper=LawOverNConfig(n=(64, 128, 256, 512, 128, 512), m=(1024, 1024, 1024, 1024, 256, 4096), instances=16),
    run=run_law_over_n,
    replay=replay_law_over_n,
    rows=law_over_n_rows,
    resumable=True,
    stored=("collisions-n",),
)
