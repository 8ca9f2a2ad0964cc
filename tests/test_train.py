"""The training loop: shapes, determinism, snapshots, optimisers and noise."""

import math

import pytest
import torch

from polybook import TrainConfig, fourth_norm, init_weights, sample_noise, train
from polybook.models import loss_and_grad


def test_shapes_of_a_training_result():
    cfg = TrainConfig(n=5, m=9, instances=3, steps=20)
    res = train(cfg, device="cpu", progress=False, snapshot_steps=[0, 10, 20])
    assert res.W.shape == res.W0.shape == (3, 5, 9)
    assert res.losses.shape == (20, 3)
    assert sorted(res.snapshots) == [0, 10, 20]
    assert torch.equal(res.snapshots[0], res.W0) and torch.equal(res.snapshots[20], res.W)


def test_same_seed_same_weights_other_seed_other_weights():
    cfg = TrainConfig(n=6, m=12, instances=2, steps=50, l1=1e-3, noise="bernoulli", sigma=0.1)
    a = train(cfg, device="cpu", progress=False)
    b = train(cfg, device="cpu", progress=False)
    c = train(TrainConfig(**{**cfg.__dict__, "seed": 1}), device="cpu", progress=False)
    assert torch.equal(a.W, b.W)
    assert not torch.equal(a.W, c.W)


def test_sgd_step_is_plain_gradient_descent():
    cfg = TrainConfig(n=4, m=6, steps=1, lr=0.1, optimizer="sgd", l1=0.01)
    res = train(cfg, device="cpu", progress=False)
    _, grad = loss_and_grad(res.W0, l1=0.01)
    assert torch.allclose(res.W, res.W0 - 0.1 * grad, atol=1e-7)


def test_snapshot_fn_stores_a_metric_instead_of_weights():
    cfg = TrainConfig(n=4, m=8, instances=2, steps=5)
    res = train(cfg, device="cpu", progress=False, snapshot_steps=[5], snapshot_fn=fourth_norm)
    assert torch.allclose(res.snapshots[5], fourth_norm(res.W))


def test_training_reduces_the_loss_and_l1_sparsifies():
    cfg = TrainConfig(n=8, m=32, instances=2, steps=3000, lr=1e-2, l1=1e-2)
    res = train(cfg, device="cpu", progress=False)
    assert res.losses[-1].max() < 0.1 * res.losses[0].min()
    assert fourth_norm(res.W).mean() > 0.8  # nearly one-hot encodings
    assert fourth_norm(res.W0).mean() < 0.3


def test_explicit_initial_weights_are_used_and_shape_checked():
    W0 = init_weights(1, 3, 4, seed=9)
    assert torch.equal(train(TrainConfig(n=3, m=4, steps=1), W0=W0, device="cpu", progress=False).W0, W0)
    with pytest.raises(ValueError, match="W0 must have shape"):
        train(TrainConfig(n=3, m=5, steps=1), W0=W0, device="cpu", progress=False)


def test_snapshot_steps_outside_the_run_are_rejected():
    with pytest.raises(ValueError, match="snapshot_steps"):
        train(TrainConfig(steps=3), snapshot_steps=[4], device="cpu", progress=False)


@pytest.mark.parametrize("kind,excess_kurtosis", [("bernoulli", -2.0), ("uniform", -1.2), ("gaussian", 0.0), ("laplace", 3.0)])
def test_noise_has_zero_mean_requested_std_and_known_kurtosis(kind, excess_kurtosis):
    x = sample_noise(kind, 0.1, (400_000,), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(x.mean().item()) < 1e-3
    assert math.isclose(x.std().item(), 0.1, rel_tol=0.01)
    kurt = ((x - x.mean()) ** 4).mean().item() / x.var().item() ** 2 - 3
    assert abs(kurt - excess_kurtosis) < 0.1 + 0.05 * abs(excess_kurtosis)


def test_shared_noise_is_the_same_for_every_input():
    # With one noise vector shared by all inputs, every row of the hidden noise is identical, which the
    # loss sees as a rank-one perturbation; check through a run that it differs from independent noise.
    base = dict(n=4, m=8, steps=30, lr=0.05, optimizer="sgd", noise="gaussian", sigma=0.3)
    shared = train(TrainConfig(**base, noise_shared=True), device="cpu", progress=False)
    indep = train(TrainConfig(**base), device="cpu", progress=False)
    assert not torch.equal(shared.W, indep.W)


def test_averaging_noise_draws_reduces_gradient_noise():
    base = dict(n=4, m=8, steps=1, lr=1.0, optimizer="sgd", noise="gaussian", sigma=0.5)
    W0 = init_weights(1, 4, 8, seed=2)
    clean = train(TrainConfig(n=4, m=8, steps=1, lr=1.0, optimizer="sgd"), W0=W0, device="cpu", progress=False).W
    spread = {}
    for draws in (1, 64):
        steps = torch.stack([
            train(TrainConfig(**base, noise_draws=draws, seed=s), W0=W0, device="cpu", progress=False).W
            for s in range(20)
        ])
        spread[draws] = (steps - clean).pow(2).mean().item()
    assert spread[64] < spread[1] / 8


# --------------------------------------------------------------------------- threads and bits

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from polybook import _numerics  # noqa: E402
from polybook.train import SMALL_WORK, ThreadPicker  # noqa: E402


def _big_config(**kw):
    # instances * n^2 * m = 8 * 48^2 * 256 is above SMALL_WORK, so train() may use several threads.
    cfg = TrainConfig(n=48, m=256, instances=8, steps=450, lr=1e-2, l1=1e-3, seed=3, **kw)
    assert cfg.instances * cfg.n**2 * cfg.m >= SMALL_WORK
    return cfg


@pytest.mark.parametrize("kw", [{}, {"noise": "bernoulli", "sigma": 0.05}, {"optimizer": "sgd"}])
def test_thread_count_never_changes_the_weights(kw, monkeypatch):
    # The thread picker may switch threads mid-run; that is only safe because every thread count
    # gives the same bits. Fails if any step (MKL's products, the fused AdamW, the noise draws)
    # depends on the thread count.
    cfg = _big_config(**kw)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train(cfg, device="cpu", progress=False).W
        torch.set_num_threads(2)
        monkeypatch.setattr(ThreadPicker, "PROBE_EVERY", 7)  # switch as often as possible
        two = train(cfg, device="cpu", progress=False).W
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_thread_picker_probes_both_choices_and_restores_the_setting():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        picker = ThreadPicker(torch.device("cpu"), SMALL_WORK)
        seen = []
        for t in range(2 * ThreadPicker.PROBE + 1):
            picker.start(t)
            seen.append(torch.get_num_threads())
            picker.stop(t)
        assert seen[:2 * ThreadPicker.PROBE] == [1] * ThreadPicker.PROBE + [2] * ThreadPicker.PROBE
        assert picker.history and picker.history[0] in (1, 2)
        # Kept the starting choice (2): the interval doubles; switched to 1: it starts again.
        interval = 2 * ThreadPicker.PROBE_EVERY if picker.history[0] == 2 else ThreadPicker.PROBE_EVERY
        assert picker.next_probe == 2 * ThreadPicker.PROBE + interval
        assert torch.get_num_threads() == picker.history[0]
        picker.close()
        assert torch.get_num_threads() == 2
        assert ThreadPicker(torch.device("cpu"), SMALL_WORK - 1).options == ()  # small work: one thread, no probing
    finally:
        torch.set_num_threads(before)


def test_importing_polybook_puts_mkl_in_its_reproducible_mode():
    info = _numerics.numerics()
    if info["in_force"] is None:
        pytest.skip("this torch build carries no MKL")
    # Fails if MKL ran before polybook set MKL_CBWR (e.g. an import of torch that multiplies).
    assert info["mkl_cbwr"] == "COMPATIBLE" and info["in_force"] and info["reproducible"]


def test_a_late_import_warns_that_the_mode_is_not_in_force():
    code = ("import os; os.environ.pop('MKL_CBWR', None)\n"
            "import torch; torch.ones(8, 8) @ torch.ones(8, 8)\n"
            "import warnings; warnings.simplefilter('error')\n"
            "try:\n    import polybook\nexcept RuntimeWarning as w:\n    print('WARNED', w)\n")
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    out = subprocess.run([sys.executable, "-c", code], env=env, text=True, capture_output=True, timeout=120)
    if _numerics.numerics()["in_force"] is None:
        pytest.skip("this torch build carries no MKL")
    assert "WARNED" in out.stdout and "MKL_CBWR=COMPATIBLE" in out.stdout, out.stdout + out.stderr


def test_thread_picker_probes_again_when_its_pace_drops():
    # A fake clock: each step lasts what `step_ms` says for the thread count in force.
    clock = [0.0]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        picker = ThreadPicker(torch.device("cpu"), SMALL_WORK)
        picker.clock = lambda: clock[0]

        def run(t, step_ms):
            picker.start(t)
            clock[0] += step_ms[torch.get_num_threads()] / 1e3
            picker.stop(t)

        quiet, busy = {1: 1.0, 2: 0.5}, {1: 1.1, 2: 8.0}
        t = 0
        for _ in range(2 * ThreadPicker.PROBE):
            run(t, quiet)
            t += 1
        assert picker.history == [2] and picker.probe_start is None
        for _ in range(3 * ThreadPicker.WATCH):  # the quiet pace: no new probe
            run(t, quiet)
            t += 1
        assert picker.next_probe > t
        for _ in range(ThreadPicker.WATCH):  # another program takes a core: 16x slower on two threads
            run(t, busy)
            t += 1
        assert picker.next_probe == t  # fails if the slowdown went unnoticed until the next scheduled probe
        for _ in range(2 * ThreadPicker.PROBE):
            run(t, busy)
            t += 1
        assert picker.history == [2, 1]  # fails if the probe kept two threads on the busy machine
        picker.close()
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- the loop scaffold

from polybook.train import Diverged, make_optimizer, run_steps, seeded_generator  # noqa: E402


def test_run_steps_records_losses_calls_after_and_restores_threads():
    W = torch.ones(3, 2, 4)
    seen = []
    before = torch.get_num_threads()

    def step(t):
        seen.append(torch.get_num_threads())
        W.mul_(0.5)
        return torch.full((3,), float(t))

    losses = run_steps(step, 5, device=torch.device("cpu"), watch=lambda: (W,), instances=3,
                       after=lambda t: seen.append(-t - 1))
    assert losses[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert seen == [1, -1, 1, -2, 1, -3, 1, -4, 1, -5]  # one thread by default; after(t) follows step t
    assert torch.get_num_threads() == before
    assert float(W[0, 0, 0]) == 0.5**5


def test_run_steps_stops_a_diverging_loop_at_the_first_check_naming_what_to_lower():
    W = torch.ones(2, 3, 3)
    calls = []

    def step(t):
        calls.append(t)
        if t == 130:
            W[1, 0, 0] = float("nan")
        return torch.zeros(2)

    with pytest.raises(Diverged, match=r"toy diverged by step 200 of 500 \(instance 1\).*lower lr \(now 0.5\)"):
        run_steps(step, 500, device=torch.device("cpu"), watch=lambda: (W,), instances=2, desc="toy",
                  settings=TrainConfig(lr=0.5))
    assert calls[-1] == 199  # fails if the loop trained on past the check after the NaN


def test_run_steps_keeps_autograd_only_when_asked():
    p = torch.ones(1, 2, requires_grad=True)
    flags = []

    def step(t):
        flags.append(torch.is_grad_enabled())
        return torch.zeros(1)

    run_steps(step, 1, device=torch.device("cpu"), watch=lambda: (p,), instances=1)
    run_steps(step, 1, device=torch.device("cpu"), watch=lambda: (p,), instances=1, autograd=True)
    assert flags == [False, True]


def test_make_optimizer_kernels_agree_in_kind_and_refuse_bad_settings():
    W = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    outs = []
    for fused in (None, False):
        w = W.clone().requires_grad_(True)
        opt = make_optimizer([w], "adamw", 1e-2, fused=fused)
        for _ in range(5):
            w.grad = w.detach() * 2
            opt.step()
        outs.append(w.detach())
    # Two kernels, one algorithm: they agree to float32 rounding (but need not bit for bit).
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert type(make_optimizer([W.clone().requires_grad_(True)], "adam", 1e-3)).__name__ == "Adam"
    with pytest.raises(ValueError, match="weight_decay must be 0 with optimizer 'sgd'"):
        make_optimizer([W], "sgd", 0.1, weight_decay=0.1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer([W], "lion", 0.1)


def test_seeded_generator_streams_differ_from_the_weights_draw():
    a = torch.rand(4, generator=seeded_generator(3))
    b = torch.rand(4, generator=torch.Generator().manual_seed(3))
    c = torch.rand(4, generator=seeded_generator(3, offset=7))
    assert not torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, torch.rand(4, generator=seeded_generator(3)))


def test_run_steps_stops_a_loss_that_blows_up_but_stays_finite():
    W = torch.ones(2, 3, 3)

    def step(t):
        # instance 1 starts at a loss of 2 and grows without bound but never overflows float32
        return torch.tensor([2.0, 2.0 * 10.0 ** min(t, 30)])

    # Fails if a finite blow-up (loss 2 -> 2e30) passes the check as a normal run.
    with pytest.raises(Diverged, match=r"toy diverged by step 100 of 300 \(instance 1\): the loss rose from 2 to 2e\+30"
                                       r".*lower lr \(now 0.5\)"):
        run_steps(step, 300, device=torch.device("cpu"), watch=lambda: (W,), instances=2, desc="toy",
                  settings=TrainConfig(lr=0.5))


def test_run_steps_lets_a_loss_rise_short_of_the_divergence_factor():
    from polybook.train import DIVERGED_FACTOR, DIVERGED_FLOOR

    W = torch.ones(2, 3, 3)
    start = torch.tensor([0.0, 5.0])  # a run that starts at the solution; a run that starts at 5
    limit = DIVERGED_FACTOR * start.clamp_min(DIVERGED_FLOOR)
    # Fails if the rule fires below DIVERGED_FACTOR times the first loss (floored at DIVERGED_FLOOR).
    losses = run_steps(lambda t: start if t == 0 else 0.99 * limit, 200, device=torch.device("cpu"),
                       watch=lambda: (W,), instances=2)
    assert losses[-1].tolist() == pytest.approx((0.99 * limit).tolist())
    # Fails if the rule does not fire just above that limit.
    with pytest.raises(Diverged, match=r"instance 0\): the loss rose from 0 to 1010"):
        run_steps(lambda t: start if t == 0 else 1.01 * limit, 200, device=torch.device("cpu"),
                  watch=lambda: (W,), instances=2)


def test_a_finite_blow_up_of_a_training_run_is_diverged():
    cfg = TrainConfig(n=8, m=8, instances=2, steps=300, lr=1e6, l1=1e-3, seed=0)
    # Fails if train returns the weights of a run whose loss grew to ~1e20 instead of raising.
    with pytest.raises(Diverged, match=r"the loss rose from [0-9.e+]+ to [0-9.e+]+ \(past the limit [0-9.e+]+\); lower lr \(now 1e\+06\)"):
        train(cfg, device="cpu", progress=False)


def test_the_command_line_exits_1_on_a_finite_blow_up(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "polybook", "run", "collisions", "--set", "n=8", "--set", "m=8", "--set",
           "instances=2", "--set", "steps=300", "--set", "lr=1e6", "--device", "cpu", "--quiet",
           "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    # Fails if the blown-up run is stored (exit 0) or ends in a traceback instead of one line.
    assert done.returncode == 1, done.stderr
    assert "the loss rose from" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "result.json").exists()
