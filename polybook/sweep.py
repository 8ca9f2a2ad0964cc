"""Train models of several widths ``m`` in one batched program.

A sweep over ``m`` (the collisions experiment) would otherwise run one training loop per width,
each too small to keep a GPU busy. Here every width becomes a block of instances of one model of
width ``max(m)``; the extra neurons of narrower models are masked (their weights start at zero and
get no gradient), so each block trains exactly like its own model. The price is the padding: the
program does ``len(ms) * max(ms)`` columns of work instead of ``sum(ms)``, which pays on a GPU
(one launch instead of ``len(ms)`` under-filled ones) and not on a CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from .models import init_weights
from .train import Diverged, TrainConfig, TrainResult, train

# No chapter uses this module: the collisions experiment (polybook.experiments) does, so nothing here is public.
__all__: list[str] = []


def train_widths(
    config: TrainConfig,
    ms: Sequence[int],
    seeds: Sequence[int] | None = None,
    *,
    device: str = "auto",
    progress: bool = True,
) -> list[TrainResult]:
    """Train ``config`` once per width in ``ms``, all in one batched program.

    Parameters
    ----------
    config : TrainConfig
        Everything but ``m`` and ``seed`` (``config.m`` and ``config.seed`` are ignored).
        Noise is not supported: its draws depend on the batch shape.
    ms : sequence of int
        The widths.
    seeds : sequence of int, optional
        Seed of each width's initial weights; default ``config.seed + j`` for the ``j``-th.

    Returns
    -------
    list of TrainResult
        One per width, as :func:`~polybook.train.train` would return for
        ``dataclasses.replace(config, m=ms[j], seed=seeds[j])`` (same initial weights; the
        trained weights agree to float rounding).
    """
    if config.noise != "none":
        raise ValueError(f"noise must be 'none' for a batched width sweep, got {config.noise!r}")
    ms = [int(m) for m in ms]
    seeds = [config.seed + j for j in range(len(ms))] if seeds is None else list(seeds)
    if len(seeds) != len(ms):
        raise ValueError(f"seeds must have one entry per width ({len(ms)}), got {len(seeds)}")
    width, b = max(ms), config.instances
    W0 = torch.zeros(len(ms) * b, config.n, width)  # (widths * instances, n, max m)
    mask = torch.zeros(len(ms) * b, width, dtype=torch.bool)
    for j, (m, seed) in enumerate(zip(ms, seeds)):
        W0[j * b:(j + 1) * b, :, :m] = init_weights(b, config.n, m, seed=seed, std=config.init_std)
        mask[j * b:(j + 1) * b, :m] = True
    big = dataclasses.replace(config, m=width, instances=len(ms) * b)
    try:
        res = train(big, W0=W0, neuron_mask=mask, device=device, progress=progress, desc=f"{len(ms)} widths")
    except Diverged as err:  # say which width, and which instance of it
        j, i = divmod(err.instance, b)
        detail = err.detail.replace(f"(instance {err.instance})", f"(instance {i})")
        raise Diverged(f"m={ms[j]}", detail, err.step, err.steps, i) from None
    out = []
    for j, (m, seed) in enumerate(zip(ms, seeds)):
        rows = slice(j * b, (j + 1) * b)
        out.append(TrainResult(
            config=dataclasses.replace(config, m=m, seed=seed),
            W0=res.W0[rows, :, :m].clone(),
            W=res.W[rows, :, :m].clone(),
            losses=res.losses[:, rows].clone(),
            device=res.device,
            seconds=res.seconds,
        ))
    return out
