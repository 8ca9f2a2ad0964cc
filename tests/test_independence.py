"""Stored results that the book uses as independent evidence must not share initial weights.

Two runs that start from the same draw of ``init_weights`` (the same ``n``, ``m`` and ``seed``: the
first rows of a draw do not depend on how many instances were drawn) are one sample, however many
chapters report them. This test re-runs every stored result's own config, capped at two steps, with
``init_weights`` traced, and fails when two stored results start from a common draw.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
import torch

import polybook.models as models
from polybook.experiments import STORED_RESULTS, get_experiment

RESULTS = Path(__file__).resolve().parent.parent / "book" / "results"
INIT_WEIGHTS = models.init_weights

#: Pairs of stored folders allowed to share draws, each with the reason: a paired comparison inside
#: one argument, never counted as two confirmations. Empty: every stored result has its own draws.
PAIRED: dict[frozenset, str] = {}


def _config(folder: str):
    record = json.loads((RESULTS / folder / "result.json").read_text())
    exp = get_experiment(record["experiment"])
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()}
    return exp, exp.config(**fields).capped(2)


def _draws_of(exp, cfg, monkeypatch) -> set[tuple[int, int, int]]:
    """The ``(n, m, seed)`` of every ``init_weights`` call that ``exp.run(cfg)`` makes."""
    seen: set[tuple[int, int, int]] = set()

    def traced(instances, n, m, seed=0, *args, **kwargs):
        seen.add((int(n), int(m), int(seed)))
        return INIT_WEIGHTS(instances, n, m, seed, *args, **kwargs)

    # Every polybook module that imported the function by name gets the traced one.
    for name, module in list(sys.modules.items()):
        if name.startswith("polybook") and getattr(module, "init_weights", None) is INIT_WEIGHTS:
            monkeypatch.setattr(module, "init_weights", traced)
    exp.run(cfg, torch.device("cpu"), False)
    return seen


@pytest.fixture(scope="module")
def draws():
    out = {}
    for folder in STORED_RESULTS:
        exp, cfg = _config(folder)
        with pytest.MonkeyPatch.context() as mp:
            out[folder] = _draws_of(exp, cfg, mp)
    return out


def test_the_tracer_sees_the_draws_of_a_run(monkeypatch):
    # Fails when the tracer misses draws (a module holding init_weights under another name, or a loop
    # drawing weights another way): the collisions experiment draws one set of weights per width.
    exp = get_experiment("collisions")
    cfg = exp.book.capped(2)
    seen = _draws_of(exp, cfg, monkeypatch)
    assert {(cfg.n, m, cfg.seed + j) for j, m in enumerate(cfg.m)} <= seen, seen


@pytest.mark.slow
def test_stored_results_used_as_independent_evidence_share_no_initial_weights(draws):
    # Fails when two stored results train from a common draw (same n, m and seed) without being
    # declared a paired comparison in PAIRED: the book would count one sample twice.
    shared = []
    for a, b in itertools.combinations(sorted(draws), 2):
        common = draws[a] & draws[b]
        if common and frozenset((a, b)) not in PAIRED:
            shared.append(f"{a} and {b} share (n, m, seed) {sorted(common)[:4]}")
    assert not shared, "; ".join(shared)
