"""Storage health and the writers that report into it, without a venue: a fault starts at the first refused
write and ends at the next good one (one log line each); the CSV sink holds what the disk refuses, bounded,
and writes it in order when the disk takes it again; the state file reports instead of raising and writes the
latest refused state (a kill latch) first.

The disk is made to refuse writes with a symlink to /dev/full, where every write fails in the kernel with
ENOSPC exactly as on a full disk (tests run as root: a read-only chmod would not stop anything)."""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from loguru import logger

from bot.infra.logging_structured import ORDER_COLUMNS, OrderLogger, _Sink, csv_path
from bot.infra.state_file import StateFile
from bot.infra.storage_health import STATE_FILE, StorageEventKind, StorageHealth
from bot.types.dto import OrderLogRow, Side

FULL = OSError(errno.ENOSPC, "No space left on device")
T0 = datetime(2026, 12, 6, 12, 3, 4, tzinfo=UTC)  # 21:03:04 JST


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)


def refuse_writes(path: Path) -> None:
    """Writes to `path` now fail with ENOSPC (a full disk), until the link is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/full")


def order_row(n: int) -> OrderLogRow:
    return OrderLogRow(
        ts=T0 + timedelta(milliseconds=n),
        action="place",
        order_id=f"JRF-{n}",
        client_order_id=f"c{n}",
        side=Side.BUY,
        price=Decimal(13_000_000 + n),
        size=Decimal("0.001"),
        tif="GTC",
        ttl_ms=800,
        tag="stall",
        reason="strike",
    )


# ---- the fault's life ----------
def test_a_refused_write_starts_one_fault_said_once_and_the_next_good_write_ends_it(log_lines):
    clock = [T0]
    health = StorageHealth(tz=ZoneInfo("Asia/Tokyo"), wall=lambda: clock[0])
    events = []
    health.subscribe(events.append)
    health.written(STATE_FILE)  # nothing to end
    assert health.ok and health.message() is None
    health.failed(STATE_FILE, "logs/state.json", FULL)
    clock[0] = T0 + timedelta(seconds=6)
    health.failed(STATE_FILE, "logs/state.json", FULL)  # a retry: counted, not said again
    health.failed(STATE_FILE, "logs/state.json", FULL)
    assert not health.ok
    (fault,) = health.faults()
    assert fault.failures == 3 and fault.since == T0 and fault.errno == errno.ENOSPC
    assert health.message() == (
        "state file not saved: No space left on device (logs/state.json) since 21:03:04 JST — entries stopped"
    )
    health.written(STATE_FILE)
    assert health.ok and health.message() is None
    started = [ln for ln in log_lines if "STORAGE_FAILED" in ln]
    ended = [ln for ln in log_lines if "STORAGE_RECOVERED" in ln]
    assert len(started) == 1 and "No space left on device (logs/state.json) since 21:03:04 JST" in started[0]
    assert len(ended) == 1 and "after 3 failed attempts over 6.0s" in ended[0]
    assert "entries allowed again" in ended[0]
    assert [(e.kind, e.still_failing) for e in events] == [
        (StorageEventKind.FAILED, 1),
        (StorageEventKind.RECOVERED, 0),
    ]


def test_one_file_recovering_does_not_clear_another_files_fault(log_lines):
    health = StorageHealth(wall=lambda: T0)
    health.failed(STATE_FILE, "logs/state.json", FULL)
    health.failed(
        "orders log", "logs/orders/orders-20261206.csv", OSError(errno.EROFS, "Read-only file system")
    )
    health.written(STATE_FILE)
    assert not health.ok
    assert [f.file for f in health.faults()] == ["orders log"]
    assert "1 other file(s) still failing" in next(ln for ln in log_lines if "STORAGE_RECOVERED" in ln)


# ---- the CSV sink's bounded retry queue ----------
def test_rows_the_disk_refuses_are_held_and_written_in_order_when_it_takes_them_again(tmp_path):
    health = StorageHealth(wall=lambda: T0)
    sink = _Sink(tmp_path, "orders", ORDER_COLUMNS, ZoneInfo("Asia/Tokyo"), health=health, retry_s=1.0)
    path = csv_path(tmp_path, "orders", "20261206")
    refuse_writes(path)
    assert sink.write_rows([order_row(1), order_row(2)], now=10.0) == 0
    assert sink.rows_held == 2 and sink.retry_due() == 11.0
    assert health.faults()[0].file == "orders log" and health.faults()[0].rows_held == 2
    path.unlink()  # space returns
    assert sink.write_rows([order_row(3)], now=10.5) == 0  # not due yet: held behind the others
    assert sink.rows_held == 3 and not path.exists()
    assert sink.write_rows([order_row(4)], now=11.0) == 0
    sink.close_files()
    assert sink.rows_held == 0 and health.ok
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(ORDER_COLUMNS)
    assert [ln.split(",")[2] for ln in lines[1:]] == ["JRF-1", "JRF-2", "JRF-3", "JRF-4"]


def test_rows_past_the_bound_are_dropped_counted_and_said_once(tmp_path, log_lines):
    health = StorageHealth(wall=lambda: T0)
    sink = _Sink(tmp_path, "orders", ORDER_COLUMNS, ZoneInfo("Asia/Tokyo"), health=health, max_held=3)
    path = csv_path(tmp_path, "orders", "20261206")
    refuse_writes(path)
    assert sink.write_rows([order_row(1), order_row(2)], now=0.0) == 0
    assert sink.write_rows([order_row(3), order_row(4)], now=0.1) == 1
    assert sink.write_rows([order_row(5)], now=0.2) == 1
    assert sink.rows_held == 3 and health.rows_dropped == 2
    assert health.faults()[0].rows_dropped == 2
    assert len([ln for ln in log_lines if "dropping rows" in ln]) == 1
    path.unlink()
    assert sink.write_rows([], now=5.0, force=True) == 0
    sink.close_files()
    assert [ln.split(",")[2] for ln in path.read_text().splitlines()[1:]] == ["JRF-1", "JRF-2", "JRF-3"]
    assert "2 rows were dropped" in next(ln for ln in log_lines if "STORAGE_RECOVERED" in ln)


def test_the_writer_thread_keeps_going_through_a_full_disk_and_a_flush_retries_at_once(tmp_path):
    health = StorageHealth()
    log = OrderLogger(tmp_path, health=health)
    day = T0.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y%m%d")
    path = log.path_for(day)
    refuse_writes(path)
    log.log(order_row(1))
    assert log.flush()
    assert log.rows_held == 1 and not health.ok and health.faults()[0].errno == errno.ENOSPC
    log.log(order_row(2))
    assert log.flush() and log.rows_held == 2
    path.unlink()
    assert log.flush()
    assert log.rows_held == 0 and health.ok
    log.close()
    assert [ln.split(",")[2] for ln in path.read_text().splitlines()[1:]] == ["JRF-1", "JRF-2"]


def test_a_log_folder_that_cannot_be_made_is_reported_not_raised(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log folder should be")
    health = StorageHealth()
    log = OrderLogger(blocker, health=health)
    log.log(order_row(1))
    assert log.flush()
    (fault,) = health.faults()
    assert fault.errno == errno.ENOTDIR and log.rows_held == 1
    log.close()  # gives up the held row: counted, nothing raised
    assert health.rows_dropped == 1


# ---- the state file ----------
async def test_a_refused_state_save_is_reported_and_the_refused_latch_is_what_gets_written_next(tmp_path):
    health = StorageHealth()
    sf = StateFile(tmp_path / "state.json", health)
    assert sf.save_sync({"state": "RUNNING"})
    older = sf.save({"state": "RUNNING", "n": 2})  # taken before the kill, runs after it
    refuse_writes(tmp_path / "state.tmp")
    assert sf.save_sync({"state": "KILLED"}) is False  # no exception: the caller keeps it in memory
    assert sf.load() == {"state": "RUNNING"}
    assert [f.file for f in health.faults()] == [STATE_FILE]
    (tmp_path / "state.tmp").unlink()
    assert await older  # the older save, once the disk takes writes, writes the refused latch instead
    assert sf.load() == {"state": "KILLED"} and health.ok


_CUT_SHORT = r"""
import resource, signal, sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.infra.logging_structured import ORDER_COLUMNS, _Sink
from bot.infra.storage_health import StorageHealth
from bot.types.dto import OrderLogRow, Side

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
T0 = datetime(2026, 12, 6, 12, 3, 4, tzinfo=UTC)
rows = [
    OrderLogRow(T0 + timedelta(milliseconds=n), "place", f"JRF-{n}", f"c{n}", Side.BUY,
                Decimal(13_000_000 + n), Decimal("0.001"), "GTC", 800, "stall", "strike")
    for n in range(40)
]
health = StorageHealth()
sink = _Sink(Path(sys.argv[1]), "orders", ORDER_COLUMNS, ZoneInfo("Asia/Tokyo"), health=health)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1500, hard))  # room for the header and a few rows, not 40
sink.write_rows(rows[:20], now=0.0)
print(sink.rows_held, [f.errno for f in health.faults()])
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space returns
sink.write_rows(rows[20:], now=0.5, force=True)
sink.close_files()
print(sink.rows_held, health.ok)
"""


def test_a_write_the_disk_cuts_short_is_cut_back_to_whole_rows_and_never_repeated(tmp_path):
    """The file size limit makes the kernel accept part of a batch and refuse the rest (EFBIG), as a disk
    filling up mid-write does; run in a child process so the limit binds nothing else."""
    out = subprocess.run(
        [sys.executable, "-c", _CUT_SHORT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
    ).stdout.splitlines()
    assert out == [f"20 [{errno.EFBIG}]", "0 True"]
    (path,) = (tmp_path / "orders").glob("orders-*.csv")
    ids = [ln.split(",")[2] for ln in path.read_text().splitlines()[1:]]
    assert ids == [f"JRF-{n}" for n in range(40)]  # all, in order, none twice, no torn line
