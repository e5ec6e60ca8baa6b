"""A batch count (AUTOMATIC1111's n_iter): one generation run as consecutive requests of batch size images
each, and what the Skip and Interrupt buttons do to such a run.

A1111's rule (modules/processing.py): the images' seeds are seed, seed + 1, ... over the whole run, and
iteration i takes all_seeds[i * batch_size:(i + 1) * batch_size], so its first seed is seed + i * batch_size
(a request's images take seed, seed + 1, ... from its first). A random seed (-1) is picked once for the run.
Skip ends the current iteration (the rest still run); Interrupt ends the run; both are normal outcomes.
"""

from __future__ import annotations

import random
import threading

from imagegen.v1.contract import MAX_SEED

from .masks import InputError

MAX_BATCH_COUNT = 100  # A1111's Batch count slider
MAX_RANDOM_SEED = 4294967294  # A1111's range for a random seed (get_fixed_seed)


def iteration_seeds(seed: int, count: int, size: int) -> list[int]:
    """Each iteration's first seed: seed + i * size."""
    return [seed + i * size for i in range(count)]


def first_seeds(seed: int | None, count: int, size: int) -> list[int | None]:
    """The tabs' iterations' first seeds; `seed` None: random. One iteration keeps None (the service picks,
    and says which); several share one random seed picked here, as A1111 does. InputError when the last
    iteration's seeds would pass the largest seed."""
    if count <= 1:
        return [seed]
    if seed is None:
        seed = random.randrange(MAX_RANDOM_SEED)
    if seed + count * size - 1 > MAX_SEED:
        raise InputError(f"seed {seed} + batch count x batch size passes the largest seed, {MAX_SEED}")
    return iteration_seeds(seed, count, size)


def batch_count(values: dict) -> int:
    """The tab's batch count (left out, None or 0: 1); InputError outside 1..MAX_BATCH_COUNT."""
    value = values.get("batch_count") or 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 1 <= value <= MAX_BATCH_COUNT:
        raise InputError(f"batch_count must be a whole number 1..{MAX_BATCH_COUNT}, not {str(value)[:20]}")
    return int(value)


def iterations(request, count: int) -> list:
    """`request` for each of `count` iterations: copies whose seeds follow A1111's rule (the request's
    num_images is the batch size; its seed unset: random)."""
    params = request.params
    seed = params.seed if params.HasField("seed") else None
    out = []
    for first in first_seeds(seed, count, params.num_images or 1):
        copy = type(request)()
        copy.CopyFrom(request)
        if first is not None:
            copy.params.seed = first
        out.append(copy)
    return out


def reused_seed(seeds: str | None, index: int | None) -> int:
    """♻️: the seed of the image picked in the gallery (`index`; None: the first) among the last
    generation's seeds as the tab shows them ("5, 6, 7"); -1 (random) when there were none."""
    shown = [part.strip() for part in (seeds or "").split(",") if part.strip().isdigit()]
    if not shown:
        return -1
    return int(shown[min(max(index or 0, 0), len(shown) - 1)])


class BatchRun:
    """One tab's run of a batch count, as its Skip and Interrupt buttons reach it (from other threads)."""

    def __init__(self, count: int):
        self.count = count
        self.done = 0  # iterations that gave their images
        self.skipped = 0
        self.interrupted = False
        self._skip = False  # asked to skip the current iteration
        self._job = None  # the hub's job of the current iteration
        self._lock = threading.Lock()

    def begin(self, job) -> None:
        """`job` runs the next iteration; a Skip asked for before this iteration began does not reach it
        (A1111 clears it at each iteration's start), an Interrupt does."""
        with self._lock:
            self._skip, self._job = False, job
            if self.interrupted:
                job.stream.cancel()

    def end(self) -> bool:
        """The current iteration has ended; True if it ended because it was skipped."""
        with self._lock:
            skipped, self._skip, self._job = self._skip, False, None
        return skipped

    def skip(self) -> None:
        with self._lock:
            self._skip = True
            if self._job is not None:
                self._job.stream.cancel()

    def interrupt(self) -> None:
        with self._lock:
            self.interrupted = True
            if self._job is not None:
                self._job.stream.cancel()

    def summary(self, images: int) -> str:
        """The run's outcome in words for the page (Interrupted is a normal end, not an error)."""
        return outcome(self.count, self.done, self.skipped, self.interrupted, images)


def outcome(count: int, done: int, skipped: int, interrupted: bool, images: int) -> str:
    made = f"{images} image{'s' if images != 1 else ''}"
    parts = [f"{done} of {count} batches done ({made})" if count > 1 else made]
    if skipped:
        parts.append(f"{skipped} skipped")
    return ("Interrupted: " if interrupted else "Done: ") + ", ".join(parts) + "."
