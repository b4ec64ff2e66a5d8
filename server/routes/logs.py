"""GET /logs, GET /logs/{trades|orders|decisions}/{YYYYMMDD}.csv, GET /logs/runtime/{name}."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends, HTTPException
from starlette.responses import StreamingResponse

from server.logfiles import csv_path, file_download, list_logs, runtime_path
from server.routes.common import RunnerDep
from server.schemas import LogIndex
from server.security import require_auth

router = APIRouter(tags=["logs"], dependencies=[Depends(require_auth)])
_NOT_FOUND = "no such log file"


@router.get("/logs", response_model=LogIndex)
async def logs_index(runner: RunnerDep) -> dict[str, list[str]]:
    return await anyio.to_thread.run_sync(list_logs, runner.log_dir)


@router.get("/logs/runtime/{name}", response_class=StreamingResponse)
async def runtime_log(runner: RunnerDep, name: str) -> StreamingResponse:
    path = runtime_path(runner.log_dir, name)
    if path is None:
        raise HTTPException(404, _NOT_FOUND)
    return file_download(path, "text/plain; charset=utf-8", path.name)


@router.get("/logs/{kind}/{filename}", response_class=StreamingResponse)
async def csv_log(runner: RunnerDep, kind: str, filename: str) -> StreamingResponse:
    path = csv_path(runner.log_dir, kind, filename)
    if path is None:
        raise HTTPException(404, _NOT_FOUND)
    return file_download(path, "text/csv; charset=utf-8", path.name)
