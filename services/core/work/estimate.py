"""How long work will take, learned from recent calls: for deadline admission and retry hints.

A call of `work` w (images x pixels / 512^2) running n steps costs about O(w) + n x S(w): a per-call
part O (prompt encoding, VAE, images in and out) and a per-step part S, each growing with w. The
engine times every step of a call, so each observation gives both: S from its clean steps (every
step after the first; the first also carries the call's setup) and O as the rest.

Predictions are lower bounds, so a request is refused only when even its cheapest plausible cost
misses its deadline:
- within a size class (half an octave of work) the fastest recent observation counts, so a call
  that ran under contention (another process on the device, a busy CPU) never raises the estimate
  beyond what an uncontended call of that size cost;
- a class of work w bounds any work x by min(1, x / w) of its cost (costs that grow with work can
  only be that low or higher); beyond the largest class seen, the line through the two largest
  classes extends it (per-step costs grow at least that fast as work grows);
- observations expire (a window of recent calls, and an age limit), so what the service learnt
  under different conditions fades; with none left, nothing is refused.

The step engine also reports every UNet call: its latent size, rows and time. A call of a size costs
no less with more rows, and a row's share only falls as calls grow (batching amortises): from the
fastest recent call of each row count, that bounds a call of any row count. A request in a crowd
runs, at each of its steps, in a call with at least its own rows (the loop may leave rows of its size
out of a call, see engine/loop.py), and other sizes' calls take turns with it.

Whether bigger calls still pay (for the loop's choice of rows) comes from the same fastest calls: the
line through them gives a per-call and a per-row part.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass

_REFERENCE_PIXELS = 512 * 512
# Lower bounds are shrunk by this much before anything is refused: timing on shared machines is noisy.
SAFETY = 0.8


def steps_run(spec) -> int:
    return spec.steps_run


def work(specs: list) -> float:
    return sum(len(spec.seeds) * spec.width * spec.height / _REFERENCE_PIXELS for spec in specs)


@dataclass(frozen=True)
class Observation:
    at: float  # clock time it finished
    work: float
    steps: int  # steps it ran (step callbacks)
    seconds: float  # the whole call
    step_s: float | None  # its typical clean step (median of steps after the first); None with one step

    @property
    def size_class(self) -> int:
        return round(2 * math.log2(max(self.work, 1e-6)))

    @property
    def overhead_s(self) -> float | None:
        return None if self.step_s is None else max(0.0, self.seconds - self.steps * self.step_s)

    def bound(self, x: float, steps: int) -> float:
        """A lower bound for a call of work x and `steps` steps, from this observation alone."""
        scale = min(1.0, x / self.work) if self.work > 0 else 1.0
        if self.step_s is None:  # one step: overhead and step together; more steps cost at least as much
            return scale * self.seconds * min(1.0, steps / self.steps)
        return scale * (self.overhead_s + steps * self.step_s)


def size_class(pixels: int) -> int:
    """Half an octave of latent pixels."""
    return round(2 * math.log2(max(pixels, 1)))


class WorkEstimator:
    def __init__(self, window: int = 64, max_age_s: float = 900.0, clock=time.monotonic):
        self._seen: deque[Observation] = deque(maxlen=window)
        self._steps: deque[tuple[float, int, int, float]] = deque(maxlen=4 * window)  # at, class, rows, seconds
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._moves: dict[bool, float] = {}  # from disk? -> seconds a model took to reach the device (average)

    def observe_model_move(self, from_disk: bool, seconds: float) -> None:
        """A model reached the device in `seconds`: loaded from disk, or copied from host memory."""
        with self._lock:
            was = self._moves.get(from_disk)
            self._moves[from_disk] = seconds if was is None else 0.7 * was + 0.3 * seconds

    def model_move_s(self, from_disk: bool) -> float:
        """What a switch to a model not on the device costs: a copy from host memory, or a load from disk
        (before any was seen: a load's time is the best guess for a copy, 0 before any load)."""
        with self._lock:
            return self._moves.get(from_disk, self._moves.get(True, 0.0))

    def observe(self, specs: list, seconds: float, step_seconds: list[float] | None = None) -> None:
        """A call of these specs (one batch) took `seconds`, its steps the given durations (in order)."""
        w = work(specs)
        steps = len(step_seconds) if step_seconds else max(steps_run(spec) for spec in specs)
        if w <= 0 or seconds <= 0 or steps < 1:
            return
        clean = (step_seconds or [])[1:]
        step_s = statistics.median(clean) if clean else None
        with self._lock:
            self._seen.append(Observation(self._clock(), w, steps, seconds, step_s))

    def observe_step(self, pixels: int, rows: int, seconds: float) -> None:
        """One step-engine UNet call over `rows` rows of `pixels` latent pixels took `seconds`."""
        if rows > 0 and seconds > 0:
            with self._lock:
                self._steps.append((self._clock(), size_class(pixels), rows, seconds))

    def _step_costs(self, pixels: int) -> dict[int, float]:
        """Rows -> the fastest recent call of that many rows at this size."""
        cutoff, wanted = self._clock() - self._max_age_s, size_class(pixels)
        fastest: dict[int, float] = {}
        with self._lock:
            while self._steps and self._steps[0][0] < cutoff:
                self._steps.popleft()
            for _at, cls, rows, seconds in self._steps:
                if cls == wanted:
                    fastest[rows] = min(seconds, fastest.get(rows, seconds))
        return fastest

    def step_seconds(self, pixels: int, rows: int) -> float | None:
        """Lower bound for one UNet call of `rows` rows at this latent size: a call costs no less with more
        rows, and a row's share only falls as calls grow. None when no call of this size was seen."""
        seen = self._step_costs(pixels)
        if not seen:
            return None
        return SAFETY * max(s if r <= rows else s * rows / r for r, s in seen.items())

    def in_crowd(self, own: tuple[int, int, int], crowd: list[tuple[int, int, int]]) -> float | None:
        """Lower bound for a step-engine request's run beside a crowd: at each of its steps, one call of its
        size with at least its own rows (rows of its size may sit a call out), and one call for each other
        size running, with at least the fewest rows a request of that size brings.
        Items are (latent pixels, rows, steps still to run); None when nothing of its size was seen."""
        pixels, rows, steps = own
        if self.step_seconds(pixels, rows) is None:
            return None
        total = 0.0
        for step in range(steps):
            by_size = {pixels: rows}
            for other_pixels, other_rows, left in crowd:
                if left > step and other_pixels != pixels:
                    by_size[other_pixels] = min(other_rows, by_size.get(other_pixels, other_rows))
            total += sum(self.step_seconds(p, r) or 0.0 for p, r in by_size.items())
        return total

    def batching_pays(self, pixels: int, fewer: int, more: int) -> bool | None:
        """Whether a call of `more` rows costs a row at least 10% less than a call of `fewer` (at this size),
        by the line through the fastest recent call of each row count; None while fewer than two row
        counts were seen."""
        seen = self._step_costs(pixels)
        if len(seen) < 2:
            return None
        xs, ys = list(seen), list(seen.values())
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        per_row = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
                   / sum((x - mean_x) ** 2 for x in xs))
        per_call = mean_y - per_row * mean_x
        return per_call / more + per_row <= 0.9 * (per_call / fewer + per_row)

    def first_to_leave(self, crowd: list[tuple[int, int, int]]) -> float | None:
        """Lower bound for when the first request of a step-engine crowd is done (and frees its rows)."""
        bounds = [self.step_seconds(pixels, rows) for pixels, rows, _left in crowd]
        if not crowd or None in bounds:
            return None
        return min(bound * left for bound, (_p, _r, left) in zip(bounds, crowd))

    def _recent(self) -> list[Observation]:
        cutoff = self._clock() - self._max_age_s
        with self._lock:
            while self._seen and self._seen[0].at < cutoff:
                self._seen.popleft()
            return list(self._seen)

    def predict(self, specs: list) -> float | None:
        """Lower bound, in seconds, for running these specs as one call; None when nothing recent is known."""
        seen = self._recent()
        if not seen:
            return None
        if not specs:
            return 0.0
        x, steps = work(specs), max(steps_run(spec) for spec in specs)
        classes: dict[int, list[Observation]] = {}
        for obs in seen:
            classes.setdefault(obs.size_class, []).append(obs)
        # The fastest of each size class, then the tightest of those bounds.
        best = max(min(obs.bound(x, steps) for obs in group) for group in classes.values())
        return SAFETY * max(best, self._extrapolated(classes, x, steps))

    @staticmethod
    def _extrapolated(classes: dict[int, list[Observation]], x: float, steps: int) -> float:
        """Beyond the largest size seen: the line through the two largest classes' fastest calls."""
        timed = {k: [o for o in group if o.step_s is not None] for k, group in classes.items()}
        tops = sorted((k for k, group in timed.items() if group), reverse=True)[:2]
        if len(tops) < 2:
            return 0.0
        hi = min(timed[tops[0]], key=lambda o: o.step_s)
        lo = min(timed[tops[1]], key=lambda o: o.step_s)
        if x <= hi.work or hi.work <= lo.work:
            return 0.0
        step_slope = max(0.0, (hi.step_s - lo.step_s) / (hi.work - lo.work))
        over_slope = max(0.0, (hi.overhead_s - lo.overhead_s) / (hi.work - lo.work))
        more = x - hi.work
        return hi.overhead_s + over_slope * more + steps * (hi.step_s + step_slope * more)

    def predict_queue(self, specs: list) -> float | None:
        """Lower bound for specs waiting in a queue: those that could share a call, as one call."""
        groups: dict[tuple, list] = {}
        for spec in specs:
            groups.setdefault(spec.batch_key(), []).append(spec)
        total = 0.0
        for group in groups.values():
            predicted = self.predict(group)
            if predicted is None:
                return None
            total += predicted
        return total
