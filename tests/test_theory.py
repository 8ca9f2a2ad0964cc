"""Theory functions against brute-force random assignment."""

import math

import numpy as np
import pytest

from polybook.theory import (
    collision_counts,
    expected_colliding_pairs,
    expected_polysemantic_exact,
    predicted_polysemantic,
    simulate_collisions,
)


@pytest.mark.parametrize("n,m", [(8, 8), (20, 50), (64, 256), (256, 4096)])
def test_exact_collision_pairs_match_brute_force(n, m):
    sim = simulate_collisions(n, m, trials=20_000, seed=1)["pairs"]
    se = sim.std() / math.sqrt(len(sim))
    assert abs(sim.mean() - expected_colliding_pairs(n, m)) < 4 * se


@pytest.mark.parametrize("n,m", [(8, 8), (20, 50), (64, 256), (256, 256)])
def test_exact_polysemantic_expectation_matches_brute_force(n, m):
    sim = simulate_collisions(n, m, trials=20_000, seed=2)["polysemantic"]
    se = sim.std() / math.sqrt(len(sim))
    assert abs(sim.mean() - expected_polysemantic_exact(n, m)) < 4 * se


def test_paper_estimate_is_the_large_m_limit_of_the_exact_expectation():
    # For m >> n the exact value tends to C(n, 2) / (2m) = n(n-1)/(4m): half the colliding pairs.
    for n in (64, 256):
        for m in (64 * n, 1024 * n):
            exact = expected_polysemantic_exact(n, m)
            assert math.isclose(exact, n * (n - 1) / (4 * m), rel_tol=n / m)
            assert math.isclose(exact, predicted_polysemantic(n, m), rel_tol=1 / n + n / m)
    assert predicted_polysemantic(256, 1024) == 16.0
    assert round(expected_polysemantic_exact(256, 256), 1) == 39.6


def test_brute_force_counts_are_consistent():
    sim = simulate_collisions(30, 40, trials=500, seed=0)
    assert np.all(sim["polysemantic"] <= sim["shared"])
    assert np.all(sim["shared"] <= sim["pairs"])


@pytest.mark.parametrize("bad", [(0, 4), (4, 0), (2.5, 4), (True, 4)])
def test_theory_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        predicted_polysemantic(*bad)


def test_collision_counts_of_a_hand_made_trial():
    # neuron 0: a positive and a negative feature (polysemantic); neuron 1: two positives (shared only)
    got = collision_counts(np.array([[0, 0, 1, 1], [2, 2, 2, 2]]), np.array([[1, 0, 1, 1], [1, 1, 1, 0]], bool), 3)
    assert got["polysemantic"].tolist() == [1, 1]
    assert got["shared"].tolist() == [2, 1]
    assert got["pairs"].tolist() == [2, 6]


def test_collision_counts_rejects_winners_outside_the_neurons_and_mismatched_signs():
    with pytest.raises(ValueError, match="neuron indices in 0 .. m-1 = 1"):
        collision_counts(np.array([[0, 2]]), np.array([[True, False]]), 2)
    with pytest.raises(ValueError, match=r"both be \(trials, n\) arrays"):
        collision_counts(np.array([[0, 1]]), np.array([True, False]), 2)
