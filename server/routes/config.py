"""GET /config (secrets masked), PATCH /config (JSON merge patch of strategy.* / risk.*, all or nothing),
GET /config/file (the config files' values), POST /config/revert (the hot sections back to the file's values)
and GET /config/audit (who changed what, when)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from loguru import logger

from bot.config import ConfigError, RiskConfig, StallStrategyConfig, redacted_dump
from server.history import HistoryUnavailable, audit_rows
from server.routes.common import RunnerDep, peer_of, who_of
from server.schemas import AuditLog, ConfigPatchResult, ConfigProblems, Detail
from server.security import require_auth

PATCH_MEDIA_TYPES = ("application/merge-patch+json", "application/json")

router = APIRouter(tags=["config"], dependencies=[Depends(require_auth)])


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    a, b = _flatten(old), _flatten(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def _patch_schema() -> dict[str, Any]:
    """The body's JSON schema, from the config models themselves: every hot field, none required (a merge
    patch), with its type and range, so the docs (and a property-based client) know what is accepted."""

    def optional(model: type[StallStrategyConfig] | type[RiskConfig]) -> dict[str, Any]:
        schema = model.model_json_schema()
        schema.pop("required", None)
        return schema

    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {"strategy": optional(StallStrategyConfig), "risk": optional(RiskConfig)},
    }


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_patch(raw: bytes) -> Any:
    """JSON with exact decimals (0.001 stays Decimal('0.001')); NaN/Infinity refused."""
    return json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)


@router.get("/config")
async def get_config(runner: RunnerDep) -> dict[str, Any]:
    return redacted_dump(runner.config)


@router.get("/config/file")
async def get_file_config(runner: RunnerDep) -> dict[str, Any]:
    """The config files' values as loaded at start (what POST /config/revert returns the hot sections to)."""
    return redacted_dump(runner.file_config)


@router.get("/config/audit", response_model=AuditLog, responses={503: {"model": Detail}})
async def config_audit(
    runner: RunnerDep, limit: Annotated[int, Query(ge=1, le=500, description="rows, newest first")] = 50
) -> dict[str, Any]:
    try:
        items = await anyio.to_thread.run_sync(audit_rows, runner.log_dir, limit)
    except HistoryUnavailable as e:
        raise HTTPException(503, str(e)) from None
    return {"items": items}


@router.post("/config/revert", response_model=ConfigPatchResult, responses={422: {"model": ConfigProblems}})
async def revert_config(request: Request, runner: RunnerDep) -> Any:
    """strategy.* and risk.* back to the config file's values; audited like a PATCH."""
    who = f"{who_of(request)} ({peer_of(request)})"  # the audit and the log keep the address too
    old = redacted_dump(runner.config)
    try:
        new = redacted_dump(await runner.revert_config(who))
    except ConfigError as e:  # the file's values were valid at start; kept for a cold section edited since
        return JSONResponse({"detail": [fe.model_dump() for fe in e.errors]}, status_code=422)
    changed = config_diff(old, new)
    logger.info(
        "config reverted to the file by {}: {}",
        who,
        ", ".join(f"{k} {o} → {n}" for k, (o, n) in changed.items()) or "no change",
    )
    return {"changed": changed, "config": new}


@router.patch(
    "/config",
    response_model=ConfigPatchResult,
    responses={
        400: {"model": Detail, "description": "malformed JSON"},
        415: {"model": Detail, "description": "not application/merge-patch+json or application/json"},
        422: {"model": ConfigProblems, "description": "refused whole; nothing changed"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": _patch_schema(), "example": {"strategy": {"stall_T_ms": 400}}}
                for t in PATCH_MEDIA_TYPES
            },
        }
    },
)
async def patch_config(request: Request, runner: RunnerDep) -> Any:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in PATCH_MEDIA_TYPES:
        raise HTTPException(
            415, "send a JSON merge patch as application/merge-patch+json or application/json"
        )
    raw = await request.body()  # bounded by BodyLimit before it gets here
    try:
        patch = parse_patch(raw)
    except (ValueError, RecursionError) as e:
        raise HTTPException(400, f"malformed JSON: {e}") from None
    who = f"{who_of(request)} ({peer_of(request)})"  # the config log keeps the address too
    old = redacted_dump(runner.config)
    try:
        new_cfg = await runner.patch_config(patch, who)
    except ConfigError as e:
        problems = [{"field": fe.field, "message": fe.message} for fe in e.errors]
        logger.warning(
            "config patch by {} refused: {}",
            who,
            "; ".join(f"{p['field']}: {p['message']}" for p in problems),
        )
        return JSONResponse({"detail": problems}, status_code=422)
    new = redacted_dump(new_cfg)
    changed = config_diff(old, new)
    logger.info(
        "config change by {}: {}",
        who,
        ", ".join(f"{k} {o} → {n}" for k, (o, n) in changed.items()) or "no change",
    )
    return {"changed": changed, "config": new}
