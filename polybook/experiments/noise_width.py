"""Experiment ``noise_width``: Bernoulli against Gaussian hidden-layer noise beyond ``n = 8``.

The noise experiment (:mod:`polybook.experiments.noise`) at ``n = 8, 16, 32`` features with
``m = 2n`` neurons, with a paired L1 control and a fluctuation test at the largest ``n``; it trains
with the same batched loop (``train_together`` in ``polybook.experiments.noise``). The chapter
``book/noise.ipynb`` reads its stored record; ``replay_noise_width`` re-makes a slice of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .. import _validate as check
from ..metrics import (
    fourth_norm,
    polysemantic_neurons,
    polysemantic_neurons_by_mass,
    polysemantic_neurons_by_response,
    polysemantic_sign_pattern,
    winner_initial_rank,
)
from ..models import init_weights
from ..theory import expected_polysemantic_exact, predicted_polysemantic
from ..train import TrainConfig
from .config import ExperimentConfig, param
from ..train import FAMILIES
from .noise import _curve, log_steps, mean_fourth_norm, train_together
from .registry import Experiment

__all__: list[str] = []  # the chapter uses its names through polybook.noise


@dataclass(frozen=True)
class NoiseWidthConfig(ExperimentConfig):
    """The noise experiment at several sizes: ``n`` features and ``m = ratio * n`` neurons.

    For each ``n`` in ``ns`` one call of ``train_together`` trains ``instances`` models of
    every family in ``families`` at every ``sigma`` (independent noise, SGD at ``lr`` for
    ``steps`` steps, no L1), all from the same initial weights (seed ``seed + n``), so the
    families are compared instance by instance. A second call trains the L1 model of the
    collisions story from those same weights (SGD at ``lr``, ``l1`` for ``l1_steps`` steps, no
    noise) as a paired control for the polysemantic-neuron count.

    Then, at ``n = fluct_n``, the fluctuation test of the ``noise`` experiment for ``fluct_family``
    at ``fluct_sigma``, from the same initial weights: the gradient averaged over ``draws`` noise
    draws per step (``steps`` steps), and one draw at ``lr / slow_factor`` for ``slow_factor *
    steps`` steps (the same time ``lr * steps``). The one-draw run at ``lr`` is the main run.
    """

    ns: tuple[int, ...] = param((8, 16, 32), minimum=2, unique=True)
    ratio: int = 2
    families: tuple[str, ...] = param(("bernoulli", "gaussian"), choices=FAMILIES, unique=True)
    sigmas: tuple[float, ...] = param((0.1, 0.15), strict=True, unique=True)
    instances: int = 8
    steps: int = 100_000
    lr: float = 0.02
    l1: float = param(0.01, strict=True)
    l1_steps: int = 10_000
    snapshots: int = param(40, minimum=2)
    fluct_n: int = 32
    fluct_family: str = param("bernoulli", choices=FAMILIES)
    fluct_sigma: float = param(0.15, strict=True)
    draws: int = 4
    slow_factor: int = 2
    seed: int = 0

    def check(self) -> None:
        """The fluctuation test runs at one of the sizes of the sweep: ``fluct_n`` in ``ns``."""
        if self.fluct_n not in self.ns:
            raise ValueError(f"fluct_n must be one of ns = {self.ns}, got {self.fluct_n}")

    def settings(self) -> list[tuple[str, float]]:
        """The noise runs at each ``n``: every ``(family, sigma)``."""
        return [(f, s) for f in self.families for s in self.sigmas]

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory of the largest program and the record, in bytes.

        Each program keeps the mean fourth norm of every instance at each distinct step of its
        log-spaced grid of ``snapshots`` steps (at most ``min(snapshots, steps) + 1``), as one small
        tensor per step and its slice per run (about 1 KiB a tensor, whatever its size), counted
        as if every program's were held at once; making the grid takes about 16 bytes a point.
        The record holds every curve, each number taking about 128 bytes (a Python float in a
        list and its JSON text).
        """
        def kept(steps: int) -> int:
            return min(self.snapshots, steps) + 1

        n = max(self.ns)
        m, b = self.ratio * n, len(self.settings()) * self.instances
        runs = len(self.settings())
        main = 4 * (10 * b * n * m + 3 * b * n * n + 2 * self.steps * b)
        k, nf = self.draws, self.fluct_n
        slow = self.slow_factor * self.steps
        fluct = 4 * (6 * self.instances * nf * self.ratio * nf * (1 + k) + 3 * k * self.instances * nf * nf
                     + 2 * slow * self.instances)
        tensors = len(self.ns) * kept(self.steps) * (runs + 1) + 2 * (kept(self.steps) + kept(slow))
        numbers = (len(self.ns) * kept(self.steps) * runs * (self.instances + 1)
                   + (kept(self.steps) + kept(slow)) * (self.instances + 2))
        return max(main, fluct) + 16 * self.snapshots + 1024 * tensors + 128 * numbers

    def flops(self) -> float:
        """Floating-point operations of all the programs (6 n^2 m per instance, step and draw)."""
        per = sum(6 * n * n * self.ratio * n for n in self.ns)
        fluct = 6 * self.fluct_n**3 * self.ratio * self.steps * (self.draws + self.slow_factor)
        return float(per * self.instances * (len(self.settings()) * self.steps + self.l1_steps) + fluct * self.instances)

    def train_config(self, n: int, family: str = "none", sigma: float = 0.0, draws: int = 1,
                     slow: int = 1) -> TrainConfig:
        """The :class:`~polybook.train.TrainConfig` of one run at ``n`` (``family="none"``: the L1 control).

        ``draws`` noise draws per step; ``slow`` divides the learning rate and multiplies the steps.
        """
        if family == "none":
            return TrainConfig(n=n, m=self.ratio * n, instances=self.instances, steps=self.l1_steps, lr=self.lr,
                               optimizer="sgd", l1=self.l1, seed=self.seed + n)
        return TrainConfig(n=n, m=self.ratio * n, instances=self.instances, steps=self.steps * slow,
                           lr=self.lr / slow, optimizer="sgd", noise=family, sigma=sigma, noise_draws=draws,
                           seed=self.seed + n)


def _width_final(W0: torch.Tensor, W: torch.Tensor) -> dict:
    n = W.shape[-2]
    G = W @ W.transpose(-1, -2)  # (instances, n, n)
    off = ~torch.eye(n, dtype=torch.bool)
    f4 = fourth_norm(W)  # (instances, n)
    r4 = lambda x: [round(float(v), 6) for v in x]  # noqa: E731
    return {
        "fourth_norm": r4(f4.mean(-1)),
        "dense_features": (f4 < 0.5).sum(-1).tolist(),
        "mean_overlap": r4(torch.stack([g[off].mean() for g in G])),
        "norm_sq": r4((W**2).sum(-1).mean(-1)),
        "sum_norm_sq": r4((W.sum(-2) ** 2).sum(-1)),
        "largest_weight": r4(W.abs().amax(-1).mean(-1)),
        "winner_is_initial_leader": r4((winner_initial_rank(W0, W) == 0).float().mean(-1)),
        "polysemantic_band": polysemantic_neurons(W).tolist(),
        "polysemantic_by_mass": polysemantic_neurons_by_mass(W).tolist(),
        "polysemantic_by_response": polysemantic_neurons_by_response(W).tolist(),
        "mixed_sign_band": polysemantic_sign_pattern(W)[:, 0].tolist(),
    }


def run_noise_width(cfg: NoiseWidthConfig, device: torch.device, progress: bool = True) -> dict:
    """Per ``n``: fourth-norm curves and final summaries of every noise run, and of the L1 control."""
    dev = str(device)
    out = []
    for n in cfg.ns:
        m = cfg.ratio * n
        W0 = init_weights(cfg.instances, n, m, seed=cfg.seed + n)
        settings = cfg.settings()
        configs = [cfg.train_config(n, f, s) for f, s in settings]
        results = train_together(configs, W0s=[W0] * len(configs), snapshot_steps=log_steps(cfg.steps, cfg.snapshots),
                                 snapshot_fn=mean_fourth_norm, device=dev, progress=progress, desc=f"noise n={n}")
        runs = [{"family": f, "sigma": s, **_curve(r), **_width_final(W0, r.W)} for (f, s), r in zip(settings, results)]
        l1 = train_together([cfg.train_config(n)], W0s=[W0], device=dev, progress=progress, desc=f"L1 n={n}")[0]
        out.append({
            "n": n, "m": m,
            "simplex_overlap": -1.0 / (n - 1),
            "expected_polysemantic_exact": round(expected_polysemantic_exact(n, m), 6),
            "predicted_polysemantic": predicted_polysemantic(n, m),
            "runs": runs,
            "l1": _width_final(W0, l1.W),
        })

    n = cfg.fluct_n
    W0 = init_weights(cfg.instances, n, cfg.ratio * n, seed=cfg.seed + n)
    fluct = []
    for name, draws, slow in [(f"{cfg.draws} draws", cfg.draws, 1), (f"lr / {cfg.slow_factor}", 1, cfg.slow_factor)]:
        c = cfg.train_config(n, cfg.fluct_family, cfg.fluct_sigma, draws=draws, slow=slow)
        r = train_together([c], W0s=[W0], snapshot_steps=log_steps(c.steps, cfg.snapshots), snapshot_fn=mean_fourth_norm,
                           device=dev, progress=progress, desc=f"noise n={n} {name}")[0]
        curve = _curve(r)
        curve["time"] = [round(t * c.lr, 6) for t in curve["steps"]]
        fluct.append({"variant": name, "n": n, "family": cfg.fluct_family, "sigma": cfg.fluct_sigma, "draws": draws,
                      "lr": c.lr, **curve, **_width_final(W0, r.W)})
    return {"widths": out, "fluctuations": fluct}


def replay_noise_width(record: dict, horizon: int = 300, device: str = "cpu") -> dict:
    """Re-train the first ``horizon`` steps of the smallest and the largest ``n`` of a stored record.

    Every noise run of those two sizes is trained again from the record's own config and initial
    weights, and its fourth-norm curve is read at the stored snapshots up to ``horizon`` (rounded
    to 6 decimals, as stored). Returns ``{"stored": [...], "replayed": [...]}``: per size, per run,
    the ``(snapshots, instances)`` curve. On the device that made the record the two agree
    exactly; elsewhere float rounding may move them by about ``1e-6``.
    """
    if record.get("experiment") != "noise_width":
        raise ValueError(f"record must be a noise_width result, got {record.get('experiment')!r}")
    check.integer("horizon", horizon)
    cfg = NoiseWidthConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    horizon = min(horizon, cfg.steps)
    widths = record["results"]["widths"]
    out: dict[str, list] = {"stored": [], "replayed": []}
    for w in (widths[0], widths[-1]):
        n = w["n"]
        W0 = init_weights(cfg.instances, n, cfg.ratio * n, seed=cfg.seed + n)
        configs = [dataclasses.replace(cfg.train_config(n, r["family"], r["sigma"]), steps=horizon) for r in w["runs"]]
        steps = [t for t in w["runs"][0]["steps"] if t <= horizon]
        again = train_together(configs, W0s=[W0] * len(configs), snapshot_steps=steps,
                               snapshot_fn=mean_fourth_norm, device=device, progress=False)
        out["stored"].append([r["per_instance"][:len(steps)] for r in w["runs"]])
        out["replayed"].append([[[round(float(v), 6) for v in res.snapshots[t]] for t in steps] for res in again])
    return out


EXPERIMENT = Experiment(
    "noise_width",
    "Bernoulli vs Gaussian hidden-layer noise at n = 8, 16, 32 features (m = 2n): sparsity, overlaps, "
    "polysemantic neurons, with a paired L1 control",
    NoiseWidthConfig,
    book=NoiseWidthConfig(),
    paper=NoiseWidthConfig(ns=(8, 16, 32, 64), instances=16),
    run=run_noise_width,
    replay=replay_noise_width,
    stored=("noise_width",),
)
