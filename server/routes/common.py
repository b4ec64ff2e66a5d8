"""Small helpers every router uses."""

from __future__ import annotations

from typing import Any

from fastapi import Request


def service_of(request: Request) -> Any:
    return request.app.state.service


def runner_of(request: Request) -> Any:
    return request.app.state.service.runner


def peer_of(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "unknown"


def who_of(request: Request) -> str:
    """For the runtime log: the dashboard's htmx requests say so; anything else is a script ("api")."""
    source = "dashboard" if request.headers.get("hx-request") == "true" else "api"
    return f"{source} {peer_of(request)}"
