"""Board benchmark: BoardStore vs pybotters' bitFlyerDataStore on realistic FX_BTC_JPY board traffic (SPEC
§11, §13).

Measures microseconds per board diff message (3-5 levels each, with mid_price) at 300 and 2,000 levels a side,
and the cost of reading the best prices (`BoardStore.best()` vs pybotters `board.sorted(limit=1)`).

    .venv/bin/python -m bench.board                          # prints the table
    .venv/bin/python -m bench.board --write-capture tests/data/board_capture.jsonl

The traffic model (`BoardFeed`) is also what generated tests/data/board_capture.jsonl: a seeded book around
13.6 M JPY with a spread of about a thousand yen, diffs of 3-5 unsorted levels (size changes, new levels,
deletions, now and then a new best), exact mid_price (x.5 when the sum is odd), and an optional missed
deletion.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pybotters
from pybotters.ws import ClientWebSocketResponse
from sortedcontainers import SortedDict

from bot.engine.orders import OrderTracker
from bot.infra.board_store import BoardStore
from bot.infra.orderbook_view import OrderBookView
from bot.types.dto import Side

PRODUCT = "FX_BTC_JPY"
SNAPSHOT_CHANNEL = f"lightning_board_snapshot_{PRODUCT}"
DIFF_CHANNEL = f"lightning_board_{PRODUCT}"


def frame(channel: str, message: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "channelMessage", "params": {"channel": channel, "message": message}}


class BoardFeed:
    """A seeded true book and the frames the exchange would send about it."""

    def __init__(
        self,
        seed: int = 1,
        levels_per_side: int = 300,
        mid: int = 13_600_000,
        spread: int = 1_000,
        missed_delete_rate: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.levels_per_side = levels_per_side
        self.missed_delete_rate = missed_delete_rate
        self.target_spread = spread
        self.bids: SortedDict = SortedDict()  # int price -> float size
        self.asks: SortedDict = SortedDict()
        price = mid - spread // 2
        for _ in range(levels_per_side):
            self.bids[price] = self._size()
            price -= self.rng.randint(1, 30)
        price = mid + spread - spread // 2
        for _ in range(levels_per_side):
            self.asks[price] = self._size()
            price += self.rng.randint(1, 30)

    def _size(self) -> float:
        return round(max(0.001, self.rng.expovariate(1 / 0.05)), 8)

    def best(self) -> tuple[int, int]:
        return self.bids.keys()[-1], self.asks.keys()[0]

    def mid(self) -> float:
        bid, ask = self.best()
        return (bid + ask) / 2

    def snapshot(self) -> dict[str, Any]:
        bids = [{"price": float(p), "size": self.bids[p]} for p in reversed(self.bids.keys())]
        asks = [{"price": float(p), "size": self.asks[p]} for p in self.asks.keys()]
        return frame(SNAPSHOT_CHANNEL, {"mid_price": self.mid(), "bids": bids, "asks": asks})

    def _near_touch(self, book: SortedDict, is_bid: bool, skip_touch: bool = False) -> int:
        depth = min(len(book) - 1, int(self.rng.expovariate(1 / 25)) + (1 if skip_touch else 0))
        return book.keys()[-1 - depth] if is_bid else book.keys()[depth]

    def _change(self, is_bid: bool, missed: list[tuple[bool, int]]) -> tuple[int, float]:
        rng = self.rng
        book = self.bids if is_bid else self.asks
        bid, ask = self.best()
        spread = ask - bid
        # the best moves now and then, inwards (a new level in the spread) or outwards (the touch leaves); the
        # odds pull the spread back towards `target_spread`, as wide as it usually is on FX_BTC_JPY
        lean = spread / self.target_spread
        r = rng.random()
        if r < min(0.06, 0.03 * lean) and spread > 2:
            step = rng.randint(1, max(1, min(spread - 2, spread // 20)))
            price = bid + step if is_bid else ask - step
            book[price] = self._size()
            return price, book[price]
        if r < 0.06 and len(book) > 2 and rng.random() < min(1.0, 1 / max(lean, 0.01)):
            price = bid if is_bid else ask
            return self._delete(book, is_bid, price, missed)
        want_fewer = len(book) > self.levels_per_side * 1.1
        want_more = len(book) < self.levels_per_side * 0.9
        if len(book) > 2 and (r < 0.3 or want_fewer) and not want_more:
            return self._delete(book, is_bid, self._near_touch(book, is_bid, skip_touch=True), missed)
        if r < 0.55:  # a new level behind the touch
            price = self._near_touch(book, is_bid) + (-rng.randint(1, 20) if is_bid else rng.randint(1, 20))
        else:  # size change of a level behind the touch
            price = self._near_touch(book, is_bid, skip_touch=True)
        book[price] = self._size()
        return price, book[price]

    def _delete(
        self, book: SortedDict, is_bid: bool, price: int, missed: list[tuple[bool, int]]
    ) -> tuple[int, float]:
        del book[price]
        if self.rng.random() < self.missed_delete_rate:
            missed.append((is_bid, price))
        return price, 0.0

    def diff(self, missed_deletion_at_touch: bool = False) -> dict[str, Any]:
        """One diff of 3-5 levels, unsorted, with the true book's exact mid. `missed_deletion_at_touch`
        deletes the best ask in the true book and leaves it out of the frame (a desync a receiver must
        notice)."""
        missed: list[tuple[bool, int]] = []
        changes: dict[tuple[bool, int], float] = {}
        for _ in range(self.rng.randint(3, 5)):
            is_bid = self.rng.random() < 0.5
            price, size = self._change(is_bid, missed)
            changes[(is_bid, price)] = size
        if missed_deletion_at_touch and len(self.asks) > 2:
            best_ask = self.asks.keys()[0]
            del self.asks[best_ask]
            changes.pop((False, best_ask), None)
        for key in missed:
            changes.pop(key, None)
        items = list(changes.items())
        self.rng.shuffle(items)  # bitFlyer does not sort levels inside a diff
        bids = [{"price": float(p), "size": s} for (b, p), s in items if b]
        asks = [{"price": float(p), "size": s} for (b, p), s in items if not b]
        return frame(DIFF_CHANNEL, {"mid_price": self.mid(), "bids": bids, "asks": asks})


def capture_frames(seed: int = 7) -> list[dict[str, Any]]:
    """The frames of tests/data/board_capture.jsonl: diffs before the first snapshot (as on bitFlyer), a
    snapshot of 300 levels a side, diffs at ~7/s with a snapshot every ~5 s, a missed deletion at the touch,
    and frames of other channels mixed in."""
    feed = BoardFeed(seed=seed, levels_per_side=300, missed_delete_rate=0.02)
    frames: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "result": True},
        {"jsonrpc": "2.0", "id": 2, "result": True},
    ]
    frames += [feed.diff() for _ in range(3)]
    for block in range(3):
        frames.append(feed.snapshot())
        for i in range(36):
            frames.append(feed.diff(missed_deletion_at_touch=(block == 1 and i == 10)))
            if i % 12 == 5:
                bid, ask = feed.best()
                frames.append(
                    frame(
                        f"lightning_ticker_{PRODUCT}",
                        {
                            "product_code": PRODUCT,
                            "state": "RUNNING",
                            "best_bid": float(bid),
                            "best_ask": float(ask),
                        },
                    )
                )
    return frames


def write_capture(path: Path, seed: int = 7) -> int:
    frames = capture_frames(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for fr in frames:
            f.write(json.dumps(fr, separators=(",", ":")) + "\n")
    return len(frames)


class _QuietWS(ClientWebSocketResponse):
    """Enough of a pybotters socket for bitFlyerDataStore to accept a snapshot (it unsubscribes through
    it)."""

    def __init__(self) -> None:  # no aiohttp connection behind it
        self.sent: list[Any] = []

    async def send_json(self, data: Any, *args: Any, **kwargs: Any) -> None:
        self.sent.append(data)


def _pybotters_with_snapshot(snapshot: dict[str, Any]) -> pybotters.bitFlyerDataStore:
    async def feed() -> pybotters.bitFlyerDataStore:
        store = pybotters.bitFlyerDataStore()
        store.onmessage(snapshot, _QuietWS())
        return store

    return asyncio.run(feed())


def _time_per_message(
    handler: Callable[[dict[str, Any]], None], frames: list[dict[str, Any]]
) -> dict[str, float]:
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        start = clock()
        for fr in frames:
            t0 = clock()
            handler(fr)
            samples.append(clock() - t0)
        total = clock() - start
    finally:
        gc.enable()
    samples.sort()
    return {
        "mean_us": total / len(frames) / 1000,
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
    }


def _time_call(fn: Callable[[], Any], n: int) -> float:
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(n):
        fn()
    return (clock() - start) / n / 1000


def bench_book_size(
    levels_per_side: int, n_diffs: int = 3_000, warmup: int = 300, seed: int = 1
) -> dict[str, Any]:
    feed = BoardFeed(seed=seed, levels_per_side=levels_per_side, missed_delete_rate=0.02)
    snapshot = feed.snapshot()
    frames = [feed.diff() for _ in range(warmup + n_diffs)]
    warm, timed = frames[:warmup], frames[warmup:]

    ours = BoardStore(PRODUCT)
    ours.onmessage(snapshot)
    for fr in warm:
        ours.onmessage(fr)
    ours_diff = _time_per_message(ours.onmessage, timed)

    theirs = _pybotters_with_snapshot(snapshot)
    for fr in warm:
        theirs.onmessage(fr)
    theirs_diff = _time_per_message(lambda fr: theirs.onmessage(fr, None), timed)

    ours_best_pb, theirs_best_pb = ours.best_prices(), theirs.board.sorted(limit=1)
    assert ours_best_pb == (theirs_best_pb["bids"][0]["price"], theirs_best_pb["asks"][0]["price"]), (
        "stores disagree"
    )
    n_reads = 20_000 if levels_per_side <= 300 else 5_000
    # the strategy's read: own-excluded best with two of our quotes resting (one at the touch)
    orders = OrderTracker()
    bid, _ = ours.best_prices()
    assert bid is not None
    orders.new_order(
        tag="stall", side=Side.BUY, order_type="LIMIT", price=Decimal(int(bid)), size=Decimal("0.001"), now=0
    )
    orders.new_order(
        tag="stall",
        side=Side.SELL,
        order_type="LIMIT",
        price=Decimal(int(bid) + 400_000),
        size=Decimal("0.001"),
        now=0,
    )
    view = OrderBookView(ours, PRODUCT, Decimal(1), orders)
    snapshot_us = _snapshot_apply(levels_per_side, seed)
    return {
        "levels_per_side": levels_per_side,
        "diffs": n_diffs,
        "ours_diff": ours_diff,
        "pybotters_diff": theirs_diff,
        "speedup": theirs_diff["mean_us"] / ours_diff["mean_us"],
        "ours_best_us": _time_call(ours.best, n_reads),
        "ours_best_raw_us": _time_call(ours.best_prices, n_reads),
        "pybotters_sorted1_us": _time_call(lambda: theirs.board.sorted(limit=1), max(200, n_reads // 20)),
        "view_snapshot_us": _time_call(lambda: view.snapshot(0), n_reads),
        "snapshot_apply_us_p50": snapshot_us["p50_us"],
        "snapshot_apply_us_p99": snapshot_us["p99_us"],
        "desyncs_seen": ours.desyncs,
    }


def _snapshot_apply(levels_per_side: int, seed: int, n: int = 60) -> dict[str, float]:
    """A full snapshot applied over a book kept by diffs (as every ≈5 s on bitFlyer): ≈36 diffs, some with a
    missed deletion, between snapshots, so each snapshot also repairs a level or two."""
    feed = BoardFeed(seed=seed, levels_per_side=levels_per_side, missed_delete_rate=0.02)
    store = BoardStore(PRODUCT)
    store.onmessage(feed.snapshot())
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(n):
            for _ in range(36):
                store.onmessage(feed.diff())
            snap = feed.snapshot()
            t0 = clock()
            store.onmessage(snap)
            samples.append(clock() - t0)
    finally:
        gc.enable()
    assert not store.stale, "a snapshot must leave the book fresh"
    samples.sort()
    return {"p50_us": samples[len(samples) // 2] / 1000, "p99_us": samples[int(len(samples) * 0.99)] / 1000}


def run_board_bench(sizes: tuple[int, ...] = (300, 2_000), n_diffs: int = 3_000) -> dict[str, Any]:
    return {"results": [bench_book_size(n, n_diffs=n_diffs) for n in sizes], "python": sys.version.split()[0]}


def _table(results: list[dict[str, Any]]) -> Iterator[str]:
    yield "board diff message (3-5 levels, with mid_price), µs per message"
    yield (
        f"{'levels/side':>11} | {'ours mean':>9} {'p50':>7} {'p99':>7} | {'pybotters mean':>14} {'p50':>8} "
        f"{'p99':>8} | {'x faster':>8}"
    )
    for r in results:
        o, p = r["ours_diff"], r["pybotters_diff"]
        yield (
            f"{r['levels_per_side']:>11} | {o['mean_us']:>9.2f} {o['p50_us']:>7.2f} {o['p99_us']:>7.2f} | "
            f"{p['mean_us']:>14.1f} {p['p50_us']:>8.1f} {p['p99_us']:>8.1f} | {r['speedup']:>8.0f}"
        )
    yield ""
    yield "best-price lookup, µs per call"
    yield (
        f"{'levels/side':>11} | {'best() Decimal':>14} {'best_prices() raw':>17} {'view.snapshot()':>15} | "
        f"{'pybotters sorted(limit=1)':>25}"
    )
    for r in results:
        yield (
            f"{r['levels_per_side']:>11} | {r['ours_best_us']:>14.2f} {r['ours_best_raw_us']:>17.2f} "
            f"{r['view_snapshot_us']:>15.2f} | {r['pybotters_sorted1_us']:>25.1f}"
        )
    yield "(view.snapshot(): own-excluded best with two of our orders resting, one of them at the best bid)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-capture", type=Path, help="write the replay capture file and exit")
    parser.add_argument("--diffs", type=int, default=3_000)
    args = parser.parse_args()
    if args.write_capture:
        print(f"wrote {write_capture(args.write_capture)} frames to {args.write_capture}")
        return
    out = run_board_bench(n_diffs=args.diffs)
    for line in _table(out["results"]):
        print(line)


if __name__ == "__main__":
    main()
