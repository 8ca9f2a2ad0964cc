"""The exercises: every chapter poses some, every checker accepts the book's solution and rejects
plausible wrong answers, and the exercises-only notebooks are current and run without a traceback.

The solutions are taken from the chapters' own ``solution`` cells, so a solution edited in a
notebook is tested here too.
"""

from __future__ import annotations

import importlib.util
import json
import inspect
import math
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from polybook import exercises as ex
from polybook import noise as nz
from polybook.train import sample_noise as package_sample_noise

ROOT = Path(__file__).resolve().parent.parent
#: Notebooks in the table of contents that pose no exercises, and why.
NO_EXERCISES = {"reproduce": "an appendix of commands and stored results, not a chapter of ideas"}
CHECK_CALL = re.compile(r'^ex\.check\("(?P<name>\w+)", (?P<fn>\w+)\)$')


def _script():
    spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "scripts" / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _script()


def toc_chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [entry["file"] for entry in toc["chapters"]]
    return [Path(f).name for f in files if (ROOT / f"{f}.ipynb").exists()]


def notebook(chapter: str) -> dict:
    return json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())


def source(cell: dict) -> str:
    return "".join(cell["source"])


def imports_cell(nb: dict) -> str:
    """The chapter's imports, which the solutions may use (``np``, ``torch``, ``pb``, module aliases)."""
    return next(source(c) for c in nb["cells"] if c["cell_type"] == "code" and "exercises as ex" in source(c))


def exercise_cells(chapter: str) -> dict[str, dict[str, str]]:
    """For each exercise of ``chapter``: its statement, stub, solution and check, by tag."""
    cells = notebook(chapter)["cells"]
    out = {}
    for k, cell in enumerate(cells):
        match = CHECK_CALL.match(source(cell).strip()) if "exercise-check" in make.tags(cell) else None
        if match:
            statement, stub, solution = cells[k - 3:k]
            out[match["name"]] = {"statement": statement, "stub": stub, "solution": solution, "fn": match["fn"]}
    return out


def reader_function(chapter: str, name: str, which: str):
    """The function a cell of the chapter defines, run after the chapter's imports."""
    nb = notebook(chapter)
    namespace: dict = {}
    exec("import polybook as pb", namespace)  # the setup cell's import
    exec(imports_cell(nb), namespace)
    cells = exercise_cells(chapter)[name]
    exec(source(cells[which]), namespace)
    return namespace[cells["fn"]]


ALL = [(ch, name) for ch in toc_chapters() if ch not in NO_EXERCISES for name in ex.chapter_exercises(ch)]


# --------------------------------------------------------------------------- the chapters


@pytest.mark.parametrize("chapter", [c for c in toc_chapters() if c not in NO_EXERCISES])
def test_every_chapter_poses_at_least_two_exercises_and_checks_each(chapter):
    found = exercise_cells(chapter)
    assert len(found) >= 2, f"{chapter} has {len(found)} exercises"
    assert sorted(found) == sorted(ex.chapter_exercises(chapter)), "the notebook's checks and polybook.exercises disagree"
    for name, cells in found.items():
        assert cells["fn"] == name, f"check of {name} is called on {cells['fn']}"
        assert "exercise" in make.tags(cells["statement"]) and cells["statement"]["cell_type"] == "markdown"
        assert "exercise" in make.tags(cells["stub"]) and "raise NotImplementedError" in source(cells["stub"])
        assert "solution" in make.tags(cells["solution"]) and "hide-input" in make.tags(cells["solution"])
        assert f"def {name}(" in source(cells["stub"]) and f"def {name}(" in source(cells["solution"])
        assert re.search(r"difficulty [123]/3 · importance [123]/3 · about \d+ minutes", source(cells["statement"]), re.I)
        signature = source(cells["stub"]).splitlines()[0].removeprefix("def ").rstrip(":")
        assert f"Signature: `{signature}`" in source(cells["statement"]), f"{name}: the statement does not give the signature"


def test_every_exercise_of_the_package_is_posed_by_its_chapter():
    posed = {name for ch in toc_chapters() for name in exercise_cells(ch) if ch not in NO_EXERCISES}
    assert posed == set(ex.EXERCISES)


@pytest.mark.parametrize("chapter,name", ALL)
def test_the_books_solution_passes_its_checker(chapter, name):
    v = ex.verdict(name, reader_function(chapter, name, "solution"))
    assert v.passed is True, v.message
    assert v.message.startswith(f"✓ {name}: agrees with polybook on all ")


@pytest.mark.parametrize("chapter,name", ALL)
def test_the_unsolved_stub_is_reported_as_not_solved_yet(chapter, name):
    v = ex.verdict(name, reader_function(chapter, name, "stub"))
    assert v.passed is None and "not solved yet" in v.message, v.message


@pytest.mark.parametrize("chapter", [c for c in toc_chapters() if c not in NO_EXERCISES])
def test_only_its_own_cells_use_an_exercise_function(chapter):
    """Otherwise the exercises-only notebook, which has no solutions, would break further down."""
    nb = notebook(chapter)
    names = {cells["fn"] for cells in exercise_cells(chapter).values()}
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or {"exercise", "solution", "exercise-check"} & set(make.tags(cell)):
            continue
        used = {n for n in names if re.search(rf"(?<![\w.]){n}\b", source(cell))}
        assert not used, f"cell {k} of {chapter} uses {used}"


# --------------------------------------------------------------------------- wrong answers

relu = torch.relu


def _forces(W, l1, benefit=4.0, use_relu=True, reg_sign=-1.0):
    P = W @ W.transpose(-1, -2)
    off = (relu(P) if use_relu else P) * (1 - torch.eye(W.shape[-2], dtype=W.dtype))
    norm2 = P.diagonal(dim1=-2, dim2=-1)[..., None]
    return {"benefit": benefit * (1 - norm2) * W, "interference": -4 * off @ W, "regularisation": reg_sign * l1 * torch.sign(W)}


def _band(W, strict=False, signed=False):
    a = W if signed else W.abs()
    uses = ((a > 0.8) & (a < 1.2)) if strict else ((a >= 0.8) & (a <= 1.2))
    return (uses.sum(-2) >= 2).sum(-1)


def _exact(n, m, both=True):
    return m * (1 - 2 * (1 - 1 / (2 * m)) ** n + ((1 - 1 / m) ** n if both else 0.0))


def _noise(kind, sigma, shape, generator, uniform_scale=math.sqrt(3)):
    if kind == "uniform":
        return (2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1) * uniform_scale * sigma
    return package_sample_noise(kind, sigma, shape, generator, dtype=torch.float64)


def _cumulants(w, kind, sigma, moment=False, square=True):
    k = nz.EXCESS_KURTOSIS[kind] + (3.0 if moment else 0.0)
    l2, l4 = (w**2).sum(-1), (w**4).sum(-1)
    return {"variance": sigma**2 * l2, "fourth_cumulant": k * sigma**4 * l4, "excess_kurtosis": k * l4 / (l2**2 if square else l2)}


def _pair_loss(a, b, q, pair_weight=2.0, interference=True):
    r = lambda z: np.maximum(z, 0)
    singles = (1 - a**2) ** 2 + (1 - b**2) ** 2 + (2 * r(a * b) ** 2 if interference else 0)
    return (1 - q) * singles + pair_weight * q * ((1 - r(a * (a + b))) ** 2 + (1 - r(b * (a + b))) ** 2)


def _pairs(uses, once=True):
    out = []
    for u in uses:
        found = []
        for k in range(u.shape[1]):
            users = torch.nonzero(u[:, k]).flatten().tolist()
            found += [(i, j) for a, i in enumerate(users) for j in users[a + 1:]]
        out.append(sorted(set(found)) if once else sorted(found))
    return out


def _responses(params, D, rel=0.5, floor=0.1, decoder_bias=True, over_features=True):
    x = D[None] - params["bd"] if decoder_bias else D[None].expand(params["We"].shape[0], -1, -1)
    A = relu(x @ params["We"].transpose(1, 2) + params["be"])
    top = A.amax(dim=1 if over_features else 2, keepdim=True)
    return (A >= rel * top) & (A >= floor)


def _overlap(pairs, by_other=False, none=True):
    s = [len(a & b) / len(b if by_other else a) for i, a in enumerate(pairs) for j, b in enumerate(pairs)
         if i != j and a and (b or not by_other)]
    return sum(s) / len(s) if s else (None if none else 0.0)


def _winner_pairs(W, signs=True, signed_argmax=False):
    win = (W if signed_argmax else W.abs()).argmax(-1)
    pos = torch.sign(W.gather(-1, win.unsqueeze(-1)).squeeze(-1)) > 0
    same, opposite = [], []
    for w, p in zip(win.tolist(), pos.tolist()):
        s = o = 0
        for a in range(len(w)):
            for b in range(a + 1, len(w)):
                if w[a] == w[b]:
                    if p[a] == p[b] or not signs:
                        s += 1
                    else:
                        o += 1
        same.append(s)
        opposite.append(o if signs else s)
    return {"same": torch.tensor(same), "opposite": torch.tensor(opposite)}


#: For every exercise, plausible wrong answers (what the mistake is -> the wrong function).
WRONG = {
    "toy_forward": {
        "bias after the output ReLU": lambda W, b, x, hidden_relu=False: relu((relu(x @ W) if hidden_relu else x @ W) @ W.transpose(-1, -2)) + b[:, None],
        "hidden ReLU ignored": lambda W, b, x, hidden_relu=False: relu(x @ W @ W.transpose(-1, -2) + b[:, None]),
    },
    "superposition_score": {
        "j = i left in": lambda W: ((W / W.norm(dim=-1, keepdim=True).clamp_min(1e-8)) @ W.transpose(-1, -2)).pow(2).sum(-1),
        "not normalised": lambda W: (W @ W.transpose(-1, -2)).pow(2).sum(-1) - (W * W).sum(-1) ** 2,
    },
    "three_forces": {
        "benefit without the factor 4": lambda W, l1: _forces(W, l1, benefit=1.0),
        "interference without the ReLU": lambda W, l1: _forces(W, l1, use_relu=False),
        "regularisation with the wrong sign": lambda W, l1: _forces(W, l1, reg_sign=1.0),
    },
    "affine_step": {
        "B moved with the old A": lambda A, B, l2sq, dt, lam: (A * (1 + dt * (1 - l2sq)), B + dt * lam / A),
        "B multiplied by A": lambda A, B, l2sq, dt, lam: (A * (1 + dt * (1 - l2sq)), B + dt * lam * A * (1 + dt * (1 - l2sq))),
    },
    "initial_rank": {
        "the winner counted against itself": lambda W_start, W_end: (W_start.abs() >= W_start.abs().gather(-1, W_end.abs().argmax(-1, keepdim=True))).sum(-1),
        "signed weights instead of magnitudes": lambda W_start, W_end: (W_start > W_start.gather(-1, W_end.abs().argmax(-1, keepdim=True))).sum(-1),
    },
    "count_polysemantic": {
        "any two features, whatever their signs": lambda winners, positive, m: np.array([(np.bincount(w, minlength=m) >= 2).sum() for w in winners]),
        "colliding pairs instead of neurons": lambda winners, positive, m: np.array([(c * (c - 1) // 2).sum() for c in (np.bincount(w, minlength=m) for w in winners)]),
    },
    "expected_polysemantic": {
        "n^2/(4m)": lambda n, m: n * n / (4 * m),
        "the both-miss term left out": lambda n, m: _exact(n, m, both=False),
        "colliding pairs C(n,2)/m": lambda n, m: n * (n - 1) / 2 / m,
    },
    "band_polysemantic": {
        "edges excluded": lambda W: _band(W, strict=True),
        "negative weights ignored": lambda W: _band(W, signed=True),
    },
    "sample_noise": {
        "uniform on [-sigma, sigma]": lambda kind, sigma, shape, generator: _noise(kind, sigma, shape, generator, uniform_scale=1.0),
        "Gaussian for every kind": lambda kind, sigma, shape, generator: sigma * torch.randn(shape, generator=generator, dtype=torch.float64),
        "Bernoulli on {0, 2 sigma}": lambda kind, sigma, shape, generator: 2 * sigma * torch.randint(0, 2, shape, generator=generator).double(),
    },
    "projection_cumulants": {
        "fourth moment instead of cumulant": lambda w, kind, sigma: _cumulants(w, kind, sigma, moment=True),
        "norm not squared": lambda w, kind, sigma: _cumulants(w, kind, sigma, square=False),
    },
    "leader_share": {
        "signed weights instead of magnitudes": lambda W0, W: (W0.argmax(-1) == W.abs().argmax(-1)).double().mean(-1),
        "one share for all instances": lambda W0, W: (W0.abs().argmax(-1) == W.abs().argmax(-1)).double().mean().expand(W.shape[0]),
    },
    "winner_pairs": {
        "signs ignored": lambda W: _winner_pairs(W, signs=False),
        "signed arg-max": lambda W: _winner_pairs(W, signed_argmax=True),
    },
    "pair_loss": {
        "pair weighted q instead of 2q": lambda a, b, q: _pair_loss(a, b, q, pair_weight=1.0),
        "interference of the singletons left out": lambda a, b, q: _pair_loss(a, b, q, interference=False),
    },
    "balance_level": {
        "l1 (n - 1), the 1/2 missing": lambda n, l1, groups=1: l1 * (n - 1),
        "groups ignored": lambda n, l1, groups=1: l1 * (n - 1) / 2,
    },
    "width_needed": {
        "n^2/(4 target)": lambda n, target=1.0, per_feature=False: math.ceil((n if per_feature else n * n) / (4 * target)),
        "per_feature ignored": lambda n, target=1.0, per_feature=False: ex.EXERCISES["width_needed"].reference(n, target),
    },
    "shared_pairs": {
        "a pair on two neurons listed twice": lambda uses: _pairs(uses, once=False),
        "every instance pooled": lambda uses: [_pairs(uses.any(0, keepdim=True))[0]] * uses.shape[0],
    },
    "sae_responses": {
        "decoder bias not subtracted": lambda params, dictionary, rel=0.5, floor=0.1: _responses(params, dictionary, rel, floor, decoder_bias=False),
        "largest activation over latents, not features": lambda params, dictionary, rel=0.5, floor=0.1: _responses(params, dictionary, rel, floor, over_features=False),
    },
    "pair_overlap": {
        "share of the other SAE's pairs": lambda pairs: _overlap(pairs, by_other=True),
        "0 instead of None without pairs": lambda pairs: _overlap(pairs, none=False),
    },
}


def test_every_exercise_has_wrong_answers_to_reject():
    assert set(WRONG) == set(ex.EXERCISES)
    assert all(len(w) >= 2 for w in WRONG.values())


@pytest.mark.parametrize("name,mistake", [(n, k) for n, w in WRONG.items() for k in w])
def test_checker_rejects_a_plausible_wrong_answer(name, mistake):
    v = ex.verdict(name, WRONG[name][mistake])
    assert v.passed is False, f"{name} accepted the mistake: {mistake}"
    assert v.message.startswith(f"✗ {name}(") and "\n  Hint: " in v.message, v.message


def test_checker_names_the_exception_of_a_broken_answer_without_a_traceback():
    v = ex.verdict("expected_polysemantic", lambda n, m: 1 / (m - m))
    assert v.passed is False
    assert v.message.startswith("✗ expected_polysemantic(n=1, m=1) raised ZeroDivisionError: ")
    assert "Traceback" not in v.message


def test_checker_prints_one_line_verdicts(capsys):
    ex.check("balance_level", lambda n, l1, groups=1: ex.EXERCISES["balance_level"].reference(n, l1, groups))
    assert capsys.readouterr().out == "✓ balance_level: agrees with polybook on all 16 cases.\n"
    with pytest.raises(KeyError, match="no exercise named 'nope'"):
        ex.check("nope", print)


def test_checker_tells_a_missing_return_from_an_unsolved_exercise():
    def forgot_return(n, m):
        n * n / (4 * m)

    v = ex.verdict("expected_polysemantic", forgot_return)
    assert v.passed is False and "returned None: is a return statement missing?" in v.message
    assert ex.verdict("expected_polysemantic", lambda n, m: ...).passed is None


def test_checker_gives_the_reader_a_fresh_copy_of_every_argument():
    def scribble(W):
        W.zero_()  # an in-place bug must not change what the package is compared on
        return W.sum(-1)

    v = ex.verdict("superposition_score", scribble)
    assert v.passed is False and "instead of" in v.message


# --------------------------------------------------------------------------- exercises-only notebooks


def test_exercises_only_notebooks_are_up_to_date():
    assert make.main(["--check"]) == 0, "run: python scripts/make_exercises.py"
    written = sorted(p.name for p in (ROOT / "exercises").glob("*.ipynb"))
    assert written == sorted(p.name for p in make.chapters_with_exercises())


@pytest.mark.parametrize("chapter", [c for c in toc_chapters() if c not in NO_EXERCISES])
def test_exercises_only_notebook_has_no_solutions_and_keeps_everything_else(chapter):
    nb = json.loads((ROOT / "exercises" / f"{chapter}.ipynb").read_text())
    book = notebook(chapter)
    assert not any("solution" in make.tags(c) for c in nb["cells"])
    assert len(nb["cells"]) == len(book["cells"]) - len(exercise_cells(chapter))
    assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    text = "".join(source(c) for c in nb["cells"])
    assert "Exercises only." in text and ":::{admonition} Exercise" not in text and ":class:" not in text
    for cells in exercise_cells(chapter).values():
        assert source(cells["solution"]) not in text


def test_exercises_only_notebooks_run_and_every_check_says_not_solved_yet(tmp_path):
    """Each notebook's setup and imports, then its exercise and check cells, in a fresh kernel."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    for chapter in [c for c in toc_chapters() if c not in NO_EXERCISES]:
        nb = nbformat.read(ROOT / "exercises" / f"{chapter}.ipynb", as_version=4)
        first = next(k for k, c in enumerate(nb.cells) if c.cell_type == "code" and "exercises as ex" in c.source)
        keep = [c for k, c in enumerate(nb.cells) if c.cell_type == "code" and
                (k <= first or {"exercise", "exercise-check"} & set(c.metadata.get("tags", [])))]
        nb.cells = keep
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
        checks = [c for c in nb.cells if "exercise-check" in c.metadata.get("tags", [])]
        assert len(checks) >= 2
        for c in checks:
            out = "".join(o.get("text", "") for o in c.outputs)
            assert re.fullmatch(r"… \w+: not solved yet\. .*\n", out), f"{chapter}: {out!r}"
            assert not any(o.output_type == "error" for o in c.outputs)


# --------------------------------------------------------------------------- answers that must not pass


def _reference(name):
    return ex.EXERCISES[name].reference


@pytest.mark.parametrize("what,name,fn", [
    ("a complex number", "expected_polysemantic", lambda n, m: complex(_reference("expected_polysemantic")(n, m), 0)),
    ("a complex tensor", "superposition_score", lambda W: _reference("superposition_score")(W).to(torch.complex128)),
    ("complex sample", "sample_noise", lambda kind, sigma, shape, generator: _reference("sample_noise")(kind, sigma, shape, generator).to(torch.complex128)),
    ("complex values in a dict", "projection_cumulants", lambda w, kind, sigma: {k: np.asarray(v, dtype=complex) for k, v in _reference("projection_cumulants")(w, kind, sigma).items()}),
])
def test_checker_refuses_a_complex_answer(what, name, fn):
    # Fails if a complex answer with the right real part passes, or is refused without saying why.
    v = ex.verdict(name, fn)
    assert v.passed is False, f"{what} passed"
    assert v.message.startswith(f"✗ {name}(") and "expected real numbers, got complex numbers" in v.message, v.message


@pytest.mark.parametrize("what,name,fn,says", [
    ("an object array", "count_polysemantic", lambda winners, positive, m: np.array(_reference("count_polysemantic")(winners, positive, m), dtype=object), "got Python objects (dtype object)"),
    ("the number as text", "expected_polysemantic", lambda n, m: str(_reference("expected_polysemantic")(n, m)), "got a str"),
    ("text in an array", "band_polysemantic", lambda W: np.array(["1"]), "got text"),
    ("text instead of a sample", "sample_noise", lambda kind, sigma, shape, generator: "noise", "got a str"),
    ("a list of unequal rows", "superposition_score", lambda W: [[1.0], [1.0, 2.0]], "got a list of 2 items"),
    ("a dict instead of a tensor", "superposition_score", lambda W: {"score": 1.0}, "got a dict"),
    ("a dict with mixed keys", "three_forces", lambda W, l1: {1: 2.0, "benefit": 3.0}, "keys"),
    ("an integer beyond floats", "expected_polysemantic", lambda n, m: 10**5000, "got an int too large"),
    ("a bfloat16 tensor", "superposition_score", lambda W: _reference("superposition_score")(W).bfloat16(), "instead of"),
])
def test_checker_names_an_answer_of_the_wrong_type_without_raising(what, name, fn, says):
    # Fails if the comparison raises (a traceback in the notebook) or a non-number passes as a number.
    v = ex.verdict(name, fn)
    assert v.passed is False, f"{what} passed"
    assert v.message.startswith(f"✗ {name}(") and says in v.message, v.message


def _zero_params(params, dictionary, rel=0.5, floor=0.1):
    for value in params.values():
        value.zero_()  # the reader's bug: the encoder is wiped before it is used
    return _reference("sae_responses")(params, dictionary, rel, floor)


def _scale_encoder(params, dictionary, rel=0.5, floor=0.1):
    params["We"].mul_(-1)
    return _reference("sae_responses")(params, dictionary, rel, floor)


def _clear_pairs(pairs):
    for found in pairs:
        found.clear()
    return _reference("pair_overlap")(pairs)


@pytest.mark.parametrize("what,name,fn", [
    ("the nested params zeroed", "sae_responses", _zero_params),
    ("a nested tensor changed with mul_", "sae_responses", _scale_encoder),
    ("the pairs' sets emptied", "pair_overlap", _clear_pairs),
])
def test_a_reader_who_changes_the_inputs_is_compared_with_the_untouched_case(what, name, fn):
    # Fails if the package's answer is computed on the objects the reader's function changed.
    v = ex.verdict(name, fn)
    assert v.passed is False, f"{what}: a wrong answer passed"


def test_a_correct_answer_that_then_changes_its_inputs_still_passes():
    # Fails if the reader's in-place changes reach the package's call and turn a right answer wrong.
    def answer_then_scribble(params, dictionary, rel=0.5, floor=0.1):
        out = _reference("sae_responses")(params, dictionary, rel, floor)
        for value in params.values():
            value.zero_()
        dictionary.zero_()
        return out

    def overlap_then_clear(pairs):
        out = _reference("pair_overlap")(pairs)
        for found in pairs:
            found.clear()
        return out

    assert ex.verdict("sae_responses", answer_then_scribble).passed is True
    assert ex.verdict("pair_overlap", overlap_then_clear).passed is True


# --------------------------------------------------------------------------- a function that never returns

needs_alarm = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="the time limit needs signal.setitimer")


def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # stands for a loop that never ends, bounded so a broken limit fails, not hangs
        pass


@needs_alarm
def test_checker_stops_a_function_that_never_returns(capsys):
    # Fails if the check waits for the function (20 s here, forever in a notebook) or does not say why it stopped.
    def forever(n, m):
        _spin(20)

    start = time.monotonic()
    ex.check("expected_polysemantic", forever, timeout=0.3)
    assert time.monotonic() - start < 5
    out = capsys.readouterr().out
    assert out.startswith("✗ expected_polysemantic(n=1, m=1): your function took more than 0.3 s on case 1 of 26;"), out
    assert "timeout=" in out and "\n  Hint: " in out
    assert inspect.signature(ex.check).parameters["timeout"].default == 10
    for bad in (0, -1, "10", math.nan, math.inf):  # one clear line, not a TypeError from inside the timer
        with pytest.raises(ValueError, match="timeout must be a number of seconds above 0, or None"):
            ex.check("expected_polysemantic", forever, timeout=bad)


@needs_alarm
def test_checker_reports_the_limit_even_when_the_function_catches_it():
    # Fails if a function that catches the interruption ("except:") and returns the right answer passes after its time.
    def catches(n, m):
        try:
            _spin(20)
        except BaseException:
            pass
        return _reference("expected_polysemantic")(n, m)

    start = time.monotonic()
    v = ex.verdict("expected_polysemantic", catches, timeout=0.2)
    assert time.monotonic() - start < 5 and v.passed is False and "took more than 0.2 s on case 1" in v.message, v.message


@needs_alarm
def test_time_limit_restores_the_alarm_it_found():
    # Fails if a check leaves its own SIGALRM handler behind or cancels an alarm someone else had set.
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        v = ex.verdict("expected_polysemantic", lambda n, m: _spin(20), timeout=0.2)
        assert v.passed is False and "took more than 0.2 s" in v.message
        assert ex.verdict("balance_level", _reference("balance_level"), timeout=5).passed is True
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < left <= 30, left
        assert signal.getsignal(signal.SIGALRM)(signal.SIGALRM, None) is None and fired == [True]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_checker_off_the_main_thread_runs_without_a_time_limit():
    # Fails if a check from another thread raises (signals are the main thread's) or applies a limit anyway.
    def slow_but_right(n, m):
        time.sleep(0.02)
        return _reference("expected_polysemantic")(n, m)

    found = []
    worker = threading.Thread(target=lambda: found.append(ex.verdict("expected_polysemantic", slow_but_right, timeout=0.01)))
    worker.start()
    worker.join(60)
    assert found and found[0].passed is True, found


# --------------------------------------------------------------------------- long answers in messages


def test_messages_shorten_a_long_answer_or_error():
    # Fails if a 10 MB answer or error message is printed whole.
    v = ex.verdict("expected_polysemantic", lambda n, m: "x" * 10_000_000)
    assert v.passed is False and len(v.message) < 1000 and "... (10000002 characters)" in v.message, v.message[:300]

    def fails_loudly(n, m):
        raise ValueError("y" * 10_000_000)

    v = ex.verdict("expected_polysemantic", fails_loudly)
    assert v.passed is False and len(v.message) < 1000 and "... (10000000 characters)" in v.message, v.message[:300]
    v = ex.verdict("three_forces", lambda W, l1: {f"key{i}": 0.0 for i in range(100_000)})
    assert v.passed is False and len(v.message) < 1500, v.message[:300]
    v = ex.verdict("shared_pairs", lambda uses: [[(0, 1)] * 100_000] * uses.shape[0])
    assert v.passed is False and len(v.message) < 1500, v.message[:300]
