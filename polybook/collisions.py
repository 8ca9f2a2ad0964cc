"""Tools for the chapter on initialisation collisions and the ``n^2/(4m)`` law.

What the chapter needs beyond the core modules:

- the ``collisions`` sweep with its weights kept (:func:`train_sweep`, :func:`sweep_record`),
  giving exactly the numbers of ``python -m polybook run collisions``;
- a log-log slope fit with a bootstrap interval (:func:`fit_loglog_slope`), the exact curve's own
  slope over the same widths (:func:`exact_curve_slope`) and the slope's standard error expected
  from the number of seeds (:func:`expected_slope_se`);
- the book's finish rule (:data:`FINISHED_SHARE`): a width is evidence only where training finished;
- stored paper-scale results, loaded only when present (:func:`load_paper_record`);
- how the initial leaders relate to the final winners (:func:`correspondence_summary`);
- the two-feature example (:func:`shared_neuron_loss`, :func:`two_feature_start`);
- one-line settings of the sensitivity table (:func:`run_setting`, :func:`summarise_weights`).

The experiments live in their own files: ``collisions`` (the law against ``m``, its table rows
``law_rows``) in :mod:`polybook.experiments.collisions`, ``collisions-n`` (the law over ``n``,
``law_over_n_rows``) in :mod:`polybook.experiments.collisions_n`; their names are importable from
here too. The figures and the birthday explorer are in :mod:`polybook.views.collisions`.

Shapes follow the rest of polybook: ``W`` is ``(instances, n, m)``; counts over a sweep are
``(len(m), instances)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .experiments import ResultError, apply_overrides, get_experiment, load_result, stored_result
from .experiments.collisions import CollisionsConfig, count_stats, law_rows, summarise_collisions
from .experiments.collisions_n import (
    LawOverNConfig,
    law_over_n_rows,
    replay_law_over_n,
    run_law_over_n,
    summarise_point,
)
from .metrics import (
    BAND,
    band_mask,
    fourth_norm,
    one_hot_share,
    polysemantic_neurons,
    polysemantic_neurons_by_mass,
    polysemantic_sign_pattern,
    winner_initial_rank,
    winners,
)
from .models import reconstruction_loss
from .theory import expected_polysemantic_exact, predicted_polysemantic, simulate_collisions
from .train import TrainConfig, TrainResult, train

__all__ = [
    "PAPER_COMMAND",
    "sweep_config",
    "train_sweep",
    "sweep_record",
    "fit_loglog_slope",
    "exact_curve_slope",
    "expected_slope_se",
    "FINISHED_SHARE",
    "load_paper_record",
    "correspondence_summary",
    "shared_neuron_loss",
    "two_feature_start",
    "run_setting",
    "summarise_weights",
    "SlopeFit",
]

#: The command that writes the paper-scale sweep where the chapter looks for it (needs a GPU).
#:
#: Introduced in the book: :ref:`law-measured` (chapter collisions).
PAPER_COMMAND = "python -m polybook run collisions --scale paper --out book/results/collisions-paper"

#: Where :func:`load_paper_record` looks, relative to the working directory (the notebook's
#: folder ``book/`` or the repository root).
PAPER_FOLDER = "collisions-paper"
PAPER_PATHS = (f"results/{PAPER_FOLDER}/result.json", f"book/results/{PAPER_FOLDER}/result.json")


#: The book's finish rule for the L1 autoencoder: training has finished when at least this share of
#: encodings is one-hot (one weight above ``1e-3``, :func:`~polybook.metrics.one_hot_share`). A
#: width that has not finished, or whose record does not say, is not evidence for the law.
#:
#: Introduced in the book: :ref:`slope-test` (chapter collisions).
FINISHED_SHARE = 0.99


# --------------------------------------------------------------------------- the sweep


def sweep_config(scale: str = "book", overrides: Sequence[str] | dict = ()) -> CollisionsConfig:
    """The registered ``collisions`` config at ``scale``, with ``overrides`` applied.

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    return apply_overrides(get_experiment("collisions").scales[scale], overrides)


def train_sweep(cfg: CollisionsConfig, device: str = "auto", progress: bool = False) -> list[TrainResult]:
    """Train every ``m`` of ``cfg`` exactly as the ``collisions`` experiment does, keeping the weights.

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    return [
        train(cfg.train_config(j), device=device, progress=progress, desc=f"collisions m={m}")
        for j, m in enumerate(cfg.m)
    ]


def sweep_record(cfg: CollisionsConfig, runs: Sequence[TrainResult]) -> dict:
    """The ``results`` dict that ``run_experiment("collisions", ...)`` returns, from trained runs.

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    return summarise_collisions(cfg, runs)


# --------------------------------------------------------------------------- statistics of the law


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares line ``log(mean count) = intercept + slope * log(m)`` with a bootstrap interval.

    Introduced in the book: :doc:`/book/collisions` (chapter collisions).
    """

    slope: float
    intercept: float
    lo: float  # lower end of the bootstrap interval of the slope
    hi: float  # upper end
    se: float  # bootstrap standard deviation of the slope
    level: float
    skipped: int  # bootstrap samples dropped because some mean was 0
    note: str = ""  # why there is no fit ("too little data: ..."), empty when there is one

    @property
    def ok(self) -> bool:
        """Whether the data gave a fit (at least two widths, every mean count above 0)."""
        return not self.note


def fit_loglog_slope(m, counts, boot: int = 2000, seed: int = 0, level: float = 0.95) -> SlopeFit:
    """Fit the slope of log(mean count) against log(m); resample instances for the uncertainty.

    Each bootstrap sample redraws, for every ``m`` separately, ``instances`` counts with
    replacement from that ``m``'s counts and refits. The interval holds the central ``level``
    of the bootstrap slopes. Samples in which some mean is 0 (no log) are dropped and counted.

    Data that cannot be fitted (fewer than two widths, or a width whose mean count is 0, as after
    a few steps of training) give a fit whose numbers are NaN and whose ``note`` says "too little
    data" and why, so that a chapter run on unfinished models reports it instead of stopping.
    Counts of the wrong shape raise ``ValueError``.

    Introduced in the book: :ref:`law-measured` (chapter collisions).

    Examples
    --------
    >>> m = [64, 128, 256]
    >>> fit = fit_loglog_slope(m, [[16, 16], [8, 8], [4, 4]])
    >>> round(fit.slope, 6), round(fit.lo, 6), round(fit.hi, 6)
    (-1.0, -1.0, -1.0)
    >>> fit_loglog_slope([64, 128], [[1, 0], [0, 0]]).note
    'too little data: a mean count of 0 has no logarithm (means [0.5, 0.0])'
    """
    x = np.log(np.asarray(m, dtype=float))
    c = np.asarray(counts, dtype=float)
    if len(x) < 2:
        return _no_fit(level, f"too little data: {len(x)} width(s), a slope needs two")
    if c.ndim != 2 or c.shape[0] != len(x):
        raise ValueError(f"counts must have shape (len(m), instances), got {c.shape} for {len(x)} values of m")
    means = c.mean(axis=1)
    if np.any(means <= 0):
        return _no_fit(level, f"too little data: a mean count of 0 has no logarithm (means {means.tolist()})")
    slope, intercept = np.polyfit(x, np.log(means), 1)
    rng = np.random.default_rng(seed)
    k = c.shape[1]
    idx = rng.integers(0, k, size=(boot, len(x), k))
    bmeans = np.take_along_axis(np.broadcast_to(c, (boot, *c.shape)), idx, axis=2).mean(axis=2)
    ok = np.all(bmeans > 0, axis=1)
    xc = x - x.mean()
    slopes = (np.log(bmeans[ok]) @ xc) / (xc @ xc)
    a = (1 - level) / 2
    lo, hi = np.quantile(slopes, [a, 1 - a])
    return SlopeFit(float(slope), float(intercept), float(lo), float(hi), float(slopes.std()), level, int((~ok).sum()))


def _no_fit(level: float, note: str) -> SlopeFit:
    nan = float("nan")
    return SlopeFit(nan, nan, nan, nan, nan, level, 0, note)


def exact_curve_slope(n: int, m: Sequence[int]) -> float:
    """Least-squares slope of ``log E[polysemantic]`` (the exact expectation) against ``log m``.

    The same straight-line fit as :func:`fit_loglog_slope`, applied to the idealised curve over the
    same widths: the slope the birthday argument predicts for a sweep over exactly these ``m``
    (shallower than ``-1`` where ``n/m`` is not small).

    Introduced in the book: :ref:`slope-test` (chapter collisions).

    >>> round(exact_curve_slope(64, [64, 128, 256, 512]), 2)
    -0.81

    Fewer than two widths have no slope: NaN (as :func:`fit_loglog_slope` gives for them).
    """
    x = np.log(np.asarray(m, dtype=float))
    if len(x) < 2:
        return float("nan")
    y = np.log([expected_polysemantic_exact(n, int(k)) for k in m])
    return float(np.polyfit(x, y, 1)[0])


def expected_slope_se(n: int, m: Sequence[int], instances: int, trials: int = 4000, seed: int = 0) -> float:
    """Standard error of the fitted log-log slope that ``instances`` independent seeds per width give.

    Computed before looking at any trained count: each width's count is drawn from the idealised
    birthday distribution (:func:`~polybook.theory.simulate_collisions`, ``trials`` draws), whose
    variance ``v`` gives the variance of the log of a mean of ``instances`` counts, ``v / (k E^2)``
    to first order; the least-squares slope is a fixed linear combination of those logs.

    Introduced in the book: :ref:`slope-test` (chapter collisions).

    >>> round(expected_slope_se(64, [128, 256, 512], 16), 2)
    0.14

    Fewer than two widths have no slope: NaN.
    """
    x = np.log(np.asarray(m, dtype=float))
    if len(x) < 2:
        return float("nan")
    xc = x - x.mean()
    var_log = []
    for k in m:
        c = simulate_collisions(n, int(k), trials=trials, seed=seed + int(k))["polysemantic"].astype(float)
        var_log.append(c.var(ddof=1) / (instances * c.mean() ** 2))
    return float(np.sqrt(np.sum(xc**2 * np.asarray(var_log))) / np.sum(xc**2))


def load_paper_record(path: str | Path | None = None) -> dict | None:
    """The stored paper-scale ``collisions`` record, or ``None`` when it has not been produced.

    ``path`` is a ``result.json`` or its folder; by default the places in ``PAPER_PATHS``, and where
    neither exists (a notebook alone in Colab) the released copy (:func:`~polybook.experiments.records.stored_result`),
    ``None`` when it cannot be had. Raises ``ValueError`` when the file is not a collisions record.

    Introduced in the book: :ref:`law-measured` (chapter collisions).
    """
    candidates = [Path(path)] if path is not None else [Path(p) for p in PAPER_PATHS]
    record = None
    for p in candidates:
        f = p / "result.json" if p.is_dir() else p
        if f.is_file():
            record = load_result(f)
            break
    if record is None and path is None:  # alone in a fresh runtime (Colab): the released copy, if it can be had
        try:
            record = stored_result(PAPER_FOLDER)
        except ResultError:
            return None
    if record is None:
        return None
    if record.get("experiment") != "collisions" or "polysemantic" not in record.get("results", {}):
        raise ValueError(f"the paper-scale record must be a 'collisions' record, got experiment {record.get('experiment')!r}")
    return record


# --------------------------------------------------------------------------- start and end


def _pairs_on_neurons(mask: torch.Tensor) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of features marked on a common neuron; ``mask`` is ``(n, m)``."""
    pairs = set()
    for k in torch.nonzero(mask.sum(dim=0) >= 2).flatten().tolist():
        feats = torch.nonzero(mask[:, k]).flatten().tolist()
        pairs.update((a, b) for ai, a in enumerate(feats) for b in feats[ai + 1:])
    return pairs


def correspondence_summary(W0: torch.Tensor, W: torch.Tensor, band: tuple[float, float] = BAND) -> dict[str, float]:
    """How the features' initial leaders relate to their final winners, pooled over instances.

    Introduced in the book: :ref:`leaders-to-winners` (chapter collisions).

    Returns
    -------
    dict
        - ``leader_wins``: fraction of features whose final winner was their initial arg-max;
        - ``top3``: fraction won by one of their initial top 3 neurons;
        - ``sign_kept``: fraction whose final winning weight has the sign it had at the start;
        - ``positive``: fraction whose final winning weight is positive;
        - ``initial_pairs``: mean (per instance) number of feature pairs sharing an initial leader;
        - ``initial_pairs_opposite``: those whose two leading weights have opposite signs;
        - ``final_pairs``: mean number of pairs sharing a polysemantic neuron at the end (band rule);
        - ``final_from_initial``: fraction of the final pairs that had also shared an initial leader;
        - ``initial_opposite_kept``: fraction of opposite-sign initial pairs still sharing at the end;
        - ``opposite_share_rate``: among pairs whose final winning weights have opposite signs, the
          fraction sharing a final winner, times ``m`` (1 if winners were uniform and independent);
        - ``same_share_rate``: likewise for same-sign pairs (0 if interference always separates them).
    """
    if W0.shape != W.shape or W.dim() != 3:
        raise ValueError(f"W0 and W must both be (instances, n, m), got {tuple(W0.shape)} and {tuple(W.shape)}")
    B, n, m = W.shape
    rank = winner_initial_rank(W0, W)
    win = winners(W)  # (B, n)
    lead = winners(W0)
    w_end = W.gather(-1, win.unsqueeze(-1)).squeeze(-1)  # (B, n) final winning weights
    w_start = W0.gather(-1, win.unsqueeze(-1)).squeeze(-1)
    lead_sign = torch.sign(W0.gather(-1, lead.unsqueeze(-1)).squeeze(-1))
    mask = band_mask(W, band)
    ii, jj = torch.triu_indices(n, n, offset=1).numpy()  # every pair i < j, as two index arrays
    init_pairs = init_opp = final_pairs = final_from_init = opp_kept = 0
    opp_total = opp_shared = same_total = same_shared = 0
    for b in range(B):  # vectorised over the n(n-1)/2 pairs: at n = 256 that is 32,640 per instance
        lb, sb, wb = lead[b].numpy(), lead_sign[b].numpy(), win[b].numpy()
        se = np.sign(w_end[b].numpy())
        same_lead = lb[ii] == lb[jj]
        opp_lead = same_lead & (sb[ii] != sb[jj])
        ipairs = set(zip(ii[same_lead].tolist(), jj[same_lead].tolist()))
        fpairs = _pairs_on_neurons(mask[b])
        init_pairs += int(same_lead.sum())
        init_opp += int(opp_lead.sum())
        final_pairs += len(fpairs)
        final_from_init += len(fpairs & ipairs)
        shared_win = wb[ii] == wb[jj]
        opp_win = se[ii] != se[jj]
        opp_kept += int((opp_lead & shared_win).sum())
        opp_total += int(opp_win.sum())
        opp_shared += int((opp_win & shared_win).sum())
        same_total += int((~opp_win).sum())
        same_shared += int((~opp_win & shared_win).sum())
    return {
        "leader_wins": float((rank == 0).double().mean()),
        "top3": float((rank < 3).double().mean()),
        "sign_kept": float((torch.sign(w_end) == torch.sign(w_start)).double().mean()),
        "positive": float((w_end > 0).double().mean()),
        "initial_pairs": init_pairs / B,
        "initial_pairs_opposite": init_opp / B,
        "final_pairs": final_pairs / B,
        "final_from_initial": final_from_init / final_pairs if final_pairs else float("nan"),
        "initial_opposite_kept": opp_kept / init_opp if init_opp else float("nan"),
        "opposite_share_rate": m * opp_shared / opp_total if opp_total else float("nan"),
        "same_share_rate": m * same_shared / same_total if same_total else float("nan"),
    }


# --------------------------------------------------------------------------- two features


def shared_neuron_loss(a, b) -> np.ndarray:
    """Reconstruction loss of two features that both live on one neuron, with weights ``a`` and ``b``.

    It is ``(1 - ReLU(a^2))^2 + (1 - ReLU(b^2))^2 + 2 ReLU(a b)^2``, computed by the package's
    own loss on an ``n = 2``, ``m = 1`` model: zero at ``(1, -1)``, 2 at ``(1, 1)``.

    Introduced in the book: :ref:`opposite-signs` (chapter collisions).

    Examples
    --------
    >>> shared_neuron_loss([1.0, 1.0], [-1.0, 1.0]).tolist()
    [0.0, 2.0]
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    W = torch.from_numpy(np.stack([a.ravel(), b.ravel()], axis=-1)).unsqueeze(-1)  # (points, 2, 1)
    return reconstruction_loss(W).numpy().reshape(a.shape)


def two_feature_start(shared: float = 0.6, partner: float = 0.5) -> torch.Tensor:
    """Initial weights of two 2-feature, 4-neuron models whose features both lead on neuron 0.

    Instance 0: the two leading weights have the same sign (``+shared``, ``+partner``); instance 1:
    opposite signs (``+shared``, ``-partner``). Every other weight is identical in the two.

    Introduced in the book: :ref:`opposite-signs` (chapter collisions).

    Returns
    -------
    torch.Tensor
        ``(2, 2, 4)``.
    """
    W0 = torch.tensor([[shared, 0.25, -0.10, 0.05], [partner, -0.05, 0.30, -0.10]])
    W0 = W0.expand(2, 2, 4).clone()  # (instances, n, m)
    W0[1, 1, 0] = -partner
    return W0


# --------------------------------------------------------------------------- sensitivity


def run_setting(n: int, m: int, *, instances: int = 16, steps: int = 7500, lr: float = 1e-3, l1: float = 1e-3,
                optimizer: str = "adamw", seed: int = 0, W0: torch.Tensor | None = None,
                device: str = "auto") -> tuple[dict, TrainResult]:
    """Train one setting and summarise it for the sensitivity table.

    Introduced in the book: :ref:`sensitivity` (chapter collisions).

    Returns
    -------
    (dict, TrainResult)
        What :func:`summarise_weights` returns for the final weights, the initial ones and the
        final loss.
    """
    cfg = TrainConfig(n=n, m=m, instances=instances, steps=steps, lr=lr, l1=l1, optimizer=optimizer, seed=seed)
    res = train(cfg, W0=W0, device=device, progress=False)
    return summarise_weights(res.W, res.losses[-1], res.W0), res


def summarise_weights(W: torch.Tensor, final_loss: torch.Tensor | None = None,
                      W0: torch.Tensor | None = None) -> dict:
    """The sensitivity-table numbers of final weights ``(instances, n, m)``, as means over instances.

    Keys: ``band`` (band-rule count), ``by_mass`` (threshold-free count), ``same`` (same-sign
    band-rule neurons), ``onehot`` (share of encodings with exactly one weight above ``1e-3`` in
    magnitude), ``fourth`` (mean fourth norm), ``predicted`` (``n^2/(4m)``); with ``final_loss``
    also ``loss``, and with the initial weights ``W0`` also ``leader`` (share of features won by
    their initial arg-max).

    Introduced in the book: :ref:`sensitivity` (chapter collisions).

    Examples
    --------
    >>> W = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    >>> r = summarise_weights(W)
    >>> r["band"], r["onehot"], r["same"]
    (1.0, 1.0, 0.0)
    """
    n, m = W.shape[-2:]
    row = {
        "band": float(polysemantic_neurons(W).double().mean()),
        "by_mass": float(polysemantic_neurons_by_mass(W).double().mean()),
        "same": float(polysemantic_sign_pattern(W)[..., 1].double().mean()),
        "onehot": float(one_hot_share(W).mean()),
        "fourth": float(fourth_norm(W).double().mean()),
        "predicted": predicted_polysemantic(n, m),
    }
    if final_loss is not None:
        row["loss"] = float(final_loss.double().mean())
    if W0 is not None:
        row["leader"] = float((winner_initial_rank(W0, W) == 0).double().mean())
    return row
