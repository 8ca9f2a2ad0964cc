"""Figures and the explorer of the chapter on co-occurrence (the science is in :mod:`polybook.cooccurrence`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..experiments.cooccurrence import input_weights, train_inputs
from ..metrics import polysemantic_neurons
from ..models import init_weights
from ..plots import PALETTE
from ..theory import expected_polysemantic_exact
from .explorer import explorer as _explorer
from .explorer import int_slider, log_slider

__all__ = ["plot_levels", "explorer_figure", "explorer"]


def plot_levels(ax, rows: Sequence[dict], q_l1: float | None = None, exact: float | None = None,
                label: str = "trained", fall: dict | None = None) -> None:
    """Mean polysemantic count (with standard error) against the co-occurrence level.

    Level 0 sits at the left edge of a symmetric-log axis (linear below the smallest positive
    level, logarithmic above). ``q_l1`` draws :func:`~polybook.cooccurrence.balance_level`,
    ``exact`` the level-0 expectation of the birthday argument, ``fall`` (what
    :func:`~polybook.cooccurrence.falling_level` returns) the level where the mean count falls to
    its fraction of the level-0 mean, with its interval shaded.

    Introduced in the book: :ref:`uniform-cooccurrence` (chapter cooccurrence).
    """
    q = np.array([r["level"] for r in rows])
    pos = q[q > 0]
    ax.errorbar(q, [r["mean"] for r in rows], yerr=[r["sem"] for r in rows], fmt="o-", color=PALETTE["measured"],
                ms=5, capsize=3, label=f"{label}: mean $\\pm$ s.e.")
    if exact is not None:
        ax.axhline(exact, color=PALETTE["theory_alt"], ls="-.", lw=1.4, label="birthday expectation at $q = 0$")
    if q_l1 is not None:
        ax.axvline(q_l1, color=PALETTE["theory"], ls=":", lw=1.4, label="$q_\\lambda$: pair weight $= \\lambda$")
    if fall is not None and np.isfinite(fall["level"]):
        hi = fall["hi"] if np.isfinite(fall["hi"]) else q.max()
        ax.axvspan(fall["lo"], hi, color=PALETTE["measured"], alpha=0.15, lw=0,
                   label=f"mean down to {fall['fraction']:g} of $q = 0$: 95% interval")
        ax.axvline(fall["level"], color=PALETTE["measured"], ls="--", lw=1)
    ax.set_xscale("symlog", linthresh=pos.min() if pos.size else 1e-3, linscale=0.5)
    ax.set_xlim(-pos.min() * 0.2 if pos.size else -1e-4, q.max() * 1.5)
    ax.set_xlabel("co-occurrence level $q$: share of inputs that are pairs (log scale above 0)")
    ax.set_ylabel("polysemantic neurons per model")


def explorer_figure(level: float = 0.004, n: int = 32, m: int = 128, instances: int = 8, steps: int = 6000,
                    l1: float = 1e-3, seed: int = 0, device: str = "cpu"):
    """Train ``instances`` models at level 0 and at ``level`` from the same weights; draw what changed.

    Left: polysemantic neurons per model at both levels (paired lines) beside the level-0
    expectation. Right: at ``level``, the encodings of the model with the most polysemantic
    neurons, on the neurons that some feature wins. Returns the figure and ``(counts at 0, counts at level)``.

    Introduced in the book: :doc:`/book/cooccurrence` (chapter cooccurrence).
    """
    import matplotlib.pyplot as plt

    from ..plots import weight_heatmap

    X, _ = input_weights(n, 0.0)
    weights = torch.stack([input_weights(n, 0.0)[1], input_weights(n, level)[1]])
    W0 = init_weights(instances, n, m, seed=seed)
    run = train_inputs(W0.repeat(2, 1, 1), X, weights.repeat_interleave(instances, 0), steps=steps, l1=l1,
                       seed=seed, device=device)
    counts = polysemantic_neurons(run.W).view(2, instances).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), gridspec_kw={"width_ratios": [1, 1.6]})
    ax = axes[0]
    for b in range(instances):
        ax.plot([0, 1], counts[:, b] + 0.06 * (b - instances / 2) / instances, color=PALETTE["measured"], alpha=0.4,
                marker="o", ms=4)
    ax.errorbar([0, 1], counts.mean(1), yerr=counts.std(1, ddof=1) / math.sqrt(instances), color="k", fmt="s",
                capsize=4, ms=6, label="mean $\\pm$ s.e.")
    ax.axhline(expected_polysemantic_exact(n, m), color=PALETTE["theory_alt"], ls="-.", label="birthday, $q = 0$")
    ax.set_xticks([0, 1], ["$q = 0$", f"$q = {level:g}$"])
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylabel("polysemantic neurons per model")
    ax.legend(fontsize=8)
    show = int(np.argmax(counts[1]))  # the model with the most shared neurons at ``level`` (the first of ties)
    W = run.W[instances + show]
    used = list(dict.fromkeys(W.abs().argmax(-1).tolist()))
    weight_heatmap(axes[1], W[:, used], vmax=1.2,
                   title=f"model {show + 1} at $q = {level:g}$ ({counts[1, show]} shared): winning neurons")
    axes[1].set_xlabel("winning neuron (reordered)")
    fig.suptitle(f"n = {n}, m = {m}, {instances} models, {steps} AdamW steps, L1 {l1:g}", fontsize=10)
    return fig, (counts[0], counts[1])


def explorer(level: float = 0.004, n: int = 32, m: int = 128, instances: int = 8, steps: int = 6000):
    """Sliders for the level (log scale), ``n`` and ``m``, and a button redrawing :func:`explorer_figure`.

    Only in a live kernel (Colab, Jupyter); nothing is drawn until the button is pressed.

    Introduced in the book: :doc:`/book/cooccurrence` (chapter cooccurrence).
    """
    def draw(level: float, n: int, m: int):
        return explorer_figure(level, n, m, instances=instances, steps=steps)

    return _explorer(
        draw,
        button="Train",
        level=log_slider(level, -4, 0, 0.25, "level q"),
        n=int_slider(n, 4, 64, 2, "features n"),
        m=int_slider(m, 4, 512, 4, "neurons m"),
    )
