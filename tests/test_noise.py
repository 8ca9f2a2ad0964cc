"""polybook.noise (noise moments, the expected squared ReLU), its experiments (batched training, ``noise``,
``noise_width``) and its explorer."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import polybook as pb
from polybook import noise as nz
from polybook.experiments.noise import NoiseConfig, log_steps, train_together
from polybook.experiments.noise_width import NoiseWidthConfig, replay_noise_width


@pytest.mark.parametrize("kind", nz.FAMILIES)
def test_exact_moments_match_one_million_samples(kind):
    exact = nz.noise_moments(kind, 0.1)
    mc = nz.sample_moments(kind, 0.1, samples=1_000_000, seed=1)
    assert abs(mc["mean"]) < 5 * 0.1 / math.sqrt(1e6)
    assert mc["variance"] == pytest.approx(exact["variance"], rel=0.01)
    # the sample excess kurtosis has standard error about sqrt(Var(xi^4)) / sigma^4 / sqrt(N) <= 0.03 (Laplace)
    assert mc["excess_kurtosis"] == pytest.approx(exact["excess_kurtosis"], abs=0.15)


def test_excess_kurtosis_ordering_is_bernoulli_uniform_gaussian_laplace():
    values = [nz.EXCESS_KURTOSIS[k] for k in nz.FAMILIES]
    assert values == sorted(values) == [-2.0, -1.2, 0.0, 3.0]


@pytest.mark.parametrize("kind", nz.FAMILIES)
def test_projection_cumulants_match_monte_carlo(kind):
    w = np.array([0.8, -0.4, 0.3, 0.2, -0.1, 0.05, 0.0, 0.25])
    exact = nz.projection_cumulants(w, kind, 0.2)
    xi = pb.sample_noise(kind, 0.2, (2_000_000, len(w)), torch.Generator().manual_seed(2), dtype=torch.float64)
    z = (xi @ torch.as_tensor(w)).numpy()
    var = z.var()
    k4 = (z**4).mean() - 3 * var**2
    assert var == pytest.approx(exact["variance"], rel=0.01)
    assert k4 == pytest.approx(exact["fourth_cumulant"], abs=0.05 * 0.2**4 + 0.05 * abs(exact["fourth_cumulant"]))


def test_one_hot_encoding_passes_the_noise_kurtosis_through_and_a_spread_one_dilutes_it():
    one_hot = np.eye(16)[0]
    flat = np.full(16, 0.25)
    assert nz.projection_cumulants(one_hot, "bernoulli", 0.1)["excess_kurtosis"] == pytest.approx(-2.0)
    assert nz.projection_cumulants(flat, "bernoulli", 0.1)["excess_kurtosis"] == pytest.approx(-2.0 / 16)


def test_gaussian_relu_square_matches_monte_carlo():
    a = np.array([-0.2, -0.05, 0.0, 0.1])
    w = np.array([0.6, 0.8])
    mc, se = nz.relu_sq_monte_carlo(a, w, "gaussian", 0.1, samples=400_000, seed=3)
    assert np.all(np.abs(mc - nz.relu_sq_gaussian(a, 0.1)) < 5 * se + 1e-12)


@pytest.mark.parametrize("kind", nz.FAMILIES)
def test_at_zero_overlap_every_symmetric_noise_costs_half_the_variance(kind):
    w = np.random.default_rng(0).normal(size=16) / 4
    s2 = nz.projection_cumulants(w, kind, 0.1)["variance"]
    assert nz.relu_sq_edgeworth(0.0, w, kind, 0.1) == pytest.approx(s2 / 2)
    mc, se = nz.relu_sq_monte_carlo([0.0], w, kind, 0.1, samples=400_000, seed=4)
    assert abs(mc[0] - s2 / 2) < 5 * se[0]


def test_bernoulli_exact_sum_agrees_with_monte_carlo():
    w = np.array([0.7, -0.5, 0.4, 0.3, 0.1])
    a = np.array([-0.1, 0.0, 0.05])
    exact = nz.relu_sq_bernoulli_exact(a, w, 0.2)
    mc, se = nz.relu_sq_monte_carlo(a, w, "bernoulli", 0.2, samples=400_000, seed=5)
    assert np.all(np.abs(mc - exact) < 5 * se + 1e-12)


def test_bernoulli_penalty_vanishes_once_the_overlap_is_below_minus_sigma_times_l1_norm():
    w = np.array([0.9, 0.3, -0.2])
    bound = 0.1 * np.abs(w).sum()
    assert nz.relu_sq_bernoulli_exact([-bound - 1e-9], w, 0.1)[0] == 0.0
    assert nz.relu_sq_bernoulli_exact([-bound + 0.01], w, 0.1)[0] > 0.0


def test_edgeworth_is_close_for_a_spread_encoding_and_beats_the_gaussian_value():
    rng = np.random.default_rng(1)
    w = rng.normal(size=16)
    w /= np.linalg.norm(w)
    a = np.array([-0.15, -0.1, -0.05, 0.05])
    exact = nz.relu_sq_bernoulli_exact(a, w, 0.1)
    edge = nz.relu_sq_edgeworth(a, w, "bernoulli", 0.1)
    gauss = nz.relu_sq_gaussian(a, 0.1)
    assert np.all(np.abs(edge - exact) < np.abs(gauss - exact))
    assert np.all(np.abs(edge - exact) < 0.15 * exact)


def test_the_sign_of_the_correction_follows_the_kurtosis_for_a_negative_overlap():
    w = np.array([0.9, 0.3, 0.2, 0.2])
    gauss = nz.relu_sq_edgeworth(-0.1, w, "gaussian", 0.1)
    assert nz.relu_sq_edgeworth(-0.1, w, "bernoulli", 0.1) < nz.relu_sq_edgeworth(-0.1, w, "uniform", 0.1) < gauss
    assert nz.relu_sq_edgeworth(-0.1, w, "laplace", 0.1) > gauss


def _configs(steps=200, draws=1):
    return [
        pb.TrainConfig(n=4, m=8, instances=i, steps=steps, lr=0.02, optimizer="sgd", noise=f, sigma=s,
                       noise_shared=sh, noise_draws=draws, seed=seed)
        for i, f, s, sh, seed in [(2, "bernoulli", 0.1, False, 0), (3, "gaussian", 0.15, True, 1),
                                  (1, "laplace", 0.07, False, 2), (2, "uniform", 0.1, True, 0)]
    ]


@pytest.mark.parametrize("draws", [1, 3])
def test_train_together_gives_what_train_gives_config_by_config(draws):
    configs = _configs(draws=draws)
    together = train_together(configs, snapshot_steps=[0, 50, 200], device="cpu", progress=False)
    for cfg, res in zip(configs, together):
        alone = pb.train(cfg, snapshot_steps=[0, 50, 200], device="cpu", progress=False)
        assert torch.equal(res.W0, alone.W0)
        # batched matrix products round differently from unbatched ones; 200 steps stay within 1e-5
        torch.testing.assert_close(res.W, alone.W, atol=1e-5, rtol=0)
        torch.testing.assert_close(res.losses, alone.losses, atol=1e-5, rtol=1e-5)
        assert sorted(res.snapshots) == [0, 50, 200]
        torch.testing.assert_close(res.snapshots[200], alone.W, atol=1e-5, rtol=0)


def test_train_together_accepts_different_learning_rates():
    a, b = _configs(steps=50)[:2]
    b = dataclasses.replace(b, lr=0.01)
    res = train_together([a, b], device="cpu", progress=False)
    torch.testing.assert_close(res[1].W, pb.train(b, device="cpu", progress=False).W, atol=1e-5, rtol=0)


def test_train_together_restores_the_thread_count():
    before = torch.get_num_threads()
    train_together(_configs(steps=3), device="cpu", progress=False)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("change,needle", [
    (dict(steps=7), "steps must be the same in every config"),
    (dict(optimizer="adamw"), "optimizer must be 'sgd'"),
    (dict(noise_draws=2), "noise_draws must be the same"),
])
def test_train_together_rejects_configs_that_cannot_share_a_program(change, needle):
    configs = _configs(steps=5)
    configs[1] = dataclasses.replace(configs[1], **change)
    with pytest.raises(ValueError, match=needle):
        train_together(configs, device="cpu", progress=False)


def test_log_steps_start_at_zero_end_at_steps_and_increase():
    s = log_steps(100_000, 60)
    assert s[0] == 0 and s[1] == 1 and s[-1] == 100_000
    assert all(x < y for x, y in zip(s, s[1:]))


def test_noise_config_rejects_an_unknown_family():
    with pytest.raises(ValueError, match="families must be one of"):
        NoiseConfig(families=("bernoulli", "cauchy"))


def test_paper_scale_is_the_papers_setting():
    from polybook.experiments import get_experiment

    cfg = get_experiment("noise").scales["paper"]
    assert (cfg.n, cfg.m, cfg.instances, cfg.steps, cfg.lr) == (8, 16, 5, 100_000, 0.02)
    assert cfg.sigmas == (0.07, 0.1, 0.15) and {"bernoulli", "gaussian"} <= set(cfg.families)


def test_tiny_noise_experiment_writes_curves_and_summaries(tmp_path):
    rec = pb.run_experiment(
        "noise", "book",
        {"steps": 40, "separate_steps": 20, "draws": 2, "count_instances": 2, "instances": 2, "snapshots": 5},
        device="cpu", out=tmp_path, progress=False,
    )
    again = json.loads((tmp_path / "result.json").read_text())
    assert again["results"] == json.loads(json.dumps(rec["results"]))
    runs = rec["results"]["runs"]
    assert len(runs) == 4 * 3 + 2 * 3 + 1
    first = runs[0]
    assert first["steps"][0] == 0 and first["steps"][-1] == 40
    assert len(first["mean"]) == len(first["steps"]) and len(first["per_instance"][0]) == 2
    assert len(first["fourth_norm"]) == 2
    variants = {r["variant"] for r in rec["results"]["separate"]}
    assert variants == {"one draw", "2 draws", "lr / 2"}
    slow = [r for r in rec["results"]["separate"] if r["variant"] == "lr / 2"][0]
    assert slow["steps"][-1] == 40 and slow["time"][-1] == pytest.approx(40 * 0.01)


def test_tiny_noise_width_experiment_pairs_the_runs_and_counts_by_every_rule():
    rec = pb.run_experiment(
        "noise_width", "book",
        {"ns": (4, 8), "fluct_n": 8, "steps": 30, "l1_steps": 20, "instances": 2, "snapshots": 4, "draws": 2},
        device="cpu", progress=False,
    )
    widths = rec["results"]["widths"]
    assert [w["n"] for w in widths] == [4, 8] and [w["m"] for w in widths] == [8, 16]
    assert widths[1]["simplex_overlap"] == pytest.approx(-1 / 7)
    assert widths[1]["expected_polysemantic_exact"] == pytest.approx(pb.expected_polysemantic_exact(8, 16), abs=1e-6)
    for w in widths:
        assert [(r["family"], r["sigma"]) for r in w["runs"]] == [
            ("bernoulli", 0.1), ("bernoulli", 0.15), ("gaussian", 0.1), ("gaussian", 0.15)]
        for summary in [*w["runs"], w["l1"]]:
            for key in ("polysemantic_band", "polysemantic_by_mass", "polysemantic_by_response", "fourth_norm"):
                assert len(summary[key]) == 2
        # every run of one n starts from the same weights, so all share the first snapshot
        assert len({r["mean"][0] for r in w["runs"]}) == 1
    fluct = rec["results"]["fluctuations"]
    assert [f["variant"] for f in fluct] == ["2 draws", "lr / 2"]
    assert fluct[0]["steps"][-1] == 30 and fluct[1]["steps"][-1] == 60
    assert fluct[0]["time"][-1] == fluct[1]["time"][-1] == pytest.approx(30 * 0.02)
    assert fluct[0]["mean"][0] == widths[1]["runs"][1]["mean"][0]  # the same initial weights as the main run


def test_noise_width_config_rejects_a_fluctuation_size_it_does_not_run():
    with pytest.raises(ValueError, match="fluct_n must be one of"):
        NoiseWidthConfig(ns=(8, 16), fluct_n=32)


def test_stored_noise_width_result_loads_and_matches_its_registered_config():
    from pathlib import Path

    from polybook.experiments import get_experiment

    path = Path(__file__).resolve().parent.parent / "book" / "results" / "noise_width"
    record = pb.load_result(path)  # ResultError when the file is missing, truncated or edited
    assert record["experiment"] == "noise_width" and record["scale"] == "book"
    expected = json.loads(json.dumps(dataclasses.asdict(get_experiment("noise_width").scales["book"])))
    assert record["config"] == expected
    assert "smoke_steps" not in record["provenance"]
    assert [w["n"] for w in record["results"]["widths"]] == list(expected["ns"])
    for w in record["results"]["widths"]:
        for r in w["runs"]:
            assert r["steps"][-1] == expected["steps"] and len(r["fourth_norm"]) == expected["instances"]


def test_stored_noise_width_result_matches_a_replayed_slice():
    """The first 300 steps of the smallest and largest n, re-trained from the stored config, give the stored curves."""
    from pathlib import Path

    record = pb.load_result(Path(__file__).resolve().parent.parent / "book" / "results" / "noise_width")
    out = replay_noise_width(record, horizon=300)
    widths = record["results"]["widths"]
    assert len(out["stored"]) == len(out["replayed"]) == 2
    for w, stored, again in zip((widths[0], widths[-1]), out["stored"], out["replayed"]):
        steps = [t for t in w["runs"][0]["steps"] if t <= 300]
        assert len(stored) == len(again) == len(w["runs"])
        for s_run, r_run in zip(stored, again):
            assert len(s_run) == len(r_run) == len(steps)
            # stored to 6 decimals; another machine's float rounding may differ by about 1e-6
            np.testing.assert_allclose(r_run, s_run, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- the experiment files and the explorer


@pytest.mark.parametrize("change,needle", [
    (dict(n=0), "n must be"), (dict(instances=0), "instances must be"), (dict(lr=0.0), "lr must be"),
    (dict(sigmas=(0.1, 0.0)), "sigmas must be"), (dict(separate_sigmas=(-0.1,)), "separate_sigmas must be"),
    (dict(count_sigma=0.0), "count_sigma must be"), (dict(shared_families=("cauchy",)), "shared_families must be one of"),
    (dict(separate_families=("cauchy",)), "separate_families must be one of"), (dict(count_family="cauchy"), "count_family"),
    (dict(count_instances=-1), "count_instances must be"), (dict(separate_steps=0), "separate_steps must be"),
    (dict(draws=0), "draws must be"), (dict(slow_factor=0), "slow_factor must be"), (dict(snapshots=1), "snapshots must be"),
    (dict(seed=-1), "seed must be"),
])
def test_noise_config_refuses_each_bad_field_by_name(change, needle):
    with pytest.raises(ValueError, match=needle):
        NoiseConfig(**change)


def test_noise_config_may_leave_out_the_shared_runs_and_the_count_run():
    cfg = NoiseConfig(shared_families=(), count_instances=0)
    assert len(cfg.settings()) == len(cfg.families) * len(cfg.sigmas)
    assert not any(r["shared"] or r["seed"] != cfg.seed for r in cfg.settings())


@pytest.mark.parametrize("change,needle", [
    (dict(ns=()), "ns must be"), (dict(ns=(1, 32)), "ns must be"), (dict(ratio=0), "ratio must be"),
    (dict(families=("cauchy",)), "families must be one of"), (dict(sigmas=(0.0,)), "sigmas must be"),
    (dict(l1=0.0), "l1 must be"), (dict(l1_steps=0), "l1_steps must be"), (dict(snapshots=1), "snapshots must be"),
    (dict(fluct_family="cauchy"), "fluct_family must be one of"), (dict(fluct_sigma=0.0), "fluct_sigma must be"),
    (dict(draws=0), "draws must be"), (dict(slow_factor=0), "slow_factor must be"),
])
def test_noise_width_config_refuses_each_bad_field_by_name(change, needle):
    with pytest.raises(ValueError, match=needle):
        NoiseWidthConfig(**change)


def test_train_together_stops_a_diverging_run_naming_the_learning_rate():
    from polybook.train import Diverged

    cfg = pb.TrainConfig(n=4, m=8, instances=2, steps=300, lr=50.0, optimizer="sgd", noise="gaussian", sigma=1.0)
    with pytest.raises(Diverged, match=r"diverged by step \d+ of 300.*lr \(now 50\)"):
        train_together([cfg], device="cpu", progress=False)


def test_a_fresh_noise_width_record_replays_exactly(tmp_path):
    from polybook.experiments import get_experiment

    assert get_experiment("noise_width").replay is replay_noise_width and get_experiment("noise").replay is None
    rec = pb.run_experiment("noise_width", "book", {"ns": (4, 6), "fluct_n": 6, "steps": 40, "l1_steps": 10,
                                                    "instances": 2, "snapshots": 6, "draws": 2},
                            device="cpu", progress=False)
    out = replay_noise_width(json.loads(json.dumps(rec)), horizon=25)
    assert out["stored"] == out["replayed"] and len(out["stored"]) == 2
    with pytest.raises(ValueError, match="record must be a noise_width result"):
        replay_noise_width({**rec, "experiment": "noise"})


def test_explorer_figure_trains_the_chosen_setting():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polybook.views import noise as nv

    fig, res = nv.explorer_figure("laplace", 0.05, steps=50, instances=2)
    assert res.config.noise == "laplace" and tuple(res.W.shape) == (2, 8, 16) and max(res.snapshots) == 50
    plt.close(fig)


def test_the_explorer_offers_the_chapters_controls():
    pytest.importorskip("ipywidgets")
    from polybook.views import noise as nv

    controls = {w.description: w for w in nv.explorer().children if hasattr(w, "value")}
    assert list(controls["family"].options) == list(nz.FAMILIES) and controls["family"].value == "bernoulli"
    sigma = controls["sigma"]
    assert (sigma.base, sigma.min, sigma.max, sigma.step, sigma.readout_format) == (10, -1.7, -0.5, 0.05, ".3f")
    assert sigma.value == pytest.approx(0.1)
    assert list(controls["steps"].options) == [2_000, 5_000, 20_000, 50_000, 100_000] and controls["steps"].value == 20_000
