"""The co-occurrence chapter's science: inputs, loss, training loop, predictions and the stored run."""

import math
from pathlib import Path

import pytest
import torch

import polybook as pb
from polybook import cooccurrence as cc
from polybook.experiments import load_result, run_experiment

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
    loss, grad = cc.loss_and_grad(W, X, w, 1e-3)
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
    _, grad = cc.loss_and_grad(W, X, w, 0.01, xi)
    torch.testing.assert_close(grad, Wr.grad, atol=1e-5, rtol=1e-5)


def test_opposite_sign_pair_costs_two_per_joint_occurrence():
    # n = 2: the pair has weight 2q; on it, a = 1, b = -1 gives both outputs 0
    for q in (0.0, 0.1, 0.3):
        assert math.isclose(float(cc.two_feature_loss(1.0, -1.0, q)), 2 * 2 * q, abs_tol=1e-12)
    # separate neurons cost nothing at any level
    X, w = cc.input_weights(2, 0.4)
    loss, _ = cc.loss_and_grad(torch.tensor([[[1.0, 0.0], [0.0, -1.0]]]), X, w)
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
    assert cc.shared_pairs(W, 2) == {"within": [0], "across": [1]}


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
                                                    "levels": (0.0, 0.01, 0.1), "groups": (2,)},
                         device="cpu", out=tmp_path, progress=False)
    res = load_result(tmp_path)["results"]
    assert res["level"][0] == 0 and len(res["polysemantic"]) == 3
    assert all(len(c) == 2 for c in res["polysemantic"])
    assert res["structured"][0]["groups"] == 2
    replay = cc.replay_cooccurrence(rec, settings=(0, 2), instances=2)
    assert replay["replayed"] == replay["stored"]
    rows = cc.level_rows(rec)
    assert [r["level"] for r in rows] == [0.0, 0.01, 0.1] and rows[0]["drop"] == 0.0


@pytest.mark.skipif(not STORED.exists(), reason="the stored book-scale run has not been made")
def test_stored_result_matches_a_replayed_slice():
    record = load_result(STORED)
    replay = cc.replay_cooccurrence(record, settings=(0, 4), instances=2)
    # the same initial weights and the same CPU program give the same counts, to the last model
    assert replay["replayed"] == replay["stored"]
