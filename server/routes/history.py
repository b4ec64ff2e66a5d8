"""GET /history/daily, GET /trades (paginated, filtered) and the History page (GET /history): the CSV logs
queried with DuckDB in a worker thread, never on the bot's loop."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from server.history import MAX_LIMIT, BadQuery, HistoryUnavailable, TradeQuery, daily_history, trade_page
from server.routes.common import RunnerDep
from server.schemas import DayHistory, Detail, TradePage
from server.security import require_auth, require_auth_page

router = APIRouter(tags=["history"], dependencies=[Depends(require_auth)])
page_router = APIRouter(tags=["history"], dependencies=[Depends(require_auth_page)], include_in_schema=False)

# the parameters arrive as text and are checked by TradeQuery.parse, so a bad one gets a sentence, not a list
# of validator errors; the schema still documents what is accepted
_Day = Annotated[
    str | None, Query(description="trading day YYYYMMDD", json_schema_extra={"pattern": r"^\d{8}$"})
]
_Side = Annotated[str | None, Query(description="BUY or SELL", json_schema_extra={"enum": ["BUY", "SELL"]})]
_Tag = Annotated[
    str | None,
    Query(
        description="stall, close, correction, …", json_schema_extra={"pattern": r"^[A-Za-z0-9_.-]{1,40}$"}
    ),
]
_Limit = Annotated[
    str | None,
    Query(
        description=f"rows per page, 1–{MAX_LIMIT} (default 50)",
        json_schema_extra={"pattern": r"^\d{1,6}$"},
    ),
]
_Cursor = Annotated[
    str | None,
    Query(description="next_cursor of the previous page", json_schema_extra={"pattern": r"^\d{8}-\d{1,12}$"}),
]


@router.get("/history/daily", response_model=list[DayHistory], responses={503: {"model": Detail}})
async def history_daily(runner: RunnerDep) -> list[dict[str, Any]]:
    inv = runner.inventory  # today's drawdown so far: the summary file has it only after a kill or the roll
    try:
        return await anyio.to_thread.run_sync(
            daily_history, runner.log_dir, inv.trading_day or None, inv.max_drawdown_jpy
        )
    except HistoryUnavailable as e:
        raise HTTPException(503, str(e)) from None


@router.get("/trades", response_model=TradePage, responses={422: {"model": Detail}, 503: {"model": Detail}})
async def trades(
    runner: RunnerDep,
    day: _Day = None,
    side: _Side = None,
    tag: _Tag = None,
    limit: _Limit = None,
    cursor: _Cursor = None,
) -> dict[str, Any]:
    try:
        query = TradeQuery.parse(day, side, tag, limit, cursor)
    except BadQuery as e:
        raise HTTPException(422, str(e)) from None
    try:
        return await anyio.to_thread.run_sync(trade_page, runner.log_dir, query)
    except HistoryUnavailable as e:
        raise HTTPException(503, str(e)) from None


@page_router.get("/history", response_class=HTMLResponse)
async def history_page(request: Request, runner: RunnerDep) -> Response:
    return request.app.state.templates.TemplateResponse(
        request,
        "history.html",
        {"token_enabled": request.app.state.security.enabled, "mode": runner.mode},
        headers={"Cache-Control": "no-store"},
    )
