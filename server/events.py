"""One broadcaster for every dashboard: snapshot → render each panel once per tick → fan out the same bytes.

The loop never waits for a client: each client has a small bounded queue, a put that would block drops that
client instead (its stream ends; the browser's EventSource reconnects and starts fresh). A panel is sent only
when its HTML changed since the last tick; a new client first gets every panel as it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from loguru import logger
from sse_starlette.event import ServerSentEvent

CHART_EVENT = "chart"
RETRY_MS = 1000  # the browser reconnects this soon after a dropped stream
ERROR_LOG_INTERVAL = 10.0


@dataclass(eq=False)
class SseClient:
    queue: asyncio.Queue[bytes | None]
    peer: str
    dropped: bool = False
    connected_at: float = field(default_factory=time.monotonic)


def encode_event(name: str, data: str) -> bytes:
    return ServerSentEvent(data=data, event=name).encode()


class Broadcaster:
    """`snapshot()` and `render(snapshot) -> {panel: html}` are called once per tick, only while someone
    listens. `chart(snapshot) -> JSON-able` is sent as the `chart` event at most about once a second."""

    def __init__(
        self,
        snapshot: Callable[[], Any],
        render: Callable[[Any], dict[str, str]],
        chart: Callable[[Any], Any],
        hz: float,
        *,
        queue_size: int = 8,
    ) -> None:
        self._snapshot = snapshot
        self._render = render
        self._chart = chart
        self.interval = 1.0 / hz
        self._chart_every = max(1, round(hz))
        self.queue_size = queue_size
        self._clients: set[SseClient] = set()
        self._last: dict[str, bytes] = {}  # panel → its last encoded event
        self._has_clients = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.dropped_total = 0
        self.render_errors = 0
        self.last_tick_ms = 0.0  # time to snapshot + render + fan out, latest tick
        self._last_error_log = -ERROR_LOG_INTERVAL

    # ---- life cycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sse-broadcaster")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.disconnect_all("server stopping")

    def disconnect_all(self, why: str) -> None:
        """End every open stream (browsers reconnect on their own)."""
        for client in list(self._clients):
            self.end(client, why)

    # ---- clients ----------------------------------------------------------------------------------------
    @property
    def client_count(self) -> int:
        return len(self._clients)

    def subscribe(self, peer: str) -> SseClient:
        client = SseClient(queue=asyncio.Queue(self.queue_size), peer=peer)
        hello = ServerSentEvent(comment="stall_then_strike", retry=RETRY_MS).encode()
        client.queue.put_nowait(hello + b"".join(self._last.values()))
        self._clients.add(client)
        self._has_clients.set()
        return client

    def unsubscribe(self, client: SseClient) -> None:
        self._clients.discard(client)
        if not self._clients:
            self._has_clients.clear()

    def end(self, client: SseClient, why: str) -> None:
        """End one stream. Never awaits: empty its queue and leave the end-of-stream mark so its generator
        returns as soon as it next reads."""
        self.unsubscribe(client)
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)
        logger.info("dashboard stream {} ended: {}", client.peer, why)

    def _drop(self, client: SseClient, why: str) -> None:
        client.dropped = True
        self.dropped_total += 1
        self.end(client, why)

    async def stream(self, client: SseClient) -> AsyncIterator[bytes]:
        """The body of one client's EventSourceResponse."""
        try:
            while True:
                chunk = await client.queue.get()
                if chunk is None:
                    return
                yield chunk
        finally:
            self.unsubscribe(client)

    # ---- the tick -----------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Take one snapshot, render every panel once, send each changed panel to every client."""
        started = time.perf_counter()
        snap = self._snapshot()
        try:
            panels = self._render(snap)
        except Exception:  # a template bug must not kill the stream for good
            self.render_errors += 1
            self._log_error("dashboard render failed")
            return
        changed: list[bytes] = []
        for name, html in panels.items():
            encoded = encode_event(name, html)
            if self._last.get(name) != encoded:
                self._last[name] = encoded
                changed.append(encoded)
        if self.ticks % self._chart_every == 0:
            chart = encode_event(CHART_EVENT, json.dumps(self._chart(snap), separators=(",", ":")))
            if self._last.get(CHART_EVENT) != chart:
                self._last[CHART_EVENT] = chart
                changed.append(chart)
        self.ticks += 1
        if changed:
            payload = b"".join(changed)
            for client in list(self._clients):
                try:
                    client.queue.put_nowait(payload)
                except asyncio.QueueFull:
                    self._drop(client, f"too slow ({self.queue_size} updates behind)")
        self.last_tick_ms = (time.perf_counter() - started) * 1000

    def _log_error(self, what: str) -> None:
        """At most one traceback every ERROR_LOG_INTERVAL: a broken panel must not flood the log at 8 Hz."""
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            logger.exception("{} (repeats are logged at most every {:.0f} s)", what, ERROR_LOG_INTERVAL)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if not self._clients:
                await self._has_clients.wait()
                next_at = loop.time()
            try:
                self.tick()
            except Exception:
                self._log_error("dashboard tick failed")
            # fixed cadence without drift; after a long stall skip the missed ticks rather than burst
            next_at += self.interval
            if next_at < loop.time():
                next_at = loop.time() + self.interval
            await asyncio.sleep(next_at - loop.time())
