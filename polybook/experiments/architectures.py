"""Experiment ``architectures``: the collisions setting with one architectural change at a time.

The setting is the one of ``collisions`` (``n`` features, ``m`` neurons, basis inputs, AdamW, L1
``l1`` on the code). A model maps an input ``x`` (a row, ``(n,)``) to

    code  c = x W (x W U for ``second_layer``),       hidden  h = act_h(c),
    output y = act_o(h D^T + b),

with ``D = W`` (tied; ``D = W U`` for ``second_layer``) or a separate decoder ``D`` (``untied``),
``act_h`` the identity or a ReLU, ``act_o`` a ReLU or a GELU and ``b`` an output bias (zero unless
``biases``). ``VARIANTS`` lists the changes; every variant starts from the same ``W`` (the
untied decoder from a second draw, ``U`` at the identity), so comparisons are paired. Each variant
trains until it has *finished* by the book's rule (:data:`FINISHED`: at least that share of one-hot
encodings, one weight above :data:`ONE_HOT_TOL`, averaged over the models), in rounds of ``steps``
up to ``max_steps``; a variant still short of it then is stored as unfinished. The
chapter's account of the variants is :mod:`polybook.beyond`; this file holds the models, their
training loop, the experiment's config, run, replay and table rows.
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
from ..metrics import one_hot_share, polysemantic_neurons, polysemantic_neurons_by_mass, polysemantic_sign_pattern
from ..models import init_weights
from ..theory import expected_polysemantic_exact, predicted_polysemantic
from ..train import make_optimizer, one_cpu_thread, run_steps, seeded_generator
from .config import ExperimentConfig, param
from .registry import Experiment

__all__ = ["FINISHED", "ONE_HOT_TOL", "ArchConfig", "arch_loss", "arch_rows"]

#: The book's finish rule (the one of chapter prevention): a variant has finished training when its
#: models' mean share of one-hot encodings (:func:`polybook.metrics.one_hot_share` with tolerance
#: :data:`ONE_HOT_TOL`, on the hidden codes) is at least this. An unfinished variant is never evidence.
#: Introduced in the book: :doc:`/book/beyond` (chapter beyond).
FINISHED = 0.95
#: A hidden activation above this (in magnitude) counts against an encoding being one-hot.
#: Introduced in the book: :doc:`/book/beyond` (chapter beyond).
ONE_HOT_TOL = 0.1


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


@dataclasses.dataclass(frozen=True)
class ArchConfig(ExperimentConfig):
    """The collisions setting with each of ``variants`` (names from ``VARIANTS``).

    Introduced in the book: :doc:`/book/beyond` (chapter beyond).
    """

    n: int = param(32, minimum=2)
    m: int = 128
    instances: int = param(16, minimum=2)
    steps: int = 7500
    max_steps: int = 90000
    lr: float = 1e-3
    l1: float = 1e-3
    batch: int = 8
    variants: tuple[str, ...] = param(tuple(VARIANTS), choices=tuple(VARIANTS), unique=True)
    seed: int = 2000

    def check(self) -> None:
        """A minibatch holds at most ``n`` basis inputs; ``max_steps`` is at least ``steps``."""
        check.integer("batch", self.batch, maximum=self.n)
        check.integer("max_steps", self.max_steps, minimum=self.steps)

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory of one variant: weights, gradients, optimiser state and products (float32)."""
        return 4 * self.instances * (16 * self.n * self.m + 4 * self.m**2 + 8 * self.n**2)

    def flops(self) -> float:
        """Rough floating-point operations: about 12 n^2 m per instance, step and variant (at ``max_steps``)."""
        return float(12 * self.n**2 * self.m * self.instances * self.max_steps * len(self.variants))


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


def _trainer(variant: str, W0: torch.Tensor, *, lr: float, l1: float, batch: int, seed: int):
    """The parameters of ``variant`` from ``W0`` and a function ``advance(k)`` that trains them ``k`` more steps.

    The optimiser state and the minibatch stream carry over between calls, so ``advance(a)`` then
    ``advance(b)`` trains exactly as ``advance(a + b)``.
    """
    check.choice("variant", variant, VARIANTS)
    check.number("lr", lr, 0.0, strict=True)
    check.number("l1", l1)
    if W0.dim() != 3:
        raise ValueError(f"W0 must be (instances, n, m), got shape {tuple(W0.shape)}")
    check.integer("batch", batch, maximum=W0.shape[1])
    cpu = torch.device("cpu")
    p = {k: v.requires_grad_(True) for k, v in init_params(variant, W0, seed).items()}
    opt = make_optimizer(list(p.values()), "adamw", lr, 0.0, fused=False)
    gen = seeded_generator(seed, cpu, offset=7)
    n = W0.shape[1]

    def step(t: int) -> torch.Tensor:
        rows = torch.randint(0, n, (batch,), generator=gen) if variant == "minibatch" else None
        loss = arch_loss(variant, p, l1, rows)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        return loss.detach()

    def advance(k: int) -> None:
        run_steps(step, k, device=cpu, watch=p.values, instances=W0.shape[0], autograd=True,
                  settings=types.SimpleNamespace(lr=lr, l1=l1), desc=f"architectures {variant}")

    return p, advance


def _final(variant: str, p: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    with torch.no_grad(), one_cpu_thread(torch.device("cpu")):
        final = arch_loss(variant, p, 0.0)
    return {k: v.detach() for k, v in p.items()}, final


def train_variant(variant: str, W0: torch.Tensor, *, steps: int, lr: float = 1e-3, l1: float = 1e-3,
                  batch: int = 8, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Train ``variant`` from ``W0`` with AdamW (no weight decay, as :func:`polybook.train`), on one CPU thread.

    Returns the final parameters and the reconstruction loss per instance (full batch, no L1).
    Raises :class:`polybook.train.Diverged` when the loss or a parameter becomes NaN or infinite.

    >>> p, loss = train_variant("gelu", init_weights(2, 4, 8), steps=5, batch=2)
    >>> tuple(p["W"].shape), tuple(loss.shape)
    ((2, 4, 8), (2,))
    """
    check.integer("steps", steps)
    p, advance = _trainer(variant, W0, lr=lr, l1=l1, batch=batch, seed=seed)
    advance(steps)
    return _final(variant, p)


def finished_share(variant: str, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Share of one-hot hidden codes per model, ``(instances,)``: the quantity of the finish rule :data:`FINISHED`."""
    return one_hot_share(hidden_codes(variant, p).detach(), tol=ONE_HOT_TOL)


def train_until_finished(variant: str, W0: torch.Tensor, *, steps: int, max_steps: int, lr: float = 1e-3,
                         l1: float = 1e-3, batch: int = 8,
                         seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
    """Train ``variant`` in rounds of ``steps`` until it has finished (:data:`FINISHED`) or ``max_steps`` have run.

    Returns the parameters, the reconstruction loss per instance and the number of steps trained;
    :func:`train_variant` with that many steps trains the same models.

    >>> _, _, done = train_until_finished("tied_relu", init_weights(2, 4, 8), steps=5, max_steps=10, batch=2)
    >>> done in (5, 10)
    True
    """
    check.integer("steps", steps)
    check.integer("max_steps", max_steps, minimum=steps)
    p, advance = _trainer(variant, W0, lr=lr, l1=l1, batch=batch, seed=seed)
    done = 0
    while done < max_steps:
        k = min(steps, max_steps - done)
        advance(k)
        done += k
        if float(finished_share(variant, p).mean()) >= FINISHED:
            break
    params, final = _final(variant, p)
    return params, final, done


def _arch_summary(variant: str, p: dict[str, torch.Tensor], loss: torch.Tensor, steps: int) -> dict:
    H = hidden_codes(variant, p)
    signs = polysemantic_sign_pattern(H)
    out = {
        "steps": steps,
        "one_hot": [round(float(v), 4) for v in finished_share(variant, p)],
        "polysemantic": polysemantic_neurons(H).tolist(),
        "by_mass": polysemantic_neurons_by_mass(H).tolist(),
        "same_sign": signs[:, 1].tolist(),
        "loss": [round(float(v), 6) for v in loss],
        "top_weight": [round(float(v), 4) for v in H.abs().amax(-1).median(-1).values],
    }
    if "D" in p:
        out["decoder"] = polysemantic_neurons(p["D"]).tolist()
    return out


def run_architectures(cfg: ArchConfig, device: torch.device, progress: bool = True) -> dict:
    """Per variant: band-rule and mass-rule counts per instance, same-sign shared neurons, losses.

    ``results``: ``n``, ``m``, ``variants``, and per variant (in that order) lists over instances:
    ``polysemantic``, ``by_mass``, ``same_sign``, ``loss``, ``top_weight`` (the median over
    features of each feature's largest hidden activation), ``one_hot`` (the share of one-hot hidden
    codes, the finish rule's quantity), ``decoder`` (``untied`` only: the band
    rule on the decoder), and ``steps`` (how many steps the variant trained: :func:`train_until_finished`
    from ``steps`` up to ``max_steps``); and the predictions ``predicted`` (``n^2/(4m)``) and ``predicted_exact``.
    Every variant trains on the CPU (the models are tiny).
    """
    W0 = init_weights(cfg.instances, cfg.n, cfg.m, seed=cfg.seed)
    per = {}
    for v in tqdm(cfg.variants, desc="architectures", disable=not progress, file=sys.stderr, leave=False):
        p, loss, done = train_until_finished(v, W0, steps=cfg.steps, max_steps=cfg.max_steps, lr=cfg.lr,
                                             l1=cfg.l1, batch=cfg.batch, seed=cfg.seed)
        per[v] = _arch_summary(v, p, loss, done)
    return {"n": cfg.n, "m": cfg.m, "variants": list(cfg.variants), "per_variant": per,
            "predicted": predicted_polysemantic(cfg.n, cfg.m),
            "predicted_exact": round(expected_polysemantic_exact(cfg.n, cfg.m), 6)}


def _stored_config(record: dict) -> ArchConfig:
    """The config of a stored ``architectures`` record (``ValueError`` for another experiment's)."""
    if record.get("experiment") != "architectures":
        raise ValueError(f"record must be an architectures result, got {record.get('experiment')!r}")
    return ArchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})


def replay_architectures(record: dict, variants: Sequence[str] = ("tied_relu",), instances: int = 2) -> dict:
    """Re-train the first ``instances`` instances of ``variants`` of a stored ``architectures`` record.

    Each variant trains for the steps stored with it. Returns ``{"stored": [...], "replayed": [...]}``, one list of band-rule counts per variant.
    """
    cfg = _stored_config(record)
    W0 = init_weights(cfg.instances, cfg.n, cfg.m, seed=cfg.seed)[:instances]
    out: dict[str, list] = {"stored": [], "replayed": []}
    for v in variants:
        steps = record["results"]["per_variant"][v].get("steps", cfg.steps)
        p, _ = train_variant(v, W0, steps=steps, lr=cfg.lr, l1=cfg.l1, batch=cfg.batch, seed=cfg.seed)
        out["stored"].append(record["results"]["per_variant"][v]["polysemantic"][:instances])
        out["replayed"].append(polysemantic_neurons(hidden_codes(v, p)).tolist())
    return out


def arch_rows(record: dict) -> list[dict]:
    """One row per variant: mean and s.e. of the band and mass counts, and the paired difference from ``tied_relu``.

    Keys: ``variant``, ``mean``, ``sem``, ``by_mass``, ``by_mass_sem``, ``same_sign``, ``loss``,
    ``top_weight``, ``diff`` and ``diff_sem`` (variant minus baseline, per instance, then mean and
    s.e.), ``z_exact`` (``(mean - exact) / sem``, with the s.e. floored at one count over the
    number of instances), ``decoder`` (mean, or ``None``), ``one_hot`` (mean share of one-hot
    codes, ``None`` in records without it), ``finished`` (the finish rule :data:`FINISHED` on it;
    ``None`` without it) and ``steps`` (steps trained, ``None`` without it).

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
            "one_hot": float(np.mean(r["one_hot"])) if "one_hot" in r else None,
            "finished": bool(np.mean(r["one_hot"]) >= FINISHED) if "one_hot" in r else None,
            "steps": r.get("steps"),
        })
    return rows


EXPERIMENT = Experiment(
    "architectures",
    "polysemantic neurons of the collisions setting with one architectural change at a time",
    ArchConfig,
    book=ArchConfig(),
    paper=ArchConfig(n=64, m=256, instances=32),
    run=run_architectures,
    replay=replay_architectures,
    rows=arch_rows,
    stored=("architectures",),
)
