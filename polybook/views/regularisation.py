"""The explorer of the chapter on regularisation (the science is in :mod:`polybook.regularisation`).

The chapter draws its figures in its own cells; this module holds what a reader can vary: a small
model trained under L1, its final encodings and the alive weights per feature over training
(``alive_weights_figure``, :func:`alive_weights_explorer`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..plots import PALETTE, weight_heatmap
from ..train import TrainConfig, TrainResult, train
from .explorer import explorer, int_slider, log_slider, menu

__all__ = ["alive_weights_explorer"]


def alive_weights_figure(m: int = 24, lam: float = 0.05, optimizer: str = "sgd", lr: float = 0.1,
                         steps: int = 1500, n: int = 8, seed: int = 3) -> tuple:
    """Train ``n`` features on ``m`` neurons with L1 strength ``lam``; draw ``W`` and the alive weights.

    Left: the trained encodings of the first instance. Right: per feature, the weights above the
    zig-zag of the dead ones (``2 lr lam`` under gradient descent, ``3 lr`` under AdamW) at 30
    log-spaced steps. Returns ``(figure, result)``.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).
    """
    import matplotlib.pyplot as plt

    cfg = TrainConfig(n=n, m=m, steps=steps, lr=lr, optimizer=optimizer, l1=lam, seed=seed)
    snaps = np.unique(np.geomspace(1, steps, 30).round().astype(int))
    alive_above = 2 * lr * lam if optimizer == "sgd" else 3 * lr  # above the zig-zag of dead weights
    res: TrainResult = train(cfg, snapshot_steps=snaps.tolist(), progress=False,
                             snapshot_fn=lambda W: (W.abs() > alive_above).sum(-1))
    alive = torch.stack([res.snapshots[int(s)][0] for s in snaps]).numpy()  # (snapshots, n)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 3.0), gridspec_kw={"width_ratios": [1.4, 1]})
    weight_heatmap(a1, res.W[0], title=f"$W$ after {steps} steps", vmax=1.0)
    a2.plot(snaps, alive, color=PALETTE["measured"], alpha=0.6)
    a2.set(xscale="log", yscale="log", xlabel="training step (log scale)",
           ylabel="alive weights per feature (log)", ylim=(0.8, m * 1.2))
    return fig, res


def alive_weights_explorer(m: int = 24, lam: float = 0.05, optimizer: str = "sgd", lr: float = 0.1,
                           steps: int = 1500):
    """Controls for ``m``, ``lam``, the optimiser and the learning rate, and a button redrawing
    ``alive_weights_figure`` with ``steps`` steps (live kernels only).

    Nothing is trained until the button is pressed, so executing the notebook stores no widget output.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).
    """
    def draw(m: int, lam: float, optimizer: str, lr: float):
        fig, _ = alive_weights_figure(m, lam, optimizer, lr, steps)
        return fig

    return explorer(draw, m=int_slider(m, 8, 128, 8, "m"), lam=log_slider(lam, -4, -0.5, 0.1, "λ"),
                    optimizer=menu(["sgd", "adamw"], optimizer, "optimiser"),
                    lr=log_slider(lr, -4, -0.5, 0.1, "learning rate"))
