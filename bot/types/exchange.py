"""What the bot and the exchange say to each other, independent of transport: endpoint paths, the typed
failure of a call (`ExchangeError` and its `ErrorKind`), the `X-RateLimit-*` report, and how prices and sizes
are written on the wire. The engine reasons with these; `bot/infra/http_bitflyer.py` produces them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

SEND_CHILD_ORDER = "/v1/me/sendchildorder"
CANCEL_CHILD_ORDER = "/v1/me/cancelchildorder"
CANCEL_ALL_CHILD_ORDERS = "/v1/me/cancelallchildorders"
GET_CHILD_ORDERS = "/v1/me/getchildorders"
GET_POSITIONS = "/v1/me/getpositions"
GET_COLLATERAL = "/v1/me/getcollateral"
GET_COLLATERAL_HISTORY = "/v1/me/getcollateralhistory"
GET_EXECUTIONS = "/v1/me/getexecutions"
GET_HEALTH = "/v1/gethealth"
GET_BOARD_STATE = "/v1/getboardstate"
GET_PERMISSIONS = "/v1/me/getpermissions"

# the private endpoints the bot calls: a key that lacks one cannot trade (or cannot see its own state)
ENDPOINTS_THE_BOT_NEEDS: tuple[str, ...] = (
    SEND_CHILD_ORDER,
    CANCEL_CHILD_ORDER,
    CANCEL_ALL_CHILD_ORDERS,
    GET_CHILD_ORDERS,
    GET_POSITIONS,
    GET_COLLATERAL,
    GET_EXECUTIONS,
)

# bitFlyer's daily maintenance: 04:00–04:10 Asia/Tokyo (orders refused, sockets dropped, then an itayose)
MAINTENANCE_TZ = "Asia/Tokyo"
MAINTENANCE_START_HHMM = (4, 0)
MAINTENANCE_MINUTES = 10

MAX_MINUTE_TO_EXPIRE = 43200
SIZE_GRID = Decimal("0.00000001")


class CollateralReason(StrEnum):
    """`reason_code`s of getcollateralhistory rows as the simulated venue writes them. bitFlyer does not
    document its codes: these are the sim's choice, and the bot's built-in mapping names them. Confirm the
    real codes on a live account (`exchange.collateral_reasons` maps others) before trusting holding costs."""

    TRADE_PNL = "CFD_PNL"  # realized PnL of a closing execution (already booked from the executions)
    FUNDING = "CFD_FUNDING"  # funding, settled every 8 h (05:00, 13:00, 21:00 UTC)
    LEVERAGE_POINTS = "CFD_LEVERAGE_POINTS"  # the daily holding cost of an open position
    DEPOSIT = "DEPOSIT"  # money moved in or out: never PnL


class HoldingCostKind(StrEnum):
    """What a collateral-history row means to the ledger."""

    FUNDING = "funding"
    LEVERAGE_POINTS = "leverage_points"
    OTHER_COST = "other_cost"  # an unknown code booked as a holding cost by its sign
    TRADE = "trade"  # realized trading PnL: the executions book it
    IGNORE = "ignore"  # deposits, withdrawals, anything not PnL

    @property
    def is_cost(self) -> bool:
        return self in (HoldingCostKind.FUNDING, HoldingCostKind.LEVERAGE_POINTS, HoldingCostKind.OTHER_COST)


# the bot's built-in reading of the codes above; `exchange.collateral_reasons` adds to or overrides it
DEFAULT_COLLATERAL_REASONS: dict[str, HoldingCostKind] = {
    CollateralReason.TRADE_PNL: HoldingCostKind.TRADE,
    CollateralReason.FUNDING: HoldingCostKind.FUNDING,
    CollateralReason.LEVERAGE_POINTS: HoldingCostKind.LEVERAGE_POINTS,
    CollateralReason.DEPOSIT: HoldingCostKind.IGNORE,
}


class ErrorKind(StrEnum):
    REJECTED = "rejected"  # a definite no: the request had no effect
    RETRYABLE_UNKNOWN = (
        "retryable_unknown"  # -208 / HTTP 5xx / dropped connection: it may or may not have acted
    )
    MARKET_CLOSED = "market_closed"  # -204: maintenance / market closed
    AUTH = "auth"  # -500 / HTTP 401-403: signature, key or permission
    RATE_LIMITED = "rate_limited"  # -1 / HTTP 429 / -508 / -509
    TIMEOUT = "timeout"  # no answer in time: it may or may not have acted
    BAD_RESPONSE = "bad_response"  # non-JSON body, HTML error page, unexpected shape: outcome unknown
    CONNECT_FAILED = "connect_failed"  # no connection could be opened: nothing was sent


# Kinds after which the venue has certainly not acted on the request.
DEFINITE_KINDS = frozenset(
    {
        ErrorKind.REJECTED,
        ErrorKind.MARKET_CLOSED,
        ErrorKind.AUTH,
        ErrorKind.RATE_LIMITED,
        ErrorKind.CONNECT_FAILED,
    }
)

_CODE_KINDS: dict[int, ErrorKind] = {
    -1: ErrorKind.RATE_LIMITED,
    -508: ErrorKind.RATE_LIMITED,
    -509: ErrorKind.RATE_LIMITED,
    -204: ErrorKind.MARKET_CLOSED,
    -500: ErrorKind.AUTH,
    -208: ErrorKind.RETRYABLE_UNKNOWN,
}


_REJECT_CODES = frozenset({-100, -106, -110, -200, -205})


def classify(http_status: int | None, code: int | None) -> ErrorKind:
    """bitFlyer's status code decides when it is one we know; otherwise the HTTP status does. On an HTTP 5xx
    an unknown code, or -1 (bitFlyer also uses it for "An unexpected error occurred"), leaves the outcome
    unknown."""
    server_trouble = http_status is not None and http_status >= 500
    if code is not None:
        if code == -1 and server_trouble:
            return ErrorKind.RETRYABLE_UNKNOWN
        if code in _CODE_KINDS:
            return _CODE_KINDS[code]
        if code in _REJECT_CODES:
            return ErrorKind.REJECTED
        return ErrorKind.RETRYABLE_UNKNOWN if server_trouble else ErrorKind.REJECTED
    if http_status == 429:
        return ErrorKind.RATE_LIMITED
    if http_status in (401, 403):
        return ErrorKind.AUTH
    if server_trouble:
        return ErrorKind.RETRYABLE_UNKNOWN
    return ErrorKind.BAD_RESPONSE


class ExchangeError(Exception):
    """A REST call that did not succeed. `code` is bitFlyer's `status` (e.g. -205) when the body had one."""

    def __init__(
        self,
        http_status: int | None,
        code: int | None,
        message: str,
        *,
        kind: ErrorKind | None = None,
        path: str = "",
        body: str = "",
    ) -> None:
        self.http_status = http_status
        self.code = code
        self.message = message
        self.kind = kind if kind is not None else classify(http_status, code)
        self.path = path
        self.body = body[:500]
        super().__init__(self.describe())

    @property
    def definite(self) -> bool:
        """True when the venue certainly did not act on the request (safe to treat an order as never
        placed)."""
        return self.kind in DEFINITE_KINDS

    @property
    def label(self) -> str:
        """Short machine-readable label for logs and error counters: '-205', 'timeout', 'http_502', ..."""
        if self.code is not None:
            return str(self.code)
        if self.kind is ErrorKind.TIMEOUT:
            return "timeout"
        if self.kind is ErrorKind.CONNECT_FAILED:
            return "connect_failed"
        if self.http_status is not None and self.http_status != 200:
            return f"http_{self.http_status}"
        return self.kind.value

    def describe(self) -> str:
        where = f" on {self.path}" if self.path else ""
        http = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        return f"{self.kind.value} {self.label}{http}{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The `X-RateLimit-*` headers of one response."""

    period: int | None  # seconds
    remaining: int | None
    reset_epoch: float | None  # Unix seconds
    seen_at_ns: int  # monotonic ns
    seen_at_wall: float  # Unix seconds, to turn reset_epoch into a delay


def size_on_wire(size: Decimal) -> float:
    """A size as the JSON float bitFlyer takes; refused unless its repr is exactly the Decimal's digits."""
    if not isinstance(size, Decimal) or not size.is_finite() or size <= 0:
        raise ValueError(f"size must be a positive finite Decimal, got {size!r}")
    if size % SIZE_GRID != 0:
        raise ValueError(f"size {size} is finer than bitFlyer's 8 decimals")
    as_float = float(size)
    if Decimal(repr(as_float)) != size:
        raise ValueError(f"size {size} does not survive as a JSON number")
    if "e" in repr(as_float).lower():
        raise ValueError(f"size {size} would be written in exponent notation")
    return as_float


def price_on_wire(price: Decimal) -> int:
    """A price as whole yen (FX_BTC_JPY's tick is 1 JPY); a fractional price is a bug, refused, never
    rounded."""
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        raise ValueError(f"price must be a positive finite Decimal, got {price!r}")
    if price != price.to_integral_value():
        raise ValueError(f"price {price} is not a whole yen")
    return int(price)


class RateListener(Protocol):
    """Told of every request as it leaves and of every answer's `X-RateLimit-*` headers."""

    def on_request(self, path: str) -> None: ...

    def on_headers(self, path: str, info: RateLimitInfo) -> None: ...
