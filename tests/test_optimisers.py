"""The optimisers chapter's science: paired comparisons, winner pairs by sign, and the stored record."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from polybook import optimisers as op
from polybook.experiments import get_experiment, load_result, run_experiment
from polybook.experiments.optimisers import OptimisersConfig, train_paired
from polybook.models import init_weights

STORED = Path(__file__).resolve().parent.parent / "book" / "results" / "optimisers" / "result.json"


def test_winner_pairs_count_pairs_on_one_neuron_by_relative_sign():
    # Fails when pairs are counted by neuron instead of by feature pair, or signs are read off the
    # signed arg-max instead of the largest magnitude.
    W = torch.tensor([[[1.0, 0.0], [-1.0, 0.1], [0.9, 0.0], [0.0, -1.0]]])
    got = op.winner_pairs(W)
    assert got["same"].tolist() == [1] and got["opposite"].tolist() == [2] and got["crowded"].tolist() == [1]


def test_winner_pairs_of_random_winners_average_their_independent_expectation():
    # Fails when the pair counts are biased: for random weights every winner is uniform and independent
    # with a fair sign, so each kind averages C(n, 2) / (2m); 2000 models give a s.e. of about 1.5%.
    n, m, models = 16, 32, 2000
    W = torch.randn(models, n, m, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = op.winner_pairs(W)
    ref = n * (n - 1) / (4 * m)
    for kind in ("same", "opposite"):
        mean = got[kind].double().mean().item()
        se = got[kind].double().std().item() / math.sqrt(models)
        assert abs(mean - ref) < 4 * se, (kind, mean, ref, se)


def test_leader_share_refuses_mismatched_weights():
    # Fails when weights of two shapes are compared silently.
    with pytest.raises(ValueError, match="one shape"):
        op.leader_share(torch.zeros(1, 3, 4), torch.zeros(1, 3, 5))


def test_paired_runs_start_from_the_same_weights_and_gd_is_plain_gradient_descent():
    # Fails when an optimiser trains other weights than the shared draw, or "gd" is not W - lr * grad.
    from polybook.models import loss_and_grad

    W0 = init_weights(2, 6, 12, seed=3)
    W, follow = train_paired("gd", W0, lr=0.05, l1=0.01, steps=1, points=2, device=torch.device("cpu"))
    _, grad = loss_and_grad(W0.clone(), l1=0.01)
    assert torch.allclose(W, W0 - 0.05 * grad, atol=1e-6)
    assert follow["steps"][0] == 0 and len(follow["same"]) == len(follow["steps"])


def test_a_small_record_gives_rows_pairs_and_paired_differences(tmp_path):
    # Fails when the record, its rows or the chapter's comparisons lose a point, an optimiser or the pairing.
    rec = run_experiment("optimisers", "book", ["n=8", "m_over_n=2", "instances=3", "gd_steps=30", "momentum_steps=30",
                                                "adamw_steps=30", "rmsprop_steps=30", "points=3"],
                         device="cpu", out=tmp_path, progress=False)
    rows = op.optimiser_rows(rec)
    assert [(r["n"], r["m"], r["optimizer"]) for r in rows] == [(8, 16, k) for k in op.KINDS]
    d, se = op.paired_difference(rec, 8, 16, "count", "adamw", "gd")
    runs = rec["results"]["points"][0]["runs"]
    assert d == pytest.approx(sum(a - b for a, b in zip(runs["adamw"]["count"], runs["gd"]["count"])) / 3)
    assert op.pair_ratios(rec, 8, 16, "gd")["follow"]["steps"][0] == 0
    with pytest.raises(ValueError, match="no point n = 8, m = 64"):
        op.paired_difference(rec, 8, 64, "count", "adamw", "gd")
    with pytest.raises(ValueError, match="was not run"):
        op.paired_difference(rec, 8, 16, "count", "adamw", "sign")


def test_config_refuses_an_unknown_optimiser():
    # Fails when a misspelt optimiser would be accepted and never trained.
    with pytest.raises(ValueError, match="optimizers must be one of"):
        OptimisersConfig(optimizers=("gd", "adam"))


def test_stored_optimisers_record_matches_a_replayed_slice():
    # Fails when the stored record no longer follows from the code: AdamW at the first point re-trained
    # from the record's own config and seed must give the same counts and leader shares.
    replay = get_experiment("optimisers").replay(load_result(STORED))
    assert replay["replayed"] == replay["stored"]
