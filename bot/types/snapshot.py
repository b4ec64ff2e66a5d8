"""BotSnapshot: what the trader sees, typed. The dashboard renders it, GET /state returns it (its response
model), /metrics reads it. Money and sizes stay Decimal inside the process and are written to JSON as plain
decimal strings (`0.00000001`, never `1E-8`); counts and latencies are numbers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer


def plain(d: Decimal) -> str:
    """A Decimal as people write it: no exponent, trailing zeros of the value kept as they are."""
    return format(d, "f")


Dec = Annotated[Decimal, PlainSerializer(plain, return_type=str, when_used="json")]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=False)


class SettleView(_View):
    goal: str
    working: bool
    attempt: int
    last_error: str | None
    confirmed_at: str | None
    cancel_requests: int
    flatten_orders: list[str]


class BoardPanel(_View):
    best_bid: Dec | None
    best_bid_size: Dec | None
    best_ask: Dec | None
    best_ask_size: Dec | None
    spread_ticks: int | None
    mid: Dec | None
    best_age_ms: int | None
    stale: bool
    stale_reason: str | None
    # (price, size, our resting size there) best first; what the ladder draws
    bids: list[tuple[Dec, Dec, Dec]]
    asks: list[tuple[Dec, Dec, Dec]]


class OrderRow(_View):
    client_id: str
    acceptance_id: str | None
    tag: str
    side: str
    price: Dec | None
    size: Dec
    executed: Dec
    state: str
    age_ms: int
    ttl_left_ms: int | None


class InventoryPanel(_View):
    position_btc: Dec
    avg_price: Dec | None
    realized_pnl_jpy: Dec
    unrealized_pnl_jpy: Dec
    pnl_today_jpy: Dec
    fees_today_jpy: Dec
    holding_costs_today_jpy: Dec  # funding and leverage points booked today (paid: positive)
    holding_costs_total_jpy: Dec
    drawdown_jpy: Dec
    max_drawdown_jpy: Dec
    trading_day: str


class Limits(_View):
    daily_pnl_jpy: Dec
    max_dd_jpy: Dec
    max_inventory_btc: Dec


class BudgetView(_View):
    """A request budget as the strategy sees it: entries stop at the reserve (kept for cancels, kills)."""

    name: str
    left: int
    limit: int
    reserve: int
    refills_in_s: float | None  # until one more request is free above the reserve (None: not waiting)


class HealthPanel(_View):
    ws_connected: bool
    feed_up: bool
    last_message_age_ms: int | None
    rest_latency_ms: float | None
    order_budget_left: int
    private_budget_left: int
    board_state: str
    exchange_health: str
    reconciled_at: str | None
    block_reason: str | None
    keep_rate: Dec | None  # the venue's, at the last getcollateral (1.5 = 150 %; 0 with no position)
    margin_call_jpy: Dec
    margin_checked_at: str | None
    margin_alert: str | None
    budgets: list[BudgetView]
    loop_lag_ms: float
    loop_lag_max_ms: float


class StorageFaultView(_View):
    file: str  # "state file", "trades log" …
    path: str
    errno: int | None
    error: str  # the OS's words: "No space left on device"
    since: str  # ISO-8601 UTC
    failures: int
    rows_held: int


class StorageView(_View):
    """Whether the bot can write its state file and logs; while not, entries are stopped (fail-closed)."""

    ok: bool
    message: str | None  # the banner's line: what, why, where, since when
    faults: list[StorageFaultView]
    rows_held: int  # CSV rows in memory waiting for the disk
    rows_dropped: int  # CSV rows given up since start


class Counters(_View):
    orders_sent: int
    orders_cancelled: int
    fills: int
    board_messages: int
    exchange_errors: dict[str, int]
    reconnects: int
    other_product_events: int


class DecisionEntry(_View):
    ts: str
    reason: str
    actions: str
    detail: str


class FillEntry(_View):
    ts: str
    side: str
    price: Dec
    size: Dec
    tag: str
    pnl_jpy: Dec


class Chart(_View):
    mid: list[tuple[float, Dec]]  # (unix seconds, mid)
    fills: list[tuple[float, Dec, str]]  # (unix seconds, price, side)
    pnl: list[tuple[float, Dec]]  # (unix seconds, the day's PnL)


class Activity(_View):
    """Is it trading, and if not, why — the one answer the banner, GET /strategy and the log share."""

    status: str  # trading | idle | throttled | blocked
    reason: str  # a machine code: orders_live, not_stalled, rest_budget, stale_data, killed, …
    detail: str  # one sentence for a person
    since: str  # ISO time this status and reason began


class SettleReport(_View):
    """What a stop or a kill did: cancelled, flattened at which price, the PnL effect, confirmed when."""

    goal: str  # no_orders (stop) | flat (kill)
    who: str
    started_at: str
    position_at_start_btc: Dec
    orders_cancelled: int  # our orders open when it began that ended cancelled
    closes: list[str]  # e.g. "SELL 0.001 @ 13,677,761"
    flattened_btc: Dec
    pnl_effect_jpy: Dec  # realized by the closes
    confirmed_at: str | None
    text: str  # the whole report as one sentence (flash, log, notification)


class RunStatus(_View):
    """GET /strategy: the run state and what the bot is doing about it."""

    state: str
    reason: str
    since: str
    mode: str
    activity: Activity
    alert: str | None  # what the account watch says is wrong (margin low, a margin call)
    settle: SettleView | None
    report: SettleReport | None  # the latest stop or kill


class BotSnapshot(RunStatus):
    position_warning: str | None
    board: BoardPanel
    orders: list[OrderRow]
    inventory: InventoryPanel
    limits: Limits
    venue_position_btc: Dec | None
    health: HealthPanel
    storage: StorageView
    counters: Counters
    decisions: list[DecisionEntry]
    fills: list[FillEntry]
    chart: Chart
    config: dict[str, dict[str, Any]]  # the hot sections as JSON values (what the config form shows)
