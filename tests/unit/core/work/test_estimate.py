"""WorkEstimator: lower bounds that separate per-call and per-step cost, ignore contention, and forget."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.work.estimate import SAFETY, WorkEstimator, work


@dataclass(frozen=True)
class Spec:
    width: int = 512
    height: int = 512
    images: int = 1
    steps_run: int = 20

    @property
    def seeds(self):
        return list(range(self.images))

    def batch_key(self):
        return (self.width, self.height, self.steps_run)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@dataclass(frozen=True)
class Cost:
    """A device where a call costs overhead(w) + steps x step(w), both affine in the work w."""

    call: float = 0.13
    call_per_work: float = 0.0
    step: float = 0.01
    step_per_work: float = 0.08

    def step_s(self, w):
        return self.step + self.step_per_work * w

    def total(self, w, steps):
        return self.call + self.call_per_work * w + steps * self.step_s(w)

    def run(self, estimator, spec, slower: float = 1.0):
        """Observe one call of `spec`, `slower` times its true cost (contention)."""
        w, steps = work([spec]), spec.steps_run
        first = (self.call + self.call_per_work * w + self.step_s(w)) * slower
        durations = [first] + [self.step_s(w) * slower] * (steps - 1)
        estimator.observe([spec], sum(durations), durations)


def test_nothing_is_predicted_before_any_call_or_after_they_all_expire():
    clock = Clock()
    estimator = WorkEstimator(max_age_s=60, clock=clock)
    assert estimator.predict([Spec()]) is None and estimator.predict_queue([Spec()]) is None
    Cost().run(estimator, Spec())
    assert estimator.predict([Spec()]) > 0 and estimator.predict([]) == 0.0
    clock.now += 61
    assert estimator.predict([Spec()]) is None


def test_per_call_and_per_step_cost_are_told_apart():
    cost, estimator = Cost(), WorkEstimator()
    cost.run(estimator, Spec(steps_run=10))
    for steps in (1, 20, 150):
        predicted = estimator.predict([Spec(steps_run=steps)])
        assert predicted == pytest.approx(SAFETY * cost.total(1.0, steps))


def test_after_many_one_step_calls_a_longer_call_is_not_overestimated():
    # The red team: 64 one-step 512x512 calls, then a 20-step one was predicted at 3.6 s (it took 2.0 s).
    cost, estimator = Cost(), WorkEstimator()
    for _ in range(64):
        cost.run(estimator, Spec(steps_run=1))
    assert estimator.predict([Spec(steps_run=20)]) <= cost.total(1.0, 20)


def test_after_a_burst_of_large_calls_a_small_one_is_predicted_small():
    # The red team: after large requests, a 64x64 10-step img2img was predicted at 34.5 s (it takes 0.06 s).
    cost, estimator = Cost(), WorkEstimator()
    for _ in range(20):
        cost.run(estimator, Spec(1024, 1024, images=4, steps_run=30))
    small = Spec(64, 64, steps_run=8)
    assert estimator.predict([small]) <= cost.total(work([small]), 8)


def test_calls_slowed_by_contention_do_not_raise_the_estimate():
    cost, clean, mixed = Cost(), WorkEstimator(), WorkEstimator()
    for spec in (Spec(256, 256), Spec(), Spec(64, 64, steps_run=4)):
        cost.run(clean, spec)
        cost.run(mixed, spec)
        for slower in (1.5, 3.0, 10.0):  # the same sizes, run while something else held the device
            cost.run(mixed, spec, slower)
    for query in (Spec(), Spec(128, 128, steps_run=50), Spec(1024, 1024, images=2)):
        assert mixed.predict([query]) == pytest.approx(clean.predict([query]))


def test_larger_work_than_seen_extends_the_two_largest_sizes():
    cost, estimator = Cost(), WorkEstimator()
    cost.run(estimator, Spec(256, 256))
    cost.run(estimator, Spec(512, 512))
    big = Spec(1024, 1024, images=2)  # 8 x the largest work seen
    predicted = estimator.predict([big])
    assert SAFETY * cost.total(1.0, 20) < predicted <= cost.total(8.0, 20)
    assert predicted == pytest.approx(SAFETY * cost.total(8.0, 20))  # affine costs: exact


def test_queued_specs_that_share_a_call_count_as_one():
    cost, estimator = Cost(), WorkEstimator()
    cost.run(estimator, Spec())
    one = estimator.predict([Spec()])
    assert estimator.predict_queue([Spec(), Spec()]) == pytest.approx(estimator.predict([Spec(), Spec()]))
    assert estimator.predict_queue([Spec(), Spec(steps_run=5)]) > one


affine = st.builds(Cost, call=st.floats(0.001, 2), call_per_work=st.floats(0, 2), step=st.floats(0, 0.5),
                   step_per_work=st.floats(0, 0.5))
shapes = st.builds(Spec, width=st.sampled_from([64, 256, 512, 1024]), height=st.sampled_from([64, 512, 768]),
                   images=st.integers(1, 4), steps_run=st.integers(1, 60))


@settings(max_examples=200, deadline=None)
@given(affine, st.lists(st.tuples(shapes, st.floats(1.0, 5.0)), min_size=1, max_size=12), shapes)
def test_a_prediction_never_exceeds_the_true_cost_when_each_size_ran_once_uncontended(cost, calls, query):
    estimator = WorkEstimator()
    for spec, slower in calls:
        cost.run(estimator, spec)  # one clean call of each size seen...
        cost.run(estimator, spec, slower)  # ... among others slowed by contention
    assert estimator.predict([query]) <= SAFETY * cost.total(work([query]), query.steps_run) * (1 + 1e-9) + 1e-12


def test_a_step_s_bound_comes_from_the_fastest_calls_of_its_size():
    clock = Clock()
    estimator = WorkEstimator(clock=clock)
    assert estimator.step_seconds(1024, 1) is None
    # 1 row 0.10 s, 4 rows 0.20 s, 4 rows again under contention 0.9 s.
    for rows, seconds in ((1, 0.10), (4, 0.20), (4, 0.90)):
        estimator.observe_step(1024, rows, seconds)
    assert estimator.step_seconds(1024, 1) == pytest.approx(SAFETY * 0.10)
    assert estimator.step_seconds(1024, 2) == pytest.approx(SAFETY * 0.10)  # at least one row's call
    assert estimator.step_seconds(1024, 8) == pytest.approx(SAFETY * 0.20)  # contention never raises it
    assert estimator.step_seconds(4096, 1) is None  # another size class: nothing known
    clock.now += 901
    assert estimator.step_seconds(1024, 1) is None  # forgotten


@given(st.floats(0.001, 0.05), st.floats(0.0, 0.5), st.integers(1, 16), st.integers(1, 60),
       st.lists(st.tuples(st.sampled_from([1024, 4096]), st.integers(1, 16), st.integers(1, 60)), max_size=6))
@settings(max_examples=200, deadline=None)
def test_in_crowd_is_a_lower_bound_of_the_run_beside_the_crowd(per_row, per_call, rows, steps, crowd):
    # A device where a call of r rows of p pixels costs per_call + r x p x per_row: learn from a few calls,
    # then a request beside a crowd really costs, at each of its steps, one call per size running.
    def cost(pixels, r):
        return per_call + r * pixels / 1024 * per_row

    estimator = WorkEstimator()
    for pixels in (1024, 4096):
        for r in (1, 2, 8, 16):
            estimator.observe_step(pixels, r, cost(pixels, r))
    actual = 0.0
    for step in range(steps):
        by_size = {1024: rows}
        for pixels, r, left in crowd:
            if left > step:
                by_size[pixels] = by_size.get(pixels, 0) + r
        actual += sum(cost(p, r) for p, r in by_size.items())
    predicted = estimator.in_crowd((1024, rows, steps), crowd)
    assert predicted <= actual + 1e-9
    assert predicted >= estimator.in_crowd((1024, rows, steps), [])  # a crowd never makes it faster
    if any(p != 1024 for p, _r, _left in crowd):
        assert predicted > estimator.in_crowd((1024, rows, steps), [])  # other sizes' calls take turns
    if crowd:
        assert estimator.first_to_leave(crowd) <= min(left * cost(p, r) for p, r, left in crowd) + 1e-9


def test_bigger_calls_pay_while_a_call_has_a_large_fixed_part():
    gpu_like, cpu_like = WorkEstimator(), WorkEstimator()
    assert gpu_like.batching_pays(1024, 4, 16) is None  # nothing seen: unknown
    gpu_like.observe_step(1024, 2, 0.050)
    assert gpu_like.batching_pays(1024, 4, 16) is None  # one row count: no line yet
    for rows in (2, 4, 8, 16):
        gpu_like.observe_step(1024, rows, 0.050 + 0.001 * rows)  # nearly all per call
        cpu_like.observe_step(1024, rows, 0.005 + 0.020 * rows)  # nearly all per row
    assert gpu_like.batching_pays(1024, 4, 16) is True
    assert cpu_like.batching_pays(1024, 4, 16) is False
    assert cpu_like.batching_pays(1024, 1, 16) is True  # one row alone still carries the whole call part
    cpu_like.observe_step(1024, 8, 0.9)  # contention never counts: the fastest call of a count does
    assert cpu_like.batching_pays(1024, 4, 16) is False
    assert cpu_like.batching_pays(4096, 4, 16) is None  # another size: nothing seen


def test_a_model_switch_costs_what_copies_and_loads_took():
    from services.core.work.estimate import WorkEstimator

    estimator = WorkEstimator()
    assert estimator.model_move_s(from_disk=True) == 0.0  # nothing seen yet
    estimator.observe_model_move(from_disk=True, seconds=4.0)
    assert estimator.model_move_s(from_disk=False) == 4.0  # no copy seen: a load is the best guess
    estimator.observe_model_move(from_disk=False, seconds=0.5)
    assert estimator.model_move_s(from_disk=False) == 0.5 and estimator.model_move_s(from_disk=True) == 4.0
