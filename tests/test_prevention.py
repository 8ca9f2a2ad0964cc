"""The prevention chapter's science: the width price, the interventions, the seed-consistency test."""

from pathlib import Path

import numpy as np
import pytest
import torch

import polybook as pb
from polybook import prevention as pv
from polybook.experiments import get_experiment, load_result, run_experiment
from polybook.experiments.interventions import INTERVENTIONS, InterventionsConfig
from polybook.train import Diverged

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


def test_every_initialisation_is_made_from_the_baseline_draw():
    """Instance b of each intervention is paired with the baseline's instance b: each start is a function
    of the same draw (scaled, its polar factor, masked, or its columns first in a wider start)."""
    D = pb.init_weights(3, 6, 20, seed=4)
    torch.testing.assert_close(pv.initial_weights("normal", 3, 6, 20, seed=4, scale=0.5), 0.5 * D)
    U, _, Vh = torch.linalg.svd(D.double(), full_matrices=False)
    torch.testing.assert_close(pv.initial_weights("orthogonal", 3, 6, 20, seed=4), (U @ Vh).float())
    S = pv.initial_weights("sparse", 3, 6, 20, seed=4)
    kept = S != 0
    torch.testing.assert_close(S[kept], (D * (20 / 8) ** 0.5)[kept])
    H = pv.initial_weights("one_hot", 3, 6, 20, seed=4)
    small = H.abs() < 0.9
    torch.testing.assert_close(H[small], 0.1 * D[small])
    Wd = pv.initial_weights("normal", 3, 6, 20, seed=4, width_factor=4)
    assert Wd.shape == (3, 6, 80)
    torch.testing.assert_close(Wd[..., :20], D / 2)
    assert abs(float(Wd[..., 20:].std()) - 80 ** -0.5) < 0.02  # fresh columns of the wider model's law
    # the first instances do not depend on how many are drawn (a replay can train a slice); torch draws
    # fewer than 256 normals per call by another algorithm, so this holds from n m = 256 on
    for kind in ("normal", "orthogonal", "sparse", "one_hot"):
        one, three = pv.initial_weights(kind, 1, 8, 32, seed=4), pv.initial_weights(kind, 3, 8, 32, seed=4)
        torch.testing.assert_close(one, three[:1])
    with pytest.raises(ValueError, match="init must be 'normal'"):
        pv.initial_weights("sparse", 1, 6, 20, width_factor=2)


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


def test_pairs_sharing_a_neuron_and_pairs_in_common():
    W = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.9, 0.0], [0.0, 1.0]]])
    assert pv.pairs_sharing_a_neuron(pb.band_mask(W)) == [[(0, 1), (0, 2), (1, 2)]]
    assert pv.pairs_in_common([(0, 1), (0, 2)], [(0, 2), (1, 2)]) == 1


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
                         "interventions=baseline,resample,wide4_pruned_early,l1_warmup", "sup_seeds=2", "sup_steps=30",
                         "exch_steps=30"],
                         device="cpu", out=tmp_path, progress=False)
    res = rec["results"]
    assert [r["name"] for r in res["interventions"]] == ["baseline", "resample", "wide4_pruned_early", "l1_warmup"]
    for r in res["interventions"]:
        assert len(r["polysemantic"]) == 2 and len(r["final_loss"]) == 2 and len(r["pairs"]) == 2
    assert res["interventions"][2]["flops_ratio"] == pytest.approx((4 * 1500 + 500) / 2000)
    assert len(res["necessary"]["pairs"]) == 2
    exch = res["exchangeable"]
    assert (exch["n"], exch["m"], exch["steps"]) == (8, 4, 30) and len(exch["pairs"]) == len(exch["one_hot"]) == 2
    rows = pv.intervention_rows(load_result(tmp_path))
    assert rows[0]["d_count"] == 0 and rows[0]["rel_loss"] == 0 and all(r["paired"] for r in rows)
    loss = {r["name"]: np.asarray(r["final_loss"]) for r in res["interventions"]}
    assert rows[1]["rel_loss"] == pytest.approx(float(np.mean(np.log(loss["resample"] / loss["baseline"]))))
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


# --------------------------------------------------------------------------- the experiment's declaration


@pytest.mark.parametrize("field, value, needle", [
    ("n", 1, "n must be an integer >= 2"),
    ("m", 16, "m must be an integer >= 32"),  # m below n (n = 32 by default)
    ("instances", 1, "instances must be an integer >= 2"),
    ("steps", 1, "steps must be an integer >= 2"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("l1", -1e-3, "l1 must be a finite number >= 0"),
    ("interventions", (), "interventions must be"),
    ("interventions", ("baseline", "nothing"), "interventions must be one of"),
    ("interventions", ("resample", "baseline"), "interventions must be a tuple starting with 'baseline'"),
    ("sup_n", 1, "sup_n must be an integer >= 2"),
    ("sup_m", 0, "sup_m must be an integer >= 1"),
    ("sup_sparsity", 1.0, "sup_sparsity must be a finite number >= 0 and <= 0.999"),
    ("sup_decay", 0.0, "sup_decay must be a finite number > 0"),
    ("sup_decay", 1.5, "sup_decay must be .* <= 1"),
    ("sup_seeds", 1, "sup_seeds must be an integer >= 2"),
    ("sup_steps", 0, "sup_steps must be an integer >= 1"),
    ("exch_steps", 0, "exch_steps must be an integer >= 1"),
    ("seed", -1, "seed must be"),
])
def test_interventions_config_refuses_each_bad_field(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        InterventionsConfig(**{field: value})


def test_interventions_config_accepts_its_bounds():
    cfg = InterventionsConfig(n=8, m=8, instances=2, steps=2, interventions=("baseline",), sup_sparsity=0.999,
                              sup_decay=1.0, sup_seeds=2, sup_steps=1, exch_steps=1)
    assert cfg.m == cfg.n and cfg.interventions == ("baseline",)
    assert cfg.capped(2) == cfg


def test_the_experiment_is_declared_with_its_replay_and_rows():
    exp = get_experiment("interventions")
    assert exp.config is InterventionsConfig and exp.book == InterventionsConfig()
    assert exp.paper == InterventionsConfig(n=64, m=256, instances=32, sup_seeds=32)
    assert exp.rows is pv.intervention_rows and exp.replay is pv.replay_interventions
    assert exp.book.interventions == tuple(INTERVENTIONS)


def _schedule_reference(W0, cfg, l1_warmup, resample_every, resample_until):
    """The warm-up and resampling loop written out by hand: step, resample, check."""
    W = W0.detach().to(torch.float32).clone().requires_grad_(True)
    opt = torch.optim.AdamW([W], lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    gen = torch.Generator().manual_seed(cfg.seed + 2_000_003)
    warm, resampled = l1_warmup * cfg.steps, 0
    with torch.no_grad():
        for t in range(cfg.steps):
            _, W.grad = pb.loss_and_grad(W, cfg.l1 * min(1.0, t / warm) if warm else cfg.l1)
            opt.step()
            if resample_every and (t + 1) % resample_every == 0 and t + 1 <= resample_until:
                resampled += pv.resample_shared(W, opt, gen)
    return W.detach(), resampled


def test_train_schedule_resamples_after_each_update_from_its_own_stream():
    cfg = pb.TrainConfig(n=8, m=12, instances=3, steps=240, lr=3e-3, l1=3e-3, weight_decay=0.01, seed=5)
    W0 = pb.init_weights(3, 8, 12, seed=5)
    W, k = pv.train_schedule(W0, cfg, l1_warmup=0.25, resample_every=40, resample_until=200)
    W_ref, k_ref = _schedule_reference(W0, cfg, 0.25, 40, 200)
    assert k == k_ref > 0
    assert torch.equal(W, W_ref)


def test_train_schedule_stops_a_diverging_run():
    cfg = pb.TrainConfig(n=4, m=8, instances=2, steps=200, lr=1e38, l1=1.0)
    with pytest.raises(Diverged, match="interventions diverged"):
        pv.train_schedule(pb.init_weights(2, 4, 8), cfg)


# --------------------------------------------------------------------------- views


def test_tradeoff_figure_and_explorer_figure_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polybook.views import prevention as pvv

    rec = {"results": {"interventions": [
        {"name": "baseline", "label": "b", "polysemantic": [1, 2], "final_loss": [1e-5, 2e-5], "one_hot": [1, 1],
         "flops_ratio": 1.0},
        {"name": "wide4_pruned", "label": "w", "polysemantic": [0, 1], "final_loss": [1e-5, 1e-5], "one_hot": [1, 1],
         "flops_ratio": 4.0}]}}
    fig, axes = plt.subplots(1, 2)
    pvv.plot_tradeoff(axes, pv.intervention_rows(rec), highlight=["wide4_pruned"])
    assert len(axes[1].texts) == 2
    plt.close(fig)
    fig, (base, iv) = pvv.explorer_figure("l1_warmup", n=4, m=8, instances=2, steps=20)
    assert base.shape == iv.shape == (2,)
    plt.close(fig)


def test_the_explorer_builds():
    pytest.importorskip("ipywidgets")
    from polybook.views import prevention as pvv

    assert pvv.explorer() is not None
