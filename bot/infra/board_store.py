"""BoardStore: the bitFlyer board (lightning_board_snapshot_* / lightning_board_*) as a pybotters DataStore.

Why not pybotters' own `bitFlyerDataStore.board` (SPEC §13): it re-sorts the whole book on every message,
holds at most 9,999 levels and silently drops the oldest-inserted ones, unsubscribes from snapshots after the
first (so missed deletions are never healed), ignores snapshots fed with `ws=None` (replay), keeps a
disconnected book as if it were fresh, and stores itayose levels at price 0.

This store:
- keeps each side in a `SortedDict` price -> size (floats, as on the wire: whole-yen prices are exact in a
  float), so a level update is O(log n) and the best price is O(1);
- replaces the whole book on every snapshot and never unsubscribes (`ws` is not used at all);
- after each diff drops crossed levels against the message's `mid_price` (bids >= mid, asks <= mid), drops
  levels with price <= 0 and deletes levels of size 0;
- is `stale` (with a reason) from the start until the first snapshot, after `mark_disconnected()`, and after a
  diff whose `mid_price` disagrees with the rebuilt book (desync); only a snapshot clears it;
- never drops a level because the book is large (the DataStore item cap does not apply: levels live outside
  `_data`);
- exposes Decimal at its boundary (`best()`, `levels()`, `find()`, `sorted()`).

DataStore semantics: `watch()` yields exactly ONE `StoreChange` per applied board message (not one per level,
to keep the hot path cheap): operation "insert" for a snapshot (the book was replaced), "update" for a diff,
plus one "update" when `mark_disconnected()` is called or a frame fails half-way. `source` is the raw message
(shared, do not mutate; None for a disconnect); `data` is a small summary dict: product_code, kind ("snapshot"
| "diff" | "disconnected" | "error"), version, stale, stale_reason, best_bid(_size), best_ask(_size) as
  Decimal. `wait()`
wakes on each of those. `find()` / `get()` / `len()` / iteration see the levels as pybotters-style items
`{"product_code", "side": "bids"|"asks", "price": Decimal, "size": Decimal}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from enum import StrEnum
from itertools import islice
from math import isfinite
from operator import itemgetter
from typing import Any, Literal

from loguru import logger
from pybotters.store import DataStore, StoreChange
from sortedcontainers import SortedDict

from bot.types.dto import Side

_INF = float("inf")
_BAD_FRAME_PREVIEW = 200  # characters of a bad frame quoted in the log line
_PRICE = itemgetter("price")
_SIZE = itemgetter("size")
_FLOATS = {float}
_LOOK: Any = object()  # "the best was deleted: ask the book" while a diff carries the bests through

Level = tuple[Decimal, Decimal]  # (price, size)
Best = tuple[Decimal | None, Decimal | None, Decimal | None, Decimal | None]
_Levels = list[tuple[float, float]]  # wire (price, size), validated


class StaleReason(StrEnum):
    NO_SNAPSHOT = "no_snapshot"  # started, no snapshot yet
    DISCONNECTED = "disconnected"  # the runner lost the socket
    DESYNC = "desync"  # a diff's mid_price disagreed with the rebuilt book
    ERROR = "error"  # applying a frame failed half-way (a bug): the book cannot be trusted
    SILENT = "silent"  # no board message for stale_after_ms: what happened meanwhile is unknown


class _BadFrame(ValueError):
    pass


def price_to_decimal(p: float) -> Decimal:
    """Wire price (float) -> Decimal without float noise: whole yen become integers."""
    return Decimal(int(p)) if p.is_integer() else Decimal(repr(p))


def size_to_decimal(s: float) -> Decimal:
    """Wire size (float, <= 8 decimals) -> the Decimal it was written as (repr is the shortest round-trip)."""
    return Decimal(repr(s))


def _number(x: Any) -> float:
    # bool is an int subclass but never a price or size
    if type(x) is float:
        return x
    if type(x) is int:
        return float(x)
    raise _BadFrame(f"not a number: {x!r}")


def _parse_side(raw: Any) -> _Levels:
    """Validate a whole side before anything is applied, so a bad frame changes nothing."""
    if type(raw) is not list:
        raise _BadFrame("bids/asks not a list")
    out: _Levels = []
    for lv in raw:
        try:
            p = lv["price"]
            s = lv["size"]
        except (KeyError, TypeError, IndexError) as e:
            raise _BadFrame(f"bad level {lv!r}") from e
        if type(p) is not float:
            p = _number(p)
        if type(s) is not float:
            s = _number(s)
        if not (-_INF < p < _INF) or not (0.0 <= s < _INF):  # NaN fails both comparisons
            raise _BadFrame(f"bad level {lv!r}")
        out.append((p, s))
    return out


def _snapshot_side(raw: Any) -> SortedDict | None:
    """A snapshot side the common way — every level a float price > 0 and a float size > 0, all finite —
    read in C-level passes instead of level by level. None: anything else, for the level-by-level path to
    refuse or to clean (itayose prices, zero sizes, ints)."""
    if type(raw) is not list:
        return None
    try:
        prices = list(map(_PRICE, raw))
        sizes = list(map(_SIZE, raw))
    except (KeyError, TypeError, IndexError):
        return None
    if not prices:
        return SortedDict()
    if set(map(type, prices)) != _FLOATS or set(map(type, sizes)) != _FLOATS:
        return None
    # a NaN or an infinity makes a sum non-finite; min() > 0 refuses zero and negative levels
    if min(prices) > 0.0 and min(sizes) > 0.0 and isfinite(sum(prices)) and isfinite(sum(sizes)):
        return SortedDict(zip(prices, sizes, strict=True))
    return None


def _parse_message(message: Any, is_snapshot: bool) -> tuple[float | None, _Levels, _Levels]:
    if type(message) is not dict:
        raise _BadFrame("message not an object")
    if is_snapshot and ("bids" not in message or "asks" not in message):
        raise _BadFrame("snapshot without bids or asks")
    mid = message.get("mid_price")
    if mid is not None:
        mid = _number(mid)
        if not (-_INF < mid < _INF):
            raise _BadFrame("bad mid_price")
        if mid <= 0.0:  # itayose: no meaningful mid, nothing to prune or check against
            mid = None
    return mid, _parse_side(message.get("bids", [])), _parse_side(message.get("asks", []))


class BoardStore(DataStore):
    """One product's board. Feed it every WebSocket JSON frame: `onmessage(msg, ws=None)`."""

    _KEYS = ["product_code", "side", "price"]

    def __init__(self, product_code: str = "FX_BTC_JPY", name: str = "board") -> None:
        self.product_code = product_code
        self._snapshot_channel = f"lightning_board_snapshot_{product_code}"
        self._diff_channel = f"lightning_board_{product_code}"
        self._bids: SortedDict = SortedDict()  # price -> size; best = last key
        self._asks: SortedDict = SortedDict()  # price -> size; best = first key
        self._best_bid: float | None = None
        self._best_ask: float | None = None
        self._stale_reason: StaleReason | None = StaleReason.NO_SNAPSHOT
        # Learned from the wire: once a mid ending in .5 is seen, the exchange sends exact mids and a half-yen
        # disagreement is a real desync; until then it could be rounding of an x.5 mid to whole yen.
        self._exact_mids_seen = False
        self.last_mid: float | None = None
        self.version = 0  # +1 whenever the best bid or best ask price changes
        self.messages_applied = 0
        self.snapshots_applied = 0
        self.diffs_applied = 0
        self.frames_skipped = 0  # malformed frames on our channels
        self.levels_dropped = 0  # levels with price <= 0 (itayose)
        self.levels_pruned = 0  # crossed levels removed against mid_price
        self.desyncs = 0
        self.resyncs = 0  # snapshots that ended a stale period
        super().__init__(name=name, keys=self._KEYS)

    # ---- state ---------------------------------------------------------------------------------------
    @property
    def stale(self) -> bool:
        return self._stale_reason is not None

    @property
    def stale_reason(self) -> StaleReason | None:
        return self._stale_reason

    def mark_disconnected(self) -> None:
        """The socket was lost: the book may be missing any number of updates until the next snapshot.
        Watchers get a change (kind "disconnected") so a decision loop driven by `watch()` sees it at once."""
        self._stale_reason = StaleReason.DISCONNECTED
        self._notify("update", None, "disconnected")

    def mark_silent(self) -> None:
        """The feed went quiet past the runner's stale limit: diffs may have been lost, so only a snapshot
        (not the next diff) makes the book fresh again, and the stall clock restarts then."""
        if self._stale_reason is None:
            self._stale_reason = StaleReason.SILENT
            self._notify("update", None, "silent")

    # ---- reads (Decimal at the boundary) ------------------------------------------------------------
    def best(self) -> Best:
        """(bid_price, bid_size, ask_price, ask_size); None for an empty side. Stale or not: see `stale`."""
        bid = self._best_bid
        ask = self._best_ask
        return (
            None if bid is None else price_to_decimal(bid),
            None if bid is None else size_to_decimal(self._bids[bid]),
            None if ask is None else price_to_decimal(ask),
            None if ask is None else size_to_decimal(self._asks[ask]),
        )

    def best_prices(self) -> tuple[float | None, float | None]:
        """Raw wire floats of the best bid / ask, for cheap change checks (no Decimal)."""
        return self._best_bid, self._best_ask

    def touch(self) -> tuple[float | None, float, float | None, float]:
        """Raw wire floats of the best bid price and size, best ask price and size (size 0.0 for an empty
        side): the decision's read, no conversion."""
        bid = self._best_bid
        ask = self._best_ask
        return (
            bid,
            0.0 if bid is None else dict.__getitem__(self._bids, bid),
            ask,
            0.0 if ask is None else dict.__getitem__(self._asks, ask),
        )

    def iter_raw(self, side: Side) -> Iterator[tuple[float, float]]:
        """Raw (price, size) wire floats from the best outwards."""
        book = self._bids if side is Side.BUY else self._asks
        prices = reversed(book) if side is Side.BUY else iter(book)
        for p in prices:
            yield p, dict.__getitem__(book, p)

    def iter_levels(self, side: Side) -> Iterator[Level]:
        """Levels from the best outwards (BUY = bids descending, SELL = asks ascending), converted lazily."""
        book = self._bids if side is Side.BUY else self._asks
        prices = reversed(book) if side is Side.BUY else iter(book)
        for p in prices:
            yield price_to_decimal(p), size_to_decimal(book[p])

    def levels(self, side: Side, n: int) -> list[Level]:
        """The top n levels of one side, best first."""
        return list(islice(self.iter_levels(side), max(n, 0)))

    def depth(self) -> tuple[int, int]:
        return len(self._bids), len(self._asks)

    @property
    def mid_price(self) -> Decimal | None:
        """The last message's mid_price (None before any or during itayose)."""
        return None if self.last_mid is None else Decimal(repr(self.last_mid))

    # ---- pybotters DataStore surface -----------------------------------------------------------------
    def __len__(self) -> int:
        # also read by DataStore._sweep_* via len(self._data); levels are not in _data, so never swept
        return len(self._bids) + len(self._asks)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self._items(Side.BUY)
        yield from self._items(Side.SELL)

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        return reversed(list(self))

    def _items(self, side: Side, limit: int | None = None) -> Iterator[dict[str, Any]]:
        name = "bids" if side is Side.BUY else "asks"
        for price, size in islice(self.iter_levels(side), limit):
            yield {"product_code": self.product_code, "side": name, "price": price, "size": size}

    def get(self, item: dict[str, Any]) -> dict[str, Any] | None:
        try:
            if item["product_code"] != self.product_code:
                return None
            book = {"bids": self._bids, "asks": self._asks}[item["side"]]
            price = float(item["price"])
        except (KeyError, TypeError, ValueError):
            return None
        size = book.get(price)
        if size is None:
            return None
        return {
            "product_code": self.product_code,
            "side": item["side"],
            "price": price_to_decimal(price),
            "size": size_to_decimal(size),
        }

    def sorted(self, query: dict[str, Any] | None = None, limit: int | None = None) -> dict[str, list[dict]]:
        """pybotters Board.sorted(): {"bids": descending, "asks": ascending}, without sorting anything."""
        if not query:
            return {
                "bids": list(self._items(Side.BUY, limit or None)),
                "asks": list(self._items(Side.SELL, limit or None)),
            }
        result: dict[str, list[dict]] = {"bids": [], "asks": []}
        for key, side in (("bids", Side.BUY), ("asks", Side.SELL)):
            matching = (
                it for it in self._items(side) if all(k in it and it[k] == v for k, v in query.items())
            )
            result[key] = list(islice(matching, limit or None))
        return result

    # ---- input -----------------------------------------------------------------------------------------
    def onmessage(self, msg: Any, ws: Any = None) -> None:
        """pybotters hdlr_json: a full JSON-RPC frame. Other channels and replies are ignored; a malformed
        frame on our channels is logged and skipped whole. Never raises. `ws` is accepted and unused."""
        try:
            params = msg["params"]
            channel = params["channel"]
        except (KeyError, TypeError, IndexError):
            return  # subscription replies, errors, batches, junk: not a board frame
        if channel == self._diff_channel:
            is_snapshot = False
        elif channel == self._snapshot_channel:
            is_snapshot = True
        else:
            return
        try:
            message = params["message"]
            if is_snapshot and self._apply_snapshot_fast(message):
                self._applied(message, mid=self.last_mid, is_snapshot=True)
                return
            mid, bids, asks = _parse_message(message, is_snapshot)
        except (_BadFrame, KeyError, TypeError) as e:
            self.frames_skipped += 1
            logger.warning(
                "board: skipped bad frame on {} ({}): {}", channel, e, repr(msg)[:_BAD_FRAME_PREVIEW]
            )
            return
        if mid is not None and not mid.is_integer():
            self._exact_mids_seen = True
        try:
            if is_snapshot:
                self._apply_snapshot(mid, bids, asks)
            else:
                self._apply_diff(mid, bids, asks)
        except Exception:  # never take the feed down; but a half-applied frame leaves a book we cannot trust
            self._stale_reason = StaleReason.ERROR
            try:
                self._update_best()  # the diffs that follow carry the bests on from the book as it is
            except Exception:
                logger.exception("board: the book could not be read after a failed frame")
            logger.exception("board: failed applying a frame on {}; stale until the next snapshot", channel)
            self._notify("update", message, "error")
            return
        self._applied(message, mid, is_snapshot)

    def _applied(self, message: Any, mid: float | None, is_snapshot: bool) -> None:
        self.messages_applied += 1
        self.last_mid = mid
        if is_snapshot:
            self._notify("insert", message, "snapshot")
        else:
            self._notify("update", message, "diff")

    def _notify(self, operation: Literal["insert", "update"], source: Any, kind: str) -> None:
        if self._queues:  # one shared change, not deep-copied per watcher (pybotters copies; too slow here)
            change = StoreChange(self, operation, source, self._summary(kind))
            for queue in self._queues:
                queue.put_nowait(change)
        self._set()

    def _summary(self, kind: str) -> dict[str, Any]:
        bid_p, bid_s, ask_p, ask_s = self.best()
        return {
            "product_code": self.product_code,
            "kind": kind,
            "version": self.version,
            "stale": self.stale,
            "stale_reason": self._stale_reason,
            "best_bid": bid_p,
            "best_bid_size": bid_s,
            "best_ask": ask_p,
            "best_ask_size": ask_s,
        }

    def _apply_snapshot_fast(self, message: Any) -> bool:
        """Apply a snapshot that `_snapshot_side` reads whole, or return False (nothing changed) for the
        level-by-level path. Sets `last_mid`."""
        if type(message) is not dict:
            return False
        fresh_bids = _snapshot_side(message.get("bids"))
        fresh_asks = _snapshot_side(message.get("asks"))
        if fresh_bids is None or fresh_asks is None:
            return False
        try:
            mid, _, _ = _parse_message({"mid_price": message.get("mid_price")}, False)
        except _BadFrame:
            return False
        if mid is not None and not mid.is_integer():
            self._exact_mids_seen = True
        self._bids = fresh_bids
        self._asks = fresh_asks
        self._after_snapshot(mid)
        self.last_mid = mid
        return True

    def _apply_snapshot(self, mid: float | None, bids: _Levels, asks: _Levels) -> None:
        fresh_bids: dict[float, float] = {}
        fresh_asks: dict[float, float] = {}
        for levels, fresh in ((bids, fresh_bids), (asks, fresh_asks)):
            for p, s in levels:
                if p <= 0.0:
                    self.levels_dropped += 1
                elif s == 0.0:
                    fresh.pop(p, None)
                else:
                    fresh[p] = s
        self._bids = SortedDict(fresh_bids)
        self._asks = SortedDict(fresh_asks)
        self._after_snapshot(mid)

    def _after_snapshot(self, mid: float | None) -> None:
        bid, ask = self._top_bid(), self._top_ask()
        if mid is not None:
            bid, ask = self._prune(mid, bid, ask)
        # a snapshot is the exchange's own book: it heals whatever made us stale, and is not itself checked
        if self._stale_reason is not None:
            self._stale_reason = None
            self.resyncs += 1
        self.snapshots_applied += 1
        self._set_best(bid, ask)

    def _apply_diff(self, mid: float | None, bids: _Levels, asks: _Levels) -> None:
        # the bests are carried through the diff (a better level inserted is the new best; only when the
        # best itself is deleted is the book asked), so most diffs never search the SortedDicts
        bid = self._apply_side(bids, self._bids, self._best_bid, is_bid=True)
        ask = self._apply_side(asks, self._asks, self._best_ask, is_bid=False)
        if bid is _LOOK:
            bid = self._top_bid()
        if ask is _LOOK:
            ask = self._top_ask()
        if mid is not None:
            bid, ask = self._prune(mid, bid, ask)
        self.diffs_applied += 1
        self._set_best(bid, ask)
        if mid is not None and self._stale_reason is None and not self._mid_agrees(mid):
            self._stale_reason = StaleReason.DESYNC
            self.desyncs += 1

    def _apply_side(self, levels: _Levels, book: SortedDict, best: float | None, *, is_bid: bool) -> Any:
        """One side of a diff into its book. Returns the side's best carried through: the best before,
        or a better level inserted, or `_LOOK` when the best itself was deleted."""
        for p, s in levels:
            if p <= 0.0:
                self.levels_dropped += 1
            elif s == 0.0:
                if book.pop(p, None) is not None and p == best:
                    best = _LOOK
            else:
                book[p] = s
                if best is None or (best is not _LOOK and (p > best if is_bid else p < best)):
                    best = p
        return best

    def _prune(self, mid: float, bid: float | None, ask: float | None) -> tuple[float | None, float | None]:
        """Drop the levels crossed against `mid` (left by a missed deletion), given the bests; returns the new
        bests."""
        while bid is not None and bid >= mid:
            self._bids.popitem(-1)
            self.levels_pruned += 1
            bid = self._top_bid()
        while ask is not None and ask <= mid:
            self._asks.popitem(0)
            self.levels_pruned += 1
            ask = self._top_ask()
        return bid, ask

    def _top_bid(self) -> float | None:
        return self._bids.peekitem(-1)[0] if self._bids else None

    def _top_ask(self) -> float | None:
        return self._asks.peekitem(0)[0] if self._asks else None

    def _set_best(self, bid: float | None, ask: float | None) -> None:
        if bid != self._best_bid or ask != self._best_ask:
            self._best_bid = bid
            self._best_ask = ask
            self.version += 1

    def _update_best(self) -> None:
        """The bests read from the book (after a frame failed half-way)."""
        self._set_best(self._top_bid(), self._top_ask())

    def _mid_agrees(self, mid: float) -> bool:
        """Does the message's mid_price match our book's (best_bid + best_ask) / 2?

        Whole-yen prices make the book's mid a whole or half yen, and all these sums are exact in a float. A
        mid sent as x.5 proves the exchange sends exact mids; until one is seen, a whole-yen mid one half-yen
        off an x.5 book mid is accepted as rounding. A side emptied by the prune means the book cannot be
        right.
        """
        bid, ask = self._best_bid, self._best_ask
        if bid is None or ask is None:
            return False
        off = abs(bid + ask - 2.0 * mid)
        if off == 0.0:
            return True
        return off == 1.0 and not self._exact_mids_seen and mid.is_integer()
