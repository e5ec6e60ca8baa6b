"""The step engine's policy, from plain data: who joins, who leaves, which rows ride in the next call.

No torch and no model here; the loop (loop.py) asks, the runner (runner.py) executes. What it sees:
- a row: `shape_key` (rows with equal keys can share a UNet call), `latent_shape` (what the row budget
  counts by), `pixels` (latent pixels of one UNet row), `unet_rows` (2 when guided), `calls_left`, `done`;
- a request: `rows`, `arrived` (monotonic seconds), `deadline` (or None), `cancel_requested`.
Every value is read from the rows' current phase at every iteration: a row that changes size is served
at its new size at once.

The rules:
- **Admission** in queue order of the requests whose rows fit their shape's budget (latent pixels x UNet
  rows in one call); a shape with no rows always takes one request, however large. A queued request
  that does not fit may be passed by requests of other shapes (which never take its shape's budget)
  for PASS_S; then nobody passes it until it joins, so it is not starved in turn. A request whose
  LoRAs have no room in the adapter cache (every place used by running requests) waits likewise
  rather than reloading files at every step. After running out
  of device memory a shape's budget is halved for OOM_BACKOFF_S.
- **Time shared by measured cost**: the shapes with rows share the device by the seconds their calls
  took, not by turns (a 2048x2048 call costs a thousand 64x64 ones): the next call is of the shape
  that has had the least time, ties taking turns in the order they appeared; a shape new since the
  last call (a newcomer, or a row that changed size) starts level with the least served, behind it.
- **Rows of a call**: all rows of the shape, unless `choose_rows` (a CPU, where bigger calls may not
  pay). Then, where a bigger call no longer makes a row at least 10% cheaper (`batching_pays`), a
  call takes just enough rows that every request could be done by the longest one's last step, the
  requests with the least slack first (arrival minus the time their remaining steps need): the worst
  latencies fall at about the same throughput. On a GPU every row rides: measured on an H200, taking
  fewer rows cost a fifth of mixed-traffic throughput and did not lower p95.
- **Models** (`model_of`: a shape key's model, when the loop serves several): the calls stay on the model
  of the last call while it has rows, for at most STAY_CALLS calls in a row while another model has rows
  (a switch costs far more than a step); then the model served longest ago has its turn, so none starves.
  Within a model, shapes share time as above.
- **Compiled calls** (`buckets`, --compile's row counts): a call takes the picked requests in the order
  above while their rows fit the largest bucket, so none is bigger than a compiled graph (the first
  request always rides: a request larger than that runs uncompiled); the others ride in the shape's
  next calls. The call is padded up to its bucket, so other requests of the shape whose rows fit in
  the padding ride too: they cost nothing more (even where rows were chosen, as above).
- **Leaving**: a request cancelled or past its deadline leaves before the next call.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

# After running out of device memory, a shape's row budget is halved for this long.
OOM_BACKOFF_S = 60.0
# A queued request that does not fit may be passed by requests of other shapes for this long.
PASS_S = 30.0
# Calls in a row one model may have while another model's rows wait (then it is the other's turn).
STAY_CALLS = 16


@dataclass
class Call:
    """One decided UNet call: its shape, the requests with rows in it, and those rows."""

    key: tuple
    requests: list
    rows: list


def bucket_for(rows: int, buckets: tuple[int, ...]) -> int | None:
    """The smallest bucket that holds `rows` (buckets ascending), or None when none does: the compiled
    graph a call of `rows` runs padded to (engine/graphs.py)."""
    return next((bucket for bucket in buckets if bucket >= rows), None)


def live_rows(request) -> list:
    return [row for row in request.rows if not row.done]


class StepScheduler:
    def __init__(self, budget: int, choose_rows: bool = False,
                 batching_pays: Callable[[int, int, int], bool | None] | None = None, clock=time.monotonic,
                 model_of: Callable[[tuple], object] | None = None, buckets: tuple[int, ...] | None = None):
        self.budget = budget  # latent pixels x UNet rows of one call
        # The compiled graphs' UNet rows (--compile), ascending; None: calls of any size
        self.buckets = tuple(sorted(buckets)) if buckets else None
        self.model_of = model_of  # a shape key's model; None: one model
        self._model, self._stay = None, 0  # the last call's model, and its calls in a row
        self.choose_rows, self.batching_pays, self.clock = choose_rows, batching_pays, clock
        self._served: dict[tuple, float] = {}  # shape key -> device seconds its calls have had
        self._picked: dict[tuple, int] = {}  # shape key -> the call it last had (ties take turns)
        self._calls = 0
        self._squeezed: dict[tuple, float] = {}  # latent shape -> until when its budget is halved
        self._call_s: dict[tuple, float] = {}  # shape key -> recent seconds per call (moving average)

    # --- admission
    def budget_of(self, latent_shape: tuple) -> int:
        return self.budget // 2 if self._squeezed.get(latent_shape, 0) > self.clock() else self.budget

    def used(self, latent_shape: tuple, requests) -> int:
        return sum(row.pixels * row.unet_rows for request in requests for row in live_rows(request)
                   if row.latent_shape == latent_shape)

    def fits(self, latent_shape: tuple, cost: int, requests) -> bool:
        """Whether a request of `cost` (latent pixels x UNet rows) at this shape may join now."""
        return self._room(latent_shape, cost, self.used(latent_shape, requests))

    def _room(self, latent_shape: tuple, cost: int, used: int) -> bool:
        return used == 0 or used + cost <= self.budget_of(latent_shape)

    def pick_waiting(self, waiting: list[tuple[tuple, int, float, bool]], requests, now: float) -> int | None:
        """Which queued request joins now, by its index in `waiting` ((latent shape, cost, arrived, ready)
        in queue order; ready: what else it needs is free, its LoRAs' room in the adapter cache), or
        None: the first that fits, passing only those of other shapes that do not fit and have waited
        less than PASS_S."""
        blocked = set()  # shapes of requests ahead that do not fit: nobody of their shape passes them
        used: dict[tuple, int] = {}  # latent shape -> what the running rows take of its budget
        for index, (shape, cost, arrived, ready) in enumerate(waiting):
            if shape not in used:
                used[shape] = self.used(shape, requests)
            if ready and shape not in blocked and self._room(shape, cost, used[shape]):
                return index
            if now - arrived >= PASS_S:
                return None
            blocked.add(shape)
        return None

    def squeeze(self, latent_shape: tuple) -> None:
        """A call of this shape ran out of device memory: half its budget for a while."""
        self._squeezed[latent_shape] = self.clock() + OOM_BACKOFF_S

    # --- leaving
    @staticmethod
    def leaving(requests, now: float) -> list[tuple[object, str]]:
        """(request, "cancelled" or "expired") for each that leaves before the next call."""
        out = []
        for request in requests:
            if request.cancel_requested:
                out.append((request, "cancelled"))
            elif request.deadline is not None and now >= request.deadline:
                out.append((request, "expired"))
        return out

    # --- the next call
    def next_call(self, requests) -> Call | None:
        """The next UNet call over `requests` (in admission order), or None when no row is left to step."""
        requests = list(requests)
        live = list(dict.fromkeys(row.shape_key for request in requests for row in live_rows(request)))
        if not live:
            return None
        key = self._next_shape(live)
        picked = self._pick(key, [r for r in requests if any(row.shape_key == key for row in live_rows(r))])
        picked = self._within_buckets(key, picked, requests)
        rows = [row for request in picked for row in live_rows(request) if row.shape_key == key]
        return Call(key, picked, rows)

    def observed(self, key: tuple, seconds: float) -> None:
        """A call of this shape took `seconds`: its share of time, and the moving average that orders
        requests by slack."""
        self._served[key] = self._served.get(key, 0.0) + seconds
        was = self._call_s.get(key)
        self._call_s[key] = seconds if was is None else 0.8 * was + 0.2 * seconds

    def _next_shape(self, live: list) -> tuple:
        """The live shape that has had the least device time (ties: the one served longest ago)."""
        self._served = {key: s for key, s in self._served.items() if key in live}
        self._picked = {key: n for key, n in self._picked.items() if key in live}
        self._call_s = {key: s for key, s in self._call_s.items() if key in live}
        level = min(self._served.values(), default=0.0)
        for key in live:  # newcomers start level with the least served, after those already waiting
            if key not in self._picked:
                self._served[key], self._picked[key] = max(level, self._served.get(key, 0.0)), self._calls
        key = min(self._of_model(live), key=lambda k: (self._served[k], self._picked[k]))
        if self.model_of is not None:
            model = self.model_of(key)
            self._model, self._stay = model, (self._stay + 1 if model == self._model else 1)
        self._calls += 1
        self._picked[key] = self._calls
        return key

    def _of_model(self, live: list) -> list:
        """The live shapes of the model whose turn it is (see the module's docstring)."""
        if self.model_of is None:
            return live
        models: dict = {}
        for key in live:
            models.setdefault(self.model_of(key), []).append(key)
        if len(models) == 1:
            return live
        if self._model in models and self._stay < STAY_CALLS:
            return models[self._model]
        others = [model for model in models if model != self._model]
        # The model whose shapes were last called longest ago (never: first).
        turn = min(others, key=lambda model: max(self._picked[k] for k in models[model]))
        return models[turn]

    def _within_buckets(self, key: tuple, picked: list, requests: list) -> list:
        """The picked requests, in order, while their rows fit the largest bucket (the first always); then
        any other request of the shape whose rows fit in the padding up to the call's bucket."""
        if self.buckets is None:
            return picked

        def rows_of(request) -> int:
            return sum(row.unet_rows for row in live_rows(request) if row.shape_key == key)

        kept, taken = [], 0
        for request in picked:
            if kept and taken + rows_of(request) > self.buckets[-1]:
                continue  # a smaller request further on may still fit
            kept.append(request)
            taken += rows_of(request)
        bucket = bucket_for(taken, self.buckets)
        if bucket is None:  # the first request alone is bigger than every graph: it runs uncompiled
            return kept
        for request in requests:
            rows = rows_of(request)
            if rows and request not in kept and taken + rows <= bucket:
                kept.append(request)
                taken += rows
        return kept

    def _pick(self, key: tuple, group: list) -> list:
        """The requests of one shape whose rows ride in this call (see the module's docstring)."""
        def rows_of(request) -> int:
            return sum(row.unet_rows for row in live_rows(request) if row.shape_key == key)

        def left(request) -> int:
            return max(row.calls_left for row in live_rows(request) if row.shape_key == key)

        rows = sum(rows_of(r) for r in group)
        longest = max(left(r) for r in group)
        # Rows per call with which every request could be done by the longest one's last step.
        need = math.ceil(sum(left(r) * rows_of(r) for r in group) / longest)
        if need >= rows or not self.choose_rows or self.batching_pays is None:
            return group
        pixels = next(row.pixels for row in live_rows(group[0]) if row.shape_key == key)
        if self.batching_pays(pixels, need, rows) is not False:
            return group
        unit = self._call_s.get(key, 0.0)  # before the first call: arrival order
        picked, taken = [], 0
        for request in sorted(group, key=lambda r: r.arrived - left(r) * unit):
            if taken >= need:
                break
            picked.append(request)
            taken += rows_of(request)
        return picked
