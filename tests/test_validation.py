"""Every config rejects bad values with a ValueError naming the field, the value and what is allowed."""

import math

import pytest

from polybook import TrainConfig
from polybook.experiments import apply_overrides
from polybook.experiments.collisions import CollisionsConfig
from polybook.train import resolve_device

BAD_TRAIN = [
    ("n", 0, "n must be an integer >= 1, got 0"),
    ("m", -3, "m must be an integer >= 1, got -3"),
    ("m", 2.0, "m must be an integer >= 1, got 2.0"),
    ("instances", 0, "instances must be an integer >= 1"),
    ("steps", 0, "steps must be an integer >= 1, got 0"),
    ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
    ("lr", -1e-3, "lr must be a finite number > 0"),
    ("lr", math.nan, "lr must be a finite number > 0, got nan"),
    ("l1", -0.1, "l1 must be a finite number >= 0, got -0.1"),
    ("sigma", -0.1, "sigma must be a finite number >= 0, got -0.1"),
    ("sigma", math.nan, "sigma must be a finite number >= 0, got nan"),
    ("noise", "poisson", "noise must be one of 'none', 'bernoulli', 'uniform', 'gaussian', 'laplace', got 'poisson'"),
    ("optimizer", "lbfgs", "optimizer must be one of 'adamw', 'sgd', got 'lbfgs'"),
    ("weight_decay", -1.0, "weight_decay must be a finite number >= 0"),
    ("noise_draws", 0, "noise_draws must be an integer >= 1"),
    ("init_std", 0.0, "init_std must be a finite number > 0"),
    ("seed", -1, "seed must be an integer >= 0"),
]


@pytest.mark.parametrize("field,value,message", BAD_TRAIN)
def test_train_config_rejects_bad_value(field, value, message):
    kwargs = {"noise": "gaussian"} if field == "sigma" else {}
    with pytest.raises(ValueError) as err:
        TrainConfig(**{**kwargs, field: value})
    assert message in str(err.value)


def test_sigma_without_a_noise_kind_is_rejected():
    with pytest.raises(ValueError, match="sigma must be 0 when noise is 'none'"):
        TrainConfig(sigma=0.1)


def test_weight_decay_with_sgd_is_rejected():
    with pytest.raises(ValueError, match="weight_decay must be 0 with optimizer 'sgd'"):
        TrainConfig(optimizer="sgd", weight_decay=0.01)


def test_configs_are_frozen():
    with pytest.raises(Exception):
        TrainConfig().n = 3


@pytest.mark.parametrize("field,value,message", [
    ("m", (), "m must be a non-empty tuple of integers >= 1"),
    ("m", (64, 0), "m must be a non-empty tuple of integers >= 1"),
    ("l1", -1.0, "l1 must be a finite number >= 0"),
    ("optimizer", "rmsprop", "optimizer must be one of"),
])
def test_collisions_config_rejects_bad_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        CollisionsConfig(**{field: value})


def test_overrides_parse_types_and_reject_unknown_keys():
    cfg = apply_overrides(CollisionsConfig(), ["m=64,128", "lr=0.01", "optimizer=sgd", "steps=10"])
    assert cfg.m == (64, 128) and cfg.lr == 0.01 and cfg.optimizer == "sgd" and cfg.steps == 10
    with pytest.raises(ValueError, match="unknown key 'width'; known keys: n, m"):
        apply_overrides(CollisionsConfig(), ["width=3"])
    with pytest.raises(ValueError, match="n must be an integer, got 'x'"):
        apply_overrides(CollisionsConfig(), ["n=x"])
    with pytest.raises(ValueError, match="--set wants key=value"):
        apply_overrides(CollisionsConfig(), ["n"])


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device must be one of 'auto', 'cpu', 'cuda', 'mps', got 'tpu'"):
        resolve_device("tpu")
