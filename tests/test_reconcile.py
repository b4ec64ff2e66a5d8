"""The pure reconciler (bot/engine/reconcile.py): each money-safety defect it closes, without sockets."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot.config.loader import RiskConfig
from bot.engine.inventory import InventoryManager
from bot.engine.orders import OrderTracker
from bot.engine.reconcile import OrderStatusReport, Reconciler, VenueReports
from bot.types.dto import Fill, OrderState, Side

D = Decimal
S = 1_000_000_000
T0 = 1_000 * S


def fill(exec_id: int, side: Side, price: int, size: str, aid: str = "JRF-hand") -> Fill:
    return Fill(
        exec_id=str(exec_id),
        child_order_acceptance_id=aid,
        side=side,
        price=D(price),
        size=D(size),
        commission=D(0),
        exec_date=datetime(2026, 12, 3, 1, 0, tzinfo=UTC),
    )


def reports(
    listed_at: int,
    *,
    active: tuple[OrderStatusReport, ...] = (),
    fills: tuple[Fill, ...] = (),
    lots: tuple = (),
    consistent: bool = True,
) -> VenueReports:
    return VenueReports(
        listed_at=listed_at, active=active, fills=fills, lots=lots, lots_consistent=consistent
    )


def run(rec: Reconciler, tracker: OrderTracker, inv: InventoryManager, r: VenueReports):
    return rec.reconcile(
        tracker.open_orders(),
        r,
        is_tracked=lambda a: tracker.by_acceptance(a) is not None,
        is_applied=inv.is_applied,
        position=inv.position_btc,
    )


def inventory() -> InventoryManager:
    return InventoryManager(RiskConfig())


def test_fill_between_executions_and_positions_is_applied_once_never_adopted_twice() -> None:
    """Defect 3: a fill that landed between getexecutions and getpositions was inside the adopted lots but not
    among the seen executions; its late WebSocket event then counted it again (bot 0.002, venue 0.001)."""
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler()
    late = fill(7, Side.BUY, 10_000_000, "0.001")
    venue_lots = ((Side.BUY, D(10_000_000), D("0.001")),)
    # the second executions call saw it: the snapshot is inconsistent, the fill is applied, lots are not
    # adopted
    res = run(rec, tracker, inv, reports(T0, fills=(late,), lots=venue_lots, consistent=False))
    assert res.fills == [late] and res.correction is None
    for f in res.fills:
        inv.apply_fill(f)
    assert inv.position_btc == D("0.001")
    # its WebSocket event arrives late: the ledger has it already
    assert inv.apply_fill(late).duplicate and inv.position_btc == D("0.001")
    # the next reconcile agrees with the venue: nothing to do
    res = run(rec, tracker, inv, reports(T0 + S, fills=(late,), lots=venue_lots))
    assert res.fills == [] and res.correction is None


def test_executions_missed_while_down_are_applied_as_fills_with_their_pnl() -> None:
    """Defect 6: after a restart the venue's executions were all treated as known and its lots adopted with no
    PnL realized; a 20,000 JPY loss taken while down never reached pnl_today."""
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler()
    inv.apply_fill(fill(1, Side.BUY, 10_000_000, "1"))  # before the crash
    restored = InventoryManager.from_dict(inv.to_dict(), inv.risk)
    while_down = fill(2, Side.SELL, 9_980_000, "1")  # sold by hand while the bot was down
    res = run(rec, tracker, restored, reports(T0, fills=(while_down, fill(1, Side.BUY, 10_000_000, "1"))))
    assert res.fills == [while_down] and res.correction is None  # flat after replay: as the venue
    for f in res.fills:
        restored.apply_fill(f)
    assert restored.realized_pnl_jpy == D(-20_000) and restored.pnl_today_jpy == D(-20_000)


def test_a_position_correction_only_when_replaying_executions_still_disagrees() -> None:
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler()
    venue_lots = ((Side.SELL, D(10_000_000), D("0.002")),)
    res = run(
        rec, tracker, inv, reports(T0, fills=(fill(3, Side.SELL, 10_000_000, "0.001"),), lots=venue_lots)
    )
    assert res.expected_position == D("-0.001") and res.venue_position == D("-0.002")
    assert res.correction == venue_lots


def test_an_order_accepted_during_a_slow_reconcile_is_not_declared_gone() -> None:
    """Defect 5: the grace was measured against the clock after all three REST calls, not when the ACTIVE list
    was taken; an order accepted during a slow reconcile was declared CANCELED while it rested."""
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler(grace_ns=3 * S)
    o = tracker.new_order(
        tag="stall", side=Side.BUY, order_type="LIMIT", price=D(1000), size=D("0.001"), now=T0
    )
    tracker.on_accepted(o.client_id, "JRF1", now=T0 + 5 * S)  # its answer came while the listing was out
    # a listing requested before the acceptance says nothing about it, however late it is applied
    for _ in range(3):
        res = run(rec, tracker, inv, reports(T0 + 4 * S))
        assert res.gone == []
    # two listings after the acceptance, grace apart, are evidence
    assert run(rec, tracker, inv, reports(T0 + 6 * S)).gone == []
    assert run(rec, tracker, inv, reports(T0 + 7 * S)).gone == []
    assert run(rec, tracker, inv, reports(T0 + 9 * S)).gone == [(o.client_id, OrderState.CANCELED)]


def test_an_order_seen_again_resets_its_absence() -> None:
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler(grace_ns=3 * S)
    o = tracker.new_order(
        tag="stall", side=Side.SELL, order_type="LIMIT", price=D(1000), size=D("0.001"), now=T0
    )
    tracker.on_accepted(o.client_id, "JRF2", now=T0)
    row = OrderStatusReport("JRF2", Side.SELL, "LIMIT", D(1000), D("0.001"), D(0))
    assert run(rec, tracker, inv, reports(T0 + 1 * S)).gone == []  # missing once
    assert run(rec, tracker, inv, reports(T0 + 2 * S, active=(row,))).gone == []  # listed: not gone
    assert run(rec, tracker, inv, reports(T0 + 4 * S + 1)).gone == []  # missing once again
    assert run(rec, tracker, inv, reports(T0 + 8 * S)).gone == [(o.client_id, OrderState.CANCELED)]


def test_a_timed_out_send_is_not_declared_gone_after_one_empty_listing() -> None:
    """Suspected: UNKNOWN sends declared gone after one empty ACTIVE listing, with no grace."""
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler(grace_ns=3 * S)
    o = tracker.new_order(
        tag="stall", side=Side.BUY, order_type="LIMIT", price=D(1000), size=D("0.001"), now=T0
    )
    tracker.on_unknown(o.client_id, "timeout")
    assert run(rec, tracker, inv, reports(T0 + S)).gone == []
    row = OrderStatusReport("JRF9", Side.BUY, "LIMIT", D(1000), D("0.001"), D(0))
    res = run(rec, tracker, inv, reports(T0 + 2 * S, active=(row,)))  # it did reach the venue
    assert res.found == [(o.client_id, "JRF9")] and res.adopted == [] and res.gone == []


def test_an_unknown_send_absent_twice_is_settled_as_not_resting() -> None:
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler(grace_ns=3 * S)
    o = tracker.new_order(
        tag="stall", side=Side.BUY, order_type="LIMIT", price=D(1000), size=D("0.001"), now=T0
    )
    tracker.on_unknown(o.client_id, "timeout")
    assert run(rec, tracker, inv, reports(T0 + S)).gone == []
    assert run(rec, tracker, inv, reports(T0 + 4 * S)).gone == [(o.client_id, OrderState.REJECTED)]


def test_an_order_we_never_tracked_is_adopted() -> None:
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler()
    row = OrderStatusReport("JRF-hand", Side.SELL, "LIMIT", D(2000), D("0.01"), D(0))
    assert run(rec, tracker, inv, reports(T0, active=(row,))).adopted == [row]


def test_missing_fills_come_oldest_first_and_each_once() -> None:
    inv, tracker, rec = inventory(), OrderTracker(), Reconciler()
    f9, f10, f11 = (fill(i, Side.BUY, 1000, "0.001") for i in (9, 10, 11))
    inv.apply_fill(f10)
    res = run(
        rec, tracker, inv, reports(T0, fills=(f11, f10, f9, f11), lots=((Side.BUY, D(1000), D("0.003")),))
    )
    assert res.fills == [f9, f11] and res.correction is None
