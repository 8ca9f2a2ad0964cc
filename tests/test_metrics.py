"""Metrics on hand-built weight matrices."""

import torch

from polybook.metrics import (
    polysemantic_neurons,
    polysemantic_neurons_by_mass,
    polysemantic_sign_pattern,
    start_end_overlap,
    fourth_norm,
    winner_initial_rank,
    winners,
)


def monosemantic():
    W = torch.zeros(3, 5)
    W[0, 0], W[1, 2], W[2, 4] = 1.0, -0.9, 1.1
    return W


def shared_pair(sign):
    W = torch.zeros(3, 5)
    W[0, 1], W[1, 1], W[2, 3] = 1.0, sign * 0.95, 1.0
    return W


def test_band_rule_counts_nothing_on_a_monosemantic_encoding():
    assert polysemantic_neurons(monosemantic()).item() == 0
    assert polysemantic_neurons_by_mass(monosemantic()).item() == 0


def test_band_rule_counts_opposite_sign_pair_as_polysemantic():
    W = shared_pair(-1)
    assert polysemantic_neurons(W).item() == 1
    assert polysemantic_neurons_by_mass(W).item() == 1
    assert polysemantic_sign_pattern(W).tolist() == [1, 0]


def test_same_sign_pair_is_polysemantic_and_reported_as_same_sign():
    W = shared_pair(+1)
    assert polysemantic_neurons(W).item() == 1
    assert polysemantic_sign_pattern(W).tolist() == [0, 1]


def test_band_edges_are_inclusive_and_weights_outside_do_not_count():
    W = torch.tensor([[0.8], [-1.2]])
    assert polysemantic_neurons(W).item() == 1
    assert polysemantic_neurons(torch.tensor([[0.79], [1.0]])).item() == 0
    assert polysemantic_neurons(torch.tensor([[1.21], [1.0]])).item() == 0


def test_by_mass_rule_ignores_weight_scale_but_band_rule_does_not():
    W = shared_pair(-1) * 0.3  # small weights: not in the band, but still each feature's main neuron
    assert polysemantic_neurons(W).item() == 0
    assert polysemantic_neurons_by_mass(W).item() == 1


def test_metrics_batch_over_instances():
    W = torch.stack([monosemantic(), shared_pair(-1), shared_pair(1)])
    assert polysemantic_neurons(W).tolist() == [0, 1, 1]
    assert polysemantic_sign_pattern(W).tolist() == [[0, 0], [1, 0], [0, 1]]


def test_winners_and_fourth_norm():
    W = monosemantic()
    assert winners(W).tolist() == [0, 2, 4]
    assert torch.allclose(fourth_norm(W), torch.tensor([1.0, 0.9**4, 1.1**4]))
    dense = torch.full((1, 100), 0.1)  # unit norm spread evenly over 100 neurons
    assert torch.allclose(fourth_norm(dense), torch.tensor([0.01]))


def test_start_end_overlap_is_w_start_times_w_end_transposed():
    A, B = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    ov = start_end_overlap(A, B)
    assert ov.shape == (2, 4, 4)
    assert torch.allclose(ov[1, 2, 3], A[1, 2] @ B[1, 3])


def test_winner_initial_rank_counts_how_many_initial_weights_beat_the_final_winner():
    W0 = torch.tensor([[[0.3, -0.7, 0.5, 0.1], [0.2, 0.1, 0.0, -0.4]]])
    W_end = torch.tensor([[[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
    assert winner_initial_rank(W0, W_end).tolist() == [[0, 3]]
