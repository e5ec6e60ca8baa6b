"""Failures as AUTOMATIC1111's API answers them, in its shapes.

- 422 for a bad request field, as FastAPI's validation does: `{"detail": [{"loc": ["body", FIELD], "msg",
  "type"}]}`; the services' INVALID_ARGUMENT comes back the same way, its contract field named as A1111
  names it (mapping.a1111_field).
- Anything else as A1111's exception handler writes it: `{"error", "detail", "body", "errors"}`, with
  503 + Retry-After (a full queue, a service down or loading), 504 (a deadline), 500 with an error id.
Never a traceback or a service's address: those go to the gateway's log, with the id the answer shows.
"""

from __future__ import annotations

import logging
import math

from fastapi.responses import JSONResponse

from services.client import (
    DeadlineExceeded,
    InternalError,
    InvalidInput,
    ModelLoading,
    NotResponding,
    OutOfMemory,
    QueueFull,
    ShuttingDown,
    TooLarge,
    Unreachable,
)

from ..backend import GenerationError, new_error_id

log = logging.getLogger("gateway")

UNAVAILABLE_RETRY_S = 5  # Retry-After for a service down, loading or silent (it gives no hint itself)


class ApiError(Exception):
    """An answer other than 200; `response()` is its JSON."""

    def __init__(self, status: int, detail, *, kind: str = "HTTPException", headers: dict | None = None):
        super().__init__(detail if isinstance(detail, str) else "invalid request")
        self.status, self.detail, self.kind, self.headers = status, detail, kind, headers or {}

    def response(self) -> JSONResponse:
        if self.status == 422 and isinstance(self.detail, list):  # FastAPI's validation shape
            content = {"detail": self.detail}
        else:  # A1111's handle_exception shape
            content = {"error": self.kind, "detail": self.detail, "body": "", "errors": str(self)}
        return JSONResponse(content, status_code=self.status, headers=self.headers)


def field_error(field: str, message: str, kind: str = "value_error") -> ApiError:
    """422 naming a body field ("width", "override_settings.CLIP_stop_at_last_layers", "init_images.0")."""
    loc = ["body", *(int(part) if part.isdigit() else part for part in field.split("."))]
    return ApiError(422, [{"loc": loc, "msg": message, "type": kind}])


def validation_detail(errors) -> list[dict]:
    """FastAPI's validation errors without the input echoed back (a wrong-typed image is megabytes)."""
    return [{"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
            for error in errors]


def from_generation(err: GenerationError, a1111_field) -> ApiError:
    """The answer for a failed generation: its typed cause decides the status; `a1111_field` names a
    contract field as A1111 does."""
    cause = err.cause
    if isinstance(cause, InvalidInput):
        detail = [{"loc": ["body", *a1111_field(v.field).split(".")], "msg": v.description, "type": "value_error"}
                  for v in cause.violations]
        return ApiError(422, detail or [{"loc": ["body"], "msg": cause.details(), "type": "value_error"}])
    if isinstance(cause, QueueFull):
        retry = cause.retry_after_s if cause.retry_after_s is not None else 1
        return ApiError(503, str(err), kind="QueueFull", headers={"Retry-After": str(max(1, math.ceil(retry)))})
    if isinstance(cause, (Unreachable, ShuttingDown, ModelLoading, NotResponding)):
        return ApiError(503, str(err), kind=type(cause).__name__,
                        headers={"Retry-After": str(UNAVAILABLE_RETRY_S)})
    if isinstance(cause, DeadlineExceeded):
        return ApiError(504, str(err), kind="DeadlineExceeded")
    if isinstance(cause, TooLarge):
        return ApiError(413, str(err), kind="TooLarge")
    if isinstance(cause, OutOfMemory):  # A1111 answers 500 for it too; the message says what to ask for
        return ApiError(500, str(err), kind="OutOfMemory")
    # An internal error (its message carries the id the service or the backend logged), or a status
    # nobody expected: explain() has logged it with that id.
    return ApiError(500, str(err), kind="InternalError" if isinstance(cause, InternalError) or cause is None
                    else type(cause).__name__)


def internal(what: str) -> ApiError:
    """A fault of the gateway itself: logged with its traceback and an id; the caller gets the id."""
    error_id = new_error_id()
    log.exception("A1111 API %s: internal error (id %s)", what, error_id)
    return ApiError(500, f"{what} failed with an internal error (id {error_id}); the operator's logs have the "
                    "details", kind="InternalError")
