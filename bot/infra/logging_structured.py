"""Structured CSV logs per trading day (seed §7, SPEC §9): trades, orders, decisions.

    logs/trades/trades-YYYYMMDD.csv        TradeLogger.log(TradeLogRow)
    logs/orders/orders-YYYYMMDD.csv        OrderLogger.log(OrderLogRow)
    logs/decisions/decisions-YYYYMMDD.csv  DecisionLogger.log(DecisionLogRow)
    logs/audit/audit-YYYYMMDD.csv          AuditLogger.log(AuditLogRow)  (live config changes)

YYYYMMDD is the trading day of the row's `ts` in the logger's time zone (Asia/Tokyo by default); `ts` is
written ISO-8601 in that zone with milliseconds (`2026-01-05T09:00:00.123+09:00`). Decimals are written
exactly in fixed-point (`0.00000001`, never `1E-8`), None as an empty cell.

Threading: `log(row)` only checks the row's type and puts it on a queue (thread-safe, never blocks); one
writer thread, shared by all loggers of the process, formats the rows and writes each batch of whole lines to
a file with a single write call on an unbuffered file. `flush()`/`close()` (or `aflush()`/`aclose()` from
asyncio code) wait until everything logged before them is on disk.

Disk full / unwritable: a batch the disk refuses (ENOSPC, EACCES, EROFS, ENOTDIR …) is cut back to the whole
rows before it and *held* in memory (at most `MAX_HELD_ROWS` per kind; past that the newest are dropped,
counted and said once), tried again every `RETRY_S` and on every flush, and reported to the `StorageHealth`
(bot/infra/storage_health.py), whose fault ends with the next good write. The writer never stops for it.

Crash safety: every row is exactly one physical line (newlines inside cells become spaces), so a crash can at
worst leave a torn last line. When a file is opened again, a torn tail is *truncated* back to the last
newline: the file then holds only whole rows (the torn row was never written completely, so nothing complete
is lost), and the next row starts clean. A file whose header is not ours (another version's columns) is moved
aside to `<name>.csv.N` rather than mixed with rows of other columns.

Decisions: consecutive no-action rows with the same reason (and trading day) are merged into one row carrying
the first row's ts, the latest row's other values (best_age_ms, spread, inventory, detail) and the summed
count. The merged row is written when a different row arrives, on flush/close, or once it has been open
`collapse_max_s` seconds (so a long quiet period still shows up). Rows with actions are never merged.
"""

from __future__ import annotations

import asyncio
import atexit
import csv
import io
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar
from zoneinfo import ZoneInfo

from loguru import logger

from bot.infra.storage_health import StorageHealth
from bot.types.dto import AuditLogRow, DecisionLogRow, DecisionMeta, OrderLogRow, TradeLogRow

KINDS = ("trades", "orders", "decisions", "audit")
# a trades-CSV row that is no trade: a booked holding cost (no side or size; its PnL is the collateral change)
HOLDING_COST_TAG = "holding_cost"
CORRECTION_TAG = "correction"  # a position adopted from the venue: not a trade (no volume, no fill count)
TRADE_COLUMNS = (
    "ts",
    "order_id",
    "side",
    "price",
    "size",
    "fee",
    "strategy",
    "tag",
    "pnl_jpy",
    "pnl_cum_jpy",
    "inventory_after",
    "exec_id",
)
ORDER_COLUMNS = (
    "ts",
    "action",
    "order_id",
    "client_order_id",
    "side",
    "price",
    "size",
    "tif",
    "ttl_ms",
    "tag",
    "reason",
    "status",
    "latency_ms",
)
DECISION_COLUMNS = (
    "ts",
    "best_age_ms",
    "spread_ticks",
    "inventory_btc",
    "decision_type",
    "entry_bid_px",
    "entry_ask_px",
    "actions",
    "reason",
    "count",
    "detail",
)
AUDIT_COLUMNS = ("ts", "who", "action", "field", "old", "new")
NO_ACTION = "no_action"
_DAY_FILE = re.compile(r"^(" + "|".join(KINDS) + r")-(\d{8})\.csv$")
_DAY = re.compile(r"^\d{8}$")
_TAIL_CHUNK = 64 * 1024
MAX_HELD_ROWS = 50_000  # rows a logger keeps in memory per kind while the disk refuses them
RETRY_S = 1.0  # held rows are tried again this often (and on every flush)

RowT = TypeVar("RowT", TradeLogRow, OrderLogRow, DecisionLogRow, AuditLogRow)


# ---- paths -----------------------------------------------------------------------------------------------
def csv_path(log_dir: Path, kind: str, day: str) -> Path:
    """The file of one kind and trading day. Refuses anything but a known kind and 8 digits (the server passes
    URL parts here: no path traversal)."""
    if kind not in KINDS:
        raise ValueError(f"unknown log kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not _DAY.match(day):
        raise ValueError(f"day must be YYYYMMDD, got {day!r}")
    return Path(log_dir) / kind / f"{kind}-{day}.csv"


def list_days(log_dir: Path) -> dict[str, list[str]]:
    """For each kind, the trading days (YYYYMMDD, ascending) that have a CSV file under `log_dir`."""
    out: dict[str, list[str]] = {}
    for kind in KINDS:
        days = []
        folder = Path(log_dir) / kind
        if folder.is_dir():
            for p in folder.iterdir():
                m = _DAY_FILE.match(p.name)
                if m and m.group(1) == kind and p.is_file() and not p.is_symlink():  # we never write links
                    days.append(m.group(2))
        out[kind] = sorted(days)
    return out


# ---- cells -----------------------------------------------------------------------------------------------
def format_cell(value: Any) -> str:
    """One CSV cell: exact fixed-point Decimals, enums by value, None empty, one physical line per row."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if "\n" in text or "\r" in text:
        text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text


def format_actions(meta: DecisionMeta) -> str:
    """The decisions log's `actions` cell: `place_limit BUY 0.001@13599999 ttl=800 tag=stall;
    cancel_all_stall`."""
    parts = []
    for a in meta.actions:
        text = str(a.kind.value)
        if a.side is not None:
            text += f" {a.side.value}"
        if a.size is not None or a.price is not None:
            size = "" if a.size is None else format(a.size, "f")
            price = "MKT" if a.price is None else format(a.price, "f")
            text += f" {size}@{price}"
        if a.ttl_ms is not None:
            text += f" ttl={a.ttl_ms}"
        text += f" tag={a.tag}"
        parts.append(text)
    return "; ".join(parts)


def decision_row(meta: DecisionMeta, ts: datetime) -> DecisionLogRow:
    """The decisions-log row of one DecisionMeta; `ts` is the wall-clock time of the decision (tz-aware)."""
    return DecisionLogRow(
        ts=ts,
        best_age_ms=meta.best_age_ms,
        spread_ticks=meta.spread_ticks,
        inventory_btc=meta.inventory_btc,
        decision_type=meta.decision_type,
        entry_bid_px=meta.entry_bid_px,
        entry_ask_px=meta.entry_ask_px,
        actions=format_actions(meta),
        reason=str(meta.reason.value),
        detail=meta.detail,
    )


# ---- one CSV file family (used only on the writer thread) -----------------------------------------------
class _Sink:
    def __init__(
        self,
        log_dir: Path,
        kind: str,
        columns: tuple[str, ...],
        tz: ZoneInfo,
        defaults: dict[str, str] | None = None,
        *,
        health: StorageHealth | None = None,
        max_held: int = MAX_HELD_ROWS,
        retry_s: float = RETRY_S,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.kind = kind
        self.columns = columns
        self.tz = tz
        self.defaults = defaults or {}  # value for an empty cell (e.g. the strategy name)
        self.header = (",".join(columns) + "\n").encode()
        self._files: dict[str, io.FileIO] = {}
        self.health = health if health is not None else StorageHealth()
        self.label = f"{kind} log"  # its name in the storage health
        self.max_held = max_held
        self.retry_s = retry_s
        self._held: deque[tuple[str, str]] = deque()  # (day, line) the disk refused, oldest first
        self._retry_at: float | None = None

    # collapsing hooks (plain sinks write every row at once)
    def accept(self, row: Any, now: float) -> list[Any]:
        return [row]

    def take_pending(self) -> list[Any]:
        return []

    def due_at(self) -> float | None:
        return None

    def day_of(self, ts: datetime) -> str:
        if ts.tzinfo is None:  # rows carry tz-aware UTC; a naive one is read as UTC rather than local time
            ts = ts.replace(tzinfo=UTC)
        return ts.astimezone(self.tz).strftime("%Y%m%d")

    def cells(self, row: Any) -> list[str]:
        out = []
        for col in self.columns:
            value = getattr(row, col)
            if col == "ts":
                ts = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
                out.append(ts.astimezone(self.tz).isoformat(timespec="milliseconds"))
                continue
            text = format_cell(value)
            out.append(text or self.defaults.get(col, ""))
        return out

    @property
    def rows_held(self) -> int:
        return len(self._held)

    def retry_due(self) -> float | None:
        """When held rows are tried again (writer clock), or None if none are held."""
        return self._retry_at if self._held else None

    def write_rows(self, rows: list[Any], now: float, *, force: bool = False) -> int:
        """Write the held rows, then `rows` (grouped per day, one write call per file). A row the disk refuses
        is held (bounded by `max_held`) and tried again from `now + retry_s`, or at once with `force` (a
        flush). Returns how many rows were dropped: unformattable, or past the bound."""
        dropped = 0
        lines: list[tuple[str, str]] = []
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        for row in rows:
            try:
                day = self.day_of(row.ts)
                out.writerow(self.cells(row))
                lines.append((day, buf.getvalue()))
            except Exception:  # a row that cannot be formatted must not take the others down
                logger.exception("{} log: dropped a row that could not be formatted: {!r}", self.kind, row)
                dropped += 1
            buf.seek(0)
            buf.truncate()
        if self._held:
            dropped += self._hold(lines)
            if not force and self._retry_at is not None and now < self._retry_at:
                return dropped  # the disk refused a moment ago: not again on every batch
            lines = list(self._held)
            self._held.clear()
        return dropped + self._write_lines(lines, now)

    def _write_lines(self, lines: list[tuple[str, str]], now: float) -> int:
        by_day: dict[str, list[str]] = {}
        for day, line in lines:
            by_day.setdefault(day, []).append(line)
        days = list(by_day)
        for i, day in enumerate(days):
            try:
                _append_whole(self._file(day), "".join(by_day[day]).encode("utf-8"))
            except OSError as e:
                self._close_file(day)  # the next attempt opens it again (and repairs a torn tail)
                dropped = self._hold([(d, line) for d in days[i:] for line in by_day[d]])
                self._retry_at = now + self.retry_s
                self.health.failed(
                    self.label, csv_path(self.log_dir, self.kind, day), e, rows_held=len(self._held)
                )
                return dropped
        self._retry_at = None
        self.health.written(self.label)
        return 0

    def _hold(self, lines: list[tuple[str, str]]) -> int:
        """Keep lines for the next attempt, oldest first, up to `max_held`; the newest past it are dropped
        (counted, and said once per fault by the storage health)."""
        room = max(0, self.max_held - len(self._held))
        self._held.extend(lines[:room])
        over = len(lines) - room
        if over > 0:
            self.health.dropped(self.label, over)
            return over
        return 0

    def give_up_held(self) -> int:
        """At close: rows still refused are lost; count and say so."""
        n = len(self._held)
        if n:
            self._held.clear()
            logger.error("{} log: {} rows could not be written before close and are lost", self.kind, n)
            self.health.dropped(self.label, n)
        return n

    def _file(self, day: str) -> io.FileIO:
        f = self._files.get(day)
        if f is not None:
            return f
        for other in list(self._files):  # rows of an older day arrive rarely: keep only the newest open
            if other < day:
                self._close_file(other)
        path = csv_path(self.log_dir, self.kind, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        f = _open_repaired(path, self.header)
        self._files[day] = f
        return f

    def _close_file(self, day: str) -> None:
        f = self._files.pop(day, None)
        if f is not None:
            try:
                os.fsync(f.fileno())
            except OSError:
                pass
            f.close()

    def close_files(self) -> None:
        for day in list(self._files):
            self._close_file(day)


class _DecisionSink(_Sink):
    def __init__(
        self, log_dir: Path, tz: ZoneInfo, collapse_max_s: float, health: StorageHealth | None = None
    ) -> None:
        super().__init__(log_dir, "decisions", DECISION_COLUMNS, tz, health=health)
        self.collapse_max_s = collapse_max_s
        self._pending: DecisionLogRow | None = None
        self._pending_day = ""
        self._pending_since = 0.0

    def accept(self, row: DecisionLogRow, now: float) -> list[Any]:
        out: list[Any] = []
        day = self.day_of(row.ts)
        p = self._pending
        if p is not None:
            same = row.decision_type == NO_ACTION and row.reason == p.reason and day == self._pending_day
            if same and now - self._pending_since < self.collapse_max_s:
                self._pending = replace(row, ts=p.ts, count=p.count + row.count)
                return out
            out.append(p)
            self._pending = None
        if row.decision_type == NO_ACTION:
            self._pending, self._pending_day, self._pending_since = row, day, now
        else:
            out.append(row)
        return out

    def take_pending(self) -> list[Any]:
        p, self._pending = self._pending, None
        return [] if p is None else [p]

    def due_at(self) -> float | None:
        return None if self._pending is None else self._pending_since + self.collapse_max_s


def _append_whole(f: io.FileIO, data: bytes) -> None:
    """Append whole lines or nothing: a write the disk cuts short is truncated back, so the retry cannot
    repeat the rows that did fit."""
    start = os.fstat(f.fileno()).st_size
    try:
        _write_all(f, data)
    except OSError:
        try:
            os.ftruncate(f.fileno(), start)
        except OSError:  # the reopen still cuts a torn line; whole rows before it may then appear twice
            pass
        raise


def _write_all(f: io.FileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError("write returned 0 bytes")
        view = view[n:]


def _open_repaired(path: Path, header: bytes) -> io.FileIO:
    """Open for appending; truncate a torn last line; move a foreign-header file aside; header if empty."""
    f = io.FileIO(path, "a+")
    try:
        size = f.seek(0, os.SEEK_END)
        if size:
            keep = _whole_lines_length(f, size)
            if keep != size:
                logger.warning(
                    "{}: truncated a torn last line ({} bytes) left by a crash", path.name, size - keep
                )
                f.truncate(keep)
                size = keep
        if size:
            f.seek(0)
            if f.read(len(header)) != header:
                f.close()
                aside = _free_aside_name(path)
                path.rename(aside)
                logger.warning(
                    "{}: columns differ from this version's; moved aside to {}", path.name, aside.name
                )
                f = io.FileIO(path, "a+")
                size = 0
        if not size:
            _write_all(f, header)
        return f
    except BaseException:
        f.close()
        raise


def _whole_lines_length(f: io.FileIO, size: int) -> int:
    """Length of the file up to and including its last newline (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        f.seek(start)
        chunk = f.read(end - start)
        if end == size and chunk.endswith(b"\n"):
            return size
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def _free_aside_name(path: Path) -> Path:
    n = 1
    while (aside := path.with_name(f"{path.name}.{n}")).exists():
        n += 1
    return aside


# ---- the writer thread -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Row:
    sink: _Sink
    row: Any


@dataclass(frozen=True, slots=True)
class _Drain:
    sinks: tuple[_Sink, ...] | None  # None: every sink
    done: Callable[[], None]
    close: bool = False


class CsvLogWriter:
    """One background thread that writes the rows of any number of loggers.

    `io_lock` is held while files are opened and written; holding it pauses the writer (a reader that wants a
    quiet moment can take it; `log()` never does)."""

    def __init__(
        self,
        *,
        max_pending: int = 200_000,
        batch_max: int = 5_000,
        clock: Callable[[], float] = time.monotonic,
        linger_s: float = 0.1,
    ) -> None:
        self.io_lock = threading.Lock()
        # rows refused (queue full, unformattable) or given up (held past the bound, or at close)
        self.dropped_rows = 0
        self._q: queue.SimpleQueue[_Row | _Drain | None] = queue.SimpleQueue()
        self._max_pending = max_pending
        self._batch_max = batch_max
        self._clock = clock
        # After each batch the writer sleeps this long instead of waiting on the queue, so rows logged
        # meanwhile are plain appends: a put that wakes a waiting thread costs the event loop tens of µs and a
        # GIL hand-off.
        self._linger_s = linger_s
        self._active: set[_Sink] = set()  # writer thread only
        self._written = threading.Condition()
        self._batches = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._start_lock:
            if not self.running:
                self._thread = threading.Thread(target=self._run, name="csv-log-writer", daemon=True)
                self._thread.start()

    def submit(self, sink: _Sink, row: Any) -> bool:
        """Queue one row; never blocks. False if it was dropped because the writer is far behind."""
        if self._q.qsize() >= self._max_pending:
            self.dropped_rows += 1
            if self.dropped_rows % 1000 == 1:
                logger.error(
                    "{} log: writer {} rows behind, dropped {} rows so far",
                    sink.kind,
                    self._max_pending,
                    self.dropped_rows,
                )
            return False
        self._q.put(_Row(sink, row))
        return True

    def drain(
        self, sinks: Iterable[_Sink] | None = None, *, close: bool = False, timeout: float = 10.0
    ) -> bool:
        """Block until every row queued before this call (and any merged row pending) is written.
        True when done, False on timeout or if the writer is not running."""
        if not self.running:
            return False
        done = threading.Event()
        self._q.put(_Drain(None if sinks is None else tuple(sinks), done.set, close))
        return done.wait(timeout)

    async def adrain(self, sinks: Iterable[_Sink] | None = None, *, close: bool = False) -> bool:
        """`drain` for asyncio code: waits without blocking the event loop (bound it with asyncio.timeout)."""
        if not self.running:
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            try:
                loop.call_soon_threadsafe(_settle, fut)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        self._q.put(_Drain(None if sinks is None else tuple(sinks), done, close))
        await fut
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Write everything, close every file, end the thread."""
        if not self.running:
            return True
        ok = self.drain(close=True, timeout=timeout)
        self._q.put(None)
        assert self._thread is not None
        self._thread.join(timeout)
        return ok and not self._thread.is_alive()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` holds, re-checking it after every batch the writer writes."""
        with self._written:
            return self._written.wait_for(predicate, timeout)

    # -- writer thread --
    def _run(self) -> None:
        while True:
            try:
                item = self._next(self._seconds_to_due())
                items: list[Any] = [] if item is _TIMEOUT else [item]
                while len(items) < self._batch_max:
                    try:
                        items.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                if not self._process(items):
                    return
                if self._linger_s > 0 and not any(isinstance(it, _Drain) for it in items):
                    time.sleep(self._linger_s)
            except Exception:  # never let the writer die: the loggers would silently stop
                logger.exception("CSV log writer failed a batch; continuing")

    def _next(self, timeout: float | None) -> object:
        try:
            if timeout is None:
                return self._q.get()
            return self._q.get(timeout=max(timeout, 0.0)) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return _TIMEOUT

    def _seconds_to_due(self) -> float | None:
        dues = [d for s in self._active for d in (s.due_at(), s.retry_due()) if d is not None]
        return None if not dues else min(dues) - self._clock()

    def _process(self, items: list[Any]) -> bool:
        drains = [it for it in items if isinstance(it, _Drain)]
        try:
            return self._write_batch(items)
        finally:  # a waiter is released even if the batch failed (it then finds its rows missing, not a hang)
            for d in drains:
                d.done()
            with self._written:
                self._batches += 1
                self._written.notify_all()

    def _write_batch(self, items: list[Any]) -> bool:
        out: dict[_Sink, list[Any]] = {}
        forced: set[_Sink] = set()  # a flush tries rows the disk refused again at once
        drains: list[_Drain] = []
        keep_running = True
        now = self._clock()
        for it in items:
            if it is None:
                keep_running = False
            elif isinstance(it, _Row):
                self._active.add(it.sink)
                rows = it.sink.accept(it.row, now)
                if rows:
                    out.setdefault(it.sink, []).extend(rows)
            else:
                for s in self._active if it.sinks is None else it.sinks:
                    pending = s.take_pending()
                    out.setdefault(s, []).extend(pending)
                    forced.add(s)
                drains.append(it)
        for s in self._active:
            due = s.due_at()
            if due is not None and due <= now:
                out.setdefault(s, []).extend(s.take_pending())
            retry = s.retry_due()
            if retry is not None and retry <= now:
                out.setdefault(s, [])
        with self.io_lock:
            for s, rows in out.items():
                if rows or s.rows_held:
                    self.dropped_rows += s.write_rows(rows, now, force=s in forced)
            for d in drains:
                if d.close:
                    for s in list(self._active) if d.sinks is None else d.sinks:
                        self.dropped_rows += s.give_up_held()
                        s.close_files()
                        self._active.discard(s)
            if not keep_running:
                for s in self._active:
                    self.dropped_rows += s.give_up_held()
                    s.close_files()
        return keep_running


_TIMEOUT = object()
_shared: CsvLogWriter | None = None
_shared_lock = threading.Lock()


def shared_writer() -> CsvLogWriter:
    """The process-wide writer (started on first use; drained and stopped at interpreter exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = CsvLogWriter()
            atexit.register(_shared.stop)
        _shared.start()
        return _shared


# ---- the loggers -----------------------------------------------------------------------------------------
class _CsvLogger(Generic[RowT]):
    row_type: ClassVar[type]

    def __init__(self, sink: _Sink, writer: CsvLogWriter | None) -> None:
        self._sink = sink
        self._writer = writer if writer is not None else shared_writer()
        self._writer.start()
        self._closed = False

    @property
    def writer(self) -> CsvLogWriter:
        return self._writer

    @property
    def columns(self) -> tuple[str, ...]:
        return self._sink.columns

    @property
    def rows_held(self) -> int:
        """Rows the disk refused, kept for the next attempt."""
        return self._sink.rows_held

    def path_for(self, day: str) -> Path:
        return csv_path(self._sink.log_dir, self._sink.kind, day)

    def log(self, row: RowT) -> None:
        """Queue one row for writing. Cheap and non-blocking; safe from any thread and from the event loop."""
        if self._closed:
            raise RuntimeError(f"{self._sink.kind} logger is closed")
        if not isinstance(row, self.row_type):
            raise TypeError(
                f"{type(self).__name__}.log takes a {self.row_type.__name__}, not {type(row).__name__}"
            )
        self._writer.submit(self._sink, row)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row logged so far is in the file (a merged decision row included) — or held for
        a retry, if the disk refuses it (see `rows_held`)."""
        return self._writer.drain((self._sink,), timeout=timeout)

    async def aflush(self) -> bool:
        return await self._writer.adrain((self._sink,))

    def close(self, timeout: float = 10.0) -> bool:
        """Write everything logged so far and close the files; later `log()` calls raise."""
        if self._closed:
            return True
        self._closed = True
        return self._writer.drain((self._sink,), close=True, timeout=timeout)

    async def aclose(self) -> bool:
        if self._closed:
            return True
        self._closed = True
        return await self._writer.adrain((self._sink,), close=True)

    def __enter__(self) -> _CsvLogger[RowT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TradeLogger(_CsvLogger[TradeLogRow]):
    """One row per fill: `logs/trades/trades-YYYYMMDD.csv`. An empty `strategy` cell gets `strategy_name`."""

    row_type = TradeLogRow

    def __init__(
        self,
        log_dir: Path,
        strategy_name: str,
        tz: str = "Asia/Tokyo",
        *,
        writer: CsvLogWriter | None = None,
        health: StorageHealth | None = None,
    ) -> None:
        self.strategy_name = strategy_name
        sink = _Sink(
            log_dir, "trades", TRADE_COLUMNS, ZoneInfo(tz), {"strategy": strategy_name}, health=health
        )
        super().__init__(sink, writer)

    log_trade = _CsvLogger.log  # the seed's name


class OrderLogger(_CsvLogger[OrderLogRow]):
    """One row per order event (place / cancel / expire / reject …): `logs/orders/orders-YYYYMMDD.csv`."""

    row_type = OrderLogRow

    def __init__(
        self,
        log_dir: Path,
        tz: str = "Asia/Tokyo",
        *,
        writer: CsvLogWriter | None = None,
        health: StorageHealth | None = None,
    ) -> None:
        super().__init__(_Sink(log_dir, "orders", ORDER_COLUMNS, ZoneInfo(tz), health=health), writer)

    log_order = _CsvLogger.log


class DecisionLogger(_CsvLogger[DecisionLogRow]):
    """One row per decision, repeated no-action decisions merged: `logs/decisions/decisions-YYYYMMDD.csv`.
    `collapse_max_s`: a merged row is written at least this often while the same no-action reason repeats."""

    row_type = DecisionLogRow

    def __init__(
        self,
        log_dir: Path,
        strategy_name: str,
        tz: str = "Asia/Tokyo",
        *,
        collapse_max_s: float = 10.0,
        writer: CsvLogWriter | None = None,
        health: StorageHealth | None = None,
    ) -> None:
        if collapse_max_s <= 0:
            raise ValueError("collapse_max_s must be > 0")
        self.strategy_name = strategy_name
        super().__init__(_DecisionSink(log_dir, ZoneInfo(tz), collapse_max_s, health), writer)

    log_decision = _CsvLogger.log


class AuditLogger(_CsvLogger[AuditLogRow]):
    """One row per live config field changed (who, when, old, new): `logs/audit/audit-YYYYMMDD.csv`."""

    row_type = AuditLogRow

    def __init__(
        self,
        log_dir: Path,
        tz: str = "Asia/Tokyo",
        *,
        writer: CsvLogWriter | None = None,
        health: StorageHealth | None = None,
    ) -> None:
        super().__init__(_Sink(log_dir, "audit", AUDIT_COLUMNS, ZoneInfo(tz), health=health), writer)


def _settle(fut: asyncio.Future[None]) -> None:
    """Resolve a flush waiter from the writer thread's callback (it may have been cancelled meanwhile)."""
    if not fut.done():
        fut.set_result(None)
