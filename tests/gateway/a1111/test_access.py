"""Basic auth (on, off, the UI's login as fallback, --no-api) and callers kept apart: /progress,
/interrupt and /skip of one user never read or touch another's jobs."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import RunningGateway, wait_for

from .conftest import SLOW, SMALL, Call, info_of


@pytest.fixture(scope="module")
def locked(services):
    gw = RunningGateway({m: s.address for m, s in services.items()}, api_auth=(("alice", "a-pass"), ("bob", "b-pass")))
    yield gw.url + "sdapi/v1"
    gw.close()


def progress(api, auth=None) -> dict:
    answer = requests.get(f"{api}/progress", auth=auth, timeout=30)
    assert answer.status_code == 200
    return answer.json()


def running(api, auth=None) -> bool:
    state = progress(api, auth)["state"]
    return state["job_count"] > 0 and state["sampling_step"] > 0


ALICE, BOB = ("alice", "a-pass"), ("bob", "b-pass")


def test_every_route_asks_for_basic_auth(locked):
    for method, path in (("get", "options"), ("get", "sd-models"), ("get", "progress"), ("post", "txt2img"),
                         ("post", "interrupt"), ("post", "options")):
        for auth in (None, ("alice", "wrong"), ("mallory", "a-pass")):
            answer = requests.request(method, f"{locked}/{path}", json={}, auth=auth, timeout=30)
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic"), answer.text
            assert answer.json()["detail"] == "Not authenticated"
    answer = requests.post(f"{locked}/txt2img", json={"seed": 3, **SMALL}, auth=BOB, timeout=120)
    assert answer.status_code == 200 and info_of(answer.json())["all_seeds"] == [3]


def test_the_ui_login_guards_the_api_when_no_api_auth_is_given(services):
    gw = RunningGateway({m: s.address for m, s in services.items()}, username="ui", password="ui-pass")
    try:
        api = gw.url + "sdapi/v1"
        assert requests.get(f"{api}/options", timeout=30).status_code == 401
        assert requests.get(f"{api}/options", auth=("ui", "ui-pass"), timeout=30).status_code == 200
    finally:
        gw.close()


def test_an_open_api_ignores_a_header_and_no_api_serves_none(api, services):
    # Open WebUI sends an empty Authorization header when it has no credentials.
    assert requests.get(f"{api}/options", headers={"Authorization": ""}, timeout=30).status_code == 200
    assert requests.get(f"{api}/options", auth=("anyone", "x"), timeout=30).status_code == 200
    gw = RunningGateway({m: s.address for m, s in services.items()}, api=False)
    try:
        assert requests.get(gw.url + "sdapi/v1/options", timeout=30).status_code == 404
        assert requests.get(gw.url, timeout=30).status_code == 200  # the UI is still there
    finally:
        gw.close()


def test_progress_and_interrupt_of_one_user_never_touch_another(locked):
    alice = Call(f"{locked}/txt2img", {"seed": 1, **SLOW}, auth=ALICE)
    assert wait_for(lambda: running(locked, ALICE), timeout=60)
    mine = progress(locked, ALICE)
    assert mine["state"]["job_count"] == 1 and 0 < mine["progress"] < 1 and mine["textinfo"].startswith("txt2img")
    # Bob sees nothing of Alice's job, and his interrupt does not stop it.
    assert progress(locked, BOB)["state"]["job_count"] == 0 and progress(locked, BOB)["progress"] == 0
    assert requests.post(f"{locked}/interrupt", auth=BOB, timeout=30).json() == {}
    answer = alice.result()
    assert answer.status_code == 200 and len(answer.json()["images"]) == 1
    assert wait_for(lambda: progress(locked, ALICE)["state"]["job_count"] == 0, timeout=10)


def test_an_interrupted_call_answers_200_with_what_it_finished(locked):
    call = Call(f"{locked}/txt2img", {"seed": 1, "n_iter": 2, **SLOW}, auth=ALICE)
    assert wait_for(lambda: running(locked, ALICE), timeout=60)
    started = time.monotonic()
    assert requests.post(f"{locked}/interrupt", auth=ALICE, timeout=30).status_code == 200
    answer = call.result()
    assert answer.status_code == 200 and answer.json()["images"] == []  # both batches were stopped
    assert time.monotonic() - started < 30
    assert progress(locked, ALICE)["state"]["interrupted"] is True  # until Alice's next call


def test_skip_stops_the_oldest_batch_and_the_others_finish(locked):
    call = Call(f"{locked}/txt2img", {"seed": 10, "n_iter": 2, **SLOW}, auth=BOB)
    assert wait_for(lambda: running(locked, BOB), timeout=60)
    assert progress(locked, BOB)["state"]["job_count"] == 2
    assert requests.post(f"{locked}/skip", auth=BOB, timeout=30).json() == {}
    answer = call.result()
    assert answer.status_code == 200
    seeds = info_of(answer.json())["all_seeds"]
    assert len(answer.json()["images"]) == 1 and seeds == [11]  # the first batch (seed 10) was skipped


def test_progress_shows_the_live_preview_unless_asked_not_to(locked):
    call = Call(f"{locked}/txt2img", {"seed": 2, **SLOW}, auth=ALICE)
    assert wait_for(lambda: progress(locked, ALICE)["current_image"] is not None, timeout=60)
    assert requests.get(f"{locked}/progress", params={"skip_current_image": "true"}, auth=ALICE,
                        timeout=30).json()["current_image"] is None
    assert progress(locked, ALICE)["eta_relative"] >= 0
    call.result()
