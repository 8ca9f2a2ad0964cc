"""Figures and the explorer of the chapter on prevention (the science is in :mod:`polybook.prevention`)."""

from __future__ import annotations

import math

from ..experiments.interventions import INTERVENTIONS, train_intervention
from ..metrics import polysemantic_neurons
from ..models import reconstruction_loss
from ..plots import PALETTE
from .explorer import explorer as make_explorer
from .explorer import int_slider, menu

__all__ = ["plot_tradeoff", "explorer_figure", "explorer"]


def plot_tradeoff(axes, rows, highlight=()) -> None:
    """Two panels: mean count against mean final loss (log scale), and against training compute.

    Points carry their position in ``rows`` as a label (the chapter's table numbers its rows the same
    way); on the compute panel only points away from the baseline's compute are labelled.

    Introduced in the book: :ref:`interventions` (chapter prevention).
    """
    for ax, key, xlabel in ((axes[0], "loss", "final reconstruction loss (mean $\\pm$ s.e.)"),
                            (axes[1], "flops_ratio", "training flops / baseline")):
        for idx, r in enumerate(rows):
            col = PALETTE["paper"] if r["name"] in highlight else PALETTE["theory"] if r["name"] == "baseline" \
                else PALETTE["measured"]
            ax.errorbar(r[key], r["count"], yerr=r["count_se"], xerr=r["loss_se"] if key == "loss" else None,
                        fmt="o", color=col, ms=5, capsize=2)
            if key == "loss" or r["flops_ratio"] > 1.05 or r["name"] == "baseline":
                ax.annotate(str(idx), (r[key], r["count"]), textcoords="offset points",
                            xytext=(5, 2) if idx % 2 else (-11, 2), fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("polysemantic neurons per model")
        ax.set_xscale("log")


def explorer_figure(name: str = "resample", n: int = 32, m: int = 128, instances: int = 8, steps: int = 7500,
                    seed: int = 0):
    """Train the baseline and intervention ``name`` from the same seed; draw their counts and losses.

    Returns the figure and ``(baseline counts, intervention counts)``.

    Introduced in the book: :doc:`/book/prevention` (chapter prevention).
    """
    import matplotlib.pyplot as plt

    outs = [train_intervention(k, n, m, instances, steps, seed=seed) for k in ("baseline", name)]
    counts = [polysemantic_neurons(o["W"]).numpy() for o in outs]
    losses = [reconstruction_loss(o["W"]).numpy() for o in outs]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for ax, vals, ylab in ((axes[0], counts, "polysemantic neurons per model"), (axes[1], losses, "final loss")):
        for b in range(instances):
            ax.plot([0, 1], [vals[0][b], vals[1][b]], color=PALETTE["measured"], alpha=0.4, marker="o", ms=4)
        ax.errorbar([0, 1], [v.mean() for v in vals], yerr=[v.std(ddof=1) / math.sqrt(instances) for v in vals],
                    fmt="s", color="k", capsize=4, label="mean $\\pm$ s.e.")
        ax.set_xticks([0, 1], ["baseline", name])
        ax.set_xlim(-0.4, 1.4)
        ax.set_ylabel(ylab)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"n = {n}, m = {m}, {instances} models, {steps} steps: {INTERVENTIONS[name].label}", fontsize=10)
    return fig, (counts[0], counts[1])


def explorer(name: str = "resample", n: int = 32, m: int = 128, instances: int = 8, steps: int = 7500):
    """A menu of interventions and sliders for ``n`` and ``m``; "Train" redraws :func:`explorer_figure`.

    Only in a live kernel (Colab, Jupyter). A width below ``n`` is raised to ``n``.

    Introduced in the book: :doc:`/book/prevention` (chapter prevention).
    """

    def draw(name: str, n: int, m: int):
        return explorer_figure(name, n, max(m, n), instances=instances, steps=steps)[0]

    return make_explorer(
        draw,
        button="Train",
        name=menu([k for k in INTERVENTIONS if k != "baseline"], name, "intervention"),
        n=int_slider(n, 4, 64, 4, "features n"),
        m=int_slider(m, 8, 512, 8, "neurons m"),
    )
