"""Figures of the chapter on optimisers (the science is in :mod:`polybook.optimisers`)."""

from __future__ import annotations

from ..optimisers import KINDS, pair_ratios

__all__ = ["NAMES", "plot_by_optimiser", "plot_pairs_over_training"]

#: One colour per optimiser, the same in every figure of the chapter.
COLORS = {"gd": "#000000", "momentum": "#999999", "adamw": "#D55E00", "rmsprop": "#0072B2"}
#: The name the chapter gives each optimiser in its tables and legends.
#:
#: Introduced in the book: :doc:`/book/optimisers` (chapter optimisers).
NAMES = {"gd": "gradient descent", "momentum": "momentum", "adamw": "AdamW", "rmsprop": "RMSprop"}


def plot_by_optimiser(ax, rows, key: str, se_key: str, ylabel: str, reference=None) -> None:
    """Grouped points: ``key`` ± ``se_key`` per ``(n, m)`` point (x) and optimiser (colour).

    ``reference`` is ``None``, a number drawn as a line, or a function of a row drawn as a short
    dash at each point (e.g. the chance level ``1/m``).

    Introduced in the book: :doc:`/book/optimisers` (chapter optimisers).
    """
    points = sorted({(r["n"], r["m"]) for r in rows})
    kinds = [k for k in KINDS if any(r["optimizer"] == k for r in rows)]
    width = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        xs, ys, es = [], [], []
        for i, pt in enumerate(points):
            r = next(r for r in rows if (r["n"], r["m"]) == pt and r["optimizer"] == kind)
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(r[key])
            es.append(r[se_key])
        ax.errorbar(xs, ys, yerr=es, fmt="o", ms=5, capsize=3, color=COLORS[kind], label=NAMES[kind])
    if callable(reference):
        for i, pt in enumerate(points):
            r = next(r for r in rows if (r["n"], r["m"]) == pt)
            ax.hlines(reference(r), i - 0.45, i + 0.45, color="k", linestyles=":", lw=1.2)
    elif reference is not None:
        ax.axhline(reference, color="k", ls=":", lw=1.2)
    ax.set_xticks(range(len(points)), [f"n={n}\nm={m}" for n, m in points])
    ax.set_ylabel(ylabel)


def plot_pairs_over_training(ax, record: dict) -> None:
    """Opposite-sign (solid) and same-sign (dashed) winner pairs over their independent expectation,
    pooled over every point of the record (the sum of the pairs over the sum of the expectations),
    against the training step, for every optimiser.

    Introduced in the book: :doc:`/book/optimisers` (chapter optimisers).
    """
    points = record["results"]["points"]
    for kind in KINDS:
        if any(kind not in p["runs"] for p in points):
            continue
        follows = [pair_ratios(record, p["n"], p["m"], kind)["follow"] for p in points]
        refs = [p["pairs_independent"] for p in points]
        steps = [max(s, 1) for s in follows[0]["steps"]]
        for key, style, width in (("opposite", "-", 1.8), ("same", "--", 1.2)):
            pooled = [sum(f[key][i] * r for f, r in zip(follows, refs)) / sum(refs) for i in range(len(steps))]
            ax.plot(steps, pooled, color=COLORS[kind], lw=width, ls=style,
                    label=f"{NAMES[kind]}: opposite signs" if key == "opposite" else None)
    ax.axhline(1.0, color="k", ls=":", lw=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("training step (step 0 drawn at 1)")
    ax.set_ylabel("winner pairs / independent expectation")
    ax.set_title(f"pooled over {len(points)} points (dashed: same signs)")
