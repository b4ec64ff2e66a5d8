"""StallThenStrikeStrategy: the seed's §9 scenarios and SPEC §5, as a trader would notice them.

Pure unit tests: a real OrderTracker (fed the way the executor feeds it), a small fake inventory, hand-made
own-excluded board snapshots, and time as plain integers (monotonic ns).
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config.loader import StallStrategyConfig
from bot.engine.orders import OrderTracker
from bot.engine.strategy_stall import (
    CANCEL_RETRY_MS,
    CLOSE_RETRY_MS,
    RATE_RETRY_MS,
    StallThenStrikeStrategy,
    ceil_to_tick,
    floor_to_tick,
    is_stalled,
)
from bot.types.dto import (
    NS_PER_MS,
    Action,
    ActionKind,
    BoardSnapshot,
    DecisionMeta,
    OrderState,
    Reason,
    RunState,
    Side,
)

MS = NS_PER_MS
T0 = 1_000_000 * MS  # an arbitrary monotonic origin
D = Decimal
TICK = D(1)
NO_ACTION_REASONS = {
    Reason.NOT_STALLED,
    Reason.SPREAD_TOO_NARROW,
    Reason.INVENTORY_LIMIT,
    Reason.ORDERS_LIVE,
    Reason.ALREADY_STRUCK,
    Reason.WOULD_CROSS,
    Reason.NO_BOOK,
    Reason.PAUSED,
    Reason.STOPPED,
    Reason.KILLED,
    Reason.STALE_DATA,
    Reason.MARKET_CLOSED,
    Reason.RECONCILING,
    Reason.EXCHANGE_BACKOFF,
    Reason.STORAGE,
    Reason.RATE_BUDGET,
    Reason.CLOSE_PENDING,
    Reason.DUST,
}


# ---- fakes and helpers ----------------------------------------------------------------------------------
class FakeInventory:
    """The inventory interface the strategy reads; the kill limit is today's PnL."""

    def __init__(
        self,
        position: str = "0",
        avg: str | None = None,
        opened_at: int | None = None,
        pnl_today: str = "0",
        daily_limit: str = "-30000",
    ) -> None:
        self.position_btc = D(position)
        self.avg_price = D(avg) if avg is not None else None
        self.opened_at = opened_at
        self.pnl_today = D(pnl_today)
        self.daily_limit = D(daily_limit)
        self.kill_detail = ""
        self.marks: list[Decimal | None] = []

    def kill_check(self, mid: Decimal | None) -> Reason | None:
        self.marks.append(mid)
        if self.pnl_today <= self.daily_limit:
            self.kill_detail = f"today's PnL {self.pnl_today} reached {self.daily_limit}"
            return Reason.KILL_SWITCH
        self.kill_detail = ""
        return None


class FakeExecutor:
    """Registers actions in the tracker synchronously, as the real executor does; the venue accepts at
    once."""

    def __init__(self, tracker: OrderTracker, accept: bool = True) -> None:
        self.tracker = tracker
        self.accept = accept
        self._ids = itertools.count(1)

    def run(self, actions: list[Action], now: int) -> None:
        for a in actions:
            if a.kind is ActionKind.PLACE_LIMIT:
                assert a.side is not None and a.size is not None
                o = self.tracker.new_order(
                    tag=a.tag,
                    side=a.side,
                    order_type="LIMIT",
                    price=a.price,
                    size=a.size,
                    now=now,
                    ttl_ms=a.ttl_ms,
                    reason=a.reason,
                )
                if self.accept:
                    self.tracker.on_accepted(o.client_id, f"JRF{next(self._ids)}")
            elif a.kind is ActionKind.CLOSE_MARKET:
                assert a.side is not None and a.size is not None
                self.tracker.new_order(
                    tag=a.tag,
                    side=a.side,
                    order_type="MARKET",
                    price=None,
                    size=a.size,
                    now=now,
                    reason=a.reason,
                )
            elif a.kind in (ActionKind.CANCEL_ALL_STALL, ActionKind.CANCEL_ALL):
                tag = "stall" if a.kind is ActionKind.CANCEL_ALL_STALL else None
                for o in self.tracker.open_orders(tag=tag):
                    self.tracker.on_cancel_requested(o.client_id)

    def confirm_cancels(self) -> None:
        """The venue's CANCEL events arrive."""
        for o in self.tracker.open_orders():
            if o.state is OrderState.PENDING_CANCEL:
                self.tracker.settle(o.client_id, OrderState.CANCELED)


def board(bid: str | None, ask: str | None, changed_at: int, *, stale: bool = False) -> BoardSnapshot:
    return BoardSnapshot.from_prices(
        D(bid) if bid is not None else None,
        D(ask) if ask is not None else None,
        tick_size=TICK,
        best_changed_at=changed_at,
        stale=stale,
        bid_size=D("0.1"),
        ask_size=D("0.1"),
    )


def cfg(**kw: Any) -> StallStrategyConfig:
    base: dict[str, Any] = {
        "stall_T_ms": 250,
        "ttl_ms": 800,
        "size_min": D("0.001"),
        "max_inventory_btc": D("0.2"),
    }
    base.update(kw)
    return StallStrategyConfig(**base)


class Rig:
    def __init__(self, inv: FakeInventory | None = None, tick: Decimal = TICK, **kw: Any) -> None:
        self.tracker = OrderTracker()
        self.inv = inv or FakeInventory()
        self.strategy = StallThenStrikeStrategy(cfg(**kw), tick, self.inv, orders=self.tracker)
        self.executor = FakeExecutor(self.tracker)

    def decide(self, b: BoardSnapshot, now: int, execute: bool = True) -> tuple[list[Action], DecisionMeta]:
        actions, meta = self.strategy.on_board(b, now)
        assert list(meta.actions) == actions
        if not actions:
            assert meta.reason in NO_ACTION_REASONS, meta
        if execute:
            self.executor.run(actions, now)
        return actions, meta

    def stall_orders(self) -> list[Any]:
        return self.tracker.open_orders(tag="stall")


def places(actions: list[Action]) -> dict[Side, Decimal]:
    return {a.side: a.price for a in actions if a.kind is ActionKind.PLACE_LIMIT}  # type: ignore[misc]


def kinds(actions: list[Action]) -> list[ActionKind]:
    return [a.kind for a in actions]


STALLED = T0 + 250 * MS  # the stall instant for a best that changed at T0 with stall_T_ms = 250


# ---- price helpers and the stall rule ------------------------------------------------------------------
def test_tick_rounding_goes_away_from_the_other_side() -> None:
    assert floor_to_tick(D("104.5"), D(1)) == D(104)
    assert ceil_to_tick(D("104.5"), D(1)) == D(105)
    assert floor_to_tick(D("104"), D(1)) == ceil_to_tick(D("104"), D(1)) == D(104)
    assert floor_to_tick(D("10.26"), D("0.05")) == D("10.25")
    assert ceil_to_tick(D("10.26"), D("0.05")) == D("10.30")


def test_is_stalled_needs_a_fresh_two_sided_book_unchanged_for_stall_T() -> None:
    b = board("100", "110", T0)
    assert not is_stalled(b, STALLED - 1, 250)
    assert is_stalled(b, STALLED, 250)
    assert not is_stalled(board("100", "110", T0, stale=True), STALLED + 10**9, 250)
    assert not is_stalled(board("100", None, T0), STALLED + 10**9, 250)


# ---- the strike ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "offset", "bid", "ask", "want_bid", "want_ask"),
    [
        ("mid", 1, "100", "110", "104", "106"),  # even spread: mid 105 on the grid
        ("mid", 1, "100", "111", "104", "107"),  # odd spread: mid 105.5 rounds outwards
        ("mid", 0, "100", "103", "101", "102"),  # offset 0, odd spread: the two ticks around mid
        ("mid", 1, "100", "101", "99", "102"),  # 1-tick spread: quotes behind the best, never crossing
        ("mid", 3, "100", "1100", "597", "603"),
        ("inside", 1, "100", "110", "101", "109"),
        ("inside", 0, "100", "110", "100", "110"),  # offset 0 joins the best
        ("inside", 2, "100", "105", "102", "103"),
    ],
)
def test_stall_strikes_both_sides_at_the_configured_prices(
    mode: str, offset: int, bid: str, ask: str, want_bid: str, want_ask: str
) -> None:
    rig = Rig(quote_mode=mode, quote_offset_ticks=offset, ttl_ms=700, size_min=D("0.002"))
    actions, meta = rig.decide(board(bid, ask, T0), STALLED)
    assert meta.reason is Reason.STRIKE
    assert places(actions) == {Side.BUY: D(want_bid), Side.SELL: D(want_ask)}
    assert (meta.entry_bid_px, meta.entry_ask_px) == (D(want_bid), D(want_ask))
    for a in actions:
        assert (a.kind, a.size, a.ttl_ms, a.tag, a.reason) == (
            ActionKind.PLACE_LIMIT,
            D("0.002"),
            700,
            "stall",
            Reason.STRIKE,
        )


@pytest.mark.parametrize(
    ("mode", "offset", "bid", "ask"),
    [
        ("mid", 0, "100", "102"),  # both at mid 101: our bid and ask would trade with each other
        ("inside", 1, "100", "101"),  # bid 101 = best ask, ask 100 = best bid
        ("inside", 1, "100", "102"),  # both at 101
        ("inside", 5, "100", "104"),  # past each other
    ],
)
def test_quotes_that_would_cross_are_not_sent(mode: str, offset: int, bid: str, ask: str) -> None:
    rig = Rig(quote_mode=mode, quote_offset_ticks=offset)
    actions, meta = rig.decide(board(bid, ask, T0), STALLED)
    assert actions == []
    assert meta.reason is Reason.WOULD_CROSS
    assert "skipped" in meta.detail


def test_one_crossing_side_is_skipped_and_the_other_still_placed() -> None:
    # inside with offset 3 on a 4-tick spread: bid 103 < ask 104 fine, ask 101 > bid 100 fine, but bid 103 >=
    # 101
    rig = Rig(quote_mode="inside", quote_offset_ticks=3, min_spread_tick=1)
    actions, meta = rig.decide(board("100", "104", T0), STALLED)
    assert actions == [] and meta.reason is Reason.WOULD_CROSS
    # long at the limit: only the SELL is wanted; inside offset 1 on a 1-tick spread crosses -> nothing
    rig = Rig(FakeInventory("0.2", "100"), quote_mode="inside", quote_offset_ticks=1)
    actions, meta = rig.decide(board("100", "101", T0), STALLED)
    assert actions == [] and meta.reason is Reason.WOULD_CROSS
    # long at the limit, wide spread: the SELL goes alone, the BUY's skip is explained
    rig = Rig(FakeInventory("0.2", "100"), quote_mode="inside", quote_offset_ticks=1)
    actions, meta = rig.decide(board("100", "110", T0), STALLED)
    assert places(actions) == {Side.SELL: D(109)}
    assert meta.reason is Reason.STRIKE and "BUY skipped" in meta.detail


def test_not_yet_stalled_does_nothing_and_names_the_stall_instant_as_deadline() -> None:
    rig = Rig()
    b = board("100", "110", T0)
    actions, meta = rig.decide(b, T0 + 100 * MS)
    assert actions == [] and meta.reason is Reason.NOT_STALLED
    assert meta.best_age_ms == 100 and meta.spread_ticks == 10
    assert rig.strategy.next_deadline(T0 + 100 * MS) == STALLED
    # waking exactly at the deadline strikes
    actions, meta = rig.decide(b, STALLED)
    assert meta.reason is Reason.STRIKE and len(actions) == 2


def test_spread_too_narrow_and_no_book() -> None:
    rig = Rig(min_spread_tick=5)
    actions, meta = rig.decide(board("100", "104", T0), STALLED)
    assert actions == [] and meta.reason is Reason.SPREAD_TOO_NARROW
    actions, meta = rig.decide(board("100", None, T0), STALLED)
    assert actions == [] and meta.reason is Reason.NO_BOOK
    actions, meta = rig.decide(board(None, "104", T0), STALLED)
    assert actions == [] and meta.reason is Reason.NO_BOOK


def test_one_strike_per_stall_then_again_after_a_new_stall() -> None:
    rig = Rig()
    b = board("100", "110", T0)
    actions, _ = rig.decide(b, STALLED)
    assert len(actions) == 2
    _, meta = rig.decide(b, STALLED + 10 * MS)
    assert meta.reason is Reason.ORDERS_LIVE
    # TTL pulls them; once gone, the same stall still gets no second strike
    actions, meta = rig.decide(b, STALLED + 800 * MS)
    assert kinds(actions) == [ActionKind.CANCEL_ALL_STALL] and meta.reason is Reason.TTL_EXPIRED
    rig.executor.confirm_cancels()
    actions, meta = rig.decide(b, STALLED + 5000 * MS)
    assert actions == [] and meta.reason is Reason.ALREADY_STRUCK
    assert rig.strategy.next_deadline(STALLED + 5000 * MS) is None
    # the best moves: a new stall forms after stall_T_ms and is struck
    t1 = STALLED + 6000 * MS
    b2 = board("101", "110", t1)
    actions, meta = rig.decide(b2, t1 + 249 * MS)
    assert actions == [] and meta.reason is Reason.NOT_STALLED
    assert rig.strategy.next_deadline(t1 + 249 * MS) == t1 + 250 * MS
    actions, meta = rig.decide(b2, t1 + 250 * MS)
    assert meta.reason is Reason.STRIKE and len(actions) == 2


# ---- cancels ---------------------------------------------------------------------------------------------
def test_best_change_cancels_the_stall_orders_once() -> None:
    rig = Rig()
    rig.decide(board("100", "110", T0), STALLED)
    moved = board("101", "110", STALLED + 30 * MS)
    actions, meta = rig.decide(moved, STALLED + 30 * MS)
    assert kinds(actions) == [ActionKind.CANCEL_ALL_STALL]
    assert actions[0].reason is Reason.BEST_CHANGED and meta.reason is Reason.BEST_CHANGED
    # cancel in flight (PENDING_CANCEL): no second cancel, no new entry
    actions, meta = rig.decide(moved, STALLED + 40 * MS)
    assert actions == [] and meta.reason is Reason.ORDERS_LIVE


def test_best_change_between_decision_and_placement_still_cancels() -> None:
    rig = Rig()
    actions, _ = rig.decide(board("100", "110", T0), STALLED, execute=False)
    rig.executor.run(actions, STALLED + 5 * MS)  # the executor stamps placed_at a little later
    actions, meta = rig.decide(board("100", "109", STALLED + 2 * MS), STALLED + 6 * MS)
    assert meta.reason is Reason.BEST_CHANGED


def test_best_change_keeps_orders_when_cancel_on_best_change_is_off() -> None:
    rig = Rig(cancel_on_best_change=False)
    rig.decide(board("100", "110", T0), STALLED)
    actions, meta = rig.decide(board("101", "110", STALLED + 30 * MS), STALLED + 30 * MS)
    assert actions == [] and meta.reason is Reason.ORDERS_LIVE
    actions, meta = rig.decide(board("101", "110", STALLED + 30 * MS), STALLED + 800 * MS)
    assert meta.reason is Reason.TTL_EXPIRED


def test_ttl_expiry_is_the_next_deadline_and_cancels() -> None:
    rig = Rig(ttl_ms=800)
    b = board("100", "110", T0)
    rig.decide(b, STALLED)
    assert rig.strategy.next_deadline(STALLED) == STALLED + 800 * MS
    actions, meta = rig.decide(b, STALLED + 799 * MS)
    assert actions == [] and meta.reason is Reason.ORDERS_LIVE
    actions, meta = rig.decide(b, STALLED + 800 * MS)
    assert kinds(actions) == [ActionKind.CANCEL_ALL_STALL] and meta.reason is Reason.TTL_EXPIRED
    # all cancels in flight: nothing pending that time alone would change
    assert rig.strategy.next_deadline(STALLED + 800 * MS) is None


def test_unconfirmed_orders_are_asked_to_cancel_once_then_retried_not_stormed() -> None:
    rig = Rig(ttl_ms=800)
    rig.executor.accept = False  # the sends time out: orders stay PENDING_NEW, a cancel cannot change that
    b = board("100", "110", T0)
    rig.decide(b, STALLED)
    expiry = STALLED + 800 * MS
    actions, meta = rig.decide(b, expiry)
    assert meta.reason is Reason.TTL_EXPIRED
    for dt in (1, 50, 300, CANCEL_RETRY_MS - 1):
        actions, meta = rig.decide(b, expiry + dt * MS)
        assert actions == [] and meta.reason is Reason.ORDERS_LIVE
    assert rig.strategy.next_deadline(expiry + 1 * MS) == expiry + CANCEL_RETRY_MS * MS
    actions, meta = rig.decide(b, expiry + CANCEL_RETRY_MS * MS)
    assert meta.reason is Reason.TTL_EXPIRED


@pytest.mark.parametrize("how", ["board", "gate"])
def test_stale_data_cancels_stall_orders_and_blocks_entries(how: str) -> None:
    rig = Rig()
    rig.decide(board("100", "110", T0), STALLED)
    now = STALLED + 100 * MS
    if how == "board":
        b = board("100", "110", T0, stale=True)
    else:
        b = board("100", "110", T0)
        rig.strategy.gate.block_reason = Reason.STALE_DATA
    actions, meta = rig.decide(b, now)
    assert kinds(actions) == [ActionKind.CANCEL_ALL_STALL] and meta.reason is Reason.STALE_DATA
    rig.executor.confirm_cancels()
    # a new stall on stale data is never struck
    actions, meta = rig.decide(board("90", "110", now, stale=(how == "board")), now + 10_000 * MS)
    assert actions == [] and meta.reason is Reason.STALE_DATA


def test_pause_cancels_stall_orders_and_places_nothing() -> None:
    rig = Rig()
    b = board("100", "110", T0)
    rig.decide(b, STALLED)
    rig.strategy.gate.run_state = RunState.PAUSED
    actions, meta = rig.decide(b, STALLED + 10 * MS)
    assert kinds(actions) == [ActionKind.CANCEL_ALL_STALL] and meta.reason is Reason.PAUSED
    rig.executor.confirm_cancels()
    b2 = board("90", "110", STALLED + 20 * MS)
    actions, meta = rig.decide(b2, STALLED + 10_000 * MS)
    assert actions == [] and meta.reason is Reason.PAUSED
    assert rig.strategy.next_deadline(STALLED + 10_000 * MS) is None
    # resume: the runner's next deadline query says "now", and the next decision strikes the waiting stall
    rig.strategy.gate.run_state = RunState.RUNNING
    assert rig.strategy.next_deadline(STALLED + 10_001 * MS) == STALLED + 10_001 * MS
    actions, meta = rig.decide(b2, STALLED + 10_001 * MS)
    assert meta.reason is Reason.STRIKE


@pytest.mark.parametrize(
    "block", [Reason.MARKET_CLOSED, Reason.RECONCILING, Reason.EXCHANGE_BACKOFF, Reason.STORAGE]
)
def test_blocked_gate_places_nothing_but_still_pulls_expired_orders(block: Reason) -> None:
    rig = Rig()
    b = board("100", "110", T0)
    rig.strategy.gate.block_reason = block
    actions, meta = rig.decide(b, STALLED)
    assert actions == [] and meta.reason is block
    rig.strategy.gate.block_reason = None
    rig.decide(b, STALLED + 1 * MS)
    rig.strategy.gate.block_reason = block
    actions, meta = rig.decide(b, STALLED + 900 * MS)
    assert meta.reason is Reason.TTL_EXPIRED


def test_stopped_sends_nothing_at_all() -> None:
    inv = FakeInventory("0.01", "1000", opened_at=T0, pnl_today="-99999")
    rig = Rig(inv, max_hold_ms=1)
    rig.strategy.gate.run_state = RunState.STOPPED
    # a stall, an expired stall order, an adverse move, a hold timeout and a kill limit: still no order
    rig.tracker.new_order(
        tag="stall", side=Side.BUY, order_type="LIMIT", price=D(99), size=D("0.001"), now=T0, ttl_ms=1
    )
    actions, meta = rig.decide(board("100", "110", T0), STALLED)
    assert actions == [] and meta.reason is Reason.STOPPED
    assert rig.strategy.next_deadline(STALLED) is None
    assert not rig.strategy.killed


# ---- protective exits ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("position", "bid", "ask", "fires", "close_side"),
    [
        ("0.003", "998", "1010", True, Side.SELL),  # long 1000, bid 998 <= 1000 - 2
        ("0.003", "999", "1010", False, None),  # one tick against: hold
        ("-0.003", "990", "1002", True, Side.BUY),  # short 1000, ask 1002 >= 1000 + 2
        ("-0.003", "990", "1001", False, None),
    ],
)
def test_adverse_move_closes_the_whole_position(
    position: str, bid: str, ask: str, fires: bool, close_side: Side | None
) -> None:
    rig = Rig(FakeInventory(position, "1000", opened_at=T0), max_reverse_ticks=2, min_spread_tick=1000)
    actions, meta = rig.decide(board(bid, ask, T0), T0 + 10 * MS)
    if fires:
        assert meta.reason is Reason.REVERSE_STOP
        (close,) = actions
        assert (close.kind, close.side, close.size, close.tag) == (
            ActionKind.CLOSE_MARKET,
            close_side,
            D("0.003"),
            "close",
        )
        # the close is in flight: no second close
        actions, meta = rig.decide(board(bid, ask, T0), T0 + 20 * MS)
        assert actions == [] and meta.reason is Reason.CLOSE_PENDING
    else:
        assert actions == [] and meta.reason is Reason.NOT_STALLED


@pytest.mark.parametrize(
    ("position", "bid", "ask", "ref", "fires"),
    [
        # long 1000 filled at mid inside a 200-tick spread: the far best is 100 ticks away at once
        ("0.001", "900", "1100", "best", True),
        ("0.001", "900", "1100", "mid", False),  # the mid (1000) has not moved against us
        ("0.001", "897", "1099", "mid", True),  # mid 998 <= 1000 - 2
        ("-0.001", "900", "1100", "best", True),
        ("-0.001", "900", "1100", "mid", False),
        ("-0.001", "903", "1101", "mid", True),  # mid 1002 >= 1000 + 2
    ],
)
def test_reverse_ref_mid_measures_the_adverse_move_from_the_mid_not_the_far_best(
    position: str, bid: str, ask: str, ref: str, fires: bool
) -> None:
    rig = Rig(FakeInventory(position, "1000", opened_at=T0), max_reverse_ticks=2, reverse_ref=ref)
    actions, meta = rig.decide(board(bid, ask, T0), T0 + 10 * MS)
    if fires:
        assert meta.reason is Reason.REVERSE_STOP and kinds(actions) == [ActionKind.CLOSE_MARKET]
        assert ("mid" if ref == "mid" else "best") in meta.detail
    else:
        assert actions == [] and meta.reason is Reason.NOT_STALLED


def test_reverse_ref_defaults_to_best_and_refuses_other_values() -> None:
    assert StallStrategyConfig().reverse_ref == "best"
    with pytest.raises(ValueError, match="reverse_ref"):
        StallStrategyConfig(reverse_ref="last")  # type: ignore[arg-type]


def test_dust_position_is_never_closed_by_a_protective_exit() -> None:
    """Defect 4: after a partial fill, a position below exchange.min_size (0.001) was closed with a MARKET
    order the venue must refuse (-110), again and again. A dust position is left alone, with the reason
    `dust`."""
    rig = Rig(
        FakeInventory("0.0004", "1000", opened_at=T0),
        max_reverse_ticks=2,
        min_spread_tick=1000,
        max_hold_ms=100,
    )
    actions, meta = rig.decide(board("990", "1010", T0), T0 + 10 * MS)  # adverse move
    assert actions == [] and meta.reason is Reason.DUST and "0.0004" in meta.detail
    actions, meta = rig.decide(board("1000", "1010", T0), T0 + 200 * MS)  # hold timeout
    assert actions == [] and meta.reason is Reason.DUST and "hold_timeout skipped" in meta.detail
    assert rig.strategy.next_deadline(T0 + 200 * MS) == T0 + 250 * MS  # the stall, not a close retry
    rig.inv.position_btc = D("-0.001")  # at min size: closed as usual
    actions, meta = rig.decide(board("1000", "1003", T0), T0 + 300 * MS)
    assert meta.reason is Reason.REVERSE_STOP and kinds(actions) == [ActionKind.CLOSE_MARKET]
    assert actions[0].size == D("0.001")


def test_adverse_move_cancels_stall_orders_before_closing() -> None:
    inv = FakeInventory()
    rig = Rig(inv)
    rig.decide(board("1000", "1010", T0), STALLED)  # bid 1004 / ask 1006
    inv.position_btc, inv.avg_price, inv.opened_at = D("0.001"), D(1004), STALLED + 5 * MS  # the bid filled
    actions, meta = rig.decide(board("1001", "1010", STALLED + 10 * MS), STALLED + 10 * MS)
    assert meta.reason is Reason.REVERSE_STOP
    assert kinds(actions) == [ActionKind.CANCEL_ALL_STALL, ActionKind.CLOSE_MARKET]
    assert actions[1].side is Side.SELL and actions[1].size == D("0.001")


def test_adverse_move_with_one_sided_book_does_not_guess() -> None:
    rig = Rig(FakeInventory("0.003", "1000"))
    actions, meta = rig.decide(board(None, "900", T0), T0 + 10 * MS)  # long, no bid: no reverse check
    assert actions == [] and meta.reason is Reason.NO_BOOK


def test_adverse_move_fires_while_paused_and_on_stale_data_but_waits_out_reconciliation() -> None:
    rig = Rig(FakeInventory("0.003", "1000"))
    rig.strategy.gate.run_state = RunState.PAUSED
    actions, meta = rig.decide(board("990", "1010", T0), T0 + 10 * MS, execute=False)
    assert meta.reason is Reason.REVERSE_STOP and kinds(actions) == [ActionKind.CLOSE_MARKET]
    rig.strategy.gate.run_state = RunState.RUNNING
    rig.strategy.gate.block_reason = Reason.STALE_DATA
    t = T0 + 10 * MS + CLOSE_RETRY_MS * MS  # (the first close was refused; the retry pacing has passed)
    actions, meta = rig.decide(board("990", "1010", T0, stale=True), t, execute=False)
    assert meta.reason is Reason.REVERSE_STOP
    rig = Rig(FakeInventory("0.003", "1000"))
    rig.strategy.gate.block_reason = Reason.RECONCILING  # our position may be wrong: no close yet
    actions, meta = rig.decide(board("990", "1010", T0), T0 + 30 * MS)
    assert actions == [] and meta.reason is Reason.RECONCILING and "reverse_stop" in meta.detail
    rig.strategy.gate.block_reason = None  # reconciled: the runner is told to decide at once
    assert rig.strategy.next_deadline(T0 + 31 * MS) == T0 + 31 * MS
    actions, meta = rig.decide(board("990", "1010", T0), T0 + 31 * MS)
    assert meta.reason is Reason.REVERSE_STOP


def test_a_reverse_stop_still_closes_while_the_disk_refuses_writes() -> None:
    """Fail-closed storage stops entries only: a protective exit must not wait for the disk."""
    rig = Rig(FakeInventory("0.003", "1000"))
    rig.strategy.gate.block_reason = Reason.STORAGE
    actions, meta = rig.decide(board("990", "1010", T0), T0 + 10 * MS, execute=False)
    assert meta.reason is Reason.REVERSE_STOP and kinds(actions) == [ActionKind.CLOSE_MARKET]


def test_a_refused_close_is_retried_at_a_paced_rate_not_at_every_board_message() -> None:
    rig = Rig(FakeInventory("0.003", "1000"))
    b = board("990", "1010", T0)
    actions, meta = rig.decide(b, T0, execute=False)
    assert meta.reason is Reason.REVERSE_STOP  # the venue refuses it: no close order stays live
    for dt in (140, 280, CLOSE_RETRY_MS - 1):
        actions, meta = rig.decide(b, T0 + dt * MS, execute=False)
        assert actions == [] and meta.reason is Reason.CLOSE_PENDING
    assert rig.strategy.next_deadline(T0 + 300 * MS) == T0 + CLOSE_RETRY_MS * MS
    actions, meta = rig.decide(b, T0 + CLOSE_RETRY_MS * MS, execute=False)
    assert meta.reason is Reason.REVERSE_STOP and kinds(actions) == [ActionKind.CLOSE_MARKET]


def test_hold_timeout_closes_and_is_a_deadline() -> None:
    opened = T0 + 500 * MS
    rig = Rig(FakeInventory("-0.002", "1009", opened_at=opened), max_hold_ms=3000, min_spread_tick=1000)
    b = board("1000", "1010", T0)
    actions, meta = rig.decide(b, opened + 2999 * MS)
    assert actions == [] and meta.reason is Reason.SPREAD_TOO_NARROW
    assert rig.strategy.next_deadline(opened + 2999 * MS) == opened + 3000 * MS
    actions, meta = rig.decide(b, opened + 3000 * MS)
    assert meta.reason is Reason.HOLD_TIMEOUT
    (close,) = actions
    assert (close.kind, close.side, close.size, close.tag) == (
        ActionKind.CLOSE_MARKET,
        Side.BUY,
        D("0.002"),
        "close",
    )


def test_hold_timeout_off_by_default() -> None:
    rig = Rig(FakeInventory("0.002", "1005", opened_at=T0), min_spread_tick=1000)
    actions, meta = rig.decide(board("1004", "1014", T0), T0 + 10**12)
    assert actions == [] and meta.reason is Reason.SPREAD_TOO_NARROW


# ---- kill switch -----------------------------------------------------------------------------------------
def test_kill_limit_cancels_all_closes_and_latches() -> None:
    inv = FakeInventory("0.004", "1000", pnl_today="-30000")
    rig = Rig(inv)
    b = board("1000", "1010", T0)
    actions, meta = rig.decide(b, T0 + 1 * MS)
    assert meta.reason is Reason.KILL_SWITCH and "reached" in meta.detail
    assert kinds(actions) == [ActionKind.CANCEL_ALL, ActionKind.CLOSE_MARKET]
    assert (actions[1].side, actions[1].size, actions[1].tag) == (Side.SELL, D("0.004"), "close")
    assert inv.marks[-1] == D(1005)  # marked to the own-excluded mid
    assert rig.strategy.killed
    # PnL recovers, a perfect stall forms, an adverse move appears: still nothing, reason KILLED
    inv.pnl_today = D(5000)
    for t in (STALLED, STALLED + 10**10):
        actions, meta = rig.decide(board("900", "1100", T0), t)
        assert actions == [] and meta.reason is Reason.KILLED
    assert rig.strategy.next_deadline(STALLED + 10**10) is None


def test_kill_with_flat_position_only_cancels_and_fires_while_paused() -> None:
    rig = Rig(FakeInventory(pnl_today="-50000"))
    rig.strategy.gate.run_state = RunState.PAUSED
    actions, meta = rig.decide(board("1000", "1010", T0), T0)
    assert kinds(actions) == [ActionKind.CANCEL_ALL] and meta.reason is Reason.KILL_SWITCH


def test_killed_gate_does_nothing_and_a_human_reset_clears_the_latch() -> None:
    inv = FakeInventory(pnl_today="-50000")
    rig = Rig(inv)
    b = board("1000", "1010", T0)
    rig.decide(b, T0)
    rig.strategy.gate.run_state = RunState.KILLED  # the runner saw KILL_SWITCH
    actions, meta = rig.decide(b, STALLED)
    assert actions == [] and meta.reason is Reason.KILLED
    inv.pnl_today = D(0)
    rig.strategy.gate.run_state = RunState.STOPPED  # POST /strategy/reset
    _, meta = rig.decide(b, STALLED + 1)
    assert meta.reason is Reason.STOPPED and not rig.strategy.killed
    rig.strategy.gate.run_state = RunState.RUNNING
    actions, meta = rig.decide(b, STALLED + 2)
    assert meta.reason is Reason.STRIKE


def test_reset_kill_clears_the_latch_explicitly() -> None:
    inv = FakeInventory(pnl_today="-50000")
    rig = Rig(inv)
    rig.decide(board("1000", "1010", T0), T0)
    inv.pnl_today = D(0)
    rig.strategy.reset_kill()
    _, meta = rig.decide(board("1000", "1010", T0), STALLED)
    assert meta.reason is Reason.STRIKE


def test_kill_does_not_double_close_when_a_close_is_live() -> None:
    inv = FakeInventory("0.003", "1000")
    rig = Rig(inv)
    rig.decide(board("990", "1010", T0), T0)  # reverse stop: close in flight
    inv.pnl_today = D(-40000)
    actions, meta = rig.decide(board("980", "1010", T0 + MS), T0 + MS)
    assert kinds(actions) == [ActionKind.CANCEL_ALL] and meta.reason is Reason.KILL_SWITCH


# ---- inventory limit and rate budget --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("position", "placed"),
    [
        ("0.2", {Side.SELL}),  # long at the limit: only the reducing SELL
        ("-0.2", {Side.BUY}),
        ("0.199", {Side.BUY, Side.SELL}),  # a full fill lands exactly on the limit: allowed
        ("0.1995", {Side.SELL}),
        ("0.5", {Side.SELL}),  # over the limit (limit lowered live): still may reduce
    ],
)
def test_inventory_limit_blocks_only_the_growing_side(position: str, placed: set[Side]) -> None:
    rig = Rig(
        FakeInventory(position, "1005"),
        max_inventory_btc=D("0.2"),
        size_min=D("0.001"),
        max_reverse_ticks=100,
    )
    actions, meta = rig.decide(board("1000", "1010", T0), STALLED)
    assert set(places(actions)) == placed and meta.reason is Reason.STRIKE


def test_rate_budget_skips_the_strike_without_using_up_the_stall() -> None:
    rig = Rig()
    b = board("100", "110", T0)
    rig.strategy.gate.order_budget = 1
    actions, meta = rig.decide(b, STALLED)
    assert actions == [] and meta.reason is Reason.RATE_BUDGET
    assert rig.strategy.next_deadline(STALLED) == STALLED + RATE_RETRY_MS * MS  # when it may grow: unknown
    rig.strategy.gate.order_budget = 2
    actions, meta = rig.decide(b, STALLED + RATE_RETRY_MS * MS)
    assert meta.reason is Reason.STRIKE and len(actions) == 2


def test_a_strike_the_rate_budget_holds_back_is_tried_again_when_the_budget_grows() -> None:
    rig = Rig()
    b = board("100", "110", T0)
    rig.strategy.gate.order_budget = 0
    rig.strategy.gate.order_budget_grows_at = STALLED + 7_000 * MS  # the oldest send leaves the window then
    actions, meta = rig.decide(b, STALLED)
    assert actions == [] and meta.reason is Reason.RATE_BUDGET
    assert rig.strategy.next_deadline(STALLED) == STALLED + 7_000 * MS  # not every 100 ms meanwhile
    rig.strategy.gate.order_budget = 2
    actions, meta = rig.decide(b, STALLED + 7_000 * MS)
    assert meta.reason is Reason.STRIKE and len(actions) == 2


def test_one_sided_strike_needs_budget_for_one_order() -> None:
    rig = Rig(FakeInventory("0.2", "1005"), max_reverse_ticks=100)
    rig.strategy.gate.order_budget = 1
    actions, meta = rig.decide(board("1000", "1010", T0), STALLED)
    assert meta.reason is Reason.STRIKE and set(places(actions)) == {Side.SELL}
    rig = Rig()
    rig.strategy.gate.order_budget = 0
    _, meta = rig.decide(board("1000", "1010", T0), STALLED)
    assert meta.reason is Reason.RATE_BUDGET


# ---- live config ---------------------------------------------------------------------------------------
def test_shortening_stall_T_makes_the_current_stall_strikeable_at_once() -> None:
    rig = Rig(stall_T_ms=250)
    b = board("100", "110", T0)
    now = T0 + 150 * MS
    _, meta = rig.decide(b, now)
    assert meta.reason is Reason.NOT_STALLED
    assert rig.strategy.next_deadline(now) == T0 + 250 * MS
    rig.strategy.update_config(cfg(stall_T_ms=100))
    assert rig.strategy.next_deadline(now + 1) == now + 1  # due now: wake the runner
    actions, meta = rig.decide(b, now + 1)
    assert meta.reason is Reason.STRIKE and len(actions) == 2


def test_lengthening_stall_T_moves_the_deadline_out() -> None:
    rig = Rig(stall_T_ms=250)
    b = board("100", "110", T0)
    rig.decide(b, T0 + 100 * MS)
    rig.strategy.update_config(cfg(stall_T_ms=1000))
    assert rig.strategy.next_deadline(T0 + 101 * MS) == T0 + 101 * MS  # decide once with the new config
    _, meta = rig.decide(b, T0 + 101 * MS)
    assert meta.reason is Reason.NOT_STALLED
    assert rig.strategy.next_deadline(T0 + 101 * MS) == T0 + 1000 * MS
    _, meta = rig.decide(b, T0 + 300 * MS)
    assert meta.reason is Reason.NOT_STALLED


def test_config_change_of_quote_mode_applies_to_the_next_strike() -> None:
    rig = Rig(quote_mode="mid")
    rig.strategy.update_config(cfg(quote_mode="inside", quote_offset_ticks=2))
    actions, _ = rig.decide(board("100", "110", T0), STALLED)
    assert places(actions) == {Side.BUY: D(102), Side.SELL: D(108)}


def test_handled_past_deadlines_do_not_make_the_runner_spin() -> None:
    rig = Rig(min_spread_tick=50)
    b = board("100", "110", T0)
    _, meta = rig.decide(b, STALLED)
    assert meta.reason is Reason.SPREAD_TOO_NARROW
    assert rig.strategy.next_deadline(STALLED) is None
    # a deadline that passed between decisions (late timer) is still reported, as "now"
    rig2 = Rig()
    rig2.decide(b, T0 + 10 * MS)
    assert rig2.strategy.next_deadline(STALLED + 5 * MS) == STALLED + 5 * MS


def test_no_board_yet_means_no_deadline() -> None:
    assert Rig().strategy.next_deadline(T0) is None


# ---- own orders do not reset the stall: the real BoardStore + OrderBookView ---------------------------
def _frame(
    channel: str, mid: float, bids: list[tuple[float, float]], asks: list[tuple[float, float]]
) -> dict:
    return {
        "jsonrpc": "2.0",
        "method": "channelMessage",
        "params": {
            "channel": channel,
            "message": {
                "mid_price": mid,
                "bids": [{"price": p, "size": q} for p, q in bids],
                "asks": [{"price": p, "size": q} for p, q in asks],
            },
        },
    }


def test_own_order_inside_the_spread_does_not_reset_the_stall() -> None:
    obv = pytest.importorskip(
        "bot.infra.orderbook_view", reason="bot/infra/orderbook_view.py not written yet"
    )
    from bot.infra.board_store import BoardStore

    store = BoardStore("FX_BTC_JPY")
    rig = Rig()
    view = obv.OrderBookView(store, "FX_BTC_JPY", TICK, rig.tracker)
    naive = obv.OrderBookView(store, "FX_BTC_JPY", TICK, OrderTracker())  # sees our orders as the market
    store.onmessage(
        _frame(
            "lightning_board_snapshot_FX_BTC_JPY",
            1005.0,
            [(1000.0, 0.5), (999.0, 1.0)],
            [(1010.0, 0.4), (1011.0, 1.0)],
        )
    )
    view.snapshot(T0)
    naive.snapshot(T0)
    actions, meta = rig.decide(view.snapshot(STALLED), STALLED)
    assert meta.reason is Reason.STRIKE and places(actions) == {Side.BUY: D(1004), Side.SELL: D(1006)}
    # the exchange's feed now shows our own bid 1004 and ask 1006 inside the spread
    store.onmessage(_frame("lightning_board_FX_BTC_JPY", 1005.0, [(1004.0, 0.001)], [(1006.0, 0.001)]))
    t = STALLED + 40 * MS
    snap = view.snapshot(t)
    assert (snap.best_bid_price, snap.best_ask_price, snap.best_changed_at) == (D(1000), D(1010), T0)
    actions, meta = rig.decide(snap, t)
    assert actions == [] and meta.reason is Reason.ORDERS_LIVE  # our quotes stay up
    naive_snap = naive.snapshot(t)
    assert naive_snap.best_bid_price == D(1004)  # what a view that kept our orders would have called "best"
    _, naive_meta = Rig().strategy.on_board(naive_snap, t)
    assert naive_meta.reason is Reason.NOT_STALLED  # ... and its stall clock would have restarted
    # someone else joins our bid: the market's best really moved, so our quotes are pulled
    store.onmessage(_frame("lightning_board_FX_BTC_JPY", 1005.0, [(1004.0, 0.003)], []))
    t2 = t + 10 * MS
    snap = view.snapshot(t2)
    assert snap.best_bid_price == D(1004) and snap.best_bid_size == D("0.002")
    actions, meta = rig.decide(snap, t2)
    assert kinds(actions) == [ActionKind.CANCEL_ALL_STALL] and meta.reason is Reason.BEST_CHANGED


# ---- properties over random books ----------------------------------------------------------------------
ticks = st.sampled_from([D(1), D("0.5"), D(5), D("0.01")])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tick=ticks,
    bid_ticks=st.integers(min_value=1, max_value=20_000_000),
    spread=st.integers(min_value=-3, max_value=3000),
    mode=st.sampled_from(["mid", "inside"]),
    offset=st.integers(min_value=0, max_value=2000),
    position_units=st.integers(min_value=-250, max_value=250),
)
def test_quotes_always_on_grid_and_never_cross(
    tick: Decimal, bid_ticks: int, spread: int, mode: str, offset: int, position_units: int
) -> None:
    bid = bid_ticks * tick
    ask = bid + spread * tick
    inv = FakeInventory(str(D("0.001") * position_units), str(bid) if position_units else None)
    tracker = OrderTracker()
    c = cfg(quote_mode=mode, quote_offset_ticks=offset, max_reverse_ticks=10**6)
    s = StallThenStrikeStrategy(c, tick, inv, orders=tracker)
    b = BoardSnapshot.from_prices(bid, ask, tick_size=tick, best_changed_at=T0, bid_size=D(1), ask_size=D(1))
    actions, meta = s.on_board(b, STALLED)
    assert isinstance(meta.reason, Reason)
    if not actions:
        assert meta.reason in NO_ACTION_REASONS
        if spread < 1:
            assert meta.reason is Reason.SPREAD_TOO_NARROW
        return
    assert meta.reason is Reason.STRIKE
    px = places(actions)
    for side, p in px.items():
        assert p % tick == 0 and p > 0
        if side is Side.BUY:
            assert p < ask
        else:
            assert p > bid
        after = inv.position_btc + side.sign * c.size_min
        assert abs(after) <= c.max_inventory_btc or abs(after) < abs(inv.position_btc)
    if len(px) == 2:
        assert px[Side.BUY] < px[Side.SELL]
    assert (meta.entry_bid_px, meta.entry_ask_px) == (px.get(Side.BUY), px.get(Side.SELL))


_steps = st.lists(
    st.tuples(
        st.sampled_from(["tick", "move", "wait", "fill", "confirm", "gate", "budget", "stale", "pnl"]),
        st.integers(min_value=0, max_value=10**6),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, mode=st.sampled_from(["mid", "inside"]), offset=st.integers(0, 3))
def test_random_sessions_keep_the_trader_safe(steps: list[tuple[str, int]], mode: str, offset: int) -> None:
    """Whatever happens: every decision has a reason, STOPPED/KILLED send nothing, a kill latches, nothing is
    placed while stall orders live or the gate blocks, and placed sizes never grow |position| past the
    limit."""
    inv = FakeInventory()
    rig = Rig(inv, quote_mode=mode, quote_offset_ticks=offset, max_inventory_btc=D("0.003"), max_hold_ms=2000)
    gate = rig.strategy.gate
    now, changed, bid, ask, stale = T0, T0, D(1000), D(1010), False
    for op, r in steps:
        if op == "tick":
            now += (r % 400) * MS
        elif op == "wait":
            now += (r % 5000) * MS
        elif op == "move":
            bid = D(990 + r % 20)
            ask = bid + 1 + r % 15
            changed = now
        elif op == "fill":
            live = rig.stall_orders()
            if live:
                o = live[r % len(live)]
                rig.tracker.settle(o.client_id, OrderState.FILLED)
                if inv.position_btc == 0:
                    inv.opened_at = now
                inv.position_btc += o.side.sign * o.size
                inv.avg_price = o.price if inv.position_btc != 0 else None
        elif op == "confirm":
            rig.executor.confirm_cancels()
            for o in rig.tracker.open_orders(tag="close"):
                rig.tracker.settle(o.client_id, OrderState.FILLED)
                inv.position_btc, inv.avg_price, inv.opened_at = D(0), None, None
        elif op == "gate":
            gate.run_state = (
                list(RunState)[r % 4] if gate.run_state is not RunState.KILLED else gate.run_state
            )
            gate.block_reason = [
                None,
                None,
                Reason.STALE_DATA,
                Reason.MARKET_CLOSED,
                Reason.RECONCILING,
                Reason.EXCHANGE_BACKOFF,
                Reason.STORAGE,
            ][r % 7]
        elif op == "budget":
            gate.order_budget = r % 4
        elif op == "stale":
            stale = not stale
        elif op == "pnl":
            inv.pnl_today = D(-(r % 40000))
        was_killed = rig.strategy.killed
        live_before = len(rig.stall_orders())
        pos_before = inv.position_btc
        actions, meta = rig.decide(board(str(bid), str(ask), changed, stale=stale), now)
        if meta.reason is Reason.KILL_SWITCH:
            gate.run_state = RunState.KILLED
        assert isinstance(meta.reason, Reason)
        if gate.run_state is RunState.STOPPED or was_killed:
            assert actions == []
        placed = [a for a in actions if a.kind is ActionKind.PLACE_LIMIT]
        if placed:
            assert live_before == 0 and gate.block_reason is None and not stale
            assert gate.run_state is RunState.RUNNING and len(placed) <= gate.order_budget
            for a in placed:
                assert a.size is not None
                after = pos_before + a.side.sign * a.size  # type: ignore[union-attr]
                assert abs(after) <= D("0.003") or abs(after) < abs(pos_before)
        assert len(rig.stall_orders()) <= 2
        nd = rig.strategy.next_deadline(now)
        assert nd is None or nd >= now


# ---- a repeat of the last decision is reused, never a different one -----------------------------------
class World:
    """The strategy over the real board store, view, order tracker and ledger, as the decision loop drives it
    (gate, view snapshot, decision, executor, next deadline)."""

    def __init__(self, reuse: bool) -> None:
        from datetime import UTC, datetime

        from bot.config.loader import RiskConfig
        from bot.engine.inventory import InventoryManager
        from bot.infra.board_store import BoardStore
        from bot.infra.orderbook_view import OrderBookView
        from bot.types.dto import Fill, Gate

        self._fill_type, self._wall = Fill, datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
        self.store = BoardStore("FX_BTC_JPY")
        self.tracker = OrderTracker()
        self.view = OrderBookView(self.store, "FX_BTC_JPY", TICK, self.tracker)
        self.inv = InventoryManager(RiskConfig(daily_pnl_jpy=D(-300), max_dd_jpy=D(-200)))
        self.gate = Gate()
        self.strategy = StallThenStrikeStrategy(
            cfg(min_spread_tick=3, max_reverse_ticks=400, max_hold_ms=3000),
            TICK,
            self.inv,
            orders=self.tracker,
            gate=self.gate,
            reuse_repeats=reuse,
        )
        self.executor = FakeExecutor(self.tracker)
        self.bid, self.ask, self.fills = 13_600_000, 13_600_010, 0
        self.touch_size = 0.5

    def board(self, snapshot: bool) -> None:
        kind = "lightning_board_snapshot_FX_BTC_JPY" if snapshot else "lightning_board_FX_BTC_JPY"
        msg = {
            "mid_price": (self.bid + self.ask) / 2,
            "bids": [
                {"price": float(self.bid), "size": self.touch_size},
                {"price": float(self.bid - 50), "size": 1.0},
            ],
            "asks": [
                {"price": float(self.ask), "size": self.touch_size},
                {"price": float(self.ask + 50), "size": 1.0},
            ],
        }
        self.store.onmessage({"params": {"channel": kind, "message": msg}})

    def step(self, op: tuple[Any, ...], now: int) -> tuple[Any, ...]:
        kind = op[0]
        if kind == "move":  # the touch moves (or only the size behind it changes: op[1] == 0)
            self.bid += op[1]
            self.ask += op[1] + op[2]
            self.board(False)
        elif kind == "blip":  # the best moves away and back before the next decision: a new stall
            self.bid += 1
            self.board(False)
            self.bid -= 1
            self.board(False)
        elif kind == "resize":  # only the size at the touch changes: a new snapshot, the same prices
            self.touch_size = 0.25 if self.touch_size == 0.5 else 0.5
            self.board(False)
        elif kind == "gate":
            self.gate.block_reason = op[1]
            self.gate.order_budget = op[2]
            self.gate.order_budget_grows_at = None if op[3] is None else now + op[3] * MS
        elif kind == "fill":
            self.fills += 1
            side = Side.BUY if op[1] else Side.SELL
            self.inv.apply_fill(
                self._fill_type(
                    exec_id=f"e{self.fills}",
                    child_order_acceptance_id="x",
                    side=side,
                    # op[2]: how far from the touch it traded (far enough trips the reverse stop)
                    price=D(self.bid + op[2] if side is Side.BUY else self.ask - op[2]),
                    size=D("0.001"),
                    commission=D(0),
                    exec_date=self._wall,
                ),
                now,
            )
        elif kind == "settle":  # the venue confirms our cancels and closes
            for o in self.tracker.open_orders():
                if o.state is OrderState.PENDING_CANCEL or o.order_type == "MARKET":
                    self.tracker.settle(o.client_id, OrderState.CANCELED)
        board = self.view.snapshot(now)
        actions, meta = self.strategy.on_board(board, now)
        self.executor.run(actions, now)
        return (
            meta.reason,
            meta.best_age_ms,
            meta.spread_ticks,
            meta.inventory_btc,
            meta.detail,
            [(a.kind, a.side, a.price, a.size) for a in actions],
            self.strategy.next_deadline(now),
        )


OPS = st.one_of(
    st.tuples(st.just("move"), st.sampled_from([0, 0, 0, 1, -1, 5]), st.sampled_from([0, 0, 2, -2])),
    st.tuples(st.just("wait")),
    st.tuples(st.just("resize")),
    st.tuples(st.just("blip")),
    st.tuples(
        st.just("gate"),
        st.sampled_from([None, None, Reason.RECONCILING]),
        st.sampled_from([100, 1, 0]),
        st.sampled_from([None, 30, 700]),  # when the budget can grow (None: the runner cannot tell)
    ),
    st.tuples(st.just("fill"), st.booleans(), st.sampled_from([0, 0, 600])),
    st.tuples(st.just("settle")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(OPS, st.integers(0, 400)), min_size=5, max_size=60))
def test_reusing_a_repeated_decision_decides_exactly_as_deciding_again(ops: list[Any]) -> None:
    reused, fresh = World(reuse=True), World(reuse=False)
    for w in (reused, fresh):
        w.board(True)
    now = T0
    for op, wait_ms in ops:
        now += wait_ms * MS
        assert reused.step(op, now) == fresh.step(op, now), op


def test_a_waiting_decision_is_reused_while_nothing_it_read_changed() -> None:
    w = World(reuse=True)
    w.board(True)
    first = w.step(("wait",), T0)
    assert first[0] is Reason.NOT_STALLED
    calls = []
    real = w.strategy._decide
    w.strategy._decide = lambda b, n: calls.append(n) or real(b, n)  # type: ignore[method-assign]
    assert w.step(("move", 0, 0), T0 + 10 * MS)[0] is Reason.NOT_STALLED  # the touch held: reused
    assert w.step(("resize",), T0 + 15 * MS)[0] is Reason.NOT_STALLED  # only its size changed: reused
    assert w.step(("wait",), T0 + 18 * MS)[0] is Reason.NOT_STALLED  # and again
    assert calls == []
    w.step(("move", 1, 0), T0 + 20 * MS)  # the best moved: decided
    assert calls == [T0 + 20 * MS]
    reason, *_, actions, _ = w.step(("wait",), T0 + 20 * MS + 250 * MS)  # the stall deadline: decided
    assert reason is Reason.STRIKE and actions and len(calls) == 2
