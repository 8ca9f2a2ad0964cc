"""Checkers for the book's exercises: your function against the package's own, on random cases.

Each chapter asks the reader to write a few key functions. ``check(name, fn)`` calls ``fn`` on a
fixed set of random cases (the same on every run, smallest first), calls the package's own
implementation on the same inputs, and prints its verdict: a pass, the first case where the two
differ with a hint, or that the exercise is not solved yet (the exercise cell still raises
``NotImplementedError``). It never raises, so a notebook with unsolved exercises runs to the end.

>>> from polybook import exercises as ex
>>> ex.check("expected_polysemantic", lambda n, m: n * n / (4 * m))  # doctest: +ELLIPSIS
✗ expected_polysemantic(n=1, m=1) returned 0.25, expected 0.
  Hint: a neuron misses every positive feature ...
>>> def todo(n, m):
...     raise NotImplementedError
>>> ex.check("expected_polysemantic", todo)
… expected_polysemantic: not solved yet. Write it in the exercise cell, run that cell, then run this one again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from . import beyond, cooccurrence, metrics, noise, prevention, regularisation, superposition, theory
from .train import sample_noise

__all__ = ["check"]

#: Relative and absolute tolerance for floating-point answers (float64 cases: only rounding differs).
RTOL, ATOL = 1e-6, 1e-9


@dataclass(frozen=True)
class Exercise:
    """One exercise: the package's answer, the cases it is checked on, and a hint for a wrong answer."""

    chapter: str  #: the notebook under ``book/`` that poses it
    reference: Callable  #: the package's implementation, called with the same keyword arguments
    cases: Callable[[np.random.Generator], Iterable[dict]]  #: keyword arguments, smallest first
    hint: str  #: printed with the first failing case
    compare: Callable | None = None  #: ``(got, expected, case) -> reason or None``; default: equal values


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``passed`` is True, False, or None when the exercise is not solved yet."""

    passed: bool | None
    message: str


# --------------------------------------------------------------------------- comparing answers


def _as_array(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _same(got, want, where: str = "") -> str | None:
    """``None`` when ``got`` equals ``want`` (floats within tolerance), else what differs (maybe ``""``)."""
    at = f" in {where}" if where else ""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"a {type(got).__name__} instead of a dict with keys {sorted(want)}"
        if set(got) != set(want):
            return f"keys {sorted(got)} instead of {sorted(want)}"
        for key in want:
            reason = _same(got[key], want[key], f"[{key!r}]")
            if reason is not None:
                return reason
        return None
    if isinstance(want, (list, tuple)) and not (want and isinstance(want[0], (float, int)) and not isinstance(want[0], bool)):
        if not isinstance(got, (list, tuple)):
            return f"a {type(got).__name__} instead of a {type(want).__name__}{at}"
        if len(got) != len(want):
            return f"{len(got)} items instead of {len(want)}{at}"
        for i, (g, w) in enumerate(zip(got, want)):
            if isinstance(w, tuple) and tuple(map(int, g)) == w:
                continue
            reason = _same(g, w, f"{where}[{i}]")
            if reason is not None:
                return reason
        return None
    g, w = _as_array(got), _as_array(want)
    if g.shape != w.shape:
        return f"shape {g.shape} instead of {w.shape}{at}"
    if w.dtype == bool or np.issubdtype(w.dtype, np.integer):
        bad = g != w
    else:
        try:
            bad = ~np.isclose(g.astype(np.float64), w, rtol=RTOL, atol=ATOL)
        except (TypeError, ValueError):
            return f"values of type {g.dtype} instead of numbers{at}"
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        if not idx:
            return at.strip()  # a single number: the message already shows both
        return f"{_show(g[idx])} instead of {_show(w[idx])} at index {list(idx)}{at}"
    return None


def _show(x) -> str:
    """A short, stable rendering of an argument or answer."""
    if isinstance(x, torch.Generator):
        return "torch.Generator(seed)"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_show(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (torch.Tensor, np.ndarray)):
        a = _as_array(x)
        kind = "tensor" if isinstance(x, torch.Tensor) else "array"
        if a.size > 12:
            return f"<{kind} of shape {tuple(a.shape)}>"
        if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
            return f"{kind}({a.astype(int).tolist()})"
        return f"{kind}({np.round(a.astype(np.float64), 4).tolist()})"
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    if isinstance(x, (list, tuple)) and len(x) > 6:
        return f"<{type(x).__name__} of {len(x)} items>"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(_show(v) for v in x)
        return f"[{inner}]" if isinstance(x, list) else f"({inner}{',' if len(x) == 1 else ''})"
    return repr(x)


def _call(fn: Callable, case: dict):
    """Call ``fn`` on fresh copies of the case, so neither side sees the other's in-place changes."""
    fresh = {}
    for k, v in case.items():
        if isinstance(v, torch.Tensor):
            v = v.clone()
        elif isinstance(v, np.ndarray):
            v = v.copy()
        elif isinstance(v, torch.Generator):
            v = torch.Generator().manual_seed(v.initial_seed())
        fresh[k] = v
    return fn(**fresh)


# --------------------------------------------------------------------------- the check


def verdict(name: str, fn: Callable) -> Verdict:
    """Check ``fn`` against exercise ``name`` and return the outcome (``check`` prints it)."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; the exercises are: {', '.join(sorted(EXERCISES))}")
    if not callable(fn):
        return Verdict(False, f"✗ {name}: expected a function, got {type(fn).__name__}.")
    todo = Verdict(None, f"… {name}: not solved yet. Write it in the exercise cell, run that cell, then run this one again.")
    ex = EXERCISES[name]
    cases = list(ex.cases(np.random.default_rng(sum(map(ord, name)))))
    compare = ex.compare or (lambda g, w, c: _same(g, w))
    for case in cases:
        shown = f"{name}({', '.join(f'{k}={_show(v)}' for k, v in case.items())})"
        try:
            got = _call(fn, case)
        except NotImplementedError:
            return todo
        except Exception as err:  # the reader's bug: name it and the case, without a traceback
            return Verdict(False, f"✗ {shown} raised {type(err).__name__}: {err}\n  Hint: {ex.hint}")
        if got is Ellipsis:
            return todo  # a stub whose body is still "..."
        want = _call(ex.reference, case)
        if got is None and want is not None:
            return Verdict(False, f"✗ {shown} returned None: is a return statement missing?\n  Hint: {ex.hint}")
        reason = compare(got, want, case)
        if reason is not None:
            detail = f": {reason}" if reason else ""
            return Verdict(False, f"✗ {shown} returned {_show(got)}, expected {_show(want)}{detail}.\n  Hint: {ex.hint}")
    return Verdict(True, f"✓ {name}: agrees with polybook on all {len(cases)} cases.")


def check(name: str, fn: Callable) -> None:
    """Check your function ``fn`` for exercise ``name`` and print the verdict.

    The cases are random but fixed, smallest first; the first case where ``fn`` and the package
    disagree is printed with a hint. An exercise cell that still raises ``NotImplementedError``
    prints "not solved yet" instead of a traceback.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    print(verdict(name, fn).message)


# --------------------------------------------------------------------------- random cases


def _normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape) * scale)


def _sizes(rng: np.random.Generator, count: int, n=(2, 8), m=(1, 6), instances=(1, 3)) -> list[tuple[int, int, int]]:
    """``count`` random ``(instances, n, m)``, the first ones smallest."""
    out = [(1, n[0], max(m[0], 2))]
    while len(out) < count:
        out.append((int(rng.integers(*instances, endpoint=True)), int(rng.integers(*n, endpoint=True)),
                    int(rng.integers(*m, endpoint=True))))
    return out


def _forward_cases(rng):
    for inst, n, m in _sizes(rng, 12, n=(2, 6), m=(1, 4)):
        for hidden_relu in (False, True):
            yield {"W": _normal(rng, inst, n, m), "b": _normal(rng, inst, n, scale=0.3),
                   "x": torch.from_numpy(rng.random((inst, 3, n))), "hidden_relu": hidden_relu}


def _superposition_cases(rng):
    yield {"W": torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)}
    for inst, n, m in _sizes(rng, 12, n=(2, 8), m=(1, 5)):
        yield {"W": _normal(rng, inst, n, m)}
    W = _normal(rng, 5, 3)
    W[2] = 0.0  # a feature the model does not represent: it has no direction
    yield {"W": W}


def _forces_cases(rng):
    yield {"W": torch.tensor([[0.6, 0.0, 0.3], [0.5, -0.4, 0.0]], dtype=torch.float64), "l1": 0.1}
    for inst, n, m in _sizes(rng, 12, n=(2, 6), m=(2, 6)):
        yield {"W": _normal(rng, inst, n, m, scale=0.5), "l1": float(rng.choice([0.0, 1e-3, 0.05]))}


def _affine_cases(rng):
    yield {"A": 1.0, "B": 0.0, "l2sq": 0.5, "dt": 0.1, "lam": 0.2}
    for _ in range(20):
        yield {"A": float(rng.uniform(0.5, 3)), "B": float(rng.uniform(0, 0.2)), "l2sq": float(rng.uniform(0, 1.5)),
               "dt": float(rng.choice([0.01, 0.1, 0.5])), "lam": float(rng.uniform(0.001, 0.1))}


def _rank_cases(rng):
    yield {"W_start": torch.tensor([[0.5, -0.9, 0.1]]), "W_end": torch.tensor([[1.0, 0.0, 0.0]])}
    for inst, n, m in _sizes(rng, 12, n=(1, 6), m=(2, 8)):
        W0 = _normal(rng, inst, n, m)
        W1 = W0 * torch.from_numpy(rng.random((inst, n, m)) ** 4)  # a random neuron tends to win
        yield {"W_start": W0, "W_end": W1}


def _collision_cases(rng):
    yield {"winners": np.array([[0, 0, 1]]), "positive": np.array([[True, False, True]]), "m": 2}
    yield {"winners": np.array([[1, 1, 1]]), "positive": np.array([[True, True, True]]), "m": 2}
    for _ in range(12):
        trials, n, m = int(rng.integers(1, 6)), int(rng.integers(2, 20)), int(rng.integers(1, 12))
        yield {"winners": rng.integers(0, m, (trials, n)), "positive": rng.random((trials, n)) < 0.5, "m": m}


def _expected_cases(rng):
    yield from ({"n": n, "m": m} for n, m in [(1, 1), (2, 1), (2, 2), (3, 5), (23, 365), (256, 256)])
    for _ in range(20):
        yield {"n": int(rng.integers(1, 300)), "m": int(rng.integers(1, 5000))}


def _band_cases(rng):
    yield {"W": torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])}
    yield {"W": torch.tensor([[0.8, 0.0], [0.0, 1.2], [-0.8, 1.2]])}  # the band's edges count
    values = torch.tensor([0.0, 0.1, 0.5, 0.79, 0.8, 0.95, 1.0, 1.2, 1.21, 1.5])
    for inst, n, m in _sizes(rng, 14, n=(2, 10), m=(1, 6)):
        pick = torch.from_numpy(rng.integers(0, len(values), (inst, n, m)))
        sign = torch.from_numpy(rng.choice([-1.0, 1.0], (inst, n, m))).float()
        yield {"W": values[pick] * sign}


def _noise_cases(rng):
    for kind in ("bernoulli", "uniform", "gaussian"):
        for sigma in (1.0, float(np.round(rng.uniform(0.05, 0.5), 3))):
            yield {"kind": kind, "sigma": sigma, "shape": (400, 1000), "generator": torch.Generator().manual_seed(7)}


def _moments_agree(got, want, case) -> str | None:
    """Compare the moments of two samples with the exact ones, at about five standard errors."""
    g = _as_array(got).astype(np.float64)
    if g.shape != tuple(case["shape"]):
        return f"shape {g.shape} instead of {tuple(case['shape'])}"
    sigma, exact = case["sigma"], noise.noise_moments(case["kind"], case["sigma"])
    mean, var = g.mean(), g.var()
    kurt = (g**4).mean() / max(var, 1e-300) ** 2 - 3
    # With N = 400,000 draws: s.e. of the mean sigma/sqrt(N) = 0.0016 sigma; of the variance at most
    # sigma^2 sqrt(2/N) = 0.0022 sigma^2; of the excess kurtosis at most about 0.016 (Gaussian).
    if abs(mean) > 0.01 * sigma:
        return f"sample mean {mean:.4g}, the noise must have mean 0"
    if abs(var - sigma**2) > 0.02 * sigma**2:
        return f"sample variance {var:.4g}, expected sigma^2 = {sigma ** 2:.4g}"
    if abs(kurt - exact["excess_kurtosis"]) > 0.1:
        return f"sample excess kurtosis {kurt:.3f}, expected {exact['excess_kurtosis']}"
    return None


def _cumulant_cases(rng):
    yield {"w": np.array([1.0, 0.0]), "kind": "bernoulli", "sigma": 1.0}
    yield {"w": np.array([0.5, 0.5, 0.5, 0.5]), "kind": "uniform", "sigma": 0.1}
    for kind in noise.FAMILIES:
        for _ in range(3):
            shape = (int(rng.integers(1, 4)), int(rng.integers(1, 8)))
            yield {"w": rng.standard_normal(shape), "kind": kind, "sigma": float(rng.uniform(0.05, 1))}


def _pair_loss_cases(rng):
    yield {"a": np.array([1.0, 1.0]), "b": np.array([-1.0, 0.0]), "q": 0.0}
    yield {"a": np.array([1.0, 1.0]), "b": np.array([-1.0, 0.0]), "q": 0.25}
    for _ in range(12):
        shape = (int(rng.integers(1, 6)),)
        yield {"a": rng.uniform(-1.5, 1.5, shape), "b": rng.uniform(-1.5, 1.5, shape), "q": float(rng.uniform(0, 1))}


def _balance_cases(rng):
    yield {"n": 32, "l1": 1e-3, "groups": 1}
    for _ in range(15):
        per, groups = int(rng.integers(2, 9)), int(rng.integers(1, 6))
        yield {"n": per * groups, "l1": float(rng.choice([1e-4, 1e-3, 3e-3])), "groups": groups}


def _width_cases(rng):
    yield {"n": 32, "target": 1.0, "per_feature": False}
    for _ in range(10):
        yield {"n": int(rng.integers(2, 80)), "target": float(np.round(rng.uniform(0.2, 3), 2)), "per_feature": False}
    for _ in range(6):
        yield {"n": int(rng.integers(2, 80)), "target": float(np.round(rng.uniform(0.02, 0.3), 3)), "per_feature": True}


def _uses_cases(rng):
    yield {"uses": torch.tensor([[[1, 0], [1, 0], [0, 1], [0, 1]]], dtype=torch.bool)}
    yield {"uses": torch.tensor([[[1, 1], [1, 1], [0, 0]]], dtype=torch.bool)}  # one pair on two neurons: once
    for inst, n, m in _sizes(rng, 12, n=(2, 9), m=(1, 6)):
        yield {"uses": torch.from_numpy(rng.random((inst, n, m)) < 0.25)}


def _sae_cases(rng):
    yield {"params": {"We": torch.tensor([[[1.0, 0.0], [0.7, 0.7]]]), "be": torch.zeros(1, 1, 2), "bd": torch.zeros(1, 1, 2)},
           "dictionary": torch.eye(2, dtype=torch.float32), "rel": 0.5, "floor": 0.1}
    for _ in range(10):
        seeds, width, d, features = (int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(2, 5)),
                                     int(rng.integers(2, 6)))
        params = {"We": _normal(rng, seeds, width, d), "be": _normal(rng, seeds, 1, width, scale=0.2),
                  "bd": _normal(rng, seeds, 1, d, scale=0.2)}
        yield {"params": params, "dictionary": _normal(rng, features, d), "rel": float(rng.choice([0.3, 0.5, 0.8])),
               "floor": float(rng.choice([0.05, 0.1, 0.3]))}


def _overlap_cases(rng):
    yield {"pairs": [{(0, 1)}, {(0, 1), (2, 3)}]}
    yield {"pairs": [set(), set()]}
    yield {"pairs": [{(0, 1)}, {(0, 1), (2, 3)}, set()]}
    for _ in range(10):
        seeds, n = int(rng.integers(2, 5)), int(rng.integers(3, 7))
        pool = [(i, j) for i in range(n) for j in range(i + 1, n)]
        yield {"pairs": [{pool[k] for k in np.flatnonzero(rng.random(len(pool)) < 0.3)} for _ in range(seeds)]}


def _pairs_agree(got, want, case) -> str | None:
    if not isinstance(got, (list, tuple)):
        return f"a {type(got).__name__} instead of a list with one list of pairs per instance"
    if len(got) != len(want):
        return f"{len(got)} instances instead of {len(want)}"
    for b, (g, w) in enumerate(zip(got, want)):
        try:
            g = [tuple(int(v) for v in p) for p in g]
        except (TypeError, ValueError):
            return f"instance {b} does not hold pairs of feature indices"
        if g != w:
            return f"instance {b}: {g} instead of {w} (sorted pairs i < j, each once)"
    return None


def _overlap_agree(got, want, case) -> str | None:
    if want is None or got is None:
        return None if got is want else "None exactly when no SAE mixes any pair"
    return _same(got, want)


EXERCISES: dict[str, Exercise] = {
    # Superposition
    "toy_forward": Exercise(
        "superposition", superposition.forward, _forward_cases,
        "h = x @ W (one row of h per input), then x' = ReLU(h @ W^T + b); with hidden_relu=True apply "
        "ReLU to h first. The bias is added before the output ReLU."),
    "superposition_score": Exercise(
        "superposition", lambda W: superposition.superposition(W), _superposition_cases,
        "divide each row W_i by its norm (a zero row stays zero: clamp the norm, e.g. at 1e-8), take its dot "
        "products with every W_j, square them and add them up over j != i (leave out j = i)."),
    # Regularisation
    "three_forces": Exercise(
        "regularisation", regularisation.forces, _forces_cases,
        "benefit 4 (1 - ||W_i||^2) W_i; interference -4 sum over j != i of ReLU(W_i . W_j) W_j (the ReLU "
        "matters: only positive overlaps push); regularisation -l1 sign(W_i). Their sum is minus the gradient."),
    "affine_step": Exercise(
        "regularisation", regularisation.affine_step, _affine_cases,
        "one Euler step multiplies every alive weight by 1 + dt (1 - ||w||^2) and subtracts dt lam, so "
        "A <- A (1 + dt (1 - l2sq)) and then B <- B + dt lam / A with the new A."),
    "initial_rank": Exercise(
        "regularisation", metrics.winner_initial_rank, _rank_cases,
        "find each feature's final winner (the largest |W_end|), then count the neurons whose |W_start| is "
        "strictly larger than the winner's own |W_start|: 0 means the initial leader won."),
    # Collisions
    "count_polysemantic": Exercise(
        "collisions", lambda winners, positive, m: theory.collision_counts(winners, positive, m)["polysemantic"],
        _collision_cases,
        "a neuron is polysemantic when at least one positive AND at least one negative feature picked it; "
        "two features of the same sign on one neuron do not count. Return one count per trial (row)."),
    "expected_polysemantic": Exercise(
        "collisions", theory.expected_polysemantic_exact, _expected_cases,
        "a neuron misses every positive feature with probability (1 - 1/(2m))^n, likewise the negative "
        "ones, and both with (1 - 1/m)^n; the expected count is m times the probability of missing neither."),
    "band_polysemantic": Exercise(
        "collisions", metrics.polysemantic_neurons, _band_cases,
        "feature i uses neuron k when 0.8 <= |W_ik| <= 1.2 (both edges included, and the sign does not "
        "matter); count, per instance, the neurons used by two or more features."),
    # Noise
    "sample_noise": Exercise(
        "noise", lambda kind, sigma, shape, generator: sample_noise(kind, sigma, shape, generator, dtype=torch.float64),
        _noise_cases,
        "every kind has mean 0 and standard deviation sigma: Bernoulli is +-sigma with equal odds; uniform is "
        "on [-sqrt(3) sigma, sqrt(3) sigma]; Gaussian is sigma times a standard normal.",
        compare=_moments_agree),
    "projection_cumulants": Exercise(
        "noise", noise.projection_cumulants, _cumulant_cases,
        "cumulants of independent terms add and the r-th cumulant of c X is c^r times that of X: variance "
        "sigma^2 sum w^2, fourth cumulant kappa sigma^4 sum w^4 with kappa = EXCESS_KURTOSIS[kind]; the "
        "excess kurtosis of Z is the fourth cumulant over the variance squared. Sum over the last axis."),
    # Co-occurrence
    "pair_loss": Exercise(
        "cooccurrence", lambda a, b, q: cooccurrence.two_feature_loss(a, b, q), _pair_loss_cases,
        "singletons weigh 1 - q each: (1 - a^2)^2 + (1 - b^2)^2 plus the interference 2 ReLU(ab)^2; the pair "
        "input e_1 + e_2 has activation a + b and weighs 2q: (1 - ReLU(a(a+b)))^2 + (1 - ReLU(b(a+b)))^2."),
    "balance_level": Exercise(
        "cooccurrence", cooccurrence.balance_level, _balance_cases,
        "q_l1 = l1 x (pairs that co-occur) / n. With groups equal blocks of n/groups features, the pairs "
        "that co-occur are the pairs inside a block: groups x C(n/groups, 2)."),
    # Prevention
    "width_needed": Exercise(
        "prevention", prevention.width_needed, _width_cases,
        "search m >= n for the smallest width whose exact expectation (pb.expected_polysemantic_exact) is "
        "strictly below the goal (target, or target x n with per_feature=True); n^2/(4 target) is only an "
        "approximation."),
    "shared_pairs": Exercise(
        "prevention", prevention.pairs_sharing_a_neuron, _uses_cases,
        "for each instance and each neuron used by two or more features, every pair (i, j) with i < j of "
        "those features; a pair that shares two neurons is listed once; sort each instance's list.",
        compare=_pairs_agree),
    # Beyond
    "sae_responses": Exercise(
        "beyond", beyond.sae_responses, _sae_cases,
        "encode each dictionary vector d_f as ReLU((d_f - bd) We^T + be); latent a responds to f when its "
        "activation is at least rel times latent a's largest activation over all features, and at least floor."),
    "pair_overlap": Exercise(
        "beyond", beyond.pair_overlap, _overlap_cases,
        "for every ordered pair of different SAEs (i, j) where SAE i has mixed pairs, take the share of i's "
        "pairs that j mixes too; return the mean of those shares, or None when there is none.",
        compare=_overlap_agree),
}


def chapter_exercises(chapter: str) -> list[str]:
    """Names of the exercises posed in ``chapter`` (a notebook stem such as ``"collisions"``)."""
    return [name for name, ex in EXERCISES.items() if ex.chapter == chapter]
