"""The venue's protocol edge: bitFlyer's REST and JSON-RPC WebSocket API on one aiohttp port, plus `/_sim/`
admin.

`SimVenue` runs on the caller's event loop (the bot and the dashboard share one loop): one scheduler task
wakes only when the core has something due (next diff frame, ticker, expiry, snapshot), and each WebSocket
client has its own bounded send queue, so a slow client is dropped instead of slowing anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import hmac
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web
from loguru import logger

from bot.config.loader import SimConfig
from bot.sim.clock import Clock, SystemClock
from bot.sim.exchange import (
    CHARGE_KINDS,
    HEALTH_VALUES,
    MARKETS,
    PRODUCT,
    Exchange,
    Outbound,
    Private,
    Public,
    VenueError,
)
from bot.sim.faults import Faults, valid_error
from bot.sim.ledger import Ledger
from bot.sim.ratelimit import SMALL_ORDER_MAX_SAT, RateLimiter, Verdict
from bot.sim.wire import btc_to_sat, rest_date
from bot.types.dto import Side

SEC = 1_000_000_000
JSON_CT = "application/json; charset=utf-8"
PUBLIC_PREFIXES = (
    "lightning_board_snapshot_",
    "lightning_board_",
    "lightning_ticker_",
    "lightning_executions_",
)
PRIVATE_CHANNELS = ("child_order_events", "parent_order_events")
SNAPSHOT_CHANNEL = f"lightning_board_snapshot_{PRODUCT}"
GET_PERMISSIONS = "/v1/me/getpermissions"
MAX_CLOCK_OFFSET_S = 86_400  # a day either way: enough for any test of a wrong clock
QUEUE_MAX = 1000  # frames waiting for one client before it is dropped as too slow
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
    "</h1></center>\r\n</body>\r\n</html>\r\n"
)


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_dumps(data), status=status, content_type="application/json", charset="utf-8", headers=headers
    )


def _error(
    status: int, message: str, http_status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return _json({"status": status, "error_message": message, "data": None}, http_status, headers)


def _rpc_error(req_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": req_id, "error": err}


@dataclass(frozen=True, slots=True)
class _Call:
    """One authenticated private REST call, as the endpoint functions see it."""

    key: str
    query: dict[str, str]
    body: dict[str, Any]
    now: int
    fault: str | None


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    channels: set[str] = field(default_factory=set)
    api_key: str | None = None
    snapshot_due: int | None = None
    writer: asyncio.Task[None] | None = None

    def push(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            return False


class SimVenue:
    """A simulated bitFlyer for FX_BTC_JPY. `await start()`, use `base_url` / `ws_url`, `await stop()`.

    With `public_feed_url` it is the paper venue: no simulated crowd; the book's other participants are
    bitFlyer's public feed at that URL (snapshots, diffs, executions), and only our orders are matched
    here."""

    def __init__(
        self,
        cfg: SimConfig | None = None,
        *,
        clock: Clock | None = None,
        public_feed_url: str | None = None,
        product_code: str = PRODUCT,
    ) -> None:
        if product_code != PRODUCT:
            raise ValueError(f"the venue trades {PRODUCT} only, not {product_code}")
        self.cfg = cfg or SimConfig()
        self.clock = clock or SystemClock()
        self.public_feed_url = public_feed_url
        now = self.clock.monotonic_ns()
        self.exchange = Exchange(
            self.cfg, now, self.clock.time_ns() - now, simulate_market=public_feed_url is None
        )
        self._feed_task: asyncio.Task[None] | None = None
        self.feed_connected = False
        self.feed_connects = 0
        self._secrets: dict[str, bytes] = {}
        # per key: the private paths it may call (None: every one), as bitFlyer's API key settings
        self._permissions: dict[str, frozenset[str] | None] = {}
        self._private_paths: list[str] = []  # filled by build_app
        self._base_wall_offset_ns = self.exchange.wall_offset_ns
        self.clock_offset_ns = 0  # the clock_offset fault: the venue's wall clock runs this far from ours
        self.add_account(self.cfg.api_key, self.cfg.api_secret.get_secret_value())
        self.faults = Faults(self.cfg.seed)
        self.limiter = RateLimiter(self.cfg.rate_limits)
        self._rng = random.Random(self.cfg.seed * 7 + 1)  # per-subscriber snapshot timing
        self._conns: set[_Conn] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.port = 0
        self.stats: dict[str, int] = {
            "frames_sent": 0,
            "slow_clients_dropped": 0,
            "rest_calls": 0,
            "rate_limited": 0,
        }

    # ---- life cycle ----------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.cfg.host

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/json-rpc"

    @property
    def ledger(self) -> Ledger:
        return self.exchange.ledger

    @property
    def api_key(self) -> str:
        return self.cfg.api_key

    @property
    def api_secret(self) -> str:
        return self.cfg.api_secret.get_secret_value()

    def add_account(self, api_key: str, api_secret: str, collateral_jpy: Decimal | None = None) -> None:
        self._secrets[api_key] = api_secret.encode()
        self.exchange.add_account(api_key, collateral_jpy)

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 20)
        app.on_response_prepare.append(self._date_header)
        r = app.router
        private_paths = self._private_paths
        private_paths.clear()

        def get(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
            if path.startswith("/v1/me/"):
                private_paths.append(path)
            r.add_get(path, handler)

        def post(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
            if path.startswith("/v1/me/"):
                private_paths.append(path)
            r.add_post(path, handler)

        get("/v1/markets", self._markets)
        get("/v1/getmarkets", self._markets)
        get("/v1/getboard", self._getboard)
        get("/v1/board", self._getboard)
        get("/v1/getticker", self._getticker)
        get("/v1/ticker", self._getticker)
        get("/v1/gethealth", self._gethealth)
        get("/v1/getboardstate", self._getboardstate)
        get("/v1/getexecutions", self._public_executions)
        get("/v1/me/getcollateral", self._private(lambda c: self.exchange.collateral(c.key)))
        get(
            "/v1/me/getcollateralhistory",
            self._private(lambda c: self.exchange.collateral_history(c.key, c.query)),
        )
        get("/v1/me/getpositions", self._private(self._positions))
        get("/v1/me/getchildorders", self._private(lambda c: self.exchange.child_orders(c.key, c.query)))
        get("/v1/me/getexecutions", self._private(lambda c: self.exchange.executions(c.key, c.query)))
        get("/v1/me/getbalance", self._private(lambda c: []))
        get(GET_PERMISSIONS, self._private(lambda c: self.permissions_of(c.key)))
        post("/v1/me/sendchildorder", self._private(self._send, post=True))
        post("/v1/me/cancelchildorder", self._private(self._cancel, post=True))
        post("/v1/me/cancelallchildorders", self._private(self._cancel_all, post=True))
        get("/json-rpc", self._ws_handler)
        post("/_sim/drop_ws", self._admin_drop_ws)
        post("/_sim/silence", self._admin_silence)
        post("/_sim/latency", self._admin_latency)
        post("/_sim/fail", self._admin_fail)
        post("/_sim/clear_faults", self._admin_clear)
        post("/_sim/rate_limit_trip", self._admin_trip)
        post("/_sim/maintenance", self._admin_maintenance)
        post("/_sim/health", self._admin_health)
        post("/_sim/order", self._admin_order)
        post("/_sim/charge", self._admin_charge)
        post("/_sim/collateral", self._admin_collateral)
        post("/_sim/permissions", self._admin_permissions)
        post("/_sim/clock_offset", self._admin_clock_offset)
        get("/_sim/ledger", self._admin_ledger)
        get("/_sim/state", self._admin_state)
        return app

    async def start(self) -> None:
        self._stopping.clear()
        self._runner = web.AppRunner(
            self.build_app(), access_log=None, shutdown_timeout=1.0, handle_signals=False
        )
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port)
        await self._site.start()
        server = self._site._server
        assert isinstance(server, asyncio.Server) and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self._task = asyncio.get_running_loop().create_task(self._scheduler(), name="sim-venue-scheduler")
        if self.public_feed_url is not None:
            self._feed_task = asyncio.get_running_loop().create_task(
                self._follow_feed(self.public_feed_url), name="paper-venue-feed"
            )

    async def stop(self) -> None:
        self._stopping.set()
        for task in (self._task, self._feed_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._feed_task = None
        await self.drop_ws()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimVenue:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- the clock -----------------------------------------------------------------------------------------
    async def _scheduler(self) -> None:
        while True:
            try:
                now = self.clock.monotonic_ns()
                self._dispatch(self.exchange.advance(now))
                self._send_snapshots(now)
                due = self.exchange.next_due()
                for c in self._conns:
                    if c.snapshot_due is not None:
                        due = min(due, c.snapshot_due)
            except Exception:  # a bug in the core must not kill the venue silently
                logger.exception("sim venue scheduler step failed")
                due = self.clock.monotonic_ns() + SEC // 10
            delay = max(0.0, (due - self.clock.monotonic_ns()) / SEC)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _dispatch(self, outs: list[Outbound]) -> None:
        if not outs or self.faults.silenced(self.clock.monotonic_ns()):
            return
        for o in outs:
            if isinstance(o, Public):
                targets = [c for c in self._conns if o.channel in c.channels]
                if targets:
                    self._send_all(targets, o.channel, o.message)
            elif isinstance(o, Private):
                targets = [
                    c for c in self._conns if c.api_key == o.api_key and "child_order_events" in c.channels
                ]
                if targets:
                    self._send_all(targets, "child_order_events", o.events)

    def _send_all(self, conns: list[_Conn], channel: str, message: Any) -> None:
        text = _dumps(
            {"jsonrpc": "2.0", "method": "channelMessage", "params": {"channel": channel, "message": message}}
        ).decode()
        for c in conns:
            if c.push(text):
                self.stats["frames_sent"] += 1
            else:
                self.stats["slow_clients_dropped"] += 1
                self._conns.discard(c)
                asyncio.get_running_loop().create_task(c.ws.close(code=1008, message=b"too slow"))

    def _send_snapshots(self, now: int) -> None:
        due = [c for c in self._conns if c.snapshot_due is not None and c.snapshot_due <= now]
        if not due:
            return
        for c in due:
            assert c.snapshot_due is not None
            c.snapshot_due = max(
                c.snapshot_due
                + int(self._rng.uniform(0.98, 1.02) * self.cfg.snapshot_interval_ms * 1_000_000),
                now,
            )
        if self.faults.silenced(now) or self.exchange.state == "CLOSED":
            return
        self._send_all(due, SNAPSHOT_CHANNEL, self.exchange.snapshot_message())

    # ---- paper: follow the real public feed ----------------------------------------------------------------
    async def _follow_feed(self, url: str) -> None:
        """Keep a subscription to the real feed (reconnecting with backoff) and apply it to the book."""
        channels = (SNAPSHOT_CHANNEL, f"lightning_board_{PRODUCT}", f"lightning_executions_{PRODUCT}")
        backoff = 1.0
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.ws_connect(url, heartbeat=30) as ws:
                        self.feed_connected = True
                        self.feed_connects += 1
                        backoff = 1.0
                        for i, ch in enumerate(channels, 1):
                            await ws.send_json(
                                {"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": ch}, "id": i}
                            )
                        async for msg in ws:
                            if msg.type is WSMsgType.TEXT:
                                self._on_feed(msg.data)
                            elif msg.type is WSMsgType.ERROR:
                                break
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    logger.warning("paper venue: public feed {} unavailable: {}", url, e)
                self.feed_connected = False
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)

    def _on_feed(self, text: str) -> None:
        try:
            data = orjson.loads(text)
            params = data.get("params") if isinstance(data, dict) else None
            if not isinstance(params, dict):
                return
            channel, message = params.get("channel"), params.get("message")
            now = self.clock.monotonic_ns()
            if channel == SNAPSHOT_CHANNEL and isinstance(message, dict):
                outs = self.exchange.feed_board(message, snapshot=True, now=now)
            elif channel == f"lightning_board_{PRODUCT}" and isinstance(message, dict):
                outs = self.exchange.feed_board(message, snapshot=False, now=now)
            elif channel == f"lightning_executions_{PRODUCT}" and isinstance(message, list):
                outs = self.exchange.feed_executions(message, now)
            else:
                return
        except orjson.JSONDecodeError:
            return
        self._dispatch(outs)

    # ---- REST: shared checks -------------------------------------------------------------------------------
    def wall_ns(self) -> int:
        """The venue's wall clock: ours, shifted by the clock_offset fault (its Date header, its timestamps
        and the window it accepts signatures in all follow it)."""
        return self.clock.time_ns() + self.clock_offset_ns

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = email.utils.formatdate(self.wall_ns() / SEC, usegmt=True)

    def permitted(self, api_key: str, path: str) -> bool:
        allowed = self._permissions.get(api_key)
        return allowed is None or path == GET_PERMISSIONS or path in allowed

    def permissions_of(self, api_key: str) -> list[str]:
        """GET /v1/me/getpermissions: the private paths this key may call."""
        return [p for p in self._private_paths if self.permitted(api_key, p)]

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        self.stats["rest_calls"] += 1
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if not request.path.startswith("/v1/me/"):
            verdict = self.limiter.hit(self.clock.monotonic_ns(), request.remote or "?")
            if not verdict.ok:
                return self._over_limit(verdict)
            resp = await handler(request)
            resp.headers.update(self._limit_headers(verdict))
            return resp
        return await handler(request)

    def _limit_headers(self, v: Verdict) -> dict[str, str]:
        reset_wall = (v.window.reset_at + self.exchange.wall_offset_ns) // SEC
        return {
            "X-RateLimit-Period": str(v.limit.period_s),
            "X-RateLimit-Remaining": str(v.window.remaining),
            "X-RateLimit-Reset": str(reset_wall),
        }

    def _over_limit(self, v: Verdict) -> web.Response:
        return _error(
            -1, "Over API limit per minute", self.cfg.rate_limit_http_status, self._limit_headers(v)
        )

    def _authenticate(self, request: web.Request, body: str) -> str:
        key = request.headers.get("ACCESS-KEY")
        ts = request.headers.get("ACCESS-TIMESTAMP")
        sign = request.headers.get("ACCESS-SIGN")
        if not key or not ts or not sign:
            raise VenueError(-500, "API key, timestamp or signature missing", 401)
        secret = self._secrets.get(key)
        if secret is None:
            raise VenueError(-500, "Invalid API key", 401)
        try:
            t = Decimal(ts)
        except InvalidOperation:
            raise VenueError(-500, "Invalid timestamp", 401) from None
        if not t.is_finite():
            raise VenueError(-500, "Invalid timestamp", 401)
        wall_s = Decimal(self.wall_ns()) / SEC
        ts_s = t / 1000 if t > 100_000_000_000 else t  # seconds or milliseconds
        if abs(ts_s - wall_s) > self.cfg.auth_window_sec:
            raise VenueError(-500, "Timestamp is out of range", 401)
        text = f"{ts}{request.method}{request.raw_path}{body}".encode()
        want = hmac.new(secret, text, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sign.lower()):
            raise VenueError(-500, "Invalid signature", 401)
        return key

    def _private(
        self,
        fn: Callable[[_Call], Any],
        post: bool = False,
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        endpoint_of = str.rsplit

        async def handler(request: web.Request) -> web.StreamResponse:
            endpoint = endpoint_of(request.path, "/", 1)[-1]
            raw = await request.text()
            try:
                key = self._authenticate(request, raw)
            except VenueError as e:
                return _error(e.status, e.message, e.http_status)
            if not self.permitted(key, request.path):
                return _error(-500, "Permission denied", 401)
            body: dict[str, Any] = {}
            if post:
                try:
                    parsed = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    parsed = None
                if not isinstance(parsed, dict):
                    return _error(-101, "Invalid request body", 400)
                body = parsed
            now = self.clock.monotonic_ns()
            small = endpoint == "sendchildorder" and _size_sat(body.get("size")) <= SMALL_ORDER_MAX_SAT
            verdict = self.limiter.hit(
                now,
                request.remote or "?",
                key,
                order=endpoint in ("sendchildorder", "cancelallchildorders"),
                small_order=small,
            )
            if not verdict.ok:
                self.stats["rate_limited"] += 1
                return self._over_limit(verdict)
            headers = self._limit_headers(verdict)
            fault = self.faults.take(endpoint)
            if fault == "timeout_before":
                await self._hang()
            if fault is not None and fault not in ("timeout", "order_failed"):
                return self._fault_response(fault, headers)
            try:
                result = fn(_Call(key, dict(request.query), body, now, fault))
            except VenueError as e:
                return _error(e.status, e.message, e.http_status, headers)
            self._wake.set()
            if fault == "timeout":
                await self._hang()
            if result is None:
                return web.Response(status=200, headers=headers)
            return _json(result, headers=headers)

        return handler

    async def _hang(self) -> None:
        """Never answer (until the venue stops); the client's own timeout decides."""
        await self._stopping.wait()
        raise web.HTTPServiceUnavailable()

    def _fault_response(self, fault: str, headers: dict[str, str]) -> web.Response:
        if fault == "html502":
            return web.Response(text=HTML_502, status=502, content_type="text/html", headers=headers)
        if fault == "500":
            return _error(-1, "An unexpected error occurred.", 500, headers)
        status = int(fault)
        table = {
            -1: ("Over API limit per minute", self.cfg.rate_limit_http_status),
            -204: ("Market state is closed.", 400),
            -205: ("Margin amount is insufficient for this order.", 400),
            -208: ("Order is not accepted. Please try again later.", 500),
            -500: ("Invalid signature", 401),
            -508: ("Ordering is limited due to an irregular number of orders.", 400),
            -509: ("Ordering is limited due to an irregular number of orders.", 400),
        }
        message, http = table.get(status, ("Error", 400))
        return _error(status, message, http, headers)

    # ---- REST: endpoints -----------------------------------------------------------------------------------
    def _product(self, request: web.Request) -> None:
        code = request.query.get("product_code", PRODUCT)
        if code.upper() != PRODUCT:
            raise VenueError(-100, "Invalid product", 400)

    async def _markets(self, request: web.Request) -> web.Response:
        return _json(MARKETS)

    async def _getboard(self, request: web.Request) -> web.Response:
        try:
            self._product(request)
        except VenueError as e:
            return _error(e.status, e.message, e.http_status)
        return _json(self.exchange.board())

    async def _getticker(self, request: web.Request) -> web.Response:
        try:
            self._product(request)
        except VenueError as e:
            return _error(e.status, e.message, e.http_status)
        return _json(self.exchange.ticker(self.clock.monotonic_ns()))

    async def _gethealth(self, request: web.Request) -> web.Response:
        return _json({"status": self.exchange.health})

    async def _getboardstate(self, request: web.Request) -> web.Response:
        try:
            self._product(request)
        except VenueError as e:
            return _error(e.status, e.message, e.http_status)
        return _json(self.exchange.board_state())

    async def _public_executions(self, request: web.Request) -> web.Response:
        try:
            self._product(request)
        except VenueError as e:
            return _error(e.status, e.message, e.http_status)
        try:
            return _json(self.exchange.recent_executions(request.query.get("count")))
        except VenueError as e:
            return _error(e.status, e.message, e.http_status)

    def _positions(self, c: _Call) -> Any:
        if c.query.get("product_code", "").upper() != PRODUCT:
            raise VenueError(-100, "Invalid product", 400)
        return self.exchange.positions(c.key)

    def _send(self, c: _Call) -> Any:
        reason = "MARGIN_SHORTAGE" if c.fault == "order_failed" else None
        aid, outs = self.exchange.send_child_order(c.key, c.body, c.now, fail_reason=reason)
        self._dispatch(outs)
        return {"child_order_acceptance_id": aid}

    def _cancel(self, c: _Call) -> None:
        self._dispatch(self.exchange.cancel_child_order(c.key, c.body, c.now))

    def _cancel_all(self, c: _Call) -> None:
        self._dispatch(self.exchange.cancel_all(c.key, c.body, c.now))

    # ---- WebSocket JSON-RPC --------------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=self.cfg.ws_heartbeat_sec, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(ws)
        conn.writer = asyncio.get_running_loop().create_task(self._writer(conn))
        self._conns.add(conn)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._on_text(conn, msg.data.decode("utf-8", "replace"))
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._conns.discard(conn)
            with contextlib.suppress(asyncio.QueueFull):
                conn.queue.put_nowait(None)
            if conn.writer is not None:
                conn.writer.cancel()
        return ws

    async def _writer(self, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            while True:
                text = await conn.queue.get()
                if text is None or conn.ws.closed:
                    return
                await conn.ws.send_str(text)

    def _reply(self, conn: _Conn, obj: Any) -> None:
        conn.push(_dumps(obj).decode())

    def _on_text(self, conn: _Conn, text: str) -> None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._reply(
                conn,
                {
                    "jsonrpc": "2.0",
                    "error": {"code": -32700, "message": "Parse error", "data": "Invalid JSON"},
                    "id": None,
                },
            )
            return
        if isinstance(req, list):
            if not req:
                self._reply(conn, _rpc_error(None, -32600, "Invalid Request"))
                return
            replies = [r for r in (self._rpc(conn, x) for x in req) if r is not None]
            if replies:
                self._reply(conn, replies)
            return
        reply = self._rpc(conn, req)
        if reply is not None:
            self._reply(conn, reply)

    def _rpc(self, conn: _Conn, req: Any) -> dict[str, Any] | None:
        if not isinstance(req, dict):
            return _rpc_error(None, -32600, "Invalid Request")
        has_id = "id" in req
        req_id = req.get("id")
        method = req.get("method")
        params = req.get("params")
        if method == "auth":
            reply = self._rpc_auth(conn, req_id, params)
        elif method in ("subscribe", "unsubscribe"):
            if not isinstance(params, dict) or not isinstance(params.get("channel"), str):
                reply = _rpc_error(req_id, -32602, "Invalid params")
            elif method == "subscribe":
                reply = self._rpc_subscribe(conn, req_id, params["channel"])
            else:
                ch = params["channel"]
                conn.channels.discard(ch)
                if ch == SNAPSHOT_CHANNEL:
                    conn.snapshot_due = None
                reply = {"jsonrpc": "2.0", "id": req_id, "result": True}
        else:
            reply = _rpc_error(req_id, -32601, "Method not found")
        return reply if has_id else None

    def _rpc_auth(self, conn: _Conn, req_id: Any, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            return _rpc_error(req_id, -32602, "Invalid params")
        key, ts, nonce, sign = (params.get(k) for k in ("api_key", "timestamp", "nonce", "signature"))
        secret = self._secrets.get(key) if isinstance(key, str) else None
        if (
            secret is None
            or not isinstance(nonce, str)
            or not isinstance(sign, str)
            or isinstance(ts, bool)
            or not isinstance(ts, int | str)
        ):
            return _rpc_error(req_id, -500, "Authentication failed")
        try:
            ts_ms = int(ts)
        except ValueError:
            return _rpc_error(req_id, -500, "Authentication failed")
        if abs(ts_ms / 1000 - self.wall_ns() / SEC) > self.cfg.auth_window_sec:
            return _rpc_error(req_id, -500, "Authentication failed: timestamp out of range")
        want = hmac.new(secret, f"{ts}{nonce}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sign.lower()):
            return _rpc_error(req_id, -500, "Authentication failed: invalid signature")
        conn.api_key = key
        return {"jsonrpc": "2.0", "id": req_id, "result": True}

    def _rpc_subscribe(self, conn: _Conn, req_id: Any, channel: str) -> dict[str, Any]:
        if channel in PRIVATE_CHANNELS:
            if conn.api_key is None:
                return _rpc_error(req_id, -32007, "authentication required")
        elif not channel.startswith(PUBLIC_PREFIXES):
            return _rpc_error(req_id, -32602, "invalid channel")
        if channel in conn.channels:
            return _rpc_error(req_id, -32009, "already subscribed")
        conn.channels.add(channel)  # unknown products: acked, never delivered
        if channel == SNAPSHOT_CHANNEL:
            # never on subscribe: the first one comes 0.6–3.7 s later
            conn.snapshot_due = self.clock.monotonic_ns() + int(self._rng.uniform(0.6, 3.7) * SEC)
            self._wake.set()
        return {"jsonrpc": "2.0", "id": req_id, "result": True}

    # ---- faults on demand (Python API; the admin HTTP API calls these) -------------------------------------
    async def drop_ws(self) -> int:
        """Close every WebSocket connection. Returns how many there were."""
        conns = list(self._conns)
        self._conns.clear()
        for c in conns:
            with contextlib.suppress(Exception):
                await c.ws.close(code=1001, message=b"going away")
        return len(conns)

    def send_raw(self, text: str) -> int:
        """Send `text` as it is (a garbled frame, say) on every WebSocket connection. Returns how many."""
        conns = list(self._conns)
        for c in conns:
            c.push(text)
        return len(conns)

    def silence(self, seconds: float) -> None:
        """The feed sends nothing for `seconds` (sockets stay open; the market goes on); 0 ends a silence
        now."""
        self.faults.silence_until = self.clock.monotonic_ns() + int(seconds * SEC)

    def freeze_market(self, frozen: bool = True) -> None:
        """The crowd stops quoting and trading (no diffs, no fills; snapshots still go out) until
        `freeze_market(False)`: for a test whose claim the market could otherwise make true by itself."""
        self.exchange.market_frozen = frozen
        self._wake.set()

    def set_latency(self, ms: int) -> None:
        self.faults.latency_ms = max(0, int(ms))

    def fail(self, endpoint: str, error: str, count: int | None = 1, rate: float | None = None) -> None:
        """The next `count` calls of `endpoint` ("sendchildorder", …, or "*") get `error` (count=None: every
        call until `clear_faults()`); with `rate`, each such call gets it with that probability."""
        self.faults.fail(endpoint, error, count, rate)

    def clear_faults(self) -> None:
        """Every injected fault off, a tripped rate limit and a clock offset included (the real windows keep
        counting)."""
        self.faults.clear()
        self.limiter.lift_trips()
        self.set_clock_offset(0)

    def trip_rate_limit(self, api_key: str | None = None, seconds: float | None = None) -> None:
        self.limiter.trip(self.clock.monotonic_ns(), api_key or self.api_key, seconds)

    async def maintenance(self, seconds: float, preopen_seconds: float | None = None) -> None:
        """Board state CLOSED for `seconds` (orders refused -204, sockets dropped), then PREOPEN (itayose)."""
        pre = self.cfg.preopen_seconds if preopen_seconds is None else preopen_seconds
        self.exchange.start_maintenance(self.clock.monotonic_ns(), seconds, pre)
        self._wake.set()
        await self.drop_ws()

    def hand_order(
        self, side: str, size: str, *, product_code: str = PRODUCT, api_key: str | None = None
    ) -> str:
        """A MARKET order placed on the account by someone other than the bot (a human on the web UI): its
        events go out on child_order_events like any other. Returns its acceptance id."""
        body = {"product_code": product_code, "child_order_type": "MARKET", "side": side, "size": size}
        aid, outs = self.exchange.send_child_order(api_key or self.api_key, body, self.clock.monotonic_ns())
        self._dispatch(outs)
        self._wake.set()
        return aid

    def set_health(self, status: str) -> None:
        self.exchange.set_health(status)

    def set_permissions(self, api_key: str, endpoints: list[str] | None) -> None:
        """What `api_key` may call (paths such as "/v1/me/sendchildorder"); None: everything. A call outside
        them is refused -500 "Permission denied" (HTTP 401), as bitFlyer refuses a key without that right."""
        self._permissions[api_key] = None if endpoints is None else frozenset(endpoints)

    def set_clock_offset(self, seconds: float) -> None:
        """The venue's clock runs `seconds` ahead of ours (negative: behind): its Date header and timestamps
        move, and it refuses signatures outside its window measured on that clock."""
        self.clock_offset_ns = int(seconds * SEC)
        self.exchange.wall_offset_ns = self._base_wall_offset_ns + self.clock_offset_ns

    def ledger_report(self, api_key: str | None = None) -> dict[str, Any]:
        return self.exchange.ledger_report(api_key or self.api_key)

    def charge(
        self, kind: str, *, api_key: str | None = None, rate: Decimal | None = None
    ) -> list[dict[str, Any]]:
        """Settle one holding cost now (the venue otherwise charges on the wall clock's schedule)."""
        rows = self.exchange.charge(kind, self.clock.monotonic_ns(), api_key=api_key, rate=rate)
        return [
            {"api_key": key, "id": r.row_id, "change": str(r.change), "reason_code": r.reason_code}
            for key, r in rows
        ]

    # ---- admin HTTP API ------------------------------------------------------------------------------------
    @staticmethod
    async def _admin_body(request: web.Request) -> dict[str, Any]:
        raw = await request.text()
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(
                text='{"error":"body is not JSON"}', content_type="application/json"
            ) from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text='{"error":"body must be an object"}', content_type="application/json"
            )
        return body

    @staticmethod
    def _bad(message: str) -> web.Response:
        return _json({"error": message}, 400)

    @staticmethod
    def _number(body: dict[str, Any], key: str, default: float | None = None) -> float:
        v = body.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ValueError(f"{key} must be a number >= 0")
        return float(v)

    async def _admin_drop_ws(self, request: web.Request) -> web.Response:
        return _json({"dropped": await self.drop_ws()})

    async def _admin_silence(self, request: web.Request) -> web.Response:
        try:
            self.silence(self._number(await self._admin_body(request), "seconds"))
        except ValueError as e:
            return self._bad(str(e))
        return _json({"ok": True})

    async def _admin_latency(self, request: web.Request) -> web.Response:
        try:
            self.set_latency(int(self._number(await self._admin_body(request), "ms")))
        except ValueError as e:
            return self._bad(str(e))
        return _json({"ok": True})

    async def _admin_fail(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        endpoint, error = body.get("endpoint", "*"), str(body.get("error", ""))
        if not isinstance(endpoint, str) or not valid_error(error):
            return self._bad(
                "need endpoint (string) and error (-NNN | 500 | html502 | timeout | timeout_before)"
            )
        try:
            rate = self._number(body, "rate") if "rate" in body else None
            count = int(self._number(body, "count")) if "count" in body else (None if rate is not None else 1)
            self.fail(endpoint, error, count, rate)
        except ValueError as e:
            return self._bad(str(e))
        return _json({"ok": True, "pending": self.faults.pending()})

    async def _admin_clear(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return _json({"ok": True})

    async def _admin_trip(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        key = body.get("api_key", self.api_key)
        if not isinstance(key, str) or key not in self._secrets:
            return self._bad("unknown api_key")
        seconds = None
        if "seconds" in body:
            try:
                seconds = self._number(body, "seconds", 0)
            except ValueError as e:
                return self._bad(str(e))
            if not 0 < seconds <= 300:
                return self._bad("seconds must be in (0, 300]")
        self.trip_rate_limit(key, seconds)
        return _json({"ok": True})

    async def _admin_maintenance(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        try:
            seconds = self._number(body, "seconds", 600)
            pre = self._number(body, "preopen_seconds") if "preopen_seconds" in body else None
        except ValueError as e:
            return self._bad(str(e))
        await self.maintenance(seconds, pre)
        return _json({"ok": True, "state": self.exchange.state})

    async def _admin_health(self, request: web.Request) -> web.Response:
        status = (await self._admin_body(request)).get("status")
        if status not in HEALTH_VALUES:
            return self._bad(f"status must be one of {list(HEALTH_VALUES)}")
        self.set_health(status)
        return _json({"ok": True})

    async def _admin_order(self, request: web.Request) -> web.Response:
        """POST /_sim/order {"side": "BUY", "size": "0.001", "product_code": "FX_BTC_JPY"}: a hand trade."""
        body = await self._admin_body(request)
        if body.get("side") not in ("BUY", "SELL") or not isinstance(body.get("size"), str | int | float):
            return self._bad("side (BUY or SELL) and size are required")
        key = str(body.get("api_key") or self.api_key)
        if key not in self._secrets:
            return self._bad("unknown api_key")
        try:
            aid = self.hand_order(
                body["side"],
                str(body["size"]),
                product_code=str(body.get("product_code") or PRODUCT),
                api_key=key,
            )
        except VenueError as e:
            return _json({"error": e.message, "status": e.status}, 400)
        return _json({"child_order_acceptance_id": aid})

    @staticmethod
    def _decimal(body: dict[str, Any], key: str) -> Decimal:
        v = body.get(key)
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ValueError(f"{key} must be a number")
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise ValueError(f"{key} must be a number") from None
        if not d.is_finite():
            raise ValueError(f"{key} must be finite")
        return d

    def _admin_key(self, body: dict[str, Any]) -> str:
        key = body.get("api_key", self.api_key)
        if not isinstance(key, str) or key not in self._secrets:
            raise ValueError("unknown api_key")
        return key

    async def _admin_charge(self, request: web.Request) -> web.Response:
        """POST /_sim/charge {"kind": "funding" | "leverage_points", "api_key"?, "rate"?}: settle it now."""
        body = await self._admin_body(request)
        kind = body.get("kind")
        if kind not in CHARGE_KINDS:
            return self._bad(f"kind must be one of {sorted(CHARGE_KINDS)}")
        try:
            key = self._admin_key(body) if "api_key" in body else None
            rate = self._decimal(body, "rate") if "rate" in body else None
        except ValueError as e:
            return self._bad(str(e))
        if rate is not None and not -1 < rate < 1:
            return self._bad("rate must be in (-1, 1)")
        return _json({"charged": self.charge(str(kind), api_key=key, rate=rate)})

    async def _admin_collateral(self, request: web.Request) -> web.Response:
        """POST /_sim/collateral {"api_key"?, "collateral"?, "margin_call_amount"?, "margin_call_due_date"?}:
        set an account's collateral (a deposit or withdrawal: not PnL) and its margin call (0 clears it)."""
        body = await self._admin_body(request)
        try:
            key = self._admin_key(body)
            collateral = self._decimal(body, "collateral") if "collateral" in body else None
            call = self._decimal(body, "margin_call_amount") if "margin_call_amount" in body else None
        except ValueError as e:
            return self._bad(str(e))
        due = body.get("margin_call_due_date")
        if due is not None and not isinstance(due, str):
            return self._bad("margin_call_due_date must be a string")
        if collateral is not None and collateral < 0 or call is not None and call < 0:
            return self._bad("collateral and margin_call_amount must be >= 0")
        if collateral is not None:
            self.ledger.set_collateral(key, collateral)
        if call is not None:
            if call > 0 and due is None:
                due = rest_date(self.clock.time_ns() + 86_400 * SEC, 0)
            self.ledger.set_margin_call(key, call, due)
        return _json(self.exchange.collateral(key))

    async def _admin_permissions(self, request: web.Request) -> web.Response:
        """POST /_sim/permissions {"api_key": "SIM_KEY", "endpoints": ["/v1/me/getpositions", …] | null}."""
        body = await self._admin_body(request)
        key = body.get("api_key", self.api_key)
        if not isinstance(key, str) or key not in self._secrets:
            return self._bad("unknown api_key")
        endpoints = body.get("endpoints")
        if endpoints is not None and (
            not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints)
        ):
            return self._bad("endpoints must be a list of paths (or null for every endpoint)")
        self.set_permissions(key, endpoints)
        return _json({"ok": True, "permissions": self.permissions_of(key)})

    async def _admin_clock_offset(self, request: web.Request) -> web.Response:
        """POST /_sim/clock_offset {"seconds": 600}: the venue's clock 600 s ahead of ours (0 ends it)."""
        v = (await self._admin_body(request)).get("seconds")
        if isinstance(v, bool) or not isinstance(v, int | float) or abs(v) > MAX_CLOCK_OFFSET_S:
            return self._bad(f"seconds must be a number within ±{MAX_CLOCK_OFFSET_S}")
        self.set_clock_offset(float(v))
        return _json({"ok": True, "seconds": v})

    async def _admin_ledger(self, request: web.Request) -> web.Response:
        key = request.query.get("api_key", self.api_key)
        if key not in self._secrets:
            return self._bad("unknown api_key")
        return _json(self.ledger_report(key))

    async def _admin_state(self, request: web.Request) -> web.Response:
        ex = self.exchange
        return _json(
            {
                "state": ex.state,
                "health": ex.health,
                "best_bid": ex.book.best_bid(),
                "best_ask": ex.book.best_ask(),
                "depth": [ex.book.depth(Side.BUY), ex.book.depth(Side.SELL)],
                "ticks": ex.ticks,
                "connections": len(self._conns),
                "faults": self.faults.pending(),
                "latency_ms": self.faults.latency_ms,
                "clock_offset_s": self.clock_offset_ns / SEC,
                **self.stats,
            }
        )


def _size_sat(v: Any) -> int:
    try:
        return btc_to_sat(v)
    except ValueError:
        return 0
