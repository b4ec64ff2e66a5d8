"""OrderBookView: best bid/ask without our own resting orders, and the stall clock (SPEC §5 "Best")."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.orders import OrderTracker
from bot.infra.board_store import BoardStore
from bot.infra.orderbook_view import LadderLevel, OrderBookView
from bot.types.dto import ChildOrderEvent, ChildOrderEventType, Side

PC = "FX_BTC_JPY"
BASE = 13_600_000
MS = 1_000_000  # ns
D = Decimal
WHEN = datetime(2026, 1, 1, tzinfo=UTC)
ONE = D(1)


def frame(channel: str, message: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "channelMessage", "params": {"channel": channel, "message": message}}


def lv(pairs: list[tuple[int, float]]) -> list[dict[str, float]]:
    return [{"price": float(p), "size": s} for p, s in pairs]


def snap(bids: list[tuple[int, float]], asks: list[tuple[int, float]]) -> dict[str, Any]:
    mid = (max(p for p, _ in bids) + min(p for p, _ in asks)) / 2
    return frame(f"lightning_board_snapshot_{PC}", {"mid_price": mid, "bids": lv(bids), "asks": lv(asks)})


def diff(mid: float, bids: list[tuple[int, float]] = (), asks: list[tuple[int, float]] = ()) -> dict:  # type: ignore[assignment]
    return frame(f"lightning_board_{PC}", {"mid_price": mid, "bids": lv(list(bids)), "asks": lv(list(asks))})


class Market:
    """A board store, our order tracker and the view over both."""

    def __init__(self, tick: Decimal = ONE) -> None:
        self.store = BoardStore(PC)
        self.orders = OrderTracker()
        self.view = OrderBookView(self.store, PC, tick, self.orders)
        # bids 13,599,900 (0.5) / 13,599,800 (1.0); asks 13,600,100 (0.3) / 13,600,200 (2.0): spread 200 ticks
        self.store.onmessage(
            snap([(BASE - 100, 0.5), (BASE - 200, 1.0)], [(BASE + 100, 0.3), (BASE + 200, 2.0)])
        )

    def our_limit(self, side: Side, price: int, size: str, now: int = 0) -> str:
        """Place one of our orders: the tracker knows it and, like the exchange, the board shows it."""
        order = self.orders.new_order(
            tag="stall", side=side, order_type="LIMIT", price=D(price), size=D(size), now=now, ttl_ms=800
        )
        self.orders.on_accepted(order.client_id, f"JRF{order.client_id}")
        market = dict(self.store.levels(side, 10**6)).get(D(price), D(0))
        level = [(price, float(market + D(size)))]
        bp, _, ap, _ = self.store.best()
        assert bp is not None and ap is not None
        bp, ap = (max(bp, D(price)), ap) if side is Side.BUY else (bp, min(ap, D(price)))
        self.store.onmessage(
            diff(
                float((bp + ap) / 2),
                bids=level if side is Side.BUY else [],
                asks=level if side is Side.SELL else [],
            )
        )
        assert not self.store.stale  # the exchange's mid agrees with our rebuilt book
        return order.client_id


@pytest.fixture
def m() -> Market:
    return Market()


# ---- own-order exclusion -----------------------------------------------------------------------------------
def test_market_best_without_own_orders(m: Market) -> None:
    s = m.view.snapshot(now=5 * MS)
    assert (s.best_bid_price, s.best_bid_size, s.best_ask_price, s.best_ask_size) == (
        D(BASE - 100),
        D("0.5"),
        D(BASE + 100),
        D("0.3"),
    )
    assert s.spread_ticks == 200 and s.mid_price == D(BASE)


def test_our_order_inside_the_spread_is_not_the_best(m: Market) -> None:
    m.our_limit(Side.BUY, BASE - 1, "0.001")
    m.our_limit(Side.SELL, BASE + 1, "0.001")
    assert m.store.best()[0] == D(BASE - 1)  # the exchange shows our quote as the best...
    s = m.view.snapshot(now=0)
    assert s.best_bid_price == D(BASE - 100) and s.best_ask_price == D(BASE + 100)  # ...the strategy does not
    assert s.spread_ticks == 200


def test_our_order_at_the_best_with_more_size_there_leaves_the_best_with_less_size(m: Market) -> None:
    m.our_limit(Side.BUY, BASE - 100, "0.2")  # the level becomes 0.7, of which 0.2 is ours
    s = m.view.snapshot(now=0)
    assert s.best_bid_price == D(BASE - 100) and s.best_bid_size == D("0.5")


def test_our_order_making_up_the_whole_level_hands_the_best_to_the_next_level(m: Market) -> None:
    m.store.onmessage(diff(BASE + 50, asks=[(BASE + 100, 0.0)]))  # the 0.3 at the best ask leaves
    m.our_limit(Side.SELL, BASE + 100, "0.3")  # and ours takes its place
    s = m.view.snapshot(now=0)
    assert s.best_ask_price == D(BASE + 200) and s.best_ask_size == D("2.0")


def test_a_partly_filled_order_only_hides_what_is_still_outstanding(m: Market) -> None:
    cid = m.our_limit(Side.SELL, BASE + 50, "0.01")
    order = m.orders.get(cid)
    assert order is not None and order.acceptance_id is not None
    m.orders.on_event(
        ChildOrderEvent(
            event_type=ChildOrderEventType.EXECUTION,
            child_order_acceptance_id=order.acceptance_id,
            child_order_id="JOR1",
            event_date=WHEN,
            side=Side.SELL,
            price=D(BASE + 50),
            size=D("0.004"),
            exec_id="1",
            commission=D(0),
            outstanding_size=D("0.006"),
        )
    )
    # the exchange's level still shows our full 0.01 (a stale board): 0.004 of it is not ours any more
    s = m.view.snapshot(now=0)
    assert s.best_ask_price == D(BASE + 50) and s.best_ask_size == D("0.004")


def test_a_cancelled_order_is_not_subtracted(m: Market) -> None:
    cid = m.our_limit(Side.BUY, BASE - 100, "0.2")
    order = m.orders.get(cid)
    assert order is not None and order.acceptance_id is not None
    m.orders.on_event(
        ChildOrderEvent(
            event_type=ChildOrderEventType.CANCEL,
            child_order_acceptance_id=order.acceptance_id,
            child_order_id="JOR2",
            event_date=WHEN,
        )
    )
    # the board has not caught up yet: the 0.7 is all market size as far as we know
    assert m.view.snapshot(now=0).best_bid_size == D("0.7")


def test_an_empty_side_has_no_best_and_no_spread() -> None:
    store, orders = BoardStore(PC), OrderTracker()
    view = OrderBookView(store, PC, D(1), orders)
    s = view.snapshot(now=0)
    assert (
        s.best_bid_price is None
        and s.best_ask_price is None
        and s.spread_ticks is None
        and s.mid_price is None
    )
    assert s.stale and s.best_age_ms(0) == 0
    store.onmessage(snap([(BASE - 1, 0.1)], [(BASE + 1, 0.1)]))
    orders.new_order(tag="stall", side=Side.SELL, order_type="LIMIT", price=D(BASE + 1), size=D("0.1"), now=0)
    s = view.snapshot(now=MS)
    assert s.best_ask_price is None and s.best_bid_price == D(BASE - 1) and s.spread_ticks is None


def test_spread_in_ticks_and_mid_with_a_coarser_tick() -> None:
    m = Market(tick=D(5))
    s = m.view.snapshot(now=0)
    assert s.spread_ticks == 40 and s.mid_price == D(BASE)


def test_the_view_must_be_for_the_store_product() -> None:
    with pytest.raises(ValueError):
        OrderBookView(BoardStore(PC), "BTC_JPY", D(1), OrderTracker())


def test_the_ladder_marks_our_share(m: Market) -> None:
    m.our_limit(Side.BUY, BASE - 100, "0.2")
    assert m.view.ladder(Side.BUY, 2) == [
        LadderLevel(D(BASE - 100), D("0.7"), D("0.2")),
        LadderLevel(D(BASE - 200), D("1.0"), D(0)),
    ]


# ---- the stall clock ---------------------------------------------------------------------------------------
def test_the_first_snapshot_with_a_book_starts_the_clock(m: Market) -> None:
    s = m.view.snapshot(now=1_000 * MS)
    assert s.best_changed_at == 1_000 * MS and s.best_age_ms(1_000 * MS) == 0
    assert m.view.snapshot(now=1_250 * MS + 999_999).best_age_ms(1_250 * MS + 999_999) == 250


def test_size_changes_do_not_reset_the_clock_price_changes_do(m: Market) -> None:
    m.view.snapshot(now=0)
    m.store.onmessage(diff(BASE, bids=[(BASE - 100, 3.0)], asks=[(BASE + 100, 0.01)]))
    s = m.view.snapshot(now=300 * MS)
    assert s.best_changed_at == 0 and s.best_age_ms(300 * MS) == 300 and s.best_bid_size == D("3.0")
    m.store.onmessage(diff(BASE + 5, asks=[(BASE + 100, 0.0), (BASE + 110, 0.2)]))  # best ask moves out
    s = m.view.snapshot(now=400 * MS)
    assert s.best_changed_at == 400 * MS and s.best_age_ms(400 * MS) == 0
    assert s.best_ask_price == D(BASE + 110)
    assert m.view.snapshot(now=650 * MS).best_age_ms(650 * MS) == 250


def test_our_own_order_does_not_change_best_changed_at(m: Market) -> None:
    m.view.snapshot(now=0)
    m.our_limit(Side.BUY, BASE - 1, "0.001", now=100 * MS)
    m.our_limit(Side.SELL, BASE + 1, "0.001", now=100 * MS)
    s = m.view.snapshot(now=200 * MS)
    assert s.best_changed_at == 0 and s.best_age_ms(200 * MS) == 200


def test_stale_follows_the_store_and_a_resync_restarts_the_clock(m: Market) -> None:
    assert not m.view.snapshot(now=0).stale
    m.store.mark_disconnected()
    s = m.view.snapshot(now=100 * MS)
    assert s.stale and s.best_changed_at == 0
    # reconnected: the same best as before, but we could not see what happened in between
    m.store.onmessage(snap([(BASE - 100, 0.5)], [(BASE + 100, 0.3)]))
    s = m.view.snapshot(now=900 * MS)
    assert not s.stale and s.best_changed_at == 900 * MS and s.best_age_ms(900 * MS) == 0


def test_a_resync_between_two_looks_still_restarts_the_clock(m: Market) -> None:
    m.view.snapshot(now=0)
    m.store.mark_disconnected()
    m.store.onmessage(snap([(BASE - 100, 0.5)], [(BASE + 100, 0.3)]))
    assert m.view.snapshot(now=700 * MS).best_age_ms(700 * MS) == 0


def test_a_regular_snapshot_with_the_same_best_keeps_the_clock(m: Market) -> None:
    m.view.snapshot(now=0)
    m.store.onmessage(snap([(BASE - 100, 0.4)], [(BASE + 100, 0.3)]))
    assert m.view.snapshot(now=700 * MS).best_age_ms(700 * MS) == 700


def test_a_desync_is_reported_stale(m: Market) -> None:
    m.store.onmessage(diff(BASE + 3, bids=[(BASE - 100, 0.6)]))
    assert m.view.snapshot(now=0).stale


# ---- property: the view against a brute-force own-excluded best --------------------------------------------
OWN = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 8),
        st.sampled_from(["0.001", "0.01", "0.1", "0.5", "1"]),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    bid_sizes=st.lists(st.sampled_from([0.001, 0.01, 0.1, 0.5]), min_size=0, max_size=8),
    ask_sizes=st.lists(st.sampled_from([0.001, 0.01, 0.1, 0.5]), min_size=0, max_size=8),
    own=OWN,
)
def test_own_excluded_best_matches_brute_force(
    bid_sizes: list[float], ask_sizes: list[float], own: list
) -> None:
    store, orders = BoardStore(PC), OrderTracker()
    view = OrderBookView(store, PC, D(1), orders)
    bids = {BASE - 10 * (i + 1): D(repr(s)) for i, s in enumerate(bid_sizes)}
    asks = {BASE + 10 * (i + 1): D(repr(s)) for i, s in enumerate(ask_sizes)}
    mine: dict[tuple[Side, int], Decimal] = {}
    for side, k, size in own:
        price = BASE - 10 * k if side is Side.BUY else BASE + 10 * k
        orders.new_order(tag="stall", side=side, order_type="LIMIT", price=D(price), size=D(size), now=0)
        mine[(side, price)] = mine.get((side, price), D(0)) + D(size)
    store.onmessage(
        frame(
            f"lightning_board_snapshot_{PC}",
            {
                "mid_price": float(BASE),
                "bids": [{"price": float(p), "size": float(s)} for p, s in bids.items()],
                "asks": [{"price": float(p), "size": float(s)} for p, s in asks.items()],
            },
        )
    )

    def expect(book: dict[int, Decimal], side: Side) -> tuple[Decimal, Decimal] | None:
        for p in sorted(book, reverse=side is Side.BUY):
            left = book[p] - mine.get((side, p), D(0))
            if left > 0:
                return D(p), left
        return None

    s = view.snapshot(now=0)
    eb, ea = expect(bids, Side.BUY), expect(asks, Side.SELL)
    assert (s.best_bid_price, s.best_bid_size) == (eb if eb else (None, None))
    assert (s.best_ask_price, s.best_ask_size) == (ea if ea else (None, None))
    if eb and ea:
        assert s.spread_ticks == int(ea[0] - eb[0]) and s.mid_price == (ea[0] + eb[0]) / 2


@pytest.mark.parametrize(("tick", "off"), [(ONE, 0.5), (D(5), 3.0)])
def test_a_touch_off_the_tick_grid_is_never_decided_on(tick: Decimal, off: float) -> None:
    """A wrong exchange.tick_size: the price cannot be held in ticks, so the snapshot is stale (no strike)
    until the touch is back on the grid."""
    m = Market(tick=tick)
    assert not m.view.snapshot(now=0).stale
    m.store.onmessage(diff((2 * BASE + off + 100) / 2, bids=[(BASE + off, 0.1)]))  # type: ignore[list-item]
    assert not m.store.stale  # the exchange's book is fine; our tick is not
    s = m.view.snapshot(now=MS)
    assert s.stale and m.view.off_grid == 1
    m.store.onmessage(diff(BASE, bids=[(BASE + off, 0.0)]))  # type: ignore[list-item]
    s = m.view.snapshot(now=2 * MS)
    assert not s.stale and s.best_bid_price == D(BASE - 100)


def test_before_any_book_the_age_is_zero() -> None:
    view = OrderBookView(BoardStore(PC), PC, ONE, OrderTracker())
    assert view.snapshot(now=0).best_age_ms(0) == 0
    assert view.snapshot(now=500 * MS).best_age_ms(500 * MS) == 0
