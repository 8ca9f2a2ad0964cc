"""Figures and the explorer of the chapter "Beyond the toy model" (the science is in :mod:`polybook.beyond`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..beyond import (RECOVERY_COS, encode, make_dictionary, mixed_latents, recovery, sae_responses, sample_data,
                      train_sae)
from ..plots import PALETTE
from .explorer import explorer as _explorer
from .explorer import int_slider, log_slider

__all__ = ["plot_architectures", "plot_sae", "explorer_figure", "explorer"]


def plot_architectures(ax, rows: Sequence[dict], exact: float, law: float) -> None:
    """Band-rule count (mean and s.e.) per variant, the mass rule beside it, and the two predictions.

    Variants whose row says ``finished`` is ``False`` are hatched: unfinished, no evidence.

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    x = np.arange(len(rows))
    hatch = ["//" if r.get("finished") is False else None for r in rows]
    bars = ax.bar(x - 0.2, [r["mean"] for r in rows], 0.4, yerr=[r["sem"] for r in rows], capsize=3,
                  color=PALETTE["measured"], label="band rule (the book's definition): mean $\\pm$ s.e.")
    mass = ax.bar(x + 0.2, [r["by_mass"] for r in rows], 0.4, yerr=[r["by_mass_sem"] for r in rows], capsize=3,
                  color=PALETTE["theory_alt"], label="mass rule (sensitivity check)")
    for h, a, b in zip(hatch, bars, mass):
        if h:
            a.set_hatch(h)
            b.set_hatch(h)
    if any(hatch):
        ax.bar([], [], color="white", edgecolor="0.3", hatch="//", label="hatched: unfinished (not evidence)")
    ax.axhline(exact, color=PALETTE["theory"], ls="-.", lw=1.4, label="idealised birthday expectation")
    ax.axhline(law, color=PALETTE["paper"], ls=":", lw=1.4, label="$n^2/(4m)$")
    ax.set_xticks(x, [r["variant"].replace("_", " ") for r in rows], rotation=20)
    ax.set_ylabel("polysemantic neurons per model")
    ax.legend(fontsize=8, loc="upper right")


def plot_sae(ax, rows: Sequence[dict], label: str, color: str, marker: str = "o") -> None:
    """Mixed latents per SAE (mean and s.e.) against the width in latents per feature, with the birthday reference.

    Zero counts sit on a symmetric-log axis (linear below 1).

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    r = np.array([row["ratio"] for row in rows])
    ax.errorbar(r, [row["mean"] for row in rows], yerr=[row["sem"] for row in rows], fmt=f"{marker}-", color=color,
                ms=5, capsize=3, label=f"{label}: mean $\\pm$ s.e.")
    ax.plot(r, [row["reference"] for row in rows], ls="--", color=color, alpha=0.6, lw=1.2,
            label=f"{label}: birthday pairs $\\binom{{n}}{{2}}/w$ (if collisions survived)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("SAE width: latents per ground-truth feature (log scale)")
    ax.set_ylabel("mixed latents per SAE (symlog)")


def explorer_figure(ratio: float = 2.0, features: int = 32, d: int = 16, seeds: int = 2, steps: int = 1500,
                    sae_l1: float = 0.1, seed: int = 0):
    """Train ``seeds`` SAEs of ``ratio * features`` latents and draw what each latent responds to.

    One panel per SAE: the latents' activations on each feature's dictionary vector (rows:
    features, columns: latents that respond to something, ordered by their best feature), with the
    mixed latents marked; each title gives the SAE's mixed latents and its share of recovered
    features (a decoder column with cosine at least 0.9). Returns the figure and the mixed-latent
    count per SAE.

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    import matplotlib.pyplot as plt

    width = max(1, int(round(ratio * features)))
    D = make_dictionary(features, d, seed)
    _, x = sample_data(D, 4096, 0.05, seed)
    p = train_sae(x, width, [seed + 100 + s for s in range(seeds)], steps=steps, batch=256, sae_l1=sae_l1, seed=seed)
    resp = sae_responses(p, D)
    mixed = mixed_latents(resp).tolist()
    recovered = (recovery(p, D) >= RECOVERY_COS).double().mean(-1).tolist()
    with torch.no_grad():
        A = encode(p, D)  # (seeds, features, width)
    fig, axes = plt.subplots(1, seeds, figsize=(4.6 * seeds, 3.6), squeeze=False)
    for s, ax in enumerate(axes[0]):
        alive = torch.nonzero(resp[s].any(0)).flatten()
        order = alive[torch.argsort(A[s][:, alive].argmax(0), stable=True)]
        a = A[s][:, order].numpy()
        a = a / np.maximum(a.max(0, keepdims=True), 1e-9)
        ax.imshow(a, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        for c, k in enumerate(order.tolist()):
            if int(resp[s, :, k].sum()) >= 2:
                ax.axvline(c, color=PALETTE["paper"], lw=0.8, alpha=0.7)
        ax.grid(False)
        ax.set_xlabel(f"responding latent ({len(order)} of {width}), by best feature")
        ax.set_ylabel("ground-truth feature")
        ax.set_title(f"SAE seed {s + 1}: {mixed[s]} mixed latents (lines), "
                     f"{100 * recovered[s]:.0f}% features recovered", fontsize=10)
    fig.suptitle(f"{features} features in d = {d}, width {width}: activation on each feature / latent's maximum",
                 fontsize=10)
    return fig, mixed


def explorer(ratio: float = 2.0, features: int = 32, d: int = 16):
    """Sliders for the width ratio, the number of features and the dimension; a button redraws :func:`explorer_figure`.

    Only in a live kernel (Colab, Jupyter); nothing is drawn until the button is pressed.

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    def draw(ratio: float, features: int, d: int) -> None:
        explorer_figure(ratio, features, d)

    return _explorer(
        draw,
        button="Train",
        ratio=log_slider(ratio, -2, 3, 0.5, "latents/feature", base=2),
        features=int_slider(features, 4, 64, 4, "features"),
        d=int_slider(d, 4, 128, 4, "dimension d"),
    )
