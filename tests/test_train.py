"""The training loop: shapes, determinism, snapshots, optimisers and noise."""

import math

import pytest
import torch

from polybook import TrainConfig, fourth_norm, init_weights, sample_noise, train
from polybook.models import loss_and_grad


def test_shapes_of_a_training_result():
    cfg = TrainConfig(n=5, m=9, instances=3, steps=20)
    res = train(cfg, device="cpu", progress=False, snapshot_steps=[0, 10, 20])
    assert res.W.shape == res.W0.shape == (3, 5, 9)
    assert res.losses.shape == (20, 3)
    assert sorted(res.snapshots) == [0, 10, 20]
    assert torch.equal(res.snapshots[0], res.W0) and torch.equal(res.snapshots[20], res.W)


def test_same_seed_same_weights_other_seed_other_weights():
    cfg = TrainConfig(n=6, m=12, instances=2, steps=50, l1=1e-3, noise="bernoulli", sigma=0.1)
    a = train(cfg, device="cpu", progress=False)
    b = train(cfg, device="cpu", progress=False)
    c = train(TrainConfig(**{**cfg.__dict__, "seed": 1}), device="cpu", progress=False)
    assert torch.equal(a.W, b.W)
    assert not torch.equal(a.W, c.W)


def test_sgd_step_is_plain_gradient_descent():
    cfg = TrainConfig(n=4, m=6, steps=1, lr=0.1, optimizer="sgd", l1=0.01)
    res = train(cfg, device="cpu", progress=False)
    _, grad = loss_and_grad(res.W0, l1=0.01)
    assert torch.allclose(res.W, res.W0 - 0.1 * grad, atol=1e-7)


def test_snapshot_fn_stores_a_metric_instead_of_weights():
    cfg = TrainConfig(n=4, m=8, instances=2, steps=5)
    res = train(cfg, device="cpu", progress=False, snapshot_steps=[5], snapshot_fn=fourth_norm)
    assert torch.allclose(res.snapshots[5], fourth_norm(res.W))


def test_training_reduces_the_loss_and_l1_sparsifies():
    cfg = TrainConfig(n=8, m=32, instances=2, steps=3000, lr=1e-2, l1=1e-2)
    res = train(cfg, device="cpu", progress=False)
    assert res.losses[-1].max() < 0.1 * res.losses[0].min()
    assert fourth_norm(res.W).mean() > 0.8  # nearly one-hot encodings
    assert fourth_norm(res.W0).mean() < 0.3


def test_explicit_initial_weights_are_used_and_shape_checked():
    W0 = init_weights(1, 3, 4, seed=9)
    assert torch.equal(train(TrainConfig(n=3, m=4, steps=1), W0=W0, device="cpu", progress=False).W0, W0)
    with pytest.raises(ValueError, match="W0 must have shape"):
        train(TrainConfig(n=3, m=5, steps=1), W0=W0, device="cpu", progress=False)


def test_snapshot_steps_outside_the_run_are_rejected():
    with pytest.raises(ValueError, match="snapshot_steps"):
        train(TrainConfig(steps=3), snapshot_steps=[4], device="cpu", progress=False)


@pytest.mark.parametrize("kind,excess_kurtosis", [("bernoulli", -2.0), ("uniform", -1.2), ("gaussian", 0.0), ("laplace", 3.0)])
def test_noise_has_zero_mean_requested_std_and_known_kurtosis(kind, excess_kurtosis):
    x = sample_noise(kind, 0.1, (400_000,), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(x.mean().item()) < 1e-3
    assert math.isclose(x.std().item(), 0.1, rel_tol=0.01)
    kurt = ((x - x.mean()) ** 4).mean().item() / x.var().item() ** 2 - 3
    assert abs(kurt - excess_kurtosis) < 0.1 + 0.05 * abs(excess_kurtosis)


def test_shared_noise_is_the_same_for_every_input():
    # With one noise vector shared by all inputs, every row of the hidden noise is identical, which the
    # loss sees as a rank-one perturbation; check through a run that it differs from independent noise.
    base = dict(n=4, m=8, steps=30, lr=0.05, optimizer="sgd", noise="gaussian", sigma=0.3)
    shared = train(TrainConfig(**base, noise_shared=True), device="cpu", progress=False)
    indep = train(TrainConfig(**base), device="cpu", progress=False)
    assert not torch.equal(shared.W, indep.W)


def test_averaging_noise_draws_reduces_gradient_noise():
    base = dict(n=4, m=8, steps=1, lr=1.0, optimizer="sgd", noise="gaussian", sigma=0.5)
    W0 = init_weights(1, 4, 8, seed=2)
    clean = train(TrainConfig(n=4, m=8, steps=1, lr=1.0, optimizer="sgd"), W0=W0, device="cpu", progress=False).W
    spread = {}
    for draws in (1, 64):
        steps = torch.stack([
            train(TrainConfig(**base, noise_draws=draws, seed=s), W0=W0, device="cpu", progress=False).W
            for s in range(20)
        ])
        spread[draws] = (steps - clean).pow(2).mean().item()
    assert spread[64] < spread[1] / 8
