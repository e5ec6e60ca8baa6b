"""A batch count runs as consecutive requests whose seeds follow A1111's rule; Skip and Interrupt reach the run."""

from __future__ import annotations

import pytest

from gateway_ui.batch import (MAX_BATCH_COUNT, MAX_RANDOM_SEED, BatchRun, batch_count, first_seeds, iterations,
                              outcome, reused_seed)
from gateway_ui.masks import InputError
from imagegen.v1.contract import MAX_SEED
from services.client import make_request


def test_each_iteration_starts_at_seed_plus_its_index_times_the_batch_size():
    # A1111's processing.py: all_seeds = seed + x; iteration n takes all_seeds[n * batch_size:(n + 1) * batch_size].
    assert first_seeds(100, 3, 4) == [100, 104, 108]
    assert first_seeds(7, 1, 4) == [7]
    assert first_seeds(None, 1, 2) == [None]  # one iteration: the service picks the random seed


def test_a_random_seed_is_picked_once_for_the_whole_run():
    seeds = first_seeds(None, 4, 2)
    assert 0 <= seeds[0] < MAX_RANDOM_SEED
    assert seeds == [seeds[0], seeds[0] + 2, seeds[0] + 4, seeds[0] + 6]


def test_the_last_iteration_may_not_pass_the_largest_seed():
    assert first_seeds(MAX_SEED - 5, 3, 2)[-1] == MAX_SEED - 1  # its images: MAX_SEED - 1, MAX_SEED
    with pytest.raises(InputError, match="largest seed"):
        first_seeds(MAX_SEED - 4, 3, 2)


def test_iterations_are_copies_of_the_request_with_their_seeds():
    request = make_request("txt2img", "a fox", seed=10, num_images=3, steps=4)
    copies = iterations(request, 3)
    assert [c.params.seed for c in copies] == [10, 13, 16]
    assert all(c.params.prompt == "a fox" and c.params.num_images == 3 for c in copies)
    assert request.params.seed == 10  # the original is left as it was
    random_run = iterations(make_request("txt2img", "a fox"), 2)  # num_images 0: the service's 1
    assert random_run[1].params.seed == random_run[0].params.seed + 1
    assert not iterations(make_request("txt2img", "a fox"), 1)[0].params.HasField("seed")


def test_the_batch_count_is_a_whole_number_up_to_a1111s_hundred():
    assert batch_count({}) == 1 and batch_count({"batch_count": None}) == 1 and batch_count({"batch_count": 3.0}) == 3
    for bad in (MAX_BATCH_COUNT + 1, -1, 2.5, "x", True):
        with pytest.raises(InputError, match="batch_count"):
            batch_count({"batch_count": bad})


def test_reuse_takes_the_picked_images_seed():
    assert reused_seed("5, 6, 7", 1) == 6
    assert reused_seed("5, 6, 7", None) == 5
    assert reused_seed("5, 6, 7", 9) == 7  # past the end (a preview was picked): the last
    assert reused_seed("", 0) == -1 and reused_seed(None, None) == -1


class _Stream:
    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class _Job:
    def __init__(self):
        self.stream = _Stream()


def test_skip_cancels_the_current_iteration_only_and_is_cleared_at_the_next():
    run = BatchRun(3)
    first = _Job()
    run.begin(first)
    run.skip()
    assert first.stream.cancelled and run.end() is True
    run.skip()  # between iterations: A1111 clears it when the next one starts
    second = _Job()
    run.begin(second)
    assert not second.stream.cancelled and run.end() is False
    assert not run.interrupted


def test_interrupt_cancels_the_current_iteration_and_any_that_would_start():
    run = BatchRun(3)
    job = _Job()
    run.begin(job)
    run.interrupt()
    assert job.stream.cancelled and run.interrupted and run.end() is False
    late = _Job()
    run.begin(late)  # one that started as the interrupt came
    assert late.stream.cancelled


def test_the_outcome_reads_as_a_normal_end():
    assert outcome(1, 1, 0, False, 2) == "Done: 2 images."
    assert outcome(3, 2, 1, False, 2) == "Done: 2 of 3 batches done (2 images), 1 skipped."
    assert outcome(3, 1, 0, True, 1) == "Interrupted: 1 of 3 batches done (1 image)."
