"""The command line: exit codes, one-line errors, result.json contents."""

import json
import subprocess
import sys

import pytest


def cli(*args):
    return subprocess.run([sys.executable, "-m", "polybook", *args], capture_output=True, text=True, timeout=300)


def test_list_names_the_collisions_experiment():
    res = cli("list")
    assert res.returncode == 0
    assert any(line.startswith("collisions ") for line in res.stdout.splitlines())


@pytest.mark.parametrize("args,needle", [
    (["run", "nope"], "unknown experiment 'nope'"),
    (["run", "collisions", "--set", "bogus=1"], "unknown key 'bogus'"),
    (["run", "collisions", "--set", "l1=-1"], "l1 must be a finite number >= 0"),
    (["run", "collisions", "--set", "m=64,x"], "m must be comma-separated integers"),
    (["run", "collisions", "--scale", "huge"], "invalid choice: 'huge'"),
    (["run", "collisions", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["run", "collisions", "--seed", "-2"], "seed must be an integer >= 0"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(args, needle):
    res = cli(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in res.stderr


def test_run_writes_result_json_with_config_results_and_provenance(tmp_path):
    res = cli("run", "collisions", "--set", "n=8", "--set", "m=8,16", "--set", "instances=2",
              "--set", "steps=20", "--device", "cpu", "--seed", "5", "--quiet", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    rec = json.loads((tmp_path / "result.json").read_text())
    assert rec["experiment"] == "collisions" and rec["scale"] == "book"
    assert rec["config"]["seed"] == 5 and rec["config"]["m"] == [8, 16]
    r = rec["results"]
    assert r["n"] == 8 and r["m"] == [8, 16]
    assert [len(x) for x in r["polysemantic"]] == [2, 2]
    assert r["predicted"] == [2.0, 1.0]
    prov = rec["provenance"]
    assert prov["device"] == "cpu" and prov["torch"] and prov["polybook"] == "0.1.0"
    assert prov["wall_seconds"] >= 0 and prov["command"].startswith("python -m polybook run collisions")


def test_paper_scale_is_the_papers_setting():
    res = cli("show", "collisions", "--scale", "paper")
    cfg = json.loads(res.stdout)
    assert cfg["n"] == 256 and cfg["m"] == list(range(256, 4097, 256))
    assert cfg["instances"] == 16 and cfg["steps"] == 7500 and cfg["lr"] == 1e-3 and cfg["l1"] == 1e-3
