"""GET /state (the dashboard's data as JSON), GET /preflight (the checks before a live start), GET /metrics
(Prometheus), GET /openapi.json; GET /healthz is public and lives in `public_router`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.runner import PreflightBusy
from bot.types.preflight import PreflightReport
from bot.types.snapshot import BotSnapshot
from server.routes.common import RunnerDep
from server.schemas import Detail, Health
from server.security import require_auth

router = APIRouter(tags=["ops"], dependencies=[Depends(require_auth)])
public_router = APIRouter(tags=["ops"])


@router.get("/state", response_model=BotSnapshot)
async def state(runner: RunnerDep) -> BotSnapshot:
    """Everything the dashboard shows, as JSON: money and sizes as plain decimal strings."""
    return runner.snapshot()


@router.get("/preflight", response_model=PreflightReport, responses={503: {"model": Detail}})
async def preflight(runner: RunnerDep) -> PreflightReport:
    """The checks before a live start, run now against the venue: keys and permissions, clock skew,
    collateral and keep rate, a position or orders already open, board state, maintenance, rate headroom,
    storage, the state file. `ready`: no error-level check failed. 503 while the REST budget is down to the
    reserve kept for a kill."""
    try:
        return await runner.preflight()
    except PreflightBusy as e:
        raise HTTPException(503, str(e), headers={"Retry-After": "30"}) from None


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/docs", include_in_schema=False)
async def docs() -> RedirectResponse:
    """FastAPI's interactive docs load their UI from a CDN, which this app never uses: the schema instead."""
    return RedirectResponse("/openapi.json", status_code=307)


@public_router.get("/healthz", response_model=Health)
async def healthz(runner: RunnerDep) -> dict[str, str]:
    """Liveness: the process answers. Deliberately says nothing about positions or config."""
    return {"status": "ok", "state": str(runner.state), "mode": runner.mode}
