"""Runs never lie and never lose work: each test reproduces one way a run could go wrong."""

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import polybook as pb
from polybook import __main__ as cli_main
from polybook import experiments as ex
from polybook.sweep import train_widths
from polybook.train import Diverged, TrainConfig

TRAIN_MODULE = sys.modules["polybook.train"]  # the module; ``polybook.train`` is also the function
ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--set", "n=16", "--set", "m=16,32,48", "--set", "instances=2", "--set", "steps=400", "--device", "cpu"]


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "polybook", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# --------------------------------------------------------------------------- divergence


def test_a_diverging_run_stops_at_the_first_check_and_says_what_to_lower():
    cfg = TrainConfig(n=8, m=16, steps=7500, lr=1e30, l1=1e-3)
    with pytest.raises(Diverged) as err:
        pb.train(cfg, device="cpu", progress=False, desc="test run")
    assert err.value.step == 100  # the first check, not the last step
    assert "test run diverged by step 100 of 7500" in str(err.value) and "lower lr (now 1e+30)" in str(err.value)


def test_a_diverged_cli_run_exits_1_with_one_line_and_writes_no_result(tmp_path):
    res = cli("run", "collisions", *SMALL, "--set", "lr=1e30", "--quiet", "--out", str(tmp_path))
    assert res.returncode == 1
    line = one_line(res.stderr)
    assert line.startswith("polybook: error: collisions m=16 diverged by step 100 of 400")
    assert "lower lr (now 1e+30)" in line
    assert not (tmp_path / "result.json").exists()


def test_a_batched_width_sweep_names_the_width_that_diverged():
    with pytest.raises(Diverged) as err:
        train_widths(TrainConfig(n=8, m=8, instances=2, steps=300, lr=1e35), [8, 16], device="cpu", progress=False)
    assert err.value.where == "m=8" and err.value.instance in (0, 1)


def test_metrics_refuse_nan_weights_instead_of_counting_zero():
    W = torch.full((1, 4, 8), float("nan"))
    for metric in (pb.polysemantic_neurons, pb.polysemantic_neurons_by_mass, pb.polysemantic_sign_pattern,
                   pb.winners, pb.fourth_norm):
        with pytest.raises(ValueError, match="must be finite"):
            metric(W)


def test_result_json_is_strict_json_and_non_finite_numbers_are_refused(tmp_path):
    ex.run_experiment("collisions", "book", ["n=8", "m=8", "instances=2", "steps=50"], device="cpu",
                      out=tmp_path, progress=False, warn=lambda _: None)
    strict_json((tmp_path / "result.json").read_text())
    with pytest.raises(ValueError, match=r"record.results.loss\[1\] is not a finite number"):
        ex.to_json({"results": {"loss": [0.5, float("nan")]}})


# --------------------------------------------------------------------------- checked before the first step


@pytest.mark.parametrize("out,why", [
    ("/proc/x", "No such file or directory"),
    ("/dev/null", "it exists and is not a folder"),
    ("FILE", "it exists and is not a folder"),
])
def test_an_unusable_out_fails_fast_with_exit_2(tmp_path, out, why):
    if out == "FILE":
        out = str(tmp_path / "a-file")
        Path(out).write_text("not a folder")
    start = time.perf_counter()
    res = cli("run", "collisions", "--scale", "paper", "--out", out)  # paper scale: would train for hours
    assert time.perf_counter() - start < 5 + 10  # five seconds of work, plus interpreter start on a busy machine
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "--out must be a folder polybook can create and write" in line and why in line


def test_an_unwritable_folder_is_refused_before_training(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    if os.geteuid() == 0:  # root writes anywhere: simulate the read-only folder instead
        folder.mkdir()
        real = Path.write_text

        def refuse(self, *a, **k):
            if self.parent == folder:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "write_text", refuse)
    else:
        folder.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="Permission denied"):
        ex.runner.check_out_folder(folder)


@pytest.mark.parametrize("setting,needle", [
    ("lr=1e300", "lr must be a finite number > 0 that float32 can hold"),
    ("l1=1e39", "l1 must be a finite number >= 0 that float32 can hold"),
    ("n=99999999999999999999", "n must be an integer >= 1 that fits in int64"),
    ("seed=4611686018427387905", "seed must be an integer >= 0 and <= 4611686018427387904"),
    ("m=64,1e3", "m must be comma-separated integers"),
])
def test_overflowing_magnitudes_are_refused_with_exit_2(setting, needle):
    res = cli("run", "collisions", "--set", setting)
    assert res.returncode == 2 and needle in one_line(res.stderr)


@pytest.mark.parametrize("field,value", [("init_std", 1e39), ("sigma", float("inf")), ("lr", 1e300)])
def test_train_config_refuses_values_float32_cannot_hold(field, value):
    kwargs = {"noise": "gaussian"} if field == "sigma" else {}
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{**kwargs, field: value})


def test_a_run_too_big_for_memory_is_refused_upfront_naming_estimate_and_limit():
    start = time.perf_counter()
    res = cli("run", "collisions", "--set", "n=100000", "--set", "m=100000", "--device", "cpu")
    assert time.perf_counter() - start < 30
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "needs about" in line and "GiB at its peak (estimate)" in line and "it may use on cpu" in line


def test_the_memory_check_compares_the_estimate_with_what_is_free(monkeypatch):
    cfg = ex.CollisionsConfig(n=64, m=(64, 128), instances=4, steps=10)
    need = cfg.peak_bytes(torch.device("cpu"))
    monkeypatch.setattr(TRAIN_MODULE, "available_memory_bytes", lambda device="cpu": int(need / 0.9) - 1)
    with pytest.raises(ValueError, match="needs about"):
        ex.run_experiment("collisions", "book", ["n=64", "m=64,128", "instances=4", "steps=10"], device="cpu",
                          progress=False)
    monkeypatch.setattr(TRAIN_MODULE, "available_memory_bytes", lambda device="cpu": int(need / 0.9) + 1024)
    ex.run_experiment("collisions", "book", ["n=64", "m=64,128", "instances=4", "steps=10"], device="cpu",
                      progress=False)


# --------------------------------------------------------------------------- atomic results


def test_a_write_that_fails_part_way_leaves_the_old_result_intact(tmp_path, monkeypatch, capsys):
    args = ["run", "collisions", "--set", "n=8", "--set", "m=8", "--set", "instances=2", "--set", "steps=50",
            "--device", "cpu", "--quiet", "--out", str(tmp_path)]
    assert cli_main.main(args) == 0
    before = (tmp_path / "result.json").read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    assert cli_main.main(args) == 1  # the same run again (its pieces reused), now onto a full disk
    err = capsys.readouterr().err
    assert "No space left on device" in err and "previous result.json is unchanged" in err
    assert (tmp_path / "result.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_overwriting_a_result_says_so(tmp_path):
    notes = []
    for _ in range(2):
        ex.run_experiment("collisions", "book", ["n=8", "m=8", "instances=1", "steps=20"], device="cpu",
                          out=tmp_path, progress=False, warn=notes.append)
    assert any(n.startswith("replacing the existing") for n in notes)


# --------------------------------------------------------------------------- resumable sweeps


@pytest.mark.slow
def test_an_interrupted_sweep_exits_130_keeps_its_pieces_and_resumes_to_the_same_numbers(tmp_path):
    # a quick first width, then seconds of work left, so the signal always lands mid-sweep
    args = ["run", "collisions", "--set", "n=48", "--set", "m=32,512,768,1024,1280", "--set", "instances=2",
            "--set", "steps=4000", "--device", "cpu", "--quiet"]
    whole = tmp_path / "whole"
    assert cli(*args, "--out", str(whole)).returncode == 0

    part = tmp_path / "part"
    proc = subprocess.Popen([sys.executable, "-m", "polybook", *args, "--out", str(part)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (part / "pieces" / "m=32.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    line = one_line(err)
    kept = sorted(p.name for p in (part / "pieces").glob("m=*.json"))
    assert "m=32.json" in kept and len(kept) < 5
    assert line.startswith(f"polybook: interrupted; {len(kept)} finished piece(s) kept in")
    assert not (part / "result.json").exists()

    again = cli(*args, "--out", str(part))
    assert again.returncode == 0
    assert f"reusing {len(kept)} finished piece(s)" in again.stderr
    a, b = ex.load_result(whole), ex.load_result(part)
    assert a["results"] == b["results"]
    assert b["provenance"]["pieces_reused"] == len(kept)


def test_a_different_config_in_the_same_folder_is_refused(tmp_path):
    assert cli("run", "collisions", *SMALL, "--quiet", "--out", str(tmp_path)).returncode == 0
    res = cli("run", "collisions", *SMALL, "--set", "l1=0.01", "--quiet", "--out", str(tmp_path))
    assert res.returncode == 2
    assert "holds pieces of a different run" in one_line(res.stderr)


def test_a_piece_cut_short_is_made_again(tmp_path):
    overrides = ["n=8", "m=8,16", "instances=2", "steps=60"]
    first = ex.run_experiment("collisions", "book", overrides, device="cpu", out=tmp_path, progress=False,
                              warn=lambda _: None)
    (tmp_path / "pieces" / "m=16.json").write_text('{"name": "m=16", "res')  # a crash mid-write
    second = ex.run_experiment("collisions", "book", overrides, device="cpu", out=tmp_path, progress=False,
                               warn=lambda _: None)
    assert second["results"] == first["results"] and second["provenance"]["pieces_reused"] == 1


# --------------------------------------------------------------------------- provenance and checksums


def test_provenance_names_polybooks_own_revision_and_whether_it_was_modified():
    state = ex.records._source_state()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if head:  # a checkout of polybook (a source archive has no git)
        assert state["git_revision"] == head and isinstance(state["git_dirty"], bool)


def test_a_copy_of_the_package_inside_another_repository_reports_no_revision(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    shutil.copytree(ROOT / "polybook", other / "vendored" / "polybook")
    code = "import json, polybook.experiments.records as e; print(json.dumps(e._source_state()))"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(other / "vendored")})
    assert json.loads(res.stdout) == {"git_revision": None, "git_dirty": None}, res.stderr


@pytest.mark.parametrize("damage,needle", [
    (lambda text: text[: len(text) // 2], "is not valid JSON, perhaps truncated"),
    (lambda text: text.replace('"polysemantic": [\n   [', '"polysemantic": [\n   [7, ', 1), "does not match its checksum"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "provenance"}), "lacks the field(s) provenance"),
])
def test_a_tampered_result_is_caught_naming_the_file(tmp_path, damage, needle):
    ex.run_experiment("collisions", "book", ["n=8", "m=8", "instances=2", "steps=30"], device="cpu",
                      out=tmp_path, progress=False, warn=lambda _: None)
    f = tmp_path / "result.json"
    f.write_text(damage(f.read_text()))
    with pytest.raises(ex.ResultError) as err:
        ex.load_result(tmp_path)
    assert str(err.value).startswith(str(f)) and needle in str(err.value)


# --------------------------------------------------------------------------- theory numerics


def _exact_reference(n: int, m: int) -> float:
    return float(m * (1 - 2 * (1 - Fraction(1, 2 * m)) ** n + (1 - Fraction(1, m)) ** n))


@pytest.mark.parametrize("n,m", [(2, 10**8), (1000, 10**9), (2, 2), (3, 1), (64, 64), (256, 4096), (10**5, 10)])
def test_exact_expectation_matches_rational_arithmetic(n, m):
    got, want = pb.expected_polysemantic_exact(n, m), _exact_reference(n, m)
    assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300), (got, want)


@pytest.mark.parametrize("fn", [pb.predicted_polysemantic, pb.expected_colliding_pairs, pb.expected_polysemantic_exact])
def test_theory_accepts_numpy_integers_and_refuses_huge_or_non_integer_input(fn):
    assert fn(np.int64(64), np.int32(256)) == fn(64, 256)
    for n, m, field in [(64.0, 256, "n"), (64, 2**60, "m"), (True, 256, "n"), (64, np.float64(256), "m")]:
        with pytest.raises(ValueError, match=f"^{field} must be an integer"):
            fn(n, m)


def test_simulation_refuses_an_allocation_it_cannot_make():
    with pytest.raises(ValueError, match="trials must be"):
        pb.simulate_collisions(10**6, 10**6, trials=10**6)


# --------------------------------------------------------------------------- help and warnings


def test_run_help_lists_experiments_scales_flags_and_where_results_go():
    res = cli("run", "--help")
    assert res.returncode == 0
    ex._load_all()
    for name in ex.EXPERIMENTS:
        assert f"  {name} " in res.stdout
    for text in ("book", "paper", "--set", "--device", "--seed", "--out", "--quiet", "DIR/result.json", "pieces"):
        assert text in res.stdout, text


def test_paper_scale_on_a_cpu_warns_with_a_runtime_estimate():
    notes = []
    ex.run_experiment("collisions", "paper", ["n=8", "m=8", "instances=1", "steps=5"], device="cpu",
                      progress=False, warn=notes.append)
    assert any(n.startswith("collisions at paper scale on the CPU: expect roughly") for n in notes), notes


def test_a_chapter_loading_a_damaged_stored_result_names_the_file(tmp_path):
    from polybook import collisions as co

    ex.run_experiment("collisions", "book", ["n=8", "m=8", "instances=2", "steps=30"], device="cpu",
                      out=tmp_path, progress=False, warn=lambda _: None)
    f = tmp_path / "result.json"
    f.write_text(f.read_text().replace('"scale": "book"', '"scale": "paper"'))
    with pytest.raises(ex.ResultError, match=f"^{f}: does not match its checksum"):
        co.load_paper_record(tmp_path)
