"""One training loop for every chapter.

:class:`TrainConfig` holds every knob (validated on construction) and :func:`train` runs all
``instances`` of the model as one batched tensor program with a hand-written gradient
(:func:`polybook.models.loss_and_grad`). The instances are independent: instance ``b`` of a
run with ``instances = B`` gets exactly the weights it would get alone only in distribution, but
a run is fully determined by its config (the seed included) and the device.

Noise kinds (each with standard deviation ``sigma``, added to the hidden layer):

- ``"bernoulli"``: +sigma or -sigma with probability 1/2 (excess kurtosis -2);
- ``"uniform"``: uniform on [-sigma sqrt(3), sigma sqrt(3)] (excess kurtosis -1.2);
- ``"gaussian"``: N(0, sigma^2) (excess kurtosis 0);
- ``"laplace"``: Laplace with scale sigma / sqrt(2) (excess kurtosis +3).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from . import _validate as check
from .models import init_weights, loss_and_grad
from .threads import SMALL_WORK, ThreadPicker, one_cpu_thread

__all__ = ["TrainConfig", "device_report", "train", "TrainResult", "EXCESS_KURTOSIS", "FAMILIES"]

#: The hidden-layer noise distributions (``"none"`` switches noise off).
NOISE_KINDS = ("none", "bernoulli", "uniform", "gaussian", "laplace")

#: Excess kurtosis ``E[xi^4] / sigma^4 - 3`` of each noise kind of ``sample_noise``.
#:
#: Introduced in the book: :doc:`/book/noise` (chapter noise).
EXCESS_KURTOSIS = {"bernoulli": -2.0, "uniform": -1.2, "gaussian": 0.0, "laplace": 3.0}

#: The noise kinds, in order of excess kurtosis.
#:
#: Introduced in the book: :doc:`/book/noise` (chapter noise).
FAMILIES = tuple(EXCESS_KURTOSIS)

#: The optimisers, AdamW and plain (full-batch) gradient descent.
OPTIMIZERS = ("adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")

#: Every this many steps (and after the last) :func:`train` checks that the loss and the weights
#: are finite and that the loss has not blown up, so a diverged run stops early instead of
#: training on NaNs (or on astronomically large numbers) to the end.
CHECK_EVERY = 100

#: A run has diverged when an instance's loss exceeds ``DIVERGED_FACTOR`` times its loss at the
#: first step, that first loss counted as at least :data:`DIVERGED_FLOOR` (see :func:`run_steps`).
#: The book's losses fall from their start, and its noisy ones stay within a few times it.
DIVERGED_FACTOR = 1e3

#: The least first-step loss the rule of :data:`DIVERGED_FACTOR` measures from, so that a run
#: which starts at (or near) a loss of 0, e.g. from a solution, may still rise to ``DIVERGED_FACTOR``.
DIVERGED_FLOOR = 1.0


class Diverged(RuntimeError):
    """Training made the loss or the weights NaN or infinite, or the loss blew up (:func:`run_steps`).

    Attributes: ``where`` (what was training, e.g. ``"collisions m=512"``) and ``detail`` (the rest of
    the message), ``step`` (the first check that saw it), ``steps``, ``instance`` (the first bad one).
    """

    def __init__(self, where: str | None, detail: str, step: int, steps: int, instance: int) -> None:
        super().__init__(f"{where} {detail}" if where else detail)
        self.where, self.detail = where, detail
        self.step, self.steps, self.instance = step, steps, instance


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run of the tied ReLU autoencoder.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).

    Parameters
    ----------
    n, m : int
        Features and neurons.
    instances : int
        Independent models trained side by side (different initialisations).
    steps : int
        Full-batch optimisation steps (every step sees all ``n`` basis inputs).
    lr : float
        Learning rate.
    optimizer : {"adamw", "sgd"}
        AdamW (betas 0.9, 0.999) or plain gradient descent.
    l1 : float
        Strength ``lambda`` of the L1 penalty ``lambda * sum_ik |W_ik|`` per instance.
    weight_decay : float
        AdamW's decoupled weight decay. 0 by default, because the theory has none (the
        paper's runs kept PyTorch's default 0.01). Must be 0 with ``"sgd"``.
    noise : {"none", "bernoulli", "uniform", "gaussian", "laplace"}
        Distribution of the hidden-layer noise.
    sigma : float
        Standard deviation of the noise; must be 0 when ``noise == "none"``.
    noise_shared : bool
        Draw one noise vector per step shared by every input and instance (the authors' code)
        instead of independent noise per input, neuron and instance.
    noise_draws : int
        Average the gradient over this many independent noise draws per step.
    interference : bool
        ``False`` drops the off-diagonal reconstruction terms (no interference between features).
    init_std : float, optional
        Standard deviation of the initial weights; ``None`` means the paper's ``1/sqrt(m)``.
    seed : int
        Seeds the initial weights (CPU generator) and the noise: ``0..2^63-1``, room for the
        offsets an experiment adds to a user's seed (at most ``2^62``), e.g. ``seed + j`` per width.
    """

    n: int = 16
    m: int = 32
    instances: int = 1
    steps: int = 1000
    lr: float = 1e-3
    optimizer: str = "adamw"
    l1: float = 0.0
    weight_decay: float = 0.0
    noise: str = "none"
    sigma: float = 0.0
    noise_shared: bool = False
    noise_draws: int = 1
    interference: bool = True
    init_std: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check.integer("n", self.n)
        check.integer("m", self.m)
        check.integer("instances", self.instances)
        check.integer("steps", self.steps)
        check.number("lr", self.lr, 0.0, strict=True)
        check.choice("optimizer", self.optimizer, OPTIMIZERS)
        check.number("l1", self.l1)
        check.number("weight_decay", self.weight_decay)
        if self.optimizer == "sgd" and self.weight_decay:
            check.fail("weight_decay", self.weight_decay, "0 with optimizer 'sgd' (plain gradient descent)")
        check.choice("noise", self.noise, NOISE_KINDS)
        check.number("sigma", self.sigma)
        if self.noise == "none" and self.sigma:
            check.fail("sigma", self.sigma, "0 when noise is 'none' (choose a noise kind)")
        if not isinstance(self.noise_shared, bool):
            check.fail("noise_shared", self.noise_shared, "True or False")
        check.integer("noise_draws", self.noise_draws)
        if not isinstance(self.interference, bool):
            check.fail("interference", self.interference, "True or False")
        if self.init_std is not None:
            check.number("init_std", self.init_std, 0.0, strict=True)
        check.internal_seed("seed", self.seed)


@dataclass
class TrainResult:
    """What :func:`train` returns; every tensor lives on the CPU.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).

    Attributes
    ----------
    config : TrainConfig
    W0, W : torch.Tensor
        Initial and final weights, ``(instances, n, m)``.
    losses : torch.Tensor
        ``(steps, instances)`` reconstruction loss (without L1) before each update.
    snapshots : dict
        For each requested step ``t`` (0 = before training, ``steps`` = the end), ``W`` at that
        step or ``snapshot_fn(W)``.
    device : str
    seconds : float
        Wall time of the loop.
    """

    config: TrainConfig
    W0: torch.Tensor
    W: torch.Tensor
    losses: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    device: str = "cpu"
    seconds: float = 0.0

    def summary(self) -> dict:
        """Config and final mean loss, as plain Python values."""
        return {"config": asdict(self.config), "final_loss": float(self.losses[-1].mean())}


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU; other names are checked."""
    check.choice("device", device, DEVICES)
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device must be one that exists here, got 'cuda' (no CUDA GPU is visible)")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device must be one that exists here, got 'mps' (MPS is not available)")
    return torch.device(device)


def device_report(device: str = "auto") -> str:
    """One line naming the device that ``device`` resolves to (what a chapter's setup cell prints).

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"polybook will train on: cuda ({torch.cuda.get_device_name(dev)})"
    return f"polybook will train on: {dev.type}"


def sample_noise(
    kind: str,
    sigma: float,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw zero-mean noise of standard deviation ``sigma`` from one of :data:`NOISE_KINDS`.

    Examples
    --------
    >>> x = sample_noise("bernoulli", 0.1, (4,), torch.Generator().manual_seed(0))
    >>> sorted(set(x.abs().round(decimals=6).tolist()))
    [0.10000000149011612]
    """
    check.choice("kind", kind, NOISE_KINDS[1:])
    kw = dict(generator=generator, device=device, dtype=dtype)
    if kind == "bernoulli":
        return (torch.randint(0, 2, shape, generator=generator, device=device).to(dtype) * 2 - 1) * sigma
    if kind == "gaussian":
        return torch.randn(shape, **kw) * sigma
    if kind == "uniform":
        return (torch.rand(shape, **kw) * 2 - 1) * (sigma * math.sqrt(3.0))
    # Laplace by inverse CDF: sign(u) * b * -log(1 - 2|u|) with u uniform on (-1/2, 1/2).
    u = torch.rand(shape, **kw) - 0.5
    b = sigma / math.sqrt(2.0)
    return -b * torch.sign(u) * torch.log1p(-2 * u.abs()).clamp(min=-80.0)


def step_work(cfg: TrainConfig) -> int:
    """Multiply-adds of one step of ``cfg`` (``instances * n * n * m``): what the thread rule looks at."""
    return cfg.instances * cfg.n * cfg.n * cfg.m


def check_finite(W: torch.Tensor, recent_losses: torch.Tensor, step: int, cfg, desc: str | None,
                 steps: int | None = None) -> None:
    """Raise :class:`Diverged` when ``W`` or the recent ``(steps, instances)`` losses hold a NaN or an infinity.

    ``cfg`` is the run's settings (any object with attributes such as ``lr``, ``l1``, ``sigma``,
    ``init_std``), which names the settings to lower (:func:`divergence_hint`); ``steps`` is the
    run's length (default ``cfg.steps``).
    """
    steps = cfg.steps if steps is None else steps
    bad = ~torch.isfinite(W).flatten(1).all(dim=1) | ~torch.isfinite(recent_losses).all(dim=0)  # (instances,)
    if bool(bad.any()):
        instance = int(bad.nonzero()[0, 0])
        raise Diverged(
            desc, f"diverged by step {step} of {steps} (instance {instance}): "
            f"the loss or the weights became NaN or infinite; {divergence_hint(cfg)}",
            step, steps, instance,
        )


def divergence_hint(cfg) -> str:
    """Which settings to lower after a divergence, with their values: only settings ``cfg`` has.

    ``cfg`` is any object with the run's settings as attributes (a ``TrainConfig``, an
    experiment's config, a ``types.SimpleNamespace``), or ``None``. Named are its learning rates
    (``lr`` and every ``*_lr``), always, and its penalties, noise and initial scale (``l1``,
    ``*_l1``, ``sigma``, ``sigmas``, ``*_sigma``, ``*_sigmas``, ``init_std``) when they are at
    least 1; a tuple counts by its largest value. With none of them: "check the settings".

    >>> import types
    >>> divergence_hint(types.SimpleNamespace(sae_l1=1e30))
    'lower sae_l1 (now 1e+30)'
    """
    import dataclasses

    if cfg is None:
        return "check the settings"
    if dataclasses.is_dataclass(cfg):
        names = [f.name for f in dataclasses.fields(cfg)]
    else:
        names = list(getattr(cfg, "__dict__", {}))
    hints = []
    for name in names:
        value = getattr(cfg, name, None)
        if isinstance(value, tuple):
            value = max((v for v in value if check.is_real(v)), default=None)
        if not check.is_real(value):
            continue
        rate = name == "lr" or name.endswith("_lr")
        scale = name in ("l1", "sigma", "sigmas", "init_std") or name.endswith(("_l1", "_sigma", "_sigmas"))
        if rate or (scale and value >= 1):
            hints.append(f"{name} (now {value:g})")
    return "lower " + " or ".join(hints) if hints else "check the settings"


def train_memory_bytes(cfg: TrainConfig, snapshots: int = 0) -> int:
    """Estimated peak memory of :func:`train` (device and host together), in bytes.

    Counts float32 tensors of shape ``(instances, n, m)``: the weights, their initial copy, the
    gradient, the sign term of L1, AdamW's two moments and the returned copy (plus two with
    noise: the noise and ``W + noise``); three ``(instances, n, n)`` Gram-sized temporaries; the
    loss history twice (device and host); and ``snapshots`` stored copies of ``W``.
    """
    weights = cfg.instances * cfg.n * cfg.m
    copies = 7 + (2 if cfg.noise != "none" else 0) - (2 if cfg.optimizer == "sgd" else 0) + snapshots
    return 4 * (copies * weights + 3 * cfg.instances * cfg.n * cfg.n + 2 * cfg.steps * cfg.instances)


def available_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for a run on ``device`` in bytes, or ``None`` where it cannot be known.

    CUDA: the free memory the driver reports. CPU (and MPS, which shares it): ``MemAvailable``
    from ``/proc/meminfo``, lowered to the cgroup's limit when one is set.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    free = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read())
        if limit != "max":
            free = int(limit) - used if free is None else min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def check_fits(need: int, device: torch.device | str, what: str) -> None:
    """Refuse (``ValueError``) a run whose estimated peak memory ``need`` exceeds what ``device`` has free."""
    free = available_memory_bytes(device)
    if free is not None and need > 0.9 * free:
        raise ValueError(
            f"{what} needs about {need / 2**30:,.1f} GiB at its peak (estimate), more than the "
            f"{0.9 * free / 2**30:,.1f} GiB it may use on {torch.device(device).type} (90% of what is free): "
            "lower instances, n or m, or use a device with more memory"
        )


#: Offset added to a run's seed for its second generator (noise, minibatches, resampling), so the
#: stream never repeats the initial weights' draw.
STREAM_OFFSET = 1_000_003


def seeded_generator(seed: int, device: torch.device | str = "cpu", offset: int = STREAM_OFFSET) -> torch.Generator:
    """The generator of a run's random stream on ``device``: seeded with ``seed + offset``."""
    return torch.Generator(device=device).manual_seed(seed + offset)


def make_optimizer(params, optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0, *,
                   fused: bool | None = None) -> torch.optim.Optimizer:
    """The optimiser of every polybook loop: ``"adamw"``, ``"adam"`` or ``"sgd"`` (plain gradient descent).

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).

    ``fused=None`` runs PyTorch's fused Adam kernel (one pass over the weights per step) on the
    CPU and on CUDA, the reference one elsewhere; ``fused=False`` always runs the reference
    (single-tensor) kernel. Both kernels are elementwise, so neither depends on the thread count or
    on the CPU's vector width (``tests/test_train.py``); they round differently from each other, so
    a loop keeps the kernel its stored results were made with.

    >>> W = torch.zeros(2, 3, requires_grad=True)
    >>> type(make_optimizer([W], "sgd", lr=0.1)).__name__
    'SGD'
    """
    params = list(params)
    check.choice("optimizer", optimizer, OPTIMIZERS + ("adam",))
    check.number("lr", lr, 0.0, strict=True)
    check.number("weight_decay", weight_decay)
    if optimizer == "sgd":
        if weight_decay:
            check.fail("weight_decay", weight_decay, "0 with optimizer 'sgd' (plain gradient descent)")
        return torch.optim.SGD(params, lr=lr)
    use_fused = fused if fused is not None else all(p.device.type in ("cpu", "cuda") for p in params)
    kernel = {"fused": True} if use_fused else {"foreach": False}
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **kernel)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kernel)


def _optimizer(cfg: TrainConfig, W: torch.Tensor) -> torch.optim.Optimizer:
    """:func:`make_optimizer` for ``W`` with the optimiser, lr and weight decay of ``cfg``."""
    return make_optimizer([W], cfg.optimizer, cfg.lr, cfg.weight_decay)


#: Environment variable for the smoke test of the paper-scale switch: when set to ``k``, every
#: registered config (both scales) has each step count capped at ``k``, and every training loop
#: (:func:`run_steps`) makes at most ``k`` updates and then fast-forwards: its remaining steps
#: repeat the last loss and still call their hooks (snapshots, schedules), so every shape and
#: code path is that of the full run. A notebook or command with ``--scale paper`` then runs its
#: whole code in seconds. Its numbers mean nothing, and a record made under it says so in its
#: provenance. Never set it for a real run.
SMOKE_ENV = "POLYBOOK_SMOKE_STEPS"


def smoke_steps() -> int | None:
    """The step cap of :data:`SMOKE_ENV`, or ``None`` when it is not set."""
    text = os.environ.get(SMOKE_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{SMOKE_ENV} must be a positive integer when set, got {text!r}")
    return int(text)


def run_steps(
    step: Callable[[int], torch.Tensor],
    steps: int,
    *,
    device: torch.device,
    watch: Callable[[], Iterable[torch.Tensor]],
    instances: int,
    settings=None,
    desc: str | None = None,
    progress: bool = False,
    work: int | None = None,
    after: Callable[[int], None] | None = None,
    autograd: bool = False,
) -> torch.Tensor:
    """The one loop scaffold: run ``step(t)`` for ``t = 0..steps-1`` and return the losses.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).

    ``step(t)`` makes one update and returns the ``(instances,)`` loss measured before it. Around
    the steps the scaffold does what every loop needs: the progress bar (``progress``, ``desc``),
    the thread rule on a CPU (one thread for a loop of small steps, the default; with ``work``,
    the multiply-adds of one step, one thread below :data:`SMALL_WORK` and otherwise
    :class:`ThreadPicker`), gradients off unless ``autograd``, and every :data:`CHECK_EVERY`
    steps and after the last a check that the losses and every tensor of ``watch()`` (each with
    the instances first) are finite, raising :class:`Diverged` that names the instance and the
    settings of ``settings`` to lower. ``after(t)`` runs after update ``t`` (snapshots, schedules).

    The same checks stop a run that blew up but stayed finite: an instance has diverged when a
    loss exceeds :data:`DIVERGED_FACTOR` (``1e3``) times its loss at the first step, taken as at
    least :data:`DIVERGED_FLOOR` (``1``); the :class:`Diverged` message says "the loss rose from X
    to Y". A run whose losses fall, or fluctuate within a few times their start, never meets it.

    Returns the ``(steps, instances)`` losses on ``device``.
    """
    losses = torch.empty(steps, instances, device=device)
    if work is None:
        threads: contextlib.AbstractContextManager = one_cpu_thread(device)
        picker = ThreadPicker(device, 0)
    else:
        threads = one_cpu_thread(device, work < SMALL_WORK)
        picker = ThreadPicker(device, work)
    grad_mode = contextlib.nullcontext() if autograd else torch.no_grad()
    cap = smoke_steps()

    def checks(t: int) -> None:  # the losses since the last check, and every watched tensor, after step t
        recent = losses[max(0, t + 1 - CHECK_EVERY):t + 1]
        for tensor in watch():
            check_finite(tensor.detach(), recent, t + 1, settings, desc, steps)
        check_growth(losses[0], recent, t + 1, settings, desc, steps)

    with grad_mode, threads, contextlib.closing(picker):
        for t in tqdm(range(steps), desc=desc, disable=not progress, file=sys.stderr, mininterval=0.5, leave=False):
            if cap is not None and t >= cap:  # the smoke test: no more updates, same shapes and hooks
                losses[t] = losses[t - 1]
                if after is not None:
                    after(t)
                continue
            picker.start(t)
            losses[t] = step(t)
            picker.stop(t)
            if after is not None:
                try:
                    after(t)
                except (ValueError, RuntimeError):
                    # A hook (a snapshot's metric) may refuse weights that have just become NaN: that is
                    # the run diverging, which the checks report as such; any other failure stands.
                    checks(t)
                    raise
            if (t + 1) % CHECK_EVERY == 0 or t + 1 == steps:
                checks(t)
    return losses


def check_growth(first: torch.Tensor, recent_losses: torch.Tensor, step: int, cfg, desc: str | None,
                 steps: int) -> None:
    """Raise :class:`Diverged` when a recent loss exceeds ``DIVERGED_FACTOR`` times the first one.

    ``first`` is the ``(instances,)`` loss of the first step, ``recent_losses`` the
    ``(steps, instances)`` losses since the last check; the first loss is counted as at least
    :data:`DIVERGED_FLOOR`. ``cfg`` names the settings to lower, as in :func:`check_finite`.
    """
    limit = DIVERGED_FACTOR * first.clamp_min(DIVERGED_FLOOR)
    over = (recent_losses > limit).any(dim=0)  # (instances,)
    if bool(over.any()):
        instance = int(over.nonzero()[0, 0])
        peak = float(recent_losses[:, instance].max())
        raise Diverged(
            desc, f"diverged by step {step} of {steps} (instance {instance}): the loss rose from "
            f"{float(first[instance]):.4g} to {peak:.4g} (past the limit {float(limit[instance]):.4g}); "
            f"{divergence_hint(cfg)}",
            step, steps, instance,
        )


def train(
    config: TrainConfig,
    *,
    W0: torch.Tensor | None = None,
    snapshot_steps: Iterable[int] = (),
    snapshot_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    neuron_mask: torch.Tensor | None = None,
    device: str = "auto",
    progress: bool = True,
    desc: str | None = None,
) -> TrainResult:
    """Train ``config.instances`` tied ReLU autoencoders at once.

    Introduced in the book: :doc:`/book/regularisation` (chapter regularisation).

    Parameters
    ----------
    config : TrainConfig
    W0 : torch.Tensor, optional
        Initial weights ``(instances, n, m)``; default :func:`~polybook.models.init_weights`
        with the config's seed and ``init_std``.
    snapshot_steps : iterable of int
        Steps in ``0..steps`` at which to record ``W`` (or ``snapshot_fn(W)``); ``t`` means
        "after ``t`` updates".
    snapshot_fn : callable, optional
        Maps ``W`` (on the device) to what is stored, e.g. a metric, to save memory.
    neuron_mask : torch.Tensor, optional
        ``(instances, m)`` booleans: the neurons that exist in each instance. Masked columns of
        ``W`` start at zero and never move (their gradient is zeroed), so an instance with ``m'``
        unmasked neurons trains exactly like a model of width ``m'``. This lets models of several
        widths share one batched program (see ``polybook.sweep.train_widths``).
    device : {"auto", "cpu", "cuda", "mps"}
    progress : bool
        Show a tqdm progress bar on stderr.
    desc : str, optional
        Label of the progress bar.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Bad shapes or snapshot steps, or a run whose estimated peak memory
        (``train_memory_bytes``) exceeds what the device has free.
    Diverged
        The loss or the weights became NaN or infinite, or the loss rose above
        ``DIVERGED_FACTOR`` times its start (checked every ``CHECK_EVERY`` steps).

    Examples
    --------
    >>> res = train(TrainConfig(n=4, m=8, steps=10), device="cpu", progress=False)
    >>> tuple(res.W.shape), tuple(res.losses.shape)
    ((1, 4, 8), (10, 1))
    """
    cfg = config
    dev = resolve_device(device)
    wanted = sorted(set(int(s) for s in snapshot_steps))
    wanted_set = set(wanted)
    for s in wanted:
        if not 0 <= s <= cfg.steps:
            raise ValueError(f"snapshot_steps must lie in 0..{cfg.steps}, got {s}")
    check_fits(train_memory_bytes(cfg, len(wanted) if snapshot_fn is None else 0), dev, desc or "this run")
    if W0 is None:
        W0 = init_weights(cfg.instances, cfg.n, cfg.m, seed=cfg.seed, std=cfg.init_std)
    if tuple(W0.shape) != (cfg.instances, cfg.n, cfg.m):
        raise ValueError(
            f"W0 must have shape (instances, n, m) = {(cfg.instances, cfg.n, cfg.m)}, got {tuple(W0.shape)}"
        )
    record = snapshot_fn if snapshot_fn is not None else (lambda w: w.clone())
    if neuron_mask is not None:
        if tuple(neuron_mask.shape) != (cfg.instances, cfg.m):
            raise ValueError(
                f"neuron_mask must have shape (instances, m) = {(cfg.instances, cfg.m)}, got {tuple(neuron_mask.shape)}"
            )
        keep = neuron_mask.to(device=dev, dtype=torch.float32).unsqueeze(-2)  # (instances, 1, m)
        W0 = W0 * keep.cpu()

    W = W0.detach().to(device=dev, dtype=torch.float32).clone().requires_grad_(True)
    opt = _optimizer(cfg, W)
    gen = seeded_generator(cfg.seed, dev)
    snapshots: dict[int, torch.Tensor] = {}
    noise_shape = (1, 1, cfg.m) if cfg.noise_shared else (cfg.instances, cfg.n, cfg.m)

    def step(t: int) -> torch.Tensor:
        if cfg.noise == "none":
            loss, grad = loss_and_grad(W, cfg.l1, None, cfg.interference)
        else:
            loss, grad = 0.0, 0.0
            for _ in range(cfg.noise_draws):
                xi = sample_noise(cfg.noise, cfg.sigma, noise_shape, gen, dev)
                l_d, g_d = loss_and_grad(W, cfg.l1, xi, cfg.interference)
                loss, grad = loss + l_d, grad + g_d
            if cfg.noise_draws > 1:
                loss, grad = loss / cfg.noise_draws, grad / cfg.noise_draws
        W.grad = grad * keep if neuron_mask is not None else grad
        opt.step()
        return loss

    def snapshot(t: int) -> None:
        if t + 1 in wanted_set:
            snapshots[t + 1] = record(W).detach().cpu()

    start = time.perf_counter()
    if 0 in wanted_set:
        with torch.no_grad():
            snapshots[0] = record(W).detach().cpu()
    losses = run_steps(step, cfg.steps, device=dev, watch=lambda: (W,), instances=cfg.instances, settings=cfg,
                       desc=desc, progress=progress, work=step_work(cfg), after=snapshot)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return TrainResult(
        config=cfg,
        W0=W0.detach().cpu().clone(),
        W=W.detach().cpu(),
        losses=losses.cpu(),
        snapshots=snapshots,
        device=str(dev),
        seconds=seconds,
    )
