"""How many CPU threads a training loop uses: one for small steps, whichever is faster for large ones.

The choice never changes the numbers (see :mod:`polybook._numerics`): only how long they take.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import torch

__all__: list[str] = []

#: Below this many multiply-adds per step (instances * n * n * m) a CPU run uses one thread:
#: thread hand-offs cost more than they save on such small matrices (and far more when the
#: cores are shared). The choice depends only on the shapes, so results are reproducible.
SMALL_WORK = 1 << 22


@contextlib.contextmanager
def one_cpu_thread(dev: torch.device, when: bool = True) -> Iterator[None]:
    """On a CPU (and ``when``), run the block with one torch thread; restore the setting after.

    Loops of many tiny steps run faster on one thread: more threads spend the step synchronising.
    """
    before = torch.get_num_threads()
    active = dev.type == "cpu" and when
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if active:
            torch.set_num_threads(before)


class ThreadPicker:
    """Runs a CPU training loop on whichever is faster *now*: one thread or torch's thread count.

    More threads pay on a quiet machine and collapse on a busy one: a step waits for every thread,
    and a thread that shares its core with another program arrives late at each of thousands of
    steps. So the loop times :data:`PROBE` steps with each choice (their median, robust to a lucky
    or a slow step) at the start and again every ``PROBE_EVERY`` steps (the interval doubling, up
    to :data:`PROBE_MAX`, while the choice holds), and keeps the faster; more threads must be
    :data:`MARGIN` times faster to be chosen. Between probes it watches its
    own pace: when a window of :data:`WATCH` steps runs :data:`SLOWDOWN` times slower than the
    probe measured (another program started), it probes again at once. The choice never changes
    the numbers (:mod:`polybook._numerics`): only how long they take. Small problems
    (:data:`SMALL_WORK`) and other devices are left alone.
    """

    PROBE = 4
    PROBE_EVERY = 200
    PROBE_MAX = 1600
    WATCH = 25
    SLOWDOWN = 2.0
    MARGIN = 1.25

    def __init__(self, dev: torch.device, work: int) -> None:
        self.before = torch.get_num_threads()
        self.options = (1, self.before) if dev.type == "cpu" and self.before > 1 and work >= SMALL_WORK else ()
        self.interval, self.next_probe, self.probe_start = self.PROBE_EVERY, 0, None
        self.times: dict[int, list[float]] = {}
        self.chosen = self.before
        self.expected = math.inf  # seconds per step of the chosen option, as last probed
        self.history: list[int] = []  # the choice after each probe (for tests and the benchmark)
        self._t0 = self._window_start = 0.0
        self._window = 0
        self.clock = time.perf_counter  # replaceable, for tests

    def start(self, t: int) -> None:
        if not self.options:
            return
        if self.probe_start is None and t >= self.next_probe:
            self.probe_start, self.times = t, {}
        if self.probe_start is not None:
            torch.set_num_threads(self.options[(t - self.probe_start) // self.PROBE])
        self._t0 = self.clock()

    def stop(self, t: int) -> None:
        if not self.options:
            return
        now = self.clock()
        if self.probe_start is None:  # watch the pace between probes
            if self._window == 0:
                self._window_start = self._t0
            self._window += 1
            if self._window == self.WATCH:
                pace = (now - self._window_start) / self.WATCH
                self._window = 0
                if pace > self.SLOWDOWN * self.expected:
                    self.next_probe, self.interval = t + 1, self.PROBE_EVERY
            return
        option = self.options[(t - self.probe_start) // self.PROBE]
        self.times.setdefault(option, []).append(now - self._t0)
        if t + 1 == self.probe_start + self.PROBE * len(self.options):
            median = {o: sorted(v)[len(v) // 2] for o, v in self.times.items()}
            # More threads must win clearly: a narrow win in a probe turns into a loss over the next
            # thousand steps as soon as the other program's share of the cores shifts.
            best = self.options[-1] if median[self.options[-1]] * self.MARGIN < median[1] else 1
            self.interval = min(2 * self.interval, self.PROBE_MAX) if best == self.chosen else self.PROBE_EVERY
            self.chosen, self.expected = best, median[best]
            self.probe_start, self.next_probe, self._window = None, t + 1 + self.interval, 0
            self.history.append(best)
            torch.set_num_threads(best)

    def close(self) -> None:
        if self.options:
            torch.set_num_threads(self.before)
