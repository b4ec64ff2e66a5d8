"""The venue's ledger: FIFO lots, exact realized PnL, flips through zero, collateral."""

from __future__ import annotations

import itertools
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.sim.ledger import ChildOrder, ChildOrderState, Ledger
from bot.types.dto import Side

BTC = 100_000_000
_seq = itertools.count(1)


def order(ledger: Ledger, side: Side, size: int, key: str = "K") -> ChildOrder:
    n = next(_seq)
    o = ChildOrder(
        seq=n,
        api_key=key,
        acceptance_id=f"A{n}",
        child_order_id=f"C{n}",
        side=side,
        order_type="MARKET",
        price=0,
        size=size,
        time_in_force="GTC",
        order_ns=0,
        expire_ns=0,
        expire_at=0,
    )
    ledger.add_order(o)
    return o


def fill(ledger: Ledger, side: Side, price: int, size: int) -> Decimal:
    return ledger.apply_fill(order(ledger, side, size), next(_seq), price, size, 0)


def test_fifo_closes_the_oldest_lot_first() -> None:
    lg = Ledger()
    lg.add_account("K")
    fill(lg, Side.BUY, 100, BTC)  # lot 1
    fill(lg, Side.BUY, 200, BTC)  # lot 2
    assert fill(lg, Side.SELL, 150, BTC) == Decimal(50)  # closes lot 1 (FIFO), not lot 2 (-50)
    assert lg.position("K") == Decimal(1)
    assert [(lot.price, lot.size) for lot in lg.lots("K")] == [(200, BTC)]
    assert lg.average_price("K") == Decimal(200)


def test_flip_through_zero_opens_the_rest_on_the_other_side() -> None:
    lg = Ledger()
    lg.add_account("K")
    fill(lg, Side.SELL, 13_600_000, BTC // 1000)  # short 0.001
    realized = fill(lg, Side.BUY, 13_599_990, 3 * BTC // 1000)
    assert realized == Decimal("0.01")  # 10 yen × 0.001 BTC, exact
    assert lg.position("K") == Decimal("0.002")
    assert lg.lots("K")[0].side is Side.BUY and lg.lots("K")[0].price == 13_599_990


def test_collateral_includes_realized_pnl_and_open_pnl_is_marked() -> None:
    lg = Ledger(collateral_jpy=Decimal(1_000_000), leverage=2)
    lg.add_account("K")
    fill(lg, Side.BUY, 10_000_000, BTC // 10)
    fill(lg, Side.SELL, 10_001_000, BTC // 20)
    assert lg.collateral("K") == Decimal(1_000_000) + Decimal(50)
    assert lg.open_pnl("K", Decimal(10_002_000)) == Decimal(100)  # 0.05 BTC × 2,000
    assert lg.require_collateral("K") == Decimal(250_000)  # 10,000,000 × 0.05 / 2


def test_order_states_and_overfill_refused() -> None:
    lg = Ledger()
    lg.add_account("K")
    o = order(lg, Side.BUY, BTC)
    lg.apply_fill(o, 1, 100, BTC // 4, 0)
    assert o.state is ChildOrderState.ACTIVE and o.outstanding == 3 * BTC // 4
    assert lg.finish_order(o, ChildOrderState.CANCELED) == 3 * BTC // 4
    assert o.outstanding == 0 and o.state is ChildOrderState.CANCELED
    o2 = order(lg, Side.BUY, BTC)
    try:
        lg.apply_fill(o2, 2, 100, 2 * BTC, 0)
        raise AssertionError("overfill accepted")
    except ValueError:
        pass


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(13_500_000, 13_700_000), st.integers(1, 50)),
        min_size=1,
        max_size=30,
    ),
    st.integers(13_500_000, 13_700_000),
)
def test_realized_plus_open_pnl_equals_cash_flow(fills: list[tuple[bool, int, int]], mark: int) -> None:
    """Whatever the fills, realized + open PnL at a mark = -Σ(signed size × price) + position × mark."""
    lg = Ledger()
    lg.add_account("K")
    cash = Decimal(0)
    pos = 0
    for buy, price, milli in fills:
        size = milli * BTC // 1000
        side = Side.BUY if buy else Side.SELL
        fill(lg, side, price, size)
        cash -= side.sign * Decimal(price * size) / BTC
        pos += side.sign * size
    assert lg.position("K") == Decimal(pos) / BTC
    total = lg.realized_pnl("K") + lg.open_pnl("K", Decimal(mark))
    assert total == cash + Decimal(pos) * mark / BTC
    assert all(lot.side is lg.lots("K")[0].side for lot in lg.lots("K"))  # never long and short at once
