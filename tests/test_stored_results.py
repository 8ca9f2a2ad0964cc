"""Stored results are re-made, in a cheap slice, from their own config: nothing stored can go stale."""

import json
import math
from pathlib import Path

import pytest

from polybook.experiments import load_result, run_experiment
from polybook.experiments.collisions import replay_collisions
from polybook.theory import expected_polysemantic_exact, simulate_collisions

RESULTS = Path(__file__).resolve().parent.parent / "book" / "results"
STORED = sorted(RESULTS.glob("*/result.json"))
def test_the_released_list_names_every_stored_result():
    # Fails when a folder is added to book/results without STORED_RESULTS (Colab could not fetch it).
    from polybook.experiments import STORED_RESULTS

    assert sorted(STORED_RESULTS) == sorted(p.parent.name for p in STORED)


def test_replay_reproduces_a_fresh_record_exactly(tmp_path):
    record = run_experiment("collisions", "book", ["n=16", "m=16,32", "instances=4", "steps=1500", "lr=0.01", "l1=0.01"],
                            device="cpu", out=tmp_path, progress=False)
    replay = replay_collisions(load_result(tmp_path), widths=2, instances=3)
    assert replay["replayed"] == replay["stored"]
    assert replay["stored"] == [c[:3] for c in record["results"]["polysemantic"]]


def test_replay_notices_a_tampered_record(tmp_path):
    record = run_experiment("collisions", "book", ["n=16", "m=16", "instances=2", "steps=1500", "lr=0.01", "l1=0.01"],
                            device="cpu", progress=False)
    record["results"]["polysemantic"][0] = [c + 3 for c in record["results"]["polysemantic"][0]]
    replay = replay_collisions(record, widths=1, instances=2)
    assert replay["replayed"] != replay["stored"]


@pytest.mark.parametrize("path", STORED, ids=[p.parent.name for p in STORED])
def test_stored_result_is_intact_and_has_config_results_and_provenance(path):
    record = load_result(path)  # ResultError naming the file when truncated, edited or missing a field
    assert record["provenance"]["polybook"] and record["provenance"]["device"]
    assert record["provenance"].get("git_dirty") is not True, f"{path}: made from modified code"


STORED_COLLISIONS = [p for p in STORED if json.loads(p.read_text())["experiment"] == "collisions"]


def made_reproducibly(record: dict) -> bool:
    """Whether a record was made on a CPU in polybook's reproducible mode (MKL_CBWR=COMPATIBLE, in its provenance)."""
    return record["provenance"].get("numerics", "").startswith("MKL_CBWR=COMPATIBLE")


def replay_tolerance(record: dict, n: int, m: int) -> float:
    """How far a replayed count may lie from the stored one.

    0 for a record made in the reproducible CPU mode: the replay does the same arithmetic on any
    x86-64 CPU, so it must give the same count. A record made on other arithmetic (a GPU, or before
    that mode existed) is replayed from the same initial weights on different rounding: a perturbed
    draw, which (positively correlated with the stored one) lies no further from it than an
    independent draw would. Two independent counts differ by sqrt(2) standard deviations of one; the
    standard deviation comes from the birthday model of the count (theory, not the record), and
    three of them are allowed. That is a weak test: it catches a record of another config when its
    expected count differs by more than the tolerance (at n = 256, a width four times off), not a
    small edit. Re-making the record in the reproducible mode makes it exact.
    """
    if made_reproducibly(record):
        return 0.0
    sd = float(simulate_collisions(n, m, trials=4000, seed=0)["polysemantic"].std())
    return 3 * math.sqrt(2) * sd


@pytest.mark.slow
@pytest.mark.parametrize("path", STORED_COLLISIONS, ids=[p.parent.name for p in STORED_COLLISIONS])
def test_stored_collisions_result_matches_a_replayed_slice(path):
    record = json.loads(path.read_text())
    replay = replay_collisions(record, widths=1, instances=2)
    tol = replay_tolerance(record, record["config"]["n"], record["config"]["m"][0])
    # Fails when a replayed count lies further from the stored one than the tolerance allows.
    for stored, again in zip(replay["stored"], replay["replayed"]):
        assert all(abs(a - b) <= tol for a, b in zip(stored, again)), (stored, again, tol)


def test_replay_tolerance_is_zero_for_reproducible_records_and_separates_neighbouring_widths():
    record = {"provenance": {"numerics": "MKL_CBWR=COMPATIBLE; torch CPU kernels AVX2; some CPU"}}
    assert replay_tolerance(record, 256, 256) == 0
    legacy = {"provenance": {"device": "cpu"}}
    tol = replay_tolerance(legacy, 256, 256)
    a, b = (expected_polysemantic_exact(256, m) for m in (256, 1024))
    assert 0 < tol < a - b  # fails if the tolerance could mistake m = 256 for m = 1024


# --------------------------------------------------------------------------- stored_result (Colab's path)

from polybook.experiments import RESULTS_URL_ENV, ResultError, results_url, stored_result  # noqa: E402


def _release_copy(tmp_path, folder="winners"):
    release = tmp_path / "release"
    (release / folder).mkdir(parents=True)
    (release / folder / "result.json").write_text((RESULTS / folder / "result.json").read_text())
    return release


def test_stored_result_downloads_a_missing_file_once_and_verifies_it(tmp_path, monkeypatch):
    release = _release_copy(tmp_path)
    work = tmp_path / "colab"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(RESULTS_URL_ENV, release.as_uri())
    record = stored_result("winners")
    assert record == load_result(RESULTS / "winners")
    assert (work / "results" / "winners" / "result.json").is_file()  # cached beside the notebook
    (release / "winners" / "result.json").unlink()
    assert stored_result("winners") == record  # the second call reads the cached copy


def test_stored_result_refuses_a_damaged_download_and_names_a_missing_one(tmp_path, monkeypatch):
    release = _release_copy(tmp_path)
    damaged = json.loads((release / "winners" / "result.json").read_text())
    damaged["results"]["m"] = [1]
    (release / "winners" / "result.json").write_text(json.dumps(damaged))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(RESULTS_URL_ENV, release.as_uri())
    with pytest.raises(ResultError, match="checksum"):
        stored_result("winners")
    assert not (tmp_path / "results" / "winners" / "result.json").exists()  # nothing damaged is cached
    with pytest.raises(ResultError, match="no-such-run/result.json could not be read"):
        stored_result("no-such-run")


def test_stored_result_defaults_to_the_release_files(monkeypatch):
    monkeypatch.delenv(RESULTS_URL_ENV, raising=False)
    from polybook._release import TAG

    assert results_url() == f"https://raw.githubusercontent.com/polybook/polybook/{TAG}/book/results"
