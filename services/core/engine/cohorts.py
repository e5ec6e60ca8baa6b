"""Cohorts: rows of one UNet call that step as one, one scheduler instance over their latents stacked.

Rows that share a scheduler class, its config and state, their timesteps, the step they are at, their
guidance, their step's arguments and what their conditioners do after a step (a crowd that arrived
together: one request's images, or requests admitted at once) are stepped by one scheduler over their
latents stacked (B, C, h, w). diffusers' schedulers step batches elementwise, and each row's noise comes
from its own generator (a list of generators: randn_tensor draws row i from generator i), so every image
is exactly what it is stepped alone. The UNet call is the one the rows would have had alone: the same
rows in the same order (a cohort is always a run of consecutive rows of the call).

- A cohort **forms** from consecutive rows of a call whose schedulers are in equal state with nothing
  batched in it: fresh ones at the start of a phase, or stateless ones (Euler a, DDIM) at equal steps.
- It **ends** with its phase: each row keeps its row of the cohort's latents and goes on alone.
- It **splits** when its rows no longer step as one run (a request left or was cancelled, rode in another
  call, or another row came between them): each part goes on with its own copy of the scheduler whose
  batched state (model outputs, previous samples, derivatives) is sliced to the part's rows.
Rows whose scheduler or conditioners cannot step batched (models.schedulers.BATCHED_STEPS) step alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..models.schedulers import BATCHED_STEPS
from .conditioners import Conditioner

if TYPE_CHECKING:
    import torch

    from .rows import Row


class Cohort:
    """Rows stepped as one: their scheduler, their latents stacked in row order, their step's arguments.

    `alone`: a row stepping on its own, seen as a cohort of one for the step's arithmetic (its latents
    and scheduler stay the row's; nothing is registered on it)."""

    def __init__(self, rows: list[Row], scheduler, latents: torch.Tensor, alone: bool = False):
        self.rows, self.scheduler, self.latents, self.alone = rows, scheduler, latents, alone
        self.timestep = None  # the step's timestep, as its scheduler takes it (denoise.unet_step sets it)
        self.cache: dict = {}  # what conditioners stack once for the cohort's life (by conditioner class)
        self._extra: tuple = ((), None)  # the extra channels of its last call: (their tensors' ids, stacked)
        first = rows[0].phase.step_kwargs
        if alone:
            self.step_kwargs = first
        else:
            self.step_kwargs = dict(first)
            if first.get("generator") is not None:  # each row's noise from its own generator
                self.step_kwargs["generator"] = [row.phase.step_kwargs["generator"] for row in rows]
            for slot, row in enumerate(rows):
                row.phase.scheduler = scheduler  # what row.scheduler reads (add_noise after a step)
                row.cohort, row.slot = self, slot

    @classmethod
    def of(cls, row: Row) -> "Cohort":
        return cls([row], row.phase.scheduler, row._latents, alone=True)

    def __len__(self) -> int:
        return len(self.rows)

    def stepped(self, latents: torch.Tensor) -> None:
        """The latents after the scheduler's step (and after conditioners' changes)."""
        if self.alone:
            self.rows[0].latents = latents
        self.latents = latents

    def extra_channels(self) -> torch.Tensor | None:
        """The rows' extra UNet input channels (9-channel inpainting), stacked in UNet row order: made
        again only when a conditioner gives other tensors than last call's."""
        import torch

        per_row = [[c for c in (cond.channels(row) for cond in row.conditioners) if c is not None]
                   for row in self.rows]
        if not per_row[0]:
            return None
        ids = tuple(id(t) for extra in per_row for t in extra)
        if ids != self._extra[0]:
            rows = [extra[0] if len(extra) == 1 else torch.cat(extra, dim=1) for extra in per_row]
            self._extra = (ids, rows[0] if len(rows) == 1 else torch.cat(rows))
        return self._extra[1]

    def after_step(self) -> None:
        """Conditioners' changes after the scheduler's step: each row's own when alone, else each
        conditioner class's batched one over the cohort (its rows carry the same classes in order)."""
        if self.alone:
            row = self.rows[0]
            for cond in row.conditioners:
                cond.after_step(row)
            return
        for j, cond in enumerate(self.rows[0].conditioners):
            if _changes_after_step(type(cond)):
                type(cond).after_cohort_step(self, [row.conditioners[j] for row in self.rows])

    def advance(self) -> None:
        """One step done for every row; past the phase's last step the cohort ends."""
        for row in self.rows:
            row.advance()
        if not self.alone and self.rows[0].index == 0:  # a new phase: each row goes on with its own latents
            for slot, row in enumerate(self.rows):
                row.cohort = None
                row.latents = self.latents[slot: slot + 1]


def arrange(rows: list[Row]) -> list[Cohort]:
    """The call's rows as cohorts of consecutive rows, in call order (rows alone as cohorts of one):
    cohorts that no longer step as one run split, rows that can step as one form new cohorts."""
    runs: list[list[Row]] = []  # consecutive rows of one cohort, in slot order (rows that left skipped)
    for row in rows:
        last = runs[-1][-1] if runs else None
        if (row.cohort is not None and last is not None and last.cohort is row.cohort
                and row.slot > last.slot):
            runs[-1].append(row)
        else:
            runs.append([row])
    _split_broken(runs)
    out: list[Cohort] = []
    pending: list[Row] = []  # consecutive rows alone that may form a cohort
    for run in runs:
        if run[0].cohort is not None:
            out += _formed(pending)
            pending = []
            out.append(run[0].cohort)
        elif pending and not _joins(pending[0], run[0]):
            out += _formed(pending)
            pending = [run[0]]
        else:
            pending.append(run[0])
    return out + _formed(pending)


def _split_broken(runs: list[list[Row]]) -> None:
    """Cohorts whose rows are not one run of this call become one cohort per run, and one for their rows
    not in the call (they step later, or have left); a part of one row goes on alone."""
    parts: dict[int, list[list[Row]]] = {}
    cohorts = {}
    for run in runs:
        cohort = run[0].cohort
        if cohort is not None:
            parts.setdefault(id(cohort), []).append(run)
            cohorts[id(cohort)] = cohort
    for key, found in parts.items():
        cohort = cohorts[key]
        if len(found) == 1 and len(found[0]) == len(cohort):
            continue
        present = {id(row) for run in found for row in run}
        absent = [row for row in cohort.rows if id(row) not in present]
        for part in [*found, *([absent] if absent else [])]:
            _part(cohort, part)


def _part(cohort: Cohort, rows: list[Row]) -> None:
    """Rows of `cohort` going on as a cohort of their own (alone if one), the scheduler's batched state
    sliced to them."""
    import torch

    index = torch.tensor([row.slot for row in rows], device=cohort.latents.device)
    scheduler = _sliced(cohort.scheduler, index, cohort.latents.shape)
    latents = _rows_of(cohort.latents, index)
    for row in rows:
        row.cohort = None
    if len(rows) == 1:
        rows[0].phase.scheduler, rows[0].latents = scheduler, latents
    else:
        Cohort(rows, scheduler, latents)


def _formed(rows: list[Row]) -> list[Cohort]:
    """Consecutive rows alone that `_joins` as one cohort (two or more), else each alone."""
    import torch

    if len(rows) < 2:
        return [Cohort.of(row) for row in rows]
    return [Cohort(rows, rows[0].phase.scheduler, torch.cat([row._latents for row in rows]))]


def _joins(first: Row, row: Row) -> bool:
    """Whether `row` may step in one cohort with `first` (both alone, consecutive in the call)."""
    if first.cohort is not None or row.cohort is not None or not (first.phase.calls and row.phase.calls):
        return False
    a, b = first.phase.scheduler, row.phase.scheduler
    if type(a) is not type(b) or type(a).__name__ not in BATCHED_STEPS:
        return False
    if (first.index != row.index or first.guidance != row.guidance or first.guided != row.guided
            or first.phase.timestep_values != row.phase.timestep_values
            or [type(c) for c in first.conditioners] != [type(c) for c in row.conditioners]
            or not all(_batches(type(c)) for c in row.conditioners)):
        return False
    kwargs_a, kwargs_b = first.phase.step_kwargs, row.phase.step_kwargs
    if kwargs_a.keys() != kwargs_b.keys() or any(kwargs_a[k] != kwargs_b[k] for k in kwargs_a if k != "generator"):
        return False
    shape = first._latents.shape
    if _holds_batched(a.__dict__, shape) or _holds_batched(b.__dict__, shape):
        return False  # state of its own rows (a multistep scheduler past its first step): cannot be shared
    return _equal(a.__dict__, b.__dict__)  # its config too (_internal_dict)


def _changes_after_step(kind: type) -> bool:
    return kind.after_step is not Conditioner.after_step


def _batches(kind: type) -> bool:
    """Whether rows with this conditioner may step in a cohort: it changes nothing after a step, or says
    how to change a cohort (`after_cohort_step`)."""
    return not _changes_after_step(kind) or kind.after_cohort_step is not Conditioner.after_cohort_step


def _is_batched(value, shape) -> bool:
    """A tensor of rows' latents' shape (any number of rows): state of the rows it was stepped with."""
    import torch

    return isinstance(value, torch.Tensor) and value.dim() == len(shape) and value.shape[1:] == shape[1:]


def _holds_batched(value, shape) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_holds_batched(v, shape) for v in value)
    if isinstance(value, dict):
        return any(_holds_batched(v, shape) for v in value.values())
    return _is_batched(value, shape)


def _sliced(scheduler, index: torch.Tensor, shape):
    """A copy of `scheduler` whose batched state is its rows `index`; the rest (config, the schedule's
    tensors, which schedulers never change in place) shared, and lists copied (they are changed in place)."""
    def take(value):
        if _is_batched(value, shape) and value.shape[0] == shape[0]:
            return _rows_of(value, index.to(value.device))
        if isinstance(value, list):
            return [take(v) for v in value]
        if isinstance(value, tuple):
            return tuple(take(v) for v in value)
        if type(value) is dict:  # not a config (a FrozenDict, never changed)
            return {k: take(v) for k, v in value.items()}
        return value

    copy = object.__new__(type(scheduler))
    copy.__dict__.update({key: take(value) for key, value in scheduler.__dict__.items()})
    return copy


def _rows_of(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Those rows of a tensor, in its memory layout (encoded images' latents are channels-last, and the
    UNet's convolutions follow the layout of their input)."""
    import torch

    rows = tensor.index_select(0, index)
    if tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=torch.channels_last):
        rows = rows.contiguous(memory_format=torch.channels_last)
    return rows


def _equal(a, b) -> bool:
    """Deep equality of scheduler state: tensors and arrays by value, containers item by item."""
    import torch

    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - objects without a meaningful equality are not known to be equal
        return False
