"""The runtime log and the trades / orders / decisions CSVs as a trader reading them would notice."""

from __future__ import annotations

import asyncio
import csv
import logging
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from loguru import logger

from bot.infra.logging_runtime import (
    clear_secrets,
    redact,
    register_secret,
    setup_runtime_logging,
    shutdown_runtime_logging,
)
from bot.infra.logging_structured import (
    CsvLogWriter,
    DecisionLogger,
    OrderLogger,
    TradeLogger,
    csv_path,
    decision_row,
    list_days,
)
from bot.types.dto import (
    Action,
    ActionKind,
    DecisionLogRow,
    DecisionMeta,
    OrderLogRow,
    Reason,
    Side,
    TradeLogRow,
)

SEED_TRADE = [
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
]
SEED_ORDER = [
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
]
SEED_DECISION = [
    "ts",
    "best_age_ms",
    "spread_ticks",
    "inventory_btc",
    "decision_type",
    "entry_bid_px",
    "entry_ask_px",
    "actions",
    "reason",
]

# 2026-01-05 12:00 JST
T0 = datetime(2026, 1, 5, 3, 0, 0, 123000, tzinfo=UTC)
DAY = "20260105"


def trade(ts: datetime = T0, order_id: str = "JRF20260105-1", **kw: object) -> TradeLogRow:
    base: dict[str, object] = dict(
        ts=ts,
        order_id=order_id,
        side=Side.BUY,
        price=Decimal("13600000"),
        size=Decimal("0.001"),
        fee=Decimal("0"),
        strategy="",
        tag="stall",
        pnl_jpy=Decimal("0"),
        pnl_cum_jpy=Decimal("-12.5"),
        inventory_after=Decimal("0.001"),
        exec_id="E1",
    )
    base.update(kw)
    return TradeLogRow(**base)  # type: ignore[arg-type]


def order(ts: datetime = T0, **kw: object) -> OrderLogRow:
    base: dict[str, object] = dict(
        ts=ts,
        action="place",
        order_id="JRF1",
        client_order_id="c1",
        side=Side.SELL,
        price=Decimal("13600001"),
        size=Decimal("0.001"),
        tif="GTC",
        ttl_ms=800,
        tag="stall",
        reason="strike",
        status="ok",
        latency_ms=12.5,
    )
    base.update(kw)
    return OrderLogRow(**base)  # type: ignore[arg-type]


def decision(
    ts: datetime = T0,
    reason: str = "not_stalled",
    decision_type: str = "no_action",
    best_age_ms: int = 10,
    **kw: object,
) -> DecisionLogRow:
    base: dict[str, object] = dict(
        ts=ts,
        best_age_ms=best_age_ms,
        spread_ticks=3,
        inventory_btc=Decimal("0"),
        decision_type=decision_type,
        entry_bid_px=None,
        entry_ask_px=None,
        actions="",
        reason=reason,
    )
    base.update(kw)
    return DecisionLogRow(**base)  # type: ignore[arg-type]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture
def writer() -> object:
    w = CsvLogWriter()
    w.start()
    yield w
    w.stop()


# ---- headers, appending, repair --------------------------------------------------------------------------
def test_headers_follow_the_seed_column_order(tmp_path: Path, writer: CsvLogWriter) -> None:
    t = TradeLogger(tmp_path, "stall_then_strike", writer=writer)
    o = OrderLogger(tmp_path, writer=writer)
    d = DecisionLogger(tmp_path, "stall_then_strike", writer=writer)
    t.log(trade())
    o.log(order())
    d.log(decision(decision_type="action", reason="strike"))
    for lg in (t, o, d):
        assert lg.close()

    trades = read_csv(tmp_path / "trades" / f"trades-{DAY}.csv")
    orders = read_csv(tmp_path / "orders" / f"orders-{DAY}.csv")
    decisions = read_csv(tmp_path / "decisions" / f"decisions-{DAY}.csv")
    assert trades[0][: len(SEED_TRADE)] == SEED_TRADE and trades[0][len(SEED_TRADE) :] == ["exec_id"]
    assert orders[0][: len(SEED_ORDER)] == SEED_ORDER and orders[0][len(SEED_ORDER) :] == [
        "status",
        "latency_ms",
    ]
    assert decisions[0][: len(SEED_DECISION)] == SEED_DECISION
    assert decisions[0][len(SEED_DECISION) :] == ["count", "detail"]
    # the empty strategy cell is the logger's strategy name
    row = dict(zip(trades[0], trades[1], strict=True))
    assert row["strategy"] == "stall_then_strike"
    assert row["ts"] == "2026-01-05T12:00:00.123+09:00"


def test_values_are_exact_and_none_is_empty(tmp_path: Path, writer: CsvLogWriter) -> None:
    t = TradeLogger(tmp_path, "s", writer=writer)
    o = OrderLogger(tmp_path, writer=writer)
    t.log(
        trade(
            size=Decimal("1E-8"),
            price=Decimal("1.36E+7"),
            pnl_cum_jpy=Decimal("-0.10"),
            inventory_after=Decimal("0.00100000"),
        )
    )
    o.log(order(side=None, price=None, size=None, ttl_ms=None, latency_ms=None, action="cancel_all"))
    t.close()
    o.close()
    header, row = read_csv(t.path_for(DAY))
    got = dict(zip(header, row, strict=True))
    assert (got["size"], got["price"], got["pnl_cum_jpy"], got["inventory_after"]) == (
        "0.00000001",
        "13600000",
        "-0.10",
        "0.00100000",
    )
    header, row = read_csv(o.path_for(DAY))
    got = dict(zip(header, row, strict=True))
    assert [got[c] for c in ("side", "price", "size", "ttl_ms", "latency_ms")] == ["", "", "", "", ""]


def test_appending_across_restarts_keeps_one_header(tmp_path: Path, writer: CsvLogWriter) -> None:
    for run in range(3):
        t = TradeLogger(tmp_path, "s", writer=writer)
        t.log(trade(order_id=f"run{run}-a"))
        t.log(trade(order_id=f"run{run}-b"))
        t.close()
    rows = read_csv(tmp_path / "trades" / f"trades-{DAY}.csv")
    assert rows[0][0] == "ts"
    assert sum(1 for r in rows if r[0] == "ts") == 1
    assert [r[1] for r in rows[1:]] == ["run0-a", "run0-b", "run1-a", "run1-b", "run2-a", "run2-b"]


def test_torn_last_line_from_a_crash_is_cut_and_next_row_starts_clean(
    tmp_path: Path, writer: CsvLogWriter
) -> None:
    t = TradeLogger(tmp_path, "s", writer=writer)
    t.log(trade(order_id="before-crash"))
    t.close()
    path = t.path_for(DAY)
    with path.open("ab") as f:  # the process died half-way through a row
        f.write(b"2026-01-05T12:00:01.000+09:00,JRF-torn,BUY,136000")

    t2 = TradeLogger(tmp_path, "s", writer=writer)
    t2.log(trade(order_id="after-restart"))
    t2.close()
    rows = read_csv(path)
    assert [r[1] for r in rows[1:]] == ["before-crash", "after-restart"]
    assert all(len(r) == len(rows[0]) for r in rows)
    assert "JRF-torn" not in path.read_text()


def test_torn_header_is_rewritten(tmp_path: Path, writer: CsvLogWriter) -> None:
    path = csv_path(tmp_path, "orders", DAY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"ts,action,ord")  # crashed while writing the header of a new day's file
    o = OrderLogger(tmp_path, writer=writer)
    o.log(order())
    o.close()
    rows = read_csv(path)
    assert rows[0][: len(SEED_ORDER)] == SEED_ORDER and len(rows) == 2


def test_a_file_with_other_columns_is_moved_aside_not_mixed(tmp_path: Path, writer: CsvLogWriter) -> None:
    path = csv_path(tmp_path, "trades", DAY)
    path.parent.mkdir(parents=True)
    path.write_text("ts,order_id,side\n2026-01-05T09:00:00.000+09:00,old,BUY\n")
    t = TradeLogger(tmp_path, "s", writer=writer)
    t.log(trade(order_id="new"))
    t.close()
    rows = read_csv(path)
    assert rows[0][: len(SEED_TRADE)] == SEED_TRADE and [r[1] for r in rows[1:]] == ["new"]
    assert read_csv(path.with_name(path.name + ".1"))[1][1] == "old"
    assert list_days(tmp_path)["trades"] == [DAY]


def test_commas_quotes_and_newlines_stay_one_parseable_row(tmp_path: Path, writer: CsvLogWriter) -> None:
    d = DecisionLogger(tmp_path, "s", writer=writer)
    actions = 'place_limit BUY 0.001@13599999 ttl=800 tag=stall; place_limit SELL 0.001@13600001, "x"'
    detail = 'bid skipped: would cross, best_ask=13600000; note "quoted"'
    d.log(decision(decision_type="action", reason="strike", actions=actions, detail=detail))
    d.log(decision(decision_type="action", reason="strike", detail="line one\nline two\r\nthree"))
    d.close()
    path = d.path_for(DAY)
    header, first, second = read_csv(path)
    got = dict(zip(header, first, strict=True))
    assert (got["actions"], got["detail"]) == (actions, detail)
    assert dict(zip(header, second, strict=True))["detail"] == "line one line two three"
    assert (
        len(path.read_text().splitlines()) == 3
    )  # one physical line per row: a torn tail is one row at most


def test_decision_row_from_meta_lists_the_actions(tmp_path: Path, writer: CsvLogWriter) -> None:
    meta = DecisionMeta(
        ts=1,
        reason=Reason.STRIKE,
        best_age_ms=300,
        spread_ticks=4,
        inventory_btc=Decimal("0"),
        entry_bid_px=Decimal("13599999"),
        entry_ask_px=Decimal("13600001"),
        actions=(
            Action(
                ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.BUY, Decimal("13599999"), Decimal("0.001"), 800
            ),
            Action(
                ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.SELL, Decimal("13600001"), Decimal("0.001"), 800
            ),
        ),
    )
    row = decision_row(meta, T0)
    assert row.decision_type == "action" and row.reason == "strike"
    assert row.actions == (
        "place_limit BUY 0.001@13599999 ttl=800 tag=stall; place_limit SELL 0.001@13600001 ttl=800 tag=stall"
    )


# ---- collapsing of repeated no-action decisions ----------------------------------------------------------
def test_ten_identical_no_action_decisions_become_one_row(tmp_path: Path, writer: CsvLogWriter) -> None:
    d = DecisionLogger(tmp_path, "s", writer=writer)
    for i in range(10):
        d.log(decision(ts=T0 + timedelta(milliseconds=100 * i), best_age_ms=10 + i))
    d.close()
    header, *rows = read_csv(d.path_for(DAY))
    assert len(rows) == 1
    got = dict(zip(header, rows[0], strict=True))
    assert got["count"] == "10"
    assert got["ts"] == "2026-01-05T12:00:00.123+09:00"  # the first decision's time
    assert got["best_age_ms"] == "19"  # the latest best age


def test_an_action_or_another_reason_splits_the_run(tmp_path: Path, writer: CsvLogWriter) -> None:
    d = DecisionLogger(tmp_path, "s", writer=writer)
    seq = (
        ["not_stalled"] * 3
        + ["strike"]
        + ["not_stalled"] * 2
        + ["spread_too_narrow"] * 4
        + ["strike", "strike"]
    )
    for i, reason in enumerate(seq):
        kind = "action" if reason == "strike" else "no_action"
        d.log(decision(ts=T0 + timedelta(seconds=i), reason=reason, decision_type=kind))
    d.close()
    header, *rows = read_csv(d.path_for(DAY))
    got = [(r[header.index("reason")], r[header.index("count")]) for r in rows]
    assert got == [
        ("not_stalled", "3"),
        ("strike", "1"),
        ("not_stalled", "2"),
        ("spread_too_narrow", "4"),
        ("strike", "1"),
        ("strike", "1"),
    ]


def test_a_long_quiet_period_is_written_without_flush(tmp_path: Path, writer: CsvLogWriter) -> None:
    d = DecisionLogger(tmp_path, "s", collapse_max_s=0.2, writer=writer)
    path = d.path_for(DAY)
    for i in range(3):
        d.log(decision(ts=T0 + timedelta(milliseconds=i)))

    def counted() -> int:
        if not path.exists():
            return 0
        header, *rows = read_csv(path)
        return sum(int(r[header.index("count")]) for r in rows)

    # no further decision, no flush: the writer's own timer writes the merged row
    assert writer.wait_for(lambda: counted() == 3, timeout=10)
    d.close()


def test_a_merged_row_is_cut_when_it_has_been_open_too_long(tmp_path: Path) -> None:
    fake_now = [0.0]
    w = CsvLogWriter(clock=lambda: fake_now[0])
    w.start()
    try:
        d = DecisionLogger(tmp_path, "s", collapse_max_s=30, writer=w)
        other = OrderLogger(tmp_path, writer=w)
        for i in range(3):
            d.log(decision(ts=T0 + timedelta(seconds=i)))
        assert d.flush()  # flush writes the open group too; the next one starts fresh
        for i in range(5):
            d.log(decision(ts=T0 + timedelta(seconds=10 + i)))
        assert other.flush()  # the writer has taken the 5 rows in (at t=0) but keeps their group open
        fake_now[0] = 31.0
        d.log(decision(ts=T0 + timedelta(seconds=41)))  # same reason, but the open row is 31 s old
        d.close()
        other.close()
        header, *rows = read_csv(d.path_for(DAY))
        assert [r[header.index("count")] for r in rows] == ["3", "5", "1"]
    finally:
        w.stop()


# ---- days ------------------------------------------------------------------------------------------------
def test_rows_roll_over_to_a_new_file_at_midnight_tokyo(tmp_path: Path, writer: CsvLogWriter) -> None:
    t = TradeLogger(tmp_path, "s", writer=writer)
    d = DecisionLogger(tmp_path, "s", writer=writer)
    before = datetime(2026, 1, 5, 14, 59, 59, 999000, tzinfo=UTC)  # 23:59:59.999 JST
    after = datetime(2026, 1, 5, 15, 0, 0, tzinfo=UTC)  # 00:00:00.000 JST, next day
    t.log(trade(ts=before, order_id="late"))
    t.log(trade(ts=after, order_id="early"))
    d.log(decision(ts=before))
    d.log(decision(ts=after))  # same no-action reason, but a new day: not merged across files
    t.close()
    d.close()
    old, new = read_csv(t.path_for("20260105")), read_csv(t.path_for("20260106"))
    assert [r[1] for r in old[1:]] == ["late"] and old[1][0] == "2026-01-05T23:59:59.999+09:00"
    assert [r[1] for r in new[1:]] == ["early"] and new[1][0] == "2026-01-06T00:00:00.000+09:00"
    assert new[0] == old[0]
    assert len(read_csv(d.path_for("20260105"))) == 2 and len(read_csv(d.path_for("20260106"))) == 2
    assert list_days(tmp_path) == {
        "trades": ["20260105", "20260106"],
        "orders": [],
        "decisions": ["20260105", "20260106"],
        "audit": [],
    }


def test_the_trading_day_zone_is_configurable(tmp_path: Path, writer: CsvLogWriter) -> None:
    t = TradeLogger(tmp_path, "s", tz="UTC", writer=writer)
    t.log(trade(ts=datetime(2026, 1, 5, 23, 30, tzinfo=UTC)))
    t.close()
    assert list_days(tmp_path)["trades"] == ["20260105"]
    assert read_csv(t.path_for("20260105"))[1][0] == "2026-01-05T23:30:00.000+00:00"


def test_list_days_ignores_foreign_files_and_csv_path_refuses_traversal(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    for name in (
        "orders-20260101.csv",
        "orders-20251231.csv",
        "orders-2026.csv",
        "trades-20260101.csv",
        "orders-20260101.csv.1",
        "notes.txt",
    ):
        (tmp_path / "orders" / name).write_text("x\n")
    assert list_days(tmp_path) == {
        "trades": [],
        "orders": ["20251231", "20260101"],
        "decisions": [],
        "audit": [],
    }
    for kind, day in (
        ("../etc", "20260101"),
        ("orders", "../../x"),
        ("runtime", "20260101"),
        ("orders", "2026010"),
    ):
        with pytest.raises(ValueError):
            csv_path(tmp_path, kind, day)


# ---- threading: log() never waits on the disk ------------------------------------------------------------
def test_log_returns_while_the_writer_is_held(tmp_path: Path, writer: CsvLogWriter) -> None:
    t = TradeLogger(tmp_path, "s", writer=writer)
    path = t.path_for(DAY)
    returned = threading.Event()

    def hot_path() -> None:
        for i in range(500):
            t.log(trade(order_id=f"o{i}"))
        returned.set()

    with writer.io_lock:  # the writer cannot open or write any file now
        caller = threading.Thread(target=hot_path)
        caller.start()
        # if log() touched the file or the lock, this would never be set while we hold the lock
        assert returned.wait(timeout=30), "log() blocked behind the file writer"
        assert not path.exists()  # nothing was written on the calling thread
    caller.join()
    assert t.close()
    assert len(read_csv(path)) == 501


async def test_log_from_the_event_loop_and_async_close(tmp_path: Path) -> None:
    o = OrderLogger(tmp_path)  # the process-wide shared writer
    d = DecisionLogger(tmp_path, "s")

    async def producer(n: int) -> None:
        for i in range(50):
            o.log(order(client_order_id=f"p{n}-{i}"))
            d.log(decision(ts=T0 + timedelta(milliseconds=i)))
            await asyncio.sleep(0)

    await asyncio.gather(*(producer(n) for n in range(4)))
    assert await d.aflush()
    header, *rows = read_csv(d.path_for(DAY))
    assert sum(int(r[header.index("count")]) for r in rows) == 200
    assert await o.aclose()
    assert len(read_csv(o.path_for(DAY))) == 201
    await d.aclose()
    with pytest.raises(RuntimeError):
        o.log(order())


def test_close_writes_everything_from_many_threads(tmp_path: Path, writer: CsvLogWriter) -> None:
    t = TradeLogger(tmp_path, "s", writer=writer)
    o = OrderLogger(tmp_path, writer=writer)

    def work(n: int) -> None:
        for i in range(200):
            t.log(trade(order_id=f"t{n}-{i}"))
            o.log(order(client_order_id=f"c{n}-{i}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.close() and o.close()  # returns only once every row is in the file
    trades, orders = read_csv(t.path_for(DAY)), read_csv(o.path_for(DAY))
    assert len(trades) == 801 and len(orders) == 801
    assert all(len(r) == len(trades[0]) for r in trades) and all(len(r) == len(orders[0]) for r in orders)
    assert {r[1] for r in trades[1:]} == {f"t{n}-{i}" for n in range(4) for i in range(200)}
    # each thread's rows stay in the order it logged them
    mine = [r[1] for r in trades[1:] if r[1].startswith("t2-")]
    assert mine == [f"t2-{i}" for i in range(200)]


def test_wrong_row_type_is_refused_at_the_call(tmp_path: Path, writer: CsvLogWriter) -> None:
    t = TradeLogger(tmp_path, "s", writer=writer)
    with pytest.raises(TypeError):
        t.log(order())  # type: ignore[arg-type]
    t.close()
    assert list_days(tmp_path)["trades"] == []


# ---- runtime log -----------------------------------------------------------------------------------------
@pytest.fixture
def runtime_log(tmp_path: Path) -> object:
    path = setup_runtime_logging(tmp_path, stderr=False)
    yield path
    shutdown_runtime_logging()
    clear_secrets()


def test_secrets_never_reach_app_log(runtime_log: Path) -> None:
    api_secret = "q9Zx7+bitflyerSECRET/abc=="
    api_key = "AKEY1234567890"
    token = "stst-token-do-not-leak"
    for s in (api_key, api_secret, token):
        register_secret(s)
    logger.info("starting with key={} secret {}", api_key, api_secret)
    logger.warning("client sent Authorization: Bearer {} {{literal braces}}", token)
    try:
        raise ConnectionError(f"auth failed for {api_key} using {api_secret}")
    except ConnectionError:
        logger.exception("ws auth error")
    logging.getLogger("aiohttp.client").error(
        "request headers ACCESS-KEY=%s ACCESS-SIGN=%s", api_key, "abcdef12"
    )
    logger.info("unregistered but looks like one: api_secret: hunter2-value")
    logger.complete()
    shutdown_runtime_logging()  # drains the enqueued lines

    text = runtime_log.read_text()
    for s in (api_key, api_secret, token, "abcdef12", "hunter2-value"):
        assert s not in text
    assert "starting with key=*** secret ***" in text
    assert "{literal braces}" in text
    assert "ConnectionError: auth failed for *** using ***" in text  # the traceback is kept, masked
    assert "aiohttp.client" in text and "ACCESS-KEY=***" in text


def test_runtime_setup_twice_does_not_duplicate_lines(runtime_log: Path, tmp_path: Path) -> None:
    setup_runtime_logging(tmp_path, stderr=False)
    logger.info("exactly once please")
    logger.complete()
    shutdown_runtime_logging()
    assert runtime_log == tmp_path / "runtime" / "app.log"
    assert runtime_log.read_text().count("exactly once please") == 1


def test_redact_masks_longest_secret_whole() -> None:
    try:
        register_secret("abcdef")
        register_secret("abcdef-longer")
        register_secret("")  # ignored, not "mask everything"
        assert redact("x abcdef-longer y abcdef z") == "x *** y *** z"
        assert redact("nothing here") == "nothing here"
    finally:
        clear_secrets()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("STST_TOKEN=abc123", "STST_TOKEN=***"),
        ("BITFLYER_API_SECRET=xyz", "BITFLYER_API_SECRET=***"),
        ("{'ACCESS-KEY': 'k1', 'ACCESS-SIGN': '00ff'}", "{'ACCESS-KEY': '***', 'ACCESS-SIGN': '***'}"),
        ("Authorization: Bearer t1", "Authorization: ***"),
        ("tokens_left=5 reason=stale_data", "tokens_left=5 reason=stale_data"),
        ("order refused: invalid signature (-500)", "order refused: invalid signature (-500)"),
    ],
)
def test_unregistered_credentials_that_look_like_one_are_masked(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_a_flood_of_one_stdlib_error_is_one_line_not_thousands(runtime_log: Path) -> None:
    """Under a connection flood asyncio logs 'socket.accept() out of system resource' thousands of times a
    second; 35,700 such lines once rotated the log twice in a minute."""
    noisy = logging.getLogger("asyncio")
    for _ in range(5000):
        noisy.error("socket.accept() out of system resource")
    noisy.error("another problem")
    logger.complete()
    shutdown_runtime_logging()
    text = runtime_log.read_text()
    assert text.count("out of system resource") == 1
    assert "another problem" in text
