"""The collisions chapter's helpers: the sweep, the slope fit, stored results, start-to-end summaries."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import polybook as pb  # noqa: E402
from polybook import collisions as co  # noqa: E402
from polybook.display import markdown_table  # noqa: E402
from polybook.experiments import checksum, get_experiment  # noqa: E402
from polybook.views import collisions as cv  # noqa: E402

TINY = {"n": 8, "m": (8, 16), "instances": 3, "steps": 60, "lr": 1e-2, "l1": 1e-2}


def test_train_sweep_gives_exactly_the_registered_experiments_numbers():
    cfg = co.sweep_config("book", TINY)
    mine = co.sweep_record(cfg, co.train_sweep(cfg, device="cpu"))
    theirs = pb.run_experiment("collisions", "book", TINY, device="cpu", progress=False)["results"]
    assert mine == theirs


def test_count_stats_mean_sem_and_percentiles():
    s = co.count_stats([[0, 2, 4, 6], [5, 5, 5, 5]])
    assert s["mean"].tolist() == [3.0, 5.0]
    assert math.isclose(s["sem"][0], np.std([0, 2, 4, 6], ddof=1) / 2)
    assert s["sem"][1] == 0.0
    assert s["p16"][0] < s["mean"][0] < s["p84"][0]
    with pytest.raises(ValueError, match="instances >= 2"):
        co.count_stats([1, 2, 3])


def test_slope_fit_recovers_a_power_law_and_its_interval_covers_the_truth():
    rng = np.random.default_rng(0)
    m = np.array([64, 128, 256, 512, 1024])
    lam = 1000.0 / m  # Poisson counts with mean proportional to 1/m
    counts = rng.poisson(lam[:, None], size=(len(m), 400))
    fit = co.fit_loglog_slope(m, counts, boot=500, seed=1)
    assert fit.lo < -1.0 < fit.hi
    assert abs(fit.slope + 1) < 0.05
    assert 0 < fit.se < 0.05
    # the interval narrows with more instances
    few = co.fit_loglog_slope(m, counts[:, :25], boot=500, seed=1)
    assert few.hi - few.lo > fit.hi - fit.lo


def test_slope_fit_says_too_little_data_instead_of_fitting_zero_means_or_one_width():
    # A zero mean has no logarithm and one width no slope: NaN numbers and a note, not a fit.
    for m, counts in (([1, 2], [[0, 0], [1, 1]]), ([64], [[3, 1]]), ([], [])):
        fit = co.fit_loglog_slope(m, counts)
        assert not fit.ok and fit.note.startswith("too little data"), fit
        assert np.isnan([fit.slope, fit.lo, fit.hi, fit.se]).all(), fit
    assert co.fit_loglog_slope([64, 128], [[2, 2], [1, 1]]).ok
    with pytest.raises(ValueError, match="shape"):  # counts that do not match the widths are bad input
        co.fit_loglog_slope([64, 128, 256], [[2, 2], [1, 1]])


def _synthetic_record(n=16, ms=(16, 32, 64), instances=4):
    rng = np.random.default_rng(0)
    counts = [rng.poisson(n * n / (4 * m), size=instances).tolist() for m in ms]
    record = {
        "experiment": "collisions",
        "scale": "paper",
        "config": {"n": n, "m": list(ms), "instances": instances},
        "results": {
            "n": n, "m": list(ms), "polysemantic": counts, "polysemantic_by_mass": counts,
            "mixed_sign": counts, "same_sign": [[0] * instances for _ in ms],
            "predicted": [n * n / (4 * m) for m in ms],
            "predicted_exact": [pb.expected_polysemantic_exact(n, m) for m in ms],
            "final_loss": [0.0 for _ in ms],
        },
        "provenance": {"device": "cuda (synthetic)"},
    }
    record["checksum"] = checksum(record)
    return record


def test_paper_record_is_loaded_when_present_and_none_otherwise(tmp_path, monkeypatch):
    from polybook.experiments import RESULTS_URL_ENV

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(RESULTS_URL_ENV, (tmp_path / "empty-release").as_uri())
    assert co.load_paper_record() is None  # neither beside the notebook nor in the release
    folder = tmp_path / "results" / "collisions-paper"
    folder.mkdir(parents=True)
    record = _synthetic_record()
    (folder / "result.json").write_text(json.dumps(record))
    loaded = co.load_paper_record()
    assert loaded == record
    assert co.load_paper_record(folder) == record
    rows = co.law_rows(loaded)
    assert [r["m"] for r in rows] == [16, 32, 64]
    assert rows[0]["predicted"] == 4.0
    assert math.isclose(rows[1]["ratio"], rows[1]["mean"] / 2.0)
    fit = co.fit_loglog_slope(loaded["results"]["m"], loaded["results"]["polysemantic"], boot=50)
    fig, ax = plt.subplots()
    cv.plot_law(ax, loaded, label="paper scale", fit=fit)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    plt.close(fig)


def test_paper_record_is_found_from_the_repository_root_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "book" / "results" / "collisions-paper"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(_synthetic_record()))
    assert co.load_paper_record()["scale"] == "paper"


def test_paper_record_alone_in_a_fresh_runtime_comes_from_the_release(tmp_path, monkeypatch):
    # Colab: the notebook runs alone in an empty folder. Fails if the chapter then reports no
    # paper-scale run (and a different verdict) although the release has one.
    from polybook.experiments import RESULTS_URL_ENV

    release = tmp_path / "release" / "collisions-paper"
    release.mkdir(parents=True)
    record = _synthetic_record()
    (release / "result.json").write_text(json.dumps(record))
    work = tmp_path / "colab"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(RESULTS_URL_ENV, (tmp_path / "release").as_uri())
    assert co.load_paper_record() == record
    assert (work / "results" / "collisions-paper" / "result.json").is_file()


def test_loading_a_record_of_another_experiment_is_an_error(tmp_path):
    bad = _synthetic_record()
    bad["experiment"] = "noise"
    bad["checksum"] = checksum(bad)
    (tmp_path / "result.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="'collisions' record"):
        co.load_paper_record(tmp_path)


def test_correspondence_summary_counts_leaders_signs_and_pairs():
    # Feature 0 and 1 lead on neuron 0 with opposite signs and keep it; feature 2 leads on neuron 1
    # with + but ends on neuron 2 (its runner-up) with +.
    W0 = torch.tensor([[[0.5, 0.1, 0.0], [-0.4, 0.2, 0.1], [0.1, 0.6, 0.3]]])
    W = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    s = co.correspondence_summary(W0, W)
    assert math.isclose(s["leader_wins"], 2 / 3)
    assert s["top3"] == 1.0
    assert s["sign_kept"] == 1.0
    assert math.isclose(s["positive"], 2 / 3)
    assert s["initial_pairs"] == 1 and s["initial_pairs_opposite"] == 1
    assert s["final_pairs"] == 1 and s["final_from_initial"] == 1.0
    assert s["initial_opposite_kept"] == 1.0
    # pairs with opposite final signs: (0,1) shares, (1,2) does not -> rate 1/2 * m = 1.5
    assert math.isclose(s["opposite_share_rate"], 1.5)
    assert s["same_share_rate"] == 0.0


def test_correspondence_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="instances, n, m"):
        co.correspondence_summary(torch.zeros(1, 2, 3), torch.zeros(1, 3, 2))


def test_shared_neuron_loss_is_free_for_opposite_signs_and_costly_for_equal_signs():
    a = np.array([1.0, 1.0, 0.0, -1.0, 0.5])
    b = np.array([-1.0, 1.0, 0.0, -1.0, -0.5])
    expected = (1 - np.maximum(a * a, 0)) ** 2 + (1 - b * b) ** 2 + 2 * np.maximum(a * b, 0) ** 2
    got = co.shared_neuron_loss(a, b)
    assert np.allclose(got, expected)
    assert got[0] == 0.0 and got[1] == 2.0 and got[3] == 2.0


def test_two_feature_start_differs_only_in_the_partner_sign():
    W0 = co.two_feature_start()
    assert W0.shape == (2, 2, 4)
    assert (W0[0] != W0[1]).sum() == 1
    assert W0[0, 1, 0] > 0 > W0[1, 1, 0]
    assert (pb.winners(W0) == 0).all()


def test_two_features_same_sign_separate_and_opposite_sign_share():
    cfg = pb.TrainConfig(n=2, m=4, instances=2, steps=3000, lr=0.05, l1=0.01, optimizer="sgd")
    W = pb.train(cfg, W0=co.two_feature_start(), device="cpu", progress=False).W
    win = pb.winners(W)
    assert win[0, 0] != win[0, 1]  # same sign: pushed apart
    assert win[1, 0] == win[1, 1] == 0  # opposite sign: share neuron 0
    assert pb.polysemantic_neurons(W).tolist() == [0, 1]


def test_run_setting_reports_counts_and_prediction():
    row, res = co.run_setting(8, 16, instances=2, steps=20, seed=3, device="cpu")
    assert set(row) == {"band", "by_mass", "same", "onehot", "fourth", "predicted", "loss", "leader"}
    assert 0 <= row["leader"] <= 1 and 0 <= row["onehot"] <= 1
    assert row["predicted"] == 1.0
    assert res.W.shape == (2, 8, 16)


def test_markdown_table_rounds_floats_only():
    t = markdown_table(["x", "y"], [["a", 1.23456], [2, 1000.0]])
    assert t.splitlines() == ["| x | y |", "|---|---|", "| a | 1.23 |", "| 2 | 1000 |"]


def test_birthday_figure_simulates_and_draws_the_exact_values():
    fig, sim = cv.birthday_figure(16, 32, trials=300, seed=0)
    lines = [ln.get_xdata()[0] for ax in fig.axes for ln in ax.get_lines()]
    assert any(math.isclose(x, pb.expected_colliding_pairs(16, 32)) for x in lines)
    assert any(math.isclose(x, pb.expected_polysemantic_exact(16, 32)) for x in lines)
    assert len(sim["pairs"]) == 300
    plt.close(fig)


def test_summarise_weights_of_a_dense_and_a_one_hot_model():
    dense = torch.full((1, 4, 16), 0.25)  # unit-norm rows spread over 16 neurons
    r = co.summarise_weights(dense)
    assert r["band"] == 0 and r["onehot"] == 0 and math.isclose(r["fourth"], 16 * 0.25**4)
    one_hot = torch.eye(4, 16).unsqueeze(0)
    r = co.summarise_weights(one_hot, W0=one_hot)
    assert r["onehot"] == 1 and r["fourth"] == 1 and r["leader"] == 1 and r["band"] == 0


# --------------------------------------------------------------------------- the law over n

LAW_N_STORED = Path(__file__).resolve().parent.parent / "book" / "results" / "collisions-n" / "result.json"


def _tiny_law_n(tmp_path):
    return pb.run_experiment("collisions-n", "book", ["n=8,16", "m=16,16", "instances=3", "steps=600",
                                                      "checkpoint_steps=200,400", "lr=0.01", "l1=0.01"],
                             device="cpu", out=tmp_path, progress=False)


def test_law_over_n_counts_every_checkpoint_and_replays_exactly(tmp_path):
    record = _tiny_law_n(tmp_path)
    points = record["results"]["points"]
    assert [(p["n"], p["m"]) for p in points] == [(8, 16), (16, 16)]
    assert all(p["steps"] == [200, 400, 600] and len(p["polysemantic"]) == 3 for p in points)
    assert all(len(c) == 3 for p in points for c in p["polysemantic"])
    assert points[1]["predicted"] == 16**2 / (4 * 16)
    replay = co.replay_law_over_n(pb.load_result(tmp_path), points=2, instances=2)
    assert replay["replayed"] == replay["stored"]


def test_law_over_n_rows_compare_with_three_predictions():
    point = {"n": 8, "m": 16, "steps": [5, 10], "polysemantic": [[1, 1, 2, 0], [1, 1, 1, 1]],
             "one_hot": [[0.5] * 4, [1.0] * 4], "same_sign": [0, 0, 0, 0], "predicted": 1.0,
             "predicted_exact": 0.725}
    (row,) = co.law_over_n_rows({"results": {"points": [point]}})
    assert row["mean"] == 1.0 and row["double"] == 2.0 and row["one_hot"] == 1.0
    assert row["sem"] == 0.0 and row["z_double"] == (1.0 - 2.0) / 0.25  # s.e. 0 is floored at one count in 4
    assert row["moved"] == 0.0 and row["z_exact"] == pytest.approx((1.0 - 0.725) / 0.25)


def test_law_over_n_config_refuses_mismatched_points_and_late_checkpoints():
    with pytest.raises(ValueError, match="one per n"):
        co.LawOverNConfig(n=(8, 16), m=(16,))
    with pytest.raises(ValueError, match="checkpoint_steps"):
        co.LawOverNConfig(steps=100, checkpoint_steps=(50, 200))
    capped = co.LawOverNConfig().capped(2)
    assert capped.steps == 2 and capped.checkpoint_steps == (2,)


@pytest.mark.skipif(not LAW_N_STORED.exists(), reason="no stored collisions-n result")
def test_stored_law_over_n_matches_a_replayed_slice():
    record = pb.load_result(LAW_N_STORED)
    assert record["provenance"]["git_dirty"] is False
    replay = co.replay_law_over_n(record, points=1, instances=2)
    assert replay["replayed"] == replay["stored"]


def test_plot_law_over_n_draws_both_families():
    rows = co.law_over_n_rows({"results": {"points": [
        {"n": n, "m": m, "steps": [1], "polysemantic": [[1, 2]], "one_hot": [[1.0, 1.0]], "same_sign": [0, 0],
         "predicted": n * n / (4 * m), "predicted_exact": pb.expected_polysemantic_exact(n, m)}
        for n, m in [(16, 64), (32, 64), (32, 256), (64, 1024)]]}})
    fig, axes = plt.subplots(1, 2)
    cv.plot_law_over_n(axes[0], rows[:2])
    cv.plot_law_over_n(axes[1], rows[2:])
    assert len(axes[0].lines) >= 3 and len(axes[1].lines) >= 3
    plt.close(fig)


# --------------------------------------------------------------------------- the experiments as declared


def test_both_experiments_declare_their_rows_replay_and_pieces():
    law, law_n = get_experiment("collisions"), get_experiment("collisions-n")
    assert law.rows is co.law_rows and law_n.rows is co.law_over_n_rows
    assert law_n.replay is co.replay_law_over_n and law_n.run is co.run_law_over_n
    assert law.resumable and law_n.resumable
    assert "collisions-n" in law_n.stored  # the chapter loads it: released with the book
    assert isinstance(law_n.book, co.LawOverNConfig) and law_n.book == co.LawOverNConfig()
    record = _synthetic_record()
    assert law.rows(record) == co.law_rows(record["results"])


def test_replay_with_its_defaults_matches_a_fresh_record(tmp_path):
    record = _tiny_law_n(tmp_path)
    replay = get_experiment("collisions-n").replay(record)
    assert replay["replayed"] == replay["stored"] and len(replay["stored"]) == 1


@pytest.mark.parametrize("field, value", [
    ("n", ()), ("n", (0, 8)), ("m", (16, 1.5)), ("instances", 1), ("steps", 0), ("checkpoint_steps", ()),
    ("checkpoint_steps", (0,)), ("lr", 0.0), ("l1", -1e-3), ("l1", float("nan")), ("optimizer", "adam"),
    ("weight_decay", -0.1), ("seed", -1), ("seed", 2**63),
])
def test_law_over_n_config_refuses_each_bad_value(field, value):
    base = {"n": (8, 16), "m": (16, 16)}
    with pytest.raises(ValueError, match=f"^{field} must be "):
        co.LawOverNConfig(**{**base, field: value})


def test_law_over_n_config_checks_the_rules_between_fields_after_each_field():
    with pytest.raises(ValueError, match=r"^m must be a tuple of 2 widths, one per n"):
        co.LawOverNConfig(n=(8, 16), m=(16,))
    with pytest.raises(ValueError, match=r"^checkpoint_steps must be .* <= 100"):
        co.LawOverNConfig(steps=100, checkpoint_steps=(50, 200))
    assert co.LawOverNConfig(steps=100, checkpoint_steps=(100,)).checkpoint_steps == (100,)


def test_birthday_explorer_builds_without_drawing():
    pytest.importorskip("ipywidgets")
    before = plt.get_fignums()
    widget = cv.birthday_explorer(16, 32, trials=50)
    assert widget is not None
    assert plt.get_fignums() == before  # nothing is drawn until the button is pressed


def test_sweep_stores_the_one_hot_share_of_every_instance():
    cfg = co.sweep_config("book", TINY)
    res = co.sweep_record(cfg, co.train_sweep(cfg, device="cpu"))
    assert [len(v) for v in res["one_hot"]] == [3, 3] and all(0 <= v <= 1 for w in res["one_hot"] for v in w)
    rows = co.law_rows(res)
    assert all(r["one_hot"] == pytest.approx(float(np.mean(w))) for r, w in zip(rows, res["one_hot"]))


def test_a_record_without_one_hot_shares_leaves_the_finish_unknown():
    rows = co.law_rows(_synthetic_record())
    assert all(r["one_hot"] is None for r in rows)


def test_exact_curve_slope_is_the_fit_of_the_exact_expectation():
    ms = [64, 128, 256, 512]
    ys = np.log([pb.expected_polysemantic_exact(64, m) for m in ms])
    assert co.exact_curve_slope(64, ms) == pytest.approx(np.polyfit(np.log(ms), ys, 1)[0])
    assert -1 < co.exact_curve_slope(64, ms) < co.exact_curve_slope(64, ms[1:]) + 0.1  # shallower than -1
    assert co.exact_curve_slope(32, [4096, 8192]) == pytest.approx(-1, abs=0.01)  # n/m small: n^2/(4m)
    assert np.isnan(co.exact_curve_slope(64, [64])) and np.isnan(co.expected_slope_se(64, [], 16))  # no slope


def test_expected_slope_se_falls_like_one_over_the_root_of_the_seeds():
    a = co.expected_slope_se(64, [128, 256, 512], 16)
    b = co.expected_slope_se(64, [128, 256, 512], 64)
    assert b == pytest.approx(a / 2)
    assert 0.05 < a < 0.5
