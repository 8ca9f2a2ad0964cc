"""Benchmark: polybook's training step against the obvious implementation, in one run.

The *baseline* is what one writes first: a batch of the ``n`` identity inputs through an einsum
encoder and decoder, the loss, ``loss.backward()`` and ``torch.optim.AdamW``. *polybook* is
:func:`polybook.train.train`: the Gram matrix ``ReLU(W W^T)`` (no identity multiply) and the
hand-written gradient ``2 D W``. Both are timed on the same machine in the same process with the
same optimiser, from the same initial weights, and must agree after a few steps.

Each implementation's throughput counts the floating-point operations *it* performs (a
multiply-add is two), not one shared figure:

- baseline, per instance and step: the encoder ``X W`` (``2 n^2 m``: the identity is multiplied
  like any matrix), the decoder ``h W^T`` (``2 n^2 m``), and autograd's three products for their
  gradients (``dW`` of the encoder, ``dh`` and ``dW`` of the decoder: ``6 n^2 m``), so ``10 n^2 m``;
- polybook: the Gram matrix ``W W^T`` (``2 n^2 m``) and the gradient ``2 D W`` (``2 n^2 m``), so
  ``4 n^2 m``; of the baseline's work, 60% is arithmetic polybook proves unnecessary.

Elementwise work (ReLU, the loss, L1, AdamW) is left out of both counts; the optimiser's share of
a polybook step is measured separately (``optimizer_ms``), since on small models it dominates.
Where the device's FP32 peak is known (a few common GPUs) the table shows polybook's share of it.

Run ``python -m polybook bench`` (add ``--device cuda`` on a GPU). ``python -m polybook bench
--end-to-end`` times whole runs instead: the book's collisions sweep as the command line runs it
against the same sweep written the plain way, where polybook's time goes, and the run again
beside a busy competitor (``end_to_end``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import _numerics
from . import _validate as check
from .models import init_weights
from .train import (
    SMALL_WORK,
    TrainConfig,
    check_fits,
    make_optimizer,
    one_cpu_thread,
    resolve_device,
    step_work,
    train,
    train_memory_bytes,
)

# No chapter uses this module: the command line (``python -m polybook bench``) does, so nothing here is public.
__all__: list[str] = []

#: (instances, n, m): small to the paper's largest collisions model.
BENCH_SIZES: tuple[tuple[int, int, int], ...] = (
    (16, 64, 128),
    (16, 64, 512),
    (16, 128, 512),
    (16, 256, 256),
    (16, 256, 1024),
    (16, 256, 4096),
)

#: Largest |difference| allowed between the two implementations' weights after a few AdamW steps
#: from the same start (lr 1e-3): float32 rounding differs, so a few 1e-7; one Adam step that went
#: the other way would show as about 2e-3.
AGREEMENT_ATOL = 1e-5


def baseline_train(W0: torch.Tensor, steps: int, lr: float, l1: float, device: torch.device) -> torch.Tensor:
    """The plain implementation: identity batch, einsum encoder/decoder, autograd, AdamW."""
    instances, n, m = W0.shape
    W = W0.to(device).clone().requires_grad_(True)
    X = torch.eye(n, device=device)  # (batch = n, n)
    opt = torch.optim.AdamW([W], lr=lr, weight_decay=0.0)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        h = torch.einsum("bi,kim->kbm", X, W)  # (instances, batch, m)
        y = torch.relu(torch.einsum("kbm,kim->kbi", h, W))  # (instances, batch, n)
        loss = ((X - y) ** 2).sum() + l1 * W.abs().sum()
        loss.backward()
        opt.step()
    return W.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, min_seconds: float, repeats: int = 3) -> tuple[float, int]:
    """Seconds per step of ``fn(steps)``: ``steps`` grown until a run lasts ``min_seconds / repeats``,
    then the best of ``repeats`` runs (the least disturbed by whatever else the machine does)."""
    steps = 1

    def run(k: int) -> float:
        _sync(device)
        start = time.perf_counter()
        fn(k)
        _sync(device)
        return time.perf_counter() - start

    while True:
        elapsed = run(steps)
        if elapsed >= min_seconds / repeats or steps >= 4096:
            break
        steps *= 2 if elapsed > min_seconds / (8 * repeats) else 8
    best = min([elapsed] + [run(steps) for _ in range(repeats - 1)])
    return best / steps, steps


#: FP32 peak (non-tensor-core) of some GPUs, in TFLOP/s, from their makers' data sheets.
FP32_PEAK_TFLOPS: dict[str, float] = {
    "H100 80GB HBM3": 66.9, "H100 PCIe": 51.2, "H200": 66.9, "A100": 19.5, "L4": 30.3, "T4": 8.1,
    "V100": 15.7, "A10G": 31.2, "L40S": 91.6,
}


def device_peak_tflops(device: torch.device | str) -> float | None:
    """The FP32 peak of ``device`` when it is a GPU listed in :data:`FP32_PEAK_TFLOPS`, else ``None``."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((v for k, v in FP32_PEAK_TFLOPS.items() if k in name), None)


@dataclass
class BenchRow:
    """One benchmark measurement: milliseconds per step of each implementation and their agreement."""

    instances: int
    n: int
    m: int
    device: str
    baseline_ms: float
    polybook_ms: float
    max_abs_diff: float
    optimizer_ms: float = float("nan")
    peak_tflops: float | None = None

    @property
    def baseline_flops(self) -> float:
        """Operations the baseline performs per step: ``10 n^2 m`` per instance."""
        return 10.0 * self.n * self.n * self.m * self.instances

    @property
    def polybook_flops(self) -> float:
        """Operations polybook performs per step: ``4 n^2 m`` per instance."""
        return 4.0 * self.n * self.n * self.m * self.instances

    @property
    def speedup(self) -> float:
        return self.baseline_ms / self.polybook_ms

    @property
    def optimizer_share(self) -> float:
        """Fraction of a polybook step spent in the optimiser's update."""
        return self.optimizer_ms / self.polybook_ms


def bench_one(instances: int, n: int, m: int, device: str = "cpu", min_seconds: float = 1.0,
              check_steps: int = 5) -> BenchRow:
    """Time both implementations at one size and check they agree after ``check_steps`` steps."""
    dev = resolve_device(device)
    lr, l1 = 1e-3, 1e-3
    W0 = init_weights(instances, n, m, seed=0)
    cfg = TrainConfig(n=n, m=m, instances=instances, steps=check_steps, lr=lr, l1=l1)
    ours = train(cfg, W0=W0, device=str(dev), progress=False).W
    base = baseline_train(W0, check_steps, lr, l1, dev).cpu()
    diff = float((ours - base).abs().max())

    def run_ours(steps: int) -> None:
        train(TrainConfig(n=n, m=m, instances=instances, steps=steps, lr=lr, l1=l1), W0=W0,
              device=str(dev), progress=False)

    def run_base(steps: int) -> None:
        baseline_train(W0, steps, lr, l1, dev)

    W = W0.to(dev).clone().requires_grad_(True)
    opt = make_optimizer([W], cfg.optimizer, cfg.lr, cfg.weight_decay)
    W.grad = torch.sign(W) * 1e-3

    def run_opt(steps: int) -> None:
        with torch.no_grad(), one_cpu_thread(dev, step_work(cfg) < SMALL_WORK):
            for _ in range(steps):
                opt.step()

    run_ours(2), run_base(2), run_opt(2)  # warm up kernels and allocators
    ours_s, _ = _time(run_ours, dev, min_seconds)
    base_s, _ = _time(run_base, dev, min_seconds)
    opt_s, _ = _time(run_opt, dev, min_seconds / 2)
    return BenchRow(instances, n, m, str(dev), base_s * 1e3, ours_s * 1e3, diff, opt_s * 1e3, device_peak_tflops(dev))


def bench_memory_bytes(instances: int, n: int, m: int, check_steps: int = 5) -> int:
    """Estimated peak memory of :func:`bench_one` at one size, in bytes.

    polybook's run (:func:`polybook.train.train_memory_bytes`), plus the baseline's float32
    tensors: the weights, their gradient, AdamW's two moments, the hidden activations and their
    gradient (each ``(instances, n, m)``), four ``(instances, n, n)`` outputs and gradients, and
    the three copies of the weights :func:`bench_one` keeps (the start and both results).
    """
    cfg = TrainConfig(n=n, m=m, instances=instances, steps=check_steps)
    weights = instances * n * m
    return train_memory_bytes(cfg) + 4 * ((6 + 3) * weights + 4 * instances * n * n + n * n)


def run_benchmark(sizes: Sequence[tuple[int, int, int]] = BENCH_SIZES, device: str = "cpu",
                  min_seconds: float = 1.0) -> list[BenchRow]:
    """:func:`bench_one` for every size.

    Checks everything before the first timing: ``min_seconds`` (finite, above 0), every size
    (positive integers) and its estimated peak memory (:func:`bench_memory_bytes`) against what
    ``device`` has free; raises ``ValueError`` otherwise.
    """
    if not (check.is_real(min_seconds) and math.isfinite(min_seconds) and min_seconds > 0):
        check.fail("min_seconds", min_seconds, "a finite number of seconds > 0")
    dev = resolve_device(device)
    for instances, n, m in sizes:
        check_fits(bench_memory_bytes(instances, n, m), dev, f"the benchmark at size {instances}x{n}x{m}")
    return [bench_one(*size, device=device, min_seconds=min_seconds) for size in sizes]


def format_table(rows: Sequence[BenchRow]) -> str:
    """A plain-text table: ms per step and GFLOP/s of each (its own flop count), speed-up, the
    optimiser's share of a polybook step, the share of the device's FP32 peak, and agreement."""
    head = (f"{'device':<8}{'inst':>5}{'n':>6}{'m':>6}  {'baseline ms':>11}{'GFLOP/s':>9}  "
            f"{'polybook ms':>11}{'GFLOP/s':>9}  {'speed-up':>8}  {'optim.':>6}  {'of peak':>7}  {'max|dW|':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ours_rate = r.polybook_flops / r.polybook_ms / 1e6  # GFLOP/s
        peak = f"{ours_rate / (r.peak_tflops * 1e3):>6.1%}" if r.peak_tflops else "     -"
        lines.append(
            f"{r.device:<8}{r.instances:>5}{r.n:>6}{r.m:>6}  {r.baseline_ms:>11.3f}{r.baseline_flops / r.baseline_ms / 1e6:>9.1f}  "
            f"{r.polybook_ms:>11.3f}{ours_rate:>9.1f}  {r.speedup:>7.2f}x  {r.optimizer_share:>6.0%}  {peak:>7}  "
            f"{r.max_abs_diff:>8.1e}"
        )
    lines.append("flops counted per implementation: baseline 10 n^2 m, polybook 4 n^2 m per instance and step; "
                 "optim. = the optimiser's share of a polybook step")
    ok = all(r.max_abs_diff <= AGREEMENT_ATOL for r in rows)
    lines.append(f"weights agree after 5 AdamW steps (max |dW| <= {AGREEMENT_ATOL:g}): {'yes' if ok else 'NO'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- end to end

#: The collisions run the end-to-end benchmark times (its book scale): what a reader runs first.
END_TO_END_EXPERIMENT = "collisions"


def _config(overrides: Sequence[str] = ()):
    from .experiments import apply_overrides, get_experiment

    return apply_overrides(get_experiment(END_TO_END_EXPERIMENT).scales["book"], list(overrides))


def baseline_collisions(out: str | None = None, overrides: Sequence[str] = ()) -> dict:
    """The book's collisions sweep written the plain way: for each width, :func:`baseline_train` from
    the same initial weights as polybook's run, then the same counts. Returns ``{m: counts}``."""
    from .experiments.collisions import summarise_width

    cfg = _config(overrides)
    counts = {}
    for j, m in enumerate(cfg.m):
        tc = cfg.train_config(j)
        W = baseline_train(init_weights(tc.instances, tc.n, tc.m, seed=tc.seed), tc.steps, tc.lr, tc.l1, torch.device("cpu"))
        counts[m] = summarise_width(tc.n, m, _Result(W.cpu()))["polysemantic"]
    if out:
        with open(out, "w") as f:
            f.write(json.dumps(counts))
    return counts


@dataclass
class _Result:
    """Just enough of a TrainResult for ``summarise_width``."""

    W: torch.Tensor

    @property
    def losses(self) -> torch.Tensor:
        return torch.zeros(1, self.W.shape[0])


def _wall(cmd: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(list(cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _polybook_parts(overrides: Sequence[str] = ()) -> dict[str, float]:
    """Seconds of each part of the book collisions run, measured in this process as the runner does it."""
    from .experiments import Pieces, to_json, write_atomic
    from .experiments.collisions import assemble_collisions, summarise_width

    cfg = _config(overrides)
    parts = dict.fromkeys(("training steps", "of which the optimiser", "set-up of each run", "metrics", "files"), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        pieces = Pieces(tmp, END_TO_END_EXPERIMENT, cfg)
        for j, m in enumerate(cfg.m):
            tc = cfg.train_config(j)
            start = time.perf_counter()
            res = train(tc, device="cpu", progress=False)
            parts["set-up of each run"] += time.perf_counter() - start - res.seconds
            parts["training steps"] += res.seconds
            start = time.perf_counter()
            summary = summarise_width(tc.n, m, res)
            parts["metrics"] += time.perf_counter() - start
            start = time.perf_counter()
            pieces.put(f"m={m}", summary)
            parts["files"] += time.perf_counter() - start
            # The optimiser's share, timed on its own at this width for a tenth of the steps.
            W = res.W.clone().requires_grad_(True)
            opt = make_optimizer([W], tc.optimizer, tc.lr, tc.weight_decay)
            W.grad = torch.sign(W) * 1e-3
            k = max(1, tc.steps // 10)
            with torch.no_grad(), one_cpu_thread(torch.device("cpu"), step_work(tc) < SMALL_WORK):
                start = time.perf_counter()
                for _ in range(k):
                    opt.step()
                parts["of which the optimiser"] += (time.perf_counter() - start) * tc.steps / k
        start = time.perf_counter()
        write_atomic(Path(tmp) / "result.json", to_json(assemble_collisions(cfg, [pieces.get(f"m={m}") for m in cfg.m])))
        parts["files"] += time.perf_counter() - start
    return parts


@contextlib.contextmanager
def busy_competitor() -> Iterator[None]:
    """One other program keeping one core busy for the duration (a spinning Python loop)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def end_to_end(competitor: bool = True, overrides: Sequence[str] = ()) -> str:
    """Time ``python -m polybook run collisions --scale book`` against the plain baseline, end to end.

    Both are separate processes on the CPU, started the same way (interpreter, imports, the four
    widths of 16 instances, the counts); polybook's run also writes its record and pieces. Also
    prints where polybook's time goes (start-up, training steps and the optimiser's share of them,
    per-run set-up, metrics, files) and, with ``competitor``, the same run while another program
    keeps one core busy, as the ratio to the quiet run. ``overrides`` (``KEY=VALUE`` as for ``--set``)
    change the config of both, e.g. for a quick test.
    """
    py = sys.executable
    lines = [f"end to end, book-scale {END_TO_END_EXPERIMENT} on the CPU ({_numerics.cpu_name()}, "
             f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}; {_numerics.describe().split(';')[0]})"]
    with tempfile.TemporaryDirectory() as tmp:
        sets = [arg for o in overrides for arg in ("--set", o)]
        run_cmd = [py, "-m", "polybook", "run", END_TO_END_EXPERIMENT, "--scale", "book", "--quiet", *sets]
        ours = _wall(run_cmd + ["--out", os.path.join(tmp, "a")])
        base = _wall([py, "-c", "from polybook.bench import baseline_collisions; "
                      f"baseline_collisions({os.path.join(tmp, 'b.json')!r}, {list(overrides)!r})"])
        record = json.loads(Path(tmp, "a", "result.json").read_text())
        theirs = list(json.loads(Path(tmp, "b.json").read_text()).values())
        differ = sum(a != b for ours_m, base_m in zip(record["results"]["polysemantic"], theirs)
                     for a, b in zip(ours_m, base_m))
        models = sum(len(c) for c in theirs)
        inside = record["provenance"]["wall_seconds"]
        lines += [f"  polybook run       {ours:8.1f} s",
                  f"  plain baseline     {base:8.1f} s   (einsum on identity inputs, autograd, torch.optim.AdamW)",
                  f"  speed-up           {base / ours:8.2f}x",
                  f"  counts that differ: {differ} of {models} models (two implementations round differently, and "
                  "thousands of steps grow that into a neuron more or less; `bench` checks that their weights "
                  "agree after a few steps)",
                  f"  of polybook's {ours:.1f} s: {inside:.1f} s inside the experiment runner, {ours - inside:.1f} s "
                  "start-up (interpreter, imports, config checks) and writing the record",
                  "  where the runner's time goes (a second run, in this process):"]
        parts = _polybook_parts(overrides)
        for name, secs in parts.items():
            lines.append(f"    {name:<34} {secs:7.1f} s")
        if competitor:
            with busy_competitor():
                loaded = _wall(run_cmd + ["--out", os.path.join(tmp, "c")])
            lines.append(f"  with one busy competitor: {loaded:.1f} s, {loaded / ours:.2f}x the quiet run")
    return "\n".join(lines)
