"""Which log files exist and how to hand one out safely.

Only names we construct ourselves are ever opened: `<kind>/<kind>-<YYYYMMDD>.csv` for the three CSV kinds and
a plain file name directly inside `runtime/`. Anything else — other kinds, malformed dates, encoded slashes or
dots — is simply not found. Files still being appended are sent up to the size they had when the request
arrived, so the Content-Length is always right.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from starlette.responses import StreamingResponse

CSV_KINDS = ("trades", "orders", "decisions")
RUNTIME_DIR = "runtime"
_DAY = re.compile(r"^(\d{8})\.csv$")
_RUNTIME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_CHUNK = 64 * 1024


def list_logs(log_dir: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in CSV_KINDS:
        days = []
        folder = log_dir / kind
        if folder.is_dir():
            for p in folder.glob(f"{kind}-*.csv"):
                day = p.name[len(kind) + 1 : -4]
                if len(day) == 8 and day.isdigit() and p.is_file() and not p.is_symlink():
                    days.append(day)
        out[kind] = sorted(days, reverse=True)
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
    if kind not in CSV_KINDS or m is None:
        return None
    return _plain_file_in(log_dir / kind, f"{kind}-{m.group(1)}.csv")


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
