"""The registry: every experiment, declared in its own file and listed once here.

An :class:`Experiment` declares its name, a one-line summary, its config class, a ``book`` and a
``paper`` config, its ``run`` (config, device, progress[, pieces]) -> results, and optionally its
``replay`` (re-train a cheap slice of a stored record: ``{"stored": ..., "replayed": ...}``)
and ``rows`` (the table a chapter shows). :func:`all_experiments` lists them all.

- ``book`` scale runs on 2 CPU cores inside CI;
- ``paper`` scale is the paper's own setting and wants a GPU.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Experiment", "EXPERIMENTS", "all_experiments", "get_experiment"]


#: The modules of ``polybook.experiments`` that declare an experiment (``EXPERIMENT = Experiment(...)``):
#: the one list that registers them all. A new experiment is a new file here plus its name in this list.
MODULES: tuple[str, ...] = ("collisions", "collisions_n", "sparsification", "winners", "noise", "noise_width",
                            "superposition", "cooccurrence", "interventions", "architectures", "sae",
                            "optimisers")


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its config class, one config per scale, how to run, replay and tabulate it.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).

    Attributes
    ----------
    name, summary : str
        The name the command line takes, and one line saying what it measures.
    config : type
        Its config class (a subclass of ``ExperimentConfig``).
    book, paper : object
        The config at each scale.
    run : callable
        ``run(config, device, progress)`` returning the record's ``results`` (plain JSON values);
        with ``resumable``, also ``pieces=`` (``Pieces``).
    replay : callable, optional
        ``replay(record)`` re-trains a cheap slice of a stored record from its own config and
        returns ``{"stored": ..., "replayed": ...}``, equal for a record made in the reproducible mode.
    rows : callable, optional
        ``rows(record)``: one dict per row of the table the chapter shows.
    stored : tuple of str
        The folders of ``book/results`` holding its records that the book loads (released with
        the book, so a runtime without those files can download them).
    """

    name: str
    summary: str
    config: type
    book: Any
    paper: Any
    run: Callable[..., dict]
    replay: Callable[..., dict] | None = None
    rows: Callable[..., list] | None = None
    resumable: bool = False
    stored: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for scale in ("book", "paper"):
            if not isinstance(getattr(self, scale), self.config):
                raise TypeError(f"experiment {self.name}: its {scale} config is not a {self.config.__name__}")

    @property
    def scales(self) -> dict[str, Any]:
        """``{"book": book, "paper": paper}``."""
        return {"book": self.book, "paper": self.paper}


#: Every named experiment, by name (filled from ``MODULES`` on first use).
#:
#: Introduced in the book: :doc:`/book/reproduce` (chapter reproduce).
EXPERIMENTS: dict[str, Experiment] = {}


def _load(module: str) -> Experiment:
    """Import ``polybook.experiments.<module>`` and register its ``EXPERIMENT`` (capped under the smoke test)."""
    from .runner import smoke_steps

    exp = importlib.import_module(f"{__package__}.{module}").EXPERIMENT
    if module != exp.name.replace("-", "_"):
        raise RuntimeError(f"polybook.experiments.{module} declares {exp.name!r}: a file is named after its experiment")
    cap = smoke_steps()
    if cap is not None:
        exp = dataclasses.replace(exp, book=exp.book.capped(cap), paper=exp.paper.capped(cap))
    EXPERIMENTS[exp.name] = exp
    return exp


def _load_all() -> None:
    for module in MODULES:
        if module.replace("_", "-") not in EXPERIMENTS and module not in EXPERIMENTS:
            _load(module)


def stored_folders() -> tuple[str, ...]:
    """Every folder of ``book/results`` that an experiment declares as stored, sorted."""
    _load_all()
    return tuple(sorted(folder for exp in EXPERIMENTS.values() for folder in exp.stored))


def all_experiments() -> dict[str, Experiment]:
    """Every registered experiment by name, in name order.

    Introduced in the book: :doc:`/book/reproduce` (chapter reproduce).

    >>> "collisions" in all_experiments()
    True
    """
    _load_all()
    return {name: EXPERIMENTS[name] for name in sorted(EXPERIMENTS)}


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; ``ValueError`` listing the known ones otherwise.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    if not isinstance(name, str) or name.replace("-", "_") not in MODULES:
        known = sorted(m.replace("_", "-") if m == "collisions_n" else m for m in MODULES)
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(known)}")
    exp = _load(name.replace("-", "_"))
    if exp.name != name:
        raise ValueError(f"unknown experiment {name!r}; did you mean {exp.name!r}?")
    return exp


def declared(name: str) -> Experiment:
    """Experiment ``name`` as its file declares it: its configs never capped by the smoke test."""
    get_experiment(name)  # checks the name
    return importlib.import_module(f"{__package__}.{name.replace('-', '_')}").EXPERIMENT
