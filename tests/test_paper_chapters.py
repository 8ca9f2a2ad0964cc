"""The chapters' paper-scale switch cannot rot: every chapter's ``SCALE = "paper"`` branch runs here
top to bottom, on the CPU, under ``POLYBOOK_SMOKE_STEPS=2``: every
registered config has its step counts capped at two, and every training loop makes at most two
updates and fast-forwards the rest (same shapes, same hooks). The numbers mean nothing; the point
is that a reader who flips the switch on a GPU meets no crash that a CPU could have shown.

A chapter's analysis must get through two-step models: a fit with too little data says so (NaN
and a note) instead of raising, a verdict with no finished run is "unfinished". Only its checks (the
cells after its last "Checks" heading) test the science of a fully trained model, so there, and
only there, an ``AssertionError`` is allowed; any other error anywhere fails the test. The paper
branch prices its training before it runs (``pb.estimate_time``): the test also fails when a
chapter's flipped setup cell does not print that estimate.
"""

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTERS = sorted(p for p in BOOK.glob("*.ipynb") if 'SCALE = \\"book\\"' in p.read_text())
SMOKE = {"POLYBOOK_SMOKE_STEPS": "2"}


def test_every_chapter_has_a_scale_switch():
    # Fails if a chapter (a notebook of the book that trains or loads a model) lost its paper branch.
    chapters = {p.stem for p in BOOK.glob("*.ipynb")} - {"reproduce"}  # the appendix runs nothing itself
    assert chapters and chapters == {p.stem for p in CHAPTERS}, sorted(chapters - {p.stem for p in CHAPTERS})


def _flip_to_paper(nb) -> int:
    flipped = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and 'SCALE = "book"' in cell.source:
            cell.source = cell.source.replace('SCALE = "book"', 'SCALE = "paper"')
            flipped += 1
    return flipped


def _checks_start(nb) -> int:
    """Index of the first cell of the checks section (the last heading that says "Checks")."""
    heads = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
             and any(line.lstrip("#").strip().lower().startswith("checks") for line in c.source.splitlines()
                     if line.startswith("#"))]
    return heads[-1] if heads else len(nb.cells)


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_top_to_bottom_with_the_paper_switch_on(path, monkeypatch):
    for key, value in SMOKE.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    assert _flip_to_paper(nb) == 1, f"{path.name}: expected one `SCALE = \"book\"` line"
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(BOOK)}}).execute()
    checks = _checks_start(nb)
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if i >= checks and out["ename"] == "AssertionError":
                continue  # a science check on a two-step model: expected
            errors.append(f"cell {i}: {out['ename']}: {out['evalue']}\n{cell.source[:300]}")
    print(f"{path.name} at paper scale, 2 steps: {time.perf_counter() - start:.0f} s")
    assert not errors, "\n\n".join(errors)
    # Fails if the paper branch starts training without first printing what it will cost here.
    setup = next(c for c in nb.cells if c.cell_type == "code" and 'SCALE = "paper"' in c.source)
    printed = "".join(o.get("text", "") for o in setup.get("outputs", []) if o.get("output_type") == "stream")
    assert "Training at paper scale on cpu, at a measured" in printed, f"no time estimate printed: {printed!r}"
    assert "caps every run at 2 steps" in printed, printed
