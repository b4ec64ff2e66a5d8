"""OrderTracker: our orders from our requests and child_order_events, as a trader would see them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot.config.loader import RiskConfig
from bot.engine.inventory import InventoryManager
from bot.engine.orders import UNTRACKED_TAG, OrderTracker, SuspectFill
from bot.types.dto import ChildOrderEvent, ChildOrderEventType, OrderState, Side

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def ev(kind: ChildOrderEventType, aid: str, **kw) -> ChildOrderEvent:
    return ChildOrderEvent(
        event_type=kind, child_order_acceptance_id=aid, child_order_id=f"C{aid}", event_date=T0, **kw
    )


def execution(aid: str, exec_id: str, side: Side, price: int, size: str, outstanding: str) -> ChildOrderEvent:
    return ev(
        ChildOrderEventType.EXECUTION,
        aid,
        exec_id=exec_id,
        side=side,
        price=Decimal(price),
        size=Decimal(size),
        commission=Decimal(0),
        outstanding_size=Decimal(outstanding),
    )


def test_events_before_the_acceptance_id_are_replayed_and_the_fill_counts_at_once():
    t = OrderTracker()
    o = t.new_order(
        tag="stall", side=Side.BUY, order_type="LIMIT", price=Decimal(100), size=Decimal("0.002"), now=0
    )
    assert t.on_event(ev(ChildOrderEventType.ORDER, "JRF1")) is None
    fill = t.on_event(execution("JRF1", "1", Side.BUY, 100, "0.002", "0"))
    assert fill is not None and fill.size == Decimal("0.002")  # position must move now, not at the ack
    assert o.state is OrderState.PENDING_NEW
    t.on_accepted(o.client_id, "JRF1")
    assert o.state is OrderState.FILLED and o.executed_size == Decimal("0.002")
    assert t.open_orders() == []


def test_duplicate_execution_event_is_ignored_but_a_self_trade_counts_both_sides():
    t = OrderTracker()
    inv = InventoryManager(RiskConfig())
    buy = t.new_order(
        tag="stall", side=Side.BUY, order_type="LIMIT", price=Decimal(100), size=Decimal("0.001"), now=0
    )
    sell = t.new_order(
        tag="close", side=Side.SELL, order_type="MARKET", price=None, size=Decimal("0.001"), now=0
    )
    t.on_accepted(buy.client_id, "A")
    t.on_accepted(sell.client_id, "B")
    # our market sell hits our own resting bid: one exec id, two executions of ours
    f1 = t.on_event(execution("A", "77", Side.BUY, 100, "0.001", "0"))
    f2 = t.on_event(execution("B", "77", Side.SELL, 100, "0.001", "0"))
    assert f1 is not None and f2 is not None
    assert t.on_event(execution("A", "77", Side.BUY, 100, "0.001", "0")) is None  # a real duplicate
    for f in (f1, f2):
        assert not inv.apply_fill(f).duplicate
    assert inv.position_btc == 0
    assert inv.apply_fill(f1).duplicate


def test_cancel_and_expire_close_orders_and_untracked_fills_still_count():
    t = OrderTracker()
    a = t.new_order(
        tag="stall", side=Side.SELL, order_type="LIMIT", price=Decimal(200), size=Decimal("0.001"), now=0
    )
    t.on_accepted(a.client_id, "A")
    t.on_cancel_requested(a.client_id)
    assert a.state is OrderState.PENDING_CANCEL and a in t.open_orders("stall")
    t.on_event(ev(ChildOrderEventType.CANCEL_FAILED, "A"))
    assert a.state is OrderState.ACTIVE
    t.on_event(ev(ChildOrderEventType.EXPIRE, "A"))
    assert a.state is OrderState.EXPIRED and t.open_orders() == []
    stray = t.on_event(execution("ZZZ", "9", Side.BUY, 150, "0.003", "0"))
    assert stray is not None and stray.tag == UNTRACKED_TAG


def test_an_execution_past_the_orders_size_or_after_its_end_is_suspect_and_moves_nothing():
    t = OrderTracker()
    a = t.new_order(
        tag="stall", side=Side.BUY, order_type="LIMIT", price=Decimal(100), size=Decimal("0.001"), now=0
    )
    b = t.new_order(
        tag="stall", side=Side.SELL, order_type="LIMIT", price=Decimal(101), size=Decimal("0.001"), now=0
    )
    t.on_accepted(a.client_id, "A")
    t.on_accepted(b.client_id, "B")
    assert not isinstance(t.on_event(execution("A", "1", Side.BUY, 100, "0.0006", "0.0004")), SuspectFill)
    # a fresh exec id (a forged or corrupt frame) that would take A past its 0.001
    over = t.on_event(execution("A", "2", Side.BUY, 100, "0.0005", "0"))
    assert isinstance(over, SuspectFill) and "past its size" in over.why
    assert a.executed_size == Decimal("0.0006") and a.state is OrderState.ACTIVE
    assert not isinstance(t.on_event(execution("A", "3", Side.BUY, 100, "0.0004", "0")), SuspectFill)
    assert a.state is OrderState.FILLED
    t.on_event(ev(ChildOrderEventType.CANCEL, "B"))
    late = t.on_event(execution("B", "4", Side.SELL, 101, "0.0001", "0.0009"))
    assert isinstance(late, SuspectFill) and "CANCELED" in late.why and b.executed_size == 0
    assert t.on_event(execution("A", "3", Side.BUY, 100, "0.0004", "0")) is None  # a repeat is only a repeat


def test_resting_levels_sum_our_open_limit_orders_by_price():
    t = OrderTracker()
    for _ in range(2):
        o = t.new_order(
            tag="stall", side=Side.BUY, order_type="LIMIT", price=Decimal(100), size=Decimal("0.001"), now=0
        )
        t.on_accepted(o.client_id, f"A{o.client_id}")
    m = t.new_order(tag="close", side=Side.SELL, order_type="MARKET", price=None, size=Decimal("0.5"), now=0)
    assert t.resting_levels() == {(Side.BUY, Decimal(100)): Decimal("0.002")}
    t.on_rejected(m.client_id, "-205")
    assert m not in t.open_orders()
