"""The page's own events (uploads, "Send to", Interrupt: not API endpoints, so gradio_client refuses them),
called over Gradio's HTTP queue as the browser calls them: upload the files, join the queue, read the
event's messages to its end."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass
class Outcome:
    success: bool
    data: list  # the outputs' values (on success)
    error: str | None  # the gr.Error's message (on failure)
    logs: list = field(default_factory=list)  # (level, message) of gr.Info / gr.Warning


def component(demo, elem_id: str):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def event_of(demo, elem_id: str, trigger: str) -> tuple[int, int]:
    """(fn index, component id) of the function `trigger` ("click", "upload") of the component `elem_id`."""
    target = component(demo, elem_id)._id
    for index, fn in demo.fns.items():
        if (target, trigger) in [tuple(t) for t in fn.targets] and fn.fn is not None:
            return index, target
    raise LookupError(f"no {trigger} event on #{elem_id}")


def padded(demo, elem_id: str, trigger: str, values: list) -> list:
    """`values` for the first inputs of the event, then every later input's own default value (the page
    grows inputs at the end: a test names the ones it sets)."""
    index, _target = event_of(demo, elem_id, trigger)
    later = demo.fns[index].inputs[len(values):]
    return [*values, *(getattr(block, "value", None) for block in later)]


def upload(url: str, path: str | Path) -> dict:
    """A file uploaded as the browser uploads it; its value for an input."""
    with httpx.Client(base_url=url, timeout=60) as http:
        reply = http.post("gradio_api/upload", files={"files": (Path(path).name, Path(path).read_bytes())})
        reply.raise_for_status()
    return {"path": reply.json()[0], "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def join(url: str, demo, elem_id: str, event: str, data: list, session: str) -> str:
    """Start the page's `event` of #elem_id as browser session `session` without reading its messages
    (another call of that session reads them); its event id."""
    index, target = event_of(demo, elem_id, event)
    with httpx.Client(base_url=url, timeout=60) as http:
        joined = http.post("gradio_api/queue/join", json={"data": data, "fn_index": index, "session_hash": session,
                                                           "event_data": None, "trigger_id": target})
        joined.raise_for_status()
    return joined.json()["event_id"]


def trigger(url: str, demo, elem_id: str, event: str, data: list, session: str | None = None,
            timeout: float = 120) -> Outcome:
    """Run the page's `event` of #elem_id with input values `data`, as browser session `session`."""
    session = session or uuid.uuid4().hex
    event_id = join(url, demo, elem_id, event, data, session)
    logs = []
    with httpx.Client(base_url=url, timeout=timeout) as http:
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") != event_id:
                    continue
                if message.get("msg") == "log":
                    logs.append((message["level"], message["log"]))
                elif message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    return Outcome(bool(message.get("success")), output.get("data") or [], output.get("error"),
                                   logs)
    raise AssertionError("the event's stream ended without completing")
