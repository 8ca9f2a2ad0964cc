"""The prevention chapter's science: the width price, the interventions, the seed-consistency test."""

from pathlib import Path

import numpy as np
import pytest
import torch

import polybook as pb
from polybook import prevention as pv
from polybook.experiments import load_result, run_experiment

STORED = Path(__file__).resolve().parent.parent / "book" / "results" / "interventions" / "result.json"


@pytest.mark.parametrize("n", [8, 32, 100])
def test_width_needed_is_the_first_width_below_the_target(n):
    m = pv.width_needed(n)
    assert pb.expected_polysemantic_exact(n, m) < 1.0
    assert m == n or pb.expected_polysemantic_exact(n, m - 1) >= 1.0


def test_width_needed_grows_like_n_squared_and_a_share_like_n():
    # n^2 / (4 m) < 1 needs m of about n^2 / 4 (the exact expectation is a little below n^2 / (4m))
    for n in (128, 256):
        assert 0.8 < pv.width_needed(n) / (n * n / 4) < 1.0
    ratio = pv.width_needed(256, 0.05, per_feature=True) / pv.width_needed(128, 0.05, per_feature=True)
    assert 1.9 < ratio < 2.1


def test_width_price_counts_parameters_and_flops():
    p = pv.width_price(16, 64)
    assert p["params"] == 16 * 64 and p["params_ratio"] == 4.0 and p["flops_per_step"] == 4 * 16 * 16 * 64


@pytest.mark.parametrize("call, needle", [
    (lambda: pv.width_needed(1), "n must be"),
    (lambda: pv.width_needed(8, 0.0), "target must be"),
    (lambda: pv.initial_weights("uniform", 1, 4, 8), "init must be"),
    (lambda: pv.initial_weights("orthogonal", 1, 8, 4), "n must be"),
    (lambda: pv.train_intervention("nothing", 4, 8, 1, 10), "name must be"),
    (lambda: pv.InterventionsConfig(m=8, n=16), "m must be"),
    (lambda: pv.InterventionsConfig(interventions=("resample",)), "interventions must be"),
    (lambda: pv.InterventionsConfig(sup_seeds=1), "sup_seeds must be"),
    (lambda: pv.seed_consistency([[(0, 1)]], 4), "pairs must be"),
])
def test_bad_input_is_refused_with_the_field_named(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_initialisations():
    torch.testing.assert_close(pv.initial_weights("normal", 3, 5, 10, seed=2), pb.init_weights(3, 5, 10, seed=2))
    O = pv.initial_weights("orthogonal", 2, 6, 10, seed=1)
    torch.testing.assert_close(O @ O.transpose(-1, -2), torch.eye(6).expand(2, 6, 6), atol=1e-5, rtol=0)
    S = pv.initial_weights("sparse", 2, 6, 20, seed=1)
    assert ((S != 0).sum(-1) == 8).all()
    H = pv.initial_weights("one_hot", 2, 6, 20, seed=1)
    own = H.abs().argmax(-1)
    assert all(len(set(row.tolist())) == 6 for row in own)  # every feature has a neuron of its own
    assert torch.allclose(H.abs().amax(-1), torch.ones(2, 6), atol=0.35)


def test_train_schedule_without_hooks_is_polybook_train():
    cfg = pb.TrainConfig(n=8, m=16, instances=2, steps=300, lr=1e-3, l1=1e-3, weight_decay=0.01)
    W0 = pb.init_weights(2, 8, 16, seed=3)
    W, k = pv.train_schedule(W0, cfg)
    ref = pb.train(cfg, W0=W0, device="cpu", progress=False)
    assert k == 0
    assert torch.equal(W, ref.W)


def test_warmup_changes_the_run_and_resampling_separates_leaders():
    cfg = pb.TrainConfig(n=8, m=16, instances=2, steps=300, lr=1e-3, l1=1e-2)
    W0 = pb.init_weights(2, 8, 16, seed=3)
    W_warm, _ = pv.train_schedule(W0, cfg, l1_warmup=0.5)
    assert not torch.equal(W_warm, pv.train_schedule(W0, cfg)[0])
    W = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.9, 0.0, 0.0, 0.0], [-0.8, 0.1, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
    done = pv.resample_shared(W, generator=torch.Generator().manual_seed(0))
    assert done == 2
    assert W[0, 0, 0] == 1.0 and W[0, 1, 0] == 0 and W[0, 2, 0] == 0  # the largest keeps neuron 0
    assert (W[0, 1:3, 2] == 0).all()  # and nothing lands on another feature's leading neuron


def test_shared_pairs_and_overlap():
    W = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.9, 0.0], [0.0, 1.0]]])
    assert pv.shared_pairs(pb.band_mask(W)) == [[(0, 1), (0, 2), (1, 2)]]
    assert pv.pair_overlap([(0, 1), (0, 2)], [(0, 2), (1, 2)]) == 1


def _random_pairings(seeds, n, k, rng):
    out = []
    for _ in range(seeds):
        perm = rng.permutation(n)
        out.append(sorted((min(a, b), max(a, b)) for a, b in zip(perm[:k], perm[k:2 * k])))
    return out


def test_seed_consistency_finds_repeated_pairings_and_not_random_ones():
    rng = np.random.default_rng(0)
    fixed = [[(0, 1), (2, 3), (4, 5)]] * 6
    r = pv.seed_consistency(fixed, n=20, permutations=500)
    assert r["observed"] == 3 and r["p"] < 0.01 and r["z"] > 10
    rand = pv.seed_consistency(_random_pairings(12, 20, 4, rng), n=20, permutations=500)
    assert abs(rand["z"]) < 4  # the null is right for independent pairings
    # the null's mean is the exact expectation k^2 / C(n, 2) of two independent random pairings
    assert abs(rand["null_mean"] - 16 / 190) < 0.01


def test_pair_test_rejects_at_most_alpha_under_the_null_and_always_when_pairs_repeat():
    rng = np.random.default_rng(1)
    null = pv.pair_test_power(_random_pairings(16, 12, 3, rng), n=12, permutations=400)
    assert null["tests"] == 120
    assert null["rejected"] <= 0.05 + 3 * (0.05 * 0.95 / 120) ** 0.5
    assert pv.pair_test_power([[(0, 1), (2, 3)]] * 4, n=12, permutations=400)["rejected"] == 1.0


def test_experiment_contract_and_replay(tmp_path):
    rec = run_experiment("interventions", "book", ["n=8", "m=16", "instances=2", "steps=2000",
                         "interventions=baseline,resample,wide4_pruned_early,l1_warmup", "sup_seeds=2", "sup_steps=30"],
                         device="cpu", out=tmp_path, progress=False)
    res = rec["results"]
    assert [r["name"] for r in res["interventions"]] == ["baseline", "resample", "wide4_pruned_early", "l1_warmup"]
    for r in res["interventions"]:
        assert len(r["polysemantic"]) == 2 and len(r["final_loss"]) == 2 and len(r["pairs"]) == 2
    assert res["interventions"][2]["flops_ratio"] == pytest.approx((4 * 1500 + 500) / 2000)
    assert len(res["necessary"]["pairs"]) == 2
    rows = pv.intervention_rows(load_result(tmp_path))
    assert rows[0]["d_count"] == 0 and rows[1]["paired"] and not rows[2]["paired"]
    replay = pv.replay_interventions(rec, names=("baseline", "l1_warmup"), instances=1)
    assert replay["replayed"] == replay["stored"]
    with pytest.raises(ValueError, match="names must be"):
        pv.replay_interventions(rec, names=("resample",))


@pytest.mark.skipif(not STORED.exists(), reason="the stored book-scale run has not been made")
def test_stored_result_matches_a_replayed_slice():
    record = load_result(STORED)
    assert record["provenance"]["git_dirty"] is False
    replay = pv.replay_interventions(record, names=("baseline", "wd_0.01"), instances=2)
    assert replay["replayed"] == replay["stored"]
