"""JobQueue and Job: bounded FIFO, batching by key, positions, cancellation and endings."""

import threading
from dataclasses import dataclass

import pytest

from services.core.errors import Cancelled, QueueFull, ShuttingDown
from services.core.work.queue import Job, JobQueue, Progress, Queued


@dataclass(frozen=True)
class Spec:
    seeds: tuple = (0,)
    key: str = "a"

    def batch_key(self):
        return self.key


def job(images=1, key="a"):
    return Job(Spec(seeds=tuple(range(images)), key=key))


def drain(j):
    """The events emitted so far, without waiting."""
    events = []
    while not j.events.empty():
        events.append(j.events.get())
    return events


def test_job_takes_images_and_batch_key_from_its_spec():
    j = job(images=3, key="k")
    assert (j.images, j.batch_key, j.done, j.cancel_requested) == (3, "k", False, False)


def test_wait_returns_the_result_and_raises_the_error():
    ok, bad = job(), job()
    ok.finish("images")
    bad.fail(ValueError("boom"))
    assert ok.wait() == "images"
    with pytest.raises(ValueError, match="boom"):
        bad.wait()


def test_the_first_ending_wins():
    j = job()
    j.fail(ShuttingDown("draining"))
    j.finish("late result")
    assert j.result is None and isinstance(j.error, ShuttingDown)
    with pytest.raises(ShuttingDown):
        j.wait()


def test_iter_events_yields_events_then_raises_the_error():
    j = job()
    j.emit(Queued(0))
    j.emit(Progress(1, 2))
    j.fail(Cancelled("gone"))
    seen = []
    with pytest.raises(Cancelled):
        for event in j.iter_events():
            seen.append(event)
    assert seen == [Queued(0), Progress(1, 2)]


def test_iter_events_ends_quietly_on_success():
    j = job()
    j.emit(Progress(1, 1))
    j.finish("ok")
    assert list(j.iter_events()) == [Progress(1, 1)]


def test_cancel_while_queued_leaves_the_queue_and_fails_with_cancelled():
    q = JobQueue(4)
    first, second = job(), job()
    q.submit(first)
    q.submit(second)
    drain(second)
    first.cancel()
    assert first.cancel_requested and first.done and q.waiting() == [second]
    with pytest.raises(Cancelled):
        first.wait()
    assert drain(second) == [Queued(0)]  # moved up when the one ahead left


def test_cancel_while_running_only_flags_the_job():
    q = JobQueue(4)
    j = job()
    q.submit(j)
    assert q.take(timeout=0) == [j]
    j.cancel()
    assert j.cancel_requested and not j.done  # the worker stops it at its next step


def test_cancel_after_the_end_changes_nothing():
    j = job()
    j.finish("ok")
    j.cancel()
    assert not j.cancel_requested and j.wait() == "ok"


def test_submit_announces_the_position_and_refuses_when_full():
    q = JobQueue(2)
    a, b = job(), job()
    q.submit(a)
    q.submit(b)
    assert drain(a) == [Queued(0)] and drain(b) == [Queued(1)]
    with pytest.raises(QueueFull) as info:
        q.submit(job())
    assert info.value.retry_after_s > 0 and q.depth == 2


def test_close_refuses_new_jobs_and_returns_the_waiting_ones():
    q = JobQueue(4)
    a = job()
    q.submit(a)
    assert q.close() == [a]
    with pytest.raises(ShuttingDown):
        q.submit(job())
    # Handed back for the caller to fail: the worker never runs them, and the queue is idle.
    assert q.take(timeout=0.01) == [] and q.depth == 0 and q.wait_idle(0.01)


def test_take_returns_empty_on_timeout_and_once_closed_and_empty():
    q = JobQueue(4)
    assert q.take(timeout=0.01) == []
    q.close()
    assert q.take(timeout=None) == []


def test_take_gathers_same_key_jobs_in_order_up_to_max_images():
    q = JobQueue(8)
    a1, b1, a2, a3, a4 = job(1, "a"), job(1, "b"), job(2, "a"), job(2, "a"), job(1, "a")
    for j in (a1, b1, a2, a3, a4):
        q.submit(j)
    # a1 + a2 = 3 images; a3 (2 more) does not fit in 4, a4 (1 more) does.
    assert q.take(timeout=0, max_images=4) == [a1, a2, a4]
    assert q.waiting() == [b1, a3]


def test_take_without_batching_takes_one_job():
    q = JobQueue(8)
    a, b = job(), job()
    q.submit(a)
    q.submit(b)
    assert q.take(timeout=0, max_images=1) == [a] and q.depth == 1


def test_take_announces_the_new_positions():
    q = JobQueue(8)
    a, b, c = job(1, "a"), job(1, "b"), job(1, "b")
    for j in (a, b, c):
        q.submit(j)
    drain(b)
    drain(c)
    q.take(timeout=0)
    assert drain(b) == [Queued(0)] and drain(c) == [Queued(1)]


def test_take_waits_up_to_wait_s_for_jobs_to_share_the_call():
    q = JobQueue(8)
    a, late = job(), job()
    q.submit(a)
    timer = threading.Timer(0.05, q.submit, (late,))
    timer.start()
    try:
        assert q.take(timeout=0, max_images=2, wait_s=2.0) == [a, late]
    finally:
        timer.join()


def test_wait_idle_needs_an_empty_queue_and_a_free_worker():
    q = JobQueue(4)
    assert q.wait_idle(timeout=0)
    q.submit(job())
    assert not q.wait_idle(timeout=0.01)
    q.take(timeout=0)
    assert q.depth == 0 and not q.wait_idle(timeout=0.01)  # still running
    q.task_done()
    assert q.wait_idle(timeout=0)


def test_remove_of_a_job_not_waiting_is_false():
    q = JobQueue(4)
    assert q.remove(job()) is False
