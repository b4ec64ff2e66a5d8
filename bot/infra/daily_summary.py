"""The daily summary file: what the CSV logs do not hold about a trading day — its max drawdown (marked to
market, so no trade row carries it) and its kills (time, reason, who).

    logs/daily/daily-YYYYMMDD.json   {"day": "YYYYMMDD", "max_drawdown_jpy": "-1234.5",
                                      "kills": [{"at": ISO-8601, "reason": "...", "who": "..."}]}

Written at the day roll (the closing day's max drawdown) and at each kill (the kill, and the drawdown so far).
Each write reads the file, merges (the deeper drawdown wins, kills append) and replaces it atomically (temp
file, fsync, rename), so a crash leaves the old file or the new one. Writes run in a worker thread
(`record_*` return coroutines for `asyncio.to_thread`), serialised by one lock; a write that fails is logged
and dropped: a summary must never stop the bot. Reading (`load_days`) skips an unreadable file with one log
line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from loguru import logger

DAILY_DIR = "daily"
_DAY = re.compile(r"^\d{8}$")
_FILE = re.compile(r"^daily-(\d{8})\.json$")


def summary_path(log_dir: Path, day: str) -> Path:
    """The summary file of one trading day (YYYYMMDD only: no path ever built from anything else)."""
    if not _DAY.match(day):
        raise ValueError(f"day must be YYYYMMDD, got {day!r}")
    return Path(log_dir) / DAILY_DIR / f"daily-{day}.json"


@dataclass(frozen=True, slots=True)
class KillEvent:
    at: str  # ISO-8601, UTC
    reason: str
    who: str


@dataclass(slots=True)
class DaySummary:
    day: str
    max_drawdown_jpy: Decimal | None = None
    kills: list[KillEvent] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        dd = self.max_drawdown_jpy
        return {
            "day": self.day,
            "max_drawdown_jpy": None if dd is None else format(dd, "f"),
            "kills": [{"at": k.at, "reason": k.reason, "who": k.who} for k in self.kills],
        }

    @classmethod
    def from_json(cls, data: Any, day: str) -> DaySummary:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        raw = data.get("max_drawdown_jpy")
        try:
            dd = None if raw is None else Decimal(str(raw))
        except InvalidOperation as e:
            raise ValueError(f"max_drawdown_jpy {raw!r} is not a number") from e
        if dd is not None and not dd.is_finite():
            raise ValueError("max_drawdown_jpy is not finite")
        kills = [
            KillEvent(str(k.get("at", "")), str(k.get("reason", "")), str(k.get("who", "")))
            for k in data.get("kills") or []
            if isinstance(k, dict)
        ]
        return cls(day, dd, kills)


class DailySummaryFile:
    """Writes and reads the per-day summary files under `log_dir/daily/`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self._lock = threading.Lock()

    # ---- writing (worker thread) --------------------------------------------------------------------------
    def record_day_sync(self, day: str, max_drawdown_jpy: Decimal, kill: KillEvent | None = None) -> None:
        with self._lock:
            path = summary_path(self.log_dir, day)
            current = self._read(path, day) or DaySummary(day)
            if current.max_drawdown_jpy is None or max_drawdown_jpy < current.max_drawdown_jpy:
                current.max_drawdown_jpy = max_drawdown_jpy
            if kill is not None:
                current.kills.append(kill)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(current.to_json(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic: the old summary or the new one, never half of one

    def record_day(self, day: str, max_drawdown_jpy: Decimal) -> Coroutine[Any, Any, None]:
        """At the day roll: the closing day's max drawdown."""
        return asyncio.to_thread(self._safely, day, max_drawdown_jpy, None)

    def record_kill(
        self, day: str, max_drawdown_jpy: Decimal, at: datetime, reason: str, who: str
    ) -> Coroutine[Any, Any, None]:
        """At a kill: the kill (time, reason, who) and the drawdown so far."""
        return asyncio.to_thread(self._safely, day, max_drawdown_jpy, KillEvent(at.isoformat(), reason, who))

    def _safely(self, day: str, max_drawdown_jpy: Decimal, kill: KillEvent | None) -> None:
        try:
            self.record_day_sync(day, max_drawdown_jpy, kill)
        except (OSError, ValueError) as e:
            logger.error("daily summary for {}: could not write ({})", day, e)

    # ---- reading ------------------------------------------------------------------------------------------
    def load_days(self) -> dict[str, DaySummary]:
        """Every day's summary found on disk (unreadable files skipped with one log line each)."""
        folder = self.log_dir / DAILY_DIR
        out: dict[str, DaySummary] = {}
        if not folder.is_dir():
            return out
        for p in folder.iterdir():
            m = _FILE.match(p.name)
            if m is None or not p.is_file() or p.is_symlink():
                continue
            summary = self._read(p, m.group(1))
            if summary is not None:
                out[summary.day] = summary
        return out

    @staticmethod
    def _read(path: Path, day: str) -> DaySummary | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            logger.warning("daily summary {} unreadable ({}); skipped", path.name, e)
            return None
        try:
            return DaySummary.from_json(json.loads(text), day)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            logger.warning("daily summary {} unreadable ({}); skipped", path.name, e)
            return None
