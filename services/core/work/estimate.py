"""How long work will take, learned from the work that finished: for deadlines and retry hints.

A pipeline call costs about steps x (a + b x work), where `work` is images x pixels / 512^2 and
a (per-step overhead) and b are unknown. Each finished call with work w and seconds-per-step y
gives a lower bound for any work x: y x min(1, x / w). The estimate is the largest of these bounds
over recent calls, so it can be too low (a request is then computed and its deadline stops it) but
is never too high in that model: a request is not refused when it could have made its deadline.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

_REFERENCE_PIXELS = 512 * 512
# Estimates are shrunk by this much before refusing anything: timing on shared machines is noisy.
SAFETY = 0.8


def steps_run(spec) -> int:
    return spec.steps_run


def work(specs: list) -> float:
    return sum(len(spec.seeds) * spec.width * spec.height / _REFERENCE_PIXELS for spec in specs)


class WorkEstimator:
    def __init__(self, window: int = 64):
        self._calls: deque[tuple[float, float]] = deque(maxlen=window)  # (work, seconds per step)
        self._lock = threading.Lock()

    def observe(self, specs: list, seconds: float) -> None:
        """A pipeline call of these specs (one batch) took `seconds`."""
        w = work(specs)
        if w > 0 and seconds > 0:
            with self._lock:
                self._calls.append((w, seconds / steps_run(specs[0])))

    def predict(self, specs: list) -> float | None:
        """Lower bound, in seconds, for running these specs as one call; None before any data."""
        with self._lock:
            calls = list(self._calls)
        if not calls or not specs:
            return None if not calls else 0.0
        x = work(specs)
        per_step = max(y * min(1.0, x / w) for w, y in calls)
        return SAFETY * per_step * max(steps_run(spec) for spec in specs)

    def predict_queue(self, specs: list) -> float | None:
        """Lower bound for specs waiting in a queue: those that could share a call, as one call."""
        groups = defaultdict(list)
        for spec in specs:
            groups[spec.batch_key()].append(spec)
        total = 0.0
        for group in groups.values():
            predicted = self.predict(group)
            if predicted is None:
                return None
            total += predicted
        return total
