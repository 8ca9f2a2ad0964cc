"""Experiment ``sparsification``: one feature under L1, simulated exactly, predicted, and trained.

The chapter's science is :mod:`polybook.regularisation`; this file holds what the experiment runs:
the two simulations of one feature's weights (the step-by-step Euler loop
:func:`simulate_euler` and its affine form :func:`simulate_affine`, ``O(log m)`` per step), the
paper's laws and the moving-threshold prediction (:func:`threshold_prediction`), the training
summary, and the experiment itself: its config, its run, its replay and its table rows.

All simulation quantities are in the paper's normalisation (``dW_i/dt = (1 - ||W_i||^2) W_i -
... - lam sign(W_i)``) and work on magnitudes ``|w_k|`` (the sign of a weight never changes).
Gradient descent on the package loss with learning rate ``lr`` and L1 strength ``l1`` is the
Euler scheme of that flow with ``dt = 4 lr`` and ``lam = l1 / 4``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .. import _validate as check
from ..train import TrainConfig, train, train_memory_bytes
from .config import ExperimentConfig, param
from .registry import Experiment

__all__ = [
    "ThresholdPrediction",
    "Trajectory",
    "initial_magnitudes",
    "paper_l1",
    "paper_survivors",
    "simulate_affine",
    "simulate_euler",
    "threshold_prediction",
]

# --------------------------------------------------------------------------- simulating one feature


def initial_magnitudes(m: int, c: float = 0.9, seed: int = 0) -> np.ndarray:
    """``|w_k(0)|`` for ``w_k(0) ~ N(0, c^2/m)``, ``k < m``, as float64 (the paper's simulation start).

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).
    """
    check.integer("m", m)
    check.number("c", c, 0.0, strict=True)
    w = np.random.default_rng(seed).standard_normal(m)
    np.abs(w, out=w)
    w *= c / math.sqrt(m)
    return w


@dataclass
class Trajectory:
    """One feature's sparsification, recorded after every step (index ``s`` = after ``s`` steps).

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).

    Attributes
    ----------
    t : np.ndarray
        ``(steps + 1,)`` times ``s * dt``.
    survivors : np.ndarray
        ``(steps + 1,)`` number of weights still alive, ``m'(t)``.
    l1 : np.ndarray
        ``(steps + 1,)`` ``||w||_1``.
    l2sq : np.ndarray
        ``(steps + 1,)`` ``||w||_2^2``.
    seconds : float
        Wall time of the simulation loop (sorting and prefix sums included).
    """

    t: np.ndarray
    survivors: np.ndarray
    l1: np.ndarray
    l2sq: np.ndarray
    seconds: float = 0.0

    @property
    def relative_variance(self) -> np.ndarray:
        """Variance over mean squared of the surviving magnitudes: ``m' ||w||_2^2 / ||w||_1^2 - 1``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.survivors * self.l2sq / self.l1**2 - 1

    def last_alone(self) -> float:
        """First time at which a single weight is left (``nan`` if never)."""
        idx = np.flatnonzero(self.survivors <= 1)
        return float(self.t[idx[0]]) if idx.size else math.nan


def _check_sim(lam: float, dt: float, steps: int) -> None:
    check.number("lam", lam, 0.0, strict=True)
    check.number("dt", dt, 0.0, strict=True)
    check.integer("steps", steps)


def simulate_euler(w0: np.ndarray, lam: float, dt: float, steps: int) -> Trajectory:
    """The reference: Euler steps of ``dw_k/dt = (1 - ||w||^2) w_k - lam`` on every weight.

    A weight is dropped for good as soon as a step takes it to zero or below. Costs ``O(m')``
    per step.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).

    Parameters
    ----------
    w0 : np.ndarray
        ``(m,)`` positive initial magnitudes.
    lam, dt : float
        L1 strength and time step (paper normalisation).
    steps : int

    Examples
    --------
    >>> tr = simulate_euler(np.array([0.8, 0.3, 0.1]), lam=0.1, dt=0.5, steps=20)
    >>> tr.survivors[[0, 1, 5, 20]].tolist()
    [3, 3, 2, 1]
    """
    _check_sim(lam, dt, steps)
    start = time.perf_counter()
    w = np.asarray(w0, dtype=np.float64).copy()
    if np.any(w <= 0):
        raise ValueError("w0 must hold positive magnitudes")
    survivors = np.empty(steps + 1, dtype=np.int64)
    l1 = np.empty(steps + 1)
    l2sq = np.empty(steps + 1)
    survivors[0], l1[0], l2sq[0] = w.size, w.sum(), w @ w
    for s in range(1, steps + 1):
        a = 1.0 - w @ w  # feature benefit factor 1 - ||w||^2
        w = w + dt * (a * w - lam)
        w = w[w > 0]
        survivors[s], l1[s], l2sq[s] = w.size, w.sum(), w @ w
    return Trajectory(np.arange(steps + 1) * dt, survivors, l1, l2sq, time.perf_counter() - start)


def affine_step(A: float, B: float, l2sq: float, dt: float, lam: float) -> tuple[float, float]:
    """One Euler step of the sparsification dynamics in the affine form ``w_k = A (w_k(0) - B)``.

    The step maps every alive weight by ``w -> (1 + dt (1 - ||w||^2)) w - dt lam``: ``A`` takes the
    factor, and ``B`` moves by ``dt lam`` divided by the new ``A``. ``l2sq`` is ``||w||^2`` before the step.

    >>> affine_step(1.0, 0.0, 0.5, 0.1, 0.2)
    (1.05, 0.01904761904761905)
    """
    A = A * (1.0 + dt * (1.0 - l2sq))
    return A, B + dt * lam / A


def simulate_affine(w0: np.ndarray, lam: float, dt: float, steps: int) -> Trajectory:
    """The same dynamics as :func:`simulate_euler`, in ``O(log m)`` per step.

    An Euler step maps every alive weight by ``w -> (1 + dt a) w - dt lam`` with the same ``a``,
    so ``w_k(t) = A (w_k(0) - B)`` with ``A <- A (1 + dt a)`` and ``B <- B + dt lam / A``; the alive
    weights are those with ``w_k(0) > B``. With the initial magnitudes sorted (largest first) and
    their prefix sums ``S1[k] = sum_{top k} w0``, ``S2[k] = sum_{top k} w0^2``, the norms of the
    ``k`` alive weights are ``||w||_1 = A (S1[k] - B k)`` and
    ``||w||_2^2 = A^2 (S2[k] - 2 B S1[k] + B^2 k)``; ``k`` is found by binary search, and only on
    steps where ``B`` has passed the smallest alive weight.

    Parameters and returns as :func:`simulate_euler`.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).

    Examples
    --------
    >>> w0 = np.array([0.8, 0.3, 0.1])
    >>> a, e = simulate_affine(w0, 0.1, 0.5, 20), simulate_euler(w0, 0.1, 0.5, 20)
    >>> bool(np.array_equal(a.survivors, e.survivors)), bool(np.allclose(a.l1, e.l1))
    (True, True)
    """
    _check_sim(lam, dt, steps)
    start = time.perf_counter()
    asc = np.sort(np.asarray(w0, dtype=np.float64))  # ascending: asc[m - k] is the k-th largest
    m = asc.size
    if m == 0 or asc[0] <= 0:
        raise ValueError("w0 must be a non-empty array of positive magnitudes")
    desc = asc[::-1]
    S1 = np.zeros(m + 1)
    S2 = np.zeros(m + 1)
    np.cumsum(desc, out=S1[1:])  # sums over the largest first: small sums stay accurate
    np.cumsum(desc * desc, out=S2[1:])
    del desc

    A, B, k = 1.0, 0.0, m
    s1, s2 = float(S1[k]), float(S2[k])
    smallest = float(asc[m - k])  # the next weight to die has this initial magnitude
    surv = [k]
    l1 = [s1]
    l2sq = [s2]
    for _ in range(steps):
        sq = A * A * (s2 - 2.0 * B * s1 + B * B * k) if k else 0.0
        A, B = affine_step(A, B, sq, dt, lam)
        if k and B >= smallest:  # some weights died this step: binary search for the new k
            k = m - int(np.searchsorted(asc, B, side="right"))
            s1, s2 = float(S1[k]), float(S2[k])
            smallest = float(asc[m - k]) if k else math.inf
        surv.append(k)
        if k:
            l1.append(A * (s1 - B * k))
            l2sq.append(A * A * (s2 - 2.0 * B * s1 + B * B * k))
        else:
            l1.append(0.0)
            l2sq.append(0.0)
    seconds = time.perf_counter() - start
    return Trajectory(np.arange(steps + 1) * dt, np.array(surv, dtype=np.int64), np.array(l1), np.array(l2sq), seconds)


# --------------------------------------------------------------------------- predictions


def paper_survivors(t, m: int, lam: float) -> np.ndarray:
    """The paper's prediction ``m'(t) = 1 / (1/sqrt(m) + lam t)^2``.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).
    """
    return 1.0 / (1.0 / math.sqrt(m) + lam * np.asarray(t, dtype=np.float64)) ** 2


def paper_l1(t, m: int, lam: float) -> np.ndarray:
    """The paper's prediction ``||w||_1(t) = 1 / (1/sqrt(m) + lam t)``.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).
    """
    return 1.0 / (1.0 / math.sqrt(m) + lam * np.asarray(t, dtype=np.float64))


_SQRT2PI = math.sqrt(2.0 * math.pi)


def _tail_moments(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``X ~ N(0, 1)``: ``P(|X| > b)``, ``E[(|X| - b)_+]`` and ``E[(|X| - b)_+^2]`` at ``b = beta``."""
    beta = np.asarray(beta, dtype=np.float64)
    Q = 0.5 * np.array([math.erfc(b / math.sqrt(2.0)) for b in beta.ravel()]).reshape(beta.shape)
    phi = np.exp(-0.5 * beta**2) / _SQRT2PI
    return 2 * Q, 2 * (phi - beta * Q), 2 * ((1 + beta**2) * Q - beta * phi)


@dataclass
class ThresholdPrediction:
    """The moving-threshold prediction of :func:`threshold_prediction` at the requested times.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).
    """

    t: np.ndarray
    survivors: np.ndarray
    l1: np.ndarray
    l2sq: np.ndarray
    relative_variance: np.ndarray
    threshold: np.ndarray  # B(t), in units of the initial weights


def threshold_prediction(t, m: int, lam: float, c: float = 0.9, grid: int = 4000) -> ThresholdPrediction:
    """Predict ``m'(t)``, ``||w||_1(t)``, ``||w||_2^2(t)`` and the relative variance, with no free constant.

    The weights alive at time ``t`` are the initial magnitudes above a moving threshold ``B``,
    shifted and scaled: ``w = A (w(0) - B)``. For ``m`` Gaussian initial weights of standard
    deviation ``sigma = c / sqrt(m)`` and ``beta = B / sigma``, the law of large numbers gives
    ``m' = m P(|X| > beta)``, ``||w||_1 = A m sigma E[(|X| - beta)_+]`` and
    ``||w||_2^2 = A^2 m sigma^2 E[(|X| - beta)_+^2]``. The balance
    ``1 - ||w||_2^2 = lam ||w||_1`` fixes ``A`` for each ``B``, and ``dB/dt = lam / A`` gives
    ``t(B) = (1 / lam) int_0^B A dB'``. The short initial transient in which the norm first
    reaches balance is ignored.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).

    Parameters
    ----------
    t : array_like
        Times (paper normalisation), ``>= 0``.
    m : int
    lam : float
    c : float
        Initial weights ``N(0, c^2/m)``.
    grid : int
        Points of the ``beta`` grid for the integral (trapezoid rule).
    """
    check.integer("m", m)
    check.number("lam", lam, 0.0, strict=True)
    t = np.asarray(t, dtype=np.float64)
    sigma = c / math.sqrt(m)
    beta_max = math.sqrt(2 * math.log(2 * m)) + 3.0  # well past m' = 1
    beta = np.linspace(0.0, beta_max, grid)
    p, e1, e2 = _tail_moments(beta)
    S1 = m * sigma * e1
    S2 = m * sigma**2 * e2
    A = 2.0 / (lam * S1 + np.sqrt((lam * S1) ** 2 + 4 * S2))  # root of S2 A^2 + lam S1 A - 1 = 0
    B = beta * sigma
    tB = np.concatenate([[0.0], np.cumsum(0.5 * (A[1:] + A[:-1]) * np.diff(B))]) / lam
    b = np.interp(t, tB, beta)
    p, e1, e2 = _tail_moments(b)
    a = np.interp(t, tB, A)
    return ThresholdPrediction(
        t=t,
        survivors=m * p,
        l1=a * m * sigma * e1,
        l2sq=a * a * m * sigma**2 * e2,
        relative_variance=p * e2 / e1**2 - 1,
        threshold=b * sigma,
    )


# --------------------------------------------------------------------------- training


def training_summary(W: torch.Tensor, alive_above: float) -> torch.Tensor:
    """Per encoding: the alive weights (``|W_ik| > alive_above``), their L1 norm and ``||W_i||_2^2``.

    Returns ``(instances, n, 3)``; a ``snapshot_fn`` for :func:`polybook.train`. Under
    gradient descent with the L1 subgradient a dead weight does not stop at zero: it zig-zags
    around it with steps of about one L1 step ``lr * l1`` (plus the small pushes of the other
    forces). So ``alive_above = 2 lr l1`` separates the survivors, and the L1 norm sums the
    survivors only (the dead weights' zig-zag would add about ``m lr l1 / 2`` to it).

    Examples
    --------
    >>> training_summary(torch.tensor([[0.5, -0.3, 1e-4]]), alive_above=1e-3).tolist()
    [[2.0, 0.800000011920929, 0.3400000035762787]]
    """
    a = W.abs()
    alive = a > alive_above
    return torch.stack([alive.sum(-1).to(W.dtype), (a * alive).sum(-1), (W * W).sum(-1)], dim=-1)




# --------------------------------------------------------------------------- the experiment


@dataclasses.dataclass(frozen=True)
class SparsificationConfig(ExperimentConfig):
    """Sparsification of single features (simulated) and of a trained autoencoder (measured).

    Setting ``j`` has ``m[j]`` neurons and L1 strength ``lam[j]`` (paper normalisation) and runs
    to time ``horizon / lam[j]`` with Euler steps ``dt``. ``euler[j]`` also runs the step-by-step
    reference loop (for the survivor-by-survivor comparison and the timing); ``train[j]`` also
    trains an autoencoder with ``train_n`` features by gradient descent with ``lr = dt / 4``
    and ``l1 = 4 lam[j]`` (the same flow, in the package's normalisation), from
    ``N(0, c^2/m)`` like the simulation. Trajectories are stored at ``points`` log-spaced times.
    """

    m: tuple[int, ...] = (10_000, 100_000)
    lam: tuple[float, ...] = param((1e-3, 1e-5), strict=True)
    euler: tuple[bool, ...] = (True, False)
    train: tuple[bool, ...] = (True, False)
    c: float = param(0.9, strict=True)
    dt: float = param(0.5, strict=True)
    horizon: float = param(2.5, strict=True)
    train_n: int = 4
    points: int = param(160, minimum=2)
    seed: int = 0

    def check(self) -> None:
        """``lam``, ``euler`` and ``train`` hold one entry per ``m``."""
        k = len(self.m)
        for name in ("lam", "euler", "train"):
            v = getattr(self, name)
            if len(v) != k:
                check.fail(name, v, f"a tuple with one entry per m ({k})")

    def steps(self, j: int) -> int:
        return int(round(self.horizon / self.lam[j] / self.dt))

    def capped(self, steps: int) -> SparsificationConfig:
        """This config with the largest ``lam``'s run cut to ``steps`` steps (the others in proportion)."""
        horizon = min(self.horizon, steps * self.dt * max(self.lam))
        return dataclasses.replace(self, horizon=horizon)

    def _train_config(self, j: int) -> TrainConfig:
        return TrainConfig(n=self.train_n, m=self.m[j], steps=self.steps(j), lr=self.dt / 4, optimizer="sgd",
                           l1=4 * self.lam[j], init_std=self.c / math.sqrt(self.m[j]), seed=self.seed + j)

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory: the simulations' float64 arrays (about 8 of length ``m``) and the training."""
        return max(64 * m + (train_memory_bytes(self._train_config(j)) if self.train[j] else 0)
                   for j, m in enumerate(self.m))

    def flops(self) -> float:
        """Operations: the Euler loop (about 5 m per step), the affine one (log m per step), the training."""
        total = 0.0
        for j, m in enumerate(self.m):
            steps = self.steps(j)
            total += steps * (math.log2(m) + 1) + (5 * m * steps if self.euler[j] else 0)
            total += 4 * self.train_n**2 * m * steps if self.train[j] else 0
        return total


def _log_grid(steps: int, points: int) -> np.ndarray:
    """Step 0 and about ``points`` log-spaced steps up to ``steps`` (sorted, without repeats)."""
    return np.unique(np.concatenate([[0], np.geomspace(1, steps, points).round().astype(np.int64)]))


def _finite_or_none(x: float) -> float | None:
    """``x``, or ``None`` (JSON ``null``) for infinity: "never happened within the run"."""
    return None if not math.isfinite(x) else x


def _balance_range(sim, lam: float, late: np.ndarray) -> list | None:
    """Smallest and largest ``(1 - ||w||^2) / (lam ||w||_1)`` over the late steps with a survivor (``None``: none)."""
    keep = late & (sim.survivors > 0)
    if not keep.any():
        return None
    ratio = (1 - sim.l2sq[keep]) / (lam * sim.l1[keep])
    return _rounded([ratio.min(), ratio.max()])


def _rounded(x, digits: int = 6) -> list:
    return [float(f"{v:.{digits}g}") for v in np.asarray(x, dtype=np.float64).tolist()]


def run_sparsification(cfg: SparsificationConfig, device: torch.device, progress: bool = True) -> dict:
    """Per setting: simulated and predicted trajectories, the Euler check, and training curves."""
    settings = []
    for j, (m, lam) in enumerate(zip(cfg.m, cfg.lam)):
        steps = cfg.steps(j)
        w0 = initial_magnitudes(m, cfg.c, cfg.seed + j)
        sim = simulate_affine(w0, lam, cfg.dt, steps)
        idx = _log_grid(steps, cfg.points)
        t = sim.t[idx]
        theory = threshold_prediction(t, m, lam, cfg.c)
        late = sim.t >= 3.0
        rec = {
            "m": m, "lam": lam, "steps": steps, "t": _rounded(t),
            "survivors": sim.survivors[idx].tolist(), "l1": _rounded(sim.l1[idx]),
            "l2sq": _rounded(sim.l2sq[idx], 10), "relative_variance": _rounded(sim.relative_variance[idx]),
            "paper_survivors": _rounded(paper_survivors(t, m, lam)), "paper_l1": _rounded(paper_l1(t, m, lam)),
            "theory_survivors": _rounded(theory.survivors), "theory_l1": _rounded(theory.l1),
            "theory_relative_variance": _rounded(theory.relative_variance),
            "balance_ratio_range": _balance_range(sim, lam, late),
            "last_alone": _finite_or_none(sim.last_alone()), "affine_seconds": round(sim.seconds, 3),
        }
        del w0
        if cfg.euler[j]:
            ref = simulate_euler(initial_magnitudes(m, cfg.c, cfg.seed + j), lam, cfg.dt, steps)
            rec["euler_seconds"] = round(ref.seconds, 3)
            rec["euler_same_survivors_every_step"] = bool(np.array_equal(ref.survivors, sim.survivors))
            rec["euler_max_rel_l1_gap"] = float(f"{np.max(np.abs(ref.l1 - sim.l1) / np.maximum(ref.l1, 1e-300)):.3g}")
        if cfg.train[j]:
            tc = cfg._train_config(j)
            lr, l1 = tc.lr, tc.l1
            res = train(tc, snapshot_steps=idx.tolist(), device=str(device), progress=progress,
                        snapshot_fn=lambda W: training_summary(W, 2 * lr * l1), desc=f"sparsification m={m}")
            snaps = torch.stack([res.snapshots[int(s)] for s in idx])  # (points, instances, n, 3)
            snaps = snaps.reshape(len(idx), -1, 3).double()
            rec["train"] = {
                "n": cfg.train_n, "lr": lr, "l1": l1, "alive_above": 2 * lr * l1,
                "survivors": _rounded(snaps[..., 0].mean(1)), "l1_norm": _rounded(snaps[..., 1].mean(1)),
                "l2sq": _rounded(snaps[..., 2].mean(1), 10),
                "survivors_per_feature": snaps[-1, :, 0].long().tolist(),
                "seconds": round(res.seconds, 2),
            }
        settings.append(rec)
    return {"c": cfg.c, "dt": cfg.dt, "settings": settings}


#: The keys of a setting that :func:`replay_sparsification` compares: the float64 simulation and
#: its predictions, which any machine reproduces.
REPLAYED_KEYS = ("t", "survivors", "l1", "theory_survivors", "paper_survivors", "last_alone")


def replay_sparsification(record: dict, settings: int = 2, device: str = "cpu") -> dict:
    """Re-run the first ``settings`` settings of a stored ``sparsification`` record, cheaply.

    The simulations and predictions of each setting are made again from the record's own config,
    without the Euler reference loop; the first setting is trained again when the record trained
    it. Returns ``{"stored": [...], "replayed": [...]}``, one setting (a dict of the record's
    ``settings``) per entry. The float64 simulation agrees to rounding on any machine
    (:data:`REPLAYED_KEYS`); the float32 training only closely, when the record was made on another device.
    """
    if record.get("experiment") != "sparsification":
        raise ValueError(f"record must be a sparsification result, got {record.get('experiment')!r}")
    cfg = SparsificationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    k = min(settings, len(cfg.m))
    cheap = dataclasses.replace(cfg, m=cfg.m[:k], lam=cfg.lam[:k], euler=(False,) * k,
                                train=(cfg.train[0],) + (False,) * (k - 1))
    fresh = run_sparsification(cheap, torch.device(device), progress=False)["settings"]
    return {"stored": record["results"]["settings"][:k], "replayed": fresh}


def sparsification_rows(record: dict) -> list[dict]:
    """One row per setting: ``m``, ``lam``, the steps, the survivors at the end, when one weight is left
    (as a time and in units of ``1 / lam``), whether it was trained, and the two simulations' times."""
    rows = []
    for s in record["results"]["settings"]:
        alone = s["last_alone"]
        rows.append({
            "m": s["m"], "lam": s["lam"], "steps": s["steps"], "survivors_at_end": s["survivors"][-1],
            "last_alone": alone, "last_alone_times_lam": None if alone is None else alone * s["lam"],
            "trained": "train" in s, "affine_seconds": s["affine_seconds"], "euler_seconds": s.get("euler_seconds"),
        })
    return rows


EXPERIMENT = Experiment(
    "sparsification",
    "one feature under L1: affine simulation vs Euler vs theory vs training",
    SparsificationConfig,
    book=SparsificationConfig(),
    paper=SparsificationConfig(
        m=(10_000, 100_000, 100_000_000), lam=(1e-3, 1e-5, 1e-5), euler=(True, True, False),
        train=(True, True, False)),
    run=run_sparsification,
    replay=replay_sparsification,
    rows=sparsification_rows,
    stored=("sparsification-paper",),
)
