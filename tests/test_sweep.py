"""A batched sweep over widths trains the same models as separate runs."""

import dataclasses

import pytest
import torch

from polybook import TrainConfig, polysemantic_neurons, train
from polybook.sweep import train_widths


def test_masked_width_sweep_matches_separate_runs():
    cfg = TrainConfig(n=12, instances=3, steps=400, lr=1e-2, l1=1e-2, seed=7)
    ms = [12, 20, 36]
    batched = train_widths(cfg, ms, device="cpu", progress=False)
    for j, (m, res) in enumerate(zip(ms, batched)):
        alone = train(dataclasses.replace(cfg, m=m, seed=7 + j), device="cpu", progress=False)
        assert torch.equal(res.W0, alone.W0)
        # Same model; only the order of float additions inside the padded matmuls differs.
        assert torch.allclose(res.W, alone.W, atol=1e-4), (res.W - alone.W).abs().max()
        assert torch.equal(polysemantic_neurons(res.W), polysemantic_neurons(alone.W))
        assert torch.allclose(res.losses, alone.losses, rtol=1e-3, atol=1e-6)


def test_masked_neurons_never_move():
    cfg = TrainConfig(n=4, instances=2, steps=50, lr=1e-2, l1=1e-3, optimizer="adamw", weight_decay=0.01)
    narrow, wide = train_widths(cfg, [5, 9], device="cpu", progress=False)
    assert narrow.W.shape == (2, 4, 5) and wide.W.shape == (2, 4, 9)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[:, :5] = True
    res = train(dataclasses.replace(cfg, m=9), neuron_mask=mask, device="cpu", progress=False)
    assert torch.all(res.W[:, :, 5:] == 0)


def test_width_sweep_rejects_noise():
    with pytest.raises(ValueError, match="noise must be 'none'"):
        train_widths(TrainConfig(noise="gaussian", sigma=0.1), [4, 8], device="cpu", progress=False)
