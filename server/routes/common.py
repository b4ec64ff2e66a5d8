"""Small helpers every router uses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from bot.runner import BotRunner


def service_of(request: Request) -> Any:
    return request.app.state.service


def get_runner(request: Request) -> BotRunner:
    """The typed dependency every route that reads or drives the bot declares (`runner: RunnerDep`)."""
    return runner_in(service_of(request))


RunnerDep = Annotated[BotRunner, Depends(get_runner)]


def runner_in(service: Any) -> BotRunner:
    """The service's runner: it exists from the app's start (the lifespan starts the service first)."""
    if service.runner is None:
        raise RuntimeError("the bot service has not started")
    return service.runner


def peer_of(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "unknown"


def who_of(request: Request) -> str:
    """The actor a reason names: the dashboard's htmx requests say so; anything else is a script ("api"). The
    peer's address goes to the runtime log beside it, never into a reason (an ephemeral port says nothing)."""
    return "dashboard" if request.headers.get("hx-request") == "true" else "api"
