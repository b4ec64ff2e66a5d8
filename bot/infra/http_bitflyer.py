"""BitflyerHttp: bitFlyer's REST API over the pybotters client (seed §4.3), with every failure typed.

pybotters signs the requests (for `api.bitflyer.com`, or for the venue host registered by `pyb_auth`). This
module adds what a market maker needs on top: an asyncio timeout around the whole call, a typed
`ExchangeError` for every way a call can fail (bitFlyer error JSON, HTTP status, HTML error page, empty or
odd body, timeout, connection failure) with a `kind` that says what the caller may conclude, the last
`X-RateLimit-*` headers per endpoint, and the last REST latency.

Sizes and prices go out as JSON numbers: prices as whole-yen ints, sizes as floats whose shortest repr is the
Decimal's own digits (Decimal("0.001") -> 0.001 on the wire); anything that would not round-trip is refused.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pybotters

from bot.config.loader import ExchangeConfig
from bot.types.dto import Side
from bot.types.exchange import (
    CANCEL_ALL_CHILD_ORDERS,
    CANCEL_CHILD_ORDER,
    GET_BOARD_STATE,
    GET_CHILD_ORDERS,
    GET_COLLATERAL,
    GET_COLLATERAL_HISTORY,
    GET_EXECUTIONS,
    GET_HEALTH,
    GET_PERMISSIONS,
    GET_POSITIONS,
    MAX_MINUTE_TO_EXPIRE,
    SEND_CHILD_ORDER,
    ErrorKind,
    ExchangeError,
    RateLimitInfo,
    RateListener,
    classify,
    price_on_wire,
    size_on_wire,
)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    v = headers.get(name)
    if v is None:
        return None
    try:
        return int(float(v))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class VenueClock:
    """The venue's `Date` header against our wall clock around the request that carried it."""

    venue_epoch_s: float  # the Date header (whole seconds: HTTP dates have no fraction)
    sent_epoch_s: float  # our wall clock when the request left
    received_epoch_s: float  # … and when the answer came

    @property
    def skew_s(self) -> float:
        """How far the venue's clock is ahead of ours (negative: behind). The header is truncated to the
        second, so the venue's time lay in [date, date + 1); its middle is compared with our round trip's."""
        return self.venue_epoch_s + 0.5 - (self.sent_epoch_s + self.received_epoch_s) / 2


class BitflyerHttp:
    def __init__(
        self,
        client: pybotters.Client,
        exchange: ExchangeConfig,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], int] = time.monotonic_ns,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._exchange = exchange
        self._base = exchange.base_url.rstrip("/")
        self.product_code = exchange.product_code
        self.timeout_s = timeout_s
        self._clock = clock
        self._wall = wall
        self.rate_limits: dict[str, RateLimitInfo] = {}  # path -> last headers seen on it
        self.last_rate_limit: RateLimitInfo | None = None
        self.last_latency_ms: float | None = None
        self.requests = 0
        self.errors = 0
        # told of every request leaving and every X-RateLimit answer (the bot's RateHearing)
        self.rate_listener: RateListener | None = None

    # ---- the one place a request is made ------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        expect_body: bool = True,
        headers_out: dict[str, str] | None = None,
    ) -> Any:
        url = self._base + path
        self.requests += 1
        if self.rate_listener is not None:
            self.rate_listener.on_request(path)
        t0 = self._clock()
        status: int | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                kwargs: dict[str, Any] = {}
                if params:
                    kwargs["params"] = {k: str(v) for k, v in params.items()}
                if body is not None:
                    kwargs["data"] = body
                async with self._client.request(method, url, **kwargs) as resp:
                    status = resp.status
                    self._note_rate_headers(path, resp.headers)
                    if headers_out is not None:
                        headers_out.update(resp.headers)
                    raw = await resp.read()
        except TimeoutError:
            self.errors += 1
            self._note_latency(t0)
            raise ExchangeError(
                status, None, f"no answer within {self.timeout_s:g}s", kind=ErrorKind.TIMEOUT, path=path
            ) from None
        except aiohttp.ClientConnectorError as e:
            self.errors += 1
            self._note_latency(t0)
            raise ExchangeError(
                None, None, f"cannot connect: {e}", kind=ErrorKind.CONNECT_FAILED, path=path
            ) from None
        except aiohttp.ClientError as e:
            # the connection broke after the request may have left: outcome unknown
            self.errors += 1
            self._note_latency(t0)
            raise ExchangeError(
                status, None, f"{type(e).__name__}: {e}", kind=ErrorKind.RETRYABLE_UNKNOWN, path=path
            ) from None
        self._note_latency(t0)
        assert status is not None
        text = raw.decode("utf-8", errors="replace")
        try:
            return self._interpret(status, text, path, expect_body)
        except ExchangeError:
            self.errors += 1
            raise

    def _interpret(self, status: int, text: str, path: str, expect_body: bool) -> Any:
        stripped = text.strip()
        data: Any = None
        parsed = False
        if stripped:
            try:
                data = json.loads(stripped)
                parsed = True
            except ValueError:
                parsed = False
        # bitFlyer's error shape, whatever the HTTP status says
        if parsed and isinstance(data, dict) and isinstance(data.get("status"), int) and data["status"] < 0:
            code = data["status"]
            msg = str(data.get("error_message") or "")
            raise ExchangeError(status, code, msg, path=path, body=text)
        if status >= 400:
            # no bitFlyer body: the status still tells rate limit (429) and auth (401/403) apart; a 5xx
            # HTML page from a proxy is a bad response (outcome unknown, like any 5xx)
            kind = classify(status, None)
            if kind is ErrorKind.RETRYABLE_UNKNOWN and not parsed:
                kind = ErrorKind.BAD_RESPONSE
            what = (
                "non-JSON body"
                if stripped and not parsed
                else ("empty body" if not stripped else "error body")
            )
            raise ExchangeError(
                status, None, f"HTTP {status} with {what}: {_clip(stripped)}", kind=kind, path=path, body=text
            )
        if not stripped:
            if expect_body:
                raise ExchangeError(
                    status, None, "empty body where data was expected", kind=ErrorKind.BAD_RESPONSE, path=path
                )
            return None
        if not parsed:
            raise ExchangeError(
                status,
                None,
                f"non-JSON body: {_clip(stripped)}",
                kind=ErrorKind.BAD_RESPONSE,
                path=path,
                body=text,
            )
        return data

    def _note_latency(self, t0: int) -> None:
        self.last_latency_ms = (self._clock() - t0) / 1e6

    def _note_rate_headers(self, path: str, headers: Mapping[str, str]) -> None:
        remaining = _int_header(headers, "X-RateLimit-Remaining")
        period = _int_header(headers, "X-RateLimit-Period")
        reset = _int_header(headers, "X-RateLimit-Reset")
        if remaining is None and period is None and reset is None:
            return
        info = RateLimitInfo(
            period, remaining, None if reset is None else float(reset), self._clock(), self._wall()
        )
        self.rate_limits[path] = info
        self.last_rate_limit = info
        if self.rate_listener is not None:
            self.rate_listener.on_headers(path, info)

    # ---- orders --------------------------------------------------------------------------------------
    async def send_child_order(
        self,
        side: Side,
        size: Decimal,
        *,
        order_type: str = "LIMIT",
        price: Decimal | None = None,
        minute_to_expire: int | None = None,
        time_in_force: str = "GTC",
    ) -> str:
        """Place a child order; returns its child_order_acceptance_id."""
        if order_type not in ("LIMIT", "MARKET"):
            raise ValueError(f"order_type must be LIMIT or MARKET, got {order_type!r}")
        if time_in_force not in ("GTC", "IOC", "FOK"):
            raise ValueError(f"time_in_force must be GTC, IOC or FOK, got {time_in_force!r}")
        body: dict[str, Any] = {
            "product_code": self.product_code,
            "child_order_type": order_type,
            "side": Side(side).value,
        }
        if order_type == "LIMIT":
            if price is None:
                raise ValueError("a LIMIT order needs a price")
            body["price"] = price_on_wire(price)
        elif price is not None:
            raise ValueError("a MARKET order takes no price")
        body["size"] = size_on_wire(size)
        if minute_to_expire is not None:
            if not 1 <= minute_to_expire <= MAX_MINUTE_TO_EXPIRE:
                raise ValueError(f"minute_to_expire must be 1..{MAX_MINUTE_TO_EXPIRE}")
            body["minute_to_expire"] = int(minute_to_expire)
        body["time_in_force"] = time_in_force
        data = await self._call("POST", SEND_CHILD_ORDER, body=body)
        aid = data.get("child_order_acceptance_id") if isinstance(data, dict) else None
        if not isinstance(aid, str) or not aid:
            raise self._bad_shape(
                SEND_CHILD_ORDER, f"no child_order_acceptance_id in {_clip(json.dumps(data))}"
            )
        return aid

    async def cancel_child_order(self, acceptance_id: str) -> None:
        """Request a cancel. bitFlyer answers 200 with an empty body; the outcome arrives as an event."""
        if not acceptance_id:
            raise ValueError("acceptance_id is required")
        await self._call(
            "POST",
            CANCEL_CHILD_ORDER,
            expect_body=False,
            body={
                "product_code": self.product_code,
                "child_order_acceptance_id": acceptance_id,
            },
        )

    async def cancel_all_child_orders(self) -> None:
        await self._call(
            "POST", CANCEL_ALL_CHILD_ORDERS, expect_body=False, body={"product_code": self.product_code}
        )

    # ---- queries -------------------------------------------------------------------------------------
    async def get_child_orders(
        self,
        state: str | None = None,
        acceptance_id: str | None = None,
        count: int = 100,
    ) -> list[dict]:
        params: dict[str, Any] = {"product_code": self.product_code, "count": count}
        if state is not None:
            params["child_order_state"] = state
        if acceptance_id is not None:
            params["child_order_acceptance_id"] = acceptance_id
        return self._expect_list(await self._call("GET", GET_CHILD_ORDERS, params=params), GET_CHILD_ORDERS)

    async def get_positions(self) -> list[dict]:
        data = await self._call("GET", GET_POSITIONS, params={"product_code": self.product_code})
        return self._expect_list(data, GET_POSITIONS)

    async def get_collateral(self) -> dict:
        return self._expect_dict(await self._call("GET", GET_COLLATERAL), GET_COLLATERAL)

    async def get_collateral_history(self, count: int = 100, before: int | None = None) -> list[Any]:
        """Newest first. The rows are left to the parser, which skips a junk row rather than the page."""
        params: dict[str, Any] = {"count": count}
        if before is not None:
            params["before"] = before
        data = await self._call("GET", GET_COLLATERAL_HISTORY, params=params)
        if not isinstance(data, list):
            raise self._bad_shape(GET_COLLATERAL_HISTORY, f"expected a list, got {_clip(json.dumps(data))}")
        return data

    async def get_executions(self, count: int = 100, before: int | None = None) -> list[dict]:
        params: dict[str, Any] = {"product_code": self.product_code, "count": count}
        if before is not None:
            params["before"] = before
        return self._expect_list(await self._call("GET", GET_EXECUTIONS, params=params), GET_EXECUTIONS)

    async def get_health(self) -> str:
        data = self._expect_dict(
            await self._call("GET", GET_HEALTH, params={"product_code": self.product_code}), GET_HEALTH
        )
        status = data.get("status")
        if not isinstance(status, str):
            raise self._bad_shape(GET_HEALTH, f"no status in {_clip(json.dumps(data))}")
        return status

    async def get_board_state(self) -> dict:
        data = self._expect_dict(
            await self._call("GET", GET_BOARD_STATE, params={"product_code": self.product_code}),
            GET_BOARD_STATE,
        )
        if not isinstance(data.get("state"), str):
            raise self._bad_shape(GET_BOARD_STATE, f"no state in {_clip(json.dumps(data))}")
        return data

    async def get_permissions(self) -> list[str]:
        """The private endpoint paths this API key may call (`/v1/me/getpermissions`)."""
        data = await self._call("GET", GET_PERMISSIONS)
        if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
            raise self._bad_shape(GET_PERMISSIONS, f"expected a list of paths, got {_clip(json.dumps(data))}")
        return data

    async def venue_clock(self) -> VenueClock:
        """Read the venue's clock from the `Date` header of a public call (`gethealth`): bitFlyer refuses a
        signature whose ACCESS-TIMESTAMP is too far from its own time."""
        headers: dict[str, str] = {}
        sent = self._wall()
        await self._call("GET", GET_HEALTH, params={"product_code": self.product_code}, headers_out=headers)
        received = self._wall()
        raw = headers.get("Date")
        try:
            parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        except (TypeError, ValueError):
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise self._bad_shape(GET_HEALTH, f"no usable Date header (got {raw!r})")
        return VenueClock(parsed.timestamp(), sent, received)

    def _bad_shape(self, path: str, message: str) -> ExchangeError:
        self.errors += 1
        return ExchangeError(200, None, message, kind=ErrorKind.BAD_RESPONSE, path=path)

    def _expect_list(self, data: Any, path: str) -> list[dict]:
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise self._bad_shape(path, f"expected a list of objects, got {_clip(json.dumps(data))}")
        return data

    def _expect_dict(self, data: Any, path: str) -> dict:
        if not isinstance(data, dict):
            raise self._bad_shape(path, f"expected an object, got {_clip(json.dumps(data))}")
        return data


def _clip(s: str, n: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "…"
