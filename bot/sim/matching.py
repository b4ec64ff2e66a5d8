"""The order book: other participants' ("crowd") liquidity and our accounts' orders in one price-time queue.
Pure.

Prices are integer yen, sizes integer satoshi. Each price level is a FIFO queue; an order joins behind the
size already there and fills only as takers consume the queue ahead of it. Crowd cancellations take size from
the back of the queue (the newest crowd size first), so our queue position only improves through trades, never
through a guess about who cancelled. The same book, fed with a real feed's levels and trades, is a paper
venue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sortedcontainers import SortedDict

from bot.types.dto import Side


@dataclass(slots=True)
class Entry:
    order_id: str  # acceptance id (ours) or a made-up one (crowd)
    size: int  # remaining satoshi
    own: bool  # an account's order (vs the crowd's)


class Level:
    __slots__ = ("price", "queue", "total", "crowd")

    def __init__(self, price: int) -> None:
        self.price = price
        self.queue: deque[Entry] = deque()
        self.total = 0
        self.crowd = 0

    def crowd_end(self) -> int:
        """Size up to and including the last crowd entry: what a taker must eat to leave no crowd size
        here."""
        upto = 0
        end = 0
        for e in self.queue:
            upto += e.size
            if not e.own:
                end = upto
        return end


@dataclass(frozen=True, slots=True)
class Trade:
    taker_side: Side
    price: int
    size: int
    maker_id: str
    maker_own: bool
    maker_outstanding: int  # maker's remaining size after this trade
    taker_id: str
    taker_own: bool


class OrderBook:
    def __init__(self, crowd_id: Callable[[], str]) -> None:
        self.new_crowd_id = crowd_id
        self.bids: SortedDict[int, Level] = SortedDict()
        self.asks: SortedDict[int, Level] = SortedDict()
        self._own: dict[str, tuple[Side, int]] = {}
        self.touched: dict[tuple[Side, int], None] = {}  # ordered set of levels changed since last drained
        self.version = 0

    # ---- queries -------------------------------------------------------------------------------------------
    def _side(self, side: Side) -> SortedDict[int, Level]:
        return self.bids if side is Side.BUY else self.asks

    def best(self, side: Side) -> int | None:
        book = self._side(side)
        if not book:
            return None
        return book.peekitem(-1 if side is Side.BUY else 0)[0]

    def best_bid(self) -> int | None:
        return self.best(Side.BUY)

    def best_ask(self) -> int | None:
        return self.best(Side.SELL)

    def iter_levels(self, side: Side) -> Iterator[Level]:
        """Levels from the best outward."""
        book = self._side(side)
        keys = reversed(book) if side is Side.BUY else iter(book)  # the sorted list's own iterators (fast)
        for p in keys:
            yield book[p]

    def crowd_best(self, side: Side) -> int | None:
        """Best price holding crowd size: the best as a bot that excludes its own orders sees it."""
        for lv in self.iter_levels(side):
            if lv.crowd > 0:
                return lv.price
        return None

    def level(self, side: Side, price: int) -> Level | None:
        return self._side(side).get(price)

    def size_at(self, side: Side, price: int) -> int:
        lv = self.level(side, price)
        return lv.total if lv else 0

    def depth(self, side: Side) -> int:
        return len(self._side(side))

    def total_size(self, side: Side) -> int:
        return sum(lv.total for lv in self._side(side).values())

    def levels(self, side: Side, limit: int | None = None) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for lv in self.iter_levels(side):
            if limit is not None and len(out) >= limit:
                break
            out.append((lv.price, lv.total))
        return out

    def has_order(self, order_id: str) -> bool:
        return order_id in self._own

    def own_count(self) -> int:
        return len(self._own)

    def queue_ahead(self, order_id: str) -> int:
        """Size resting ahead of one of our orders at its price."""
        side, price = self._own[order_id]
        ahead = 0
        for e in self._side(side)[price].queue:
            if e.order_id == order_id:
                return ahead
            ahead += e.size
        raise KeyError(order_id)

    def fillable(self, taker_side: Side, limit: int | None, want: int) -> int:
        """How much of `want` a taker could fill now at prices no worse than `limit` (None = any)."""
        got = 0
        for lv in self.iter_levels(taker_side.opposite):
            if limit is not None and not _acceptable(taker_side, lv.price, limit):
                break
            got += lv.total
            if got >= want:
                return want
        return got

    # ---- changes -------------------------------------------------------------------------------------------
    def _touch(self, side: Side, price: int) -> None:
        self.touched[(side, price)] = None
        self.version += 1

    def drain_touched(self) -> list[tuple[Side, int]]:
        out = list(self.touched)
        self.touched.clear()
        return out

    def rest(self, side: Side, price: int, size: int, order_id: str | None = None, own: bool = False) -> str:
        """Put size at the back of the queue at `price` (no matching: call take() first if it may cross)."""
        if size <= 0:
            raise ValueError("size must be positive")
        oid = order_id if order_id is not None else self.new_crowd_id()
        book = self._side(side)
        lv = book.get(price)
        if lv is None:
            lv = book[price] = Level(price)
        lv.queue.append(Entry(oid, size, own))
        lv.total += size
        if own:
            self._own[oid] = (side, price)
        else:
            lv.crowd += size
        self._touch(side, price)
        return oid

    def rest_levels(self, side: Side, levels: dict[int, int]) -> None:
        """Crowd size at prices where this side has no level yet, one entry each, put in at once: the book
        `rest` would make level by level, for a paper venue's snapshot (hundreds of levels)."""
        book = self._side(side)
        new_id = self.new_crowd_id
        fresh: dict[int, Level] = {}
        for price, size in levels.items():
            if size <= 0 or price in book:
                raise ValueError(f"rest_levels: size {size} at {price}, or a level there already")
            fresh[price] = _crowd_level(price, size, new_id())
            self._touch(side, price)
        book.update(fresh)

    def take(
        self,
        taker_side: Side,
        size: int,
        limit: int | None,
        taker_id: str,
        taker_own: bool,
        max_size: int | None = None,
    ) -> list[Trade]:
        """A taker eats the opposite side from its best while prices are acceptable. Returns the trades
        made."""
        trades: list[Trade] = []
        left = size if max_size is None else min(size, max_size)
        book = self._side(taker_side.opposite)
        while left > 0 and book:
            price, lv = book.peekitem(-1 if taker_side is Side.SELL else 0)
            if limit is not None and not _acceptable(taker_side, price, limit):
                break
            while left > 0 and lv.queue:
                e = lv.queue[0]
                q = min(left, e.size)
                e.size -= q
                lv.total -= q
                left -= q
                if not e.own:
                    lv.crowd -= q
                if e.size == 0:
                    lv.queue.popleft()
                    if e.own:
                        del self._own[e.order_id]
                trades.append(Trade(taker_side, price, q, e.order_id, e.own, e.size, taker_id, taker_own))
            self._touch(taker_side.opposite, price)
            if not lv.queue:
                del book[price]
        return trades

    def cancel(self, order_id: str) -> int:
        """Remove one of our orders; returns the size removed (0 if it is not resting)."""
        where = self._own.pop(order_id, None)
        if where is None:
            return 0
        side, price = where
        book = self._side(side)
        lv = book[price]
        for i, e in enumerate(lv.queue):
            if e.order_id == order_id:
                del lv.queue[i]
                lv.total -= e.size
                if not lv.queue:
                    del book[price]
                self._touch(side, price)
                return e.size
        raise AssertionError("own index out of step with the book")

    def reduce_crowd(self, side: Side, price: int, size: int) -> int:
        """The crowd cancels up to `size` at a level, newest first. Returns the size removed."""
        book = self._side(side)
        lv = book.get(price)
        if lv is None or lv.crowd == 0:
            return 0
        left = min(size, lv.crowd)
        removed = 0
        for e in reversed(list(lv.queue)):
            if left == 0:
                break
            if e.own:
                continue
            q = min(left, e.size)
            e.size -= q
            left -= q
            removed += q
        if removed:
            lv.queue = deque(e for e in lv.queue if e.size > 0)
            lv.total -= removed
            lv.crowd -= removed
            if not lv.queue:
                del book[price]
            self._touch(side, price)
        return removed

    def set_crowd_size(self, side: Side, price: int, crowd_size: int) -> None:
        """Make the crowd's size at a level `crowd_size` (a paper venue applying a real feed's level)."""
        lv = self.level(side, price)
        have = lv.crowd if lv else 0
        if crowd_size > have:
            self.rest(side, price, crowd_size - have)
        elif crowd_size < have:
            self.reduce_crowd(side, price, have - crowd_size)

    def replace_crowd(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        """The whole book becomes exactly these crowd levels, one entry each (a paper venue's snapshot while
        no order of ours rests): built in one pass instead of level by level. Every level added, removed or
        resized is touched (the diff a client needs)."""
        if self._own:
            raise ValueError("replace_crowd with our orders resting")
        new_id = self.new_crowd_id
        touched = self.touched
        for side, levels in ((Side.BUY, bids), (Side.SELL, asks)):
            old = self._side(side)
            fresh: dict[int, Level] = {}
            for price, size in levels:
                if size <= 0:
                    continue
                was = old.get(price)
                if was is not None and was.crowd == size and len(was.queue) == 1:
                    fresh[price] = was  # already this one crowd entry: kept (most levels, when resyncing)
                    continue
                fresh[price] = _crowd_level(price, size, new_id())
                if was is None or was.total != size:
                    touched[(side, price)] = None
            for price in old:
                if price not in fresh:
                    touched[(side, price)] = None
            if side is Side.BUY:
                self.bids = SortedDict(fresh)
            else:
                self.asks = SortedDict(fresh)
        self.version += 1

    def clear_crowd(self) -> None:
        """Remove all crowd size, keeping our orders (a paper venue resyncing on a snapshot)."""
        for side in (Side.BUY, Side.SELL):
            for lv in list(self._side(side).values()):
                if lv.crowd:
                    self.reduce_crowd(side, lv.price, lv.crowd)


def _crowd_level(price: int, size: int, order_id: str) -> Level:
    """A level holding one crowd entry of `size` (a paper venue's level as a feed gives it)."""
    lv = Level(price)
    lv.queue.append(Entry(order_id, size, False))
    lv.total = lv.crowd = size
    return lv


def _acceptable(taker_side: Side, price: int, limit: int) -> bool:
    return price <= limit if taker_side is Side.BUY else price >= limit
