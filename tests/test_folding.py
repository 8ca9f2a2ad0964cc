"""The HTML book shows the code that teaches and folds the plumbing (``scripts/fold_plumbing.py``).

Every chapter, and every notebook derived from one (the Colab editions ``colab/book/*.ipynb`` and
the exercises-only notebooks ``exercises/*.ipynb``, which copy the chapters' cells with their
tags), must have no code cell that the rules call plumbing shown, and no nbval comment marker
(``# NBVAL_IGNORE_OUTPUT``: the tag ``nbval-ignore-output`` says the same without showing in the
HTML). The rules themselves are tested on small hand-made cells, the script on copies, and nbval
on a one-cell notebook, to show that it really honours the tag.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
fp = importlib.import_module("fold_plumbing")

CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
DERIVED = sorted((ROOT / "colab" / "book").glob("*.ipynb")) + sorted((ROOT / "exercises").glob("*.ipynb"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code(text: str, tags: list[str] | None = None) -> dict:
    """A code cell as nbformat stores it."""
    cell = {"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [],
            "source": text.splitlines(keepends=True)}
    if tags is not None:
        cell["metadata"]["tags"] = list(tags)
    return cell


def notebook(*cells: dict) -> dict:
    return {"cells": list(cells), "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                              "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


# --------------------------------------------------------------------------- the chapters as committed


@pytest.mark.parametrize("path", CHAPTERS + DERIVED, ids=_rel)
def test_no_plumbing_is_shown_and_no_nbval_comment_is_left(path):
    found = fp.problems(_nb(path))
    assert not found, (f"{_rel(path)}: run python scripts/fold_plumbing.py (then scripts/make_colab_editions.py "
                       f"for the derived notebooks):\n  " + "\n  ".join(found))


def test_every_chapter_and_derived_notebook_is_checked():
    assert CHAPTERS, "no chapter found under book/"
    assert DERIVED, "no Colab edition or exercises-only notebook found"
    names = {p.name for p in CHAPTERS}
    strays = [_rel(p) for p in DERIVED if p.name not in names]
    assert not strays, f"derived notebooks without a chapter of that name: {strays}"


@pytest.mark.parametrize("path", DERIVED, ids=_rel)
def test_derived_notebooks_keep_the_chapters_tags(path):
    """make_colab_editions / make_exercises copy cells with their metadata: same id, same tags."""
    chapter = {c.get("id"): c for c in _nb(ROOT / "book" / path.name)["cells"]}
    differ = [f"cell {c.get('id')}: {fp.tags(c)} here, {fp.tags(chapter[c.get('id')])} in the chapter"
              for c in _nb(path)["cells"]
              if c["cell_type"] == "code" and c.get("id") in chapter and fp.tags(c) != fp.tags(chapter[c.get("id")])]
    assert not differ, f"{_rel(path)} is stale; run python scripts/make_colab_editions.py:\n  " + "\n  ".join(differ)


@pytest.mark.parametrize("path", CHAPTERS, ids=_rel)
def test_the_script_writes_a_notebook_as_the_repository_does(path):
    text = path.read_text(encoding="utf-8")
    assert fp.render(json.loads(text)) == text, f"{_rel(path)} does not round-trip byte for byte through fold_plumbing.render"


@pytest.mark.parametrize("path", CHAPTERS, ids=_rel)
def test_folding_a_chapter_changes_only_tags_and_nbval_comment_lines(path):
    nb = _nb(path)
    folded = copy.deepcopy(nb)
    fp.fold(folded)
    assert len(folded["cells"]) == len(nb["cells"]), f"{_rel(path)}: folding added or removed cells"
    for i, (a, b) in enumerate(zip(nb["cells"], folded["cells"])):
        a, b = copy.deepcopy(a), copy.deepcopy(b)
        added = [t for t in fp.tags(b) if t not in fp.tags(a)]
        assert fp.tags(b)[:len(fp.tags(a))] == fp.tags(a), f"{_rel(path)} cell {i}: a tag was removed or reordered"
        assert set(added) <= {fp.FOLD_TAG, *fp.NBVAL_MARKERS.values()}, f"{_rel(path)} cell {i}: unexpected tags {added}"
        if a["cell_type"] == "code":
            stripped, _ = fp.strip_nbval_markers(fp.source(a))
            assert fp.source(b) == stripped, f"{_rel(path)} cell {i}: the source changed beyond its nbval comment"
            assert ("solution" not in fp.tags(a)) or not added, f"{_rel(path)} cell {i}: a solution cell's tags changed"
            for c in (a, b):
                c.pop("source")
        for c in (a, b):
            c["metadata"].pop("tags", None)
        assert a == b, f"{_rel(path)} cell {i}: something besides tags and source changed"
    folded.pop("cells"), nb.pop("cells")
    assert folded == nb, f"{_rel(path)}: the notebook's metadata changed"


# --------------------------------------------------------------------------- the rules, on small cells


def test_a_glue_run_is_folded():
    cell = code('glue("sp_rep5", f"{rep5:.3g}", display=False)\nglue("sp_poly5", poly5_text, display=False)\n'
                'glue("sp_band5", pm(band5), display=False)\n')
    reason = fp.plumbing_reason(cell)
    assert reason and "glue" in reason, f"a run of glue() calls is not plumbing: {reason!r}"


def test_a_two_line_training_call_is_shown():
    cell = code('cfg = pb.TrainConfig(n=20, m=40, steps=3000, l1=1e-3)\nres = pb.train(cfg, progress=False)\n')
    assert fp.plumbing_reason(cell) is None, f"a two-line pb.train call is called plumbing: {fp.plumbing_reason(cell)!r}"


def test_a_short_computation_that_prints_its_result_is_shown():
    cell = code('two = pb.train(two_cfg, W0=co.two_feature_start(), progress=False)\n'
                'count = pb.polysemantic_neurons(two.W)\n'
                'for b, name in enumerate(["equal signs", "opposite signs"]):\n'
                '    print(f"{name}: {int(count[b])} polysemantic neurons")\n')
    assert fp.plumbing_reason(cell) is None, f"a computation with one print loop is folded: {fp.plumbing_reason(cell)!r}"


def test_a_plotting_cell_is_folded():
    cell = code('fig, ax = plt.subplots(figsize=(6.4, 4.2))\ncv.plot_law(ax, sweep, fit=fit)\n'
                'ax.set_xlabel("$m$")\nax.legend(fontsize=8, loc="lower left")\nplt.show()\n')
    reason = fp.plumbing_reason(cell)
    assert reason and "drawing" in reason, f"a matplotlib cell is not plumbing: {reason!r}"


def test_a_print_formatting_cell_is_folded():
    cell = code('rows = ["| folder | scale |", "|---|---|"]\nfor folder, rec in sorted(records.items()):\n'
                '    rows.append(f"| `{folder}` | {rec[\'scale\']} |")\ndisplay(Markdown("\\n".join(rows)))\n')
    reason = fp.plumbing_reason(cell)
    assert reason and "formatting" in reason, f"a table-formatting cell is not plumbing: {reason!r}"


def test_an_exercise_cell_is_shown_whatever_it_holds():
    stub = code('def toy_forward(W, b, x):\n    """The forward pass."""\n    raise NotImplementedError("write toy_forward")\n',
                ["exercise"])
    check = code('ex.check("toy_forward", toy_forward)\n', ["exercise-check"])
    drawing = code("fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()\n", ["exercise"])
    for cell in (stub, check, drawing):
        assert fp.plumbing_reason(cell) is None, f"an exercise cell is called plumbing: {fp.source(cell)!r}"
    nb = notebook(stub, check, drawing)
    assert fp.fold(nb) == [] and [fp.tags(c) for c in nb["cells"]] == [["exercise"], ["exercise-check"], ["exercise"]], \
        "folding changed an exercise cell's tags"


def test_a_solution_cell_is_left_as_it_is():
    long_plot = "\n".join(f"ax.plot(x, y{k})" for k in range(20)) + "\n"
    for tags in (["solution", "hide-input"], ["solution"]):
        cell = code("def superposition_score(W):\n    return W.norm(dim=-1)\n" + long_plot, tags)
        before = copy.deepcopy(cell)
        assert fp.plumbing_reason(cell) is None, "a solution cell is classified (it must be left alone)"
        nb = notebook(cell)
        assert fp.fold(nb) == [] and nb["cells"][0] == before, f"folding changed a solution cell tagged {tags}"


def test_a_check_cell_is_shown_though_it_prints():
    cell = code("# 3. Every variant finished.\nfor r in arows:\n    print(f\"{r['variant']}: {r['one_hot']:.3f}\")\n"
                'assert all(r["finished"] for r in arows), "a variant is unfinished"\n')
    assert fp.plumbing_reason(cell) is None, f"a check (print and assert) is called plumbing: {fp.plumbing_reason(cell)!r}"


def test_a_long_cell_is_folded_even_if_it_computes():
    cell = code("".join(f"x{k} = pb.expected_polysemantic_exact({k + 2}, 64)\n" for k in range(fp.MAX_SHOWN_LINES + 1)))
    reason = fp.plumbing_reason(cell)
    assert reason and reason.startswith("long"), f"a {fp.MAX_SHOWN_LINES + 1}-line cell is not folded: {reason!r}"
    short = code("".join(f"x{k} = pb.expected_polysemantic_exact({k + 2}, 64)\n" for k in range(fp.MAX_SHOWN_LINES)))
    assert fp.plumbing_reason(short) is None, f"a {fp.MAX_SHOWN_LINES}-line computation is folded: {fp.plumbing_reason(short)!r}"


def test_setup_and_widget_wiring_are_folded_but_an_explorer_call_is_shown():
    setup = code("# Setup for Colab\nimport subprocess, sys\nsubprocess.check_call([sys.executable, '-m', 'pip', 'install', 'polybook'])\n")
    imports = code("import math\nimport numpy as np\nimport torch\nfrom polybook.display import glue\nSCALE = 'book'\n")
    widgets = code("import ipywidgets as widgets\n\ndef _explore(density):\n    spv.explore(density)\n\n"
                   "widgets.interact(_explore, density=widgets.FloatSlider(value=0.1));\n")
    explorer = code("cv.explorer();\n")
    for cell, word in ((setup, "setup"), (imports, "setup"), (widgets, "widget")):
        reason = fp.plumbing_reason(cell)
        assert reason and reason.startswith(word), f"not folded as {word}: {fp.source(cell)!r} -> {reason!r}"
    assert fp.plumbing_reason(explorer) is None, "a one-line explorer call is folded (it shows how to open the explorer)"


def test_a_plotting_helper_definition_is_folded():
    cell = code("def curve(ax, r):\n    ax.loglog(r['steps'], r['mean'])\n    ax.set_xlabel('step')\n\n"
                "runs = pb.run_experiment('noise', SCALE, progress=False)\nfinal = runs['results']\nbest = max(final)\n")
    reason = fp.plumbing_reason(cell)
    assert reason and reason.startswith("helper definitions") and "curve" in reason, f"a plotting helper is shown: {reason!r}"
    compute = code("def mean_se(v):\n    v = torch.as_tensor(v, dtype=torch.float64)\n"
                   "    return v.mean().item(), (v.std() / len(v) ** 0.5).item()\n")
    assert fp.plumbing_reason(compute) is None, f"a short computing helper is folded: {fp.plumbing_reason(compute)!r}"


def test_the_rules_read_the_source_not_the_fold():
    teaching = code("res = pb.train(cfg, progress=False)\n", ["hide-input"])
    plumbing = code("glue('a', 1, display=False)\nglue('b', 2, display=False)\n", ["remove-input"])
    assert fp.plumbing_reason(teaching) is None, "a folded teaching cell is called plumbing"
    assert fp.plumbing_reason(plumbing), "a removed glue run is not called plumbing"


# --------------------------------------------------------------------------- what folding does


def test_fold_tags_shown_plumbing_and_never_unfolds():
    glue_run = code("glue('a', 1, display=False)\nglue('b', 2, display=False)\n")
    removed = code("glue('a', 1, display=False)\n", ["remove-input"])
    folded_teaching = code("res = pb.train(cfg, progress=False)\n", ["hide-input"])
    teaching = code("res = pb.train(cfg, progress=False)\n")
    nb = notebook(glue_run, removed, folded_teaching, teaching)
    changes = fp.fold(nb)
    assert [fp.tags(c) for c in nb["cells"]] == [["hide-input"], ["remove-input"], ["hide-input"], []], \
        f"unexpected tags after folding: {[fp.tags(c) for c in nb['cells']]}"
    assert len(changes) == 1 and changes[0].startswith("cell 0"), f"changes reported: {changes}"
    assert fp.fold(nb) == [], "folding twice changes the notebook again"
    assert fp.problems(nb) == [], f"a folded notebook still has problems: {fp.problems(nb)}"


def test_fold_moves_nbval_comments_into_tags():
    first = code("# NBVAL_IGNORE_OUTPUT\ncv.explorer();")
    last = code("x = 1\n# NBVAL_SKIP")
    tagged = code("# NBVAL_IGNORE_OUTPUT\nres = pb.train(cfg)\n", ["nbval-ignore-output"])
    nb = notebook(first, last, tagged)
    assert len(fp.problems(nb)) == 3, f"the comments are not reported: {fp.problems(nb)}"
    fp.fold(nb)
    assert [fp.source(c) for c in nb["cells"]] == ["cv.explorer();", "x = 1", "res = pb.train(cfg)\n"], \
        f"sources after moving the markers: {[fp.source(c) for c in nb['cells']]}"
    assert [fp.tags(c) for c in nb["cells"]] == [["nbval-ignore-output"], ["nbval-skip"], ["nbval-ignore-output"]], \
        f"tags after moving the markers: {[fp.tags(c) for c in nb['cells']]}"
    assert fp.problems(nb) == [], f"problems left: {fp.problems(nb)}"


def test_problems_name_a_shown_plumbing_cell():
    nb = notebook(code("fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()\n"))
    found = fp.problems(nb)
    assert len(found) == 1 and "cell 0" in found[0] and "plumbing" in found[0], f"a shown drawing cell is not reported: {found}"


def test_the_markers_are_the_ones_nbval_reads():
    from nbval.plugin import comment_markers, metadata_tags

    for marker, tag in fp.NBVAL_MARKERS.items():
        assert marker in comment_markers, f"nbval does not know the comment {marker}"
        assert metadata_tags.get(tag) == comment_markers[marker], f"nbval does not read the tag {tag} as {marker}"


def test_the_command_checks_and_writes(tmp_path):
    path = tmp_path / "chapter.ipynb"
    nb = notebook(code("# NBVAL_IGNORE_OUTPUT\ncv.explorer();\n"), code("fig, ax = plt.subplots()\nplt.show()\n"),
                  code("res = pb.train(cfg, progress=False)\n"))
    text = fp.render(nb)
    path.write_text(text, encoding="utf-8")
    run = [sys.executable, str(ROOT / "scripts" / "fold_plumbing.py")]
    check = subprocess.run(run + ["--check", str(path)], capture_output=True, text=True)
    assert check.returncode == 1, f"--check exits {check.returncode} with changes to make:\n{check.stdout}{check.stderr}"
    assert "cell 0" in check.stdout and "cell 1" in check.stdout, f"--check does not list the changes:\n{check.stdout}"
    assert path.read_text(encoding="utf-8") == text, "--check wrote the notebook"
    write = subprocess.run(run + [str(path)], capture_output=True, text=True)
    assert write.returncode == 0, f"writing exits {write.returncode}:\n{write.stdout}{write.stderr}"
    written = path.read_text(encoding="utf-8")
    assert written.endswith("}\n") and written == fp.render(json.loads(written)), "not written as nbformat writes"
    assert [fp.tags(c) for c in json.loads(written)["cells"]] == [["nbval-ignore-output"], ["hide-input"], []], \
        f"tags written: {[fp.tags(c) for c in json.loads(written)['cells']]}"
    again = subprocess.run(run + ["--check", str(path)], capture_output=True, text=True)
    assert again.returncode == 0, f"--check after writing exits {again.returncode}:\n{again.stdout}{again.stderr}"


# --------------------------------------------------------------------------- nbval honours the tag


def _nbval(path: Path) -> subprocess.CompletedProcess:
    """``pytest --nbval`` on one notebook, in its own folder (so without this repository's pytest settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # not an xdist worker's settings
    return subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "no:cacheprovider",
                           "-q", path.name], cwd=path.parent, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("tagged", [True, False], ids=["tagged", "untagged"])
def test_nbval_ignores_the_output_of_a_tagged_cell_only(tmp_path, tagged):
    cell = code('print("fresh")', ["nbval-ignore-output"] if tagged else [])
    cell["execution_count"] = 1
    cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["committed\n"]}]
    path = tmp_path / "one_cell.ipynb"
    path.write_text(fp.render(notebook(cell)), encoding="utf-8")
    result = _nbval(path)
    if tagged:
        assert result.returncode == 0, f"nbval fails a cell tagged nbval-ignore-output:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
    else:
        assert result.returncode == 1, f"nbval passes an untagged cell whose output changed (exit {result.returncode}):\n{result.stdout[-3000:]}"
        assert "fresh" in result.stdout and "committed" in result.stdout, f"nbval's failure does not show both outputs:\n{result.stdout[-3000:]}"
