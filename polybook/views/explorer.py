"""The one helper behind every explorer: controls, a button, and a figure redrawn on demand.

An explorer is a function that draws a figure from a few settings. :func:`explorer` gives it
controls (sliders, menus) and a button; nothing is drawn until the button is pressed, so a
notebook executed top to bottom stores no widget output and trains nothing. Explorers need a
live kernel (Jupyter, Colab).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["explorer", "int_slider", "log_slider", "menu"]


def int_slider(value: int, low: int, high: int, step: int = 1, label: str = ""):
    """An integer slider from ``low`` to ``high``."""
    import ipywidgets as widgets

    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=label, continuous_update=False)


def log_slider(value: float, low: float, high: float, step: float, label: str = "", base: float = 10,
               readout: str | None = None):
    """A slider on a log scale: ``base**low`` to ``base**high`` in exponent steps of ``step``."""
    import ipywidgets as widgets

    extra = {"readout_format": readout} if readout else {}
    return widgets.FloatLogSlider(value=value, base=base, min=low, max=high, step=step, description=label,
                                  continuous_update=False, **extra)


def menu(options: Sequence[Any], value: Any, label: str = "", slider: bool = False):
    """A drop-down menu of ``options`` (or a slider over them, with ``slider``)."""
    import ipywidgets as widgets

    if slider:
        return widgets.SelectionSlider(options=list(options), value=value, description=label, continuous_update=False)
    return widgets.Dropdown(options=list(options), value=value, description=label)


def explorer(draw: Callable[..., Any], button: str = "Train", **controls):
    """Controls for the keyword arguments of ``draw`` and a ``button`` that calls it and shows the figure.

    Introduced in the book: :ref:`birthday` (chapter collisions).

    ``controls`` maps each argument of ``draw`` to a widget (:func:`int_slider`,
    :func:`log_slider`, :func:`menu`); ``draw(**values)`` makes a matplotlib figure.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def show(**values: Any) -> None:
        draw(**values)
        plt.show()

    return widgets.interact_manual.options(manual_name=button)(show, **controls)
