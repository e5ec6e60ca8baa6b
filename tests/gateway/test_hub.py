"""The generation hub on real services: jobs by owner, the last progress and preview kept, cancel by owner."""

from __future__ import annotations

import threading

import pytest

from gateway_ui.app import make_backends
from gateway_ui.backend import Interrupted
from gateway_ui.config import GatewayConfig
from gateway_ui.hub import FINISHED, Hub
from services.client import Progress, make_request
from tests.conftest import wait_for


@pytest.fixture
def hub(services):
    hub = Hub(make_backends(GatewayConfig(addresses={m: s.address for m, s in services.items()})),
              preview_every=1)
    yield hub
    hub.close()


def test_a_job_keeps_its_last_progress_and_preview_and_leaves_when_done(hub):
    job = hub.start("txt2img", make_request("txt2img", "fox", steps=3, width=64, height=64, seed=1), "api:ada")
    assert [j.id for j in hub.jobs("api:ada")] == [job.id] and hub.jobs("api:bob") == []
    steps, previews = [], []
    for event in hub.follow(job):
        if isinstance(event, Progress):
            steps.append((job.step, job.total_steps))
            previews += [event.preview] if event.preview else []
    assert steps[-1] == (3, 3)
    assert previews and job.preview == previews[-1]  # asked for by the hub, the last one kept on the job
    assert job.state == FINISHED and job.fraction == 1.0 and len(job.result.images) == 1
    assert hub.jobs() == []


def test_cancel_reaches_only_the_owners_jobs(hub):
    slow = dict(steps=60, width=64, height=64, seed=2)
    mine = hub.start("txt2img", make_request("txt2img", "fox", **slow), "api:ada")
    theirs = hub.start("txt2img", make_request("txt2img", "owl", **slow), "api:bob")
    outcome = {}

    def follow(name, job):
        try:
            for _ in hub.follow(job):
                pass
            outcome[name] = "finished"
        except Interrupted:
            outcome[name] = "interrupted"

    threads = [threading.Thread(target=follow, args=(n, j)) for n, j in (("mine", mine), ("theirs", theirs))]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: mine.step >= 1, 60)
    assert [job.id for job in hub.cancel("api:ada")] == [mine.id]
    for thread in threads:
        thread.join(120)
    assert outcome == {"mine": "interrupted", "theirs": "finished"}
