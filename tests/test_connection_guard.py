"""The web edge cannot starve the bot: silent and trickling connections are closed, past the cap the
longest-idle connection gives way, and under a flood of idle connections at a 1,024 file-handle limit the bot
still answers, cancels, flattens and saves its kill latch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, eventually
from tests.conftest_server import build_app, sim_config, uvicorn_server
from tests.test_restart_external import free_port, procs, spawn  # noqa: F401 - procs is a fixture

pytestmark = pytest.mark.integration


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Read until the server ends the connection (EOF or reset); what it sent before that."""
    got = b""
    async with asyncio.timeout(within):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                got += chunk
    return got


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


async def test_silent_and_trickling_connections_are_closed_after_the_head_deadline(tmp_path: Path) -> None:
    app = build_app(sim_config(tmp_path, server={"header_timeout_sec": 1}), tmp_path)
    async with uvicorn_server(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        port = _port(base)
        silent = await _connect(port)
        trickle = await _connect(port)
        trickle[1].write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-A: ".encode())
        kept = await _connect(port)  # one whole request, then half of the next
        kept[1].write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        first = await kept[0].readuntil(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200")
        kept[1].write(b"GET /healthz HTTP/1.1\r\n")
        guard = app.state.connections
        for reader, _ in (silent, trickle):
            assert await _closed_by_server(reader, 15) == b""
        await _closed_by_server(kept[0], 15)
        assert guard.timed_out >= 3
        # a client that sends its request answers normally meanwhile
        assert (await client.get("/healthz")).status_code == 200
        for _, writer in (silent, trickle, kept):
            writer.close()


async def test_past_the_cap_the_longest_idle_connection_gives_way(tmp_path: Path) -> None:
    app = build_app(sim_config(tmp_path, server={"max_connections": 8, "header_timeout_sec": 120}), tmp_path)
    async with uvicorn_server(app) as base:
        guard = app.state.connections
        port = _port(base)
        idle = [await _connect(port) for _ in range(8)]
        await eventually(lambda: guard.open_count == 8, 10, "eight idle connections admitted")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            r = await client.get("/healthz")
            assert r.status_code == 200
            assert guard.open_count <= 8 and guard.evicted >= 1
        assert await _closed_by_server(idle[0][0], 10) == b""  # the oldest one went, not a busy one
        for _, writer in idle:
            writer.close()


async def test_when_every_connection_is_busy_a_newcomer_is_told_503_and_streams_are_capped(
    tmp_path: Path,
) -> None:
    app = build_app(sim_config(tmp_path, server={"max_connections": 8, "max_streams": 8}), tmp_path)
    async with uvicorn_server(app) as base:
        guard = app.state.connections
        port = _port(base)
        streams = []
        for _ in range(8):  # dashboard streams: requests that never end
            reader, writer = await _connect(port)
            writer.write(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            streams.append((reader, writer))
        reader, writer = await _connect(port)
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        answer = await _closed_by_server(reader, 10)
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        assert guard.refused >= 1
        for _, w in streams:
            w.close()
    app2 = build_app(sim_config(tmp_path / "b", server={"max_streams": 1}), tmp_path / "b")
    async with uvicorn_server(app2) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        async with client.stream("GET", "/events") as first:
            assert first.status_code == 200
            second = await client.get("/events")
            assert second.status_code == 503 and "too many dashboard streams" in second.json()["detail"]


OVERRIDE = """
env: sim
strategy: {stall_T_ms: 3600000, max_reverse_ticks: 100000}
runner: {reconcile_interval_sec: 2}
server: {header_timeout_sec: 120}
"""
HANDLE_LIMIT = 1024
FLOOD = 1030


def _open_handles(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_flood_of_idle_connections_at_a_1024_handle_limit_cannot_stop_a_kill(
    tmp_path: Path,
    procs: Any,  # noqa: F811
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 200:
        pytest.skip(f"this test process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    venue = await spawn(["-m", "bot.sim", "--port", "0", "--seed", "9"], tmp_path / "venue.log", ROOT)
    procs.append(venue)
    await eventually(lambda: "WebSocket" in venue.text(), 30, "the venue to listen")
    venue_url = re.search(r"REST\s+(http://[\d.]+:\d+)", venue.text()).group(1)  # type: ignore[union-attr]
    (tmp_path / "override.yml").write_text(OVERRIDE)
    log_dir = tmp_path / "logs"
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    server = await spawn(
        [
            "-m",
            "server",
            "--override",
            str(tmp_path / "override.yml"),
            "--port",
            str(port),
            "--log-dir",
            str(log_dir),
            "--env-file",
            str(tmp_path / "no.env"),
            "--venue",
            venue_url,
        ],
        tmp_path / "server.log",
        ROOT,
        handle_limit=HANDLE_LIMIT,
    )
    procs.append(server)
    flood: list[socket.socket] = []
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def reconciled() -> bool:
                try:
                    return (await client.get(f"{api}/state")).json()["health"]["reconciled_at"] is not None
                except (httpx.HTTPError, ValueError, KeyError):
                    return False

            await _until(reconciled, 60, "the server up and reconciled")
            r = await client.post(f"{venue_url}/_sim/order", json={"side": "BUY", "size": "0.003"})
            assert r.status_code == 200, r.text

            async def holds_position() -> bool:
                s = (await client.get(f"{api}/state")).json()
                return Decimal(s["inventory"]["position_btc"]) == Decimal("0.003")

            await _until(holds_position, 30, "the bot to count the hand trade")

            loop = asyncio.get_running_loop()
            for _ in range(FLOOD):  # connect and say nothing, as an attacker would
                s = socket.socket()
                s.setblocking(False)
                try:
                    await loop.sock_connect(s, ("127.0.0.1", port))
                except OSError:
                    s.close()
                    continue
                flood.append(s)
            assert len(flood) >= FLOOD - 50
            assert _open_handles(server.proc.pid) < HANDLE_LIMIT - 100

            assert (await client.get(f"{api}/healthz")).status_code == 200
            r = await client.post(f"{api}/strategy/kill")
            assert r.status_code == 200, r.text

            async def venue_flat() -> bool:
                v = (await client.get(f"{venue_url}/_sim/ledger")).json()
                return Decimal(v["position"]) == 0 and v["open_orders"] == []

            await _until(venue_flat, 30, "the kill to flatten at the venue under the flood")
            saved = json.loads((log_dir / "state.json").read_text())
            assert saved.get("run_state", saved.get("state")) == "KILLED", saved
            assert _open_handles(server.proc.pid) < HANDLE_LIMIT - 100
        text = server.text() + "".join(
            p.read_text(errors="replace") for p in (log_dir / "runtime").glob("*.log")
        )
        assert "Too many open files" not in text and "out of system resource" not in text
    finally:
        for s in flood:
            s.close()


async def _until(check: Any, within: float, what: str) -> None:
    box = {"ok": False}

    async def probe() -> None:
        while not box["ok"]:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                box["ok"] = bool(await check())
            if not box["ok"]:
                await asyncio.sleep(0.05)

    task = asyncio.create_task(probe())
    try:
        await eventually(lambda: box["ok"] or task.done(), within, what)
    finally:
        task.cancel()
