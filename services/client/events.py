"""What a GenerateStream call yields, as plain typed events: Queued, then Progress per step, then Result."""

from __future__ import annotations

from dataclasses import dataclass

from imagegen.v1 import imagegen_pb2 as pb


@dataclass(frozen=True)
class Queued:
    position: int  # requests waiting ahead of this one; 0 = next to run


@dataclass(frozen=True)
class Progress:
    step: int  # steps done, 1..total_steps
    total_steps: int
    preview: bytes | None = None  # JPEG of the current estimate, every preview_every steps when asked


@dataclass(frozen=True)
class Result:
    response: pb.GenerateResponse

    @property
    def images(self) -> list:
        """The GeneratedImage messages, in seed order."""
        return list(self.response.images)

    @property
    def seeds(self) -> list[int]:
        return [image.seed for image in self.response.images]


Event = Queued | Progress | Result


def from_message(event: pb.GenerateEvent) -> Event:
    kind = event.WhichOneof("event")
    if kind == "queued":
        return Queued(event.queued.position)
    if kind == "progress":
        progress = event.progress
        return Progress(progress.step, progress.total_steps,
                        progress.preview.data if progress.HasField("preview") else None)
    if kind == "result":
        return Result(event.result)
    raise ValueError(f"unknown event {kind!r} (a newer service?)")
