"""DecisionRuns: a run of repeated no-action decisions is counted on the loop, and the decisions log still
reads one row per run with its count (the first decision's time, the latest one's figures)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.infra.decision_runs import DecisionRuns
from bot.infra.logging_structured import CsvLogWriter, DecisionLogger
from bot.types.dto import Action, ActionKind, DecisionMeta, Reason, Side

T0 = datetime(2026, 1, 5, 3, 0, 0, 123000, tzinfo=UTC)
DAY = "20260105"
MS = 1_000_000


class WallClock:
    """The wall clock the runs read: counts the reads, moves 100 ms per read."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return T0 + timedelta(milliseconds=100 * (self.reads - 1))


def meta(reason: Reason = Reason.NOT_STALLED, age: int = 10, acted: bool = False) -> DecisionMeta:
    actions = (
        (Action(ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.BUY, Decimal(13_600_000), Decimal("0.001"), 800),)
        if acted
        else ()
    )
    return DecisionMeta(
        ts=0, reason=reason, best_age_ms=age, spread_ticks=5, inventory_btc=Decimal(0), actions=actions
    )


@pytest.fixture
def log(tmp_path: Path) -> Iterator[DecisionLogger]:
    w = CsvLogWriter()
    w.start()
    lg = DecisionLogger(tmp_path, "s", writer=w)
    yield lg
    lg.close()
    w.stop()


def rows(lg: DecisionLogger) -> list[dict[str, str]]:
    lg.flush()
    with lg.path_for(DAY).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_repeated_no_action_reads_no_clock_and_the_log_still_counts_it(log: DecisionLogger) -> None:
    wall = WallClock()
    runs = DecisionRuns(log, wall, flush_ns=None)
    for i in range(1_000):
        runs.record(meta(age=10 + i), i * MS)
    assert wall.reads == 1  # only the run's first decision read the clock
    runs.flush()
    (row,) = rows(log)
    assert row["count"] == "1000" and row["best_age_ms"] == "1009"  # the latest figures
    assert row["ts"] == "2026-01-05T12:00:00.123+09:00"  # the first decision's time


def test_an_action_or_another_reason_ends_the_run(log: DecisionLogger) -> None:
    runs = DecisionRuns(log, WallClock(), flush_ns=None)
    seq = (
        [Reason.NOT_STALLED] * 3 + [Reason.STRIKE] + [Reason.NOT_STALLED] * 2 + [Reason.SPREAD_TOO_NARROW] * 4
    )
    for i, reason in enumerate(seq):
        runs.record(meta(reason, acted=reason is Reason.STRIKE), i * MS)
    runs.flush()
    got = [(r["reason"], r["count"]) for r in rows(log)]
    assert got == [("not_stalled", "3"), ("strike", "1"), ("not_stalled", "2"), ("spread_too_narrow", "4")]


def test_live_parts_of_a_long_run_merge_into_the_writers_one_row(log: DecisionLogger) -> None:
    """Live, a run hands the writer a part every second; the writer merges the parts into one row."""
    wall = WallClock()
    runs = DecisionRuns(log, wall, flush_ns=1_000 * MS)
    for i in range(50):  # 50 decisions 100 ms apart: 5 s, so 5 parts
        runs.record(meta(), i * 100 * MS)
    runs.flush()
    assert wall.reads == 5
    (row,) = rows(log)
    assert row["count"] == "50" and row["reason"] == "not_stalled"
