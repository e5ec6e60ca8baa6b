"""The gateway's --concurrency, seen from the service's side: how many generations reach it at once."""

from __future__ import annotations

import time

from tests.conftest import RunningGateway, RunningService


def test_concurrency_one_forwards_one_generation_at_a_time(services):
    own = RunningService("txt2img", "--warmup", "false")
    addresses = {mode: service.address for mode, service in services.items()}
    addresses["txt2img"] = own.address
    gw = RunningGateway(addresses, timeout_s=120, concurrency=1)
    try:
        client = gw.client()
        # Submitted together: without the limit all three reach the service at once, however fast it is.
        jobs = [client.submit("fox", "", 16, 7.5, 64, 64, seed, 1, "model default", api_name="/txt2img")
                for seed in (1, 2, 3)]
        in_flight, waiting = [], []
        deadline = time.monotonic() + 240
        while not all(job.done() for job in jobs) and time.monotonic() < deadline:
            in_flight.append(own.metric("imagegen_requests_in_progress"))
            waiting.append(own.metric("imagegen_queue_depth"))
            time.sleep(0.005)
        seeds = sorted(job.result(timeout=60)[1] for job in jobs)
        assert seeds == ["1", "2", "3"]  # all finish
        assert max(in_flight) == 1, max(in_flight)  # one at a time reached the service (and one did run)
        # None waited behind another in the service's queue: the gateway held them. (The one in flight
        # passes through the queue on its way to the worker, so a sample may see it there.)
        assert max(waiting) <= 1, max(waiting)
        # Nor were two ever batched together (which no sample could miss).
        batches = own.metric("imagegen_batch_requests_count")
        assert batches == 3 and own.metric("imagegen_batch_requests_bucket", le="1.0") == batches
    finally:
        gw.close()
        own.stop()
