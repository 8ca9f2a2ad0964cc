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


class LiveOnly:
    """A widget that a static page replaces with a note saying where it runs.

    Its display holds the widget's own view (which Jupyter and Colab draw) and a ``text/html`` and
    ``text/plain`` note. The HTML book gives the widget view no place (``nb_mime_priority_overrides``
    in ``_config.yml``: without a kernel it would be an empty box), so there the note shows instead.
    """

    def __init__(self, widget: Any, note: str):
        self.widget, self.note = widget, note

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        import html

        own = getattr(self.widget, "_repr_mimebundle_", None)  # ipywidgets 8; 7 (Colab's) displays itself
        bundle = dict(own(include=include, exclude=exclude) or {}) if own is not None else {
            "application/vnd.jupyter.widget-view+json":
                {"version_major": 2, "version_minor": 0, "model_id": self.widget._model_id}}
        bundle["text/plain"] = self.note
        bundle["text/html"] = f'<p class="explorer-note">{html.escape(self.note)}</p>'
        return bundle


def explorer_note(labels: Sequence[str], button: str | None) -> str:
    """What a static page says in place of an explorer's controls.

    >>> explorer_note(["n", "m"], "Draw").split(" (")[0]
    'Explorer: the controls n, m and a "Draw" button redraw the figure in a live notebook'
    """
    what = ", ".join(labels) + (f' and a "{button}" button' if button else "")
    return (f"Explorer: the controls {what} redraw the figure in a live notebook (open this chapter in Colab or "
            "Jupyter). This page is static: the figure above is the explorer's default.")


def explorer(draw: Callable[..., Any], button: str | None = "Train", **controls):
    """Show controls for the keyword arguments of ``draw``; each ``button`` press (or, with
    ``button=None``, each change) calls it and shows the figure. Returns the widget.

    Introduced in the book: :ref:`birthday` (chapter collisions).

    ``controls`` maps each argument of ``draw`` to a widget (:func:`int_slider`,
    :func:`log_slider`, :func:`menu`); ``draw(**values)`` makes a matplotlib figure. With a
    button, nothing is drawn until it is pressed. On a static page (the HTML book) the controls
    cannot run, and a note (:func:`explorer_note`) stands in their place.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    def show(**values: Any) -> None:
        draw(**values)
        plt.show()

    options = {"manual": True, "manual_name": button} if button else {}
    widget = widgets.interactive(show, options, **controls)
    labels = [c.description for c in controls.values() if getattr(c, "description", "")]
    display(LiveOnly(widget, explorer_note(labels, button)))
    if not hasattr(widget, "_repr_mimebundle_"):
        widget._handle_displayed()  # ipywidgets 7 draws a live explorer's first figure on this event
    return widget
