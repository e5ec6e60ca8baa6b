"""How long work will take, learned from the work that finished: for deadlines and retry hints."""

from __future__ import annotations

import threading

_REFERENCE_PIXELS = 512 * 512


def work_units(spec) -> float:
    """Denoising steps actually run x images x size relative to 512x512."""
    steps = spec.steps if spec.strength is None else max(1, int(spec.steps * spec.strength))
    return steps * len(spec.seeds) * spec.width * spec.height / _REFERENCE_PIXELS


class WorkEstimator:
    """An exponential moving average of seconds per work unit, over finished pipeline calls.

    Measured on real batches, so it includes what batching saves at the current load.
    """

    def __init__(self, smoothing: float = 0.3):
        self.smoothing = smoothing
        self._seconds_per_unit: float | None = None
        self._lock = threading.Lock()

    def observe(self, specs: list, seconds: float) -> None:
        units = sum(work_units(spec) for spec in specs)
        if units <= 0:
            return
        sample = seconds / units
        with self._lock:
            previous = self._seconds_per_unit
            self._seconds_per_unit = sample if previous is None else previous + self.smoothing * (sample - previous)

    def predict(self, specs: list) -> float | None:
        """Seconds to run these specs, or None before anything has been measured."""
        with self._lock:
            rate = self._seconds_per_unit
        if rate is None:
            return None
        return rate * sum(work_units(spec) for spec in specs)
