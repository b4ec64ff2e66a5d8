"""Plain data shared by the core and the edges. Money and sizes are Decimal; times are passed in.

Clocks: `now` everywhere in the core is the local monotonic clock in integer nanoseconds
(`time.monotonic_ns()` at the edge); wall-clock times (`datetime`, tz-aware UTC) appear only where a row is
logged or a trading day is decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

NS_PER_MS = 1_000_000
SIZE_UNITS = 100_000_000  # sizes inside the hot path: integer units of 1e-8 BTC (bitFlyer's finest size)
_SIZE_UNITS_D = Decimal(SIZE_UNITS)


def price_ticks(price: Decimal, tick_size: Decimal) -> int:
    """A Decimal price on the tick grid -> integer ticks; off the grid is refused, never rounded silently."""
    q, r = divmod(price, tick_size)
    if r:
        raise ValueError(f"price {price} is not a multiple of the tick {tick_size}")
    return int(q)


def size_units(size: Decimal) -> int:
    """BTC -> integer units of 1e-8 BTC; a finer size is refused."""
    u = size * _SIZE_UNITS_D
    if u != u.to_integral_value():
        raise ValueError(f"size {size} is finer than 1e-8 BTC")
    return int(u)


def units_btc(units: int) -> Decimal:
    """Integer units of 1e-8 BTC -> BTC, exact (0.001, not 0.00100000)."""
    return Decimal(units) / _SIZE_UNITS_D


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class RunState(StrEnum):
    STOPPED = "STOPPED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    KILLED = "KILLED"


class ActionKind(StrEnum):
    PLACE_LIMIT = "place_limit"
    CANCEL_ALL_STALL = "cancel_all_stall"  # cancel every live order tagged "stall"
    CANCEL_ALL = "cancel_all"  # cancelallchildorders: every order of the product
    CLOSE_MARKET = "close_market"  # MARKET order on the opposite side for the given size


class Reason(StrEnum):
    """Why a decision was (not) taken. Machine-readable; written to the decisions log."""

    # no action
    NOT_STALLED = "not_stalled"
    SPREAD_TOO_NARROW = "spread_too_narrow"
    INVENTORY_LIMIT = "inventory_limit"
    ORDERS_LIVE = "orders_live"
    ALREADY_STRUCK = "already_struck"  # one strike per stall: waiting for the best to move
    WOULD_CROSS = "would_cross"
    NO_BOOK = "no_book"  # one side of the book empty
    PAUSED = "paused"
    STOPPED = "stopped"
    KILLED = "killed"
    STALE_DATA = "stale_data"
    MARKET_CLOSED = "market_closed"  # board state not RUNNING, health STOP/NO ORDER, maintenance
    RECONCILING = "reconciling"  # after (re)connect, until REST reconciliation succeeds
    EXCHANGE_BACKOFF = "exchange_backoff"  # backing off after exchange errors
    MARGIN_LOW = "margin_low"  # the venue's keep_rate is below risk.min_keep_rate
    MARGIN_CALL = "margin_call"  # the venue reports a margin call
    STORAGE = "storage_failed"  # the state file or a CSV log cannot be written (disk full, unwritable)
    RATE_BUDGET = "rate_budget"
    CLOSE_PENDING = "close_pending"  # a closing order is in flight
    DUST = "dust"  # position below exchange.min_size: no order the venue must refuse
    # actions
    STRIKE = "strike"
    TTL_EXPIRED = "ttl_expired"
    BEST_CHANGED = "best_changed"
    REVERSE_STOP = "reverse_stop"
    HOLD_TIMEOUT = "hold_timeout"
    KILL_SWITCH = "kill_switch"
    MANUAL = "manual"  # a human's stop / kill / pause


class OrderState(StrEnum):
    PENDING_NEW = "PENDING_NEW"  # request sent, no acceptance id yet
    ACTIVE = "ACTIVE"  # accepted (acceptance id known) and resting
    PENDING_CANCEL = "PENDING_CANCEL"  # cancel requested, outcome not yet known
    UNKNOWN = "UNKNOWN"  # a send/cancel whose outcome we could not learn (timeout, 5xx)
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"

    @property
    def is_open(self) -> bool:
        """Could still rest on the book or fill: counts as live for the strategy and for stop/kill."""
        return self in (
            OrderState.PENDING_NEW,
            OrderState.ACTIVE,
            OrderState.PENDING_CANCEL,
            OrderState.UNKNOWN,
        )


class ChildOrderEventType(StrEnum):
    ORDER = "ORDER"
    ORDER_FAILED = "ORDER_FAILED"
    CANCEL = "CANCEL"
    CANCEL_FAILED = "CANCEL_FAILED"
    EXECUTION = "EXECUTION"
    EXPIRE = "EXPIRE"


@dataclass(frozen=True, slots=True)
class BoardSnapshot:
    """The market as the strategy sees it, own resting orders excluded (seed §5.1 plus what SPEC §5 needs).

    Prices are integer ticks of `tick_size` and sizes integer units of 1e-8 BTC: the decision compares and
    adds plain ints. The Decimal properties below are for the edges (dashboard, logs, order requests)."""

    bid: int | None  # best bid, ticks
    bid_size: int | None  # 1e-8 BTC units
    ask: int | None
    ask_size: int | None
    best_changed_at: int = 0  # monotonic ns of the last change of either best price
    stale: bool = False  # disconnected / snapshot pending / desynced / no message lately
    tick_size: Decimal = Decimal(1)

    @classmethod
    def from_prices(
        cls,
        bid: Decimal | None,
        ask: Decimal | None,
        *,
        tick_size: Decimal,
        best_changed_at: int = 0,
        stale: bool = False,
        bid_size: Decimal | None = None,
        ask_size: Decimal | None = None,
    ) -> BoardSnapshot:
        """From Decimal prices on the tick grid and BTC sizes (tests, replays of logged prices)."""
        return cls(
            None if bid is None else price_ticks(bid, tick_size),
            None if bid is None else size_units(bid_size if bid_size is not None else Decimal(0)),
            None if ask is None else price_ticks(ask, tick_size),
            None if ask is None else size_units(ask_size if ask_size is not None else Decimal(0)),
            best_changed_at,
            stale,
            tick_size,
        )

    @property
    def has_both_sides(self) -> bool:
        return self.bid is not None and self.ask is not None

    @property
    def spread_ticks(self) -> int | None:
        return None if self.bid is None or self.ask is None else self.ask - self.bid

    def best_age_ms(self, now: int) -> int:
        return max(0, now - self.best_changed_at) // NS_PER_MS

    @property
    def best_bid_price(self) -> Decimal | None:
        return None if self.bid is None else self.bid * self.tick_size

    @property
    def best_ask_price(self) -> Decimal | None:
        return None if self.ask is None else self.ask * self.tick_size

    @property
    def best_bid_size(self) -> Decimal | None:
        return None if self.bid_size is None else units_btc(self.bid_size)

    @property
    def best_ask_size(self) -> Decimal | None:
        return None if self.ask_size is None else units_btc(self.ask_size)

    @property
    def mid_price(self) -> Decimal | None:
        """(best_bid + best_ask) / 2 of the own-excluded best."""
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) * self.tick_size / 2


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    reason: Reason
    side: Side | None = None
    price: Decimal | None = None
    size: Decimal | None = None
    ttl_ms: int | None = None
    tag: str = "stall"


@dataclass(slots=True)  # not frozen: one is made per decision, and a frozen dataclass is slow to build
class DecisionMeta:
    """What a decision saw and why it did what it did; one decisions-log row. Treat it as read-only."""

    ts: int  # monotonic ns
    reason: Reason
    best_age_ms: int
    spread_ticks: int | None
    inventory_btc: Decimal
    entry_bid_px: Decimal | None = None
    entry_ask_px: Decimal | None = None
    actions: tuple[Action, ...] = ()
    detail: str = ""  # free text, e.g. which side was skipped and why

    @property
    def decision_type(self) -> str:
        return "action" if self.actions else "no_action"


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of our orders (from child_order_events EXECUTION, or REST getexecutions)."""

    exec_id: str
    child_order_acceptance_id: str
    side: Side
    price: Decimal
    size: Decimal
    commission: Decimal
    exec_date: datetime  # tz-aware UTC
    child_order_id: str = ""
    tag: str = ""

    @property
    def dedupe_key(self) -> str:
        """One execution of one of our orders. A self-trade (our close hitting our own resting order) is one
        exec_id with two sides, both ours: keyed by exec_id alone, one side would be lost."""
        return f"{self.exec_id}:{self.side.value}" if self.exec_id else ""


@dataclass(frozen=True, slots=True)
class ChildOrderEvent:
    """A parsed child_order_events item."""

    event_type: ChildOrderEventType
    child_order_acceptance_id: str
    child_order_id: str
    event_date: datetime
    side: Side | None = None
    price: Decimal | None = None
    size: Decimal | None = None
    child_order_type: str | None = None
    exec_id: str | None = None
    commission: Decimal | None = None
    outstanding_size: Decimal | None = None
    reason: str | None = None
    expire_date: datetime | None = None
    product_code: str = ""  # the channel covers the whole account: every product's orders


@dataclass(slots=True)
class OwnOrder:
    """One order of ours as we know it. bitFlyer does not echo tags, so the tag lives here only."""

    client_id: str  # ours, assigned before the request leaves
    tag: str
    side: Side
    order_type: str  # LIMIT | MARKET
    price: Decimal | None
    size: Decimal
    placed_at: int  # monotonic ns
    ttl_ms: int | None = None
    state: OrderState = OrderState.PENDING_NEW
    acceptance_id: str | None = None
    child_order_id: str | None = None
    executed_size: Decimal = Decimal(0)
    reason: Reason | None = None
    last_error: str | None = None
    accepted_at: int | None = (
        None  # monotonic ns we learnt the acceptance id (listings before it prove nothing)
    )
    # the executions (exec_id:side) this order has heard: its own state counts each once. The ledger's
    # de-duplication of fills is the inventory's; this set is bounded by the order's size.
    heard_executions: set[str] = field(default_factory=set)

    @property
    def outstanding(self) -> Decimal:
        return self.size - self.executed_size

    @property
    def expires_at(self) -> int | None:
        return None if self.ttl_ms is None else self.placed_at + self.ttl_ms * NS_PER_MS


@dataclass(frozen=True, slots=True)
class InventoryState:
    side: str  # flat | long | short
    size: Decimal  # absolute BTC
    position_btc: Decimal  # signed
    avg_price: Decimal | None
    realized_pnl_jpy: Decimal  # since start of records
    realized_today_jpy: Decimal
    unrealized_pnl_jpy: Decimal
    fees_today_jpy: Decimal
    pnl_today_jpy: Decimal
    drawdown_jpy: Decimal
    max_drawdown_jpy: Decimal
    trading_day: str  # YYYYMMDD in the trading-day time zone
    opened_at: int | None = None  # monotonic ns the current position was opened (for max_hold_ms)


@dataclass(frozen=True, slots=True)
class AuditLogRow:
    """One live config change: who changed which field when, from what to what (values as JSON text)."""

    ts: datetime
    who: str
    action: str  # patch / revert
    field: str  # dotted, e.g. strategy.stall_T_ms
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class TradeLogRow:
    ts: datetime
    order_id: str
    side: Side | None  # None: a holding cost, no trade
    price: Decimal
    size: Decimal
    fee: Decimal
    strategy: str
    tag: str
    pnl_jpy: Decimal
    pnl_cum_jpy: Decimal
    inventory_after: Decimal
    exec_id: str = ""


@dataclass(frozen=True, slots=True)
class OrderLogRow:
    ts: datetime
    action: str  # place / cancel / cancel_all / expire / fill / reject / unknown / ...
    order_id: str  # child_order_acceptance_id when known
    client_order_id: str
    side: Side | None
    price: Decimal | None
    size: Decimal | None
    tif: str
    ttl_ms: int | None
    tag: str
    reason: str
    status: str = ""  # ok / error code / timeout
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class DecisionLogRow:
    ts: datetime
    best_age_ms: int
    spread_ticks: int | None
    inventory_btc: Decimal
    decision_type: str
    entry_bid_px: Decimal | None
    entry_ask_px: Decimal | None
    actions: str
    reason: str
    count: int = 1  # repeated identical no-action rows collapsed into one
    detail: str = ""


@dataclass(slots=True)
class Gate:
    """What the runner knows that the strategy must obey. The runner sets it; the strategy only reads it."""

    run_state: RunState = RunState.RUNNING
    block_reason: Reason | None = (
        None  # STALE_DATA / RECONCILING / MARKET_CLOSED / STORAGE / EXCHANGE_BACKOFF
    )
    order_budget: int = 1_000_000  # order requests the client-side rate limiter allows right now
    order_budget_grows_at: int | None = None  # monotonic ns it can next grow (None: unknown, retry soon)
    notes: dict[str, str] = field(default_factory=dict)
