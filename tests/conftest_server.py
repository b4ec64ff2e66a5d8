"""Helpers for the server tests: the real app over the real BotService in sim mode, served either through
httpx's ASGITransport (lifespan run by hand) or by a real uvicorn on a free port as a task on the test's
loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from bot.config import AppConfig, load_app_config
from bot.config.loader import deep_merge, validate_config
from server.app import create_app

ROOT = Path(__file__).resolve().parent.parent
ASGI_PORT = 8000  # the port the in-process client pretends to talk to (= cfg.server.port)


def sim_config(log_dir: Path, **overrides: Any) -> AppConfig:
    """configs/base.yml + configs/sim.yml with logs and the state file in `log_dir`; `overrides`
    deep-merged."""
    base = load_app_config(ROOT / "configs" / "base.yml", ROOT / "configs" / "sim.yml")
    data = deep_merge(
        base.model_dump(mode="python"),
        {
            "logging": {"dir": str(log_dir)},
            "runner": {"state_file": str(log_dir / "state.json")},
            "server": {"port": ASGI_PORT},
            "sim": {"activity": 3.0},
        },
    )
    data["sim"]["api_secret"] = base.sim.api_secret.get_secret_value()
    return validate_config(deep_merge(data, overrides), "test")


def build_service(cfg: AppConfig, log_dir: Path) -> Any:
    from bot.service import BotService

    return BotService(cfg, log_dir=log_dir, state_file=log_dir / "state.json")


def build_app(cfg: AppConfig, log_dir: Path, token: str | None = None) -> FastAPI:
    return create_app(cfg, log_dir=log_dir, token=token, service=build_service(cfg, log_dir))


@contextlib.asynccontextmanager
async def asgi_client(app: FastAPI, port: int = ASGI_PORT) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan (bot and venue started on this loop) and a client that talks to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50123))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}") as client:
            yield client


@contextlib.asynccontextmanager
async def uvicorn_server(
    app: FastAPI, startup_timeout: float = 60.0, send_buffer: int | None = None
) -> AsyncIterator[str]:
    """A real uvicorn on 127.0.0.1 and a free port, as a task on the running loop. Yields the base URL.
    `send_buffer` fixes SO_SNDBUF of the accepted sockets (Linux inherits it from the listener), so a client
    that stops reading backs up within seconds instead of after megabytes of kernel autotuned buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    # a real SIGTERM ends open SSE streams through sse-starlette's hook; setting should_exit (as here) does
    # not, so bound the wait for them as `python -m server` does
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            timeout_graceful_shutdown=5,
            **app.state.connections.uvicorn_options(),
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + startup_timeout
    while not server.started:  # uvicorn offers no event for "listening"; its flag is the contract
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited during startup")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        await asyncio.sleep(0.02)
    port = sock.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)
        sock.close()


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "condition"
) -> None:
    """Poll an outside condition (the simulated market) that offers nothing to await."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for_board(client: httpx.AsyncClient, within: float = 30.0) -> dict[str, Any]:
    """Until the bot shows a two-sided book; returns that /state."""
    seen: dict[str, Any] = {}

    async def has_book() -> bool:
        r = await client.get("/state")
        seen.update(r.json())
        board = seen.get("board") or {}
        return board.get("best_bid") is not None and board.get("best_ask") is not None

    await wait_until(has_book, within, "a two-sided board")
    return seen


async def ensure_state(client: httpx.AsyncClient, target: str) -> None:
    """Bring the bot to `target` through the API, from whatever state it is in."""
    state = (await client.get("/strategy")).json()["state"]
    if state == target:
        return
    paths = {
        ("KILLED", "STOPPED"): ["reset"],
        ("KILLED", "RUNNING"): ["reset", "start"],
        ("KILLED", "PAUSED"): ["reset", "start", "pause"],
        ("STOPPED", "RUNNING"): ["start"],
        ("STOPPED", "PAUSED"): ["start", "pause"],
        ("STOPPED", "KILLED"): ["kill"],
        ("RUNNING", "KILLED"): ["kill"],
        ("PAUSED", "KILLED"): ["kill"],
        ("RUNNING", "PAUSED"): ["pause"],
        ("RUNNING", "STOPPED"): ["stop"],
        ("PAUSED", "RUNNING"): ["resume"],
        ("PAUSED", "STOPPED"): ["stop"],
    }
    for action in paths[(state, target)]:
        r = await client.post(f"/strategy/{action}")
        assert r.status_code == 200, r.text
