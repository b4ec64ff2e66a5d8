"""The web edge's share of the process: a cap on open connections and a deadline for every request head.

Why at the protocol: uvicorn's keep-alive timer starts only after a response, `limit_concurrency` counts
requests, and an ASGI middleware never sees a connection that sends nothing — so a client that connects and
stays silent (or trickles half a header) holds a file handle for ever, and a thousand of them leave the bot
none to cancel its orders with. ConnectionGuard owns a subclass of uvicorn's h11 protocol, one instance per
accepted connection:

- at most `max_connections` are open. A connection past the cap evicts the one idle the longest (no request in
  flight); when every one is busy, the newcomer is answered 503 and closed. Idle sockets give way, so /healthz
  and the kill button always get in;
- a connection must deliver a whole request head within `header_timeout` of connecting or of its last
  response;
- `abort(client)` resets one connection at once. A dashboard stream that stopped reading is cut this way: a
  close would wait for its kernel buffer to drain, which a reader that never reads never lets happen.

The listening backlog (`ACCEPT_BACKLOG`) bounds how many sockets asyncio accepts in one go before any of them
is seen here, so the peak is `max_connections + ACCEPT_BACKLOG` handles, and `connection_cap` keeps that below
the process's limit with `RESERVED_HANDLES` left for the bot (exchange sockets, logs, the state file).
"""

from __future__ import annotations

import asyncio
import resource
from collections import OrderedDict
from typing import Any, ClassVar

from loguru import logger
from uvicorn.protocols.http.h11_impl import H11Protocol

ACCEPT_BACKLOG = 64
RESERVED_HANDLES = 256
_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 29\r\n"
    b"connection: close\r\nretry-after: 1\r\n\r\ntoo many connections, retry\r\n"
)


def raise_handle_limit() -> int:
    """Lift the soft file-handle limit to the hard one (a 1,024 default is common); returns the soft limit
    now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as e:
            logger.warning("could not raise the file-handle limit from {}: {}", soft, e)
    return soft


def connection_cap(max_connections: int, handle_limit: int) -> int:
    """The configured cap, lowered so the web side can never take the handles the bot needs."""
    room = handle_limit - RESERVED_HANDLES - ACCEPT_BACKLOG
    if room < max_connections:
        cap = max(8, room)
        logger.warning(
            "file-handle limit {} leaves room for {} web connections (server.max_connections {})",
            handle_limit,
            cap,
            max_connections,
        )
        return cap
    return max_connections


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, reporting to its ConnectionGuard (bound by `ConnectionGuard.protocol`)."""

    guard: ClassVar[ConnectionGuard]
    _head_deadline: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.busy:
            self._cancel_head_deadline()
            self.guard.mark_busy(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.busy:
            self.arm_head_deadline()
            self.guard.mark_idle(self)

    def arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.guard.header_timeout, self._head_overdue)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if not self.busy and not self.transport.is_closing():
            self.guard.timed_out += 1
            self.transport.abort()


class ConnectionGuard:
    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._open: set[GuardedH11Protocol] = set()
        self._idle: OrderedDict[GuardedH11Protocol, None] = OrderedDict()  # longest idle first
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0
        self.aborted = 0
        self._refusals_unlogged = 0
        self._last_refusal_log = -1e9
        # the class uvicorn instantiates per connection (`uvicorn.Config(http=guard.protocol)`)
        self.protocol: type[GuardedH11Protocol] = type(
            "GuardedH11Protocol", (GuardedH11Protocol,), {"guard": self}
        )

    @property
    def open_count(self) -> int:
        return len(self._open)

    def uvicorn_options(self) -> dict[str, Any]:
        """What `uvicorn.Config` / `uvicorn.run` needs for the guard to hold."""
        return {"http": self.protocol, "ws": "none", "backlog": ACCEPT_BACKLOG}

    def admit(self, conn: GuardedH11Protocol) -> None:
        if len(self._open) >= self.max_connections:
            if self._idle:
                victim, _ = self._idle.popitem(last=False)
                self._open.discard(victim)
                self.evicted += 1
                victim.transport.abort()
            else:
                self.refused += 1
                self._log_refusal()
                conn.transport.write(_BUSY_ANSWER)
                conn.transport.close()
                return
        self._open.add(conn)
        self._idle[conn] = None
        conn.arm_head_deadline()

    def forget(self, conn: GuardedH11Protocol) -> None:
        self._open.discard(conn)
        self._idle.pop(conn, None)

    def mark_busy(self, conn: GuardedH11Protocol) -> None:
        self._idle.pop(conn, None)

    def mark_idle(self, conn: GuardedH11Protocol) -> None:
        if conn in self._open:
            self._idle[conn] = None
            self._idle.move_to_end(conn)

    def is_open(self, client: Any) -> bool:
        return any(conn.client == tuple(client) for conn in self._open)

    def abort(self, client: Any) -> bool:
        """Reset the connection whose peer is `client` (the ASGI scope's `client`); False when none is
        open."""
        if client is None:
            return False
        for conn in self._open:
            if conn.client == tuple(client):
                self.forget(conn)
                self.aborted += 1
                conn.transport.abort()
                return True
        return False

    def _log_refusal(self) -> None:
        """One line per 10 s at most: a flood must not rotate the log."""
        loop = asyncio.get_running_loop()
        self._refusals_unlogged += 1
        if loop.time() - self._last_refusal_log >= 10:
            logger.warning(
                "refused {} connection(s): all {} web connections busy",
                self._refusals_unlogged,
                self.max_connections,
            )
            self._last_refusal_log = loop.time()
            self._refusals_unlogged = 0
