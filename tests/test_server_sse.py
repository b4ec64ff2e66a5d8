"""GET /events over a real uvicorn: named panel events with live data, only changes sent, a reader that stalls
is dropped without slowing the others or the bot, clean shutdown with streams open."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from server.events import Broadcaster
from tests.conftest_server import ROOT, build_app, sim_config, uvicorn_server, wait_until

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Served:
    app: Any
    base: str
    client: httpx.AsyncClient


@dataclass
class SseEvent:
    name: str
    data: str
    at: float = field(default_factory=time.monotonic)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    log_dir = tmp_path_factory.mktemp("sse-logs")
    app = build_app(sim_config(log_dir), log_dir)
    # small socket buffers: a client that stops reading backs up in seconds, not megabytes
    async with (
        uvicorn_server(app, send_buffer=4096) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        yield Served(app, base, client)


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Minimal text/event-stream parser: `event:` + `data:` lines, dispatched on a blank line."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SseEvent(name, "\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])


@contextlib.asynccontextmanager
async def stream(base: str) -> AsyncIterator[tuple[httpx.Response, AsyncIterator[SseEvent]]]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=30)) as c,
        c.stream("GET", "/events", headers={"Accept": "text/event-stream"}) as r,
    ):
        yield r, sse_events(r)


def _has_prices(board_html: str) -> bool:
    best_bid = board_html.split('id="best-bid"', 1)[1].split("</span>", 1)[0]
    return any(ch.isdigit() for ch in best_bid)


# ---- the broadcaster on its own: ticks driven by hand ------------------------------------------------------
class FakeBot:
    def __init__(self) -> None:
        self.age = 0
        self.state = "RUNNING"
        self.mid = 100
        self.snapshots = 0
        self.fail = False

    def snapshot(self) -> dict[str, Any]:
        self.snapshots += 1
        return {"state": self.state, "age": self.age, "chart": {"mid": [[1, self.mid]]}}

    def render(self, snap: dict[str, Any]) -> dict[str, str]:
        if self.fail:
            raise RuntimeError("template bug")
        return {"banner": f"<b>{snap['state']}</b>", "board": f"age {snap['age']}"}


def _drain(client: Any) -> list[bytes | None]:
    out = []
    while not client.queue.empty():
        out.append(client.queue.get_nowait())
    return out


def _names(chunks: list[bytes | None]) -> list[str]:
    return [line[7:] for c in chunks if c for line in c.decode().splitlines() if line.startswith("event: ")]


@pytest.mark.asyncio
async def test_broadcaster_sends_each_panel_once_and_then_only_changes() -> None:
    bot = FakeBot()
    b = Broadcaster(bot.snapshot, bot.render, lambda s: s["chart"], hz=4)
    early = b.subscribe("early")
    b.tick()
    assert _names(_drain(early)) == ["banner", "board", "chart"]
    bot.age = 1
    b.tick()
    assert _names(_drain(early)) == ["board"]  # banner unchanged, chart only every 4th tick
    late = b.subscribe("late")
    assert _names(_drain(late)) == ["banner", "board", "chart"]  # a newcomer gets the whole page
    bot.state, bot.mid = "PAUSED", 101
    b.tick()
    b.tick()
    assert _names(_drain(early)) == ["banner"]  # best age did not move: the board stays quiet
    bot.age = 2
    b.tick()  # 4th tick: chart changed, sent
    assert _names(_drain(late)) == ["banner", "board", "chart"]
    assert bot.snapshots == 5  # one snapshot per tick, whatever the client count


@pytest.mark.asyncio
async def test_broadcaster_drops_a_full_queue_and_keeps_the_others() -> None:
    bot = FakeBot()
    b = Broadcaster(bot.snapshot, bot.render, lambda s: s["chart"], hz=8, queue_size=3)
    slow, fast = b.subscribe("slow"), b.subscribe("fast")
    for i in range(1, 6):
        bot.age = i
        b.tick()  # synchronous: it cannot wait for anyone
        _drain(fast)
    assert slow.dropped and not fast.dropped
    assert b.client_count == 1 and b.dropped_total == 1
    assert slow.queue.qsize() == 1  # only the end mark is left: its stream ends at once
    async with asyncio.timeout(1):
        received = [chunk async for chunk in b.stream(slow)]
    assert received == []
    bot.age = 99
    b.tick()
    assert _names(_drain(fast)) == ["board"]


@pytest.mark.asyncio
async def test_broadcaster_survives_a_render_error() -> None:
    bot = FakeBot()
    b = Broadcaster(bot.snapshot, bot.render, lambda s: s["chart"], hz=8)
    client = b.subscribe("x")
    _drain(client)
    bot.fail = True
    b.tick()
    assert b.render_errors == 1 and _drain(client) == []
    bot.fail = False
    b.tick()
    assert _names(_drain(client)) == ["banner", "board", "chart"]


# ---- the real stream -------------------------------------------------------------------------------------
@MODULE_LOOP
async def test_stream_carries_every_panel_with_current_data(served: Served) -> None:
    await served.client.post("/strategy/start")
    latest: dict[str, str] = {}
    async with stream(served.base) as (response, events):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        async with asyncio.timeout(30):
            async for ev in events:
                latest[ev.name] = ev.data
                if {
                    "banner",
                    "board",
                    "orders",
                    "inventory",
                    "decisions",
                    "fills",
                    "health",
                    "config",
                    "chart",
                } <= set(latest) and _has_prices(latest["board"]):
                    break
    assert 'id="state"' in latest["banner"] and ">RUNNING<" in latest["banner"]
    assert 'id="best-age"' in latest["board"] and 'id="ladder"' in latest["board"]
    assert "stall_T_ms" in latest["config"]
    chart = json.loads(latest["chart"])
    assert set(chart) >= {"mid", "fills", "pnl"}


@MODULE_LOOP
async def test_only_changed_panels_are_sent(served: Served) -> None:
    await served.client.post("/strategy/start")
    async with stream(served.base) as (_, events):
        first: set[str] = set()
        after: list[str] = []
        async with asyncio.timeout(30):
            async for ev in events:  # the first burst: every panel as it stands
                first.add(ev.name)
                if {"banner", "board"} <= first:
                    break
            async for ev in events:  # then: the board ticks (best age moves), the banner stays quiet
                after.append(ev.name)
                if after.count("board") >= 8:
                    break
        assert "banner" not in after
        r = await served.client.post("/strategy/pause")
        assert r.status_code == 200
        async with asyncio.timeout(10):
            async for ev in events:
                if ev.name == "banner":
                    assert ">PAUSED<" in ev.data and 'data-state="PAUSED"' in ev.data
                    break
    await served.client.post("/strategy/resume")


@MODULE_LOOP
async def test_a_client_that_goes_away_is_forgotten(served: Served) -> None:
    broadcaster = served.app.state.broadcaster
    before = broadcaster.client_count
    async with stream(served.base) as (_, events):
        async with asyncio.timeout(10):
            await anext(events)
        assert broadcaster.client_count == before + 1

    async def gone() -> bool:
        return broadcaster.client_count == before

    await wait_until(gone, 10, "the closed stream to be unsubscribed")


def _p99_ms(samples: list[int]) -> float:
    return statistics.quantiles(samples, n=100)[98] / 1e6 if len(samples) >= 2 else float("nan")


async def _latency_window(runner: Any, seconds: float) -> list[int]:
    """The decision latencies the bot recorded during the next `seconds` (far fewer than the window holds)."""
    samples = runner.metrics.decision_latency_ns
    start = len(samples)
    await asyncio.sleep(seconds)  # a measurement window, not synchronisation
    assert len(samples) < (samples.maxlen or 0), "the sample window wrapped: samples lost"
    return list(samples)[start:]


@MODULE_LOOP
async def test_a_stalled_reader_is_dropped_and_nobody_else_waits(served: Served) -> None:
    await served.client.post("/strategy/start")
    broadcaster = served.app.state.broadcaster
    runner = served.app.state.service.runner
    port = int(served.base.rsplit(":", 1)[1])
    boards: list[float] = []

    async def good_reader() -> None:
        async with stream(served.base) as (_, events):
            async for ev in events:
                if ev.name == "board":
                    boards.append(time.monotonic())

    reader = asyncio.create_task(good_reader())
    try:
        await wait_until(_async(lambda: len(boards) >= 3), 30, "the good client's first ticks")
        without = await _latency_window(runner, 4.0)

        # a client that connects and never reads: tiny receive buffer, request sent, then silence
        loop = asyncio.get_running_loop()
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.setblocking(False)
        await loop.sock_connect(stalled, ("127.0.0.1", port))
        await loop.sock_sendall(
            stalled,
            (f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n").encode(),
        )
        dropped_before = broadcaster.dropped_total
        stalled_at = time.monotonic()
        with_stall_task = asyncio.create_task(_latency_window(runner, 4.0))
        await wait_until(
            _async(lambda: broadcaster.dropped_total > dropped_before), 60, "the stalled client drop"
        )
        dropped_at = time.monotonic()
        with_stall = await with_stall_task

        # the other client kept its ticks while the stalled one backed up, and keeps them after
        assert sum(stalled_at < t < dropped_at for t in boards) >= max(1, int((dropped_at - stalled_at) * 2))
        ticks_at_drop = len(boards)
        await wait_until(_async(lambda: len(boards) >= ticks_at_drop + 5), 10, "ticks after the drop")
        assert broadcaster.client_count == 1

        # the stalled client's connection is reset, not left open with its queued megabytes: the server holds
        # it no longer, and the client reads to the end of what reached it, then EOF or the reset
        guard = served.app.state.connections
        await wait_until(
            _async(lambda: not guard.is_open(stalled.getsockname())), 30, "the stalled socket reset"
        )
        async with asyncio.timeout(30):
            with contextlib.suppress(ConnectionResetError):
                while await loop.sock_recv(stalled, 65536):
                    pass
        stalled.close()

        print(
            f"\ndecision latency p99: {_p99_ms(without):.3f} ms without a stalled client "
            f"({len(without)} decisions), "
            f"{_p99_ms(with_stall):.3f} ms with one ({len(with_stall)} decisions); "
            f"dropped after {dropped_at - stalled_at:.1f} s; loop lag {runner.metrics.loop_lag_ms:.2f} ms"
        )
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def _async(check: Any) -> Any:
    async def predicate() -> bool:
        return bool(check())

    return predicate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_shuts_down_cleanly_with_a_stream_open(tmp_path: Path, sig: signal.Signals) -> None:
    """`python -m server` with a dashboard stream open: SIGTERM / Ctrl-C ends the stream, stops the bot, exits
    0."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "STST_TOKEN"} | {"PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "--config",
        str(ROOT / "configs" / "base.yml"),
        "--override",
        str(ROOT / "configs" / "sim.yml"),
        "--port",
        str(port),
        "--log-dir",
        str(tmp_path / "logs"),
        "--env-file",
        str(tmp_path / "none.env"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = asyncio.create_task(proc.stdout.read())  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:

        async def up() -> bool:
            try:
                async with httpx.AsyncClient(base_url=base) as c:
                    return (await c.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return proc.returncode is not None

        await wait_until(up, 60, "python -m server to answer")
        assert proc.returncode is None, (await output).decode()
        async with stream(base) as (_, events):
            async with asyncio.timeout(30):
                await anext(events)
            proc.send_signal(sig)
            async with asyncio.timeout(30):
                with contextlib.suppress(httpx.HTTPError):
                    async for _ in events:  # the server ends the stream itself
                        pass
        async with asyncio.timeout(30):
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = (await output).decode()
    assert code == 0, log
    assert "control plane down" in log and "runner closed" in log
    assert "without completing response" not in log  # the stream got its proper last chunk
