"""The benchmark's baseline is the same model: both implementations reach the same weights."""

import subprocess
import sys

import torch

from polybook.bench import AGREEMENT_ATOL, baseline_train, bench_one, format_table
from polybook.models import init_weights
from polybook.train import TrainConfig, train


def test_baseline_and_polybook_reach_the_same_weights():
    W0 = init_weights(3, 10, 24, seed=4)
    ours = train(TrainConfig(n=10, m=24, instances=3, steps=20, lr=1e-2, l1=1e-2), W0=W0, device="cpu", progress=False).W
    base = baseline_train(W0, 20, 1e-2, 1e-2, torch.device("cpu"))
    assert (ours - base).abs().max() < AGREEMENT_ATOL


def test_bench_row_reports_agreement_and_positive_timings():
    row = bench_one(2, 8, 16, device="cpu", min_seconds=0.01)
    assert row.max_abs_diff <= AGREEMENT_ATOL
    assert row.baseline_ms > 0 and row.polybook_ms > 0 and 0 < row.optimizer_ms
    assert row.baseline_flops == 10 * 8 * 8 * 16 * 2 and row.polybook_flops == 4 * 8 * 8 * 16 * 2
    table = format_table([row])
    assert "speed-up" in table and table.rstrip().endswith("yes")


def test_bench_cli_rejects_malformed_sizes():
    res = subprocess.run([sys.executable, "-m", "polybook", "bench", "--sizes", "16x64"], capture_output=True, text=True)
    assert res.returncode == 2 and "sizes must look like 16x64x128" in res.stderr


def test_end_to_end_times_both_runs_breaks_the_time_down_and_loads_a_competitor():
    from polybook.bench import end_to_end

    # A tiny sweep (seconds): fails if a part of the report is missing or a process errors out.
    report = end_to_end(competitor=True, overrides=["n=8", "m=8,16", "instances=2", "steps=60"])
    for part in ("polybook run", "plain baseline", "speed-up", "counts that differ:", "inside the experiment runner",
                 "training steps", "of which the optimiser", "metrics", "files", "with one busy competitor:"):
        assert part in report, (part, report)
    assert "MKL_CBWR=COMPATIBLE" in report or "no MKL" in report


def test_the_busy_competitor_is_stopped_afterwards():
    from pathlib import Path

    from polybook.bench import busy_competitor

    def spinners():
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if b"while True: pass" in cmdline.read_bytes():
                    found.append(cmdline.parent.name)
            except OSError:
                pass  # the process ended meanwhile
        return found

    with busy_competitor():
        assert spinners(), "the competitor is not running"
    assert not spinners()  # fails if the spinning interpreter outlives the block
