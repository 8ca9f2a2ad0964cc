"""Hidden-layer noise as a source of sparsity: the moments of the noise and the expected loss.

Training with noise on the hidden layer replaces the hidden activation ``W_i`` of input ``e_i``
by ``W_i + xi_i``, where ``xi_i`` has independent coordinates of mean 0, standard deviation
``sigma`` and excess kurtosis ``kappa`` (one of :data:`polybook.train.EXCESS_KURTOSIS`). Output ``j`` then reads

    ReLU(a + Z),   a = W_j . W_i,   Z = W_j . xi_i,

and everything the noise does to the expected loss goes through the law of ``Z``. Its cumulants
are exact and simple (``projection_cumulants``): variance ``sigma^2 ||W_j||_2^2``, fourth
cumulant ``kappa sigma^4 sum_k W_jk^4``. The last one is where the fourth norm, and so the shape
of the noise, enters; :func:`relu_sq_edgeworth` is the expected squared ReLU to first order in
it, :func:`relu_sq_bernoulli_exact` and :func:`relu_sq_monte_carlo` are the references it is
tested against.

The experiments live in :mod:`polybook.experiments.noise` (``python -m polybook run noise``, the
paper's ``n = 8``, trained with the batched SGD loop ``train_together``) and
:mod:`polybook.experiments.noise_width` (``n = 8, 16, 32`` at ``m = 2n``, with a paired L1
control and a fluctuation test at ``n = 32``); both are analysed in the chapter
``book/noise.ipynb``, whose figures are in :mod:`polybook.views.noise`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from . import _validate as check
# The chapter's experiments, importable from here too (``nz.train_together``, ``nz.NoiseConfig``, ...).
from .experiments.noise import NoiseConfig, log_steps, mean_fourth_norm, run_noise, train_together
from .experiments.noise_width import NoiseWidthConfig, replay_noise_width, run_noise_width
from .train import EXCESS_KURTOSIS, FAMILIES, sample_noise

__all__ = [
    "relu_sq_gaussian",
    "relu_sq_edgeworth",
    "relu_sq_bernoulli_exact",
    "relu_sq_monte_carlo",
]



# --------------------------------------------------------------------------- moments


def noise_moments(kind: str, sigma: float) -> dict[str, float]:
    """Exact moments of one coordinate of the noise.

    Returns
    -------
    dict
        ``mean`` (0), ``variance`` (``sigma^2``), ``fourth_moment`` (``(3 + kappa) sigma^4``) and
        ``excess_kurtosis`` (``kappa``).

    Examples
    --------
    >>> noise_moments("uniform", 1.0)["fourth_moment"]
    1.8
    """
    check.choice("kind", kind, FAMILIES)
    check.number("sigma", sigma)
    kappa = EXCESS_KURTOSIS[kind]
    return {"mean": 0.0, "variance": sigma**2, "fourth_moment": (3.0 + kappa) * sigma**4, "excess_kurtosis": kappa}


def sample_moments(kind: str, sigma: float, samples: int = 1_000_000, seed: int = 0) -> dict[str, float]:
    """The same four numbers estimated from ``samples`` draws of :func:`polybook.train.sample_noise`."""
    check.integer("samples", samples, minimum=2)
    x = sample_noise(kind, sigma, (samples,), torch.Generator().manual_seed(seed), dtype=torch.float64)
    mean = float(x.mean())
    var = float(x.var())
    m4 = float((x**4).mean())
    return {"mean": mean, "variance": var, "fourth_moment": m4, "excess_kurtosis": m4 / var**2 - 3.0}


def projection_cumulants(w: np.ndarray, kind: str, sigma: float) -> dict[str, np.ndarray]:
    """Exact cumulants of ``Z = w . xi`` for noise ``xi`` of kind ``kind``.

    Cumulants of independent terms add and the ``r``-th cumulant of ``c X`` is ``c^r`` times that
    of ``X``, so ``Var Z = sigma^2 sum_k w_k^2`` and ``kappa_4(Z) = kappa sigma^4 sum_k w_k^4``
    (odd cumulants vanish: every noise kind is symmetric).

    Parameters
    ----------
    w : array, shape ``(..., m)``
        One or more encodings.

    Returns
    -------
    dict
        ``variance``, ``fourth_cumulant`` and ``excess_kurtosis`` (``kappa sum w^4 / (sum w^2)^2``),
        each of shape ``w.shape[:-1]``.
    """
    check.choice("kind", kind, FAMILIES)
    w = np.asarray(w, dtype=float)
    l2 = (w**2).sum(-1)
    l4 = (w**4).sum(-1)
    kappa = EXCESS_KURTOSIS[kind]
    return {
        "variance": sigma**2 * l2,
        "fourth_cumulant": kappa * sigma**4 * l4,
        "excess_kurtosis": kappa * l4 / np.maximum(l2, np.finfo(float).tiny) ** 2,
    }


# --------------------------------------------------------------------------- E[ReLU(a + Z)^2]


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _Phi(x: np.ndarray) -> np.ndarray:
    return torch.special.ndtr(torch.as_tensor(np.asarray(x, dtype=float))).numpy()


def relu_sq_gaussian(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E[ReLU(a + Z)^2]`` for ``Z ~ N(0, s^2)``: ``(a^2 + s^2) Phi(a/s) + a s phi(a/s)`` (exact).

    Introduced in the book: :ref:`verdict-noise-n` (chapter noise).
    """
    a, s = np.asarray(a, dtype=float), np.asarray(s, dtype=float)
    u = a / s
    return (a * a + s * s) * _Phi(u) + a * s * _phi(u)


def relu_sq_edgeworth(a: np.ndarray, w: np.ndarray, kind: str, sigma: float) -> np.ndarray:
    """``E[ReLU(a + w . xi)^2]`` to first order in the fourth cumulant of ``w . xi``.

    The first-order Edgeworth density of ``Z`` is ``phi_s(z) + (kappa_4 / 24) phi_s''''(z)``;
    moving the four derivatives onto ``g(x) = ReLU(x)^2`` (``g'''' = 2 delta'``) gives

        E[ReLU(a + Z)^2] ~ G(a, s) - kappa_4 a phi(a/s) / (12 s^3),
        s^2 = sigma^2 ||w||_2^2,   kappa_4 = kappa sigma^4 ||w||_4^4,

    with ``G`` the Gaussian value :func:`relu_sq_gaussian`. The correction is the only place where
    ``sum_k w_k^4`` enters at this order. It is exact for Gaussian noise and an approximation
    otherwise (good when ``w`` is spread over many neurons, poor when it is nearly one-hot).

    Introduced in the book: :doc:`/book/noise` (chapter noise).

    Parameters
    ----------
    a : array
        Overlaps ``W_j . W_i``; broadcast against ``w.shape[:-1]``.
    w : array, shape ``(..., m)``
        The encoding ``W_j`` that reads the noise.
    """
    cum = projection_cumulants(w, kind, sigma)
    s = np.sqrt(cum["variance"])
    a = np.asarray(a, dtype=float)
    return relu_sq_gaussian(a, s) - cum["fourth_cumulant"] * a * _phi(a / s) / (12 * s**3)


def relu_sq_bernoulli_exact(a: np.ndarray, w: np.ndarray, sigma: float) -> np.ndarray:
    """``E[ReLU(a + w . xi)^2]`` for Bernoulli noise, exactly, by summing over all ``2^m`` signs.

    Introduced in the book: :doc:`/book/noise` (chapter noise).

    Parameters
    ----------
    a : array, shape ``(A,)``
    w : array, shape ``(m,)`` with ``m <= 20``.

    Returns
    -------
    numpy.ndarray, shape ``(A,)``
    """
    w = np.asarray(w, dtype=float)
    if w.ndim != 1 or len(w) > 20:
        raise ValueError(f"w must be one encoding of at most 20 weights, got shape {w.shape}")
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(w))))  # (2^m, m)
    z = sigma * signs @ w  # every value Z can take, each with probability 2^-m
    a = np.atleast_1d(np.asarray(a, dtype=float))
    return (np.maximum(a[:, None] + z[None, :], 0.0) ** 2).mean(axis=1)


def relu_sq_monte_carlo(
    a: np.ndarray, w: np.ndarray, kind: str, sigma: float, samples: int = 200_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo estimate of ``E[ReLU(a + w . xi)^2]`` and its standard error.

    Introduced in the book: :doc:`/book/noise` (chapter noise).

    Parameters
    ----------
    a : array, shape ``(A,)``
    w : array, shape ``(m,)``

    Returns
    -------
    mean, stderr : numpy.ndarray, shape ``(A,)``
    """
    w = torch.as_tensor(np.asarray(w, dtype=float))
    xi = sample_noise(kind, sigma, (samples, len(w)), torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = (xi @ w).numpy()  # (samples,)
    a = np.atleast_1d(np.asarray(a, dtype=float))
    vals = np.maximum(a[:, None] + z[None, :], 0.0) ** 2
    return vals.mean(axis=1), vals.std(axis=1) / math.sqrt(samples)
