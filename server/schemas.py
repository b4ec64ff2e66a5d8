"""Request/response bodies of the HTTP API (pydantic), so the OpenAPI page documents what each call
returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from bot.types.snapshot import Dec, RunStatus


class ResearchResult(BaseModel):
    root: str = Field(description="the configured folder it was found in")
    name: str
    kind: str = Field(description="replay | sweep")
    label: str = Field(description="a sweep's best grid point")
    figures: dict[str, str] = Field(description="total/realized PnL, fills, markouts at 1, 5, 30 s (JPY)")
    report: str = Field(description="the result's HTML report")


class LiveMarkouts(BaseModel):
    fills: int = Field(description="fills of this session marked so far (at 1 s)")
    realized_pnl_jpy: str
    markout_1s_jpy: str | None
    markout_5s_jpy: str | None
    markout_30s_jpy: str | None


class ResearchResults(BaseModel):
    live: LiveMarkouts
    results: list[ResearchResult]


class ControlResult(RunStatus):
    """POST /strategy/{action}: the status after the call; `changed` is false for a repeat (a no-op)."""

    changed: bool


class Detail(BaseModel):
    """Every error answer: 400, 401, 403, 404, 409, 415."""

    detail: str


class FieldProblem(BaseModel):
    field: str = Field(description="dotted path, e.g. strategy.stall_T_ms")
    message: str


class ConfigProblems(BaseModel):
    """422 on PATCH /config: every refused field; nothing was applied."""

    detail: list[FieldProblem]


class ConfigPatchResult(BaseModel):
    """PATCH /config: the running config after the patch and the fields whose value changed."""

    changed: dict[str, list[Any]] = Field(description="field -> [old, new]")
    config: dict[str, Any]


class LogIndex(BaseModel):
    """GET /logs: available trading days per CSV kind (YYYYMMDD, newest first) and runtime log file names."""

    trades: list[str]
    orders: list[str]
    decisions: list[str]
    audit: list[str]
    runtime: list[str]


class Health(BaseModel):
    status: str
    state: str
    mode: str


class KillView(BaseModel):
    at: str = Field(description="when the kill latched (ISO-8601, UTC)")
    reason: str
    who: str


class DayHistory(BaseModel):
    """GET /history/daily: one trading day (in risk.trading_day_tz) from the trades CSV and the day's summary
    file. Money and sizes are decimal strings."""

    day: str = Field(description="trading day, YYYYMMDD")
    realized_jpy: Dec = Field(description="sum of realized PnL (corrections included)")
    fees_jpy: Dec
    volume_btc: Dec = Field(description="traded size (corrections excluded)")
    fills: int
    win_rate: float | None = Field(description="share of the fills that realized PnL which made money")
    max_drawdown_jpy: Dec | None = Field(description="from the daily summary file (or today's, live)")
    kills: list[KillView]


class TradeItem(BaseModel):
    """One row of the trades CSV, with its day and row number (the cursor's parts)."""

    day: str
    row: int
    ts: str
    order_id: str
    side: str
    price: Dec | None
    size: Dec | None
    fee: Dec | None
    strategy: str
    tag: str
    pnl_jpy: Dec | None
    pnl_cum_jpy: Dec | None
    inventory_after: Dec | None
    exec_id: str


class TradePage(BaseModel):
    """GET /trades: newest first; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[TradeItem]
    next_cursor: str | None


class AuditEntry(BaseModel):
    ts: str
    who: str
    action: str = Field(description="patch or revert")
    field: str
    old: str
    new: str


class AuditLog(BaseModel):
    """GET /config/audit: the newest live config changes first."""

    items: list[AuditEntry]
