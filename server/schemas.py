"""Request/response bodies of the HTTP API (pydantic), so the OpenAPI page documents what each call
returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from bot.types.snapshot import RunStatus


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
    runtime: list[str]


class Health(BaseModel):
    status: str
    state: str
    mode: str
