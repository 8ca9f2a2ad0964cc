"""Beyond the toy model: other architectures, and incidental polysemanticity in sparse autoencoders.

Two experiments, both small enough for two CPU cores.

**Architectures** (:class:`ArchConfig`, experiment ``architectures``). The collisions setting
(``n`` features, ``m`` neurons, basis inputs, AdamW, L1 ``l1`` on the code) with one change at a
time. A model maps an input ``x`` (a row, ``(n,)``) to

    code  c = x W (x W U for ``second_layer``),       hidden  h = act_h(c),
    output y = act_o(h D^T + b),

with ``D = W`` (tied; ``D = W U`` for ``second_layer``) or a separate decoder ``D`` (``untied``),
``act_h`` the identity or a ReLU, ``act_o`` a ReLU or a GELU and ``b`` an output bias (zero unless
``biases``; a hidden bias would fold into it, since ``(c + b_h) D^T = c D^T + D b_h``). The loss is
the summed squared error over the ``n`` basis inputs plus ``l1`` times the L1 norm of their codes,
``l1 * sum_ik |c_ik|`` (for the tied model this is the paper's ``l1 * sum |W_ik|``); the untied model
pays ``l1/2`` on its encoder and ``l1/2`` on its decoder, which is the paper's penalty whenever
``D = W`` (an L1 on the encoder alone would let the encoder shrink and the decoder grow without end). ``minibatch``
trains on ``batch`` basis inputs drawn at random per step, the error scaled by ``n / batch`` so the
expected loss is the full one. ``VARIANTS`` lists them; every variant starts from the same
``W`` (the untied decoder from a second draw, ``U`` at the identity), so comparisons are paired.

Polysemantic neurons are counted with the book's band rule on the hidden activation of each basis
input, ``h_i = act_h(c_i)`` (``(instances, n, m)``): for the tied linear model this is ``W`` itself.

**Sparse autoencoders** (:class:`SAEConfig`, experiment ``sae``). Ground truth: ``features`` unit
directions (the dictionary, ``(features, d)``); a sample is ``x = s @ dictionary`` with sparse
nonnegative coefficients ``s`` (each feature active with probability ``p``, then uniform on
``(0, 1]``). An SAE of width ``w`` encodes ``f = ReLU(W_e (x - b_d) + b_e)`` and decodes
``x_hat = W_d f + b_d`` with unit-norm decoder columns; its loss is the mean over a minibatch of
``||x - x_hat||^2 + sae_l1 * ||f||_1``, trained with Adam.

**The SAE response rule** (:func:`sae_responses`): latent ``a`` *responds* to feature ``f`` when its
activation on the dictionary vector of ``f`` alone is at least ``rel`` (1/2) of its largest
activation over all features and at least ``floor`` (0.1) in absolute terms. A latent responding to
two or more features is *mixed* (polysemantic).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _validate as check
from .experiments import register
from .metrics import finite, polysemantic_neurons, polysemantic_neurons_by_mass, polysemantic_sign_pattern
from .models import init_weights
from .theory import expected_polysemantic_exact, predicted_polysemantic

__all__ = [
    "ArchConfig",
    "hidden_codes",
    "arch_loss",
    "train_variant",
    "arch_rows",
    "SAEConfig",
    "make_dictionary",
    "sample_data",
    "encode",
    "train_sae",
    "sae_responses",
    "sae_rows",
]

#: The architecture variants, each one change from the paper's tied ReLU autoencoder.
VARIANTS = {
    "tied_relu": "the paper's model: tied weights, no bias, ReLU on the output",
    "untied": "separate decoder D (its own initial draw); L1 of l1/2 on each of W and D",
    "biases": "a learned output bias b (zero at the start, not penalised)",
    "gelu": "GELU instead of ReLU on the output",
    "hidden_relu": "a ReLU on the hidden layer as well: h = ReLU(x W)",
    "second_layer": "a second linear layer: code x W U with U (m x m) starting at the identity",
    "minibatch": "random minibatches of basis inputs instead of all n at once",
}


# --------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class ArchConfig:
    """The collisions setting with each of ``variants`` (names from ``VARIANTS``).

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """

    n: int = 32
    m: int = 128
    instances: int = 16
    steps: int = 7500
    lr: float = 1e-3
    l1: float = 1e-3
    batch: int = 8
    variants: tuple[str, ...] = tuple(VARIANTS)
    seed: int = 0

    def __post_init__(self) -> None:
        check.integer("n", self.n, minimum=2)
        check.integer("m", self.m)
        check.integer("instances", self.instances, minimum=2)
        check.integer("steps", self.steps)
        check.number("lr", self.lr, 0.0, strict=True)
        check.number("l1", self.l1)
        check.integer("batch", self.batch, maximum=self.n)
        if not isinstance(self.variants, tuple) or not self.variants:
            check.fail("variants", self.variants, f"a non-empty tuple of names from {', '.join(VARIANTS)}")
        for v in self.variants:
            check.choice("variants", v, VARIANTS)
        check.seed("seed", self.seed)

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory of one variant: weights, gradients, optimiser state and products (float32)."""
        return 4 * self.instances * (16 * self.n * self.m + 4 * self.m**2 + 8 * self.n**2)

    def flops(self) -> float:
        """Rough floating-point operations: about 12 n^2 m per instance, step and variant."""
        return float(12 * self.n**2 * self.m * self.instances * self.steps * len(self.variants))


def init_params(variant: str, W0: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The trainable tensors of ``variant`` starting from ``W0`` (``(instances, n, m)``).

    ``untied`` adds a decoder ``D`` drawn like ``W0`` with seed ``seed + 1``; ``biases`` an output
    bias ``b`` ``(instances, 1, n)`` at zero; ``second_layer`` a matrix ``U`` ``(instances, m, m)``
    at the identity.

    >>> sorted(init_params("untied", init_weights(2, 3, 4)))
    ['D', 'W']
    """
    check.choice("variant", variant, VARIANTS)
    I, n, m = W0.shape
    p = {"W": W0.detach().clone().float()}
    if variant == "untied":
        p["D"] = init_weights(I, n, m, seed=seed + 1)
    elif variant == "biases":
        p["b"] = torch.zeros(I, 1, n)
    elif variant == "second_layer":
        p["U"] = torch.eye(m).expand(I, m, m).clone()
    return p


def _code_and_decoder(variant: str, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of the basis inputs ``(instances, n, m)`` and the decoder ``(instances, n, m)``."""
    if variant == "second_layer":
        C = p["W"] @ p["U"]
        return C, C
    return p["W"], p.get("D", p["W"])


def hidden_codes(variant: str, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Hidden activation of each basis input, ``(instances, n, m)``: what the band rule is applied to.

    >>> W = torch.tensor([[[1.0, -1.0]]])
    >>> hidden_codes("hidden_relu", {"W": W}).tolist()
    [[[1.0, 0.0]]]

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    C, _ = _code_and_decoder(variant, p)
    return torch.relu(C) if variant == "hidden_relu" else C


def arch_loss(variant: str, p: dict[str, torch.Tensor], l1: float, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Loss of each instance, ``(instances,)``: squared error on the inputs ``rows`` plus ``l1`` times the L1 of the codes.

    ``rows`` (``(B,)`` indices of basis inputs) defaults to all ``n``; the error of ``B < n`` rows is
    scaled by ``n / B``. The L1 term is on the codes of all ``n`` inputs (for the tied
    model, on ``W``; for ``untied``, half on ``W`` and half on ``D``). For ``tied_relu`` at ``l1 = 0`` this is :func:`polybook.models.reconstruction_loss`.

    >>> W = torch.tensor([[[1.0], [-1.0]]])  # the benign opposite-sign collision
    >>> float(arch_loss("tied_relu", {"W": W}, 0.0)), round(float(arch_loss("gelu", {"W": W}, 0.0)), 4)
    (0.0, 0.1007)

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    C, D = _code_and_decoder(variant, p)
    n = C.shape[-2]
    Cr = C if rows is None else C[:, rows]  # (instances, B, m)
    H = torch.relu(Cr) if variant == "hidden_relu" else Cr
    P = H @ D.transpose(-1, -2)  # (instances, B, n)
    if "b" in p:
        P = P + p["b"]
    Y = torch.nn.functional.gelu(P) if variant == "gelu" else torch.relu(P)
    eye = torch.eye(n, dtype=C.dtype)
    X = eye if rows is None else eye[rows]
    err = ((X - Y) ** 2).sum(dim=(-1, -2))
    if rows is not None:
        err = err * (n / len(rows))
    if "D" in p:
        return err + 0.5 * l1 * (C.abs().sum(dim=(-1, -2)) + D.abs().sum(dim=(-1, -2)))
    return err + l1 * C.abs().sum(dim=(-1, -2))


def train_variant(variant: str, W0: torch.Tensor, *, steps: int, lr: float = 1e-3, l1: float = 1e-3,
                  batch: int = 8, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Train ``variant`` from ``W0`` with AdamW (no weight decay, as :func:`polybook.train`), on one CPU thread.

    Returns the final parameters and the reconstruction loss per instance (full batch, no L1).

    >>> p, loss = train_variant("gelu", init_weights(2, 4, 8), steps=5, batch=2)
    >>> tuple(p["W"].shape), tuple(loss.shape)
    ((2, 4, 8), (2,))

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    check.choice("variant", variant, VARIANTS)
    check.integer("steps", steps)
    check.number("lr", lr, 0.0, strict=True)
    check.number("l1", l1)
    if W0.dim() != 3:
        raise ValueError(f"W0 must be (instances, n, m), got shape {tuple(W0.shape)}")
    check.integer("batch", batch, maximum=W0.shape[1])
    p = {k: v.requires_grad_(True) for k, v in init_params(variant, W0, seed).items()}
    opt = torch.optim.AdamW(list(p.values()), lr=lr, weight_decay=0.0, foreach=False)
    gen = torch.Generator().manual_seed(seed + 7)
    n = W0.shape[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t in range(steps):
            rows = torch.randint(0, n, (batch,), generator=gen) if variant == "minibatch" else None
            loss = arch_loss(variant, p, l1, rows).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (t + 1) % 500 == 0 or t + 1 == steps:
                finite(p["W"], f"{variant} W at step {t + 1}")
        with torch.no_grad():
            final = arch_loss(variant, p, 0.0)
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach() for k, v in p.items()}, final


def _arch_summary(variant: str, p: dict[str, torch.Tensor], loss: torch.Tensor) -> dict:
    H = hidden_codes(variant, p)
    signs = polysemantic_sign_pattern(H)
    out = {
        "polysemantic": polysemantic_neurons(H).tolist(),
        "by_mass": polysemantic_neurons_by_mass(H).tolist(),
        "same_sign": signs[:, 1].tolist(),
        "loss": [round(float(v), 6) for v in loss],
        "top_weight": [round(float(v), 4) for v in H.abs().amax(-1).median(-1).values],
    }
    if "D" in p:
        out["decoder"] = polysemantic_neurons(p["D"]).tolist()
    return out


@register(
    "architectures",
    "polysemantic neurons of the collisions setting with one architectural change at a time",
    book=ArchConfig(),
    paper=ArchConfig(n=64, m=256, instances=32),
)
def run_architectures(cfg: ArchConfig, device: torch.device, progress: bool = True) -> dict:
    """Per variant: band-rule and mass-rule counts per instance, same-sign shared neurons, losses.

    ``results``: ``n``, ``m``, ``variants``, and per variant (in that order) lists over instances:
    ``polysemantic``, ``by_mass``, ``same_sign``, ``loss``, ``top_weight`` (the median over
    features of each feature's largest hidden activation), ``decoder`` (``untied`` only: the band
    rule on the decoder); and the predictions ``predicted`` (``n^2/(4m)``) and ``predicted_exact``.
    Every variant trains on the CPU (the models are tiny).
    """
    W0 = init_weights(cfg.instances, cfg.n, cfg.m, seed=cfg.seed)
    per = {}
    for v in tqdm(cfg.variants, desc="architectures", disable=not progress, file=sys.stderr, leave=False):
        p, loss = train_variant(v, W0, steps=cfg.steps, lr=cfg.lr, l1=cfg.l1, batch=cfg.batch, seed=cfg.seed)
        per[v] = _arch_summary(v, p, loss)
    return {"n": cfg.n, "m": cfg.m, "variants": list(cfg.variants), "per_variant": per,
            "predicted": predicted_polysemantic(cfg.n, cfg.m),
            "predicted_exact": round(expected_polysemantic_exact(cfg.n, cfg.m), 6)}


def _config(cls, record: dict, name: str):
    if record.get("experiment") != name:
        raise ValueError(f"record must be a {name} result, got {record.get('experiment')!r}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})


def replay_architectures(record: dict, variants: Sequence[str] = ("tied_relu",), instances: int = 2) -> dict:
    """Re-train the first ``instances`` instances of ``variants`` of a stored ``architectures`` record.

    Returns ``{"stored": [...], "replayed": [...]}``, one list of band-rule counts per variant.
    """
    cfg = _config(ArchConfig, record, "architectures")
    W0 = init_weights(cfg.instances, cfg.n, cfg.m, seed=cfg.seed)[:instances]
    out: dict[str, list] = {"stored": [], "replayed": []}
    for v in variants:
        p, _ = train_variant(v, W0, steps=cfg.steps, lr=cfg.lr, l1=cfg.l1, batch=cfg.batch, seed=cfg.seed)
        out["stored"].append(record["results"]["per_variant"][v]["polysemantic"][:instances])
        out["replayed"].append(polysemantic_neurons(hidden_codes(v, p)).tolist())
    return out


def arch_rows(record: dict) -> list[dict]:
    """One row per variant: mean and s.e. of the band and mass counts, and the paired difference from ``tied_relu``.

    Keys: ``variant``, ``mean``, ``sem``, ``by_mass``, ``by_mass_sem``, ``same_sign``, ``loss``,
    ``top_weight``, ``diff`` and ``diff_sem`` (variant minus baseline, per instance, then mean and
    s.e.), ``z_exact`` (``(mean - exact) / sem``, with the s.e. floored at one count over the
    number of instances), and ``decoder`` (mean, or ``None``).

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """
    res = record.get("results", record)
    base = np.asarray(res["per_variant"]["tied_relu"]["polysemantic"], dtype=float)
    rows = []
    for v in res["variants"]:
        r = res["per_variant"][v]
        c = np.asarray(r["polysemantic"], dtype=float)
        k = c.size
        mass = np.asarray(r["by_mass"], dtype=float)
        d = c - base
        sem = float(c.std(ddof=1) / math.sqrt(k))
        rows.append({
            "variant": v, "mean": float(c.mean()), "sem": sem,
            "by_mass": float(mass.mean()), "by_mass_sem": float(mass.std(ddof=1) / math.sqrt(k)),
            "same_sign": float(np.mean(r["same_sign"])), "loss": float(np.mean(r["loss"])),
            "top_weight": float(np.median(r["top_weight"])),
            "diff": float(d.mean()), "diff_sem": float(d.std(ddof=1) / math.sqrt(k)),
            "z_exact": float((c.mean() - res["predicted_exact"]) / max(sem, 1.0 / k)),
            "decoder": float(np.mean(r["decoder"])) if "decoder" in r else None,
        })
    return rows


# --------------------------------------------------------------------------- sparse autoencoders


@dataclass(frozen=True)
class SAEConfig:
    """SAEs of several widths on synthetic activations with known ground-truth features.

    Each data set ``j`` has ``features[j]`` unit directions in ``d[j]`` dimensions (so
    ``features[j] > d[j]`` puts the data in superposition). ``widths`` are multiples of the number
    of features (``0.5`` is half as many latents as features). Each width trains ``seeds`` SAEs side
    by side on the same data (seed ``seed``); SAE ``s`` starts from its own draw (seed ``seed + 100 + s``).

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """

    features: tuple[int, ...] = (32, 64)
    d: tuple[int, ...] = (64, 32)
    p: float = 0.05
    samples: int = 8192
    widths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    seeds: int = 8
    steps: int = 3000
    batch: int = 256
    lr: float = 3e-3
    sae_l1: float = 0.03
    seed: int = 0

    def __post_init__(self) -> None:
        check.integers("features", self.features, minimum=2)
        check.integers("d", self.d, minimum=2)
        if len(self.d) != len(self.features):
            check.fail("d", self.d, f"a tuple as long as features ({len(self.features)} entries)")
        check.number("p", self.p, 0.0, strict=True, maximum=1.0)
        check.integer("samples", self.samples)
        if not isinstance(self.widths, tuple) or not self.widths:
            check.fail("widths", self.widths, "a non-empty tuple of positive multiples of features")
        for w in self.widths:
            check.number("widths", w, 0.0, strict=True, maximum=1024.0)
            if round(w * min(self.features)) < 1:
                check.fail("widths", w, f"at least 1/features = {1 / min(self.features):g}")
        check.integer("seeds", self.seeds, minimum=2)
        check.integer("steps", self.steps)
        check.integer("batch", self.batch, maximum=self.samples)
        check.number("lr", self.lr, 0.0, strict=True)
        check.number("sae_l1", self.sae_l1)
        check.seed("seed", self.seed)

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
    SAE); decoder columns renormalised to unit length after every Adam step. Returns the
    parameters ``We`` ``(seeds, width, d)``, ``be`` ``(seeds, 1, width)``, ``Wd`` ``(seeds, d, width)``,
    ``bd`` ``(seeds, 1, d)``.

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
    p = {k: v.requires_grad_(True) for k, v in _init_sae(width, x.shape[1], seeds).items()}
    opt = torch.optim.Adam(list(p.values()), lr=lr, foreach=False)
    gen = torch.Generator().manual_seed(seed + 11)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t in range(steps):
            xb = x[torch.randint(0, x.shape[0], (batch,), generator=gen)]  # (B, d)
            f = encode(p, xb)
            err = xb - (f @ p["Wd"].transpose(1, 2) + p["bd"])
            loss = (err.square().sum(-1).mean(-1) + sae_l1 * f.sum(-1).mean(-1)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                p["Wd"].div_(p["Wd"].norm(dim=1, keepdim=True).clamp_min(1e-8))
            if (t + 1) % 500 == 0 or t + 1 == steps:
                finite(p["We"], f"SAE encoder at step {t + 1}")
    finally:
        torch.set_num_threads(threads)
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


@register(
    "sae",
    "mixed SAE latents against width, on synthetic activations with known sparse features",
    book=SAEConfig(),
    paper=SAEConfig(features=(64, 128), d=(128, 64), seeds=16, steps=6000),
)
def run_sae(cfg: SAEConfig, device: torch.device, progress: bool = True) -> dict:
    """Per data set and width: mixed latents, dead latents, missed features, per SAE; pair overlap.

    ``results["datasets"]``: one entry per data set with ``features``, ``d``, ``latents`` (per
    width), ``cos_mean`` and ``cos_max`` (mean and largest ``|cos|`` between two dictionary
    directions), and per width lists over SAEs: ``mixed`` (latents responding to two or more
    features), ``dead`` (latents responding to none), ``missed`` (features no latent responds to),
    ``pairs`` (mixed feature pairs), ``pair_cos`` (mean ``|cos|`` of the mixed pairs, ``None``
    without any), ``mse`` (held-out squared error per sample); and per width ``overlap``
    (:func:`pair_overlap`), ``overlap_per_sae`` (:func:`pair_overlap_per_sae`) and ``chance`` (mixed
    pairs per SAE over all pairs). Runs on the CPU.
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
    return {
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
    cfg = _config(SAEConfig, record, "sae")
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


def sae_rows(record: dict, dataset: int = 0) -> list[dict]:
    """One row per width of data set ``dataset``: ``latents``, ``ratio`` (latents per feature), ``mean``
    and ``sem`` of mixed latents, ``dead``, ``missed``, ``mse`` (means), ``overlap``, ``chance``,
    ``overlap_sem`` (its standard error over SAEs, or ``None``), ``pair_cos`` (mean over SAEs with a
    mixed pair, or ``None``), ``zero`` (SAEs without a mixed
    latent), ``sae`` (SAEs per width) and ``reference`` (the birthday count ``C(n, 2)/w`` of pairs
    whose initial best latent is shared, were every such collision to survive).

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
        })
    return rows
