"""The catalogue routes (samplers, schedulers, upscalers, loras, png-info, scripts, ...): a stub here;
helper "cat" writes them on its branch with this signature."""

from __future__ import annotations

import fastapi

from ..hub import Hub


def add_routes(router: fastapi.APIRouter, hub: Hub) -> None:
    """Add the catalogue's GET/POST routes to the API's router (auth and error shapes come with it)."""

STUB = True  # tests of the catalogue's routes wait for the real module (tests/gateway/a1111/test_catalog_clients.py)
