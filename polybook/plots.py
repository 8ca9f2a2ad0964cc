"""One figure style for the whole book.

Call :func:`use_style` once at the top of a chapter. Colours come from :data:`PALETTE` so the
same thing has the same hue in every chapter (Bernoulli noise is always orange, theory lines are
always black, and so on); weight matrices use a diverging map centred on zero.
"""

from __future__ import annotations

import struct

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["PALETTE", "WEIGHT_CMAP", "use_style", "weight_heatmap"]

#: Fixed colours for recurring roles (colour-blind-safe Okabe-Ito hues).
#:
#: Introduced in the book: :ref:`superposition-geometry` (chapter superposition).
PALETTE = {
    "measured": "#0072B2",  # blue: what the model did
    "theory": "#000000",  # black: a formula
    "theory_alt": "#999999",  # grey: a second formula
    "paper": "#D55E00",  # vermillion: numbers reported by the paper
    "bernoulli": "#E69F00",  # orange
    "uniform": "#CC79A7",  # pink
    "gaussian": "#56B4E9",  # sky blue
    "laplace": "#009E73",  # green
    "adamw": "#0072B2",
    "sgd": "#D55E00",
    "accent": "#F0E442",
}

#: Colormap for weights and overlaps (red positive, blue negative, white zero).
#:
#: Introduced in the book: :ref:`leaders-to-winners` (chapter collisions).
WEIGHT_CMAP = "RdBu_r"

#: Tick label size of the book's figures, in points (matplotlib's ``xtick.labelsize``).
#: The HTML book keeps every figure wide enough for these labels to show at 8 px or more
#: (``_ext/polybook_sphinx.py``, ``tests/test_browser.py``).
TICK_LABEL_PT = 9

#: Resolution of the book's figures, in dots per inch (shown and saved alike).
FIGURE_DPI = 110


def use_style() -> None:
    """Set the book's matplotlib defaults (sizes for a laptop screen, light grid, no top/right spines).

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": FIGURE_DPI,
            # Opaque white, so figures stay readable in the book's dark theme.
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "savefig.dpi": FIGURE_DPI,
            "figure.constrained_layout.use": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "grid.linewidth": 0.6,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "xtick.labelsize": TICK_LABEL_PT,
            "ytick.labelsize": TICK_LABEL_PT,
            "lines.linewidth": 1.8,
            "image.cmap": "viridis",
            "animation.embed_limit": 40.0,
        }
    )


def weight_heatmap(ax: plt.Axes, W, title: str | None = None, vmax: float | None = None, colorbar: bool = True):
    """Draw an ``(n, m)`` weight matrix with a symmetric diverging colour scale.

    Rows are features (``i``), columns neurons (``k``). Returns the image.

    Introduced in the book: :ref:`neurons-not-directions` (chapter superposition).
    """
    W = np.asarray(W)
    vmax = float(np.abs(W).max()) if vmax is None else vmax
    im = ax.imshow(W, cmap=WEIGHT_CMAP, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xlabel("neuron $k$")
    ax.set_ylabel("feature $i$")
    ax.grid(False)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.85, label="$W_{ik}$")
    return im


def png_width_and_dpi(data: bytes) -> tuple[int, float | None]:
    """A PNG's width in pixels and its resolution in dots per inch (None when it has no ``pHYs`` chunk
    in metres, e.g. a PNG that matplotlib did not write). The book's build and its browser test read
    a figure's legibility from these two numbers and :data:`TICK_LABEL_PT`."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width = struct.unpack(">I", data[16:20])[0]
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"pHYs":
            per_metre, _, unit = struct.unpack(">IIB", data[at + 8:at + 17])
            return width, (per_metre * 0.0254 if unit == 1 else None)
        if kind in (b"IDAT", b"IEND"):
            break  # pHYs comes before the image data
        at += 12 + length
    return width, None
