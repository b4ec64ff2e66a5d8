"""Which log files exist and how to hand one out safely.

Only names we construct ourselves are ever opened: the CSV files as the loggers lay them out
(`bot/infra/logging_structured.csv_path`) and a plain file name directly inside `runtime/`. Anything else —
other kinds, malformed dates, encoded slashes or dots, symlinks — is simply not found. Files still being
appended are sent up to the size they had when the request arrived, so the Content-Length is always right.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from starlette.responses import StreamingResponse

from bot.infra.logging_runtime import RUNTIME_DIR
from bot.infra.logging_structured import csv_path as csv_file
from bot.infra.logging_structured import list_days

_DAY = re.compile(r"^(\d{8})\.csv$")
_RUNTIME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_CHUNK = 64 * 1024


def list_logs(log_dir: Path) -> dict[str, list[str]]:
    out = {kind: sorted(days, reverse=True) for kind, days in list_days(log_dir).items()}
    runtime = log_dir / RUNTIME_DIR
    out[RUNTIME_DIR] = (
        sorted(
            (
                p.name
                for p in runtime.iterdir()
                if p.is_file() and not p.is_symlink() and _RUNTIME_NAME.match(p.name)
            ),
            reverse=False,
        )
        if runtime.is_dir()
        else []
    )
    return out


def _plain_file_in(folder: Path, name: str) -> Path | None:
    """`folder/name` when it is a regular file that is not a link and, resolved, still lies in the resolved
    folder: a symlink planted in the log folder (to /etc/shadow, or anywhere) is not found."""
    path = folder / name
    try:
        if path.is_symlink() or not path.is_file():
            return None
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return resolved if resolved.parent == folder.resolve() else None


def csv_path(log_dir: Path, kind: str, filename: str) -> Path | None:
    m = _DAY.match(filename)
    if m is None:
        return None
    try:
        path = csv_file(log_dir, kind, m.group(1))
    except ValueError:  # not a kind we write
        return None
    return _plain_file_in(path.parent, path.name)


def runtime_path(log_dir: Path, name: str) -> Path | None:
    if not _RUNTIME_NAME.match(name) or ".." in name:
        return None
    return _plain_file_in(log_dir / RUNTIME_DIR, name)


async def _read_upto(path: Path, size: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        left = size
        while left > 0:
            chunk = await f.read(min(_CHUNK, left))
            if not chunk:  # truncated meanwhile (rotation): stop short rather than hang
                return
            left -= len(chunk)
            yield chunk


def file_download(path: Path, media_type: str, download_name: str) -> StreamingResponse:
    size = path.stat().st_size
    return StreamingResponse(
        _read_upto(path, size),
        media_type=media_type,
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{download_name}"',
            "Cache-Control": "no-store",
        },
    )
