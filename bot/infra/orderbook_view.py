"""OrderBookView: the board as the strategy sees it — best bid/ask EXCLUDING our own resting orders (SPEC §5).

Our own quote inside the spread would otherwise become "the best", reset the stall clock and cancel itself. So
our outstanding size is subtracted at our prices; a level left with nothing is skipped for the next one.

The stall clock (`best_changed_at`) runs on the monotonic `now` passed in and restarts when either
own-excluded best *price* changes (size changes do not count). It also restarts when the store resyncs after
a stale period (disconnect, desync): what the best did during the gap is unknown, so no stall may span it.
No clock reads; the only I/O is that one log line.

The hot path: a snapshot reads the store's touch as raw floats and turns it into integer ticks and 1e-8 BTC
units; with none of our orders open that is all, and with some it walks from the touch only past the levels
that are wholly ours. When nothing the strategy reads has changed, the previous snapshot object is handed
back: a message that moves nothing at the touch allocates nothing here. A touch price off the tick grid (a
misconfigured `exchange.tick_size`) is logged once and makes the snapshot stale: no strike is made on prices
the ticks cannot hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from loguru import logger

from bot.infra.board_store import BoardStore
from bot.types.dto import SIZE_UNITS, BoardSnapshot, Side

_ZERO = Decimal(0)
_Touch = tuple[int | None, int | None, int | None, int | None]  # bid ticks, units, ask ticks, units


class RestingOrders(Protocol):
    """Where our resting size is known (the engine's order tracker): the view reads it, never owns it."""

    def may_have_open(self) -> bool: ...

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
        self._tick_f = float(tick_size)
        self._unit_tick = tick_size == 1
        self.orders = orders
        self._touch: _Touch | None = None  # the last touch seen; None = no book seen yet
        self._snap: BoardSnapshot | None = None
        self._best_changed_at: int | None = None
        self._seen_resyncs = store.resyncs
        self.off_grid = 0  # touch prices seen off the tick grid (each makes its snapshot stale)

    def _ticks(self, price: float) -> int:
        """A wire price in ticks. A price off the tick grid (a wrong `exchange.tick_size`) cannot be decided
        on in ticks: it is counted, logged once, and makes the snapshot stale, so nothing is struck on it."""
        if self._unit_tick:
            if price.is_integer():
                return int(price)
            ticks = round(price)
        else:
            ticks = round(price / self._tick_f)
            if abs(ticks * self._tick_f - price) <= 1e-9 * abs(price):
                return ticks
        self.off_grid += 1
        if self.off_grid == 1:
            logger.warning(
                "board: price {} is off the tick grid {}: check exchange.tick_size; no strike on such a book",
                price,
                self.tick_size,
            )
        return ticks

    def snapshot(self, now: int) -> BoardSnapshot:
        store = self.store
        off_grid = self.off_grid
        if self.orders.may_have_open():
            touch = self._own_excluded_touch()
        else:
            bp, bs, ap, as_ = store.touch()
            touch = (
                None if bp is None else self._ticks(bp),
                None if bp is None else round(bs * SIZE_UNITS),
                None if ap is None else self._ticks(ap),
                None if ap is None else round(as_ * SIZE_UNITS),
            )
        stale = store.stale or self.off_grid != off_grid
        snap = self._snap
        if store.resyncs != self._seen_resyncs:
            self._seen_resyncs = store.resyncs
            self._best_changed_at = now
            snap = None
        last = self._touch
        if last is None:
            if touch[0] is not None or touch[2] is not None:  # the first book we see starts the clock
                self._best_changed_at = now
                self._touch = touch
                snap = None
        elif touch != last:
            if touch[0] != last[0] or touch[2] != last[2]:
                self._best_changed_at = now
            self._touch = touch
            snap = None
        if snap is not None and snap.stale is stale and self._best_changed_at is not None:
            return snap
        changed_at = now if self._best_changed_at is None else self._best_changed_at  # no book yet: age 0
        snap = BoardSnapshot(touch[0], touch[1], touch[2], touch[3], changed_at, stale, self.tick_size)
        self._snap = snap
        return snap

    def _own_excluded_touch(self) -> _Touch:
        own_bid: dict[float, int] = {}
        own_ask: dict[float, int] = {}
        for (side, price), size in self.orders.resting_levels().items():
            (own_bid if side is Side.BUY else own_ask)[float(price)] = int(size * SIZE_UNITS)
        bid = self._first_left(Side.BUY, own_bid)
        ask = self._first_left(Side.SELL, own_ask)
        return (
            None if bid is None else self._ticks(bid[0]),
            None if bid is None else bid[1],
            None if ask is None else self._ticks(ask[0]),
            None if ask is None else ask[1],
        )

    def _first_left(self, side: Side, own: dict[float, int]) -> tuple[float, int] | None:
        """The first level from the touch outwards with market size left after taking out ours."""
        for price, size in self.store.iter_raw(side):
            left = round(size * SIZE_UNITS) - own.get(price, 0)
            if left > 0:
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
