"""Figures and the explorer of the chapter on collisions (the science is in :mod:`polybook.collisions`).

- the law against ``m`` and against ``n`` (:func:`plot_law`, :func:`plot_law_over_n`);
- the birthday-problem figure and its explorer (:func:`birthday_figure`, :func:`birthday_explorer`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..collisions import SlopeFit
from ..experiments.collisions import count_stats
from ..plots import PALETTE
from ..theory import (
    expected_colliding_pairs,
    expected_polysemantic_exact,
    predicted_polysemantic,
    simulate_collisions,
)
from .explorer import explorer, int_slider

__all__ = ["plot_law", "plot_law_over_n", "birthday_figure", "birthday_explorer"]


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


def plot_law_over_n(ax, rows: Sequence[dict], title: str = "", color: str | None = None) -> None:
    """Mean count (with standard error) against ``n`` for one family of points of the law over ``n``.

    ``rows`` are rows of :func:`~polybook.experiments.collisions_n.law_over_n_rows`. The family
    either shares ``m`` (then ``m`` stays fixed along the curves) or shares ``n^2/m`` (then
    ``m = n^2 / ratio`` along them). Curves: ``n^2/(4m)`` (black), ``n^2/(2m)`` (dotted) and the
    idealised exact expectation (grey).

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
    def draw(n: int, m: int):
        fig, _ = birthday_figure(n, m, trials=trials)
        return fig

    return explorer(draw, button="Draw", n=int_slider(n, 2, 512, 2, "features n"),
                    m=int_slider(m, 1, 4096, 1, "neurons m"))
