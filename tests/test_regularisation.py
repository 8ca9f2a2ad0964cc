"""The sparsification dynamics: forces, the exact affine simulation, the predictions."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from polybook import regularisation as rg
from polybook.experiments import sparsification as xs
from polybook.experiments import winners as xw
from polybook.models import loss_and_grad
from polybook.train import TrainConfig, train


# --------------------------------------------------------------------------- forces


@pytest.mark.parametrize("l1", [0.0, 0.03])
def test_package_gradient_equals_minus_the_sum_of_the_three_forces(l1):
    gen = torch.Generator().manual_seed(3)
    W = torch.randn(3, 7, 11, generator=gen, dtype=torch.float64) / math.sqrt(11)
    f = rg.forces(W, l1)
    _, grad = loss_and_grad(W, l1)
    total = f["benefit"] + f["interference"] + f["regularisation"]
    assert torch.allclose(total, -grad, rtol=0, atol=1e-13)


def test_interference_vanishes_for_encodings_with_negative_overlap():
    W = torch.tensor([[1.0, 0.2], [-1.0, 0.3]], dtype=torch.float64)  # W_0 . W_1 < 0
    assert torch.count_nonzero(rg.forces(W)["interference"]) == 0


def test_gradient_descent_is_the_euler_scheme_of_the_paper_flow():
    # One feature, learning rate lr and L1 strength l1 on the package loss is the paper's
    # flow with time step 4 lr and lam = l1 / 4. Large weights: none dies in these steps.
    w0 = 0.3 + 0.5 * np.random.default_rng(0).random(6)
    lr, l1, steps = 0.01, 0.02, 15
    res = train(TrainConfig(n=1, m=6, steps=steps, lr=lr, optimizer="sgd", l1=l1), progress=False,
                W0=torch.tensor(w0, dtype=torch.float32).reshape(1, 1, 6), device="cpu")
    ref = rg.simulate_euler(w0, lam=l1 / 4, dt=4 * lr, steps=steps)
    assert ref.survivors[-1] == 6
    assert np.allclose(res.W.numpy().ravel(), _euler_weights(w0, l1 / 4, 4 * lr, steps), rtol=1e-5)
    assert math.isclose(float(res.W.abs().sum()), ref.l1[-1], rel_tol=1e-5)


def _euler_weights(w0, lam, dt, steps):
    w = w0.copy()
    for _ in range(steps):
        w = w + dt * ((1 - w @ w) * w - lam)
    return w


# --------------------------------------------------------------------------- the affine simulation


@pytest.mark.parametrize("m,lam,seed", [(10_000, 1e-3, 0), (3_000, 3e-3, 1), (500, 1e-2, 2)])
def test_affine_simulation_matches_euler_loop_survivor_for_survivor(m, lam, seed):
    w0 = rg.initial_magnitudes(m, c=0.9, seed=seed)
    steps = int(2.5 / lam / 0.5)
    fast = rg.simulate_affine(w0, lam, 0.5, steps)
    ref = rg.simulate_euler(w0, lam, 0.5, steps)
    assert np.array_equal(fast.survivors, ref.survivors)  # same count after every single step
    assert fast.survivors[0] == m and 1 <= fast.survivors[-1] <= 2  # one or two weights left
    alive = ref.survivors > 0
    assert np.allclose(fast.l1[alive], ref.l1[alive], rtol=1e-9, atol=0)
    assert np.allclose(fast.l2sq[alive], ref.l2sq[alive], rtol=1e-9, atol=0)


def test_affine_simulation_drops_everything_when_the_penalty_wins():
    # lam larger than any weight can ever grow against: every weight dies, none comes back.
    tr = rg.simulate_affine(np.array([0.01, 0.02, 0.03]), lam=1.0, dt=0.5, steps=5)
    ref = rg.simulate_euler(np.array([0.01, 0.02, 0.03]), lam=1.0, dt=0.5, steps=5)
    assert tr.survivors.tolist() == ref.survivors.tolist() == [3, 0, 0, 0, 0, 0]
    assert tr.l1[1:].tolist() == [0.0] * 5


def test_affine_simulation_is_faster_than_the_euler_loop():
    w0 = rg.initial_magnitudes(20_000, seed=4)
    fast = rg.simulate_affine(w0, 1e-4, 0.5, 20_000)
    ref = rg.simulate_euler(w0, 1e-4, 0.5, 20_000)
    assert np.array_equal(fast.survivors, ref.survivors)
    assert fast.seconds < ref.seconds


def test_simulations_reject_bad_input():
    with pytest.raises(ValueError, match="positive magnitudes"):
        rg.simulate_affine(np.array([0.1, -0.2]), 1e-3, 0.5, 3)
    with pytest.raises(ValueError, match="positive magnitudes"):
        rg.simulate_euler(np.array([0.1, 0.0]), 1e-3, 0.5, 3)
    with pytest.raises(ValueError, match="lam must be"):
        rg.simulate_affine(np.array([0.1]), -1.0, 0.5, 3)


# --------------------------------------------------------------------------- predictions


def test_paper_predictions_start_at_m_and_sqrt_m():
    assert rg.paper_survivors(0.0, 10_000, 1e-3) == pytest.approx(10_000)
    assert rg.paper_l1(0.0, 10_000, 1e-3) == pytest.approx(100)
    assert rg.paper_survivors(1e4, 10_000, 1e-3) == pytest.approx(rg.paper_l1(1e4, 10_000, 1e-3) ** 2)


@pytest.mark.parametrize("beta", [0.0, 0.7, 2.0])
def test_relative_variance_of_excess_matches_monte_carlo(beta):
    x = np.abs(np.random.default_rng(5).standard_normal(4_000_000))
    excess = x[x > beta] - beta
    mc = excess.var() / excess.mean() ** 2
    assert rg.relative_variance_of_excess([beta])[0] == pytest.approx(mc, rel=0.01)


def test_relative_variance_of_excess_runs_from_half_normal_to_exponential():
    rv = rg.relative_variance_of_excess([0.0, 20.0])
    assert rv[0] == pytest.approx(math.pi / 2 - 1, abs=1e-12)
    assert rv[1] == pytest.approx(1.0, abs=0.01)  # 1 - 2 / beta^2 for large beta


def test_threshold_prediction_follows_the_simulation():
    m, lam = 10_000, 1e-3
    sim = rg.simulate_affine(rg.initial_magnitudes(m, seed=0), lam, 0.5, 5000)
    pred = rg.threshold_prediction(sim.t, m, lam)
    # The prediction is an expectation over initialisations; with m' survivors left the count
    # fluctuates by a few 1/sqrt(m'), so compare while m' >= 200 (seeds 0-3 stay within 9%).
    window = (sim.t >= 1) & (sim.survivors >= 200)
    ratio = sim.survivors[window] / pred.survivors[window]
    assert np.all(np.abs(ratio - 1) < 0.1)
    # The identity behind the correction: m' ||w||_2^2 = ||w||_1^2 (1 + RV), in theory as in simulation.
    assert np.allclose(pred.survivors * pred.l2sq, pred.l1**2 * (1 + pred.relative_variance), rtol=1e-9)
    alive = sim.survivors > 0
    assert np.allclose((sim.survivors * sim.l2sq)[alive], (sim.l1**2 * (1 + sim.relative_variance))[alive])


def test_training_summary_counts_alive_weights_and_their_l1():
    W = torch.tensor([[[0.5, -0.3, 1e-4], [0.0, 2e-3, -1.0]]])
    s = rg.training_summary(W, alive_above=1e-3)
    assert s[..., 0].tolist() == [[2.0, 2.0]]
    assert torch.allclose(s[..., 1], torch.tensor([[0.8, 1.002]]))


# --------------------------------------------------------------------------- the experiment


def test_config_rejects_settings_of_unequal_length():
    with pytest.raises(ValueError, match="one entry per m"):
        rg.SparsificationConfig(m=(100, 200), lam=(1e-3,), euler=(True, True), train=(True, True))


def test_experiment_runs_and_agrees_with_itself():
    cfg = rg.SparsificationConfig(m=(2_000,), lam=(1e-2,), euler=(True,), train=(True,), train_n=2, points=30)
    res = rg.run_sparsification(cfg, torch.device("cpu"), progress=False)
    s = res["settings"][0]
    assert s["euler_same_survivors_every_step"] is True
    assert s["survivors"][0] == 2_000 and s["survivors"][-1] == 1
    assert len(s["t"]) == len(s["train"]["survivors"]) == len(s["theory_survivors"])
    assert s["train"]["survivors_per_feature"] == [1, 1]


# --------------------------------------------------------------------------- which neuron wins


def test_switching_interference_off_trains_each_feature_as_if_alone():
    W0 = torch.randn(1, 6, 20, generator=torch.Generator().manual_seed(7)) / math.sqrt(20)
    for opt, lr in (("sgd", 0.05), ("adamw", 1e-2)):
        together = train(TrainConfig(n=6, m=20, steps=200, lr=lr, l1=0.01, optimizer=opt, interference=False),
                         W0=W0, progress=False, device="cpu").W.reshape(6, 1, 20)
        alone = train(TrainConfig(n=1, m=20, instances=6, steps=200, lr=lr, l1=0.01, optimizer=opt),
                      W0=W0.reshape(6, 1, 20), progress=False, device="cpu").W
        assert torch.equal(together.abs().argmax(-1), alone.abs().argmax(-1))
        # Same arithmetic up to float32 rounding of differently shaped products. Under AdamW the
        # dead weights zig-zag around zero with steps of about lr whatever their gradient, so
        # rounding decides their phase: compare the weights that are alive.
        alive = alone.abs() > 0.05
        assert torch.allclose(together[alive], alone[alive], rtol=1e-4)
        if opt == "sgd":
            assert torch.allclose(together, alone, atol=1e-6)


def test_winner_record_counts_leaders_top3_and_decided_features():
    W0 = torch.tensor([[[0.9, 0.5, 0.1, 0.05], [0.2, 0.8, 0.6, 0.7]]])  # leaders: neuron 0, neuron 1
    end = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])  # feature 1 won by its 2nd
    snap = lambda W: torch.stack([W.abs().argmax(-1).float(), rg.dominance(W)], -1)
    rec = rg.winner_record(W0, {0: snap(W0), 5: snap(W0), 10: snap(end)})
    assert rec["leader"] == 0.5 and rec["top3"] == 1.0 and rec["settled"] == 1.0
    assert rec["stable"] == 0.5  # feature 1 changed its arg-max in the second half
    assert rec["leader_curve"] == [1.0, 1.0, 0.5] and rec["final_curve"] == [0.5, 0.5, 1.0]


def test_pair_record_counts_final_pairs_and_those_that_shared_an_initial_leader():
    # features 0 and 1 share their initial leader (neuron 0); all three end on neuron 0
    W0 = torch.tensor([[[0.9, 0.1, 0.0], [0.8, 0.0, 0.2], [0.0, 0.1, 0.7]],
                       [[0.1, 0.9, 0.0], [0.0, 0.2, 0.8], [0.6, 0.0, 0.1]]])
    W = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
                      [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    rec = xw.pair_record(W0, W)
    assert rec == {"final_pairs": [3, 0], "final_pairs_shared_leader": [1, 0], "initial_pairs": [1, 0]}
    # every leader wins: every final pair shared its leader
    same = xw.pair_record(W0, W0)
    assert same["final_pairs"] == same["final_pairs_shared_leader"] == same["initial_pairs"]


def test_single_feature_winner_is_always_the_initial_leader():
    cfg = rg.WinnersConfig(n=8, m=(32,), instances=2, adamw_steps=300, sgd_steps=300, points=8, adamw_lr_sweep=())
    for opt in ("sgd", "adamw"):
        res = train(cfg.train_config(0, opt, single=True), progress=False, device="cpu")
        assert bool((pb_rank(res.W0, res.W) == 0).all())


def pb_rank(W0, W):
    from polybook.metrics import winner_initial_rank
    return winner_initial_rank(W0, W)


# --------------------------------------------------------------------------- the stored paper-scale run

STORED = Path(__file__).resolve().parent.parent / "book" / "results" / "sparsification-paper" / "result.json"


@pytest.mark.skipif(not STORED.exists(), reason="no stored paper-scale sparsification run")
def test_stored_paper_run_matches_a_cheap_rerun_of_its_first_settings():
    stored = json.loads(STORED.read_text())
    replay = xs.replay_sparsification(stored)  # the first two settings, without the Euler loop
    assert len(replay["stored"]) == len(replay["replayed"]) == 2
    for old, new in zip(replay["stored"], replay["replayed"]):
        for key in ("t", "survivors", "l1", "theory_survivors", "paper_survivors", "last_alone"):
            assert np.allclose(old[key], new[key], rtol=1e-5), key  # float64 simulation: reproducible
    assert set(xs.REPLAYED_KEYS) == {"t", "survivors", "l1", "theory_survivors", "paper_survivors", "last_alone"}
    fresh = replay["replayed"]
    assert ("train" in fresh[0]) == stored["config"]["train"][0] and "train" not in fresh[1]
    if "train" in fresh[0]:  # float32 training on possibly another device: close, not equal
        old, new = stored["results"]["settings"][0]["train"], fresh[0]["train"]
        assert np.allclose(old["survivors"], new["survivors"], rtol=0.05, atol=1)
        assert np.allclose(old["l1_norm"], new["l1_norm"], rtol=0.02)


# --------------------------------------------------------------------------- the derivation of the L1 law


def test_l1_norm_changes_by_a_l1_minus_lam_survivors_while_no_weight_dies():
    # Step 2 of the chapter's derivation: d||w||_1/dt = a ||w||_1 - lam m', exactly per Euler step.
    w0 = 0.2 + np.random.default_rng(1).random(50)
    w0 *= 0.95 / np.linalg.norm(w0)  # ||w||_2 below 1: every weight (all above lam / a) grows
    lam, dt = 1e-3, 0.5
    tr = rg.simulate_euler(w0, lam, dt, 3)
    assert tr.survivors.tolist() == [50] * 4
    a = 1 - tr.l2sq[:-1]
    assert np.allclose(np.diff(tr.l1), dt * (a * tr.l1[:-1] - lam * tr.survivors[:-1]), rtol=0, atol=1e-12)


def test_learning_rate_sweep_keeps_lr_times_steps_and_the_initial_weights():
    cfg = rg.WinnersConfig()
    base = cfg.train_config(cfg.m.index(cfg.lr_m), "adamw", False)
    for lr in cfg.adamw_lr_sweep:
        tc = cfg.sweep_config(lr)
        assert tc.lr * tc.steps == pytest.approx(cfg.adamw_lr * cfg.adamw_steps)
        assert (tc.seed, tc.n, tc.m, tc.instances, tc.l1) == (base.seed, base.n, base.m, base.instances, base.l1)
    with pytest.raises(ValueError, match="lr_m"):
        rg.WinnersConfig(m=(128,), lr_m=256)
    assert rg.WinnersConfig(m=(128,), adamw_lr_sweep=()).lr_m == 256  # no sweep: lr_m unused


STORED_WINNERS = Path(__file__).resolve().parent.parent / "book" / "results" / "winners" / "result.json"


@pytest.mark.skipif(not STORED_WINNERS.exists(), reason="no stored winners run")
def test_stored_winners_run_loads_and_matches_the_registered_book_config():
    from polybook.experiments import get_experiment, load_result

    record = load_result(STORED_WINNERS)  # refuses a truncated or edited file
    assert record["experiment"] == "winners" and record["scale"] == "book"
    book = dataclasses.asdict(get_experiment("winners").scales["book"])
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()} == book
    assert record["provenance"]["git_dirty"] is False
    res = record["results"]
    cfg = rg.WinnersConfig(**book)
    assert [(r["m"], r["optimizer"], r["regime"]) for r in res["runs"]] == [
        (m, opt, reg) for m in cfg.m for opt in ("sgd", "adamw") for reg in ("interference", "single")]
    assert [r["lr"] for r in res["lr_sweep"]] == [*cfg.adamw_lr_sweep, cfg.sgd_lr]
    for r in res["runs"] + res["lr_sweep"]:
        # single features are trained as n * instances one-row models, each its own instance
        assert len(r["leader_by_instance"]) == (cfg.instances if r["regime"] == "interference" else cfg.n * cfg.instances)
        assert np.mean(r["leader_by_instance"]) == pytest.approx(r["leader"], abs=1e-3)
        assert 0 <= r["one_hot"] <= 1
    for r in res["runs"]:
        if r["regime"] == "interference":  # the pair counts per instance, the shared ones a subset of the final ones
            assert len(r["final_pairs"]) == len(r["initial_pairs"]) == cfg.instances
            assert all(0 <= s <= f for s, f in zip(r["final_pairs_shared_leader"], r["final_pairs"]))


@pytest.mark.skipif(not STORED_WINNERS.exists(), reason="no stored winners run")
def test_stored_winners_run_matches_a_replay_of_two_instances_of_its_shortest_run():
    from polybook.experiments import load_result

    record = load_result(STORED_WINNERS)
    cfg = rg.WinnersConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    replay = xw.replay_winners(record)  # the AdamW run at the largest lr (the fewest steps), two instances
    stored = next(r for r in record["results"]["lr_sweep"] if r["lr"] == max(cfg.adamw_lr_sweep))
    assert replay["stored"] == stored["leader_by_instance"][:2] and len(replay["replayed"]) == 2
    # float32 sums may round differently with another thread count: allow one borderline feature per instance
    assert np.allclose(replay["replayed"], replay["stored"], rtol=0, atol=1.01 / cfg.n)


def test_affine_step_is_one_euler_step_of_every_surviving_weight():
    w0 = np.array([0.9, 0.5, 0.3])
    A, B, lam, dt = 1.3, 0.05, 0.02, 0.25
    w = A * (w0 - B)
    euler = (1 + dt * (1 - w @ w)) * w - dt * lam
    A1, B1 = rg.affine_step(A, B, float(w @ w), dt, lam)
    assert np.allclose(A1 * (w0 - B1), euler, rtol=1e-14, atol=0)


# --------------------------------------------------------------------------- the experiments' declarations


@pytest.mark.parametrize("kwargs,needle", [
    ({"lam": (1e-3, 0.0)}, "lam must be a finite number > 0"),
    ({"euler": (True, 1)}, "euler must be True or False"),
    ({"m": ()}, "m must be a non-empty tuple"),
    ({"c": 0.0}, "c must be a finite number > 0"),
    ({"dt": -0.5}, "dt must be a finite number > 0"),
    ({"horizon": float("inf")}, "horizon must be a finite number > 0"),
    ({"train_n": 0}, "train_n must be an integer >= 1"),
    ({"points": 1}, "points must be an integer >= 2"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"train": (True,)}, r"train must be a tuple with one entry per m \(2\)"),
])
def test_sparsification_config_refuses_each_bad_field(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        xs.SparsificationConfig(**kwargs)


@pytest.mark.parametrize("kwargs,needle", [
    ({"adamw_lr": 0.0}, "adamw_lr must be a finite number > 0"),
    ({"sgd_l1": -1.0}, "sgd_l1 must be a finite number >= 0"),
    ({"adamw_steps": 0}, "adamw_steps must be an integer >= 1"),
    ({"points": 1}, "points must be an integer >= 2"),
    ({"adamw_lr_sweep": (1e-3, 0.0)}, "adamw_lr_sweep must be a finite number > 0"),
    ({"adamw_lr_sweep": [1e-3]}, "adamw_lr_sweep must be a non-empty tuple"),
    ({"m": (128, 512)}, r"lr_m must be one of m \(128, 512\), got 256"),
])
def test_winners_config_refuses_each_bad_field(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        xw.WinnersConfig(**kwargs)


def test_capped_sparsification_config_cuts_the_largest_lam_to_the_cap_and_the_others_in_proportion():
    full = xs.SparsificationConfig()  # lam 1e-3 and 1e-5
    cfg = full.capped(40)
    assert (cfg.steps(0), cfg.steps(1)) == (40, 4000) and cfg.m == full.m and cfg.lam == full.lam
    assert full.capped(10**9) == full


def test_both_experiments_are_registered_with_a_replay_and_rows():
    from polybook.experiments import get_experiment

    for name, module in (("sparsification", xs), ("winners", xw)):
        exp = get_experiment(name)
        assert exp is module.EXPERIMENT or exp.name == module.EXPERIMENT.name
        assert exp.replay is not None and exp.rows is not None
    assert rg.run_winners is xw.run_winners and rg.SparsificationConfig is xs.SparsificationConfig


def test_replays_refuse_a_record_of_another_experiment():
    with pytest.raises(ValueError, match="sparsification result"):
        xs.replay_sparsification({"experiment": "winners"})
    with pytest.raises(ValueError, match="winners result"):
        xw.replay_winners({"experiment": "sparsification"})


def test_sparsification_replay_and_rows_of_a_fresh_record():
    from polybook.experiments import run_experiment

    record = run_experiment("sparsification", "book", ["m=500,800", "lam=0.01,0.01", "euler=true,false",
                                                       "train=true,false", "train_n=2", "points=20"],
                            device="cpu", progress=False)
    replay = xs.replay_sparsification(record)
    for old, new in zip(replay["stored"], replay["replayed"]):
        assert all(old[k] == new[k] for k in xs.REPLAYED_KEYS)  # same machine: exactly equal
    assert replay["stored"][0]["train"]["survivors"] == replay["replayed"][0]["train"]["survivors"]
    rows = xs.sparsification_rows(record)
    assert [r["m"] for r in rows] == [500, 800] and [r["trained"] for r in rows] == [True, False]
    s = record["results"]["settings"][0]
    assert rows[0]["survivors_at_end"] == s["survivors"][-1]
    assert rows[0]["last_alone_times_lam"] == pytest.approx(s["last_alone"] * 0.01)
    assert rows[1]["euler_seconds"] is None and rows[0]["euler_seconds"] == s["euler_seconds"]


def test_winners_replay_notices_a_tampered_record_and_rows_give_the_shares():
    from polybook.experiments import run_experiment

    record = run_experiment("winners", "book", ["n=8", "m=16,32", "instances=3", "adamw_steps=300", "sgd_steps=300",
                                                "points=6", "lr_m=16", "adamw_lr_sweep=0.001,0.003"],
                            device="cpu", progress=False)
    replay = xw.replay_winners(record, instances=3)
    assert replay["replayed"] == replay["stored"]  # same machine, same arithmetic
    sweep = next(r for r in record["results"]["lr_sweep"] if r["lr"] == 0.003)
    sweep["leader_by_instance"] = [v + 0.5 for v in sweep["leader_by_instance"]]  # no share exceeds 1
    assert xw.replay_winners(record, instances=3)["replayed"] != xw.replay_winners(record, instances=3)["stored"]
    rows = xw.winners_rows(record)
    assert [(r["m"], r["optimizer"], r["regime"]) for r in rows] == [
        (m, opt, reg) for m in (16, 32) for opt in ("sgd", "adamw") for reg in ("interference", "single")]
    for row, run in zip(rows, record["results"]["runs"]):
        x = np.array(run["leader_by_instance"])
        assert row["leader"] == pytest.approx(x.mean())
        assert row["leader_se"] == pytest.approx(x.std(ddof=1) / math.sqrt(len(x)))
        assert (row["top3"], row["settled"], row["same_sign"]) == (run["top3"], run["settled"], run["same_sign"])


def test_winner_index_is_the_arg_max_of_the_magnitudes_as_floats():
    W = torch.tensor([[[0.1, -0.9, 0.3], [0.5, 0.2, -0.6]]])
    idx = xw._winner_index(W)
    assert idx.dtype == W.dtype and idx.tolist() == [[1.0, 2.0]]


def test_alive_weights_figure_and_explorer():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polybook.views import regularisation as rv

    fig, res = rv.alive_weights_figure(m=8, lam=0.05, steps=30)
    assert len(fig.axes) == 3 and tuple(res.W.shape) == (1, 8, 8)  # heatmap, its colour bar, the curves
    plt.close(fig)
    pytest.importorskip("ipywidgets")
    assert rv.alive_weights_explorer() is not None
