"""The experiment as a declared unit: every test here runs over the registry, so a new experiment is covered
the moment its file is listed in ``polybook.experiments.registry.MODULES``."""

import dataclasses
import importlib
import json
import math
import typing
from pathlib import Path

import pytest
import torch

from polybook.experiments import (
    EXPERIMENTS,
    MODULES,
    STORED_RESULTS,
    Experiment,
    ExperimentConfig,
    all_experiments,
    apply_overrides,
    get_experiment,
    param,
)

RESULTS = Path(__file__).resolve().parent.parent / "book" / "results"
NAMES = sorted(all_experiments())


def test_the_registry_lists_one_file_per_experiment_named_after_it():
    # Fails when a file in MODULES declares no EXPERIMENT, or one under another name.
    assert len(NAMES) == len(MODULES)
    for module in MODULES:
        exp = importlib.import_module(f"polybook.experiments.{module}").EXPERIMENT
        assert isinstance(exp, Experiment) and exp.name.replace("-", "_") == module


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown experiment 'colisions'; known: .*collisions-n"):
        get_experiment("colisions")
    with pytest.raises(ValueError, match="unknown experiment"):
        get_experiment("collisions_n")  # the file's name is not the experiment's


@pytest.mark.parametrize("name", NAMES)
def test_each_experiment_declares_configs_estimates_and_rows(name):
    exp = get_experiment(name)
    assert issubclass(exp.config, ExperimentConfig)
    for scale, cfg in exp.scales.items():
        assert isinstance(cfg, exp.config), scale
        assert cfg.peak_bytes(torch.device("cpu")) > 0, scale
        assert cfg.flops() > 0, scale
    assert exp.paper.flops() >= exp.book.flops()
    assert exp.summary and "\n" not in exp.summary
    assert exp.rows is None or callable(exp.rows)


def _field_texts(config) -> dict[str, str]:
    """Every field of ``config`` written the way ``--set`` takes it."""
    def text(v):
        if isinstance(v, tuple):
            return ",".join(text(x) for x in v)
        return "none" if v is None else repr(v) if isinstance(v, float) else str(v)

    return {f.name: text(getattr(config, f.name)) for f in dataclasses.fields(config)}


@pytest.mark.parametrize("name", NAMES)
def test_every_field_can_be_set_from_the_command_line(name):
    # Fails when a field has a type the --set parser cannot write back (the config would be unreachable).
    book = get_experiment(name).book
    texts = _field_texts(book)
    assert apply_overrides(book, texts) == book


def _bad_values(kind) -> list:
    """Values no field of declared type ``kind`` accepts (whatever its bounds)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if type(None) in args:
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return ["yes", 1]
    if kind is int:
        return [-1, 2.5, True, 2**64]
    if kind is float:
        return [-1.0, math.nan, math.inf, "0.1", 1e39]
    if kind is str:
        return ["no-such-choice", 3]
    if origin is tuple:
        return [[1], "abc", (_bad_values(args[0])[0],)]
    raise AssertionError(f"no bad values for {kind}")


@pytest.mark.parametrize("name", NAMES)
def test_every_field_refuses_values_of_the_wrong_kind_naming_itself(name):
    # Fails when some field of some experiment accepts a negative count, NaN, a wrong type or an unknown name.
    book = get_experiment(name).book
    hints = typing.get_type_hints(type(book))
    for f in dataclasses.fields(book):
        for bad in _bad_values(hints[f.name]):
            with pytest.raises(ValueError, match=f.name):
                dataclasses.replace(book, **{f.name: bad})


def test_the_config_base_reads_bounds_choices_and_cross_field_rules():
    @dataclasses.dataclass(frozen=True)
    class Toy(ExperimentConfig):
        n: int = 4
        k: int = param(0, minimum=0, maximum=3)
        rate: float = param(0.5, strict=True, maximum=1.0)
        kind: str = param("a", choices=("a", "b"))
        sizes: tuple[int, ...] = param((), empty=True)
        weights: tuple[float, ...] = (0.0, 1.0)
        lr: float = 1e-3
        seed: int = 0

        def check(self) -> None:
            if self.k > self.n:
                raise ValueError(f"k must be <= n, got {self.k}")

    Toy()  # the defaults are valid
    for change, needle in [({"k": 4}, "k must be an integer >= 0 and <= 3"), ({"rate": 0.0}, "rate must be a finite number > 0"),
                           ({"kind": "c"}, "kind must be one of 'a', 'b'"), ({"sizes": (0,)}, "sizes must be"),
                           ({"weights": ()}, "weights must be a non-empty tuple"), ({"lr": 0.0}, "lr must be"),
                           ({"seed": 2**62 + 1}, "seed must be"), ({"n": 2, "k": 3}, "k must be <= n")]:
        with pytest.raises(ValueError, match=needle):
            Toy(**change)
    assert Toy(sizes=(1, 2)).capped(5) == Toy(sizes=(1, 2))


@pytest.mark.parametrize("folder", STORED_RESULTS)
def test_every_stored_result_belongs_to_an_experiment_that_declares_a_replay(folder):
    # Fails when a stored result could not be re-made in a slice (its replay test would be missing).
    record = json.loads((RESULTS / folder / "result.json").read_text())
    exp = get_experiment(record["experiment"])
    assert exp.replay is not None, f"{folder}: experiment {exp.name} declares no replay"
    assert set(record["config"]) == {f.name for f in dataclasses.fields(exp.config)}, folder
    assert EXPERIMENTS[exp.name] is exp


@pytest.mark.parametrize("name,field", [
    ("winners", "m"), ("winners", "adamw_lr_sweep"), ("noise_width", "ns"), ("noise_width", "families"),
    ("noise_width", "sigmas"), ("cooccurrence", "levels"), ("cooccurrence", "groups"), ("sae", "widths"),
    ("architectures", "variants"), ("interventions", "interventions"), ("noise", "sigmas"), ("noise", "families"),
    ("noise", "shared_families"), ("noise", "separate_families"), ("noise", "separate_sigmas"),
])
def test_a_repeated_entry_that_would_overwrite_or_duplicate_a_result_is_refused(name, field):
    # Fails when a config accepts a repeated entry in a field whose entries key its results (one entry would
    # silently overwrite the other, or be trained twice and counted as two).
    book = get_experiment(name).book
    values = getattr(book, field)
    with pytest.raises(ValueError, match=f"{field} must be a tuple without repeated values"):
        dataclasses.replace(book, **{field: values[:1] * 2 + values[1:]})
