"""The other participants: a seeded, reproducible crowd that adds, cancels and hits liquidity. Pure.

Shape (SPEC §14): a fair value that drifts and sometimes jumps; crowd quotes that follow it with a spread that
is usually wide (hundreds to thousands of ticks) and sometimes tight; regimes that alternate between *active*
(the best bid/ask move) and *stall* (neither best price moves for 100 ms … several seconds while deeper
levels, best sizes and partial hits go on). Stall lengths are in real time whatever `activity` is, so
`stall_T_ms` keeps its meaning; `activity` scales the tick rate and with it every other event rate.

One `step()` is one board-diff frame's worth of changes. Same seed and same calls → same book and trades.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from bot.sim.matching import Level, OrderBook, Trade
from bot.sim.wire import SAT_PER_BTC
from bot.types.dto import Side

MS = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelParams:
    mean_gap_yen: int = 90  # average distance between deep levels
    depth_factor: float = 1.8  # book depth kept = levels_per_side × this (snapshots show the top part)
    fair_sigma_tick: float = 250.0  # fair-value random walk per tick, yen
    jump_per_tick: float = 1 / 1300  # ≈ one jump every 3 min at activity 1
    jump_frac: tuple[float, float] = (0.0008, 0.002)
    tight_prob: float = 0.15  # share of active phases that aim for a tight spread
    tight_ticks: tuple[int, int] = (1, 15)
    wide_ticks: tuple[int, int] = (300, 3500)
    active_mean_ticks: float = 5.0
    move_prob: float = 0.6  # chance per active tick that a best price moves
    trade_prob: float = 0.04  # crowd market orders per tick (≈0.3/s at 7.3 Hz; sweeps add more)
    sweep_prob: float = 0.3  # a best level that must go is taken (vs pulled)
    deep_ops: tuple[int, float] = (3, 0.45)  # 1 + Binomial(n, p) deep changes per tick
    best_size_add_prob: float = 0.15  # a size change at the best per tick
    trade_median_btc: float = 0.01
    quote_median_btc: float = 0.02
    deep_median_btc: float = 0.05
    long_gap_prob: float = 0.01  # occasional long pause between diffs (≈540 ms at 7.3 Hz)


def _stall_ms(rng: random.Random) -> float:
    """Stall lengths: many short (100–400 ms), many around a second, some several seconds."""
    u = rng.random()
    lo, hi = (100, 400) if u < 0.4 else (400, 2000) if u < 0.8 else (2000, 8000)
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


class MarketModel:
    def __init__(
        self,
        rng: random.Random,
        start_mid: int,
        levels_per_side: int,
        activity: float,
        diff_rate_hz: float,
        params: ModelParams | None = None,
    ) -> None:
        self.rng = rng
        self.p = params or ModelParams()
        self.fair = start_mid
        self.activity = activity
        self.target_depth = max(20, int(levels_per_side * self.p.depth_factor))
        self.tick_ns = 1e9 / (diff_rate_hz * activity) / 1.02  # /1.02: the jitter's mean is ≈1.02
        self.stalled = False
        self.stall_until = 0
        self.active_left = 0
        self.target_spread = 800
        self.ticks = 0

    # ---- schedule ------------------------------------------------------------------------------------------
    def next_interval_ns(self) -> int:
        r = self.rng
        f = r.uniform(2.5, 3.9) if r.random() < self.p.long_gap_prob else r.uniform(0.55, 1.45)
        return max(1, int(self.tick_ns * f))

    # ---- sizes ---------------------------------------------------------------------------------------------
    def _size(self, median_btc: float, sigma: float = 1.0, cap_btc: float = 5.0) -> int:
        btc = min(cap_btc, max(0.001, math.exp(self.rng.gauss(math.log(median_btc), sigma))))
        return max(100_000, int(btc * SAT_PER_BTC))

    # ---- setup ---------------------------------------------------------------------------------------------
    def seed_book(self, book: OrderBook) -> None:
        half = self.target_spread // 2
        for side, sign in ((Side.BUY, -1), (Side.SELL, 1)):
            price = self.fair + sign * half
            for _ in range(self.target_depth):
                book.rest(side, price, self._size(self.p.deep_median_btc, 1.3))
                price += sign * (1 + int(self.rng.expovariate(1 / self.p.mean_gap_yen)))

    # ---- one tick ------------------------------------------------------------------------------------------
    def step(self, book: OrderBook, now: int, allow_trades: bool = True) -> list[Trade]:
        r = self.rng
        self.ticks += 1
        trades: list[Trade] = []
        self.fair += round(r.gauss(0, self.p.fair_sigma_tick))
        force_move = False
        if r.random() < self.p.jump_per_tick:
            trades += self._jump(book, allow_trades)
            self.stalled = False
            self.active_left = max(self.active_left, 3)
        if self.stalled and now >= self.stall_until:
            self._start_active()
            force_move = True
        elif not self.stalled and self.active_left <= 0:
            self.stalled = True
            self.stall_until = now + int(_stall_ms(r) * MS)
        if not self.stalled:
            self.active_left -= 1
            if force_move or r.random() < self.p.move_prob:
                trades += self._move_best(book, allow_trades)
        n_ops = 1 + sum(r.random() < self.p.deep_ops[1] for _ in range(self.p.deep_ops[0]))
        for _ in range(n_ops):
            self._deep_op(book)
        if r.random() < self.p.best_size_add_prob:
            side = Side.BUY if r.random() < 0.5 else Side.SELL
            best = book.crowd_best(side)
            if best is not None:
                book.rest(side, best, self._size(self.p.quote_median_btc))
        if allow_trades and r.random() < self.p.trade_prob:
            trades += self._market_order(book)
        self._refill(book)
        return trades

    def _start_active(self) -> None:
        r = self.rng
        self.stalled = False
        self.active_left = 1 + int(r.expovariate(1 / self.p.active_mean_ticks))
        if r.random() < self.p.tight_prob:
            self.target_spread = r.randint(*self.p.tight_ticks)
        else:
            lo, hi = self.p.wide_ticks
            self.target_spread = int(math.exp(r.uniform(math.log(lo), math.log(hi))))

    def _desired(self) -> tuple[int, int]:
        half = self.target_spread // 2
        return self.fair - half, self.fair - half + max(1, self.target_spread)

    def _move_best(self, book: OrderBook, allow_trades: bool) -> list[Trade]:
        """Move one best price toward where the crowd wants it: improve inside, or pull / sweep the level."""
        r = self.rng
        b, a = book.crowd_best(Side.BUY), book.crowd_best(Side.SELL)
        if b is None or a is None:
            return []
        want_b, want_a = self._desired()
        gb, ga = want_b - b, a - want_a  # > 0: should improve; < 0: should back off
        side = Side.BUY if r.random() * (abs(gb) + abs(ga) + 2) < abs(gb) + 1 else Side.SELL
        gap = gb if side is Side.BUY else ga
        best = b if side is Side.BUY else a
        if gap > 0:
            step = max(1, round(gap * r.uniform(0.3, 1.0)))
            room = a - b - 1  # never cross the crowd's own other side
            if room < 1:
                return []
            step = min(step, room)
            price = best + step if side is Side.BUY else best - step
            return self._crowd_limit(book, side, price, self._size(self.p.quote_median_btc))
        # back off toward the wanted price: pull (or have someone take) up to a few levels at once
        want = want_b if side is Side.BUY else want_a
        levels: list[Level] = []
        for lv in book.iter_levels(side):
            if len(levels) >= 8 or (lv.price < want if side is Side.BUY else lv.price > want):
                break
            levels.append(lv)
        if not levels or len(levels) >= book.depth(side):
            return []
        levels = levels[: 1 + int(r.random() * len(levels))]
        if allow_trades and r.random() < self.p.sweep_prob:
            size = sum(lv.total for lv in levels)
            return book.take(side.opposite, size, levels[-1].price, book.new_crowd_id(), False)
        for lv in levels:
            if lv.crowd:
                book.reduce_crowd(side, lv.price, lv.crowd)
        return []

    def _crowd_limit(self, book: OrderBook, side: Side, price: int, size: int) -> list[Trade]:
        """A crowd limit order: trades against anything it crosses (only ever our orders), rests the rest."""
        oid = book.new_crowd_id()
        trades = book.take(side, size, price, oid, False)
        left = size - sum(t.size for t in trades)
        if left > 0:
            book.rest(side, price, left, oid)
        return trades

    def _deep_op(self, book: OrderBook) -> None:
        r = self.rng
        side = Side.BUY if r.random() < 0.5 else Side.SELL
        best = book.crowd_best(side)
        if best is None:
            return
        depth = book.depth(side)
        p_add = min(0.9, max(0.1, 0.5 + 0.8 * (self.target_depth - depth) / self.target_depth))
        sign = -1 if side is Side.BUY else 1
        if r.random() < p_add:
            span = self.target_depth * self.p.mean_gap_yen
            dist = 1 + int(r.random() ** 1.6 * span)
            book.rest(side, best + sign * dist, self._size(self.p.deep_median_btc, 1.3))
            return
        if depth < 2:
            return
        i = 1 + int(r.random() ** 1.3 * (depth - 1))
        price, lv = (
            (book.bids.peekitem(-1 - i) if side is Side.BUY else book.asks.peekitem(i))
            if i < depth
            else (None, None)
        )
        if lv is None or price is None or lv.crowd == 0 or price == best:
            return
        cut = lv.crowd if r.random() < 0.6 else max(1, int(lv.crowd * r.uniform(0.2, 0.8)))
        book.reduce_crowd(side, price, cut)

    def _market_order(self, book: OrderBook) -> list[Trade]:
        """A crowd market order. In a stall it stops short of emptying the crowd's best level, so the best
        price holds while anything of ours resting in front of it (or at it, ahead in the queue) gets hit."""
        r = self.rng
        b, a = book.crowd_best(Side.BUY), book.crowd_best(Side.SELL)
        if b is None or a is None:
            return []
        mid = (a + b) // 2
        p_buy = min(0.75, max(0.25, 0.5 + (self.fair - mid) / max(1, 4 * (a - b))))
        taker = Side.BUY if r.random() < p_buy else Side.SELL
        size = self._size(self.p.trade_median_btc)
        if not self.stalled:
            return book.take(taker, size, None, book.new_crowd_id(), False)
        maker = taker.opposite
        crowd_best = a if taker is Side.BUY else b
        cap = 0
        for lv in book.iter_levels(maker):
            if lv.price == crowd_best:
                cap += lv.crowd_end() - 1
                break
            cap += lv.total
        if cap < 100_000:
            return []
        return book.take(taker, size, crowd_best, book.new_crowd_id(), False, max_size=cap)

    def _jump(self, book: OrderBook, allow_trades: bool) -> list[Trade]:
        r = self.rng
        frac = r.uniform(*self.p.jump_frac)
        up = r.random() < 0.5
        move = max(1, int(self.fair * frac))
        self.fair += move if up else -move
        if not allow_trades:
            return []
        taker = Side.BUY if up else Side.SELL
        limit = self.fair - self.target_spread // 2 if up else self.fair + self.target_spread // 2
        size = book.fillable(taker, limit, 10**15)
        if size <= 0:
            return []
        return book.take(taker, size, limit, book.new_crowd_id(), False)

    def _refill(self, book: OrderBook) -> None:
        """Keep both sides non-empty, rebuild the far end after a sweep, trim it when too deep."""
        for side, sign in ((Side.BUY, -1), (Side.SELL, 1)):
            depth = book.depth(side)
            if 0 < depth < self.target_depth * 0.7:
                far = book.bids.peekitem(0)[0] if side is Side.BUY else book.asks.peekitem(-1)[0]
                for _ in range(min(20, int(self.target_depth * 0.7) - depth)):
                    far += sign * (1 + int(self.rng.expovariate(1 / self.p.mean_gap_yen)))
                    book.rest(side, far, self._size(self.p.deep_median_btc, 1.3))
            if book.crowd_best(side) is None:
                other = book.crowd_best(side.opposite)
                want_b, want_a = self._desired()
                price = want_b if side is Side.BUY else want_a
                if other is not None:
                    price = min(price, other - 1) if side is Side.BUY else max(price, other + 1)
                for k in range(5):
                    self._crowd_limit(
                        book, side, price + sign * k * self.p.mean_gap_yen, self._size(self.p.deep_median_btc)
                    )
            while book.depth(side) > self.target_depth * 1.15:
                far_price, far = book.bids.peekitem(0) if side is Side.BUY else book.asks.peekitem(-1)
                if far.crowd == 0:
                    break
                book.reduce_crowd(side, far_price, far.crowd)
