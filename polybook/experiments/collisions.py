"""Experiment ``collisions``: polysemantic neurons against m for the L1 autoencoder, against n^2/(4m).

The chapter's science is :mod:`polybook.collisions`; this file holds the experiment: its config,
its run (resumable, one piece per width), its replay and its table rows.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..metrics import one_hot_share, polysemantic_neurons, polysemantic_neurons_by_mass, polysemantic_sign_pattern
from ..models import init_weights
from ..sweep import train_widths
from ..theory import expected_polysemantic_exact, predicted_polysemantic
from ..train import Diverged, TrainConfig, TrainResult, train, train_memory_bytes
from .config import ExperimentConfig, param
from .registry import Experiment
from .runner import Pieces

__all__ = ["CollisionsConfig", "law_rows"]


@dataclasses.dataclass(frozen=True)
class CollisionsConfig(ExperimentConfig):
    """Train the L1-regularised autoencoder for each ``m`` and count polysemantic neurons.

    Introduced in the book: :doc:`/book/collisions` (chapter collisions).

    ``seed`` seeds the first ``m``; the ``j``-th ``m`` uses ``seed + j``. On a GPU all widths
    train in one batched program (``polybook.sweep.train_widths``), on a CPU one after another;
    the models are the same either way.
    """

    n: int = 64
    m: tuple[int, ...] = param((64, 128, 256, 512), unique=True)  # one piece per width: a repeat would share it
    instances: int = 16
    steps: int = 7500
    lr: float = 1e-3
    l1: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    seed: int = 0

    def train_config(self, j: int) -> TrainConfig:
        """The :class:`~polybook.train.TrainConfig` of the ``j``-th ``m``."""
        return TrainConfig(
            n=self.n, m=self.m[j], instances=self.instances, steps=self.steps, lr=self.lr,
            optimizer=self.optimizer, l1=self.l1, weight_decay=self.weight_decay, seed=self.seed + j,
        )

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory: the widest width on a CPU, every width padded and batched elsewhere."""
        if device.type == "cpu":
            return max(train_memory_bytes(self.train_config(j)) for j in range(len(self.m)))
        batched = dataclasses.replace(self.train_config(0), m=max(self.m), instances=self.instances * len(self.m))
        return train_memory_bytes(batched)

    def flops(self) -> float:
        """Floating-point operations of the whole sweep (Gram forward and gradient, 4 n^2 m per step)."""
        return float(sum(4 * self.n**2 * m * self.instances * self.steps for m in self.m))


def run_collisions(cfg: CollisionsConfig, device: torch.device, progress: bool = True,
                   pieces: Pieces | None = None) -> dict:
    """Per ``m``: band-rule and by-mass counts per instance, their sign split, the predictions.

    Each width is a piece: with ``pieces`` (see :class:`Pieces`) a finished width is stored as
    soon as it is done and skipped when the run is repeated.
    """
    pieces = Pieces(None) if pieces is None else pieces
    todo = [j for j, m in enumerate(cfg.m) if pieces.get(f"m={m}") is None]
    with tqdm(total=len(cfg.m), initial=len(cfg.m) - len(todo), desc="collisions widths", unit="width",
              disable=not progress or len(cfg.m) == 1, file=sys.stderr, leave=False) as bar:
        if device.type == "cpu":  # one loop per width: padding would only add work on a CPU
            for j in todo:
                res = train(cfg.train_config(j), device=str(device), progress=progress,
                            desc=f"collisions m={cfg.m[j]}")
                pieces.put(f"m={cfg.m[j]}", summarise_width(cfg.n, cfg.m[j], res))
                bar.update()
        elif todo:  # every width left in one batched program (identical models, see polybook.sweep)
            ms = [cfg.m[j] for j in todo]
            try:
                runs = train_widths(cfg.train_config(0), ms, seeds=[cfg.seed + j for j in todo],
                                    device=str(device), progress=progress)
            except Diverged as err:
                raise Diverged(f"collisions {err.where}", err.detail, err.step, err.steps, err.instance) from None
            for m, res in zip(ms, runs):
                pieces.put(f"m={m}", summarise_width(cfg.n, m, res))
                bar.update()
    return assemble_collisions(cfg, [pieces.get(f"m={m}") for m in cfg.m])


#: The per-width lists of a collisions record, in the order they are stored. ``one_hot`` (the share
#: of one-hot encodings per instance: has training finished?) is absent from records made before it
#: was stored.
COLLISION_FIELDS = ("polysemantic", "polysemantic_by_mass", "mixed_sign", "same_sign", "predicted",
                    "predicted_exact", "final_loss", "one_hot")


def summarise_width(n: int, m: int, res: TrainResult) -> dict:
    """The collisions numbers of one trained width (one value or one list per instance per field)."""
    signs = polysemantic_sign_pattern(res.W)
    return {
        "polysemantic": polysemantic_neurons(res.W).tolist(),
        "polysemantic_by_mass": polysemantic_neurons_by_mass(res.W).tolist(),
        "mixed_sign": signs[:, 0].tolist(),
        "same_sign": signs[:, 1].tolist(),
        "predicted": predicted_polysemantic(n, m),
        "predicted_exact": expected_polysemantic_exact(n, m),
        "final_loss": round(float(res.losses[-1].mean()), 6),
        "one_hot": [round(float(v), 6) for v in one_hot_share(res.W)],
    }


def assemble_collisions(cfg: CollisionsConfig, widths: Sequence[dict]) -> dict:
    """The ``results`` of the collisions experiment from its per-width summaries.

    A field missing from some width (``one_hot`` in pieces stored before it was kept) is left out.
    """
    return {"n": cfg.n, "m": list(cfg.m),
            **{k: [w[k] for w in widths] for k in COLLISION_FIELDS if all(k in w for w in widths)}}


def summarise_collisions(cfg: CollisionsConfig, runs: Iterable[TrainResult]) -> dict:
    """The ``results`` of the collisions experiment from its trained runs (one per ``m``)."""
    return assemble_collisions(cfg, [summarise_width(cfg.n, m, res) for m, res in zip(cfg.m, runs)])


def replay_collisions(record: dict, widths: int = 1, instances: int = 2, device: str = "cpu") -> dict:
    """Re-train a cheap slice of a stored ``collisions`` record and return both counts.

    The slice is the first ``instances`` instances of the first ``widths`` widths, trained from the
    very same initial weights (the stored run's draw, sliced). Returns ``{"stored": [...],
    "replayed": [...]}``, one list of counts per width. On the device that made the record the
    two agree exactly; across devices float rounding may move a borderline weight across the band.
    """
    if record.get("experiment") != "collisions":
        raise ValueError(f"record must be a collisions result, got {record.get('experiment')!r}")
    cfg = CollisionsConfig(**{**record["config"], "m": tuple(record["config"]["m"])})
    out: dict[str, list] = {"stored": [], "replayed": []}
    for j in range(min(widths, len(cfg.m))):
        full = cfg.train_config(j)
        W0 = init_weights(full.instances, full.n, full.m, seed=full.seed)[:instances]
        res = train(dataclasses.replace(full, instances=W0.shape[0]), W0=W0, device=device, progress=False)
        out["stored"].append(record["results"]["polysemantic"][j][:instances])
        out["replayed"].append(polysemantic_neurons(res.W).tolist())
    return out


def count_stats(counts) -> dict[str, np.ndarray]:
    """Mean, standard error of the mean and 16th/84th percentiles of counts over instances.

    Parameters
    ----------
    counts : array-like
        ``(len(m), instances)``.

    Examples
    --------
    >>> s = count_stats([[1, 3], [2, 2]])
    >>> s["mean"].tolist(), s["sem"].tolist()
    ([2.0, 2.0], [1.0, 0.0])
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[1] < 2:
        raise ValueError(f"counts must have shape (len(m), instances >= 2), got {c.shape}")
    return {
        "mean": c.mean(axis=1),
        "sem": c.std(axis=1, ddof=1) / math.sqrt(c.shape[1]),
        "p16": np.percentile(c, 16, axis=1),
        "p84": np.percentile(c, 84, axis=1),
    }


def law_rows(record: dict) -> list[dict]:
    """One row per ``m`` of a collisions record (the ``results`` part or the whole record).

    Each row: ``m``, ``mean``, ``sem``, ``p16``, ``p84`` of the band-rule count, ``by_mass``
    (mean), ``mixed`` and ``same`` (mean sign split), ``predicted`` (``n^2/(4m)``), ``exact``
    (the idealised expectation), ``ratio`` (mean / predicted), ``ratio_exact`` and ``one_hot``
    (the mean share of one-hot encodings, ``None`` where the record did not store it: then whether
    that width finished training is unknown).

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    res = record.get("results", record)
    n = res["n"]
    stats = count_stats(res["polysemantic"])
    rows = []
    for j, m in enumerate(res["m"]):
        pred, exact = predicted_polysemantic(n, m), expected_polysemantic_exact(n, m)
        rows.append({
            "n": n, "m": m,
            **{k: float(v[j]) for k, v in stats.items()},
            "by_mass": float(np.mean(res["polysemantic_by_mass"][j])),
            "mixed": float(np.mean(res["mixed_sign"][j])),
            "same": float(np.mean(res["same_sign"][j])),
            "predicted": pred, "exact": exact,
            "ratio": float(stats["mean"][j]) / pred, "ratio_exact": float(stats["mean"][j]) / exact,
            "one_hot": float(np.mean(res["one_hot"][j])) if "one_hot" in res else None,
        })
    return rows


EXPERIMENT = Experiment(
    "collisions",
    "polysemantic neurons vs m for the L1 autoencoder, against n^2/(4m)",
    CollisionsConfig,
    book=CollisionsConfig(),
    paper=CollisionsConfig(n=256, m=tuple(range(256, 4097, 256)), instances=16),
    run=run_collisions,
    replay=replay_collisions,
    rows=law_rows,
    resumable=True,
    stored=("collisions-paper",),
)
