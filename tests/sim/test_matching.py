"""Price-time priority: an order joins behind the size already at its price and fills only as trades eat the
queue ahead of it; crossing orders take; partial fills; crowd cancels never move us forward."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.sim.matching import OrderBook
from bot.types.dto import Side

BTC = 100_000_000


def book() -> OrderBook:
    ids = itertools.count()
    return OrderBook(lambda: f"crowd{next(ids)}")


def test_order_behind_one_btc_fills_only_after_one_btc_traded() -> None:
    b = book()
    b.rest(Side.BUY, 100, 1 * BTC)  # the crowd's 1 BTC was there first
    b.rest(Side.BUY, 100, BTC // 100, "mine", own=True)
    assert b.queue_ahead("mine") == BTC
    trades = b.take(Side.SELL, BTC // 2, None, "t1", False)
    assert all(not t.maker_own for t in trades)
    assert b.queue_ahead("mine") == BTC // 2
    trades = b.take(Side.SELL, BTC // 2, None, "t2", False)
    assert all(not t.maker_own for t in trades) and b.queue_ahead("mine") == 0
    trades = b.take(Side.SELL, BTC // 400, None, "t3", False)  # 0.0025 BTC: a partial fill of our 0.01
    assert [(t.maker_id, t.size, t.maker_outstanding) for t in trades] == [
        ("mine", BTC // 400, BTC // 100 - BTC // 400)
    ]
    assert b.has_order("mine")


def test_crowd_cancels_take_the_newest_size_so_our_place_does_not_improve() -> None:
    b = book()
    b.rest(Side.SELL, 200, BTC)
    b.rest(Side.SELL, 200, BTC // 10, "mine", own=True)
    b.rest(Side.SELL, 200, BTC)  # behind us
    assert b.reduce_crowd(Side.SELL, 200, BTC) == BTC  # removes the size behind us
    assert b.queue_ahead("mine") == BTC
    assert b.reduce_crowd(Side.SELL, 200, BTC // 2) == BTC // 2  # only then the size ahead
    assert b.queue_ahead("mine") == BTC // 2
    assert b.level(Side.SELL, 200).crowd == BTC // 2


def test_taker_walks_levels_in_price_order_and_stops_at_its_limit() -> None:
    b = book()
    b.rest(Side.SELL, 102, BTC)
    b.rest(Side.SELL, 101, BTC // 2)
    b.rest(Side.SELL, 103, BTC)
    trades = b.take(Side.BUY, 2 * BTC, 102, "me", True)
    assert [(t.price, t.size) for t in trades] == [(101, BTC // 2), (102, BTC)]
    assert b.best_ask() == 103
    b.drain_touched()
    assert b.take(Side.BUY, BTC, 102, "me", True) == []  # nothing left at or under the limit
    assert b.drain_touched() == []


def test_fillable_and_crowd_best_ignore_nothing_but_own_only_levels() -> None:
    b = book()
    b.rest(Side.BUY, 100, BTC)
    b.rest(Side.BUY, 105, BTC // 1000, "mine", own=True)  # our bid inside the spread
    assert b.best_bid() == 105
    assert b.crowd_best(Side.BUY) == 100  # the best as a bot excluding its own orders sees it
    assert b.fillable(Side.SELL, 100, 10 * BTC) == BTC + BTC // 1000
    assert b.fillable(Side.SELL, 101, 10 * BTC) == BTC // 1000


def test_cancel_removes_only_our_order_and_reports_its_size() -> None:
    b = book()
    b.rest(Side.BUY, 100, BTC)
    b.rest(Side.BUY, 100, 5000, "mine", own=True)
    assert b.cancel("mine") == 5000
    assert b.cancel("mine") == 0
    assert b.size_at(Side.BUY, 100) == BTC


def test_replacing_the_crowd_leaves_exactly_the_new_levels_and_touches_only_what_changed() -> None:
    """A paper venue's snapshot while none of our orders rests: the book becomes the snapshot, and the diff it
    publishes names the levels added, removed or resized (not every level)."""
    b = book()
    for price, size in ((100, BTC), (99, 2 * BTC), (98, BTC)):
        b.rest(Side.BUY, price, size)
    b.rest(Side.SELL, 101, BTC)
    b.rest(Side.SELL, 101, BTC)  # two crowd entries at one level: 2 BTC
    b.drain_touched()
    b.replace_crowd([(100, BTC), (99, 3 * BTC), (97, BTC)], [(101, 2 * BTC), (102, BTC)])
    assert b.levels(Side.BUY) == [(100, BTC), (99, 3 * BTC), (97, BTC)]
    assert b.levels(Side.SELL) == [(101, 2 * BTC), (102, BTC)]
    assert set(b.drain_touched()) == {(Side.BUY, 99), (Side.BUY, 98), (Side.BUY, 97), (Side.SELL, 102)}
    b.rest(Side.BUY, 96, BTC // 100, "mine", own=True)
    with pytest.raises(ValueError):  # never under a resting order of ours: that is feed_board's level path
        b.replace_crowd([], [])


def test_crowd_levels_put_in_at_once_make_the_book_resting_them_one_by_one_makes() -> None:
    """A paper venue's snapshot adds hundreds of new levels in one go: the same levels, queues and touched
    levels as resting each, and never on top of a level already there."""
    one_by_one, at_once = book(), book()
    for b in (one_by_one, at_once):
        b.rest(Side.BUY, 100, BTC)
        b.rest(Side.BUY, 97, BTC // 2, "mine", own=True)
        b.drain_touched()
    fresh = {99: 2 * BTC, 95: BTC, 98: 3 * BTC}
    for price, size in fresh.items():
        one_by_one.rest(Side.BUY, price, size)
    at_once.rest_levels(Side.BUY, fresh)
    assert at_once.levels(Side.BUY) == one_by_one.levels(Side.BUY)
    assert at_once.best_bid() == 100 and at_once.crowd_best(Side.BUY) == 100
    assert at_once.drain_touched() == one_by_one.drain_touched()
    assert at_once.queue_ahead("mine") == 0 and at_once.has_order("mine")
    assert at_once.take(Side.SELL, 4 * BTC, 98, "t", False)[-1].price == 98  # walks the new levels in order
    with pytest.raises(ValueError):
        at_once.rest_levels(Side.BUY, {97: BTC})  # our order's level: rest() joins its queue, this does not


def test_set_crowd_size_follows_a_real_feed_level_and_keeps_our_order() -> None:
    b = book()
    b.rest(Side.BUY, 100, BTC // 100, "mine", own=True)
    b.set_crowd_size(Side.BUY, 100, BTC)  # the feed says 1 BTC of others arrived (behind us)
    assert b.size_at(Side.BUY, 100) == BTC + BTC // 100 and b.queue_ahead("mine") == 0
    b.set_crowd_size(Side.BUY, 100, 0)
    assert b.size_at(Side.BUY, 100) == BTC // 100
    b.clear_crowd()
    assert b.has_order("mine")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["rest", "take", "cancel"]),
            st.booleans(),
            st.integers(95, 105),
            st.integers(1, 3 * BTC),
        ),
        max_size=40,
    )
)
def test_size_is_conserved_and_the_book_never_crosses(ops: list[tuple[str, bool, int, int]]) -> None:
    b = book()
    resting = 0
    for kind, buy, price, size in ops:
        side = Side.BUY if buy else Side.SELL
        if kind == "rest":
            trades = b.take(side, size, price, "x", False)
            traded = sum(t.size for t in trades)
            resting -= traded
            if size > traded:
                b.rest(side, price, size - traded)
                resting += size - traded
        elif kind == "take":
            resting -= sum(t.size for t in b.take(side, size, None, "x", False))
        else:
            resting -= b.reduce_crowd(side, price, size)
        bid, ask = b.best_bid(), b.best_ask()
        assert bid is None or ask is None or bid < ask
        assert b.total_size(Side.BUY) + b.total_size(Side.SELL) == resting
