"""Several replicas of one mode behind one target: the client and the gateway spread calls over all."""

from __future__ import annotations

from gateway_ui.backend import ModeBackend
from services.client import ImageGenClient
from tests.conftest import RunningService, request_for, wait_for


def served(service: RunningService) -> float:
    return service.metric("imagegen_requests_total", method="Generate", code="OK") + service.metric(
        "imagegen_requests_total", method="GenerateStream", code="OK")


def test_two_replicas_behind_one_address_list_both_receive_calls():
    replicas = [RunningService("txt2img", "--warmup", "false") for _ in range(2)]
    target = "ipv4:" + ",".join(r.address for r in replicas)
    try:
        with ImageGenClient("txt2img", target) as client:
            for seed in range(6):
                assert len(client.generate(request_for("txt2img", seed=seed, steps=2)).images) == 1
        counts = [served(r) for r in replicas]
        assert all(count >= 2 for count in counts), counts

        backend = ModeBackend("txt2img", target, timeout_s=60)  # what the gateway uses
        before = [served(r) for r in replicas]
        for seed in range(6):
            backend.generate(request_for("txt2img", seed=seed, steps=2))
        backend.close()
        # A stream is counted when its handler finishes, just after the client has its result.
        assert wait_for(lambda: all(served(r) - b >= 2 for r, b in zip(replicas, before))), (
            [served(r) for r in replicas], before)
    finally:
        for replica in replicas:
            replica.stop()


def test_a_replica_going_away_leaves_the_other_serving():
    replicas = [RunningService("txt2img", "--warmup", "false") for _ in range(2)]
    target = "ipv4:" + ",".join(r.address for r in replicas)
    try:
        with ImageGenClient("txt2img", target, timeout=30) as client:
            client.generate(request_for("txt2img", steps=2))
            replicas[0].stop()
            for seed in range(4):
                assert len(client.generate(request_for("txt2img", seed=seed, steps=2)).images) == 1
    finally:
        replicas[1].stop()
