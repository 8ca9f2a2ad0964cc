"""Figures and the explorer of the chapter on superposition (the science is in :mod:`polybook.superposition`)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from .. import _validate as check
from ..experiments.superposition import (
    REPRESENTED,
    SuperpositionConfig,
    feature_norms,
    represented,
    superposition,
    train_superposition,
)
from ..plots import WEIGHT_CMAP

__all__ = ["plot_phase_change", "plot_directions", "explore", "explorer"]


def plot_phase_change(W: torch.Tensor, sparsity, fig=None, superposition_max: float = 1.0):
    """The classic figure: per sparsity level, ``W W^T`` above and the bars ``||W_i||`` below.

    ``W`` is ``(levels, n, m)``; bars of represented features are coloured by
    :func:`~polybook.experiments.superposition.superposition` (dark: the feature has a dimension of its own; bright: it shares its
    direction), the others are grey. Returns the figure.

    Introduced in the book: :ref:`superposition-phase-change` (chapter superposition).
    """
    import matplotlib.pyplot as plt

    W = torch.as_tensor(W)
    levels, n, _ = W.shape
    fig = fig or plt.figure(figsize=(1.55 * levels + 1.2, 5.6))
    axes = fig.subplots(2, levels, sharey="row", gridspec_kw={"height_ratios": [1, 1.15]}, squeeze=False)
    cmap = plt.get_cmap("plasma")
    for col in range(levels):
        gram = (W[col] @ W[col].T).numpy()
        top, bottom = axes[0, col], axes[1, col]
        im = top.imshow(gram, cmap=WEIGHT_CMAP, vmin=-1.2, vmax=1.2, interpolation="nearest")
        top.set_title(f"$1-S = {1 - sparsity[col]:.3g}$")
        top.set_xticks([]), top.set_yticks([]), top.grid(False)
        norms = feature_norms(W[col]).numpy()
        sup = superposition(W[col]).numpy()
        colours = cmap(np.clip(sup / superposition_max, 0, 1) * 0.9)
        colours[norms <= REPRESENTED] = (0.8, 0.8, 0.8, 1.0)  # not represented: grey
        bottom.barh(np.arange(n), norms, color=colours, height=0.8)
        bottom.axvline(REPRESENTED, color="0.5", lw=0.8, ls=":")
        bottom.set_xlim(0, max(1.3, float(norms.max()) * 1.05))
        bottom.set_xlabel(r"$\Vert W_i \Vert$")
        bottom.grid(axis="y", visible=False)
        bottom.set_yticks(range(0, n, max(1, n // 4)))
    axes[0, 0].set_ylabel(r"$W W^{T}$")
    axes[1, 0].set_ylabel("feature $i$ (most important on top)")
    axes[1, 0].invert_yaxis()
    fig.colorbar(im, ax=axes[0, :], shrink=0.85, label=r"$W_i \cdot W_j$")
    sm = plt.cm.ScalarMappable(cmap=plt.matplotlib.colors.ListedColormap(cmap(np.linspace(0, 0.9, 256))),
                               norm=plt.Normalize(0, superposition_max))
    bar = fig.colorbar(sm, ax=axes[1, :], shrink=0.85,
                       label=r"superposition $\sum_{j \neq i} (\hat W_i \cdot W_j)^2$")
    ticks = np.linspace(0, superposition_max, 5)
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks[:-1]] + [f"$\\geq${ticks[-1]:g}"])
    return fig


def plot_directions(ax, W: torch.Tensor, title: str | None = None) -> None:
    """Draw the rows of one ``(n, 2)`` matrix as arrows from the origin, one colour per feature.

    Introduced in the book: :ref:`superposition-geometry` (chapter superposition).
    """
    import matplotlib.pyplot as plt

    W = torch.as_tensor(W)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, W.shape[0]))
    lim = max(1.25, float(feature_norms(W).max()) * 1.15)
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.8", lw=0.8))
    for i, (x, y) in enumerate(W.tolist()):
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=colours[i], lw=2))
        if x * x + y * y > 0.05:
            ax.text(1.13 * x, 1.13 * y, str(i), ha="center", va="center", fontsize=8, color=colours[i])
    ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)


@functools.lru_cache(maxsize=64)
def _explore_weights(density: float, importance_decay: float, n: int, m: int, steps: int, seed: int) -> torch.Tensor:
    cfg = SuperpositionConfig(
        n=n, m=m, sparsity=(round(1.0 - density, 12),), importance_decay=importance_decay, steps=steps, seed=seed
    )
    return train_superposition(cfg, progress=False).W  # (1, n, m)


def explore(density: float = 0.1, importance_decay: float = 0.7, *, n: int = 20, m: int = 5,
            steps: int = 2000, seed: int = 0):
    """Train one model with feature probability ``density = 1 - S`` and draw its column of the figure.

    Results are cached, so moving a slider back to a setting already seen is instant. Returns
    ``(figure, number of represented features)``.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    if not 0 < density <= 1:
        check.fail("density", density, "a number in (0, 1]")
    W = _explore_weights(float(density), float(importance_decay), n, m, steps, seed)
    import matplotlib.pyplot as plt

    fig = plot_phase_change(W, (1.0 - density,), fig=plt.figure(figsize=(4.8, 5.6)))
    fig.suptitle(f"$r = {importance_decay:g}$: {int(represented(W)[0])} of {n} features represented", fontsize=10)
    return fig, int(represented(W)[0])


def explorer(density: float = 0.1, importance_decay: float = 0.7):
    """Sliders for the feature probability ``1 - S`` and the importance decay ``r``; each move
    retrains and redraws :func:`explore` (a second or two on a CPU).

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    import ipywidgets as widgets

    from .explorer import explorer as _explorer
    from .explorer import menu

    return _explorer(
        lambda density, importance_decay: explore(density, importance_decay), button=None,
        density=menu([1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001], density, "1 - S", slider=True),
        importance_decay=widgets.FloatSlider(value=importance_decay, min=0.5, max=1.0, step=0.05, description="r",
                                             continuous_update=False),
    )

