"""Showing computed values in a chapter, with or without the book's build tools.

The chapters put numbers they compute into their prose with myst-nb's ``glue``. myst-nb is part of
the book's build (and of the test environment), but not of a plain Jupyter or Colab runtime, so the
chapters import :func:`glue` from here instead: with myst-nb installed it *is* myst-nb's glue (the
notebook's outputs, and so the built book and the nbval comparison, are exactly as with
``from myst_nb import glue``); without it, the value is shown as an ordinary output when
``display=True`` and is otherwise only kept in ``GLUED``, where a reader can look it up by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["glue", "markdown_table", "rounded"]

#: Every value glued in this session, by name (also when myst-nb does the gluing).
GLUED: dict[str, Any] = {}


def _myst_nb_glue():
    """myst-nb's ``glue``, or ``None`` where myst-nb cannot be imported."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return None
    return myst_glue


def glue(name: str, variable: Any, display: bool = True) -> None:
    """Glue ``variable`` under ``name``, for the glue roles and directives in the chapters' text.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).

    Parameters
    ----------
    name : str
        The key that the chapter's text refers to.
    variable : object
        The value; what is stored is how it displays.
    display : bool
        Also show the value as the cell's output.
    """
    GLUED[name] = variable
    myst_glue = _myst_nb_glue()
    if myst_glue is not None:
        myst_glue(name, variable, display=display)
    elif display:
        from IPython.display import display as show

        show(variable)


def rounded(x: Any, digits: int | None = None) -> Any:
    """``round(x, digits)``, or the text ``"n/a"`` where ``x`` is not a finite number.

    A share of nothing (the mean over no winners of a model trained for a few steps) is NaN, which
    ``round`` refuses; a chapter glues ``rounded(...)`` so that its prose says "n/a" there.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).

    >>> rounded(56.4), rounded(0.1234, 2), rounded(float("nan"))
    (56, 0.12, 'n/a')
    """
    import math

    x = float(x)
    return round(x, digits) if math.isfinite(x) else "n/a"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub/MyST pipe table; floats are written with 3 significant digits (whole above 1000).

    Introduced in the book: :ref:`birthday` (chapter collisions).

    Examples
    --------
    >>> print(markdown_table(["a", "b"], [[1, 0.12345]]))
    | a | b |
    |---|---|
    | 1 | 0.123 |
    """
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
