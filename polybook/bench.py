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

Run ``python -m polybook bench`` (add ``--device cuda`` on a GPU).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .models import init_weights
from .train import TrainConfig, _cpu_threads, _optimizer, resolve_device, train

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
    opt = _optimizer(cfg, W)
    W.grad = torch.sign(W) * 1e-3

    def run_opt(steps: int) -> None:
        with torch.no_grad(), _cpu_threads(dev, cfg):
            for _ in range(steps):
                opt.step()

    run_ours(2), run_base(2), run_opt(2)  # warm up kernels and allocators
    ours_s, _ = _time(run_ours, dev, min_seconds)
    base_s, _ = _time(run_base, dev, min_seconds)
    opt_s, _ = _time(run_opt, dev, min_seconds / 2)
    return BenchRow(instances, n, m, str(dev), base_s * 1e3, ours_s * 1e3, diff, opt_s * 1e3, device_peak_tflops(dev))


def run_benchmark(sizes: Sequence[tuple[int, int, int]] = BENCH_SIZES, device: str = "cpu",
                  min_seconds: float = 1.0) -> list[BenchRow]:
    """:func:`bench_one` for every size."""
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
