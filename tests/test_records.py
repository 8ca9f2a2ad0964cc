"""Records and pieces cannot be made to lie: a repeated width, a second run in the same folder, an
edited, foreign or misshapen piece, a damaged or hostile result file each end in the clean run's
numbers or in one line naming what is wrong, never in a sealed record of other numbers."""

import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polybook import __main__ as cli_main
from polybook import experiments as ex
from polybook.experiments import ExperimentConfig, ResultError, load_result, param, run_experiment, stored_result
from polybook.experiments.collisions import CollisionsConfig
from polybook.experiments.collisions_n import LawOverNConfig
from polybook.experiments.records import RESULTS_URL_ENV, checksum

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["n=4", "m=4,8", "instances=2", "steps=30"]
SMALL_CLI = [a for s in SMALL for a in ("--set", s)] + ["--device", "cpu", "--quiet"]


def run(out, overrides=SMALL, **kw):
    notes = []
    record = run_experiment("collisions", "book", overrides, device="cpu", out=out, progress=False,
                            warn=notes.append, **kw)
    return record, notes


def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A finished run of SMALL: its folder (result.json and two pieces) and its record."""
    folder = tmp_path_factory.mktemp("clean")
    run(folder)
    return folder, load_result(folder)


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """A finished run of another config with the same widths (another l1)."""
    folder = tmp_path_factory.mktemp("other")
    run(folder, [*SMALL, "l1=0.05"])
    return folder, load_result(folder)


def copy_of(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


# --------------------------------------------------------------------------- 1. repeated widths


def test_a_repeated_width_is_refused_at_construction():
    # Fails when m=(4, 4) builds a config (both entries would hold the second width's piece).
    with pytest.raises(ValueError, match=re.escape("m must be a tuple without repeated values, got (4, 4)")):
        CollisionsConfig(n=4, m=(4, 4))
    CollisionsConfig(n=4, m=(4, 8))


def test_a_repeated_width_on_the_command_line_exits_2_before_making_the_folder(tmp_path, capsys):
    out = tmp_path / "new"
    args = ["run", "collisions", "--set", "m=4,4", "--set", "n=4", "--set", "instances=2", "--set", "steps=50",
            "--device", "cpu", "--quiet", "--out", str(out)]
    # Fails when the run goes ahead (exit 0, both entries the second run) or leaves its folder behind.
    assert cli_main.main(args) == 2
    assert "m must be a tuple without repeated values, got (4, 4)" in one_line(capsys.readouterr().err)
    assert not out.exists()


def test_a_repeated_point_of_collisions_n_is_refused():
    # Fails when the point (4, 4) can be asked for twice (the second piece would overwrite the first).
    with pytest.raises(ValueError, match=r"\(4, 4\) twice"):
        LawOverNConfig(n=(4, 8, 4), m=(4, 4, 4), instances=2, steps=50, checkpoint_steps=(25,))
    LawOverNConfig(n=(4, 4), m=(4, 8), instances=2, steps=50, checkpoint_steps=(25,))  # same n, another m: fine


def test_unique_is_a_generic_rule_of_tuple_fields():
    @dataclasses.dataclass(frozen=True)
    class Toy(ExperimentConfig):
        sizes: tuple[int, ...] = param((1, 2), unique=True)
        rates: tuple[float, ...] = param((0.1, 0.2), unique=True)
        names: tuple[str, ...] = param(("a", "b"), choices=("a", "b"), unique=True)
        loose: tuple[int, ...] = (1, 1)  # without the rule a repeat is allowed
        seed: int = 0

    Toy()
    # Fails when a repeated value passes a field declared unique.
    for change, shown in [({"sizes": (2, 2)}, "(2, 2)"), ({"rates": (0.1, 0.2, 0.1)}, "(0.1, 0.2, 0.1)"),
                          ({"names": ("b", "b")}, "('b', 'b')")]:
        field = next(iter(change))
        with pytest.raises(ValueError, match=re.escape(f"{field} must be a tuple without repeated values, got {shown}")):
            Toy(**change)


# --------------------------------------------------------------------------- 2. one run per folder


def hold_lock(folder: Path, pid: str = "4242") -> int:
    """Hold ``folder/.lock`` as a running polybook would (a separate open file: a separate lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{pid}\n".encode())
    return fd


def test_a_folder_in_use_is_refused_naming_the_holder_before_training(tmp_path, capsys):
    fd = hold_lock(tmp_path)
    try:
        # Fails when a second run goes ahead in a folder another run holds (its numbers could mix).
        with pytest.raises(ValueError, match=r"in use by another polybook run \(pid 4242\)"):
            run(tmp_path)
        assert cli_main.main(["run", "collisions", *SMALL_CLI, "--out", str(tmp_path)]) == 2
        assert "pid 4242" in one_line(capsys.readouterr().err)
        assert not (tmp_path / "pieces").exists() and not (tmp_path / "result.json").exists()
    finally:
        os.close(fd)
    run(tmp_path)  # free again


def test_two_processes_on_one_folder_one_is_refused_and_the_lock_goes_with_ctrl_c(tmp_path):
    out = tmp_path / "shared"
    slow = ["run", "collisions", "--set", "n=16", "--set", "m=16", "--set", "instances=2", "--set", "steps=2000000",
            "--device", "cpu", "--quiet", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "polybook", *slow], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "pieces" / "run.json").exists():
            try:
                if (out / ".lock").read_text().strip() == str(proc.pid):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        # Fails when the second run is not refused (both exit 0), or the message hides the holder.
        with pytest.raises(ValueError, match=rf"\(pid {proc.pid}\)"):
            run(out, [*SMALL, "l1=0.05"])
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    # 130 from polybook's handler; now and then CPython reports the handled Ctrl-C as death by SIGINT.
    assert proc.returncode in (130, -signal.SIGINT) and "polybook: interrupted" in err, err
    assert not (out / ".lock").exists()  # released (and removed) on Ctrl-C
    os.close(hold_lock(out))  # and free


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_the_lock_is_held_for_the_run_and_released_on_every_exit(tmp_path, monkeypatch, error):
    exp = ex.get_experiment("collisions")
    seen = []

    def failing(cfg, device, progress, pieces=None):
        fd = os.open(tmp_path / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
        except BlockingIOError:
            seen.append("held")
        finally:
            os.close(fd)
        raise error

    monkeypatch.setitem(ex.EXPERIMENTS, "collisions", dataclasses.replace(exp, run=failing))
    with pytest.raises(type(error)):
        run(tmp_path)
    # Fails when the run trains without holding the folder, or leaves it locked after an exception.
    assert seen == ["held"]
    monkeypatch.setitem(ex.EXPERIMENTS, "collisions", exp)
    run(tmp_path)


def test_a_piece_of_another_run_is_remade(clean, other, tmp_path):
    folder = copy_of(clean[0], tmp_path / "x")
    shutil.copy(other[0] / "pieces" / "m=4.json", folder / "pieces" / "m=4.json")
    record, notes = run(folder)
    # Fails when the other config's numbers go into this run's record.
    assert record["results"] == clean[1]["results"] != other[1]["results"]
    assert any("m=4.json" in n and "another run" in n for n in notes), notes
    assert record["provenance"]["pieces_reused"] == 1


# --------------------------------------------------------------------------- 3. sealed pieces


def test_an_edited_piece_is_remade(clean, tmp_path):
    folder = copy_of(clean[0], tmp_path / "x")
    f = folder / "pieces" / "m=4.json"
    piece = json.loads(f.read_text())
    piece["results"]["polysemantic"] = [3, 3]
    f.write_text(json.dumps(piece))
    record, notes = run(folder)
    # Fails when the edited counts go into a record that passes its checksum.
    assert record["results"] == clean[1]["results"] and load_result(folder)["results"] == clean[1]["results"]
    assert any("m=4.json" in n and "checksum" in n for n in notes), notes


# --------------------------------------------------------------------------- 9. pieces of the wrong shape


def _without(key):
    def edit(piece):
        del piece[key]
        return piece
    return edit


@pytest.mark.parametrize("name,content", [
    ("m=4.json", "{}"), ("m=4.json", "null"), ("m=4.json", "[]"), ("m=4.json", '"text"'),
    ("m=4.json", _without("results")), ("m=4.json", _without("name")),
    ("m=4.json", lambda p: {**p, "results": [1, 2]}), ("m=4.json", lambda p: {**p, "name": ["m=4"]}),
    ("m=4.json", "[" * 100000 + "]" * 100000), ("m=4.json", b"\xff\xfe"),
    ("extra.json", '{"a": 1}'), ("extra.json", "[1, 2]"), ("m=8.json", lambda p: {**p, "name": "m=4"}),
], ids=["empty", "null", "list", "text", "no-results", "no-name", "results-list", "name-list", "deep",
        "not-utf8", "extra", "extra-list", "renamed"])
def test_a_file_that_is_no_piece_of_this_run_is_ignored_and_its_piece_remade(clean, tmp_path, name, content):
    folder = copy_of(clean[0], tmp_path / "x")
    f = folder / "pieces" / name
    if callable(content):
        content = json.dumps(content(json.loads((folder / "pieces" / "m=4.json").read_text())))
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    # Fails when such a file crashes the resume (KeyError, TypeError, ...) or changes the numbers.
    record, notes = run(folder)
    assert record["results"] == clean[1]["results"]
    assert any(name in n for n in notes), notes


# --------------------------------------------------------------------------- 10. load_result


@pytest.mark.parametrize("damage,needle", [
    (lambda t: re.sub(r'"final_loss": \[\n\s*[-0-9.e]+', '"final_loss": [NaN', t, count=1), "NaN or Infinity"),
    (lambda t: re.sub(r'"final_loss": \[\n\s*[-0-9.e]+', '"final_loss": [-Infinity', t, count=1), "NaN or Infinity"),
    (lambda t: re.sub(r'"final_loss": \[\n\s*[-0-9.e]+', '"final_loss": [1e400', t, count=1), "NaN or Infinity"),
    (lambda t: "[" * 100000 + "]" * 100000, "nested too deeply"),
    (lambda t: t.replace('"results": {', '"results": ' + "[" * 100000 + "]" * 100000 + ', "x": {', 1),
     "nested too deeply"),
])
def test_load_result_turns_every_damage_into_a_result_error_naming_the_file(clean, tmp_path, damage, needle):
    f = tmp_path / "result.json"
    f.write_text(damage((clean[0] / "result.json").read_text()))
    # Fails when NaN gives a plain ValueError without the file's name, or nesting a RecursionError.
    with pytest.raises(ResultError) as err:
        load_result(f)
    assert str(err.value).startswith(f"{f}: ") and needle in str(err.value) and "\n" not in str(err.value)


def test_load_result_names_a_file_that_is_not_utf8(tmp_path):
    f = tmp_path / "result.json"
    f.write_bytes(b'{"experiment": "\xff"}')
    # Fails when a byte that is not UTF-8 escapes as a UnicodeDecodeError or a vague message.
    with pytest.raises(ResultError, match=f"^{re.escape(str(f))}: is not UTF-8 text"):
        load_result(f)


# --------------------------------------------------------------------------- 4. stored_result


def _bad_downloads(text: str) -> dict[str, bytes]:
    number = re.compile(r'("final_loss": \[\n\s*)[-0-9.e]+')
    return {
        "nan": number.sub(r"\1NaN", text, count=1).encode(),
        "infinity": number.sub(r"\1Infinity", text, count=1).encode(),
        "overflow": number.sub(r"\g<1>1e999", text, count=1).encode(),
        "deep": ("[" * 100000 + "]" * 100000).encode(),
        "deep-inside": text.replace('"results": {', '"results": ' + "[" * 100000 + "]" * 100000 + ', "x": {',
                                    1).encode(),
        "not-utf8": b"\xff\xfe" + text.encode(),
        "truncated": text[: len(text) // 2].encode(),
        "edited": text.replace('"scale": "book"', '"scale": "paper"').encode(),
        "empty": b"",
    }


@pytest.mark.parametrize("kind", list(_bad_downloads("")))
@pytest.mark.parametrize("had_results", [False, True])
def test_a_bad_download_ends_in_a_result_error_caching_nothing(clean, tmp_path, monkeypatch, kind, had_results):
    text = (clean[0] / "result.json").read_text()
    release = tmp_path / "release"
    (release / "probe").mkdir(parents=True)
    (release / "probe" / "result.json").write_bytes(_bad_downloads(text)[kind])
    work = tmp_path / "colab"
    work.mkdir()
    if had_results:
        (work / "results" / "mine").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv(RESULTS_URL_ENV, release.as_uri())
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    # Fails when a bad copy raises something else (ValueError, RecursionError), is cached or leaves a folder.
    for _ in range(2):
        with pytest.raises(ResultError) as err:
            stored_result("probe")
        assert "\n" not in str(err.value)
        assert sorted(p.relative_to(work) for p in work.rglob("*")) == before
    (release / "probe" / "result.json").write_text(text)  # the release repaired: the next call fetches it
    assert stored_result("probe") == clean[1]


# --------------------------------------------------------------------------- 13. --out, and refusals leave nothing


def test_an_empty_out_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Fails when --out "" writes result.json (and pieces/) into the current folder.
    assert cli_main.main(["run", "collisions", *SMALL_CLI, "--out", ""]) == 2
    assert "--out must be a folder" in one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="--out"):
        run("")


@pytest.mark.parametrize("overrides,needle", [
    ([*SMALL, "n=100000", "m=100000"], "needs about"),  # too big for memory
    ([*SMALL, "m=4,x"], "comma-separated integers"),
    ([*SMALL, "m=4,4"], "without repeated values"),
])
def test_a_refused_run_removes_the_folder_it_made_and_never_one_that_existed(tmp_path, overrides, needle):
    new = tmp_path / "new" / "deeper"
    # Fails when a refusal before training leaves the folder it created behind.
    with pytest.raises(ValueError, match=needle):
        run(new, overrides)
    assert list(tmp_path.iterdir()) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match=needle):
        run(mine, overrides)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]  # an existing folder is left as it was


def test_a_folder_refused_for_another_run_is_left_as_it_was(clean, tmp_path):
    folder = copy_of(clean[0], tmp_path / "x")
    before = sorted((p.name, p.read_bytes()) for p in folder.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match="holds pieces of a different run"):
        run(folder, [*SMALL, "l1=0.05"])
    # Fails when the refusal removes or changes anything of the earlier run.
    assert sorted((p.name, p.read_bytes()) for p in folder.rglob("*") if p.is_file()) == before


# --------------------------------------------------------------------------- properties


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
number_texts = st.one_of(
    st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1" * 5000, "0.0", "-0", "1.0"]),
)
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """``data`` damaged one way: truncated, a byte flipped, a number replaced (NaN, huge, ...), a value
    nested deeply, a field of the wrong type, or another document altogether."""
    kind = draw(st.sampled_from(["truncate", "flip", "number", "nest", "field", "document"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if kind in ("number", "nest"):
        spans = [m.span() for m in NUMBER.finditer(data)]
        a, b = draw(st.sampled_from(spans))
        if kind == "number":
            new = draw(number_texts).encode()
        else:
            depth = draw(st.sampled_from([1, 50, 2000, 100000]) | st.integers(1, 5000))
            new = b"[" * depth + data[a:b] + b"]" * depth
        return data[:a] + new + data[b:]
    if kind == "field":
        doc = json.loads(data)
        path = draw(st.sampled_from([[k] for k in doc] + [[k, j] for k in doc if isinstance(doc[k], dict)
                                                          for j in doc[k]]))
        target = doc
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = draw(json_values)
        return json.dumps(doc).encode()
    return json.dumps(draw(json_values)).encode()


FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


@FAST
@given(data=st.data())
def test_load_result_returns_the_sealed_record_or_a_result_error(clean, data):
    original = (clean[0] / "result.json").read_bytes()
    bad = data.draw(damaged(original))
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "result.json"
        f.write_bytes(bad)
        # Fails when a damaged file raises anything but ResultError, or loads with other content.
        try:
            record = load_result(f)
        except ResultError as err:
            assert str(err).startswith(f"{f}: ") and "\n" not in str(err)
        else:
            assert record["checksum"] == checksum(record) and record == clean[1]


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_resumed_run_reproduces_the_clean_run_or_refuses_in_one_line(clean, other, data):
    target = data.draw(st.sampled_from(["m=4.json", "m=8.json", "run.json", "extra.json", "foreign"]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_of(clean[0], Path(tmp) / "x")
        (folder / "result.json").unlink()
        if target == "foreign":
            name = data.draw(st.sampled_from(["m=4.json", "m=8.json"]))
            shutil.copy(other[0] / "pieces" / name, folder / "pieces" / name)
        elif target == "extra.json":
            (folder / "pieces" / target).write_bytes(json.dumps(data.draw(json_values)).encode())
        else:
            f = folder / "pieces" / target
            f.write_bytes(data.draw(damaged(f.read_bytes())))
        # Fails when a damaged piece crashes the resume, or a record passes its checksum with other numbers.
        try:
            record, _ = run(folder)
        except ValueError as err:
            assert "\n" not in str(err) and target == "run.json", err
            assert not (folder / "result.json").exists()
        else:
            assert record["results"] == clean[1]["results"]
            assert load_result(folder)["results"] == clean[1]["results"]
