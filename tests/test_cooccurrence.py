"""The co-occurrence chapter: inputs, weighted loss, training loop, predictions, the experiment, the views."""

import math
from pathlib import Path

import pytest
import torch

import polybook as pb
from polybook import cooccurrence as cc
from polybook.experiments import get_experiment, load_result, run_experiment
from polybook.experiments import cooccurrence as cx
from polybook.train import Diverged
from polybook.views import cooccurrence as cv

STORED = Path(__file__).resolve().parent.parent / "book" / "results" / "cooccurrence" / "result.json"


def test_weights_add_up_to_n_and_split_as_the_level_says():
    for n, q, g in [(6, 0.0, 1), (6, 0.3, 1), (8, 0.2, 2), (8, 1.0, 4)]:
        X, w = cc.input_weights(n, q, g)
        assert X.shape == (n + n * (n - 1) // 2, n)
        assert math.isclose(float(w.sum()), n, rel_tol=1e-6)
        assert math.isclose(float(w[n:].sum()), n * q, rel_tol=1e-6, abs_tol=1e-6)
        assert torch.equal(X.sum(1), torch.cat([torch.ones(n), 2 * torch.ones(n * (n - 1) // 2)]))


def test_structured_weights_put_nothing_on_pairs_across_blocks():
    X, w = cc.input_weights(8, 0.5, groups=2)
    i, j = cc.pair_index(8)
    across = (i // 4) != (j // 4)
    assert float(w[8:][torch.from_numpy(across)].abs().sum()) == 0.0
    assert float(w[8:][torch.from_numpy(~across)].min()) > 0


def test_level_zero_loss_and_gradient_are_the_papers():
    W = pb.init_weights(3, 10, 20, seed=4)
    X, w = cc.input_weights(10, 0.0)
    loss, grad = cc.weighted_loss_and_grad(W, X, w, 1e-3)
    ref_loss, ref_grad = pb.loss_and_grad(W, 1e-3)
    torch.testing.assert_close(loss, pb.reconstruction_loss(W), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-5)


def test_level_zero_training_is_the_papers_training():
    W0 = pb.init_weights(2, 8, 16, seed=1)
    X, w = cc.input_weights(8, 0.0)
    run = cc.train_inputs(W0, X, w, steps=300, lr=1e-3, l1=1e-3)
    ref = pb.train(pb.TrainConfig(n=8, m=16, instances=2, steps=300, lr=1e-3, l1=1e-3), W0=W0, device="cpu",
                   progress=False)
    torch.testing.assert_close(run.W, ref.W, atol=1e-5, rtol=0)
    torch.testing.assert_close(run.losses, ref.losses, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("noise", [False, True])
def test_gradient_matches_autograd_with_pairs(noise):
    W = pb.init_weights(2, 6, 9, seed=2)
    X, w = cc.input_weights(6, 0.3, groups=3)
    w = torch.stack([w, w * 0.5])  # per-instance weights
    xi = 0.1 * torch.randn(2, X.shape[0], 9, generator=torch.Generator().manual_seed(0)) if noise else None
    Wr = W.clone().requires_grad_(True)
    H = X @ Wr + (xi if noise else 0)
    P = H @ Wr.transpose(-1, -2)
    total = (w.unsqueeze(-1) * (X - torch.relu(P)) ** 2).sum() + 0.01 * Wr.abs().sum()
    total.backward()
    _, grad = cc.weighted_loss_and_grad(W, X, w, 0.01, xi)
    torch.testing.assert_close(grad, Wr.grad, atol=1e-5, rtol=1e-5)


def test_opposite_sign_pair_costs_two_per_joint_occurrence():
    # n = 2: the pair has weight 2q; on it, a = 1, b = -1 gives both outputs 0
    for q in (0.0, 0.1, 0.3):
        assert math.isclose(float(cc.two_feature_loss(1.0, -1.0, q)), 2 * 2 * q, abs_tol=1e-12)
    # separate neurons cost nothing at any level
    X, w = cc.input_weights(2, 0.4)
    loss, _ = cc.weighted_loss_and_grad(torch.tensor([[[1.0, 0.0], [0.0, -1.0]]]), X, w)
    assert float(loss) == pytest.approx(0.0, abs=1e-7)


def test_pair_weight_and_balance_level_agree():
    for n, l1, g in [(32, 1e-3, 1), (16, 1e-2, 2), (12, 3e-3, 3)]:
        q = cc.balance_level(n, l1, g)
        assert cc.pair_weight(n, q, g) == pytest.approx(l1, rel=1e-5)
    assert cc.balance_level(32, 1e-3) == pytest.approx(1e-3 * 31 / 2)


def test_restricted_birthday_with_nothing_co_occurring_is_the_exact_law():
    for n, m in [(8, 8), (16, 64)]:
        r = cc.restricted_birthday(n, m, groups=n, trials=20000, seed=3)
        assert abs(r["mean"] - pb.expected_polysemantic_exact(n, m)) < 4 * r["sem"]


def test_restricted_birthday_counts_only_pairs_across_blocks():
    assert cc.restricted_birthday(8, 4, groups=1, trials=500)["mean"] == 0.0
    # brute force at n = 4, m = 2, two blocks {0, 1} and {2, 3}: enumerate all winners and signs
    total = 0
    for code in range(2 ** 4 * 2 ** 4):
        win = [(code >> i) & 1 for i in range(4)]
        sign = [(code >> (4 + i)) & 1 for i in range(4)]
        for k in range(2):
            on = [i for i in range(4) if win[i] == k]
            total += any(sign[i] != sign[j] and i // 2 != j // 2 for i in on for j in on)
    exact = total / 256
    r = cc.restricted_birthday(4, 2, groups=2, trials=40000, seed=1)
    assert abs(r["mean"] - exact) < 4 * r["sem"]


def test_shared_pairs_split_by_block():
    W = torch.zeros(1, 4, 3)
    W[0, 0, 0], W[0, 2, 0] = 1.0, -1.0  # across blocks {0,1} | {2,3}
    W[0, 1, 1], W[0, 3, 2] = 1.0, 1.0
    assert cc.shared_pairs_by_cooccurrence(W, 2) == {"within": [0], "across": [1]}


@pytest.mark.parametrize("kwargs,needle", [
    (dict(level=1.5), "level must be"),
    (dict(level=-0.1), "level must be"),
    (dict(groups=3), "groups must be a divisor of n = 8"),
    (dict(groups=8, level=0.1), "groups must be at most n/2"),
])
def test_input_weights_refuse_bad_values(kwargs, needle):
    args = dict(n=8, level=0.1) | kwargs
    with pytest.raises(ValueError, match=needle):
        cc.input_weights(**args)


@pytest.mark.parametrize("change,needle", [
    (dict(levels=(0.1, 0.2)), "levels must be"),
    (dict(levels=(0.0, 2.0)), "levels must be"),
    (dict(groups=(3,)), "groups must be a divisor"),
    (dict(instances=1), "instances must be"),
    (dict(structured_level=-1.0), "structured_level must be"),
    (dict(structured_level=1.5), "structured_level must be"),
    (dict(levels=()), "levels must be"),
    (dict(levels=[0.0, 0.1]), "levels must be"),
    (dict(groups=(1,)), "groups must be"),
    (dict(groups=(32,)), "groups must be a non-empty tuple of integers >= 2 and <= 16"),
    (dict(n=8, groups=(8,)), "groups must be a non-empty tuple of integers >= 2 and <= 4"),
    (dict(n=3, groups=()), "n must be an integer >= 4"),
    (dict(optimizer="adam"), "optimizer must be"),
    (dict(optimizer="sgd", weight_decay=0.01), "weight_decay must be 0 with optimizer 'sgd'"),
    (dict(seed=-1), "seed must be"),
    (dict(fresh_instances=-1), "fresh_instances must be"),
    (dict(fresh_seed=0), "fresh_seed must be a seed other than seed = 0"),
])
def test_config_refuses_bad_values(change, needle):
    with pytest.raises(ValueError, match=needle):
        cc.CoocConfig(**change)


def test_train_inputs_refuses_mismatched_shapes():
    X, w = cc.input_weights(4, 0.1)
    with pytest.raises(ValueError, match="weight must be"):
        cc.train_inputs(pb.init_weights(2, 4, 8), X, w[:-1], steps=2)
    with pytest.raises(ValueError, match="W0 must be"):
        cc.train_inputs(pb.init_weights(2, 5, 8), X, w, steps=2)


def test_experiment_contract_and_replay(tmp_path):
    rec = run_experiment("cooccurrence", "book", {"n": 8, "m": 16, "instances": 2, "steps": 300,
                                                    "levels": (0.0, 0.01, 0.1), "groups": (2,), "fresh_instances": 3},
                         device="cpu", out=tmp_path, progress=False)
    res = load_result(tmp_path)["results"]
    assert res["fresh"]["seed"] == 5000 and len(res["fresh"]["polysemantic"]) == 3 and len(res["fresh"]["one_hot"]) == 3
    assert res["level"][0] == 0 and len(res["polysemantic"]) == 3
    assert all(len(c) == 2 for c in res["polysemantic"])
    assert res["structured"][0]["groups"] == 2
    replay = cc.replay_cooccurrence(rec, settings=(0, 2), instances=2, fresh=2)
    assert replay["replayed"] == replay["stored"] and replay["fresh_replayed"] == replay["fresh_stored"]
    rows = cc.level_rows(rec)
    assert [r["level"] for r in rows] == [0.0, 0.01, 0.1] and rows[0]["drop"] == 0.0


@pytest.mark.skipif(not STORED.exists(), reason="the stored book-scale run has not been made")
def test_stored_result_matches_a_replayed_slice():
    record = load_result(STORED)
    replay = cc.replay_cooccurrence(record, settings=(0, 4), instances=2, fresh=2)
    # the same initial weights and the same CPU program give the same counts, to the last model
    assert replay["replayed"] == replay["stored"]
    assert replay["fresh_replayed"] == replay["fresh_stored"]


def test_fresh_seed_models_are_an_independent_draw_trained_on_the_level_zero_loss():
    cfg = cc.CoocConfig(n=8, m=16, instances=2, steps=200, levels=(0.0, 0.1), groups=(), fresh_instances=2)
    # a different draw of initial weights from the paired models'
    assert not torch.equal(pb.init_weights(2, 8, 16, seed=cfg.fresh_seed), pb.init_weights(2, 8, 16, seed=cfg.seed))
    # the singletons alone give the very same training as level 0 with its (zero-weight) pairs
    X, w = cc.input_weights(8, 0.0)
    W0 = pb.init_weights(2, 8, 16, seed=cfg.fresh_seed)
    full = cc.train_inputs(W0, X, w, steps=200)
    alone = cx._fresh_level_zero(cfg, 2, "cpu")
    assert torch.equal(full.W, alone.W)


def test_replay_of_fresh_models_needs_them_stored():
    rec = {"experiment": "cooccurrence", "config": {"n": 8, "m": 16, "instances": 2, "steps": 5, "levels": [0.0],
                                                     "groups": [], "fresh_instances": 0},
           "results": {"polysemantic": [[0, 0]]}}
    with pytest.raises(ValueError, match="no fresh-seed models"):
        cc.replay_cooccurrence(rec, fresh=1)


def test_falling_level_interpolates_and_widens_with_fewer_models():
    levels = [0.0, 0.01, 0.02, 0.04]
    counts = [[4, 4, 4, 4], [2, 2, 2, 2], [0.8, 0.8, 0.8, 0.8], [0, 0, 0, 0]]
    r = cc.falling_level(levels, counts, fraction=0.1)
    # ratio 0.2 at 0.02 and 0 at 0.04: a tenth is halfway, in log q
    assert r["level"] == pytest.approx(math.sqrt(0.02 * 0.04)) and r["grid"] == 0.04
    assert r["lo"] == r["hi"] == pytest.approx(r["level"])  # identical models: no spread
    never = cc.falling_level([0.0, 0.01], [[2, 2], [1, 1]], fraction=0.1)
    assert never["level"] == math.inf and never["grid"] == math.inf
    first = cc.falling_level([0.0, 0.01], [[2, 2], [0, 0]], fraction=0.1)
    assert first["level"] == 0.01  # no log below the first non-zero level: the level itself
    rng = torch.Generator().manual_seed(0)
    many = torch.poisson(torch.tensor([3.0, 1.5, 0.6, 0.1]).repeat(64, 1).T, generator=rng).tolist()
    wide = cc.falling_level([0.0, 0.01, 0.02, 0.04], [c[:8] for c in many], fraction=0.25)
    narrow = cc.falling_level([0.0, 0.01, 0.02, 0.04], many, fraction=0.25)
    assert narrow["hi"] - narrow["lo"] < wide["hi"] - wide["lo"]  # fewer models: a wider interval, not an easier pass


@pytest.mark.parametrize("levels,counts,needle", [
    ([0.01, 0.02], [[1, 1], [0, 0]], "levels must start at 0"),
    ([0.0, 0.01], [[1, 1]], "counts must have shape"),
])
def test_falling_level_refuses_bad_input(levels, counts, needle):
    with pytest.raises(ValueError, match=needle):
        cc.falling_level(levels, counts)


def test_falling_level_says_too_little_data_without_a_level_0_count():
    # Models trained a few steps share no neuron at level 0: no fraction of 0 to fall to.
    r = cc.falling_level([0.0, 0.01], [[0, 0], [0, 0]])
    assert r["note"].startswith("too little data") and all(r[k] != r[k] for k in ("level", "lo", "hi")), r


def test_config_accepts_no_groupings_and_sgd_without_decay():
    cfg = cc.CoocConfig(n=4, groups=(), optimizer="sgd")
    assert cfg.weights().shape == (len(cfg.levels), 4 + 6)
    assert cc.CoocConfig(n=8, groups=(2, 4)).groups == (2, 4)


def test_train_inputs_stops_a_diverging_run():
    X, w = cc.input_weights(4, 0.1)
    with pytest.raises(Diverged, match="lower lr"):
        cc.train_inputs(pb.init_weights(2, 4, 8), X, w, steps=5, lr=1e30)


def test_noisy_training_is_seeded():
    X, w = cc.input_weights(4, 0.1)
    W0 = pb.init_weights(2, 4, 8, seed=3)
    runs = [cc.train_inputs(W0, X, w, steps=20, noise="gaussian", sigma=0.05, seed=s) for s in (0, 0, 1)]
    assert torch.equal(runs[0].W, runs[1].W) and not torch.equal(runs[0].W, runs[2].W)


def test_the_experiment_is_declared_in_its_file():
    exp = get_experiment("cooccurrence")
    assert exp is cx.EXPERIMENT and exp.config is cc.CoocConfig
    assert exp.book == cc.CoocConfig() and exp.paper == cc.CoocConfig(n=64, m=512, instances=32, steps=10000)
    assert exp.rows is cc.level_rows and exp.replay is cc.replay_cooccurrence and not exp.resumable
    assert cc.shared_pairs_by_cooccurrence is cx.shared_pairs_by_cooccurrence


def test_plot_levels_draws_the_counts():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{"level": q, "mean": c, "sem": 0.1} for q, c in [(0.0, 2.0), (0.01, 1.0), (0.1, 0.0)]]
    fig, ax = plt.subplots()
    cv.plot_levels(ax, rows, q_l1=0.0155, exact=2.1)
    assert ax.get_xscale() == "symlog" and len(ax.lines) >= 3
    plt.close(fig)
    fig, ax = plt.subplots()
    fall = cc.falling_level([0.0, 0.01, 0.1], [[2, 2], [1, 1], [0, 0]], fraction=0.1)
    cv.plot_levels(ax, rows, fall=fall)
    assert len(ax.patches) == 1 and len(ax.lines) >= 2  # the interval shaded, the level drawn
    plt.close(fig)


def test_explorer_builds_its_controls():
    pytest.importorskip("ipywidgets")
    box = cv.explorer()
    names = {getattr(w, "description", "") for w in box.children}
    assert {"level q", "features n", "neurons m", "Train"} <= names
