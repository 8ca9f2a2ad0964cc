"""Named experiments at two scales, and a runner that stores results with their provenance.

Each experiment is declared in one file of this package as an
:class:`~polybook.experiments.registry.Experiment`: its config class (a frozen dataclass on
:class:`~polybook.experiments.config.ExperimentConfig`, checked on construction), a ``book``
and a ``paper`` config, its ``run`` returning plain JSON-able numbers, its ``replay`` and
its table ``rows``. ``registry.MODULES`` lists them all. The command line
(``python -m polybook``) and the notebooks both go through :func:`run_experiment`, so a number in
the book can always be re-made with one command.

- ``registry``: the list of experiments; ``config``: the config base;
- ``overrides``: ``--set KEY=VALUE``; ``runner``: checks, pieces, the record;
- ``records``: strict JSON, checksums, provenance, the stored results.
"""

from __future__ import annotations

from ..train import Diverged
from .config import ExperimentConfig, param
from .overrides import apply_overrides
from .records import (
    RESULTS_URL_ENV,
    ResultError,
    checksum,
    config_hash,
    load_result,
    release_file,
    results_url,
    stored_result,
    to_json,
    write_atomic,
)
from .registry import EXPERIMENTS, MODULES, Experiment, _load_all, all_experiments, get_experiment, stored_folders
from .runner import (
    SCALES,
    SMOKE_ENV,
    Pieces,
    estimate_seconds,
    estimate_time,
    measured_rate,
    run_experiment,
    smoke_steps,
)

__all__ = [
    "EXPERIMENTS",
    "get_experiment",
    "all_experiments",
    "ResultError",
    "config_hash",
    "estimate_time",
    "run_experiment",
    "stored_result",
    "Experiment",
]


def __getattr__(name: str):
    if name == "STORED_RESULTS":
        # The stored results released with the book (the folders of ``book/results`` the experiments
        # declare): what a runtime without that folder (Colab) can fetch with ``stored_result``.
        return stored_folders()
    # The collisions experiment's names, kept importable from here for code written against
    # earlier versions (``from polybook.experiments import CollisionsConfig``).
    if name in ("CollisionsConfig", "replay_collisions", "summarise_width", "assemble_collisions",
                "summarise_collisions", "run_collisions", "COLLISION_FIELDS"):
        from . import collisions

        return getattr(collisions, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
