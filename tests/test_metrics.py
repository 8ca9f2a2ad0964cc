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


# --------------------------------------------------------------------------- what the metrics accept

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import polybook.metrics as metrics  # noqa: E402

ONE_W = ["band_mask", "uses_by_mass", "uses_by_response", "polysemantic_neurons", "polysemantic_neurons_by_mass",
         "polysemantic_neurons_by_response", "polysemantic_sign_pattern", "winners", "fourth_norm", "one_hot_share"]
TWO_W = ["winner_initial_rank", "start_end_overlap"]


def _values(out):
    return {k: v.tolist() for k, v in out.items()} if isinstance(out, dict) else out.tolist()


@pytest.mark.parametrize("name", TWO_W)
def test_metrics_of_two_weights_refuse_mismatched_shapes_naming_both(name):
    # Fails if W0 (1, 3, 6) against W (1, 3, 4) returns numbers instead of a ValueError naming both shapes.
    with pytest.raises(ValueError, match=r"W_start and W_end must have the same shape.*\(1, 3, 6\) and \(1, 3, 4\)"):
        getattr(metrics, name)(torch.zeros(1, 3, 6), torch.ones(1, 3, 4))
    # Fails if a different number of instances is broadcast instead of refused.
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) and \(1, 3, 4\)"):
        getattr(metrics, name)(torch.ones(2, 3, 4), torch.ones(1, 3, 4))


@pytest.mark.parametrize("name", ONE_W + ["polysemantic_by_rule"] + TWO_W)
def test_metrics_take_numpy_arrays_and_integer_tensors_as_float32_tensors(name):
    W = torch.tensor([[[1.0, 0.0, 2.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    f = getattr(metrics, name)
    args = (lambda w: (w, w)) if name in TWO_W else (lambda w: (w,))
    want = _values(f(*args(W)))
    # Fails if a numpy array or an integer tensor raises a torch error or gives other numbers.
    assert _values(f(*args(W.numpy()))) == want
    assert _values(f(*args(W.to(torch.int64)))) == want
    assert _values(f(*args(np.asarray(W.numpy(), dtype=np.int32)))) == want


@pytest.mark.parametrize("name", ONE_W + ["polysemantic_by_rule"] + TWO_W)
def test_metrics_refuse_what_is_not_real_weights_in_one_line(name):
    f = getattr(metrics, name)
    args = (lambda w: (w, w)) if name in TWO_W else (lambda w: (w,))
    # Fails if a list, a boolean or complex tensor, or too few dimensions end in a torch error.
    for bad, why in [([[1.0, 0.0]], "a torch.Tensor or a numpy array, got list"),
                     (torch.eye(3, dtype=torch.bool), "real numbers .*got torch.bool"),
                     (torch.eye(3, dtype=torch.complex64), "real numbers .*got torch.complex64"),
                     (torch.tensor(1.0), "shape .*got shape \\(\\)")]:
        with pytest.raises(ValueError, match=why):
            f(*args(bad))


def test_metrics_on_zero_neurons_count_nothing_and_winners_are_refused():
    W = torch.zeros(2, 3, 0)  # (instances, n, m = 0): no neurons
    # Fails if m = 0 raises a torch error where "no neurons" has a plain answer.
    assert polysemantic_neurons(W).tolist() == [0, 0]
    assert polysemantic_neurons_by_mass(W).tolist() == [0, 0]
    assert metrics.polysemantic_neurons_by_response(W).tolist() == [0, 0]
    assert {k: v.tolist() for k, v in metrics.polysemantic_by_rule(W).items()} == {
        "band": [0, 0], "mass": [0, 0], "response": [0, 0]}
    assert polysemantic_sign_pattern(W).tolist() == [[0, 0], [0, 0]]
    assert fourth_norm(W).tolist() == [[0.0] * 3] * 2
    assert metrics.one_hot_share(W).tolist() == [0.0, 0.0]
    assert start_end_overlap(W, W).tolist() == [[[0.0] * 3] * 3] * 2
    # Fails if a winner is invented (or a torch error raised) when there is no neuron to win.
    for f, args in [(winners, (W,)), (winner_initial_rank, (W, W))]:
        with pytest.raises(ValueError, match=r"at least one neuron \(m >= 1\).*got shape \(2, 3, 0\)"):
            f(*args)


def test_one_hot_share_refuses_zero_features_instead_of_nan():
    # Fails if the share of no encodings comes back as NaN.
    with pytest.raises(ValueError, match=r"at least one feature \(n >= 1\).*got shape \(2, 0, 4\)"):
        metrics.one_hot_share(torch.zeros(2, 0, 4))


def test_the_book_float32_values_are_unchanged_and_keep_their_dtype():
    g = torch.Generator().manual_seed(0)
    W0, W = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    # Fails if a float32 input is converted (copied to another dtype) or a result changes type.
    assert fourth_norm(W).dtype == torch.float32 and torch.equal(fourth_norm(W), W.pow(4).sum(-1))
    assert torch.equal(start_end_overlap(W0, W), W0 @ W.transpose(-1, -2))
    assert winner_initial_rank(W0, W).dtype == torch.int64
    assert metrics.one_hot_share(W).dtype == torch.float64
