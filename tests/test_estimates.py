"""Memory estimates count the pieces that grow with a field: snapshots, recorded points, seeds."""

import dataclasses
import subprocess
import sys

import pytest
import torch

import polybook.experiments.runner as runner
from polybook.experiments import run_experiment
from polybook.experiments.registry import get_experiment

CPU = torch.device("cpu")

#: (experiment, field, a value no machine has the memory for)
HUGE = [
    ("winners", "points", 10**12),
    ("noise", "snapshots", 10**12),
    ("noise_width", "snapshots", 10**12),
    ("interventions", "sup_seeds", 10**8),
]


@pytest.mark.parametrize("name,field,huge", HUGE)
def test_a_huge_field_is_refused_before_anything_trains(name, field, huge, monkeypatch):
    exp = get_experiment(name)

    def never(*args, **kwargs):
        raise AssertionError(f"{name} started to run although it cannot fit")

    monkeypatch.setattr(runner, "get_experiment", lambda _: dataclasses.replace(exp, run=never))
    # Fails if the estimate leaves out what the field makes (the run would start, then exhaust memory).
    with pytest.raises(ValueError, match=rf"{name} at book scale needs about [0-9,.]+ GiB at its peak"):
        run_experiment(name, "book", [f"{field}={huge}"], device="cpu", progress=False, warn=lambda _: None)


@pytest.mark.parametrize("name,field,huge", HUGE)
def test_the_estimate_grows_with_the_field(name, field, huge):
    book = get_experiment(name).book
    sizes = [getattr(book, field), 10 * getattr(book, field), 1000 * getattr(book, field)]
    est = [dataclasses.replace(book, **{field: v}).peak_bytes(CPU) for v in sizes]
    # Fails if the field does not enter the estimate (the memory check cannot see it grow).
    assert est[0] < est[1] < est[2]


@pytest.mark.parametrize("name", ["winners", "noise", "noise_width", "interventions"])
def test_book_and_paper_scale_estimates_stay_modest(name):
    exp = get_experiment(name)
    # Fails if the new terms overcount so much that an ordinary run would be refused on a small machine.
    assert exp.book.peak_bytes(CPU) < 1 * 2**30
    assert exp.paper.peak_bytes(CPU) < 4 * 2**30


def test_the_command_line_refuses_a_huge_field_with_exit_2():
    cmd = [sys.executable, "-m", "polybook", "run", "winners", "--set", "points=1000000000000", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    # Fails if the run starts (or ends in a traceback) instead of one line and exit status 2.
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("polybook: error: winners at book scale needs about ")
    assert "GiB at its peak" in done.stderr and "Traceback" not in done.stderr


def test_estimate_time_prices_the_uncapped_configs_and_names_each(monkeypatch):
    import re

    from polybook.experiments import estimate_time

    monkeypatch.setattr(runner, "measured_rate", lambda device: 1e9)  # 1 GFLOP/s: seconds = GFLOP
    line = estimate_time(["collisions", "winners"], "paper", device="cpu")
    paper = [get_experiment(n).paper.flops() / 1e9 for n in ("collisions", "winners")]
    # Fails if an experiment is left out of the line or priced at another config's work.
    assert re.search(r"collisions [0-9.]+ h, winners [0-9.]+ h; about [0-9.]+ h in all", line), line
    assert f"{sum(paper) / 3600:.1f} h in all" in line, (line, paper)
    # Under the smoke cap the configs run two steps, but the price is still the full run's.
    monkeypatch.setenv("POLYBOOK_SMOKE_STEPS", "2")
    capped = estimate_time(["collisions", "winners"], "paper", device="cpu")
    assert f"{sum(paper) / 3600:.1f} h in all" in capped and "caps every run at 2 steps" in capped, capped


@pytest.mark.parametrize("items", [[], "collisions", ["no-such-experiment"], [object()]])
def test_estimate_time_refuses_what_it_cannot_price(items):
    from polybook.experiments import estimate_time

    with pytest.raises(ValueError):  # fails if a bad list is priced as nothing instead of refused
        estimate_time(items, "paper", device="cpu")
