"""Who is calling: HTTP Basic on every API route when the gateway has API credentials, and the hub's
owner of the caller's jobs ("api:<user>"; "api:" for everyone when the API is open)."""

from __future__ import annotations

import secrets

from fastapi import Depends
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from .errors import ApiError

ANONYMOUS = "api:"


def owner_dependency(credentials: tuple[tuple[str, str], ...]):
    """A FastAPI dependency giving the caller's owner; 401 (with WWW-Authenticate) for anyone else.
    Without credentials the API is open and a header sent anyway is not read: an unchecked name is no
    identity, so every caller is the one anonymous owner."""
    if not credentials:
        def anonymous() -> str:
            return ANONYMOUS
        return anonymous

    basic = HTTPBasic(auto_error=False, realm="imagegen API")

    def owner(given: HTTPBasicCredentials | None = Depends(basic)) -> str:  # noqa: B008 - FastAPI's way
        if given is not None:
            matched = None
            for user, password in credentials:  # every pair compared, in constant time each
                ok = secrets.compare_digest(given.username.encode(), user.encode())
                ok &= secrets.compare_digest(given.password.encode(), password.encode())
                if ok and matched is None:
                    matched = user
            if matched is not None:
                return f"api:{matched}"
        raise ApiError(401, "Not authenticated", kind="HTTPException",
                       headers={"WWW-Authenticate": 'Basic realm="imagegen API"'})
    return owner
