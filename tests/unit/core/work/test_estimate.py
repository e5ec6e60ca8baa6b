"""WorkEstimator: lower-bound time predictions learned from finished pipeline calls."""

from dataclasses import dataclass

import pytest

from services.core.work.estimate import SAFETY, WorkEstimator, steps_run, work


@dataclass(frozen=True)
class Spec:
    steps: int = 10
    width: int = 512
    height: int = 512
    seeds: tuple = (0,)
    strength: float | None = None

    def batch_key(self):
        return (self.width, self.height, self.steps, self.strength)


def trained(*calls):
    """An estimator that has seen each (spec, seconds) as one call."""
    estimator = WorkEstimator()
    for spec, seconds in calls:
        estimator.observe([spec], seconds)
    return estimator


def test_steps_run_scales_by_strength_and_runs_at_least_one():
    assert steps_run(Spec(steps=20)) == 20
    assert steps_run(Spec(steps=20, strength=0.5)) == 10
    assert steps_run(Spec(steps=3, strength=0.1)) == 1


def test_work_counts_images_times_pixels_relative_to_512_squared():
    assert work([Spec()]) == 1.0
    assert work([Spec(seeds=(1, 2)), Spec(width=256, height=256)]) == 2.25


def test_nothing_is_predicted_before_any_data():
    estimator = WorkEstimator()
    assert estimator.predict([Spec()]) is None
    assert estimator.predict_queue([Spec()]) is None


def test_calls_with_no_work_or_time_are_not_learned():
    estimator = trained((Spec(width=0), 1.0), (Spec(), 0.0))
    assert estimator.predict([Spec()]) is None


def test_the_same_work_is_predicted_below_what_was_observed():
    estimator = trained((Spec(steps=10), 2.0))
    assert estimator.predict([Spec(steps=10)]) == pytest.approx(SAFETY * 2.0)
    assert estimator.predict([Spec(steps=10)]) <= 2.0


def test_predictions_grow_with_steps():
    estimator = trained((Spec(steps=10), 2.0))
    assert estimator.predict([Spec(steps=20)]) == pytest.approx(2 * estimator.predict([Spec(steps=10)]))


def test_predictions_grow_with_pixels_and_images_up_to_the_observed_work():
    estimator = trained((Spec(seeds=(0, 1, 2, 3)), 4.0))
    small = estimator.predict([Spec(width=256, height=256)])
    one = estimator.predict([Spec()])
    two = estimator.predict([Spec(seeds=(0, 1))])
    more = estimator.predict([Spec(seeds=tuple(range(8)))])
    assert 0 < small < one < two <= more
    assert more == pytest.approx(SAFETY * 4.0)  # no extrapolation above what was seen


def test_strength_counts_only_the_steps_run():
    estimator = trained((Spec(steps=10, strength=0.5), 1.0))  # 5 steps run: 0.2 s each
    assert estimator.predict([Spec(steps=10)]) == pytest.approx(SAFETY * 2.0)
    assert estimator.predict([Spec(steps=10, strength=0.5)]) == pytest.approx(SAFETY * 1.0)


def test_the_largest_bound_over_recent_calls_wins_and_old_calls_drop_out():
    estimator = WorkEstimator(window=2)
    estimator.observe([Spec()], 1.0)
    estimator.observe([Spec()], 3.0)
    assert estimator.predict([Spec()]) == pytest.approx(SAFETY * 3.0)
    estimator.observe([Spec()], 1.0)
    estimator.observe([Spec()], 1.0)  # the 3 s call is out of the window now
    assert estimator.predict([Spec()]) == pytest.approx(SAFETY * 1.0)


def test_predict_queue_counts_specs_that_share_a_call_as_one_call():
    estimator = trained((Spec(seeds=(0, 1)), 2.0))
    a, b, other = Spec(), Spec(), Spec(steps=20)
    assert estimator.predict_queue([a, b]) == pytest.approx(estimator.predict([a, b]))
    assert estimator.predict_queue([a, other, b]) == pytest.approx(
        estimator.predict([a, b]) + estimator.predict([other]))
    assert estimator.predict_queue([]) == 0.0
