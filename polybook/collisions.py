"""Tools for the chapter on initialisation collisions and the ``n^2/(4m)`` law.

What the chapter needs beyond the core modules:

- the ``collisions`` sweep with its weights kept (:func:`train_sweep`, :func:`sweep_record`),
  giving exactly the numbers of ``python -m polybook run collisions``;
- summaries of counts over instances and a log-log slope fit with a bootstrap interval
  (``count_stats``, :func:`fit_loglog_slope`, :func:`law_rows`, :func:`plot_law`);
- stored paper-scale results, loaded only when present (:func:`load_paper_record`);
- how the initial leaders relate to the final winners (:func:`correspondence_summary`);
- the two-feature example (:func:`shared_neuron_loss`, :func:`two_feature_start`);
- one-line settings of the sensitivity table (:func:`run_setting`, :func:`markdown_table`);
- the birthday-problem figure and its explorer (:func:`birthday_figure`, :func:`birthday_explorer`).

Shapes follow the rest of polybook: ``W`` is ``(instances, n, m)``; counts over a sweep are
``(len(m), instances)``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _validate as check
from .experiments import (
    EXPERIMENTS,
    CollisionsConfig,
    Pieces,
    ResultError,
    apply_overrides,
    load_result,
    register,
    stored_result,
    summarise_collisions,
)
from .metrics import (
    BAND,
    band_mask,
    fourth_norm,
    one_hot_share,
    polysemantic_neurons,
    polysemantic_neurons_by_mass,
    polysemantic_sign_pattern,
    winner_initial_rank,
    winners,
)
from .models import init_weights, reconstruction_loss
from .plots import PALETTE
from .theory import (
    expected_colliding_pairs,
    expected_polysemantic_exact,
    predicted_polysemantic,
    simulate_collisions,
)
from .train import OPTIMIZERS, TrainConfig, TrainResult, train, train_memory_bytes

__all__ = [
    "PAPER_COMMAND",
    "sweep_config",
    "train_sweep",
    "sweep_record",
    "fit_loglog_slope",
    "law_rows",
    "plot_law",
    "load_paper_record",
    "law_over_n_rows",
    "plot_law_over_n",
    "correspondence_summary",
    "shared_neuron_loss",
    "two_feature_start",
    "run_setting",
    "summarise_weights",
    "birthday_figure",
    "birthday_explorer",
    "SlopeFit",
]

#: The command that writes the paper-scale sweep where the chapter looks for it (needs a GPU).
#:
#: Introduced in the book: :ref:`law-measured` (chapter collisions).
PAPER_COMMAND = "python -m polybook run collisions --scale paper --out book/results/collisions-paper"

#: Where :func:`load_paper_record` looks, relative to the working directory (the notebook's
#: folder ``book/`` or the repository root).
PAPER_FOLDER = "collisions-paper"
PAPER_PATHS = (f"results/{PAPER_FOLDER}/result.json", f"book/results/{PAPER_FOLDER}/result.json")


# --------------------------------------------------------------------------- the sweep


def sweep_config(scale: str = "book", overrides: Sequence[str] | dict = ()) -> CollisionsConfig:
    """The registered ``collisions`` config at ``scale``, with ``overrides`` applied.

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    return apply_overrides(EXPERIMENTS["collisions"].scales[scale], overrides)


def train_sweep(cfg: CollisionsConfig, device: str = "auto", progress: bool = False) -> list[TrainResult]:
    """Train every ``m`` of ``cfg`` exactly as the ``collisions`` experiment does, keeping the weights.

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    return [
        train(cfg.train_config(j), device=device, progress=progress, desc=f"collisions m={m}")
        for j, m in enumerate(cfg.m)
    ]


def sweep_record(cfg: CollisionsConfig, runs: Sequence[TrainResult]) -> dict:
    """The ``results`` dict that ``run_experiment("collisions", ...)`` returns, from trained runs.

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    return summarise_collisions(cfg, runs)


# --------------------------------------------------------------------------- statistics of the law


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


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares line ``log(mean count) = intercept + slope * log(m)`` with a bootstrap interval.

    Introduced in the book: :doc:`/book/collisions` (chapter collisions).
    """

    slope: float
    intercept: float
    lo: float  # lower end of the bootstrap interval of the slope
    hi: float  # upper end
    se: float  # bootstrap standard deviation of the slope
    level: float
    skipped: int  # bootstrap samples dropped because some mean was 0


def fit_loglog_slope(m, counts, boot: int = 2000, seed: int = 0, level: float = 0.95) -> SlopeFit:
    """Fit the slope of log(mean count) against log(m); resample instances for the uncertainty.

    Each bootstrap sample redraws, for every ``m`` separately, ``instances`` counts with
    replacement from that ``m``'s counts and refits. The interval holds the central ``level``
    of the bootstrap slopes. Samples in which some mean is 0 (no log) are dropped and counted.

    Introduced in the book: :ref:`law-measured` (chapter collisions).

    Examples
    --------
    >>> m = [64, 128, 256]
    >>> fit = fit_loglog_slope(m, [[16, 16], [8, 8], [4, 4]])
    >>> round(fit.slope, 6), round(fit.lo, 6), round(fit.hi, 6)
    (-1.0, -1.0, -1.0)
    """
    x = np.log(np.asarray(m, dtype=float))
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[0] != len(x) or len(x) < 2:
        raise ValueError(f"counts must have shape (len(m) >= 2, instances), got {c.shape} for {len(x)} values of m")
    means = c.mean(axis=1)
    if np.any(means <= 0):
        raise ValueError(f"every mean count must be > 0 to take logs, got {means.tolist()}")
    slope, intercept = np.polyfit(x, np.log(means), 1)
    rng = np.random.default_rng(seed)
    k = c.shape[1]
    idx = rng.integers(0, k, size=(boot, len(x), k))
    bmeans = np.take_along_axis(np.broadcast_to(c, (boot, *c.shape)), idx, axis=2).mean(axis=2)
    ok = np.all(bmeans > 0, axis=1)
    xc = x - x.mean()
    slopes = (np.log(bmeans[ok]) @ xc) / (xc @ xc)
    a = (1 - level) / 2
    lo, hi = np.quantile(slopes, [a, 1 - a])
    return SlopeFit(float(slope), float(intercept), float(lo), float(hi), float(slopes.std()), level, int((~ok).sum()))


def law_rows(record: dict) -> list[dict]:
    """One row per ``m`` of a collisions record (the ``results`` part or the whole record).

    Each row: ``m``, ``mean``, ``sem``, ``p16``, ``p84`` of the band-rule count, ``by_mass``
    (mean), ``mixed`` and ``same`` (mean sign split), ``predicted`` (``n^2/(4m)``), ``exact``
    (the idealised expectation), ``ratio`` (mean / predicted) and ``ratio_exact``.

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
        })
    return rows


def plot_law(ax, record: dict, label: str = "measured", color: str | None = None, fit: SlopeFit | None = None,
             theory: bool = True) -> None:
    """Polysemantic neurons against ``m`` on log-log axes: mean with standard error, 16-84% band.

    With ``theory`` it adds ``n^2/(4m)`` (black, slope -1) and the idealised exact expectation
    (grey); with ``fit`` the fitted line (dashed, in the measured colour).

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    color = color or PALETTE["measured"]
    res = record.get("results", record)
    n, m = res["n"], np.asarray(res["m"], dtype=float)
    s = count_stats(res["polysemantic"])
    ax.fill_between(m, np.maximum(s["p16"], 1e-1), np.maximum(s["p84"], 1e-1), color=color, alpha=0.15,
                    lw=0, label=f"{label}: 16-84% of instances")
    ax.errorbar(m, s["mean"], yerr=s["sem"], fmt="o", color=color, ms=5, capsize=3,
                label=f"{label}: mean $\\pm$ s.e.")
    if theory:
        grid = np.geomspace(m.min(), m.max(), 100)
        ax.plot(grid, n * n / (4 * grid), color=PALETTE["theory"], lw=1.4, label="$n^2/(4m)$ (slope $-1$)")
        ax.plot(grid, [expected_polysemantic_exact(n, int(round(g))) for g in grid], color=PALETTE["theory_alt"],
                lw=1.4, ls="-.", label="idealised exact expectation")
    if fit is not None:
        ax.plot(m, np.exp(fit.intercept) * m ** fit.slope, color=color, lw=1, ls="--",
                label=f"fit: slope {fit.slope:.2f} [{fit.lo:.2f}, {fit.hi:.2f}]")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("neurons $m$ (log scale)")
    ax.set_ylabel("polysemantic neurons (log scale)")
    ax.set_title(f"n = {n}")


def load_paper_record(path: str | Path | None = None) -> dict | None:
    """The stored paper-scale ``collisions`` record, or ``None`` when it has not been produced.

    ``path`` is a ``result.json`` or its folder; by default the places in ``PAPER_PATHS``, and where
    neither exists (a notebook alone in Colab) the released copy (:func:`~polybook.experiments.stored_result`),
    ``None`` when it cannot be had. Raises ``ValueError`` when the file is not a collisions record.

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    candidates = [Path(path)] if path is not None else [Path(p) for p in PAPER_PATHS]
    record = None
    for p in candidates:
        f = p / "result.json" if p.is_dir() else p
        if f.is_file():
            record = load_result(f)
            break
    if record is None and path is None:  # alone in a fresh runtime (Colab): the released copy, if it can be had
        try:
            record = stored_result(PAPER_FOLDER)
        except ResultError:
            return None
    if record is None:
        return None
    if record.get("experiment") != "collisions" or "polysemantic" not in record.get("results", {}):
        raise ValueError(f"the paper-scale record must be a 'collisions' record, got experiment {record.get('experiment')!r}")
    return record


# --------------------------------------------------------------------------- the law over n


@dataclass(frozen=True)
class LawOverNConfig:
    """Train the collisions setting at pairs ``(n[j], m[j])``: the law tested over ``n`` as well as ``m``.

    The book's points vary ``n`` at a fixed ``m`` (where ``n^2/(4m)`` grows like ``n^2``) and at a
    fixed ``n^2/m`` (where it stays put while the idealised expectation creeps up towards it). Each
    point is counted at every step of ``checkpoint_steps`` and at the end, so a record also says
    what more training changes. Point ``j`` uses seed ``seed + j``.
    """

    n: tuple[int, ...] = (16, 32, 64, 96, 128, 32, 48, 96, 128)
    m: tuple[int, ...] = (256, 256, 256, 256, 256, 64, 144, 576, 1024)
    instances: int = 32
    steps: int = 10000
    checkpoint_steps: tuple[int, ...] = (2500, 5000, 7500)
    lr: float = 1e-3
    l1: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    seed: int = 1000

    def __post_init__(self) -> None:
        check.integers("n", self.n)
        check.integers("m", self.m)
        if len(self.n) != len(self.m):
            check.fail("m", self.m, f"a tuple of {len(self.n)} widths, one per n")
        check.integer("instances", self.instances, minimum=2)
        check.integer("steps", self.steps)
        check.integers("checkpoint_steps", self.checkpoint_steps, maximum=self.steps)
        check.number("lr", self.lr, 0.0, strict=True)
        check.number("l1", self.l1)
        check.choice("optimizer", self.optimizer, OPTIMIZERS)
        check.number("weight_decay", self.weight_decay)
        check.seed("seed", self.seed)

    def capped(self, steps: int) -> "LawOverNConfig":
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


@register(
    "collisions-n",
    "the n^2/(4m) law over n: polysemantic neurons at fixed m and at fixed n^2/m",
    book=LawOverNConfig(),
    paper=LawOverNConfig(n=(64, 128, 256, 512, 128, 512), m=(1024, 1024, 1024, 1024, 256, 4096), instances=16),
)
def run_law_over_n(cfg: LawOverNConfig, device: torch.device, progress: bool = True,
                   pieces: Pieces | None = None) -> dict:
    """Per point ``(n, m)``: counts per instance at each checkpoint and at the end, and the predictions.

    Each point is a piece (see :class:`~polybook.experiments.Pieces`): an interrupted run resumes.
    """
    from tqdm.auto import tqdm

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


def plot_law_over_n(ax, rows: Sequence[dict], title: str = "", color: str | None = None) -> None:
    """Mean count (with standard error) against ``n`` for one family of :func:`law_over_n_rows`.

    The family either shares ``m`` (then ``m`` stays fixed along the curves) or shares ``n^2/m``
    (then ``m = n^2 / ratio`` along them). Curves: ``n^2/(4m)`` (black), ``n^2/(2m)`` (dotted) and
    the idealised exact expectation (grey).

    Introduced in the book: :ref:`law-over-n` (chapter collisions).
    """
    color = color or PALETTE["measured"]
    ns = np.array([r["n"] for r in rows], dtype=float)
    ms = np.array([r["m"] for r in rows], dtype=float)
    fixed_m = bool(np.all(ms == ms[0]))
    ratio = float(np.mean(ns**2 / ms))
    grid = np.arange(int(ns.min()), int(ns.max()) + 1)
    wg = np.full(grid.shape, ms[0]) if fixed_m else grid**2 / ratio
    keep = wg == np.round(wg)  # the exact expectation needs whole numbers of neurons
    grid, wg = grid[keep], wg[keep].astype(int)
    ax.plot(grid, grid**2 / (4 * wg), color=PALETTE["theory"], lw=1.4, label="$n^2/(4m)$")
    ax.plot(grid, grid**2 / (2 * wg), color=PALETTE["theory"], lw=1.2, ls=":", label="$n^2/(2m)$: every colliding pair")
    ax.plot(grid, [expected_polysemantic_exact(int(g), int(w)) for g, w in zip(grid, wg)],
            color=PALETTE["theory_alt"], lw=1.4, ls="-.", label="idealised exact expectation")
    ax.errorbar(ns, [r["mean"] for r in rows], yerr=[r["sem"] for r in rows], fmt="o", color=color, ms=5,
                capsize=3, label="trained: mean $\\pm$ s.e.")
    if not fixed_m:
        for r in rows:
            ax.annotate(f"m={r['m']}", (r["n"], r["mean"]), textcoords="offset points", xytext=(6, -12), fontsize=7,
                        color="0.35")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("features $n$ (log scale)")
    ax.set_ylabel("polysemantic neurons (log scale)")
    ax.set_title(title)
    top = float(np.max(grid**2 / (2 * wg)))
    ax.set_ylim(top=top * (1.6 if fixed_m else 2.2))
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if not fixed_m and v in (2, 3, 4, 6, 8) else ""))
    ax.legend(fontsize=7, loc="upper left")


# --------------------------------------------------------------------------- start and end


def _pairs_on_neurons(mask: torch.Tensor) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of features marked on a common neuron; ``mask`` is ``(n, m)``."""
    pairs = set()
    for k in torch.nonzero(mask.sum(dim=0) >= 2).flatten().tolist():
        feats = torch.nonzero(mask[:, k]).flatten().tolist()
        pairs.update((a, b) for ai, a in enumerate(feats) for b in feats[ai + 1:])
    return pairs


def correspondence_summary(W0: torch.Tensor, W: torch.Tensor, band: tuple[float, float] = BAND) -> dict[str, float]:
    """How the features' initial leaders relate to their final winners, pooled over instances.

    Introduced in the book: :ref:`leaders-to-winners` (chapter collisions).

    Returns
    -------
    dict
        - ``leader_wins``: fraction of features whose final winner was their initial arg-max;
        - ``top3``: fraction won by one of their initial top 3 neurons;
        - ``sign_kept``: fraction whose final winning weight has the sign it had at the start;
        - ``positive``: fraction whose final winning weight is positive;
        - ``initial_pairs``: mean (per instance) number of feature pairs sharing an initial leader;
        - ``initial_pairs_opposite``: those whose two leading weights have opposite signs;
        - ``final_pairs``: mean number of pairs sharing a polysemantic neuron at the end (band rule);
        - ``final_from_initial``: fraction of the final pairs that had also shared an initial leader;
        - ``initial_opposite_kept``: fraction of opposite-sign initial pairs still sharing at the end;
        - ``opposite_share_rate``: among pairs whose final winning weights have opposite signs, the
          fraction sharing a final winner, times ``m`` (1 if winners were uniform and independent);
        - ``same_share_rate``: likewise for same-sign pairs (0 if interference always separates them).
    """
    if W0.shape != W.shape or W.dim() != 3:
        raise ValueError(f"W0 and W must both be (instances, n, m), got {tuple(W0.shape)} and {tuple(W.shape)}")
    B, n, m = W.shape
    rank = winner_initial_rank(W0, W)
    win = winners(W)  # (B, n)
    lead = winners(W0)
    w_end = W.gather(-1, win.unsqueeze(-1)).squeeze(-1)  # (B, n) final winning weights
    w_start = W0.gather(-1, win.unsqueeze(-1)).squeeze(-1)
    lead_sign = torch.sign(W0.gather(-1, lead.unsqueeze(-1)).squeeze(-1))
    mask = band_mask(W, band)
    ii, jj = torch.triu_indices(n, n, offset=1).numpy()  # every pair i < j, as two index arrays
    init_pairs = init_opp = final_pairs = final_from_init = opp_kept = 0
    opp_total = opp_shared = same_total = same_shared = 0
    for b in range(B):  # vectorised over the n(n-1)/2 pairs: at n = 256 that is 32,640 per instance
        lb, sb, wb = lead[b].numpy(), lead_sign[b].numpy(), win[b].numpy()
        se = np.sign(w_end[b].numpy())
        same_lead = lb[ii] == lb[jj]
        opp_lead = same_lead & (sb[ii] != sb[jj])
        ipairs = set(zip(ii[same_lead].tolist(), jj[same_lead].tolist()))
        fpairs = _pairs_on_neurons(mask[b])
        init_pairs += int(same_lead.sum())
        init_opp += int(opp_lead.sum())
        final_pairs += len(fpairs)
        final_from_init += len(fpairs & ipairs)
        shared_win = wb[ii] == wb[jj]
        opp_win = se[ii] != se[jj]
        opp_kept += int((opp_lead & shared_win).sum())
        opp_total += int(opp_win.sum())
        opp_shared += int((opp_win & shared_win).sum())
        same_total += int((~opp_win).sum())
        same_shared += int((~opp_win & shared_win).sum())
    return {
        "leader_wins": float((rank == 0).double().mean()),
        "top3": float((rank < 3).double().mean()),
        "sign_kept": float((torch.sign(w_end) == torch.sign(w_start)).double().mean()),
        "positive": float((w_end > 0).double().mean()),
        "initial_pairs": init_pairs / B,
        "initial_pairs_opposite": init_opp / B,
        "final_pairs": final_pairs / B,
        "final_from_initial": final_from_init / final_pairs if final_pairs else float("nan"),
        "initial_opposite_kept": opp_kept / init_opp if init_opp else float("nan"),
        "opposite_share_rate": m * opp_shared / opp_total if opp_total else float("nan"),
        "same_share_rate": m * same_shared / same_total if same_total else float("nan"),
    }


# --------------------------------------------------------------------------- two features


def shared_neuron_loss(a, b) -> np.ndarray:
    """Reconstruction loss of two features that both live on one neuron, with weights ``a`` and ``b``.

    It is ``(1 - ReLU(a^2))^2 + (1 - ReLU(b^2))^2 + 2 ReLU(a b)^2``, computed by the package's
    own loss on an ``n = 2``, ``m = 1`` model: zero at ``(1, -1)``, 2 at ``(1, 1)``.

    Introduced in the book: :ref:`opposite-signs` (chapter collisions).

    Examples
    --------
    >>> shared_neuron_loss([1.0, 1.0], [-1.0, 1.0]).tolist()
    [0.0, 2.0]
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    W = torch.from_numpy(np.stack([a.ravel(), b.ravel()], axis=-1)).unsqueeze(-1)  # (points, 2, 1)
    return reconstruction_loss(W).numpy().reshape(a.shape)


def two_feature_start(shared: float = 0.6, partner: float = 0.5) -> torch.Tensor:
    """Initial weights of two 2-feature, 4-neuron models whose features both lead on neuron 0.

    Instance 0: the two leading weights have the same sign (``+shared``, ``+partner``); instance 1:
    opposite signs (``+shared``, ``-partner``). Every other weight is identical in the two.

    Introduced in the book: :ref:`opposite-signs` (chapter collisions).

    Returns
    -------
    torch.Tensor
        ``(2, 2, 4)``.
    """
    W0 = torch.tensor([[shared, 0.25, -0.10, 0.05], [partner, -0.05, 0.30, -0.10]])
    W0 = W0.expand(2, 2, 4).clone()  # (instances, n, m)
    W0[1, 1, 0] = -partner
    return W0


# --------------------------------------------------------------------------- sensitivity


def run_setting(n: int, m: int, *, instances: int = 16, steps: int = 7500, lr: float = 1e-3, l1: float = 1e-3,
                optimizer: str = "adamw", seed: int = 0, W0: torch.Tensor | None = None,
                device: str = "auto") -> tuple[dict, TrainResult]:
    """Train one setting and summarise it for the sensitivity table.

    Introduced in the book: :ref:`sensitivity` (chapter collisions).

    Returns
    -------
    (dict, TrainResult)
        What :func:`summarise_weights` returns for the final weights, the initial ones and the
        final loss.
    """
    cfg = TrainConfig(n=n, m=m, instances=instances, steps=steps, lr=lr, l1=l1, optimizer=optimizer, seed=seed)
    res = train(cfg, W0=W0, device=device, progress=False)
    return summarise_weights(res.W, res.losses[-1], res.W0), res


def summarise_weights(W: torch.Tensor, final_loss: torch.Tensor | None = None,
                      W0: torch.Tensor | None = None) -> dict:
    """The sensitivity-table numbers of final weights ``(instances, n, m)``, as means over instances.

    Keys: ``band`` (band-rule count), ``by_mass`` (threshold-free count), ``same`` (same-sign
    band-rule neurons), ``onehot`` (share of encodings with exactly one weight above ``1e-3`` in
    magnitude), ``fourth`` (mean fourth norm), ``predicted`` (``n^2/(4m)``); with ``final_loss``
    also ``loss``, and with the initial weights ``W0`` also ``leader`` (share of features won by
    their initial arg-max).

    Introduced in the book: :ref:`sensitivity` (chapter collisions).

    Examples
    --------
    >>> W = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    >>> r = summarise_weights(W)
    >>> r["band"], r["onehot"], r["same"]
    (1.0, 1.0, 0.0)
    """
    n, m = W.shape[-2:]
    row = {
        "band": float(polysemantic_neurons(W).double().mean()),
        "by_mass": float(polysemantic_neurons_by_mass(W).double().mean()),
        "same": float(polysemantic_sign_pattern(W)[..., 1].double().mean()),
        "onehot": float(one_hot_share(W).mean()),
        "fourth": float(fourth_norm(W).double().mean()),
        "predicted": predicted_polysemantic(n, m),
    }
    if final_loss is not None:
        row["loss"] = float(final_loss.double().mean())
    if W0 is not None:
        row["leader"] = float((winner_initial_rank(W0, W) == 0).double().mean())
    return row


# --------------------------------------------------------------------------- the birthday problem


def birthday_figure(n: int = 64, m: int = 256, trials: int = 2000, seed: int = 0):
    """Histograms of colliding pairs and of mixed-sign neurons under random winners, with the formulas.

    Returns the figure (two panels) and the simulation dict of :func:`~polybook.theory.simulate_collisions`.

    Introduced in the book: :ref:`birthday` (chapter collisions).
    """
    import matplotlib.pyplot as plt

    sim = simulate_collisions(n, m, trials=trials, seed=seed)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    panels = [
        ("pairs", "colliding pairs of features",
         [(expected_colliding_pairs(n, m), "exact $\\binom{n}{2}/m$", "-", PALETTE["theory"]),
          (n * n / (2 * m), "$n^2/(2m)$", ":", PALETTE["theory_alt"])]),
        ("polysemantic", "neurons with both signs",
         [(expected_polysemantic_exact(n, m), "exact expectation", "-", PALETTE["theory"]),
          (predicted_polysemantic(n, m), "$n^2/(4m)$", ":", PALETTE["theory_alt"])]),
    ]
    for ax, (key, xlabel, lines) in zip(axes, panels):
        v = sim[key]
        bins = np.arange(v.min(), v.max() + 2) - 0.5
        ax.hist(v, bins=bins, color=PALETTE["measured"], alpha=0.6, label=f"simulation, mean {v.mean():.2f}")
        for x, lab, ls, col in lines:
            ax.axvline(x, color=col, ls=ls, lw=1.6, label=f"{lab} = {x:.2f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"trials (of {trials})")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.45)  # room for the legend
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{n} features, each on a random neuron among {m}", fontsize=11)
    return fig, sim


def birthday_explorer(n: int = 64, m: int = 256, trials: int = 2000):
    """Sliders for ``n`` and ``m`` and a button redrawing :func:`birthday_figure` (live kernels only).

    Nothing is drawn until the button is pressed, so executing the notebook stores no widget output.

    Introduced in the book: :ref:`birthday` (chapter collisions).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def show(n, m):
        fig, _ = birthday_figure(n, m, trials=trials)
        plt.show()

    return widgets.interact_manual.options(manual_name="Draw")(
        show,
        n=widgets.IntSlider(value=n, min=2, max=512, step=2, description="features n", continuous_update=False),
        m=widgets.IntSlider(value=m, min=1, max=4096, step=1, description="neurons m", continuous_update=False),
    )
