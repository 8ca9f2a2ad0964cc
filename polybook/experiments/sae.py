"""Experiment ``sae``: incidental polysemanticity in sparse autoencoders, on data with known features.

Ground truth: ``features`` unit directions (the dictionary, ``(features, d)``); a sample is
``x = s @ dictionary`` with sparse nonnegative coefficients ``s``. An SAE of width ``w`` encodes
``f = ReLU(W_e (x - b_d) + b_e)`` and decodes ``x_hat = W_d f + b_d`` with unit-norm decoder
columns. A latent responding to two or more features (:func:`sae_responses`) is *mixed*; a mixed
latent is *recurring* when another SAE (another seed, same data) mixes one of its feature pairs too,
and *accidental* otherwise (:func:`classify_mixed`). An SAE has *recovered* the features (its finish
rule, :data:`RECOVERED`) when at least that share of features has a decoder column within
:data:`RECOVERY_COS` of it (cosine). The
chapter's account is :mod:`polybook.beyond`; this file holds the data, the SAEs and their training
loop, the response rule, and the experiment's config, run, replay and table rows.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _validate as check
from ..train import make_optimizer, run_steps, seeded_generator
from .config import ExperimentConfig, param
from .registry import Experiment

__all__ = ["RECOVERED", "RECOVERY_COS", "SAEConfig", "classify_mixed", "encode", "make_dictionary", "recovery",
           "sae_responses", "sae_rows", "sample_data", "train_sae"]

#: A feature is recovered by an SAE when some decoder column has cosine at least this with it.
#: Introduced in the book: :doc:`/book/beyond` (chapter beyond).
RECOVERY_COS = 0.9
#: The SAE finish rule: an SAE has recovered the features when at least this share of them is recovered.
#: Introduced in the book: :doc:`/book/beyond` (chapter beyond).
RECOVERED = 0.9


@dataclasses.dataclass(frozen=True)
class SAEConfig(ExperimentConfig):
    """SAEs of several widths on synthetic activations with known ground-truth features.

    Each data set ``j`` has ``features[j]`` unit directions in ``d[j]`` dimensions (so
    ``features[j] > d[j]`` puts the data in superposition). ``widths`` are multiples of the number
    of features (``0.5`` is half as many latents as features). Each width trains ``seeds`` SAEs side
    by side on the same data (seed ``seed``); SAE ``s`` starts from its own draw (seed ``seed + 100 + s``).
    The seeds start at 3000, a base no other stored experiment uses.

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """

    features: tuple[int, ...] = param((32, 64), minimum=2)
    d: tuple[int, ...] = param((64, 32), minimum=2)
    p: float = param(0.05, strict=True, maximum=1.0)
    samples: int = 8192
    widths: tuple[float, ...] = param((0.5, 1.0, 2.0, 4.0), minimum=0.0, strict=True, maximum=1024.0,
                                      unique=True)
    seeds: int = param(8, minimum=2)
    steps: int = 3000
    batch: int = 256
    lr: float = 3e-3
    sae_l1: float = 0.1
    seed: int = 3000

    def check(self) -> None:
        """One ``d`` per data set; every width at least one latent; a minibatch within the samples."""
        if len(self.d) != len(self.features):
            check.fail("d", self.d, f"a tuple as long as features ({len(self.features)} entries)")
        for w in self.widths:
            if round(w * min(self.features)) < 1:
                check.fail("widths", w, f"at least 1/features = {1 / min(self.features):g}")
        check.integer("batch", self.batch, maximum=self.samples)

    def latents(self, j: int = 0) -> list[int]:
        """The widths in latents for data set ``j``."""
        return [int(round(w * self.features[j])) for w in self.widths]

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory of the widest SAEs: parameters with Adam state, minibatch activations, the data."""
        w = max(max(self.latents(j)) for j in range(len(self.features)))
        d = max(self.d)
        return 4 * (self.seeds * (8 * d * w + 6 * self.batch * (w + d)) + 3 * self.samples * d)

    def flops(self) -> float:
        """Rough floating-point operations: 6 batch d w per SAE and step (forward and backward)."""
        return float(sum(6 * self.batch * self.d[j] * w * self.seeds * self.steps
                         for j in range(len(self.features)) for w in self.latents(j)))


def make_dictionary(features: int, d: int, seed: int = 0) -> torch.Tensor:
    """``features`` random unit directions in ``d`` dimensions, ``(features, d)``.

    >>> D = make_dictionary(5, 3)
    >>> tuple(D.shape), bool(torch.allclose(D.norm(dim=1), torch.ones(5)))
    ((5, 3), True)

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    check.integer("features", features, minimum=1)
    check.integer("d", d)
    gen = torch.Generator().manual_seed(seed)
    D = torch.randn(features, d, generator=gen)
    return D / D.norm(dim=1, keepdim=True)


def sample_data(dictionary: torch.Tensor, samples: int, p: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse nonnegative coefficients ``s`` ``(samples, features)`` and activations ``x = s @ dictionary``.

    Each feature is active with probability ``p``, independently; an active coefficient is uniform on ``(0, 1]``.

    >>> s, x = sample_data(make_dictionary(4, 3), 10, 0.5)
    >>> tuple(s.shape), tuple(x.shape), bool((s >= 0).all())
    ((10, 4), (10, 3), True)

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    check.integer("samples", samples)
    check.number("p", p, 0.0, strict=True, maximum=1.0)
    gen = torch.Generator().manual_seed(seed + 1)
    on = torch.rand(samples, dictionary.shape[0], generator=gen) < p
    s = on * (1.0 - torch.rand(samples, dictionary.shape[0], generator=gen))
    return s, s @ dictionary


def _init_sae(width: int, d: int, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
    Wd = torch.stack([torch.randn(d, width, generator=torch.Generator().manual_seed(s)) for s in seeds])
    Wd = Wd / Wd.norm(dim=1, keepdim=True)  # (seeds, d, width), unit columns
    return {"We": Wd.transpose(1, 2).clone(), "be": torch.zeros(len(seeds), 1, width),
            "Wd": Wd, "bd": torch.zeros(len(seeds), 1, d)}


def encode(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The SAEs' latent activations ``ReLU((x - b_d) W_e^T + b_e)``: ``(seeds, samples, width)`` for ``x`` ``(samples, d)``.

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).

    >>> p = {"We": torch.tensor([[[1.0, 0.0], [0.7, 0.7]]]), "be": torch.zeros(1, 1, 2), "bd": torch.zeros(1, 1, 2)}
    >>> encode(p, torch.tensor([[0.0, 1.0]])).tolist()
    [[[0.0, 0.699999988079071]]]
    """
    return torch.relu((x - p["bd"]) @ p["We"].transpose(1, 2) + p["be"])  # (seeds, B, width)


def train_sae(x: torch.Tensor, width: int, seeds: Sequence[int], *, steps: int = 3000, batch: int = 256,
              lr: float = 3e-3, sae_l1: float = 0.03, seed: int = 0) -> dict[str, torch.Tensor]:
    """Train one SAE of ``width`` latents per entry of ``seeds`` on the rows of ``x`` ``(samples, d)``.

    Minibatches of ``batch`` rows, drawn with a generator seeded by ``seed`` (the same for every
    SAE); decoder columns renormalised to unit length after every Adam step, on one CPU thread.
    Returns the parameters ``We`` ``(seeds, width, d)``, ``be`` ``(seeds, 1, width)``, ``Wd``
    ``(seeds, d, width)``, ``bd`` ``(seeds, 1, d)``. Raises :class:`polybook.train.Diverged` when
    the loss or a parameter becomes NaN or infinite.

    >>> _, x = sample_data(make_dictionary(4, 6), 64, 0.3)
    >>> p = train_sae(x, 8, seeds=[0, 1], steps=3, batch=16)
    >>> tuple(p["We"].shape)
    (2, 8, 6)

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    check.integer("width", width)
    check.integer("steps", steps)
    check.integer("batch", batch, maximum=x.shape[0])
    check.number("lr", lr, 0.0, strict=True)
    check.number("sae_l1", sae_l1)
    if not seeds:
        check.fail("seeds", seeds, "a non-empty list of seeds")
    cpu = torch.device("cpu")
    p = {k: v.requires_grad_(True) for k, v in _init_sae(width, x.shape[1], seeds).items()}
    opt = make_optimizer(list(p.values()), "adam", lr, fused=False)
    gen = seeded_generator(seed, cpu, offset=11)

    def step(t: int) -> torch.Tensor:
        xb = x[torch.randint(0, x.shape[0], (batch,), generator=gen)]  # (B, d)
        f = encode(p, xb)
        err = xb - (f @ p["Wd"].transpose(1, 2) + p["bd"])
        loss = err.square().sum(-1).mean(-1) + sae_l1 * f.sum(-1).mean(-1)  # (seeds,)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            p["Wd"].div_(p["Wd"].norm(dim=1, keepdim=True).clamp_min(1e-8))
        return loss.detach()

    run_steps(step, steps, device=cpu, watch=p.values, instances=len(seeds), autograd=True,
              settings=types.SimpleNamespace(lr=lr, sae_l1=sae_l1), desc=f"sae width {width}")
    return {k: v.detach() for k, v in p.items()}


def sae_responses(params: dict[str, torch.Tensor], dictionary: torch.Tensor, rel: float = 0.5,
                  floor: float = 0.1) -> torch.Tensor:
    """The SAE response rule: ``(seeds, features, width)`` booleans, latent ``a`` responds to feature ``f``.

    The probe input is the dictionary vector of ``f`` alone (coefficient 1). Latent ``a`` responds
    when its activation there is at least ``rel`` times its largest activation over all features and
    at least ``floor``.

    >>> p = {"We": torch.tensor([[[1.0, 0.0], [0.7, 0.7]]]), "be": torch.zeros(1, 1, 2), "bd": torch.zeros(1, 1, 2)}
    >>> sae_responses(p, torch.eye(2)).int().tolist()  # latent 1 reads both features
    [[[1, 1], [0, 1]]]

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    check.number("rel", rel, 0.0, strict=True, maximum=1.0)
    check.number("floor", floor, 0.0, strict=True)
    A = encode(params, dictionary)  # (seeds, features, width)
    top = A.amax(dim=1, keepdim=True)
    return (A >= rel * top) & (A >= floor)


def mixed_latents(resp: torch.Tensor) -> torch.Tensor:
    """Latents responding to two or more features, per SAE: ``(seeds,)`` integers.

    >>> mixed_latents(torch.tensor([[[1, 1], [0, 1]]], dtype=torch.bool)).tolist()
    [1]
    """
    return (resp.sum(dim=1) >= 2).sum(dim=-1)


def mixed_pairs(resp: torch.Tensor) -> list[set[tuple[int, int]]]:
    """Per SAE, the set of feature pairs ``(f, g)``, ``f < g``, that some latent responds to together.

    >>> mixed_pairs(torch.tensor([[[1, 1], [0, 1]]], dtype=torch.bool))
    [{(0, 1)}]
    """
    out = []
    for r in resp:
        pairs = set()
        for a in torch.nonzero(r.sum(0) >= 2).flatten().tolist():
            fs = torch.nonzero(r[:, a]).flatten().tolist()
            pairs.update((f, g) for i, f in enumerate(fs) for g in fs[i + 1:])
        out.append(pairs)
    return out


def pair_overlap(pairs: Sequence[set]) -> float | None:
    """Share of mixed pairs of one SAE that another SAE (another seed) mixes too, over all ordered seed pairs.

    ``None`` when no SAE has a mixed pair. Accidental mixing gives a share near the chance level
    (mixed pairs per SAE over all pairs); mixing forced by the data repeats across seeds.

    >>> pair_overlap([{(0, 1)}, {(0, 1), (2, 3)}])
    0.75
    """
    shares = [len(a & b) / len(a) for i, a in enumerate(pairs) for j, b in enumerate(pairs) if i != j and a]
    return float(np.mean(shares)) if shares else None


def pair_overlap_per_sae(pairs: Sequence[set]) -> list[float | None]:
    """For each SAE, the mean share of its mixed pairs that each other SAE mixes too (``None`` without pairs).

    Their mean over SAEs is :func:`pair_overlap`; their spread gives its standard error.

    >>> pair_overlap_per_sae([{(0, 1)}, {(0, 1), (2, 3)}, set()])
    [0.5, 0.25, None]
    """
    out = []
    for i, a in enumerate(pairs):
        others = [len(a & b) / len(a) for j, b in enumerate(pairs) if j != i] if a else []
        out.append(float(np.mean(others)) if others else None)
    return out


def recovery(params: dict[str, torch.Tensor], dictionary: torch.Tensor) -> torch.Tensor:
    """Per SAE and feature, the largest cosine of the feature's direction with a decoder column: ``(seeds, features)``.

    Decoder columns are unit vectors (the training keeps them so) and so are the dictionary rows.

    >>> p = {"Wd": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])}  # (seeds, d, width): columns e1, e2
    >>> recovery(p, torch.tensor([[1.0, 0.0], [0.6, 0.8]])).tolist()
    [[1.0, 0.800000011920929]]

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    Wd = params["Wd"] / params["Wd"].norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (dictionary @ Wd).amax(dim=-1)


def _latent_pairs(resp: torch.Tensor) -> list[list[set[tuple[int, int]]]]:
    """Per SAE, one set of feature pairs per mixed latent (in latent order)."""
    out = []
    for r in resp:
        lat = []
        for a in torch.nonzero(r.sum(0) >= 2).flatten().tolist():
            fs = torch.nonzero(r[:, a]).flatten().tolist()
            lat.append({(f, g) for i, f in enumerate(fs) for g in fs[i + 1:]})
        out.append(lat)
    return out


def _recurs(per_latent: list[list[set]]) -> list[list[bool]]:
    """Per SAE and mixed latent: does another SAE mix one of its pairs?"""
    union = [set().union(*lat) if lat else set() for lat in per_latent]
    out = []
    for i, lat in enumerate(per_latent):
        others = set().union(*(u for j, u in enumerate(union) if j != i))
        out.append([bool(q & others) for q in lat])
    return out


def classify_mixed(resp: torch.Tensor) -> tuple[list[int], list[int]]:
    """Per SAE, the mixed latents that are *recurring* and those that are *accidental*: two lists of counts.

    A mixed latent is recurring when at least one of its feature pairs is mixed by another SAE of
    ``resp`` (another seed on the same data): the data decided it. It is accidental when none of its
    pairs is mixed by any other SAE. ``resp`` is :func:`sae_responses`' ``(seeds, features, width)``.

    >>> r = torch.tensor([[[1, 1], [1, 0], [0, 1]], [[1, 0], [1, 0], [0, 1]]], dtype=torch.bool)
    >>> classify_mixed(r)  # latent 0 of both SAEs mixes (0, 1); latent 1 of SAE 0 mixes (0, 2), which SAE 1 does not
    ([1, 1], [1, 0])

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    rec = _recurs(_latent_pairs(resp))
    return [sum(r) for r in rec], [len(r) - sum(r) for r in rec]


def _kind_cos(resp: torch.Tensor, D: torch.Tensor) -> tuple[list, list]:
    """Per SAE, mean ``|cos|`` of the feature pairs of its recurring and of its accidental mixed latents.

    ``None`` for an SAE without latents of that kind.
    """
    per_latent = _latent_pairs(resp)
    cosm = (D @ D.T).abs()
    rec_cos, acc_cos = [], []
    for lat, rec in zip(per_latent, _recurs(per_latent)):
        for kind, out in ((True, rec_cos), (False, acc_cos)):
            vals = [float(cosm[a, b]) for q, r in zip(lat, rec) if r == kind for a, b in q]
            out.append(round(float(np.mean(vals)), 6) if vals else None)
    return rec_cos, acc_cos


def run_sae(cfg: SAEConfig, device: torch.device, progress: bool = True) -> dict:
    """Per data set and width: mixed latents, dead latents, missed features, per SAE; pair overlap.

    ``results["datasets"]``: one entry per data set with ``features``, ``d``, ``latents`` (per
    width), ``cos_mean`` and ``cos_max`` (mean and largest ``|cos|`` between two dictionary
    directions), and per width lists over SAEs: ``mixed`` (latents responding to two or more
    features), ``dead`` (latents responding to none), ``missed`` (features no latent responds to),
    ``pairs`` (mixed feature pairs), ``pair_cos`` (mean ``|cos|`` of the mixed pairs, ``None``
    without any), ``mse`` (held-out squared error per sample); and per width ``overlap``
    (:func:`pair_overlap`), ``overlap_per_sae`` (:func:`pair_overlap_per_sae`) and ``chance`` (mixed
    pairs per SAE over all pairs); ``recovered`` (share of features recovered, :func:`recovery`),
    ``recurring`` and ``accidental`` (mixed latents of each kind, :func:`classify_mixed`),
    ``recurring_cos`` and ``accidental_cos`` (mean ``|cos|`` of the feature pairs of each kind,
    ``None`` without any) and
    ``fire_mixed`` (median firing frequency of the mixed latents on held-out samples, ``None``
    without any) per SAE. Runs on the CPU.
    """
    seeds = [cfg.seed + 100 + s for s in range(cfg.seeds)]
    out = []
    for j, (nf, d) in enumerate(zip(cfg.features, cfg.d)):
        D = make_dictionary(nf, d, cfg.seed + j)
        _, x = sample_data(D, cfg.samples, cfg.p, cfg.seed + j)
        _, x_test = sample_data(D, 2048, cfg.p, cfg.seed + j + 1000)
        cos = (D @ D.T).abs()[tuple(np.triu_indices(nf, 1))]
        per = []
        for w in tqdm(cfg.latents(j), desc=f"sae {nf} features", disable=not progress, file=sys.stderr, leave=False):
            p = train_sae(x, w, seeds, steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, sae_l1=cfg.sae_l1, seed=cfg.seed)
            per.append(_sae_summary(p, D, x_test))
        entry = {"features": nf, "d": d, "latents": cfg.latents(j), "cos_mean": round(float(cos.mean()), 6),
                 "cos_max": round(float(cos.max()), 6)}
        for key in per[0]:
            entry[key] = [q[key] for q in per]
        out.append(entry)
    return {"datasets": out}


def _sae_summary(p: dict[str, torch.Tensor], D: torch.Tensor, x_test: torch.Tensor) -> dict:
    nf = D.shape[0]
    resp = sae_responses(p, D)
    pairs = mixed_pairs(resp)
    cosm = (D @ D.T).abs()
    with torch.no_grad():
        f = encode(p, x_test)
        mse = (x_test - (f @ p["Wd"].transpose(1, 2) + p["bd"])).square().sum(-1).mean(-1)
    ov = pair_overlap(pairs)
    recurring, accidental = classify_mixed(resp)
    rec_cos, acc_cos = _kind_cos(resp, D)
    mixed = resp.sum(dim=1) >= 2  # (seeds, width)
    fire = (f > 0).double().mean(1)  # (seeds, width)
    return {
        "recovered": [round(float(v), 6) for v in (recovery(p, D) >= RECOVERY_COS).double().mean(-1)],
        "recurring": recurring,
        "accidental": accidental,
        "recurring_cos": rec_cos,
        "accidental_cos": acc_cos,
        "fire_mixed": [round(float(fire[s][mixed[s]].median()), 6) if mixed[s].any() else None
                       for s in range(len(pairs))],
        "mixed": mixed_latents(resp).tolist(),
        "dead": (resp.sum(dim=1) == 0).sum(-1).tolist(),
        "missed": (resp.sum(dim=2) == 0).sum(-1).tolist(),
        "pairs": [len(q) for q in pairs],
        "pair_cos": [round(float(np.mean([float(cosm[a, b]) for a, b in q])), 6) if q else None for q in pairs],
        "mse": [round(float(v), 6) for v in mse],
        "overlap": None if ov is None else round(ov, 6),
        "overlap_per_sae": [None if v is None else round(v, 6) for v in pair_overlap_per_sae(pairs)],
        "chance": round(float(np.mean([len(q) for q in pairs])) / (nf * (nf - 1) / 2), 6),
    }


def replay_sae(record: dict, dataset: int = 0, widths: Sequence[int] = (0,), seeds: int = 2) -> dict:
    """Re-train the first ``seeds`` SAEs of the widths numbered ``widths`` of data set ``dataset`` of a stored ``sae`` record.

    Returns ``{"stored": [...], "replayed": [...]}``, one list of mixed-latent counts per width.
    """
    if record.get("experiment") != "sae":
        raise ValueError(f"record must be a sae result, got {record.get('experiment')!r}")
    cfg = SAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    D = make_dictionary(cfg.features[dataset], cfg.d[dataset], cfg.seed + dataset)
    _, x = sample_data(D, cfg.samples, cfg.p, cfg.seed + dataset)
    out: dict[str, list] = {"stored": [], "replayed": []}
    for j in widths:
        p = train_sae(x, cfg.latents(dataset)[j], [cfg.seed + 100 + s for s in range(seeds)], steps=cfg.steps,
                      batch=cfg.batch, lr=cfg.lr, sae_l1=cfg.sae_l1, seed=cfg.seed)
        out["stored"].append(record["results"]["datasets"][dataset]["mixed"][j][:seeds])
        out["replayed"].append(mixed_latents(sae_responses(p, D)).tolist())
    return out


def _sem(values: Sequence[float]) -> float | None:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) >= 2 else None


def _mean_present(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def sae_rows(record: dict, dataset: int = 0) -> list[dict]:
    """One row per width of data set ``dataset``: ``latents``, ``ratio`` (latents per feature), ``mean``
    and ``sem`` of mixed latents, ``dead``, ``missed``, ``mse`` (means), ``overlap``, ``chance``,
    ``overlap_sem`` (its standard error over SAEs, or ``None``), ``pair_cos`` (mean over SAEs with a
    mixed pair, or ``None``), ``zero`` (SAEs without a mixed
    latent), ``sae`` (SAEs per width), ``reference`` (the birthday count ``C(n, 2)/w`` of pairs
    whose initial best latent is shared, were every such collision to survive), ``law`` (the toy
    model's surviving count ``n^2/(4w)``), ``recovered`` (mean share of features recovered) and
    ``finished`` (it reaches :data:`RECOVERED`), ``recurring``, ``accidental`` and their s.e.
    ``recurring_sem``, ``accidental_sem`` (means over SAEs), ``recurring_cos`` and
    ``accidental_cos`` (mean ``|cos|`` of the pairs of each kind over SAEs with any, or ``None``),
    and ``fire_mixed`` (median over SAEs
    with a mixed latent, or ``None``). These last are ``None`` in records without them.

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    res = record.get("results", record)["datasets"][dataset]
    rows = []
    for j, w in enumerate(res["latents"]):
        c = np.asarray(res["mixed"][j], dtype=float)
        rows.append({
            "latents": w, "ratio": w / res["features"], "mean": float(c.mean()),
            "sem": float(c.std(ddof=1) / math.sqrt(c.size)), "dead": float(np.mean(res["dead"][j])),
            "missed": float(np.mean(res["missed"][j])), "mse": float(np.mean(res["mse"][j])),
            "overlap": res["overlap"][j], "chance": res["chance"][j], "zero": int((c == 0).sum()),
            "sae": int(c.size), "reference": res["features"] * (res["features"] - 1) / 2 / w,
            "overlap_sem": _sem([v for v in res["overlap_per_sae"][j] if v is not None]),
            "pair_cos": (float(np.mean([v for v in res["pair_cos"][j] if v is not None]))
                         if any(v is not None for v in res["pair_cos"][j]) else None),
            "law": res["features"] ** 2 / (4 * w),
        })
        new = "recovered" in res
        rows[-1].update({
            "recovered": float(np.mean(res["recovered"][j])) if new else None,
            "finished": bool(np.mean(res["recovered"][j]) >= RECOVERED) if new else None,
            "recurring": float(np.mean(res["recurring"][j])) if new else None,
            "recurring_sem": _sem(res["recurring"][j]) if new else None,
            "accidental": float(np.mean(res["accidental"][j])) if new else None,
            "accidental_sem": _sem(res["accidental"][j]) if new else None,
            "recurring_cos": _mean_present(res["recurring_cos"][j]) if new else None,
            "accidental_cos": _mean_present(res["accidental_cos"][j]) if new else None,
            "fire_mixed": (float(np.median([v for v in res["fire_mixed"][j] if v is not None]))
                           if new and any(v is not None for v in res["fire_mixed"][j]) else None),
        })
    return rows


EXPERIMENT = Experiment(
    "sae",
    "mixed SAE latents against width, on synthetic activations with known sparse features",
    SAEConfig,
    book=SAEConfig(),
    paper=SAEConfig(features=(64, 128), d=(128, 64), widths=(0.5, 1.0, 2.0, 4.0, 8.0), seeds=16, steps=6000),
    run=run_sae,
    replay=replay_sae,
    rows=sae_rows,
    stored=("sae",),
)
