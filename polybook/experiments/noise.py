"""Experiment ``noise``: the average fourth norm under hidden-layer noise of four kinds, at the paper's ``n = 8``.

The chapter's science (the moments of the noise, the expected squared ReLU) is :mod:`polybook.noise`;
this file holds the experiment: its config, the batched SGD loop ``train_together`` that
trains every setting as one program, and its run. ``noise_width``
(:mod:`polybook.experiments.noise_width`) uses the same loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
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
from ..models import init_weights, loss_and_grad
from ..theory import expected_polysemantic_exact, predicted_polysemantic
from ..train import (
    EXCESS_KURTOSIS,
    FAMILIES,
    TrainConfig,
    TrainResult,
    one_cpu_thread,
    resolve_device,
    run_steps,
    sample_noise,
    seeded_generator,
)
from .config import ExperimentConfig, param
from .registry import Experiment

__all__: list[str] = []  # the chapter uses its names through polybook.noise

# --------------------------------------------------------------------------- batched training


_SAME = ("n", "m", "steps", "optimizer", "l1", "weight_decay", "noise_draws", "interference")


def train_together(
    configs: Sequence[TrainConfig],
    *,
    W0s: Sequence[torch.Tensor | None] | None = None,
    snapshot_steps: Iterable[int] = (),
    snapshot_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str = "auto",
    progress: bool = True,
    desc: str | None = None,
) -> list[TrainResult]:
    """Train several SGD configurations as one batched program.

    The configurations may differ in ``noise``, ``sigma``, ``noise_shared``, ``lr``, ``instances``,
    ``seed`` and ``init_std``; they must agree on everything else (``n``, ``m``, ``steps``,
    ``noise_draws``, ...) and use ``optimizer="sgd"``. Each keeps its own noise generator, seeded
    and drawn as :func:`polybook.train` draws it, so result ``g`` is what
    ``train(configs[g], W0=W0s[g])`` returns, up to float rounding in the averaging over draws.
    With ``noise_draws = k`` the ``k`` draws of a step are evaluated at once (a leading axis of
    the Gram computation) rather than in a Python loop.

    On the CPU the loop runs on one thread (restored afterwards): these tensors are far too small
    for threads to help, and on a shared machine they hurt.

    Returns
    -------
    list of TrainResult
        One per configuration, in order; ``seconds`` is the wall time of the whole program.
    """
    if not configs:
        raise ValueError("configs must be a non-empty sequence of TrainConfig, got an empty one")
    first = configs[0]
    for cfg in configs:
        if cfg.optimizer != "sgd":
            raise ValueError(f"optimizer must be 'sgd' for train_together, got {cfg.optimizer!r}")
        for key in _SAME:
            if getattr(cfg, key) != getattr(first, key):
                raise ValueError(
                    f"{key} must be the same in every config, got {getattr(first, key)!r} and {getattr(cfg, key)!r}"
                )
    W0s = [None] * len(configs) if W0s is None else list(W0s)
    if len(W0s) != len(configs):
        raise ValueError(f"W0s must have one entry per config ({len(configs)}), got {len(W0s)}")
    W0s = [
        init_weights(c.instances, c.n, c.m, seed=c.seed, std=c.init_std) if w is None else w.detach().cpu()
        for c, w in zip(configs, W0s)
    ]
    for c, w in zip(configs, W0s):
        if tuple(w.shape) != (c.instances, c.n, c.m):
            raise ValueError(f"W0 must have shape (instances, n, m) = {(c.instances, c.n, c.m)}, got {tuple(w.shape)}")
    wanted = sorted(set(int(s) for s in snapshot_steps))
    wanted_set = set(wanted)
    for s in wanted:
        if not 0 <= s <= first.steps:
            raise ValueError(f"snapshot_steps must lie in 0..{first.steps}, got {s}")
    record = snapshot_fn if snapshot_fn is not None else (lambda w: w.clone())

    dev = resolve_device(device)
    n, m, k = first.n, first.m, first.noise_draws
    sizes = [c.instances for c in configs]
    bounds = np.cumsum([0, *sizes]).tolist()
    W = torch.cat(W0s).to(device=dev, dtype=torch.float32)  # (B, n, m), B = total instances
    lr = torch.cat([torch.full((c.instances, 1, 1), c.lr) for c in configs]).to(dev)  # (B, 1, 1)
    gens = [seeded_generator(c.seed, dev) for c in configs]  # each config's stream, as train seeds it
    noisy = [c.noise != "none" for c in configs]
    if any(noisy) and not all(noisy):
        raise ValueError("noise must be 'none' in every config or in none of them")
    snaps: list[tuple[int, torch.Tensor]] = []

    def draw() -> torch.Tensor:
        parts = []
        for c, g in zip(configs, gens):
            shape = (1, 1, m) if c.noise_shared else (c.instances, n, m)
            if k == 1 or math.prod(shape) >= 16:  # k draws in one call: the same numbers as k calls
                xi = sample_noise(c.noise, c.sigma, (k, *shape), g, dev)
            else:  # torch draws fewer than 16 normals by another algorithm, so draw them as train does
                xi = torch.stack([sample_noise(c.noise, c.sigma, shape, g, dev) for _ in range(k)])
            parts.append(xi.expand(k, c.instances, n, m))
        return torch.cat(parts, dim=1).transpose(0, 1)  # (B, k, n, m)

    def step(t: int) -> torch.Tensor:
        if not any(noisy):
            loss, grad = loss_and_grad(W, first.l1, None, first.interference)
        elif k == 1:
            loss, grad = loss_and_grad(W, first.l1, draw()[:, 0], first.interference)
        else:
            loss, grad = loss_and_grad(W.unsqueeze(1), 0.0, draw(), first.interference)
            loss, grad = loss.mean(1), grad.mean(1)
            if first.l1:
                grad.add_(torch.sign(W), alpha=first.l1)
        W.sub_(grad * lr)
        return loss

    def snapshot(t: int) -> None:
        if t + 1 in wanted_set:
            snaps.append((t + 1, record(W).detach().cpu()))

    start = time.perf_counter()
    if 0 in wanted_set:
        with torch.no_grad(), one_cpu_thread(dev):
            snaps.append((0, record(W).detach().cpu()))
    losses = run_steps(step, first.steps, device=dev, watch=lambda: (W,), instances=sum(sizes), settings=first,
                       desc=desc, progress=progress, after=snapshot)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    W, losses = W.cpu(), losses.cpu()
    out = []
    for g, cfg in enumerate(configs):
        lo, hi = bounds[g], bounds[g + 1]
        out.append(TrainResult(
            config=cfg, W0=W0s[g].clone(), W=W[lo:hi].clone(), losses=losses[:, lo:hi].clone(),
            snapshots={t: v[lo:hi].clone() for t, v in snaps}, device=str(dev), seconds=seconds,
        ))
    return out


def log_steps(steps: int, count: int = 60) -> list[int]:
    """About ``count`` distinct steps spaced evenly on a log axis from 1 to ``steps``, with 0 first.

    >>> log_steps(100, 5)
    [0, 1, 3, 10, 32, 100]
    """
    check.integer("steps", steps)
    check.integer("count", count, minimum=2)
    grid = np.unique(np.round(np.geomspace(1, steps, count)).astype(int))
    return [0, *grid.tolist()]


def mean_fourth_norm(W: torch.Tensor) -> torch.Tensor:
    """Fourth norm ``sum_k W_ik^4`` averaged over features: one number per instance."""
    return fourth_norm(W).mean(dim=-1)


# --------------------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class NoiseConfig(ExperimentConfig):
    """The paper's noise experiment and the chapter's additions, as batched SGD runs.

    Three programs, each one call of ``train_together``:

    1. ``main``: every family in ``families`` at every ``sigma``, independent noise per input,
       neuron and instance, ``instances`` models each; plus ``shared_families`` with the authors'
       shared noise (one vector per step for every input and instance); plus ``count_instances``
       extra models of ``count_family`` at ``count_sigma`` for the polysemantic-neuron count.
    2. ``draws``: ``separate_families`` x ``separate_sigmas`` with the gradient averaged over
       ``draws`` noise draws per step, for ``separate_steps`` steps at ``lr``.
    3. ``slow``: the same settings with one draw, ``lr / slow_factor`` and
       ``slow_factor * separate_steps`` steps (the same time ``lr * steps``).

    Every run of a setting starts from the same initial weights (seed ``seed``), so the
    comparisons between variants are paired.
    """

    n: int = 8
    m: int = 16
    instances: int = 5
    steps: int = 100_000
    lr: float = 0.02
    sigmas: tuple[float, ...] = param((0.07, 0.1, 0.15), strict=True, unique=True)
    families: tuple[str, ...] = param(FAMILIES, choices=FAMILIES, unique=True)
    shared_families: tuple[str, ...] = param(("bernoulli", "gaussian"), choices=FAMILIES, empty=True, unique=True)
    count_family: str = param("bernoulli", choices=FAMILIES)
    count_sigma: float = param(0.15, strict=True)
    count_instances: int = param(40, minimum=0)
    separate_families: tuple[str, ...] = param(("bernoulli", "gaussian"), choices=FAMILIES, unique=True)
    separate_sigmas: tuple[float, ...] = param((0.1, 0.15), strict=True, unique=True)
    separate_steps: int = 20_000
    draws: int = 32
    slow_factor: int = 2
    snapshots: int = param(60, minimum=2)
    seed: int = 0

    def settings(self) -> list[dict]:
        """The runs of the main program: ``family``, ``sigma``, ``shared``, ``instances``, ``seed``."""
        out = [dict(family=f, sigma=s, shared=False, instances=self.instances, seed=self.seed)
               for f in self.families for s in self.sigmas]
        out += [dict(family=f, sigma=s, shared=True, instances=self.instances, seed=self.seed)
                for f in self.shared_families for s in self.sigmas]
        if self.count_instances:
            out.append(dict(family=self.count_family, sigma=self.count_sigma, shared=False,
                            instances=self.count_instances, seed=self.seed + 1))
        return out

    def _separate_instances(self) -> int:
        return len(self.separate_families) * len(self.separate_sigmas)

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory of the largest of the three batched programs and the record, in bytes.

        Each program keeps the mean fourth norm of every instance at each distinct step of its
        log-spaced grid of ``snapshots`` steps (at most ``min(snapshots, steps) + 1``), as one small
        tensor per step and its slice per run (about 1 KiB a tensor, whatever its size), and the
        run holds every program's results to the end; making the grid takes about 16 bytes a point.
        The record holds every curve, each number taking about 128 bytes (a Python float in a
        list and its JSON text).
        """
        def program(instances: int, draws: int, steps: int) -> int:
            w = instances * self.n * self.m  # weights, gradient, initial and returned copies: ~6 w;
            return 4 * (6 * w + 4 * draws * w + 3 * draws * instances * self.n**2 + 2 * steps * instances)

        def kept(steps: int) -> int:
            return min(self.snapshots, steps) + 1

        runs = self.settings()
        main = sum(r["instances"] for r in runs)
        n_sep = self._separate_instances()
        sep = n_sep * self.instances  # every separate setting trains ``instances`` models
        variants = [(1, self.separate_steps), (self.draws, self.separate_steps),
                    (1, self.separate_steps * self.slow_factor)]
        peak = max([program(main, 1, self.steps)] + [program(sep, k, steps) for k, steps in variants])
        tensors = kept(self.steps) * (len(runs) + 1) + sum(kept(steps) * (n_sep + 1) for _, steps in variants)
        numbers = kept(self.steps) * (main + len(runs)) + sum(
            kept(steps) * (sep + 2 * n_sep) for _, steps in variants)
        return peak + 16 * self.snapshots + 1024 * tensors + 128 * numbers

    def flops(self) -> float:
        """Floating-point operations of the three programs (6 n^2 m per instance, step and draw with noise)."""
        per = 6 * self.n**2 * self.m
        main = sum(r["instances"] for r in self.settings()) * self.steps
        sep = self._separate_instances() * self.separate_steps * (1 + self.draws + self.slow_factor)
        return float(per * (main + sep))

    def train_config(self, family: str, sigma: float, shared: bool = False, instances: int | None = None,
                     seed: int | None = None, steps: int | None = None, lr: float | None = None,
                     draws: int = 1) -> TrainConfig:
        """The :class:`~polybook.train.TrainConfig` of one run (defaults from this config)."""
        return TrainConfig(
            n=self.n, m=self.m, instances=self.instances if instances is None else instances,
            steps=self.steps if steps is None else steps, lr=self.lr if lr is None else lr,
            optimizer="sgd", noise=family, sigma=sigma, noise_shared=shared, noise_draws=draws,
            seed=self.seed if seed is None else seed,
        )


def _curve(res: TrainResult) -> dict:
    steps = sorted(res.snapshots)
    per_instance = torch.stack([res.snapshots[t] for t in steps])  # (snapshots, instances)
    return {"steps": steps, "mean": [round(float(v), 6) for v in per_instance.mean(1)],
            "per_instance": [[round(float(v), 6) for v in row] for row in per_instance]}


def _final(res: TrainResult) -> dict:
    W = res.W
    signs = polysemantic_sign_pattern(W)
    G = W @ W.transpose(-1, -2)  # (instances, n, n)
    off = ~torch.eye(W.shape[-2], dtype=torch.bool)
    return {
        "fourth_norm": [round(float(v), 6) for v in mean_fourth_norm(W)],
        "feature_fourth_norm": [[round(float(v), 4) for v in row] for row in fourth_norm(W)],
        "mean_overlap": [round(float(g[off].mean()), 6) for g in G],
        "sum_norm_sq": [round(float(v), 6) for v in (W.sum(-2) ** 2).sum(-1)],
        "winner_is_initial_leader": round(float((winner_initial_rank(res.W0, W) == 0).float().mean()), 4),
        "W_first": [[round(float(v), 4) for v in row] for row in W[0]],
        "norm_sq": [round(float(v), 6) for v in (W**2).sum(-1).mean(-1)],
        "largest_weight": [round(float(v), 6) for v in W.abs().amax(-1).mean(-1)],
        "polysemantic_band": polysemantic_neurons(W).tolist(),
        "polysemantic_by_mass": polysemantic_neurons_by_mass(W).tolist(),
        "polysemantic_by_response": polysemantic_neurons_by_response(W).tolist(),
        "mixed_sign_band": signs[:, 0].tolist(),
        "final_loss": round(float(res.losses[-1].mean()), 6),
    }


def run_noise(cfg: NoiseConfig, device: torch.device, progress: bool = True) -> dict:
    """Fourth-norm curves per run, final summaries, and the separating experiment."""
    dev = str(device)
    runs = cfg.settings()
    configs = [cfg.train_config(r["family"], r["sigma"], r["shared"], r["instances"], r["seed"]) for r in runs]
    results = train_together(configs, snapshot_steps=log_steps(cfg.steps, cfg.snapshots),
                             snapshot_fn=mean_fourth_norm, device=dev, progress=progress, desc="noise main")
    main = [{**r, **_curve(res), **_final(res)} for r, res in zip(runs, results)]

    sep = [(f, s) for f in cfg.separate_families for s in cfg.separate_sigmas]
    variants = {
        "one draw": dict(steps=cfg.separate_steps, lr=cfg.lr, draws=1),
        f"{cfg.draws} draws": dict(steps=cfg.separate_steps, lr=cfg.lr, draws=cfg.draws),
        f"lr / {cfg.slow_factor}": dict(steps=cfg.separate_steps * cfg.slow_factor, lr=cfg.lr / cfg.slow_factor, draws=1),
    }
    separate = []
    for name, v in variants.items():
        cfgs = [cfg.train_config(f, s, **v) for f, s in sep]
        res = train_together(cfgs, snapshot_steps=log_steps(v["steps"], cfg.snapshots),
                             snapshot_fn=mean_fourth_norm, device=dev, progress=progress, desc=f"noise {name}")
        for (f, s), r in zip(sep, res):
            curve = _curve(r)
            curve["time"] = [round(t * v["lr"], 6) for t in curve["steps"]]
            separate.append({"variant": name, "family": f, "sigma": s, **v, **curve, **_final(r)})
    return {
        "n": cfg.n, "m": cfg.m, "excess_kurtosis": dict(EXCESS_KURTOSIS),
        "predicted_polysemantic": predicted_polysemantic(cfg.n, cfg.m),
        "predicted_polysemantic_exact": round(expected_polysemantic_exact(cfg.n, cfg.m), 6),
        "runs": main, "separate": separate,
    }


EXPERIMENT = Experiment(
    "noise",
    "average fourth norm under hidden-layer noise of four kinds (no L1), and the draws/lr test",
    NoiseConfig,
    book=NoiseConfig(),
    paper=NoiseConfig(count_instances=200, separate_steps=100_000),
    run=run_noise,
)
