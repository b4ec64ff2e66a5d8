"""StorageHealth: the one owner of "can the bot write its files".

The state file and the CSV writer report every write into it: a failure (the path, the OS error, since when)
or a success, which clears that file's fault. While any file fails, entries stop (the decision loop's
`Reason.STORAGE`), and the dashboard, `GET /state` and `/metrics` say why. A fault starts and ends with one
log line each (`STORAGE_FAILED` / `STORAGE_RECOVERED`), never one per retry; a notifier hooks the same two
events with `subscribe()`.

Thread-safe: the CSV writer thread, the state file's worker threads and the event loop all report here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from pathlib import Path

from loguru import logger

STATE_FILE = "state file"


class StorageEventKind(StrEnum):
    FAILED = "storage_failed"
    RECOVERED = "storage_recovered"


@dataclass(frozen=True, slots=True)
class StorageFault:
    """One file that cannot be written, from its first failed write until its next good one."""

    file: str  # what it is: "state file", "trades log" …
    path: str  # the file the failed write was for
    errno: int | None
    error: str  # the OS's words: "No space left on device"
    since: datetime  # UTC, the first failure of this run of failures
    failures: int = 1  # failed attempts since then (retries included)
    rows_held: int = 0  # a CSV log: rows kept in memory for the next attempt
    rows_dropped: int = 0  # … and rows given up since the fault began (past the bound)

    def describe(self, tz: tzinfo = UTC) -> str:
        since = self.since.astimezone(tz)
        return f"{self.file} not saved: {self.error} ({self.path}) since {since:%H:%M:%S} {since.tzname()}"


@dataclass(frozen=True, slots=True)
class StorageEvent:
    kind: StorageEventKind
    fault: StorageFault
    at: datetime  # UTC
    still_failing: int  # faults left after this event (0 after a recovery: entries may go again)
    tz: tzinfo = UTC  # the zone the health says times in


class StorageHealth:
    def __init__(self, *, tz: tzinfo = UTC, wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.tz = tz  # the zone "since" is said in (the trading day's)
        self._wall = wall
        self._lock = threading.Lock()
        self._faults: dict[str, StorageFault] = {}
        self._listeners: list[Callable[[StorageEvent], None]] = []
        self.rows_dropped = (
            0  # CSV rows given up for good since start (the bound was reached, or at shutdown)
        )

    # ---------------------------------------------------------------- what writers report
    def failed(self, file: str, path: Path | str, err: OSError, *, rows_held: int = 0) -> None:
        """A write of `file` failed. The first failure starts a fault (logged once); later ones only count."""
        with self._lock:
            old = self._faults.get(file)
            if old is None:
                fault = StorageFault(
                    file=file,
                    path=str(path),
                    errno=err.errno,
                    error=err.strerror or str(err),
                    since=self._wall(),
                    rows_held=rows_held,
                )
            else:
                fault = replace(
                    old,
                    path=str(path),
                    errno=err.errno,
                    error=err.strerror or str(err),
                    failures=old.failures + 1,
                    rows_held=rows_held,
                )
            self._faults[file] = fault
            left = len(self._faults)
        if old is None:
            logger.bind(event=StorageEventKind.FAILED.value).error(
                "STORAGE_FAILED: {} — entries stopped until it can be written", fault.describe(self.tz)
            )
            self._emit(StorageEvent(StorageEventKind.FAILED, fault, fault.since, left, self.tz))

    def written(self, file: str) -> None:
        """A write of `file` succeeded: its fault, if any, ends (logged once)."""
        if file not in self._faults:  # the common case, without the lock
            return
        with self._lock:
            fault = self._faults.pop(file, None)
            left = len(self._faults)
        if fault is None:
            return
        now = self._wall()
        lost = f"; {fault.rows_dropped} rows were dropped" if fault.rows_dropped else ""
        logger.bind(event=StorageEventKind.RECOVERED.value).warning(
            "STORAGE_RECOVERED: {} written again after {} failed attempts over {:.1f}s{}{}",
            fault.file,
            fault.failures,
            (now - fault.since).total_seconds(),
            lost,
            "; entries allowed again" if not left else f"; {left} other file(s) still failing",
        )
        self._emit(StorageEvent(StorageEventKind.RECOVERED, fault, now, left, self.tz))

    def dropped(self, file: str, rows: int) -> None:
        """`rows` of `file` were given up for good. Said once per fault (the first time); always counted."""
        if rows <= 0:
            return
        with self._lock:
            self.rows_dropped += rows
            fault = self._faults.get(file)
            first = fault is None or fault.rows_dropped == 0
            if fault is not None:
                self._faults[file] = replace(fault, rows_dropped=fault.rows_dropped + rows)
        if first:
            logger.error(
                "{}: dropping rows that cannot be written ({} so far; counted in the storage health, "
                "said once per fault)",
                file,
                rows,
            )

    # ---------------------------------------------------------------- what readers ask
    @property
    def ok(self) -> bool:
        return not self._faults

    def faults(self) -> tuple[StorageFault, ...]:
        with self._lock:
            return tuple(self._faults.values())

    def message(self) -> str | None:
        """The one line the banner shows, or None while every file writes."""
        faults = self.faults()
        if not faults:
            return None
        return "; ".join(f.describe(self.tz) for f in faults) + " — entries stopped"

    def subscribe(self, listener: Callable[[StorageEvent], None]) -> None:
        """Call `listener` on every STORAGE_FAILED / STORAGE_RECOVERED (from the reporting thread: keep it
        short and hand off)."""
        with self._lock:
            self._listeners.append(listener)

    def _emit(self, event: StorageEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("storage listener failed on {}", event.kind)
