"""OrderBookView: the board as the strategy sees it — best bid/ask EXCLUDING our own resting orders (SPEC §5).

Our own quote inside the spread would otherwise become "the best", reset the stall clock and cancel itself. So
our outstanding size is subtracted at our prices; a level left with nothing is skipped for the next one.

The stall clock (`best_changed_at`, `best_age_ms`) runs on the monotonic `now` passed in and restarts when
either own-excluded best *price* changes (size changes do not count). It also restarts when the store resyncs
after a stale period (disconnect, desync): what the best did during the gap is unknown, so no stall may span
it. Pure: no clock reads, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from bot.infra.board_store import BoardStore, Level
from bot.types.dto import NS_PER_MS, BoardSnapshot, Side

_ZERO = Decimal(0)
_TWO = Decimal(2)


class RestingOrders(Protocol):
    """Where our resting size is known (the engine's order tracker): the view reads it, never owns it."""

    def resting_levels(self) -> dict[tuple[Side, Decimal], Decimal]: ...


@dataclass(frozen=True, slots=True)
class LadderLevel:
    """One board level for the dashboard: the market's size and how much of it is ours."""

    price: Decimal
    size: Decimal
    own_size: Decimal


class OrderBookView:
    def __init__(
        self, store: BoardStore, product_code: str, tick_size: Decimal, orders: RestingOrders
    ) -> None:
        if store.product_code != product_code:
            raise ValueError(f"store holds {store.product_code}, not {product_code}")
        if tick_size <= 0:
            raise ValueError("tick_size must be > 0")
        self.store = store
        self.product_code = product_code
        self.tick_size = tick_size
        self.orders = orders
        self._last_best: tuple[Decimal | None, Decimal | None] | None = None  # None = no book seen yet
        self._best_changed_at: int | None = None
        self._seen_resyncs = store.resyncs

    def snapshot(self, now: int) -> BoardSnapshot:
        own = self.orders.resting_levels()
        bid = self._own_excluded_best(Side.BUY, own)
        ask = self._own_excluded_best(Side.SELL, own)
        bid_p = bid[0] if bid else None
        ask_p = ask[0] if ask else None
        prices = (bid_p, ask_p)
        has_book = bid_p is not None or ask_p is not None
        if self.store.resyncs != self._seen_resyncs:
            self._seen_resyncs = self.store.resyncs
            self._best_changed_at = now
        if self._last_best is None:
            if has_book:  # the first book we see starts the clock
                self._last_best = prices
                self._best_changed_at = now
        elif prices != self._last_best:
            self._last_best = prices
            self._best_changed_at = now
        changed_at = now if self._best_changed_at is None else self._best_changed_at
        spread_ticks: int | None = None
        mid: Decimal | None = None
        if bid_p is not None and ask_p is not None:
            spread_ticks = int((ask_p - bid_p) / self.tick_size)
            mid = (bid_p + ask_p) / _TWO
        return BoardSnapshot(
            ts=now,
            best_bid_price=bid_p,
            best_bid_size=bid[1] if bid else None,
            best_ask_price=ask_p,
            best_ask_size=ask[1] if ask else None,
            best_age_ms=max(0, now - changed_at) // NS_PER_MS,
            spread_ticks=spread_ticks,
            best_changed_at=changed_at,
            stale=self.store.stale,
            mid_price=mid,
        )

    def _own_excluded_best(self, side: Side, own: dict[tuple[Side, Decimal], Decimal]) -> Level | None:
        """The first level from the touch outwards with market size left after taking out ours."""
        for price, size in self.store.iter_levels(side):
            mine = own.get((side, price))
            if mine is None:
                return price, size
            left = size - mine
            if left > _ZERO:
                return price, left
        return None

    def ladder(self, side: Side, n: int) -> list[LadderLevel]:
        """The top n market levels of one side (own orders included, as the exchange shows them), with our
        share marked: what the dashboard's board ladder draws."""
        own = self.orders.resting_levels()
        return [
            LadderLevel(price, size, min(size, own.get((side, price), _ZERO)))
            for price, size in self.store.levels(side, n)
        ]
