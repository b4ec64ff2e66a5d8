"""Parsers for bitFlyer payloads, against captured-style frames (tests/data) and REST rows from the API
docs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from bot.engine.orders import OrderTracker
from bot.infra.bitflyer_parse import (
    ParseError,
    net_position,
    parse_child_order_events,
    parse_exec_date,
    parse_executions,
    parse_getchildorders,
    parse_getchildorders_row,
    parse_my_executions,
    parse_position_rows,
    to_decimal,
)
from bot.types.dto import ChildOrderEventType, OrderState, Side

DATA = Path(__file__).parent / "data"


def frames(name: str) -> list[list[dict]]:
    doc = json.loads((DATA / name).read_text())
    docs = doc if isinstance(doc, list) else [doc]
    return [d["params"]["message"] for d in docs]


@pytest.fixture
def log_lines():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    yield lines
    logger.remove(sink)


# ---- timestamps ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-23T03:31:25.6491037Z", datetime(2026, 9, 23, 3, 31, 25, 649103, tzinfo=UTC)),
        ("2026-09-23T03:31:25Z", datetime(2026, 9, 23, 3, 31, 25, tzinfo=UTC)),
        ("2026-09-23T03:31:25", datetime(2026, 9, 23, 3, 31, 25, tzinfo=UTC)),
        ("2015-07-07T09:57:40.397", datetime(2015, 7, 7, 9, 57, 40, 397000, tzinfo=UTC)),
        ("2026-09-23T12:31:25.5+09:00", datetime(2026, 9, 23, 3, 31, 25, 500000, tzinfo=UTC)),
    ],
)
def test_exec_date_formats_all_become_utc(text: str, expected: datetime) -> None:
    got = parse_exec_date(text)
    assert got == expected
    assert got.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("bad", ["", "yesterday", "2026-13-01T00:00:00Z", "2026-09-23 03:31", 1695440000])
def test_exec_date_rejects_garbage(bad: object) -> None:
    with pytest.raises(ParseError):
        parse_exec_date(bad)  # type: ignore[arg-type]


# ---- numbers ---------------------------------------------------------------------------------------------
def test_json_floats_become_exact_decimals() -> None:
    msg = json.loads('{"size": 0.001, "price": 13633748.0, "tiny": 0.00000001}')
    assert to_decimal(msg["size"]) == Decimal("0.001")
    assert str(to_decimal(msg["size"])) == "0.001"
    assert to_decimal(msg["tiny"]) == Decimal("0.00000001")
    assert to_decimal(msg["price"]) == Decimal(13633748)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**11))
def test_any_8_decimal_size_survives_the_json_round_trip(satoshi: int) -> None:
    size = Decimal(satoshi).scaleb(-8)
    wire = json.loads(json.dumps({"size": float(size)}))["size"]
    assert to_decimal(wire) == size


@pytest.mark.parametrize("bad", [True, None, "abc", float("nan"), float("inf"), [1]])
def test_non_numbers_are_refused(bad: object) -> None:
    with pytest.raises(ParseError):
        to_decimal(bad)


# ---- child_order_events ----------------------------------------------------------------------------------
def test_lifecycle_capture_parses_every_event_type() -> None:
    events = [
        ev for msg in frames("child_order_events_lifecycle.json") for ev in parse_child_order_events(msg)
    ]
    types = [e.event_type for e in events]
    assert set(types) == set(ChildOrderEventType)
    assert len(events) == 10

    order = events[0]
    assert order.event_type is ChildOrderEventType.ORDER
    assert order.child_order_acceptance_id == "JRF20260923-033125-218133"
    assert order.side is Side.BUY and order.price == Decimal(13633747) and order.size == Decimal("0.001")
    assert order.child_order_type == "LIMIT"
    assert order.event_date == datetime(2026, 9, 23, 3, 31, 25, 649103, tzinfo=UTC)
    assert order.expire_date == datetime(2026, 9, 23, 3, 32, 25, tzinfo=UTC)

    partial = events[2]
    assert partial.event_type is ChildOrderEventType.EXECUTION
    assert partial.exec_id == "2609230331260001"
    assert partial.size == Decimal("0.0004") and partial.outstanding_size == Decimal("0.0006")
    assert partial.commission == 0

    market = events[5]
    assert market.child_order_type == "MARKET" and market.price == 0

    failed = next(e for e in events if e.event_type is ChildOrderEventType.ORDER_FAILED)
    assert failed.reason == "Margin amount is insufficient for this order."
    assert failed.child_order_id == ""

    expire = next(e for e in events if e.event_type is ChildOrderEventType.EXPIRE)
    assert expire.price == Decimal(13640000) and expire.size == Decimal("0.001")


def test_lifecycle_capture_drives_the_order_tracker_to_the_right_states() -> None:
    tracker = OrderTracker()
    buy = tracker.new_order(
        tag="stall",
        side=Side.BUY,
        order_type="LIMIT",
        price=Decimal(13633747),
        size=Decimal("0.001"),
        now=0,
        ttl_ms=800,
    )
    sell = tracker.new_order(
        tag="stall",
        side=Side.SELL,
        order_type="LIMIT",
        price=Decimal(13633749),
        size=Decimal("0.001"),
        now=0,
        ttl_ms=800,
    )
    tracker.on_accepted(buy.client_id, "JRF20260923-033125-218133")
    tracker.on_accepted(sell.client_id, "JRF20260923-033125-218134")
    fills = []
    for msg in frames("child_order_events_lifecycle.json")[:4]:
        for ev in parse_child_order_events(msg):
            f = tracker.on_event(ev)
            if f is not None:
                fills.append(f)
    assert buy.state is OrderState.FILLED and buy.executed_size == Decimal("0.001")
    assert sell.state is OrderState.CANCELED
    assert [f.size for f in fills] == [Decimal("0.0004"), Decimal("0.0006")]
    assert sum(f.size for f in fills) == Decimal("0.001")  # exact: no float drift


def test_execution_before_our_ack_is_counted_once_and_settles_on_ack() -> None:
    tracker = OrderTracker()
    order = tracker.new_order(
        tag="stall", side=Side.SELL, order_type="LIMIT", price=Decimal(13700100), size=Decimal("0.001"), now=0
    )
    fills = []
    for msg in frames("child_order_events_early_execution.json"):  # EXECUTION, ORDER, duplicate EXECUTION
        for ev in parse_child_order_events(msg):
            f = tracker.on_event(ev)
            if f is not None:
                fills.append(f)
    assert len(fills) == 1 and fills[0].size == Decimal("0.001")
    assert order.state is OrderState.PENDING_NEW
    tracker.on_accepted(order.client_id, "JRF20260923-050000-400001")
    assert order.state is OrderState.FILLED


def test_malformed_items_are_skipped_with_a_log_line_and_the_rest_still_counts(log_lines: list[str]) -> None:
    (msg,) = frames("child_order_events_malformed.json")
    events = parse_child_order_events(msg)
    assert [e.child_order_acceptance_id for e in events] == [
        "JRF20260923-040001-300001",
        "JRF20260923-040001-300010",
        "JRF20260923-040001-300011",
    ]
    assert events[1].size == Decimal("0.00012345") and events[1].outstanding_size == Decimal("0.00087655")
    assert len(log_lines) == len(msg) - 3
    assert all("malformed item skipped" in line for line in log_lines)


@pytest.mark.parametrize("message", [None, {}, "child_order_events", 42])
def test_a_message_that_is_not_a_list_yields_nothing(message: object, log_lines: list[str]) -> None:
    assert parse_child_order_events(message) == []
    assert len(log_lines) == 1


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.dictionaries(
                st.sampled_from(
                    [
                        "event_type",
                        "side",
                        "price",
                        "size",
                        "exec_id",
                        "event_date",
                        "child_order_acceptance_id",
                    ]
                ),
                st.one_of(
                    st.none(),
                    st.integers(),
                    st.floats(),
                    st.text(max_size=8),
                    st.sampled_from(["EXECUTION", "ORDER", "BUY", "2026-09-23T03:31:25Z", "JRF1"]),
                ),
            ),
        ),
        max_size=8,
    )
)
def test_parser_never_raises_on_junk(message: list) -> None:
    logger.disable("bot.infra.bitflyer_parse")
    try:
        for ev in parse_child_order_events(message):
            if ev.event_type is ChildOrderEventType.EXECUTION:
                assert ev.side is not None and ev.price is not None and ev.size is not None and ev.size > 0
    finally:
        logger.enable("bot.infra.bitflyer_parse")


# ---- public executions -----------------------------------------------------------------------------------
def test_public_executions_including_itayose_blank_side() -> None:
    msg = json.loads("""[
      {"id":2609230331250001,"side":"BUY","price":13633748.0,"size":0.01,"exec_date":"2026-09-23T03:31:25.6491037Z",
       "buy_child_order_acceptance_id":"JRF20260923-033125-000001","sell_child_order_acceptance_id":"JRF20260923-033120-000002"},
      {"id":2609230331250002,"side":"","price":13633700.0,"size":0.5,"exec_date":"2026-09-23T03:31:25.7Z",
       "buy_child_order_acceptance_id":"JRF1","sell_child_order_acceptance_id":"JRF2"},
      {"id":"x","side":"BUY","price":1.0,"size":1.0,"exec_date":"2026-09-23T03:31:25Z"}
    ]""")
    logger.disable("bot.infra.bitflyer_parse")
    try:
        execs = parse_executions(msg)
    finally:
        logger.enable("bot.infra.bitflyer_parse")
    assert len(execs) == 2
    assert (
        execs[0].side is Side.BUY and execs[0].price == Decimal(13633748) and execs[0].size == Decimal("0.01")
    )
    assert execs[1].side is None


# ---- REST rows -------------------------------------------------------------------------------------------
CHILD_ORDERS = json.loads("""[
  {"id":0,"child_order_id":"JFX20260923-033125-104417F","product_code":"FX_BTC_JPY","side":"BUY",
   "child_order_type":"LIMIT","price":13633747.0,"average_price":0.0,"size":0.001,"child_order_state":"ACTIVE",
   "expire_date":"2026-09-23T03:32:25","child_order_date":"2026-09-23T03:31:25",
   "child_order_acceptance_id":"JRF20260923-033125-218133","outstanding_size":0.001,"cancel_size":0.0,
   "executed_size":0.0,"total_commission":0.0},
  {"id":138398,"child_order_id":"JFX20260923-033127-104431F","product_code":"FX_BTC_JPY","side":"SELL",
   "child_order_type":"MARKET","price":0,"average_price":13633521.0,"size":0.001,"child_order_state":"COMPLETED",
   "expire_date":"2026-10-23T03:31:27","child_order_date":"2026-09-23T03:31:27",
   "child_order_acceptance_id":"JRF20260923-033127-218150","outstanding_size":0,"cancel_size":0,
   "executed_size":0.001,"total_commission":0}
]""")


def test_getchildorders_rows() -> None:
    active, done = parse_getchildorders(CHILD_ORDERS)
    assert active.id == 0 and active.child_order_state == "ACTIVE"
    assert active.outstanding_size == Decimal("0.001") and active.price == Decimal(13633747)
    assert done.child_order_type == "MARKET" and done.executed_size == Decimal("0.001")
    assert done.average_price == Decimal(13633521)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("child_order_state"),
        lambda r: r.update(child_order_state="PARTIAL"),
        lambda r: r.update(side="LONG"),
        lambda r: r.update(size="lots"),
        lambda r: r.update(child_order_acceptance_id=""),
    ],
)
def test_getchildorders_row_that_cannot_be_trusted_raises(mutate) -> None:
    row = dict(CHILD_ORDERS[0])
    mutate(row)
    with pytest.raises(ParseError):
        parse_getchildorders_row(row)


def test_positions_net_and_average() -> None:
    rows = json.loads("""[
      {"product_code":"FX_BTC_JPY","side":"BUY","price":13600000.0,"size":0.003,"commission":0,
       "swap_point_accumulate":0,"require_collateral":8160.0,"open_date":"2026-09-23T03:31:25.643",
       "leverage":2,"pnl":-12.0,"sfd":0},
      {"product_code":"FX_BTC_JPY","side":"BUY","price":13600300.0,"size":0.001,"commission":0,
       "swap_point_accumulate":0,"require_collateral":2720.0,"open_date":"2026-09-23T03:31:26.101",
       "leverage":2,"pnl":-3.0,"sfd":0}
    ]""")
    lots = parse_position_rows(rows)
    assert lots == [
        (Side.BUY, Decimal(13600000), Decimal("0.003")),
        (Side.BUY, Decimal(13600300), Decimal("0.001")),
    ]
    net, avg = net_position(lots)
    assert net == Decimal("0.004")
    assert avg == Decimal(13600075)
    assert net_position([]) == (Decimal(0), None)
    assert parse_position_rows([]) == []


@pytest.mark.parametrize(
    "rows",
    [
        None,
        {"side": "BUY"},
        [{"side": "BUY", "price": 1.0}],
        [{"side": "BUY", "price": 13600000.0, "size": 0.0}],
    ],
)
def test_positions_that_cannot_be_trusted_raise(rows: object) -> None:
    with pytest.raises(ParseError):
        parse_position_rows(rows)


def test_private_executions_become_fills() -> None:
    rows = json.loads("""[{"id":37233,"child_order_id":"JFX20260923-033125-104417F","side":"BUY",
      "price":13633747.0,"size":0.0004,"commission":0,"exec_date":"2026-09-23T03:31:26.013",
      "child_order_acceptance_id":"JRF20260923-033125-218133"}]""")
    (fill,) = parse_my_executions(rows)
    assert fill.exec_id == "37233" and fill.side is Side.BUY and fill.size == Decimal("0.0004")
    assert fill.exec_date == datetime(2026, 9, 23, 3, 31, 26, 13000, tzinfo=UTC)
