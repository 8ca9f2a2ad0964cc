"""The same bits on every x86-64 CPU: MKL's conditional numerical reproducibility, and the thread rule.

torch's CPU build does its matrix products in Intel's MKL, which picks a code path from the CPU it
finds (AVX-512 on one machine, AVX2 on another). The paths add in different orders, so the same
seed gives weights that differ in their last bits from one machine to the next, and thousands of
training steps grow those bits into different final models (a neuron more or less in a count).
MKL has one code path that it runs identically on every x86-64 CPU, Intel's and AMD's alike: the
``COMPATIBLE`` branch of its conditional numerical reproducibility (CNR) control, chosen by the
environment variable ``MKL_CBWR`` before MKL first runs. Importing polybook sets it (unless it is
set already), so a chapter gives the same numbers on a reader's machine as on the one that made
its committed outputs.

The price: that branch does not use the wide vector units. On an AMD EPYC its float32 products at
the book's sizes are 2 to 2.5 times slower, and the book's collisions run takes twice as long
(``python -m polybook bench --end-to-end`` measures it on your machine; ``MKL_CBWR=AUTO`` set before
Python starts gives the speed back and the bitwise reproducibility up).

Where CNR cannot apply (no MKL: ARM machines such as Apple silicon, and GPUs), results are the
same in distribution but not bitwise; :func:`numerics` says which case a machine is in.

Thread counts do not change the bits: with MKL in this mode a product gives the same result on one
thread as on several, and every other step of training is elementwise (``tests/test_train.py``
checks a whole run). That is what lets :func:`polybook.train.train` pick its threads by speed.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import warnings

#: The environment variable MKL reads once, when it first runs, and the branch polybook asks for.
CBWR_ENV, CBWR_BRANCH = "MKL_CBWR", "COMPATIBLE"

# Before torch is imported anywhere in polybook (polybook/__init__.py imports this module first).
_SET_HERE = CBWR_ENV not in os.environ
os.environ.setdefault(CBWR_ENV, CBWR_BRANCH)

import torch  # noqa: E402  (after the variable, on purpose)

#: What MKL reports for its branch while no CNR mode is in force (``MKL_CBWR_AUTO``).
_MKL_AUTO = 1


@functools.lru_cache(maxsize=1)
def _cbwr_get():
    """MKL's ``mkl_serv_cbwr_get`` from torch's CPU library, or ``None`` where torch carries no MKL."""
    folder = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            try:
                get = ctypes.CDLL(path).mkl_serv_cbwr_get
            except (OSError, AttributeError):
                return None
            get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
            return get
    return None


def _mkl_branch() -> int | None:
    """MKL's current CNR branch, or ``None`` where torch carries no MKL (or does not export it)."""
    get = _cbwr_get()
    return None if get is None else int(get(1))  # 1 = MKL_CBWR_BRANCH: which branch is in force


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux), for provenance."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def numerics() -> dict:
    """How this process does its CPU arithmetic, and whether it matches the book's committed outputs.

    Returns a dict with ``mkl_cbwr`` (the variable's value), ``in_force`` (whether MKL runs the
    requested branch: ``False`` when MKL had already run before polybook was imported, ``None``
    without MKL), ``cpu_capability`` (torch's vector kernels: AVX512, AVX2, ...), ``cpu`` and
    ``reproducible`` (bitwise the same as the book's outputs can be expected).
    """
    branch = _mkl_branch()
    value = os.environ.get(CBWR_ENV, "")
    in_force = None if branch is None else branch != _MKL_AUTO
    return {
        "mkl_cbwr": value,
        "in_force": in_force,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_name(),
        "reproducible": bool(in_force) and value.upper().split(",")[0] == CBWR_BRANCH,
    }


def describe() -> str:
    """One line for a run's provenance: the arithmetic mode and the CPU."""
    info = numerics()
    if info["in_force"] is None:
        mode = "no MKL (bitwise reproducibility not promised)"
    elif info["in_force"]:
        mode = f"MKL_CBWR={info['mkl_cbwr']}"
    else:
        mode = "MKL default code path (MKL ran before polybook set MKL_CBWR)"
    return f"{mode}; torch CPU kernels {info['cpu_capability']}; {info['cpu']}"


def _warn_if_late() -> None:
    info = numerics()
    if _SET_HERE and info["in_force"] is False:
        warnings.warn(
            "MKL ran before polybook was imported, so its reproducible mode (MKL_CBWR=COMPATIBLE) is not "
            "in force: results are right but may differ in their last digits from the book's. Import "
            "polybook first, or set MKL_CBWR=COMPATIBLE before starting Python.",
            RuntimeWarning, stacklevel=3,
        )


_warn_if_late()
