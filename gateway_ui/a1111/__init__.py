"""The AUTOMATIC1111-compatible HTTP API (`/sdapi/v1/...`), served on the gateway's port beside the UI.

A room of its own, holding no model: each route is a thin translation of A1111's fields into the
contract's requests for the generation hub the tabs use (gateway_ui/hub.py), and of the results back
into A1111's answers. api.py: the routes; models.py: A1111's request bodies; mapping.py: their fields ->
make_request's keywords, one row each; tasks.py: /progress, /interrupt, /skip over the caller's jobs;
options.py: /options and /sd-models; access.py: HTTP Basic and who the caller is; errors.py and
routing.py: A1111's error shapes and the body bound; catalog.py: the catalogue routes; controlnet.py:
sd-webui-controlnet's units and its /controlnet routes.
"""

from __future__ import annotations

from . import controlnet
from .api import PREFIX, build_router


def mount(app, hub, config) -> None:
    """Serve the API on `app` (Gradio's FastAPI app, after launch: as A1111 adds its routes) unless the
    configuration turns it off (--no-api)."""
    if config.api:
        app.include_router(build_router(hub, config.api_credentials, config.api_max_body_mb))
        app.include_router(controlnet.build_router(hub, config.api_credentials, config.api_max_body_mb))


__all__ = ["PREFIX", "build_router", "mount"]
