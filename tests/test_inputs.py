"""What a user can type: seeds, lists, tiny and huge numbers, the smoke variable, bench options.

Every bad input ends in one line naming what was wrong (``ValueError`` in Python, exit 2 on the
command line), a diverged run in exit 1, an interrupted one in 130; a good input runs. The
property tests generate ``--set KEY=VALUE`` strings for every registered experiment.
"""

import dataclasses
import json
import math
import os
import select
import signal
import subprocess
import sys
import time
import types
import typing

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polybook import _validate as check
from polybook.__main__ import main
from polybook.experiments import SMOKE_ENV, all_experiments, apply_overrides, load_result, run_experiment
from polybook.train import Diverged, TrainConfig, check_finite, divergence_hint, seeded_generator

#: Settings that make each experiment's run take a second or two on a CPU.
TINY = {
    "architectures": ["n=4", "m=8", "instances=2", "steps=5", "batch=2", "variants=tied_relu,untied,minibatch"],
    "collisions": ["n=4", "m=4,8", "instances=2", "steps=5"],
    "collisions-n": ["n=4,8", "m=8,16", "instances=2", "steps=5", "checkpoint_steps=2"],
    "cooccurrence": ["n=4", "m=8", "instances=2", "steps=5", "levels=0,0.1", "groups=2"],
    "interventions": ["n=4", "m=8", "instances=2", "steps=5", "interventions=baseline,resample", "sup_n=4",
                      "sup_m=2", "sup_seeds=2", "sup_steps=5"],
    "noise": ["n=4", "m=8", "instances=2", "steps=10", "sigmas=0.1", "count_instances=2", "separate_steps=10",
              "draws=2", "snapshots=2", "separate_sigmas=0.1"],
    "noise_width": ["ns=4", "instances=2", "steps=10", "l1_steps=10", "snapshots=2", "fluct_n=4", "draws=2",
                    "sigmas=0.1"],
    "sae": ["features=8", "d=8", "samples=64", "widths=1.0", "seeds=2", "steps=5", "batch=8"],
    "sparsification": ["m=100", "lam=0.001", "euler=true", "train=true", "points=4", "train_n=2"],
    "superposition": ["n=4", "m=2", "sparsity=0.0,0.9", "steps=5", "batch_size=8"],
    "optimisers": ["n=4", "m_over_n=2", "instances=2", "gd_steps=5", "momentum_steps=5", "adamw_steps=5",
                   "rmsprop_steps=5", "points=2"],
    "winners": ["n=8", "m=16", "instances=2", "adamw_steps=5", "sgd_steps=5", "points=2", "lr_m=16",
                "adamw_lr_sweep=0.001"],
}

EXPERIMENTS = all_experiments()
USER_SEED_MAX = 2**62


def one_error_line(text: str) -> str:
    """The one stderr line of a refused command (fails on more lines or a traceback)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_tiny_settings_cover_every_experiment():
    # Fails when an experiment is added without tiny settings here, so the tests below skip it.
    assert set(TINY) == set(EXPERIMENTS)


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_largest_documented_seed_runs_every_experiment(name):
    # Fails when an experiment adds its offsets (seed + j, seed + n, ...) and an inner check refuses the sum.
    record = run_experiment(name, "book", TINY[name], device="cpu", seed=USER_SEED_MAX, progress=False)
    assert record["config"]["seed"] == USER_SEED_MAX


def test_a_seed_above_the_maximum_is_refused_naming_the_users_seed():
    # Fails when the refusal quotes a derived seed (seed + j) or accepts a seed above 2^62.
    with pytest.raises(ValueError) as err:
        run_experiment("collisions", "book", TINY["collisions"], device="cpu", seed=USER_SEED_MAX + 1, progress=False)
    assert str(err.value) == f"seed must be an integer >= 0 and <= {USER_SEED_MAX}, got {USER_SEED_MAX + 1}"


def test_internal_seeds_take_the_users_maximum_plus_offsets():
    # Fails when TrainConfig or a generator refuses the user's largest seed plus polybook's offsets.
    assert TrainConfig(seed=USER_SEED_MAX + 1_000).seed == USER_SEED_MAX + 1_000
    assert TrainConfig(seed=2**63 - 1).seed == 2**63 - 1
    seeded_generator(2**63 - 1)  # plus the stream offset, still below torch's 2^64 - 1
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0 that fits in int64"):
        TrainConfig(seed=2**63)


def test_existing_seeds_draw_what_they_drew():
    # Fails when a seed's stream moves: the stored results were made with seed + STREAM_OFFSET (1_000_003).
    a = torch.rand(3, generator=seeded_generator(5))
    assert torch.equal(a, torch.rand(3, generator=torch.Generator().manual_seed(5 + 1_000_003)))


# --------------------------------------------------------------------------- lists


def _tuple_fields():
    for name, exp in EXPERIMENTS.items():
        hints = typing.get_type_hints(type(exp.book))
        for f in dataclasses.fields(exp.book):
            if typing.get_origin(hints[f.name]) is tuple:
                yield name, f.name, typing.get_args(hints[f.name])[0], bool(f.metadata.get("rule", {}).get("empty"))


ITEMS = {int: "integers", float: "numbers", bool: "true/false values", str: "names"}


@pytest.mark.parametrize("name,field,item,empty", list(_tuple_fields()))
def test_an_empty_list_is_refused_when_parsed_unless_the_field_allows_one(name, field, item, empty):
    # Fails when `--set FIELD=` reaches the config (or training) instead of being refused by the parser.
    cfg = EXPERIMENTS[name].book
    if empty:
        assert getattr(apply_overrides(cfg, [f"{field}="]), field) == ()
        return
    with pytest.raises(ValueError) as err:
        apply_overrides(cfg, [f"{field}="])
    assert str(err.value) == f"{field} must be one or more comma-separated {ITEMS[item]}, got an empty value"


def test_an_empty_list_is_refused_even_where_the_config_would_not_check():
    # Fails when the parser turns an empty value into () and leaves the refusal to the config.
    @dataclasses.dataclass(frozen=True)
    class Plain:
        xs: tuple[float, ...] = (1.0,)

    with pytest.raises(ValueError, match=r"^xs must be one or more comma-separated numbers, got an empty value$"):
        apply_overrides(Plain(), ["xs="])


@pytest.mark.parametrize("text", ["m=1,,2", "m=1,2,", "m=,1", "m=1, ,2"])
def test_an_empty_item_inside_a_list_is_refused(text):
    # Fails when `m=1,,2` silently reads as (1, 2).
    with pytest.raises(ValueError, match=r"^m must be comma-separated integers with no empty item, got "):
        apply_overrides(EXPERIMENTS["collisions"].book, [text])


def test_an_empty_item_is_refused_where_an_empty_list_is_allowed():
    # Fails when `groups=,` reads as the empty list instead of a typo.
    cfg = EXPERIMENTS["cooccurrence"].book
    with pytest.raises(ValueError, match=r"^groups must be comma-separated integers with no empty item"):
        apply_overrides(cfg, ["groups=,"])
    assert apply_overrides(cfg, ["groups= 2 , 4 "]).groups == (2, 4)


# --------------------------------------------------------------------------- float32


@pytest.mark.parametrize("field,value,message", [
    ("lr", 1e-320, "lr must be a finite number > 0 in float32 too (where it rounds to 0), got 1e-320"),
    ("l1", 1e-320, "l1 must be 0 or at least 1.4e-45 in size (float32 rounds smaller numbers to 0), got 1e-320"),
    ("init_std", 1e-50, "init_std must be a finite number > 0 in float32 too (where it rounds to 0), got 1e-50"),
])
def test_a_number_that_float32_rounds_to_zero_is_refused(field, value, message):
    # Fails when lr=1e-320 (0 in float32) passes the check `lr > 0` and trains with a learning rate of 0.
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    assert str(err.value) == message


def test_the_smallest_float32_numbers_and_zero_are_accepted():
    # Fails when the float32 rule refuses numbers float32 holds (1.4e-45 > 0) or a plain 0.
    assert TrainConfig(lr=1e-45, l1=1e-45).lr == 1e-45
    assert TrainConfig(l1=0.0).l1 == 0.0
    check.number("p", 0.75, 0.5, strict=True)
    with pytest.raises(ValueError, match=r"^p must be a finite number > 0.5 in float32 too \(where it rounds to 0.5\)"):
        check.number("p", 0.5000000001, 0.5, strict=True)


def test_a_tiny_lr_is_refused_from_the_command_line(capsys):
    # Fails when `--set lr=1e-320` runs (exit 0) instead of exit 2 with one line.
    assert main(["run", "collisions", *[a for s in TINY["collisions"] for a in ("--set", s)], "--set", "lr=1e-320",
                 "--device", "cpu", "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("polybook: error: lr must be a finite number > 0 in float32")


# --------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("settings_,hint", [
    (types.SimpleNamespace(sae_l1=1e30), "lower sae_l1 (now 1e+30)"),
    (types.SimpleNamespace(lr=0.5), "lower lr (now 0.5)"),
    (types.SimpleNamespace(lr=0.5, l1=3.0, sigma=0.1), "lower lr (now 0.5) or l1 (now 3)"),
    (EXPERIMENTS["winners"].book, "lower adamw_lr (now 0.001) or sgd_lr (now 0.05)"),
    (TrainConfig(noise="gaussian", sigma=2.0), "lower lr (now 0.001) or sigma (now 2)"),
    (EXPERIMENTS["sparsification"].book, "check the settings"),
    (None, "check the settings"),
])
def test_divergence_hint_names_only_settings_the_run_has(settings_, hint):
    # Fails when the hint says "lower lr" for a run without an lr, or misses its *_lr and *_l1 settings.
    assert divergence_hint(settings_) == hint


def test_not_finite_error_without_an_lr_names_what_the_run_has():
    # Fails when a divergence of a run that has only sae_l1 tells the user to lower an lr it does not have.
    W = torch.full((1, 2, 2), math.nan)
    with pytest.raises(Diverged) as err:
        check_finite(W, torch.zeros(1, 1), 1, types.SimpleNamespace(sae_l1=1e30, steps=1), "sae")
    assert str(err.value).endswith("became NaN or infinite; lower sae_l1 (now 1e+30)")
    assert "lr" not in str(err.value).replace("sae_l1", "")


@pytest.mark.parametrize("name,setting", [("sae", "lr=1e30"), ("architectures", "lr=1e30"), ("collisions", "lr=1e30")])
def test_a_diverged_run_exits_1_with_one_line(name, setting, capsys, tmp_path):
    # Fails when a divergence exits 2 (as bad input), prints a traceback or more than one line, or writes a result.
    sets = [a for s in [*TINY[name], setting] for a in ("--set", s)]
    assert main(["run", name, *sets, "--device", "cpu", "--quiet", "--out", str(tmp_path)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"polybook: error: {name}") and "diverged" in line and "lower lr (now 1e+30)" in line
    assert not (tmp_path / "result.json").exists()


def test_a_diverged_noise_run_exits_1(capsys, tmp_path):
    # Fails when a diverged noise run exits 2 ("W must be finite", as bad input) instead of 1 (diverged).
    sets = [a for s in [*TINY["noise"], "lr=1e30"] for a in ("--set", s)]
    assert main(["run", "noise", *sets, "--device", "cpu", "--quiet", "--out", str(tmp_path)]) == 1
    assert "diverged" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- bench


@pytest.mark.parametrize("args,needle", [
    (["--min-seconds", "nan"], "--min-seconds must be a finite number of seconds > 0, got nan"),
    (["--min-seconds", "-1"], "--min-seconds must be a finite number of seconds > 0, got -1.0"),
    (["--min-seconds", "inf"], "--min-seconds must be a finite number of seconds > 0, got inf"),
    (["--sizes", "1x2x3,"], "sizes must look like 16x64x128"),
])
def test_bench_refuses_bad_options_with_one_line(args, needle, capsys):
    # Fails when `bench --min-seconds nan` (or -1) runs a benchmark (exit 0) instead of exit 2 with one line.
    assert main(["bench", "--sizes", "1x2x2", *args]) == 2
    assert needle in one_error_line(capsys.readouterr().err)


def test_bench_refuses_a_size_that_cannot_fit_before_running_any(capsys):
    # Fails when an enormous size is allocated (a crash) instead of refused by its memory estimate, exit 2.
    assert main(["bench", "--sizes", "1x2x2,100000x100000x100000"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "the benchmark at size 100000x100000x100000 needs about" in line and "GiB" in line


def test_run_benchmark_checks_its_arguments():
    # Fails when the Python entry point accepts a min_seconds that is not a positive finite number.
    from polybook.bench import run_benchmark

    for bad in (math.nan, 0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match=r"^min_seconds must be a finite number of seconds > 0"):
            run_benchmark([(1, 2, 2)], min_seconds=bad)


# --------------------------------------------------------------------------- POLYBOOK_SMOKE_STEPS


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1e3", "\u00b2"])
@pytest.mark.parametrize("args", [["list"], ["show", "collisions"],
                                  ["run", "collisions", "--set", "n=4", "--set", "m=4", "--device", "cpu", "--quiet"]])
def test_a_bad_smoke_variable_exits_2_naming_it(value, args, monkeypatch, capsys):
    # Fails when a malformed POLYBOOK_SMOKE_STEPS crashes a command, is ignored, or is reported without its name.
    monkeypatch.setenv(SMOKE_ENV, value)
    assert main(args) == 2
    assert one_error_line(capsys.readouterr().err) == \
        f"polybook: error: {SMOKE_ENV} must be a positive integer when set, got {value!r}"


def test_help_with_a_bad_smoke_variable_is_one_line_not_a_traceback():
    # Fails when `python -m polybook --help` dies with a traceback while building the experiments' list.
    res = subprocess.run([sys.executable, "-m", "polybook", "--help"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, SMOKE_ENV: "abc"})
    assert res.returncode == 2
    assert one_error_line(res.stderr) == f"polybook: error: {SMOKE_ENV} must be a positive integer when set, got 'abc'"


# --------------------------------------------------------------------------- interrupt


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    # Fails when an interrupted run exits with another status or prints a traceback.
    cmd = [sys.executable, "-m", "polybook", "run", "collisions", "--set", "n=8", "--set", "m=8,16",
           "--set", "instances=2", "--set", "steps=2000000", "--device", "cpu", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    fd, seen, deadline = proc.stderr.fileno(), b"", time.monotonic() + 120
    while b"it/s" not in seen and time.monotonic() < deadline:  # the progress bar is up: training has begun
        if select.select([fd], [], [], 0.2)[0]:
            seen += os.read(fd, 65536)
        assert proc.poll() is None, seen
    proc.send_signal(signal.SIGINT)
    seen = (seen + proc.communicate(timeout=60)[1]).decode()
    assert proc.returncode == 130, seen
    assert "Traceback" not in seen
    assert seen.strip().splitlines()[-1].split("\r")[-1].startswith("polybook: interrupted")
    assert not (tmp_path / "result.json").exists()


# --------------------------------------------------------------------------- properties


def _text(value) -> str:
    """``value`` written as ``--set`` reads it."""
    if isinstance(value, tuple):
        return ",".join(_text(v) for v in value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


ODD_VALUES = ["", " ", ",", "1,,2", "1,", ",1", "0", "1", "-1", "2", "3", str(2**62), str(2**62 + 1), str(2**63),
              str(2**64), "-" + str(2**63), "nan", "-nan", "inf", "-inf", "1e-320", "1e-45", "1e39", "3.5e38",
              "0.5", "1e30", "none", "None", "true", "false", "yes", "adamw", "sgd", "bernoulli", "1_000", "0x10"]


def _values(now: str):
    """Texts for a field that holds ``now``: ``now`` itself (so that many overrides succeed) and odd ones."""
    return st.integers(0, 7).flatmap(lambda i: st.just(now) if i < 2 else st.one_of(
        st.sampled_from(ODD_VALUES),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.lists(st.sampled_from(["1", "2", "0.5", "", " ", "-1", "nan", "x", "1e-320", "gaussian", "true"]),
                 min_size=1, max_size=4).map(",".join),
        st.text(max_size=12),
    ))


@st.composite
def overrides_for(draw, name: str):
    cfg = EXPERIMENTS[name].book
    names = [f.name for f in dataclasses.fields(cfg)]
    unknown = st.text(min_size=1, max_size=8).filter(lambda k: "=" not in k and k.strip() and k.strip() not in names)
    known = st.sampled_from(names)
    keys = st.integers(0, 9).flatmap(lambda i: known if i < 8 else known.map(str.upper) if i == 8 else unknown)
    out = []
    for key in draw(st.lists(keys, min_size=1, max_size=3)):  # mostly real keys
        now = _text(getattr(cfg, key)) if key in names else "1"
        out.append(f"{key}={draw(_values(now))}")
    return out


def test_cooccurrence_takes_a_huge_n_without_building_arrays_and_the_run_refuses_it(tmp_path):
    # Fails when a huge n reaches numpy in the config's own checks ("array is too big" names no field), or
    # when the run starts instead of being refused by its memory estimate.
    cfg = apply_overrides(EXPERIMENTS["cooccurrence"].book, [f"n={2**62}"])
    assert cfg.n == 2**62
    with pytest.raises(ValueError, match="needs about"):
        run_experiment("cooccurrence", "book", [f"n={2**62}"], device="cpu", out=tmp_path / "out", progress=False)


def _expected(kind, text: str):
    """What ``text`` means for a field of type ``kind`` (None: no simple oracle)."""
    text = text.strip()
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        return None
    if kind is str:
        return text
    if kind is bool:
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    return None


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_overrides_give_a_valid_config_or_one_line_naming_a_key(data):
    # Fails when a --set string raises anything but ValueError, a message of several lines or naming no key, or
    # yields a config that its own constructor would refuse or that differs from the values typed.
    name = data.draw(st.sampled_from(sorted(EXPERIMENTS)))
    items = data.draw(overrides_for(name))
    cfg = EXPERIMENTS[name].book
    names = [f.name for f in dataclasses.fields(cfg)]
    try:
        new = apply_overrides(cfg, items)
    except ValueError as err:
        msg = str(err)
        assert "\n" not in msg and msg.strip() == msg and msg
        first = msg.split()[0]
        assert msg.startswith("unknown key ") or first in names, msg
        return
    rebuilt = type(cfg)(**{n: getattr(new, n) for n in names})
    assert rebuilt == new
    hints = typing.get_type_hints(type(cfg))
    given_ = dict(item.split("=", 1) for item in items)
    given_ = {k.strip(): v.strip() for k, v in given_.items()}
    for n in names:
        if n not in given_:
            assert getattr(new, n) == getattr(cfg, n)
            continue
        want = _expected(hints[n], given_[n])
        if want is not None:
            assert getattr(new, n) == want
        elif typing.get_origin(hints[n]) is tuple:
            assert len(getattr(new, n)) == (given_[n].count(",") + 1 if given_[n] else 0)


CLI_KEYS = ["lr", "l1", "seed", "sigmas", "m", "optimizer", "steps", "bogus"]  # a key TINY sets is overridden
CLI_VALUES = ["", "1,,2", "nan", "1e-320", "1e39", "1e30", "-1", "0.001", "7", str(2**62), str(2**62 + 1), "sgd", "x"]


@settings(max_examples=4, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(TINY)), key=st.sampled_from(CLI_KEYS), value=st.sampled_from(CLI_VALUES))
def test_the_command_line_runs_or_refuses_in_one_line(name, key, value, tmp_path_factory):
    # Fails when a run exits 0 without a verified result.json, or exits 1/2 with more than one line, a
    # traceback or a result.json (or its temporary file) left behind, or exits with any other status.
    out = tmp_path_factory.mktemp("out") / "run"
    items = [f"{key}={value}", *TINY[name]]  # later --set wins: sizes and steps stay tiny
    try:
        expected = dataclasses.asdict(apply_overrides(EXPERIMENTS[name].book, items))
    except ValueError:
        expected = None
    res = subprocess.run([sys.executable, "-m", "polybook", "run", name, *[a for s in items for a in ("--set", s)],
                          "--out", str(out), "--device", "cpu", "--quiet"], capture_output=True, text=True, timeout=300)
    if res.returncode == 0:
        record = load_result(out / "result.json")
        assert record["experiment"] == name and expected is not None
        assert record["config"] == json.loads(json.dumps(expected))
        return
    assert res.returncode in (1, 2), res.stderr
    line = one_error_line(res.stderr)
    assert line.startswith("polybook: error: ")
    assert res.returncode == 1 or expected is None, line  # exit 2 only for what the config refuses
    assert not (out / "result.json").exists()
    assert not (out.exists() and list(out.glob(".*.tmp")))
