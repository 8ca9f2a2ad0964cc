"""Beyond the toy model: architecture variants and sparse autoencoders."""

from pathlib import Path

import pytest
import torch

import polybook as pb
from polybook import beyond as bb
from polybook.experiments import EXPERIMENTS, _load_all, get_experiment, load_result, run_experiment
from polybook.experiments import architectures, sae
from polybook.train import Diverged
from polybook.views import beyond as bv

RESULTS = Path(__file__).resolve().parent.parent / "book" / "results"


# --------------------------------------------------------------------------- architectures


def test_tied_relu_variant_has_the_loss_and_gradient_of_the_package_model():
    W0 = pb.init_weights(3, 8, 16, seed=1)
    loss, grad = pb.loss_and_grad(W0, 1e-3)
    W = W0.clone().requires_grad_(True)
    full = bb.arch_loss("tied_relu", {"W": W}, 1e-3)
    full.sum().backward()
    assert torch.allclose(full, loss + 1e-3 * W0.abs().sum(dim=(1, 2)), atol=1e-5)
    assert torch.allclose(W.grad, grad, atol=1e-6)


@pytest.mark.parametrize("variant", ["biases", "second_layer", "minibatch"])
def test_variants_start_with_the_tied_model_loss(variant):
    W0 = pb.init_weights(2, 6, 12, seed=2)
    p = bb.init_params(variant, W0)
    assert torch.allclose(bb.arch_loss(variant, p, 1e-3), bb.arch_loss("tied_relu", {"W": W0}, 1e-3), atol=1e-5)


def test_untied_model_with_decoder_equal_to_encoder_is_the_tied_model():
    W0 = pb.init_weights(2, 6, 12, seed=3)
    assert torch.allclose(bb.arch_loss("untied", {"W": W0, "D": W0.clone()}, 1e-2),
                          bb.arch_loss("tied_relu", {"W": W0}, 1e-2), atol=1e-5)


def test_minibatch_loss_is_unbiased_over_the_rows():
    W0 = pb.init_weights(1, 4, 8, seed=4)
    p = {"W": W0}
    per_row = torch.stack([bb.arch_loss("minibatch", p, 0.0, torch.tensor([r])) for r in range(4)])
    assert torch.allclose(per_row.mean(0), bb.arch_loss("tied_relu", p, 0.0), atol=1e-6)


def test_gelu_charges_the_opposite_sign_collision_that_relu_forgives():
    W = torch.tensor([[[1.0], [-1.0]]])
    assert float(bb.arch_loss("tied_relu", {"W": W}, 0.0)) == 0.0
    gelu_m1 = float(torch.nn.functional.gelu(torch.tensor(-1.0)))
    gelu_p1 = float(torch.nn.functional.gelu(torch.tensor(1.0)))
    expected = 2 * gelu_m1**2 + 2 * (1 - gelu_p1) ** 2
    assert float(bb.arch_loss("gelu", {"W": W}, 0.0)) == pytest.approx(expected, rel=1e-5)


def test_hidden_relu_silences_negative_weights_in_the_counted_code():
    W = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]])
    assert int(pb.polysemantic_neurons(bb.hidden_codes("tied_relu", {"W": W}))[0]) == 1
    assert int(pb.polysemantic_neurons(bb.hidden_codes("hidden_relu", {"W": W}))[0]) == 0


@pytest.mark.parametrize("kwargs,field", [({"variants": ("tied_relu", "conv")}, "variants"), ({"batch": 64}, "batch"),
                                          ({"instances": 1}, "instances"), ({"variants": ()}, "variants")])
def test_arch_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        bb.ArchConfig(**kwargs)


@pytest.mark.parametrize("kwargs,needle", [({"n": 1, "batch": 1}, "n must be an integer >= 2"),
                                           ({"n": 6, "batch": 7}, "batch must be an integer >= 1 and <= 6"),
                                           ({"variants": ("conv",)}, "variants must be one of 'tied_relu'")])
def test_arch_config_rules_say_what_is_allowed(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        bb.ArchConfig(**kwargs)
    assert bb.ArchConfig(n=6, batch=6).batch == 6  # a minibatch may hold every basis input


def test_train_variant_stops_a_diverged_run_naming_the_variant():
    with pytest.raises(Diverged, match="architectures tied_relu diverged by step 100 of 300"):
        bb.train_variant("tied_relu", pb.init_weights(2, 4, 8), steps=300, lr=1e30, batch=2)


def test_train_variant_refuses_bad_shapes_and_variants():
    with pytest.raises(ValueError, match="W0"):
        bb.train_variant("tied_relu", torch.zeros(4, 8), steps=1)
    with pytest.raises(ValueError, match="variant"):
        bb.train_variant("lstm", torch.zeros(1, 4, 8), steps=1)


def test_architectures_experiment_contract_and_replay(tmp_path):
    rec = run_experiment("architectures", "book", {"n": 6, "m": 12, "instances": 2, "steps": 300, "lr": 0.01,
                                                   "l1": 0.01, "batch": 3, "variants": ("tied_relu", "minibatch")},
                         device="cpu", out=tmp_path, progress=False)
    res = load_result(tmp_path)["results"]
    assert res["variants"] == ["tied_relu", "minibatch"]
    assert len(res["per_variant"]["minibatch"]["polysemantic"]) == 2
    replay = bb.replay_architectures(rec, variants=("tied_relu", "minibatch"), instances=2)
    assert replay["replayed"] == replay["stored"]
    rows = bb.arch_rows(rec)
    assert rows[0]["diff"] == 0.0 and rows[0]["variant"] == "tied_relu"


def test_training_until_finished_stops_at_the_rule_and_replays_with_the_steps_it_took():
    W0 = pb.init_weights(2, 6, 24, seed=5)
    p, loss, done = bb.train_until_finished("tied_relu", W0, steps=200, max_steps=4000, lr=0.01, l1=0.01, batch=3)
    assert done < 4000 and done % 200 == 0  # it stopped at the end of a round, before the budget
    assert float(architectures.finished_share("tied_relu", p).mean()) >= bb.FINISHED
    again, _ = bb.train_variant("tied_relu", W0, steps=done, lr=0.01, l1=0.01, batch=3)
    assert torch.equal(again["W"], p["W"])  # rounds train exactly as one run of the same length
    _, _, capped = bb.train_until_finished("minibatch", W0, steps=5, max_steps=12, lr=1e-4, batch=3)
    assert capped == 12  # an unfinished variant stops at max_steps (the last round shortened)


def test_arch_rows_mark_unfinished_variants():
    res = {"variants": ["tied_relu", "minibatch"], "predicted_exact": 1.0, "per_variant": {
        v: {"polysemantic": [1, 2], "by_mass": [1, 2], "same_sign": [0, 0], "loss": [0.0, 0.0],
            "top_weight": [1.0, 1.0], "one_hot": oh, "steps": 10} for v, oh in (("tied_relu", [1.0, 0.96]), ("minibatch", [0.6, 0.7]))}}
    rows = bb.arch_rows(res)
    assert [r["finished"] for r in rows] == [True, False] and rows[1]["one_hot"] == pytest.approx(0.65)


def test_stored_results_are_draws_of_their_own():
    """Runs used as independent evidence must not share initial weights: each stored experiment of this
    chapter has its own seed base, apart from the co-occurrence models of the same n and m."""
    seeds = {}
    for name in ("architectures", "sae", "cooccurrence"):
        path = RESULTS / name / "result.json"
        if path.exists():
            seeds[name] = load_result(path)["config"]["seed"]
    if "architectures" in seeds:
        assert seeds["architectures"] == bb.ArchConfig().seed == 2000
        assert seeds["architectures"] != seeds.get("cooccurrence")
    if "sae" in seeds:
        assert seeds["sae"] == bb.SAEConfig().seed == 3000


def test_stored_architectures_result_matches_a_replayed_slice():
    path = RESULTS / "architectures" / "result.json"
    if not path.exists():
        pytest.skip("no stored architectures result")
    record = load_result(path)
    assert record["provenance"].get("git_dirty") is False
    replay = bb.replay_architectures(record, variants=("tied_relu", "gelu"), instances=2)
    assert replay["replayed"] == replay["stored"]


# --------------------------------------------------------------------------- sparse autoencoders


def test_response_rule_uses_the_relative_threshold_and_the_floor():
    p = {"We": torch.tensor([[[1.0, 0.0], [0.7, 0.7], [0.05, 0.0]]]), "be": torch.zeros(1, 1, 3),
         "bd": torch.zeros(1, 1, 2)}
    resp = bb.sae_responses(p, torch.eye(2))
    assert resp[0].int().tolist() == [[1, 1, 0], [0, 1, 0]]  # latent 2 is below the floor: dead
    assert bb.mixed_latents(resp).tolist() == [1]
    assert bb.mixed_pairs(resp) == [{(0, 1)}]
    assert bb.sae_responses(p, torch.eye(2), rel=0.8)[0].int().tolist() == [[1, 1, 0], [0, 1, 0]]
    p["be"] = torch.tensor([[[0.0, -0.69, 0.0]]])  # the bias silences latent 1 except on its best feature
    assert bb.mixed_latents(bb.sae_responses(p, torch.eye(2))).tolist() == [0]


def test_pair_overlap_is_chance_free_for_disjoint_and_one_for_equal_sets():
    assert bb.pair_overlap([{(0, 1)}, {(2, 3)}]) == 0.0
    assert bb.pair_overlap([{(0, 1)}, {(0, 1)}]) == 1.0
    assert bb.pair_overlap([set(), set()]) is None
    pairs = [{(0, 1), (1, 2)}, {(0, 1)}, {(1, 2), (3, 4), (0, 1)}]
    per = bb.pair_overlap_per_sae(pairs)
    assert sum(per) / len(per) == pytest.approx(bb.pair_overlap(pairs))


def test_an_sae_recovers_orthogonal_features_without_mixing():
    D = torch.eye(8, 16)  # 8 orthogonal features in 16 dimensions
    _, x = bb.sample_data(D, 4096, 0.1, seed=0)
    p = bb.train_sae(x, 16, seeds=[0, 1], steps=1500, batch=128, lr=3e-3, sae_l1=0.03)
    resp = bb.sae_responses(p, D)
    assert bb.mixed_latents(resp).tolist() == [0, 0]
    assert (resp.sum(dim=2) == 0).sum(-1).tolist() == [0, 0]  # every feature has a latent


def test_recovery_is_the_best_cosine_of_a_feature_with_a_decoder_column():
    p = {"Wd": torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])}  # (seeds, d, width); a column of norm 2 is normalised
    rec = bb.recovery(p, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    assert rec[0].tolist() == pytest.approx([1.0, 1.0, 0.8])


def test_mixed_latents_recur_when_another_seed_mixes_one_of_their_pairs():
    r = torch.zeros(3, 4, 3, dtype=torch.bool)  # (seeds, features, width)
    r[0, [0, 1], 0] = True  # SAE 0: latent 0 mixes (0, 1); latent 1 mixes (2, 3)
    r[0, [2, 3], 1] = True
    r[1, [0, 1, 2], 0] = True  # SAE 1: latent 0 mixes (0, 1), (0, 2), (1, 2)
    r[2, 3, 2] = True  # SAE 2: no mixed latent
    assert bb.classify_mixed(r) == ([1, 1, 0], [1, 0, 0])


def test_too_narrow_an_sae_must_mix():
    D = torch.eye(8, 16)
    _, x = bb.sample_data(D, 4096, 0.1, seed=0)
    p = bb.train_sae(x, 4, seeds=[0, 1], steps=1500, batch=128, lr=3e-3, sae_l1=0.03)
    resp = bb.sae_responses(p, D)
    assert all(c >= 1 for c in bb.mixed_latents(resp).tolist()) or all(
        m >= 1 for m in (resp.sum(dim=2) == 0).sum(-1).tolist())


@pytest.mark.parametrize("kwargs,field", [({"d": (64,)}, "d"), ({"p": 0.0}, "p"), ({"widths": (0.001,)}, "widths"),
                                          ({"batch": 10**6}, "batch"), ({"sae_l1": -1.0}, "sae_l1"),
                                          ({"seeds": 1}, "seeds")])
def test_sae_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        bb.SAEConfig(**kwargs)


@pytest.mark.parametrize("kwargs,needle", [({"features": (1, 64)}, "features must be"),
                                           ({"d": (64, 32, 8)}, "d must be a tuple as long as features"),
                                           ({"widths": (0.5, -1.0)}, "widths must be a finite number > 0"),
                                           ({"widths": (2048.0,)}, "widths must be .* <= 1024"),
                                           ({"samples": 100}, "batch must be an integer >= 1 and <= 100"),
                                           ({"p": 1.5}, "p must be a finite number > 0 and <= 1")])
def test_sae_config_rules_say_what_is_allowed(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        bb.SAEConfig(**kwargs)


def test_train_sae_stops_a_diverged_run():
    _, x = bb.sample_data(torch.eye(4, 6), 64, 0.3)
    with pytest.raises(Diverged, match="sae width 8 diverged"):
        bb.train_sae(x, 8, seeds=[0, 1], steps=200, batch=16, lr=1e30)


def test_sae_experiment_contract_and_replay(tmp_path):
    rec = run_experiment("sae", "book", {"features": (6,), "d": (8,), "samples": 512, "widths": (0.5, 2.0),
                                         "seeds": 2, "steps": 200, "batch": 64},
                         device="cpu", out=tmp_path, progress=False)
    ds = load_result(tmp_path)["results"]["datasets"][0]
    assert ds["latents"] == [3, 12] and len(ds["mixed"][1]) == 2
    replay = bb.replay_sae(rec, dataset=0, widths=(0, 1), seeds=2)
    assert replay["replayed"] == replay["stored"]
    rows = bb.sae_rows(rec)
    assert [r["latents"] for r in rows] == [3, 12] and rows[0]["reference"] == pytest.approx(15 / 3)


def test_stored_sae_result_matches_a_replayed_slice():
    path = RESULTS / "sae" / "result.json"
    if not path.exists():
        pytest.skip("no stored sae result")
    record = load_result(path)
    assert record["provenance"].get("git_dirty") is False
    replay = bb.replay_sae(record, dataset=0, widths=(0,), seeds=2)
    assert replay["replayed"] == replay["stored"]


def test_both_experiments_are_registered():
    _load_all()
    assert {"architectures", "sae"} <= set(EXPERIMENTS)
    for module in (architectures, sae):
        exp = get_experiment(module.EXPERIMENT.name)
        assert exp.replay is not None and exp.rows is not None
    assert bb.arch_rows is architectures.arch_rows and bb.sae_rows is sae.sae_rows  # the chapter's names


# --------------------------------------------------------------------------- figures and the explorer


def test_the_figures_draw_from_the_rows():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = {"variants": ["tied_relu", "gelu"], "predicted_exact": 1.0, "per_variant": {
        v: {"polysemantic": c, "by_mass": c, "same_sign": [0, 0], "loss": [0.1, 0.2], "top_weight": [1.0, 0.9]}
        for v, c in (("tied_relu", [2, 3]), ("gelu", [0, 1]))}}
    fig, ax = plt.subplots()
    bv.plot_architectures(ax, bb.arch_rows(res), 1.0, 1.5)
    assert len(ax.patches) == 4  # two bars per variant
    srows = [{"ratio": 0.5, "mean": 2.0, "sem": 0.5, "reference": 10.0}, {"ratio": 2.0, "mean": 0.0, "sem": 0.0,
                                                                           "reference": 2.5}]
    bv.plot_sae(ax, srows, "toy", "C0")
    plt.close(fig)


def test_the_explorer_builds_its_controls_without_training():
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    assert bv.explorer(ratio=1.0, features=8, d=8) is not None
