"""The step engine's policy on plain fake rows and requests (no torch, no model): admission against
budgets, turns between shapes (re-derived as rows change size), the CPU row choice and its starvation
bound, and who leaves."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.core.engine.scheduler import OOM_BACKOFF_S, PASS_S, StepScheduler


@dataclass(eq=False)
class FakeRow:
    side: int = 8  # latent side
    calls_left: int = 10
    unet_rows: int = 2
    tokens: int = 77
    loras: tuple = ()

    @property
    def done(self) -> bool:
        return self.calls_left == 0

    @property
    def latent_shape(self) -> tuple:
        return (self.side, self.side)

    @property
    def pixels(self) -> int:
        return self.side * self.side

    @property
    def shape_key(self) -> tuple:
        return (*self.latent_shape, self.tokens, self.loras)


@dataclass(eq=False)
class FakeRequest:
    rows: list = field(default_factory=lambda: [FakeRow()])
    arrived: float = 0.0
    deadline: float | None = None
    cancel_requested: bool = False


def run_call(scheduler, requests):
    """Ask for the next call and step its rows, as the loop would; the call."""
    call = scheduler.next_call(requests)
    for row in call.rows:
        row.calls_left -= 1
    return call


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_shape_with_no_rows_takes_any_request_and_a_busy_one_only_what_fits():
    scheduler = StepScheduler(budget=4 * 64)  # four UNet rows of 8x8
    big = FakeRequest([FakeRow(unet_rows=2) for _ in range(5)])  # 10 rows: over the budget alone
    assert scheduler.fits((8, 8), 10 * 64, [])
    assert not scheduler.fits((8, 8), 64, [big])
    small = FakeRequest([FakeRow()])
    assert scheduler.fits((8, 8), 2 * 64, [small])  # 2 + 2 rows
    assert not scheduler.fits((8, 8), 3 * 64, [small])
    assert scheduler.fits((16, 16), 64 * 256, [small])  # another shape has its own budget


def test_after_running_out_of_memory_a_shape_s_budget_is_halved_for_a_while():
    clock = Clock()
    scheduler = StepScheduler(budget=4 * 64, clock=clock)
    running = [FakeRequest([FakeRow(unet_rows=1)])]
    assert scheduler.fits((8, 8), 3 * 64, running)
    scheduler.squeeze((8, 8))
    assert not scheduler.fits((8, 8), 3 * 64, running) and scheduler.fits((8, 8), 64, running)
    assert scheduler.budget_of((8, 8)) == 2 * 64 and scheduler.budget_of((16, 16)) == 4 * 64  # only that shape
    clock.now += OOM_BACKOFF_S + 1
    assert scheduler.fits((8, 8), 3 * 64, running)


def test_shapes_share_the_device_by_the_time_their_calls_take_not_by_turns():
    """A big shape's call costs 50 of a small one's: the small one gets about 50 calls to each of its."""
    scheduler = StepScheduler(budget=1 << 20)
    big, small = FakeRequest([FakeRow(side=64, calls_left=1000)]), FakeRequest([FakeRow(side=8, calls_left=1000)])
    cost = {64: 0.5, 8: 0.01}
    seconds = dict.fromkeys(cost, 0.0)
    calls = dict.fromkeys(cost, 0)
    for _ in range(510):
        call = run_call(scheduler, [big, small])
        side = call.key[0]
        scheduler.observed(call.key, cost[side])
        seconds[side] += cost[side]
        calls[side] += 1
    assert calls[64] == 10 and calls[8] == 500  # equal time: 5 s each
    assert abs(seconds[64] - seconds[8]) <= 0.5  # never more than one big call apart


def test_a_small_request_beside_a_big_one_finishes_in_about_its_own_share_of_time():
    scheduler = StepScheduler(budget=1 << 20)
    big, small = FakeRequest([FakeRow(side=256, calls_left=30)]), FakeRequest([FakeRow(side=8, calls_left=20)])
    clock = 0.0
    while not small.rows[0].done:
        call = run_call(scheduler, [big, small])
        spent = 2.0 if call.key[0] == 256 else 0.002
        clock += spent
        scheduler.observed(call.key, spent)
    assert clock <= 2.0 + 20 * 0.002 + 1e-9  # one big call, at most, before its 20 small ones
    assert big.rows[0].calls_left >= 29


def test_shapes_take_turns_in_the_order_they_appeared_and_a_newcomer_joins_the_end():
    scheduler = StepScheduler(budget=1 << 20)
    a, b = FakeRequest([FakeRow(side=8)]), FakeRequest([FakeRow(side=16)])
    requests = [a, b]
    keys = [run_call(scheduler, requests).key[:2] for _ in range(4)]
    assert keys == [(8, 8), (16, 16), (8, 8), (16, 16)]
    requests.append(FakeRequest([FakeRow(side=24)]))
    keys = [run_call(scheduler, requests).key[:2] for _ in range(3)]
    assert keys == [(8, 8), (16, 16), (24, 24)]


def test_rows_that_change_size_are_served_at_their_new_size_in_turn():
    scheduler = StepScheduler(budget=1 << 20)
    growing = FakeRow(side=8, calls_left=20)
    requests = [FakeRequest([growing]), FakeRequest([FakeRow(side=16, calls_left=20)])]
    assert run_call(scheduler, requests).rows == [growing]
    growing.side = 32  # a resize phase: the same row, a new shape
    seen = [run_call(scheduler, requests) for _ in range(4)]
    assert [call.key[:2] for call in seen] == [(16, 16), (32, 32), (16, 16), (32, 32)]
    assert all(call.rows == [growing] for call in seen if call.key[:2] == (32, 32))


def test_rows_with_another_prompt_length_or_lora_set_do_not_share_a_call():
    scheduler = StepScheduler(budget=1 << 20)
    plain, long, lora = FakeRow(), FakeRow(tokens=154), FakeRow(loras=(("film", 1.0),))
    requests = [FakeRequest([plain]), FakeRequest([long]), FakeRequest([lora])]
    calls = [run_call(scheduler, requests) for _ in range(3)]
    assert sorted(len(call.rows) for call in calls) == [1, 1, 1]
    assert {id(call.rows[0]) for call in calls} == {id(plain), id(long), id(lora)}


def test_every_row_of_a_shape_rides_unless_rows_are_chosen():
    requests = [FakeRequest([FakeRow(calls_left=s)], arrived=i) for i, s in enumerate((40, 8, 8, 8))]
    gpu = StepScheduler(budget=1 << 20, choose_rows=False, batching_pays=lambda *_: False)
    assert len(gpu.next_call(requests).requests) == 4
    pays = StepScheduler(budget=1 << 20, choose_rows=True, batching_pays=lambda *_: True)
    assert len(pays.next_call(requests).requests) == 4
    unknown = StepScheduler(budget=1 << 20, choose_rows=True, batching_pays=lambda *_: None)
    assert len(unknown.next_call(requests).requests) == 4


def test_where_bigger_calls_do_not_pay_a_call_takes_just_enough_rows_least_slack_first():
    asked = []

    def pays(pixels, fewer, more):
        asked.append((pixels, fewer, more))
        return False

    scheduler = StepScheduler(budget=1 << 20, choose_rows=True, batching_pays=pays)
    long = FakeRequest([FakeRow(calls_left=40)], arrived=0.0)
    shorts = [FakeRequest([FakeRow(calls_left=8)], arrived=1.0 + i) for i in range(3)]
    requests = [long, *shorts]
    # 2 rows each: (40 + 3 x 8) x 2 = 128 rows of work over 40 steps: 4 rows (two requests) a call.
    call = scheduler.next_call(requests)
    assert asked == [(64, 4, 8)]
    assert call.requests == [long, shorts[0]] and len(call.rows) == 2
    # Stepping on: every request is done by the long one's 40th call, which rode in every call.
    calls = 0
    while any(not r.rows[0].done for r in requests):
        call = run_call(scheduler, requests)
        assert sum(row.unet_rows for row in call.rows) <= 4
        calls += 1
    assert calls == 40


def test_a_request_that_arrives_much_later_cannot_pass_an_older_one():
    """Least slack first orders by arrival minus steps left x the recent call time: a newcomer with more
    steps than an old request passes it only while the difference in steps outweighs its lateness."""
    scheduler = StepScheduler(budget=1 << 20, choose_rows=True, batching_pays=lambda *_: False)
    scheduler.observed((8, 8, 77, ()), 0.1)
    old = FakeRequest([FakeRow(calls_left=5)], arrived=0.0)
    late = FakeRequest([FakeRow(calls_left=30)], arrived=3.0)  # 25 more steps x 0.1 s = 2.5 s < 3 s late
    assert scheduler.next_call([old, late]).requests[0] is old
    early = FakeRequest([FakeRow(calls_left=30)], arrived=2.0)  # 2.5 s > 2 s: it has less slack
    assert scheduler.next_call([old, early]).requests[0] is early


def test_a_queued_request_that_fits_joins_past_one_of_another_shape_that_does_not():
    scheduler = StepScheduler(budget=4 * 64)
    running = [FakeRequest([FakeRow(side=16, unet_rows=2)])]  # its shape (16x16) is full
    waiting = [((16, 16), 2 * 256, 0.0, True), ((8, 8), 2 * 64, 1.0, True)]
    assert scheduler.pick_waiting(waiting, running, now=2.0) == 1  # the small one passes
    # But not one of the blocked request's own shape: it would take the room the blocked one waits for.
    same_shape = [((16, 16), 2 * 256, 0.0, True), ((16, 16), 64, 1.0, True), ((8, 8), 2 * 64, 1.5, True)]
    assert scheduler.pick_waiting(same_shape, running, now=2.0) == 2
    # The head first, when it fits.
    assert scheduler.pick_waiting([((8, 8), 64, 0.0, True), ((8, 8), 64, 1.0, True)], running, now=2.0) == 0
    # One that is not ready (its LoRAs have no room) waits, and is passed like one that does not fit.
    assert scheduler.pick_waiting([((8, 8), 64, 0.0, False), ((4, 4), 16, 1.0, True)], running, now=2.0) == 1
    assert scheduler.pick_waiting([((8, 8), 64, 0.0, False), ((8, 8), 16, 1.0, True)], running, now=2.0) is None


def test_a_request_that_does_not_fit_is_passed_only_for_a_while_then_it_joins_first():
    scheduler = StepScheduler(budget=4 * 64)
    running = [FakeRequest([FakeRow(side=16, unet_rows=2)])]
    waiting = [((16, 16), 2 * 256, 0.0, True), ((8, 8), 2 * 64, 1.0, True)]
    assert scheduler.pick_waiting(waiting, running, now=PASS_S - 0.1) == 1
    assert scheduler.pick_waiting(waiting, running, now=PASS_S) is None  # aged: nobody passes it
    assert scheduler.pick_waiting(waiting, [], now=PASS_S) == 0  # and it joins once its shape has room


def test_no_call_when_every_row_is_done():
    scheduler = StepScheduler(budget=1 << 20)
    assert scheduler.next_call([FakeRequest([FakeRow(calls_left=0)])]) is None
    assert scheduler.next_call([]) is None


@pytest.mark.parametrize("cancel, deadline, now, why", [(True, None, 0.0, "cancelled"), (False, 5.0, 5.0, "expired"),
                                                         (True, 5.0, 9.0, "cancelled"), (False, 5.0, 4.9, None),
                                                         (False, None, 1e9, None)])
def test_cancelled_and_expired_requests_leave(cancel, deadline, now, why):
    request = FakeRequest(cancel_requested=cancel, deadline=deadline)
    stays = FakeRequest()
    leaving = StepScheduler.leaving([request, stays], now)
    assert leaving == ([(request, why)] if why else [])


@dataclass(eq=False)
class ModelRow(FakeRow):
    model: str = "a"

    @property
    def shape_key(self) -> tuple:
        return (self.model, *self.latent_shape, self.tokens, self.loras)


def test_calls_stay_on_a_model_while_it_has_rows_but_take_turns_within_a_bound():
    from services.core.engine.scheduler import STAY_CALLS

    scheduler = StepScheduler(budget=10**6, model_of=lambda key: key[0])
    requests = [FakeRequest(rows=[ModelRow(model="a", calls_left=100)]),
                FakeRequest(rows=[ModelRow(model="b", calls_left=100)]),
                FakeRequest(rows=[ModelRow(model="a", calls_left=100, side=16)])]  # a's second shape
    models = [run_call(scheduler, requests).key[0] for _ in range(3 * STAY_CALLS)]
    # Runs of one model (a's two shapes share its turn), switching at most every STAY_CALLS calls.
    switches = [i for i in range(1, len(models)) if models[i] != models[i - 1]]
    assert switches == [STAY_CALLS, 2 * STAY_CALLS]
    assert {models[0], models[STAY_CALLS]} == {"a", "b"}  # each had its turn: none starves
    # Without another model's rows a model keeps the device as long as it has work.
    alone = StepScheduler(budget=10**6, model_of=lambda key: key[0])
    assert {run_call(alone, [requests[0]]).key[0] for _ in range(2 * STAY_CALLS)} == {"a"}
    # Rows of different models never share a call.
    assert all(len({row.model for row in run_call(scheduler, requests).rows}) == 1 for _ in range(5))


def test_with_buckets_a_call_takes_requests_while_their_rows_fit_the_largest_the_first_always():
    scheduler = StepScheduler(budget=10**6, buckets=(4, 2))
    big, small, medium, tiny = (FakeRequest(rows=[FakeRow() for _ in range(n)]) for n in (3, 1, 2, 1))
    # 6 rows first: it rides alone, whatever the buckets (it runs uncompiled).
    assert run_call(scheduler, [big, small]).requests == [big]
    # Then in order while they fit: small (2 UNet rows); medium (4 more) does not, tiny (2) does.
    call = run_call(scheduler, [small, medium, tiny])
    assert call.requests == [small, tiny] and sum(row.unet_rows for row in call.rows) == 4
    assert run_call(StepScheduler(budget=10**6), [small, medium, tiny]).requests == [small, medium, tiny]


def test_where_rows_are_chosen_requests_that_fit_the_call_s_padding_ride_too():
    def unguided(calls_left: int, images: int = 1, arrived: float = 0.0) -> FakeRequest:
        return FakeRequest([FakeRow(calls_left=calls_left, unet_rows=1) for _ in range(images)], arrived=arrived)

    # Batching does not pay: 2 rows over 10 steps and two of 1 over 2 want 3 rows a call (arrival order).
    long = FakeRequest([FakeRow(calls_left=10)], arrived=0.0)  # guided: 2 UNet rows
    short, other = unguided(2, arrived=1.0), unguided(2, arrived=2.0)
    chosen = StepScheduler(budget=10**6, choose_rows=True, batching_pays=lambda *_: False)
    assert chosen.next_call([long, short, other]).requests == [long, short]
    # Compiled with buckets of 2 and 4: that call runs padded to 4 rows, so the last request rides free.
    padded = StepScheduler(budget=10**6, choose_rows=True, batching_pays=lambda *_: False, buckets=(2, 4))
    assert padded.next_call([long, short, other]).requests == [long, short, other]
    # Three rows pad to 4: one more row rides, past a request of two that would not fit.
    three, pair, one = unguided(10, images=3), unguided(2, images=2, arrived=1.0), unguided(2, arrived=2.0)
    call = padded.next_call([three, pair, one])
    assert call.requests == [three, one] and len(call.rows) == 4
