"""Hidden-layer noise as a source of sparsity: moments, the expected loss, and the experiment.

Training with noise on the hidden layer replaces the hidden activation ``W_i`` of input ``e_i``
by ``W_i + xi_i``, where ``xi_i`` has independent coordinates of mean 0, standard deviation
``sigma`` and excess kurtosis ``kappa`` (one of :data:`EXCESS_KURTOSIS`). Output ``j`` then reads

    ReLU(a + Z),   a = W_j . W_i,   Z = W_j . xi_i,

and everything the noise does to the expected loss goes through the law of ``Z``. Its cumulants
are exact and simple (``projection_cumulants``): variance ``sigma^2 ||W_j||_2^2``, fourth
cumulant ``kappa sigma^4 sum_k W_jk^4``. The last one is where the fourth norm, and so the shape
of the noise, enters; :func:`relu_sq_edgeworth` is the expected squared ReLU to first order in
it, :func:`relu_sq_bernoulli_exact` and :func:`relu_sq_monte_carlo` are the references it is
tested against.

``train_together`` trains several SGD configurations that differ in noise kind, ``sigma``,
sharing, learning rate or seed as one batched program (the model is so small that one step is
mostly Python overhead), each exactly as :func:`polybook.train` would. The ``noise`` experiment
(``python -m polybook run noise``, the paper's ``n = 8``) and the ``noise_width`` experiment
(``n = 8, 16, 32`` at ``m = 2n``, with a paired L1 control and a fluctuation test at ``n = 32``)
use it; both are analysed in the chapter ``book/noise.ipynb``.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _validate as check
from .experiments import register
from .metrics import (
    fourth_norm,
    polysemantic_neurons,
    polysemantic_neurons_by_mass,
    polysemantic_neurons_by_response,
    polysemantic_sign_pattern,
    winner_initial_rank,
)
from .models import init_weights, loss_and_grad
from .theory import expected_polysemantic_exact, predicted_polysemantic
from .train import CHECK_EVERY, TrainConfig, TrainResult, check_finite, one_cpu_thread, resolve_device, sample_noise

__all__ = [
    "EXCESS_KURTOSIS",
    "FAMILIES",
    "relu_sq_gaussian",
    "relu_sq_edgeworth",
    "relu_sq_bernoulli_exact",
    "relu_sq_monte_carlo",
    "explorer_figure",
]

#: Excess kurtosis ``E[xi^4] / sigma^4 - 3`` of each noise kind of ``polybook.train.sample_noise``.
#:
#: Introduced in the book: :doc:`/book/noise` (chapter noise).
EXCESS_KURTOSIS = {"bernoulli": -2.0, "uniform": -1.2, "gaussian": 0.0, "laplace": 3.0}

#: The noise kinds, in order of excess kurtosis.
#:
#: Introduced in the book: :doc:`/book/noise` (chapter noise).
FAMILIES = tuple(EXCESS_KURTOSIS)


# --------------------------------------------------------------------------- moments


def noise_moments(kind: str, sigma: float) -> dict[str, float]:
    """Exact moments of one coordinate of the noise.

    Returns
    -------
    dict
        ``mean`` (0), ``variance`` (``sigma^2``), ``fourth_moment`` (``(3 + kappa) sigma^4``) and
        ``excess_kurtosis`` (``kappa``).

    Examples
    --------
    >>> noise_moments("uniform", 1.0)["fourth_moment"]
    1.8
    """
    check.choice("kind", kind, FAMILIES)
    check.number("sigma", sigma)
    kappa = EXCESS_KURTOSIS[kind]
    return {"mean": 0.0, "variance": sigma**2, "fourth_moment": (3.0 + kappa) * sigma**4, "excess_kurtosis": kappa}


def sample_moments(kind: str, sigma: float, samples: int = 1_000_000, seed: int = 0) -> dict[str, float]:
    """The same four numbers estimated from ``samples`` draws of :func:`polybook.train.sample_noise`."""
    check.integer("samples", samples, minimum=2)
    x = sample_noise(kind, sigma, (samples,), torch.Generator().manual_seed(seed), dtype=torch.float64)
    mean = float(x.mean())
    var = float(x.var())
    m4 = float((x**4).mean())
    return {"mean": mean, "variance": var, "fourth_moment": m4, "excess_kurtosis": m4 / var**2 - 3.0}


def projection_cumulants(w: np.ndarray, kind: str, sigma: float) -> dict[str, np.ndarray]:
    """Exact cumulants of ``Z = w . xi`` for noise ``xi`` of kind ``kind``.

    Cumulants of independent terms add and the ``r``-th cumulant of ``c X`` is ``c^r`` times that
    of ``X``, so ``Var Z = sigma^2 sum_k w_k^2`` and ``kappa_4(Z) = kappa sigma^4 sum_k w_k^4``
    (odd cumulants vanish: every noise kind is symmetric).

    Parameters
    ----------
    w : array, shape ``(..., m)``
        One or more encodings.

    Returns
    -------
    dict
        ``variance``, ``fourth_cumulant`` and ``excess_kurtosis`` (``kappa sum w^4 / (sum w^2)^2``),
        each of shape ``w.shape[:-1]``.
    """
    check.choice("kind", kind, FAMILIES)
    w = np.asarray(w, dtype=float)
    l2 = (w**2).sum(-1)
    l4 = (w**4).sum(-1)
    kappa = EXCESS_KURTOSIS[kind]
    return {
        "variance": sigma**2 * l2,
        "fourth_cumulant": kappa * sigma**4 * l4,
        "excess_kurtosis": kappa * l4 / np.maximum(l2, np.finfo(float).tiny) ** 2,
    }


# --------------------------------------------------------------------------- E[ReLU(a + Z)^2]


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _Phi(x: np.ndarray) -> np.ndarray:
    return torch.special.ndtr(torch.as_tensor(np.asarray(x, dtype=float))).numpy()


def relu_sq_gaussian(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E[ReLU(a + Z)^2]`` for ``Z ~ N(0, s^2)``: ``(a^2 + s^2) Phi(a/s) + a s phi(a/s)`` (exact).

    Introduced in the book: :ref:`verdict-noise-n` (chapter noise).
    """
    a, s = np.asarray(a, dtype=float), np.asarray(s, dtype=float)
    u = a / s
    return (a * a + s * s) * _Phi(u) + a * s * _phi(u)


def relu_sq_edgeworth(a: np.ndarray, w: np.ndarray, kind: str, sigma: float) -> np.ndarray:
    """``E[ReLU(a + w . xi)^2]`` to first order in the fourth cumulant of ``w . xi``.

    The first-order Edgeworth density of ``Z`` is ``phi_s(z) + (kappa_4 / 24) phi_s''''(z)``;
    moving the four derivatives onto ``g(x) = ReLU(x)^2`` (``g'''' = 2 delta'``) gives

        E[ReLU(a + Z)^2] ~ G(a, s) - kappa_4 a phi(a/s) / (12 s^3),
        s^2 = sigma^2 ||w||_2^2,   kappa_4 = kappa sigma^4 ||w||_4^4,

    with ``G`` the Gaussian value :func:`relu_sq_gaussian`. The correction is the only place where
    ``sum_k w_k^4`` enters at this order. It is exact for Gaussian noise and an approximation
    otherwise (good when ``w`` is spread over many neurons, poor when it is nearly one-hot).

    Introduced in the book: :doc:`/book/noise` (chapter noise).

    Parameters
    ----------
    a : array
        Overlaps ``W_j . W_i``; broadcast against ``w.shape[:-1]``.
    w : array, shape ``(..., m)``
        The encoding ``W_j`` that reads the noise.
    """
    cum = projection_cumulants(w, kind, sigma)
    s = np.sqrt(cum["variance"])
    a = np.asarray(a, dtype=float)
    return relu_sq_gaussian(a, s) - cum["fourth_cumulant"] * a * _phi(a / s) / (12 * s**3)


def relu_sq_bernoulli_exact(a: np.ndarray, w: np.ndarray, sigma: float) -> np.ndarray:
    """``E[ReLU(a + w . xi)^2]`` for Bernoulli noise, exactly, by summing over all ``2^m`` signs.

    Introduced in the book: :doc:`/book/noise` (chapter noise).

    Parameters
    ----------
    a : array, shape ``(A,)``
    w : array, shape ``(m,)`` with ``m <= 20``.

    Returns
    -------
    numpy.ndarray, shape ``(A,)``
    """
    w = np.asarray(w, dtype=float)
    if w.ndim != 1 or len(w) > 20:
        raise ValueError(f"w must be one encoding of at most 20 weights, got shape {w.shape}")
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(w))))  # (2^m, m)
    z = sigma * signs @ w  # every value Z can take, each with probability 2^-m
    a = np.atleast_1d(np.asarray(a, dtype=float))
    return (np.maximum(a[:, None] + z[None, :], 0.0) ** 2).mean(axis=1)


def relu_sq_monte_carlo(
    a: np.ndarray, w: np.ndarray, kind: str, sigma: float, samples: int = 200_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo estimate of ``E[ReLU(a + w . xi)^2]`` and its standard error.

    Introduced in the book: :doc:`/book/noise` (chapter noise).

    Parameters
    ----------
    a : array, shape ``(A,)``
    w : array, shape ``(m,)``

    Returns
    -------
    mean, stderr : numpy.ndarray, shape ``(A,)``
    """
    w = torch.as_tensor(np.asarray(w, dtype=float))
    xi = sample_noise(kind, sigma, (samples, len(w)), torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = (xi @ w).numpy()  # (samples,)
    a = np.atleast_1d(np.asarray(a, dtype=float))
    vals = np.maximum(a[:, None] + z[None, :], 0.0) ** 2
    return vals.mean(axis=1), vals.std(axis=1) / math.sqrt(samples)


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
    gens = [torch.Generator(device=dev).manual_seed(c.seed + 1_000_003) for c in configs]
    noisy = [c.noise != "none" for c in configs]
    if any(noisy) and not all(noisy):
        raise ValueError("noise must be 'none' in every config or in none of them")
    losses = torch.empty(first.steps, sum(sizes), device=dev)
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

    start = time.perf_counter()
    with one_cpu_thread(dev):
        with torch.no_grad():
            if 0 in wanted:
                snaps.append((0, record(W).detach().cpu()))
            for t in tqdm(range(first.steps), desc=desc, disable=not progress, file=sys.stderr, mininterval=0.5, leave=False):
                if not any(noisy):
                    loss, grad = loss_and_grad(W, first.l1, None, first.interference)
                elif k == 1:
                    loss, grad = loss_and_grad(W, first.l1, draw()[:, 0], first.interference)
                else:
                    loss, grad = loss_and_grad(W.unsqueeze(1), 0.0, draw(), first.interference)
                    loss, grad = loss.mean(1), grad.mean(1)
                    if first.l1:
                        grad.add_(torch.sign(W), alpha=first.l1)
                losses[t] = loss
                W.sub_(grad * lr)
                if (t + 1) % CHECK_EVERY == 0 or t + 1 == first.steps:
                    check_finite(W, losses[max(0, t + 1 - CHECK_EVERY):t + 1], t + 1, first, desc)
                if t + 1 in wanted:
                    snaps.append((t + 1, record(W).detach().cpu()))
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
    """About ``count`` distinct steps spaced evenly on a log axis from 1 to ``steps``, with 0 first."""
    check.integer("steps", steps)
    check.integer("count", count, minimum=2)
    grid = np.unique(np.round(np.geomspace(1, steps, count)).astype(int))
    return [0, *grid.tolist()]


def mean_fourth_norm(W: torch.Tensor) -> torch.Tensor:
    """Fourth norm ``sum_k W_ik^4`` averaged over features: one number per instance."""
    return fourth_norm(W).mean(dim=-1)


# --------------------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class NoiseConfig:
    """The paper's noise experiment and the chapter's additions, as batched SGD runs.

    Three programs, each one call of :func:`train_together`:

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
    sigmas: tuple[float, ...] = (0.07, 0.1, 0.15)
    families: tuple[str, ...] = FAMILIES
    shared_families: tuple[str, ...] = ("bernoulli", "gaussian")
    count_family: str = "bernoulli"
    count_sigma: float = 0.15
    count_instances: int = 40
    separate_families: tuple[str, ...] = ("bernoulli", "gaussian")
    separate_sigmas: tuple[float, ...] = (0.1, 0.15)
    separate_steps: int = 20_000
    draws: int = 32
    slow_factor: int = 2
    snapshots: int = 60
    seed: int = 0

    def __post_init__(self) -> None:
        check.integer("n", self.n)
        check.integer("m", self.m)
        check.integer("instances", self.instances)
        check.integer("steps", self.steps)
        check.number("lr", self.lr, 0.0, strict=True)
        for s in self.sigmas + self.separate_sigmas + (self.count_sigma,):
            check.number("sigma", s, 0.0, strict=True)
        for fams in (self.families, self.shared_families, self.separate_families, (self.count_family,)):
            for f in fams:
                check.choice("family", f, FAMILIES)
        check.integer("count_instances", self.count_instances, minimum=0)
        check.integer("separate_steps", self.separate_steps)
        check.integer("draws", self.draws)
        check.integer("slow_factor", self.slow_factor)
        check.integer("snapshots", self.snapshots, minimum=2)
        check.seed("seed", self.seed)

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
        """Estimated peak memory of the largest of the three batched programs, in bytes."""
        def program(instances: int, draws: int, steps: int) -> int:
            w = instances * self.n * self.m  # weights, gradient, initial and returned copies: ~6 w;
            return 4 * (6 * w + 4 * draws * w + 3 * draws * instances * self.n**2 + 2 * steps * instances)

        main = sum(r["instances"] for r in self.settings())
        sep = self._separate_instances()
        return max(program(main, 1, self.steps), program(sep, self.draws, self.separate_steps * self.slow_factor))

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


@register(
    "noise",
    "average fourth norm under hidden-layer noise of four kinds (no L1), and the draws/lr test",
    book=NoiseConfig(),
    paper=NoiseConfig(count_instances=200, separate_steps=100_000),
)
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
        "n": cfg.n, "m": cfg.m, "excess_kurtosis": EXCESS_KURTOSIS,
        "predicted_polysemantic": predicted_polysemantic(cfg.n, cfg.m),
        "predicted_polysemantic_exact": round(expected_polysemantic_exact(cfg.n, cfg.m), 6),
        "runs": main, "separate": separate,
    }


# --------------------------------------------------------------------------- beyond n = 8


@dataclass(frozen=True)
class NoiseWidthConfig:
    """The noise experiment at several sizes: ``n`` features and ``m = ratio * n`` neurons.

    For each ``n`` in ``ns`` one call of :func:`train_together` trains ``instances`` models of
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

    ns: tuple[int, ...] = (8, 16, 32)
    ratio: int = 2
    families: tuple[str, ...] = ("bernoulli", "gaussian")
    sigmas: tuple[float, ...] = (0.1, 0.15)
    instances: int = 8
    steps: int = 100_000
    lr: float = 0.02
    l1: float = 0.01
    l1_steps: int = 10_000
    snapshots: int = 40
    fluct_n: int = 32
    fluct_family: str = "bernoulli"
    fluct_sigma: float = 0.15
    draws: int = 4
    slow_factor: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.ns:
            raise ValueError("ns must name at least one number of features, got an empty tuple")
        for n in self.ns:
            check.integer("n", n, minimum=2)
        check.integer("ratio", self.ratio)
        for f in self.families:
            check.choice("family", f, FAMILIES)
        for s in self.sigmas:
            check.number("sigma", s, 0.0, strict=True)
        check.integer("instances", self.instances)
        check.integer("steps", self.steps)
        check.number("lr", self.lr, 0.0, strict=True)
        check.number("l1", self.l1, 0.0, strict=True)
        check.integer("l1_steps", self.l1_steps)
        check.integer("snapshots", self.snapshots, minimum=2)
        if self.fluct_n not in self.ns:
            raise ValueError(f"fluct_n must be one of ns = {self.ns}, got {self.fluct_n}")
        check.choice("fluct_family", self.fluct_family, FAMILIES)
        check.number("fluct_sigma", self.fluct_sigma, 0.0, strict=True)
        check.integer("draws", self.draws)
        check.integer("slow_factor", self.slow_factor)
        check.seed("seed", self.seed)

    def settings(self) -> list[tuple[str, float]]:
        """The noise runs at each ``n``: every ``(family, sigma)``."""
        return [(f, s) for f in self.families for s in self.sigmas]

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory of the largest program, in bytes."""
        n = max(self.ns)
        m, b = self.ratio * n, len(self.settings()) * self.instances
        main = 4 * (10 * b * n * m + 3 * b * n * n + 2 * self.steps * b)
        k, nf = self.draws, self.fluct_n
        fluct = 4 * (6 * self.instances * nf * self.ratio * nf * (1 + k) + 3 * k * self.instances * nf * nf
                     + 2 * self.slow_factor * self.steps * self.instances)
        return max(main, fluct)

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


@register(
    "noise_width",
    "Bernoulli vs Gaussian hidden-layer noise at n = 8, 16, 32 features (m = 2n): sparsity, overlaps, "
    "polysemantic neurons, with a paired L1 control",
    book=NoiseWidthConfig(),
    paper=NoiseWidthConfig(ns=(8, 16, 32, 64), instances=16),
)
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


# --------------------------------------------------------------------------- explorer


def explorer_figure(family: str = "bernoulli", sigma: float = 0.1, steps: int = 20_000, instances: int = 5,
                    seed: int = 0, device: str = "cpu"):
    """Train ``instances`` models with one noise setting and draw what the explorer shows.

    Left: the average fourth norm of every instance over training (log-log), with the mean in
    bold. Right: the final weights of the first instance, rows sorted by their strongest neuron.

    Introduced in the book: :doc:`/book/noise` (chapter noise).

    Returns
    -------
    (matplotlib.figure.Figure, TrainResult)
    """
    import matplotlib.pyplot as plt

    from .plots import PALETTE, weight_heatmap

    cfg = TrainConfig(n=8, m=16, instances=instances, steps=steps, lr=0.02, optimizer="sgd",
                      noise=family, sigma=sigma, seed=seed)
    res = train_together([cfg], snapshot_steps=log_steps(steps, 40), snapshot_fn=mean_fourth_norm,
                         device=device, progress=False)[0]
    t = np.array(sorted(res.snapshots))
    curves = np.stack([res.snapshots[s].numpy() for s in t])  # (snapshots, instances)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.2]})
    ax.loglog(t[1:], curves[1:], color=PALETTE[family], alpha=0.35, lw=1)
    ax.loglog(t[1:], curves[1:].mean(1), color=PALETTE[family], lw=2.5, label=f"{family}, $\\sigma$ = {sigma:g}")
    ax.set_xlabel("SGD step $t$ (log)")
    ax.set_ylabel(r"mean fourth norm $\frac{1}{n}\sum_{i,k} W_{ik}^4$ (log)")
    ax.set_ylim(0.05, 1.1)
    ax.legend(loc="upper left")
    W = res.W[0].numpy()
    order = np.argsort(np.abs(W).argmax(1))
    weight_heatmap(ax2, W[order], title="final weights, instance 0", vmax=1.0)
    return fig, res
