"""The toy model of superposition: inputs, model, training loop, metrics and experiment."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from polybook import superposition as sp
from polybook.experiments import apply_overrides, get_experiment
from polybook.experiments import superposition as spx


def test_inputs_have_the_requested_sparsity_and_uniform_values():
    S = torch.tensor([0.0, 0.7, 0.99])
    x = sp.sample_batch(S, 50, 20_000, torch.Generator().manual_seed(0))  # (3, 20000, 50)
    assert x.shape == (3, 20_000, 50)
    on = x > 0
    assert torch.allclose(on.float().mean(dim=(1, 2)), 1 - S, atol=3e-3)
    for b in range(3):  # the non-zero values are uniform on [0, 1]: mean 1/2, variance 1/12
        v = x[b][on[b]]
        assert v.max() < 1 and abs(v.mean().item() - 0.5) < 0.01 and abs(v.var().item() - 1 / 12) < 0.005


def test_forward_matches_the_formula_for_one_input():
    g = torch.Generator().manual_seed(3)
    W, b, x = torch.randn(2, 6, 3, generator=g), torch.randn(2, 6, generator=g), torch.rand(2, 4, 6, generator=g)
    out = sp.forward(W, b, x)
    out_relu = sp.forward(W, b, x, hidden_relu=True)
    for i in range(2):
        for k in range(4):
            h = W[i].T @ x[i, k]
            assert torch.allclose(out[i, k], torch.relu(W[i] @ h + b[i]), atol=1e-6)
            assert torch.allclose(out_relu[i, k], torch.relu(W[i] @ torch.relu(h) + b[i]), atol=1e-6)


def test_monosemantic_identity_has_zero_loss_with_a_relu_hidden_layer():
    x = sp.sample_batch(torch.tensor([0.5]), 7, 100, torch.Generator().manual_seed(0))
    W = torch.eye(7)[None]
    assert torch.equal(sp.forward(W, torch.zeros(1, 7), x, hidden_relu=True), x)


def test_initial_weights_are_kept_apart_from_the_trained_ones():
    cfg = sp.SuperpositionConfig(n=6, m=3, sparsity=(0.9,), hidden_relu=True, repeats=2, steps=20, batch_size=32, seed=4)
    res = sp.train_superposition(cfg, device="cpu", progress=False)
    want = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(4)) * math.sqrt(2 / 9)
    assert torch.equal(res.W0, want)  # the seeded Xavier-normal draw, not the trained weights
    assert not torch.equal(res.W, res.W0)


def test_zero_l1_is_the_default_and_l1_shrinks_the_weights():
    cfg = sp.SuperpositionConfig(n=8, m=8, sparsity=(0.9,), hidden_relu=True, steps=300, batch_size=128)
    plain = sp.train_superposition(cfg, device="cpu", progress=False)
    zero = sp.train_superposition(apply_overrides(cfg, {"l1": 0.0}), device="cpu", progress=False)
    assert torch.equal(plain.W, zero.W)
    strong = sp.train_superposition(apply_overrides(cfg, {"l1": 1e-2}), device="cpu", progress=False)
    assert strong.W.abs().sum() < 0.5 * plain.W.abs().sum()


def test_eval_loss_is_zero_for_the_identity_and_matches_a_direct_estimate():
    cfg = sp.SuperpositionConfig(n=5, m=5, sparsity=(0.5, 0.9), hidden_relu=True, steps=1)
    eye = torch.eye(5).expand(2, 5, 5).clone()
    res = sp.SuperpositionResult(config=cfg, W=eye, b=torch.zeros(2, 5), losses=torch.zeros(1, 2))
    assert res.eval_loss(batch_size=256).tolist() == [0.0, 0.0]
    # b = 0 and W = 0: the output is 0, so the loss is sum_i I_i E[x_i^2] = sum_i I_i (1 - S) / 3
    res.W = torch.zeros(2, 5, 5)
    want = torch.tensor([0.5, 0.1]) / 3 * sp.importances(5, 0.7).sum()
    assert torch.allclose(res.eval_loss(batch_size=200_000), want, rtol=0.02)


def test_effective_neurons_counts_equal_positive_weights_and_ignores_negative_ones():
    W = torch.tensor([[0.5, 0.5, 0.5, 0.5, -9.0], [2.0, 0.0, 0.0, 0.0, -1.0], [-1.0, -1.0, 0.0, 0.0, 0.0]])
    assert sp.effective_neurons(W).tolist() == pytest.approx([4.0, 1.0, 0.0])


def test_expected_shared_winners_matches_simulation():
    g = np.random.default_rng(0)
    n, m, trials = 20, 20, 20_000
    winners = g.integers(0, m, size=(trials, n))
    shared = np.array([(np.bincount(w, minlength=m) >= 2).sum() for w in winners])
    se = shared.std() / math.sqrt(trials)
    assert abs(shared.mean() - sp.expected_shared_winners(n, m)) < 4 * se
    assert sp.expected_shared_winners(1, 7) == pytest.approx(0.0, abs=1e-12)  # one feature shares nothing


def test_importances_decay_geometrically():
    assert torch.allclose(sp.importances(4, 0.7), torch.tensor([1.0, 0.7, 0.49, 0.343]))


def test_training_is_deterministic_and_instances_are_independent():
    cfg = sp.SuperpositionConfig(n=6, m=2, sparsity=(0.0, 0.9), steps=30, batch_size=64)
    a = sp.train_superposition(cfg, device="cpu", progress=False)
    b = sp.train_superposition(cfg, device="cpu", progress=False)
    assert torch.equal(a.W, b.W) and torch.equal(a.b, b.b)
    c = sp.train_superposition(apply_overrides(cfg, {"seed": 1}), device="cpu", progress=False)
    assert not torch.equal(a.W, c.W)
    assert a.W.shape == (2, 6, 2) and a.losses.shape == (30, 2)


def test_repeats_are_laid_out_level_major():
    cfg = sp.SuperpositionConfig(n=4, m=2, sparsity=(0.0, 0.5, 0.9), repeats=2, steps=2, batch_size=8)
    assert cfg.instances == 6
    assert cfg.instance_sparsity().tolist() == pytest.approx([0.0, 0.0, 0.5, 0.5, 0.9, 0.9])
    res = sp.train_superposition(cfg, device="cpu", progress=False)
    assert res.by_level(res.W).shape == (3, 2, 4, 2) and res.best().shape == (3, 4, 2)


def test_dense_training_keeps_the_most_important_features():
    cfg = sp.SuperpositionConfig(n=8, m=3, sparsity=(0.0,), importance_decay=0.7, steps=1500, batch_size=256)
    res = sp.train_superposition(cfg, device="cpu", progress=False)
    norms = sp.feature_norms(res.W[0])
    assert (norms[:3] > 0.9).all() and (norms[3:] < 0.5).all()
    assert sp.superposition(res.W[0])[:3].max() < 0.05  # they own orthogonal directions


def test_training_lowers_the_loss_below_the_bias_only_baseline():
    # Outputting the mean 1/2 - S/2 for every feature costs sum_i I_i Var(x_i).
    S, r, n = 0.9, 0.9, 10
    cfg = sp.SuperpositionConfig(n=n, m=3, sparsity=(S,), importance_decay=r, steps=1000, batch_size=512)
    res = sp.train_superposition(cfg, device="cpu", progress=False)
    var = (1 - S) / 3 - (1 - S) ** 2 / 4
    baseline = sum(r**i for i in range(n)) * var
    assert res.final_loss().item() < 0.6 * baseline


def test_metrics_on_a_regular_pentagon():
    theta = torch.arange(5) * 2 * math.pi / 5
    W = torch.stack([theta.cos(), theta.sin()], dim=-1)  # (5, 2), unit length
    assert int(sp.represented(W)) == 5
    assert torch.allclose(sp.neighbour_angles(W), torch.full((5,), 72.0), atol=1e-4)
    assert sp.dimensions_per_feature(W).item() == pytest.approx(0.4)
    assert torch.allclose(sp.feature_dimensionality(W), torch.full((5,), 0.4), atol=1e-6)
    # each feature sees two neighbours at 72 and two at 144 degrees
    expected = 2 * math.cos(math.radians(72)) ** 2 + 2 * math.cos(math.radians(144)) ** 2
    assert torch.allclose(sp.superposition(W), torch.full((5,), expected), atol=1e-6)
    A = sp.angles(W)
    assert A[0, 1].item() == pytest.approx(72.0, abs=1e-3) and A[0, 2].item() == pytest.approx(144.0, abs=1e-3)


def test_antipodal_pair_has_dimensionality_one_half_and_full_superposition():
    W = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(sp.feature_dimensionality(W), torch.tensor([0.5, 0.5, 1.0]))
    assert torch.allclose(sp.superposition(W), torch.tensor([1.0, 1.0, 0.0]))


def test_superposition_is_brute_force_sum_over_other_features():
    W = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    want = torch.tensor([
        sum(float(W[i] @ W[j] / W[i].norm()) ** 2 for j in range(7) if j != i) for i in range(7)
    ])
    assert torch.allclose(sp.superposition(W), want, atol=1e-5)


def test_neighbour_angles_skip_unrepresented_features_and_need_two_dimensions():
    W = torch.tensor([[1.0, 0.0], [0.0, 0.2], [0.0, -1.0]])
    assert sp.neighbour_angles(W).tolist() == pytest.approx([270.0, 90.0])
    with pytest.raises(ValueError, match="shape"):
        sp.neighbour_angles(torch.zeros(3, 3))


def test_neuron_census_counts_features_per_neuron_above_threshold():
    W = torch.tensor([[0.9, 0.6, 0.0], [0.7, -0.9, 0.0], [0.0, 0.55, 0.1]])  # (n=3, m=3)
    assert sp.features_per_neuron(W).tolist() == [2, 2, 0]
    assert sp.neuron_census(W).tolist() == [1, 0, 2]


@pytest.mark.parametrize("field,value,message", [
    ("sparsity", (0.5, 1.0), "sparsity must be a non-empty tuple of numbers in [0, 1)"),
    ("sparsity", (), "sparsity must be a non-empty tuple"),
    ("sparsity", 0.9, "sparsity must be a non-empty tuple"),
    ("sparsity", (-0.1, 0.5), "sparsity must be a finite number >= 0, got -0.1"),
    ("sparsity", (0.5, True), "sparsity must be a finite number >= 0, got True"),
    ("importance_decay", 0.0, "importance_decay must be a finite number > 0 and <= 1, got 0.0"),
    ("importance_decay", 1.5, "importance_decay must be a finite number > 0 and <= 1, got 1.5"),
    ("importance_decay", True, "importance_decay must be a finite number > 0"),
    ("m", 0, "m must be an integer >= 1, got 0"),
    ("repeats", 0, "repeats must be an integer >= 1"),
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("lr", -1.0, "lr must be a finite number > 0"),
    ("hidden_relu", 1, "hidden_relu must be True or False"),
    ("seed", -1, "seed must be an integer >= 0"),
    ("l1", -1e-3, "l1 must be a finite number >= 0"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError) as err:
        sp.SuperpositionConfig(**{field: value})
    assert message in str(err.value)


def test_config_accepts_the_edges_of_its_ranges():
    cfg = sp.SuperpositionConfig(sparsity=(0, 0.999999), importance_decay=1)
    assert cfg.instances == 2 and cfg.importance_decay == 1


def test_sparsity_override_from_the_command_line_is_parsed():
    cfg = apply_overrides(get_experiment("superposition").scales["book"], ["sparsity=0,0.9"])
    assert cfg.sparsity == (0.0, 0.9)


def test_cli_runs_the_superposition_experiment(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "polybook", "run", "superposition", "--set", "n=6", "--set", "m=2",
         "--set", "sparsity=0,0.9", "--set", "steps=20", "--set", "batch_size=16", "--device", "cpu",
         "--quiet", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rec = json.loads((tmp_path / "result.json").read_text())
    r = rec["results"]
    assert rec["experiment"] == "superposition" and r["sparsity"] == [0.0, 0.9]
    assert len(r["represented"]) == 2 and len(r["norms"][0][0]) == 6


def test_paper_scale_is_the_toy_models_setting():
    cfg = get_experiment("superposition").scales["paper"]
    assert (cfg.n, cfg.m, cfg.importance_decay, cfg.batch_size, cfg.steps) == (20, 5, 0.7, 1024, 10_000)
    assert cfg.sparsity == (0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)


def test_training_matches_a_plain_adamw_loop_bit_for_bit():
    # The loop in full, with PyTorch's own AdamW at its defaults: the numbers the book was made with.
    cfg = sp.SuperpositionConfig(n=7, m=3, sparsity=(0.5, 0.95), repeats=2, hidden_relu=True, steps=120,
                                 batch_size=32, l1=1e-3, weight_decay=0.01, seed=5)
    res = sp.train_superposition(cfg, device="cpu", progress=False)
    W0 = torch.randn(cfg.instances, cfg.n, cfg.m, generator=torch.Generator().manual_seed(cfg.seed)) * math.sqrt(2 / 10)
    W, b = W0.clone().requires_grad_(True), torch.zeros(cfg.instances, cfg.n, requires_grad=True)
    opt = torch.optim.AdamW([W, b], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen, imp, S = torch.Generator().manual_seed(cfg.seed + 1_000_003), sp.importances(cfg.n, 0.7), cfg.instance_sparsity()
    losses = []
    for t in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = spx._cosine_lr(t, cfg.steps, cfg.lr)
        x = sp.sample_batch(S, cfg.n, cfg.batch_size, gen)
        loss = ((x - sp.forward(W, b, x, True)) ** 2 * imp).sum(-1).mean(-1)
        opt.zero_grad(set_to_none=True)
        (loss.sum() + cfg.l1 * W.abs().sum()).backward()
        opt.step()
        losses.append(loss.detach())
    assert torch.equal(res.W0, W0)
    assert torch.equal(res.W, W.detach()) and torch.equal(res.b, b.detach())
    assert torch.equal(res.losses, torch.stack(losses))


def test_a_diverging_run_stops_with_diverged():
    from polybook.train import Diverged

    cfg = sp.SuperpositionConfig(n=4, m=2, sparsity=(0.0,), steps=150, batch_size=8, lr=1e30)
    with pytest.raises(Diverged, match="diverged by step 100 of 150"):
        sp.train_superposition(cfg, device="cpu", progress=False)


def test_experiment_contract_and_replay(tmp_path):
    from polybook.experiments import load_result, run_experiment

    exp = get_experiment("superposition")
    assert exp.config is sp.SuperpositionConfig and exp.run is sp.run_superposition and exp.rows is None
    run_experiment("superposition", "book", out=tmp_path, device="cpu", progress=False,
                   overrides={"n": 6, "m": 2, "sparsity": (0.0, 0.9), "repeats": 2, "steps": 40, "batch_size": 16})
    replay = exp.replay(load_result(tmp_path))
    assert replay["replayed"] == replay["stored"]
    assert len(replay["stored"]["represented"]) == 2 and len(replay["stored"]["final_loss"][0]) == 2
    with pytest.raises(ValueError, match="superposition result"):
        exp.replay({"experiment": "collisions"})


def test_figures_draw_and_the_explorer_reports_what_it_shows():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polybook.views import superposition as spv

    theta = torch.arange(5) * 2 * math.pi / 5
    pentagon = torch.stack([theta.cos(), theta.sin()], dim=-1)  # (5, 2)
    fig = spv.plot_phase_change(torch.stack([pentagon, 0.3 * pentagon]), (0.9, 0.0))
    assert len(fig.axes) == 6  # two columns of two panels, and two colour bars
    fig, ax = plt.subplots()
    spv.plot_directions(ax, pentagon, title="pentagon")
    assert ax.get_title() == "pentagon" and len(ax.texts) == 10  # an arrow and a label per feature
    fig, count = spv.explore(density=0.5, importance_decay=0.9, n=5, m=2, steps=30)
    assert count == int(sp.represented(spv._explore_weights(0.5, 0.9, 5, 2, 30, 0))[0])
    assert f"{count} of 5 features represented" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="density must be a number in"):
        spv.explore(density=0.0)
    plt.close("all")
