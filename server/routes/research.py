"""The Research page (GET /research): replay and sweep results beside the live session's own markouts, and
each result's HTML report (GET /research/report/{root}/{name}). Folders are read off the bot's loop."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from bot.runner import BotRunner
from bot.types.snapshot import plain
from server.research import as_json, find_results, report_path
from server.routes.common import RunnerDep
from server.schemas import ResearchResults
from server.security import require_auth, require_auth_page

router = APIRouter(tags=["research"], dependencies=[Depends(require_auth)])
page_router = APIRouter(tags=["research"], dependencies=[Depends(require_auth_page)], include_in_schema=False)


def _roots(runner: BotRunner) -> list[Path]:
    return [Path(d) for d in runner.config.research.results_dirs]


def _live(runner: BotRunner) -> dict[str, Any]:
    m = runner.markouts

    def mean(h: float) -> str | None:
        v = m.mean(h)
        return None if v is None else plain(v.quantize(Decimal("0.0001")))  # as replay writes them

    curve = {h: n for h, _, n in m.curve()}
    return {
        "fills": curve.get(1, 0),
        "realized_pnl_jpy": plain(runner.inventory.realized_pnl_jpy),
        "markout_1s_jpy": mean(1),
        "markout_5s_jpy": mean(5),
        "markout_30s_jpy": mean(30),
    }


async def _results(runner: BotRunner) -> dict[str, Any]:
    roots = _roots(runner)
    rows = await anyio.to_thread.run_sync(find_results, roots)
    return {"live": _live(runner), "results": as_json(rows, roots)}


@router.get("/research/results", response_model=ResearchResults)
async def research_results(runner: RunnerDep) -> dict[str, Any]:
    return await _results(runner)


@page_router.get("/research", response_class=HTMLResponse)
async def research_page(request: Request, runner: RunnerDep) -> Response:
    data = await _results(runner)
    return request.app.state.templates.TemplateResponse(
        request,
        "research.html",
        {
            **data,
            "roots": [str(r) for r in _roots(runner)],
            "token_enabled": request.app.state.security.enabled,
            "mode": runner.mode,
        },
        headers={"Cache-Control": "no-store"},
    )


@page_router.get("/research/report/{root}/{name}", response_class=FileResponse)
async def research_report(runner: RunnerDep, root: int, name: str) -> FileResponse:
    path = await anyio.to_thread.run_sync(report_path, _roots(runner), root, name)
    if path is None:
        raise HTTPException(404, "no such result report")
    return FileResponse(path, media_type="text/html; charset=utf-8")
