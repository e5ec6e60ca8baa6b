"""from_message: GenerateStream messages as typed Queued, Progress and Result events."""

import pytest

from imagegen.v1 import imagegen_pb2 as pb
from services.client.events import Progress, Queued, Result, from_message


def test_queued_and_progress():
    assert from_message(pb.GenerateEvent(queued=pb.QueuedEvent(position=3))) == Queued(3)
    assert from_message(pb.GenerateEvent(progress=pb.ProgressEvent(step=2, total_steps=5))) == Progress(2, 5)


def test_result_gives_images_and_seeds_in_order():
    images = [pb.GeneratedImage(data=b"a", seed=7), pb.GeneratedImage(data=b"b", seed=8)]
    response = pb.GenerateResponse(images=images)
    event = from_message(pb.GenerateEvent(result=response))
    assert isinstance(event, Result) and event.response == response
    assert event.seeds == [7, 8] and [image.data for image in event.images] == [b"a", b"b"]


def test_an_event_with_nothing_set_is_refused():
    with pytest.raises(ValueError, match="unknown event"):
        from_message(pb.GenerateEvent())
