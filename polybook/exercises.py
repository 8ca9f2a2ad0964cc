"""Checkers for the book's exercises: your function against the package's own, on random cases.

Each chapter asks the reader to write a few key functions. ``check(name, fn)`` calls ``fn`` on a
fixed set of random cases (the same on every run, smallest first), calls the package's own
implementation on the same inputs, and prints its verdict: a pass, the first case where the two
differ with a hint, or that the exercise is not solved yet (the exercise cell still raises
``NotImplementedError``). It never raises, so a notebook with unsolved exercises runs to the end.

Your function and the package's each get their own copy of every case, so a function that changes
its arguments in place is compared with the package's answer on the case as it was. An answer is
numbers of the right shape (a float, an array or a tensor; complex numbers or Python objects are
refused, with a message saying what was expected), and a call that takes more than ``timeout``
seconds (10 by default) is stopped and reported, where the platform allows it (see ``check``).

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

import copy
import math
import numbers
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from . import beyond, cooccurrence, metrics, noise, optimisers, prevention, regularisation, superposition, theory
from .train import sample_noise

__all__ = ["check"]

#: Relative and absolute tolerance for floating-point answers (float64 cases: only rounding differs).
RTOL, ATOL = 1e-6, 1e-9
#: Seconds one call of the reader's function may take before the check stops it (``check(timeout=...)``).
TIMEOUT = 10.0
#: The longest rendering of one value in a message; longer ones are cut, saying how long they were.
SHOWN_CHARS = 200


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
        x = x.detach().cpu()
        if x.is_conj() or x.is_neg():
            x = x.resolve_conj().resolve_neg()
        try:
            return x.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy has not: compare their values as float64
            if x.is_floating_point():
                return x.to(torch.float64).numpy()
            if x.is_complex():
                return x.to(torch.complex128).numpy()
            raise
    return np.asarray(x)


def _short(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text``, cut to ``limit`` characters with its full length added when it is longer."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


#: What an array's values are, by numpy's dtype kind, for those that are not real numbers.
_NOT_NUMBERS = {"c": "complex numbers", "O": "Python objects (dtype object)", "U": "text", "S": "bytes",
                "M": "dates", "m": "time spans", "V": "raw records"}


def _describe(x) -> str:
    """What ``x`` is, for "expected ..., got ..." (its kind and shape, never its values)."""
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    if isinstance(x, (list, tuple, set, dict)):
        return f"a {type(x).__name__} of {len(x)} item{'' if len(x) == 1 else 's'}"
    if isinstance(x, int) and not isinstance(x, bool) and not -(2**63) <= x < 2**64:
        return "an int too large for an array of numbers"
    if x is None:
        return "None"
    kind = type(x).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _expected(want) -> str:
    """What the package's answer is, for "expected ..., got ..."."""
    if isinstance(want, dict):
        return f"a dict with keys {_show(sorted(want))}"
    if isinstance(want, (list, tuple)) and not _numeric_sequence(want):
        return f"a {type(want).__name__} of {len(want)} items"
    shape = np.shape(_as_array(want))
    return "real numbers of shape " + str(shape) if shape else "a real number"


def _numeric_sequence(want) -> bool:
    return bool(want) and isinstance(want[0], (float, int)) and not isinstance(want[0], bool)


def _numbers(got, want, at: str = "") -> tuple[np.ndarray | None, str | None]:
    """``got`` as an array of real numbers, or ``None`` and why it is not one ("expected ..., got ...")."""
    if isinstance(got, (str, bytes, dict, set, frozenset)) or got is None:
        return None, f"expected {_expected(want)}, got {_describe(got)}{at}"
    try:
        g = _as_array(got)
    except (TypeError, ValueError, RuntimeError, OverflowError):  # ragged lists, tensors numpy cannot hold
        return None, f"expected {_expected(want)}, got {_describe(got)} that is not an array of numbers{at}"
    if g.dtype.kind not in "biuf":
        if g.dtype.kind == "c":
            return None, f"expected real numbers, got complex numbers{at}"
        if g.dtype.kind == "O" and not isinstance(got, (np.ndarray, list, tuple)):
            return None, f"expected {_expected(want)}, got {_describe(got)}{at}"
        return None, f"expected {_expected(want)}, got {_NOT_NUMBERS.get(g.dtype.kind, str(g.dtype))}{at}"
    return g, None


def _as_pair(x) -> tuple | None:
    try:
        return tuple(map(int, x))
    except (TypeError, ValueError, OverflowError):
        return None


def _same(got, want, where: str = "") -> str | None:
    """``None`` when ``got`` equals ``want`` (floats within tolerance), else what differs (maybe ``""``)."""
    at = f" in {where}" if where else ""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"expected {_expected(want)}, got {_describe(got)}{at}"
        if set(got) != set(want):
            try:
                keys = sorted(got)
            except TypeError:  # keys of several types
                keys = list(got)
            return f"expected keys {_show(sorted(want))}, got keys {_show(keys)}{at}"
        for key in want:
            reason = _same(got[key], want[key], f"[{key!r}]")
            if reason is not None:
                return reason
        return None
    if isinstance(want, (list, tuple)) and not _numeric_sequence(want):
        if not isinstance(got, (list, tuple)):
            return f"expected {_expected(want)}, got {_describe(got)}{at}"
        if len(got) != len(want):
            return f"expected {len(want)} items, got {len(got)}{at}"
        for i, (g, w) in enumerate(zip(got, want)):
            if isinstance(w, tuple) and _as_pair(g) == w:
                continue
            reason = _same(g, w, f"{where}[{i}]")
            if reason is not None:
                return reason
        return None
    g, reason = _numbers(got, want, at)
    if reason is not None:
        return reason
    w = _as_array(want)
    if g.shape != w.shape:
        return f"expected shape {w.shape}, got shape {g.shape}{at}"
    if w.dtype == bool or np.issubdtype(w.dtype, np.integer):
        bad = g != w
    else:
        bad = ~np.isclose(g.astype(np.float64), w, rtol=RTOL, atol=ATOL)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        if not idx:
            return at.strip()  # a single number: the message already shows both
        return f"{_show(g[idx])} instead of {_show(w[idx])} at index {list(idx)}{at}"
    return None


def _show(x) -> str:
    """A short, stable rendering of an argument or answer (at most about ``SHOWN_CHARS`` characters)."""
    try:
        return _short(_render(x))
    except Exception:  # an object whose repr fails: name its type
        return f"<{type(x).__name__} object>"


def _render(x) -> str:
    if isinstance(x, torch.Generator):
        return "torch.Generator(seed)"
    if isinstance(x, dict):
        if len(x) > 12:
            return f"<dict of {len(x)} items>"
        return "{" + ", ".join(f"{_show(k)}: {_show(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (torch.Tensor, np.ndarray)):
        a = _as_array(x)
        kind = "tensor" if isinstance(x, torch.Tensor) else "array"
        if a.size > 12:
            return f"<{kind} of shape {tuple(a.shape)}>"
        if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
            return f"{kind}({a.astype(int).tolist()})"
        if a.dtype.kind == "c":
            return f"{kind}({np.round(a.astype(np.complex128), 4).tolist()})"
        if a.dtype.kind != "f":
            return f"<{kind} of shape {tuple(a.shape)} and dtype {a.dtype}>"
        return f"{kind}({np.round(a.astype(np.float64), 4).tolist()})"
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    if isinstance(x, (np.bool_, np.integer)):
        return repr(x.item())
    if isinstance(x, (list, tuple)) and len(x) > 6:
        return f"<{type(x).__name__} of {len(x)} items>"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(_show(v) for v in x)
        return f"[{inner}]" if isinstance(x, list) else f"({inner}{',' if len(x) == 1 else ''})"
    if isinstance(x, int) and not isinstance(x, bool) and abs(x) >= 10**SHOWN_CHARS:
        return f"<int of {x.bit_length()} bits>"  # too long to print (Python refuses beyond 4300 digits)
    return repr(x)


def _fresh(case: dict) -> dict:
    """A deep copy of ``case``: tensors and arrays cloned, containers copied, generators at the same state."""
    memo: dict = {}
    for v in case.values():
        if isinstance(v, torch.Generator):
            g = torch.Generator(device=v.device)
            g.set_state(v.get_state())
            memo[id(v)] = g
    return copy.deepcopy(case, memo)


class _TimedOut(BaseException):
    """Raised inside the reader's function when its time is up (not an ``Exception``: ``except Exception`` lets it by)."""


def _alarm_usable() -> bool:
    """Whether a SIGALRM time limit can be set here: a platform with ``setitimer``, in the main thread."""
    return (hasattr(signal, "setitimer") and hasattr(signal, "SIGALRM")
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGALRM) is not None)  # None: a handler set outside Python, not ours to replace


def _call_limited(fn: Callable, kwargs: dict, seconds: float | None):
    """``(fn(**kwargs), False)``, or ``(None, True)`` when the call took more than ``seconds``.

    The limit is an ITIMER_REAL alarm: it needs the main thread and a platform with
    ``signal.setitimer``; elsewhere, or with ``seconds=None``, the call runs without one. Whatever
    alarm was set before (handler and time left) is put back afterwards.
    """
    if seconds is None or not _alarm_usable():
        return fn(**kwargs), False
    state = {"armed": True, "fired": False}

    def on_alarm(signum, frame):
        if state["armed"]:
            state["fired"] = True
            raise _TimedOut

    previous = signal.signal(signal.SIGALRM, on_alarm)
    start = time.monotonic()
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            try:
                result = fn(**kwargs)
            finally:
                state["armed"] = False
        except _TimedOut:
            return None, True
        return (None, True) if state["fired"] else (result, False)  # it caught the interruption, then returned
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay > 0:  # someone else's alarm: re-arm it with the time it had left (at once if that ran out)
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - start), 1e-6), old_interval)


# --------------------------------------------------------------------------- the check


def verdict(name: str, fn: Callable, *, timeout: float | None = TIMEOUT) -> Verdict:
    """Check ``fn`` against exercise ``name`` and return the outcome (``check`` prints it)."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; the exercises are: {', '.join(sorted(EXERCISES))}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                or not 0 < timeout < math.inf):
        raise ValueError(f"timeout must be a number of seconds above 0, or None for no limit; got {timeout!r}")
    if not callable(fn):
        return Verdict(False, f"✗ {name}: expected a function, got {type(fn).__name__}.")
    todo = Verdict(None, f"… {name}: not solved yet. Write it in the exercise cell, run that cell, then run this one again.")
    ex = EXERCISES[name]
    cases = list(ex.cases(np.random.default_rng(sum(map(ord, name)))))
    compare = ex.compare or (lambda g, w, c: _same(g, w))
    for number, case in enumerate(cases, 1):
        shown = f"{name}({', '.join(f'{k}={_show(v)}' for k, v in case.items())})"
        try:
            got, late = _call_limited(fn, _fresh(case), timeout)
        except NotImplementedError:
            return todo
        except Exception as err:  # the reader's bug: name it and the case, without a traceback
            return Verdict(False, f"✗ {shown} raised {type(err).__name__}: {_error_text(err)}\n  Hint: {ex.hint}")
        if late:
            return Verdict(False, f"✗ {shown}: your function took more than {timeout:g} s on case {number} of "
                                  f"{len(cases)}; does a loop never end? If it is only slow, allow it longer: "
                                  f'ex.check("{name}", {name}, timeout=60).\n  Hint: {ex.hint}')
        if got is Ellipsis:
            return todo  # a stub whose body is still "..."
        want = ex.reference(**_fresh(case))
        if got is None and want is not None:
            return Verdict(False, f"✗ {shown} returned None: is a return statement missing?\n  Hint: {ex.hint}")
        try:
            reason = compare(got, want, case)
        except Exception as err:  # an answer of a kind no comparison foresaw: say what it is, not where it broke
            reason = f"expected {_expected(want)}, got {_describe(got)} ({type(err).__name__}: {_error_text(err)})"
        if reason is not None:
            detail = f": {_short(reason, 2 * SHOWN_CHARS)}" if reason else ""
            return Verdict(False, f"✗ {shown} returned {_show(got)}, expected {_show(want)}{detail}.\n  Hint: {ex.hint}")
    return Verdict(True, f"✓ {name}: agrees with polybook on all {len(cases)} cases.")


def _error_text(err: BaseException) -> str:
    try:
        return _short(str(err))
    except Exception:
        return "(its message could not be printed)"


def check(name: str, fn: Callable, *, timeout: float | None = TIMEOUT) -> None:
    """Check your function ``fn`` for exercise ``name`` and print the verdict.

    The cases are random but fixed, smallest first; the first case where ``fn`` and the package
    disagree is printed with a hint. An exercise cell that still raises ``NotImplementedError``
    prints "not solved yet" instead of a traceback. ``fn`` gets its own copy of each case, so
    changing its arguments in place does not change what the package's answer is computed on.

    Each call of ``fn`` may take ``timeout`` seconds (10 by default; ``None`` for no limit); a
    longer one is stopped and reported, so a loop that never ends does not hang the notebook. The
    limit is a SIGALRM timer: it applies when ``check`` runs in the main thread on a platform with
    ``signal.setitimer`` (Linux and macOS, so Jupyter and Colab, which run cells in the main
    thread); on Windows or from another thread ``fn`` runs without a limit. An alarm set before
    the check is put back afterwards.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    print(verdict(name, fn, timeout=timeout).message)


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


def _leader_cases(rng):
    yield {"W0": torch.tensor([[[0.9, 0.1], [0.2, 0.3]]]), "W": torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])}
    yield {"W0": torch.tensor([[[-0.9, 0.5]]]), "W": torch.tensor([[[-1.0, 0.0]]])}  # magnitudes, not signs
    for inst, n, m in _sizes(rng, 12, n=(1, 8), m=(2, 8)):
        W0 = _normal(rng, inst, n, m)
        yield {"W0": W0, "W": W0 * torch.from_numpy(rng.random((inst, n, m)) ** 4)}


def _winner_pair_cases(rng):
    yield {"W": torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)}
    yield {"W": torch.tensor([[[1.0, 0.1], [0.9, 0.0], [-1.1, 0.2]]], dtype=torch.float64)}
    for inst, n, m in _sizes(rng, 12, n=(2, 12), m=(1, 5)):
        yield {"W": _normal(rng, inst, n, m)}


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
    g, reason = _numbers(got, want)
    if reason is not None:
        return reason
    g = g.astype(np.float64)
    if g.shape != tuple(case["shape"]):
        return f"expected shape {tuple(case['shape'])}, got shape {g.shape}"
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
        return f"expected a list with one list of pairs per instance, got {_describe(got)}"
    if len(got) != len(want):
        return f"expected {len(want)} instances, got {len(got)}"
    for b, (g, w) in enumerate(zip(got, want)):
        try:
            g = [tuple(int(v) for v in p) for p in g]
        except (TypeError, ValueError):
            return f"instance {b} does not hold pairs of feature indices"
        if g != w:
            return f"instance {b}: {_short(repr(g))} instead of {_short(repr(w))} (sorted pairs i < j, each once)"
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
    # Optimisers
    "leader_share": Exercise(
        "optimisers", optimisers.leader_share, _leader_cases,
        "a feature's leader is the arg-max of |W0_ik| over neurons k and its winner the arg-max of |W_ik|; "
        "compare them feature by feature and average over the features of each instance (one share per instance)."),
    "winner_pairs": Exercise(
        "optimisers", lambda W: {k: v for k, v in optimisers.winner_pairs(W).items() if k != "crowded"},
        _winner_pair_cases,
        "per instance, find each feature's winner (arg-max of |W_ik|) and the sign of that weight; on each "
        "neuron with p positive and q negative winners there are C(p, 2) + C(q, 2) same-sign pairs and p q "
        "opposite-sign pairs. Return {'same': ..., 'opposite': ...}, one count per instance each."),
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
