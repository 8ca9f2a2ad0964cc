"""The explorer of the chapter on hidden-layer noise (the science is in :mod:`polybook.noise`)."""

from __future__ import annotations

import numpy as np

from ..experiments.noise import log_steps, mean_fourth_norm, train_together
from ..noise import FAMILIES
from ..plots import PALETTE, weight_heatmap
from ..train import TrainConfig
from .explorer import explorer as _explorer
from .explorer import log_slider, menu

__all__ = ["explorer_figure", "explorer"]

#: The step counts the explorer offers.
EXPLORER_STEPS = (2_000, 5_000, 20_000, 50_000, 100_000)


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


def explorer(family: str = "bernoulli", sigma: float = 0.1, steps: int = 20_000):
    """A menu of noise families, a log slider for ``sigma`` and a slider of step counts; a button redraws
    :func:`explorer_figure`.

    Only in a live kernel (Colab, Jupyter); nothing is trained until the button is pressed.

    Introduced in the book: :doc:`/book/noise` (chapter noise).
    """
    def draw(family: str, sigma: float, steps: int) -> None:
        explorer_figure(family, sigma, steps)

    return _explorer(
        draw,
        family=menu(FAMILIES, family),
        sigma=log_slider(sigma, -1.7, -0.5, 0.05, readout=".3f"),
        steps=menu(EXPLORER_STEPS, steps, slider=True),
    )
