"""The paper-scale switch of every experiment cannot rot: each ``--scale paper`` config runs here,
on the CPU, under ``POLYBOOK_SMOKE_STEPS=2`` (every registered config capped at two steps, every
training loop at two updates). The numbers mean nothing; the point is that a reader who runs the
paper's sizes on a GPU meets no crash that a CPU could have shown. The chapters' paper branches
run in ``tests/test_paper_chapters.py``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polybook.experiments import all_experiments

ROOT = Path(__file__).resolve().parent.parent
SMOKE = {"POLYBOOK_SMOKE_STEPS": "2"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(all_experiments()))
def test_every_experiment_runs_at_paper_scale(name, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "polybook", "run", name, "--scale", "paper", "--device", "cpu", "--quiet",
         "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, **SMOKE},
    )
    assert res.returncode == 0, res.stderr
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["scale"] == "paper" and record["provenance"]["smoke_steps"] == 2
