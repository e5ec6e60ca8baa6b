"""The API's routes' own handling, apart from Gradio's app: every answer JSON in A1111's shapes, and a
bound on the request body.

A route class (rather than app-wide exception handlers, which would change Gradio's routes too) turns
validation errors, ApiError, FastAPI's HTTP errors (a malformed Basic header) and anything unexpected
(logged with an id) into JSON answers. The body is read here, chunk by chunk, up to `max_body` bytes: a
Content-Length over it is refused before anything is read, a chunked body as soon as it passes it, so a
huge body never sits in memory. (FastAPI's own `max_body_size` answers that in plain text.)
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .errors import ApiError, internal, validation_detail

MB = 1024 * 1024


class A1111Route(APIRoute):
    max_body: int = 32 * MB

    def get_route_handler(self):
        handler = super().get_route_handler()
        what = f"{'/'.join(sorted(self.methods))} {self.path}"
        limit = self.max_body

        async def route(request: Request):
            try:
                await read_bounded(request, limit)
                return await handler(request)
            except RequestValidationError as err:
                return ApiError(422, validation_detail(err.errors())).response()
            except ApiError as err:
                return err.response()
            except HTTPException as err:
                return ApiError(err.status_code, str(err.detail), headers=dict(err.headers or {})).response()
            except Exception:  # noqa: BLE001 - a fault of the gateway: an id for the caller, the rest logged
                return internal(what).response()
        return route


def route_class(max_body: int) -> type[A1111Route]:
    """A1111Route bounded to `max_body` bytes per request body."""
    return type("A1111Route", (A1111Route,), {"max_body": max_body})


async def read_bounded(request: Request, limit: int) -> None:
    """Read the body (at most `limit` bytes) where FastAPI will look for it; 413 past the bound."""
    too_large = ApiError(413, f"request body over {limit / MB:g} MB", kind="TooLarge",
                         headers={"Connection": "close"})
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    request._body = b"".join(chunks)  # Starlette's cache of the body: FastAPI reads it from there
