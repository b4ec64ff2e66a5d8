"""The venue's core: book + crowd model + ledger + order life cycle → bitFlyer-shaped messages. Pure.

Every method takes `now` (monotonic ns); wall-clock timestamps are `now + wall_offset_ns`. Methods return the
messages to publish (`Public` channel frames, `Private` child_order_events batches) and the edge sends them.
Errors a client must see are raised as `VenueError(status, message, http_status)`.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from bot.config.loader import SimConfig
from bot.sim.ledger import FINISHED_KEPT, ChildOrder, ChildOrderState, CollateralRow, Ledger
from bot.sim.market import MarketModel
from bot.sim.matching import OrderBook, Trade
from bot.sim.wire import btc_to_sat, id_date, iso7, mid_out, price_out, rest_date, size_out
from bot.types.dto import Side
from bot.types.exchange import CollateralReason

PRODUCT = "FX_BTC_JPY"
OTHER_PRODUCTS = frozenset({"BTC_JPY"})  # accepted for the same account, kept out of the FX ledger
MIN_SIZE_SAT = 100_000  # 0.001 BTC
MAX_MINUTE_TO_EXPIRE = 43_200
SEC = 1_000_000_000
MARKETS = [
    {"product_code": "BTC_JPY", "market_type": "Spot"},
    {"product_code": "XRP_JPY", "market_type": "Spot"},
    {"product_code": "ETH_JPY", "market_type": "Spot"},
    {"product_code": "XLM_JPY", "market_type": "Spot"},
    {"product_code": "MONA_JPY", "market_type": "Spot"},
    {"product_code": "ETH_BTC", "market_type": "Spot"},
    {"product_code": "BCH_BTC", "market_type": "Spot"},
    {"product_code": "FX_BTC_JPY", "market_type": "FX"},
]
HEALTH_VALUES = ("NORMAL", "BUSY", "VERY BUSY", "SUPER BUSY", "NO ORDER", "STOP")
BOARD_STATES = ("RUNNING", "CLOSED", "STARTING", "PREOPEN", "CIRCUIT BREAK")

# Error statuses. Codes not in bitFlyer's documentation are marked [?] in bitflyer-api-notes.md.
INVALID_PRODUCT = (-100, "Invalid product", 400)
INVALID_PARAM = (-101, "Invalid parameter", 400)  # [?] side/type/tif/minute_to_expire/body
PRICE_TOO_LOW = (-106, "The price is too low.", 400)
SIZE_TOO_SMALL = (-110, "The minimum order size is 0.001 BTC.", 400)
MARKET_CLOSED = (-204, "Market state is closed.", 400)
MARGIN_SHORT = (-205, "Margin amount is insufficient for this order.", 400)

# the holding costs the venue charges: admin name -> collateral-history reason code
CHARGE_KINDS = {"funding": CollateralReason.FUNDING, "leverage_points": CollateralReason.LEVERAGE_POINTS}


def next_hour_utc(wall_ns: int, hours: list[int]) -> int | None:
    """The first whole hour in `hours` (UTC) strictly after `wall_ns`, as wall ns; None if there is none."""
    if not hours:
        return None
    t = datetime.fromtimestamp(wall_ns / SEC, tz=UTC).replace(minute=0, second=0, microsecond=0)
    for _ in range(49):
        t += timedelta(hours=1)
        if t.hour in hours:
            return int(t.timestamp()) * SEC
    return None


class VenueError(Exception):
    def __init__(self, status: int, message: str, http_status: int = 400) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.http_status = http_status

    @classmethod
    def of(cls, spec: tuple[int, str, int]) -> VenueError:
        return cls(*spec)

    def body(self) -> dict[str, Any]:
        return {"status": self.status, "error_message": self.message, "data": None}


@dataclass(frozen=True, slots=True)
class Public:
    channel: str
    message: Any


@dataclass(frozen=True, slots=True)
class Private:
    api_key: str
    events: list[dict[str, Any]]


Outbound = Public | Private


class Exchange:
    """`simulate_market=False` is the paper venue: no crowd model; the crowd's liquidity comes from a real
    feed through `feed_board()` / `feed_executions()`, and our orders queue behind it and fill on its real
    prints."""

    def __init__(
        self, cfg: SimConfig, start_ns: int, wall_offset_ns: int, simulate_market: bool = True
    ) -> None:
        self.cfg = cfg
        self.simulate_market = simulate_market
        self.publish = True  # False: nobody reads the public channels (a replay): no board diff, no ticker
        self.product = PRODUCT
        self.wall_offset_ns = wall_offset_ns
        self._now = start_ns
        self._wire_rng = random.Random(cfg.seed * 1_000_003 + 7)  # diff order, missed deletes, itayose
        self._ticker_rng = random.Random(cfg.seed * 1_000_033 + 11)
        self._crowd_seq = itertools.count(500_000)
        self._order_seq = itertools.count(1)
        self._exec_seq = itertools.count(2_600_000_000 + cfg.seed % 1000 * 1_000_000)
        self.other_product_orders = 0  # orders on OTHER_PRODUCTS (they never touch the FX ledger)
        self.market_frozen = False  # True: the crowd neither quotes nor trades (a test needs the book still)
        self.book = OrderBook(self._new_crowd_id)
        self.model = MarketModel(
            random.Random(cfg.seed), cfg.start_mid, cfg.levels_per_side, cfg.activity, cfg.diff_rate_hz
        )
        if simulate_market:
            self.model.seed_book(self.book)
        self.book.drain_touched()
        self.ledger = Ledger(Decimal(cfg.collateral_jpy), cfg.leverage)
        self._orders: dict[str, ChildOrder] = {}  # acceptance id -> order, all accounts
        self._expiries: list[tuple[int, str]] = []
        never = 2**62
        self._next_tick = start_ns + self.model.next_interval_ns() if simulate_market else never
        self._next_ticker = start_ns + self._ticker_gap()
        self.state = "RUNNING"
        self.health = "NORMAL"
        self._state_until: int | None = None
        self._preopen_ns = 0
        self._preopen_end_wall: int | None = None
        self.ltp = cfg.start_mid
        self.volume_sat = 30_000 * 100_000_000
        self._tick_id = itertools.count(1)
        self.missed_deletes: deque[tuple[Side, int]] = deque(
            maxlen=1000
        )  # deletions a diff left out (latest)
        self.missed_delete_count = 0
        self.ticks = 0
        self._snapshot_cache: tuple[int, dict[str, Any]] | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=500)  # public executions, for REST
        # holding costs on the wall clock: monotonic instant of each kind's next charge (None: never)
        self._charge_due: dict[str, int | None] = {}
        self._schedule_charge("funding", start_ns)
        self._schedule_charge("leverage_points", start_ns)

    # ---- time ----------------------------------------------------------------------------------------------
    def wall(self, now: int) -> int:
        return now + self.wall_offset_ns

    def next_due(self) -> int:
        due = min(self._next_tick, self._next_ticker)
        if self._expiries:
            due = min(due, self._expiries[0][0])
        if self._state_until is not None:
            due = min(due, self._state_until)
        for at in self._charge_due.values():
            if at is not None:
                due = min(due, at)
        return due

    def _ticker_gap(self) -> int:
        return int(self._ticker_rng.uniform(0.5, 0.7) * SEC)  # ≈1.7/s, never closer than 500 ms

    # ---- ids -----------------------------------------------------------------------------------------------
    def _new_crowd_id(self) -> str:
        return f"JRF{id_date(self.wall(self._now))}-{next(self._crowd_seq) % 1_000_000:06d}"

    def _new_order_ids(self, now: int) -> tuple[int, str, str]:
        n = next(self._order_seq)
        stamp = id_date(self.wall(now))
        return n, f"JRF{stamp}-{n % 1_000_000:06d}", f"JOR{stamp}-{n % 1_000_000:06d}"

    # ---- the clock moves -----------------------------------------------------------------------------------
    def advance(self, now: int) -> list[Outbound]:
        """Run everything due up to `now`: state changes, expiries, market ticks (one diff frame each),
        ticker."""
        out: list[Outbound] = []
        while self._state_until is not None and now >= self._state_until:
            self._now = self._state_until
            self._next_state()
        for kind, at in list(self._charge_due.items()):
            if at is not None and now >= at:
                self._now = at
                self.charge(kind, at)
                self._schedule_charge(kind, at)
        while self._expiries and self._expiries[0][0] <= now:
            at, aid = heapq.heappop(self._expiries)
            self._now = at
            order = self._orders.get(aid)
            if order is not None and order.state is ChildOrderState.ACTIVE:
                out += self._finish(order, ChildOrderState.EXPIRED, at)
        if now - self._next_tick > 5 * SEC:  # far behind (a stalled loop): skip, don't flood
            self._next_tick = now
        while now >= self._next_tick:
            t = self._next_tick
            self._now = t
            if self.state != "CLOSED":
                if not self.market_frozen:
                    trades = self.model.step(self.book, t, allow_trades=self.state == "RUNNING")
                    out += self._settle(trades, t)
                    diff = self._diff_frame()
                    if diff is not None:
                        out.append(diff)
                    self.ticks += 1
            self._next_tick = t + self.model.next_interval_ns()
        if self.publish and now >= self._next_ticker:
            self._now = now
            out.append(Public(f"lightning_ticker_{PRODUCT}", self.ticker(now)))
            self._next_ticker = max(self._next_ticker + self._ticker_gap(), now + int(0.5 * SEC))
        self._now = now
        return out

    # ---- board ---------------------------------------------------------------------------------------------
    def mid(self) -> Decimal:
        b, a = self.book.best_bid(), self.book.best_ask()
        if b is None or a is None:
            return Decimal(self.ltp)
        return Decimal(b + a) / 2

    def _mid_out(self) -> float:
        b, a = self.book.best_bid(), self.book.best_ask()
        return mid_out(b, a) if b is not None and a is not None else price_out(self.ltp)

    def _diff_frame(self) -> Public | None:
        touched = self.book.drain_touched()
        if not self.publish:
            return None
        if not touched and self.state != "PREOPEN":
            return None
        bids: list[dict[str, float]] = []
        asks: list[dict[str, float]] = []
        best = {Side.BUY: self.book.best_bid(), Side.SELL: self.book.best_ask()}
        for side, price in touched:
            size = self.book.size_at(side, price)
            b = best[side]
            behind = b is not None and (price < b if side is Side.BUY else price > b)
            if (
                size == 0
                and behind
                and self.simulate_market
                and self._wire_rng.random() < self.cfg.missed_delete_rate
            ):
                self.missed_deletes.append((side, price))  # stays on clients' books until a snapshot
                self.missed_delete_count += 1
                continue
            (bids if side is Side.BUY else asks).append({"price": price_out(price), "size": size_out(size)})
        if (
            self.state == "PREOPEN" and self._wire_rng.random() < 0.3
        ):  # itayose: indicative entries at price 0
            (bids if self._wire_rng.random() < 0.5 else asks).append(
                {"price": 0.0, "size": size_out(self._wire_rng.randint(100_000, 300_000_000))}
            )
        self._wire_rng.shuffle(bids)  # bitFlyer does not sort levels in diffs
        self._wire_rng.shuffle(asks)
        return Public(
            f"lightning_board_{PRODUCT}", {"mid_price": self._mid_out(), "bids": bids, "asks": asks}
        )

    # ---- paper: a real feed drives the crowd ---------------------------------------------------------------
    def feed_board(self, message: dict[str, Any], snapshot: bool, now: int) -> list[Outbound]:
        """Apply a real lightning_board(_snapshot) message to the crowd's liquidity. A snapshot resyncs every
        level (levels it lacks lose their crowd size first, so a new level never trades with a stale one);
        size changes keep our queue place (crowd size leaves from the back). A real level that reaches one of
        our resting orders across the spread trades with it."""
        self._now = now
        out: list[Outbound] = []
        sides = (
            (Side.BUY, _wire_levels(message.get("bids"))),
            (Side.SELL, _wire_levels(message.get("asks"))),
        )
        book = self.book
        if snapshot and not book.own_count() and _uncrossed(sides[0][1], sides[1][1]):
            book.replace_crowd(list(sides[0][1].items()), list(sides[1][1].items()))
        else:
            if snapshot:
                for side, levels in sides:
                    stale = [lv for lv in book.iter_levels(side) if lv.crowd and lv.price not in levels]
                    for lv in stale:
                        book.reduce_crowd(side, lv.price, lv.crowd)
            for side, levels in sides:
                # a snapshot's new levels that cross nothing go in at once (hundreds, past a resync's depth)
                fresh: dict[int, int] | None = {} if snapshot else None
                opp = book.best(side.opposite)  # only a take below moves it
                for price, size in levels.items():
                    level = book.level(side, price)
                    have = level.crowd if level else 0
                    if size > have:
                        crosses = opp is not None and (price >= opp if side is Side.BUY else price <= opp)
                        if crosses:
                            if fresh:  # the take, and what it settles, see the whole book
                                book.rest_levels(side, fresh)
                                fresh.clear()
                            out += self._settle(self._paper_take(side, price, size - have), now)
                            opp = book.best(side.opposite)
                        elif fresh is not None and level is None:
                            fresh[price] = size
                        else:
                            book.rest(side, price, size - have)
                    elif size < have:
                        book.reduce_crowd(side, price, have - size)
                if fresh:
                    book.rest_levels(side, fresh)
        mid = message.get("mid_price")
        if isinstance(mid, int | float) and mid > 0:  # drop stale crowd levels past the mid
            for side in (Side.BUY, Side.SELL):
                past = []  # only the levels past the mid: copying the whole side made each diff O(depth)
                for lv in book.iter_levels(side):
                    if not (lv.price >= mid if side is Side.BUY else lv.price <= mid):
                        break
                    if lv.crowd:
                        past.append(lv)
                for lv in past:
                    book.reduce_crowd(side, lv.price, lv.crowd)
        diff = self._diff_frame()
        if diff is not None:
            out.append(diff)
        return out

    def resync_crowd(
        self, bids: list[tuple[int, int]], asks: list[tuple[int, int]], now: int
    ) -> list[Outbound]:
        """The crowd's book becomes these levels (yen, satoshi; best first, as a feed's book holds them), as a
        snapshot would make it: at once when none of our orders rests and the levels do not cross, else level
        by level through `feed_board`."""
        if self.book.own_count() or (bids and asks and bids[0][0] >= asks[0][0]):
            message = {
                "bids": [{"price": p, "size": size_out(s)} for p, s in bids],
                "asks": [{"price": p, "size": size_out(s)} for p, s in asks],
            }
            return self.feed_board(message, True, now)
        self._now = now
        self.book.replace_crowd(bids, asks)
        diff = self._diff_frame()
        return [] if diff is None else [diff]

    def _paper_take(self, side: Side, price: int, size: int) -> list[Trade]:
        oid = self.book.new_crowd_id()
        trades = self.book.take(side, size, price, oid, False)
        left = size - sum(t.size for t in trades)
        if left > 0:
            self.book.rest(side, price, left, oid)
        return trades

    def feed_executions(self, message: list[dict[str, Any]], now: int) -> list[Outbound]:
        """Apply real executions: each one consumes the queue on the maker side up to its price, so our orders
        fill once the size ahead of them has traded (or at once if they are priced better than the print)."""
        self._now = now
        trades: list[Trade] = []
        for e in message if isinstance(message, list) else []:
            try:
                taker, price, size = Side(e["side"]), int(Decimal(str(e["price"]))), btc_to_sat(e["size"])
            except (KeyError, TypeError, ValueError, ArithmeticError):
                continue  # itayose prints have side ""
            if price > 0 and size > 0:
                trades += [
                    t
                    for t in self.book.take(taker, size, price, self.book.new_crowd_id(), False)
                    if t.maker_own
                ]
        return self._settle(trades, now)

    def board(self, limit: int | None = None) -> dict[str, Any]:
        """Whole book (getboard) or the top `limit` levels a side (snapshot channel)."""
        return {
            "mid_price": self._mid_out(),
            "bids": [
                {"price": price_out(p), "size": size_out(s)} for p, s in self.book.levels(Side.BUY, limit)
            ],
            "asks": [
                {"price": price_out(p), "size": size_out(s)} for p, s in self.book.levels(Side.SELL, limit)
            ],
        }

    def snapshot_message(self) -> dict[str, Any]:
        v = self.book.version
        if self._snapshot_cache is None or self._snapshot_cache[0] != v:
            self._snapshot_cache = (v, self.board(self.cfg.levels_per_side))
        return self._snapshot_cache[1]

    def ticker(self, now: int) -> dict[str, Any]:
        b, a = self.book.best_bid(), self.book.best_ask()
        vol = size_out(self.volume_sat)
        return {
            "product_code": PRODUCT,
            "state": self.state,
            "timestamp": iso7(self.wall(now)),
            "tick_id": next(self._tick_id),
            "best_bid": price_out(b or 0),
            "best_ask": price_out(a or 0),
            "best_bid_size": size_out(self.book.size_at(Side.BUY, b) if b else 0),
            "best_ask_size": size_out(self.book.size_at(Side.SELL, a) if a else 0),
            "total_bid_depth": size_out(self.book.total_size(Side.BUY)),
            "total_ask_depth": size_out(self.book.total_size(Side.SELL)),
            "market_bid_size": 0.0,
            "market_ask_size": 0.0,
            "ltp": price_out(self.ltp),
            "volume": vol,
            "volume_by_product": vol,
            "preopen_end": iso7(self._preopen_end_wall) if self._preopen_end_wall else None,
            "circuit_break_end": None,
        }

    def recent_executions(self, count: str | None) -> list[dict[str, Any]]:
        """GET /v1/getexecutions (public): newest first."""
        try:
            n = int(count) if count else 100
        except ValueError:
            raise VenueError.of(INVALID_PARAM) from None
        rows = list(reversed(self._recent))[: max(1, n)]
        return [{**r, "exec_date": r["exec_date"].rstrip("Z")} for r in rows]

    def board_state(self) -> dict[str, Any]:
        return {"health": self.health, "state": self.state}

    # ---- market state --------------------------------------------------------------------------------------
    def set_health(self, status: str) -> None:
        if status not in HEALTH_VALUES:
            raise ValueError(f"health must be one of {HEALTH_VALUES}")
        self.health = status

    def start_maintenance(self, now: int, seconds: float, preopen_seconds: float) -> None:
        """CLOSED for `seconds` (orders refused, no trading), then PREOPEN (itayose) for `preopen_seconds`."""
        self.state = "CLOSED"
        self._state_until = now + int(seconds * SEC)
        self._preopen_ns = int(preopen_seconds * SEC)

    def _next_state(self) -> None:
        if self.state == "CLOSED" and self._preopen_ns > 0:
            self.state = "PREOPEN"
            assert self._state_until is not None
            self._state_until += self._preopen_ns
            self._preopen_end_wall = self.wall(self._state_until)
        else:
            self.state = "RUNNING"
            self._state_until = None
            self._preopen_end_wall = None

    # ---- trades → ledger, events, public executions --------------------------------------------------------
    def _settle(self, trades: list[Trade], now: int) -> list[Outbound]:
        if not trades:
            return []
        wall = self.wall(now)
        date = iso7(wall)
        public: list[dict[str, Any]] = []
        private: dict[str, list[dict[str, Any]]] = {}
        for t in trades:
            exec_id = next(self._exec_seq)
            buy_id, sell_id = (
                (t.taker_id, t.maker_id) if t.taker_side is Side.BUY else (t.maker_id, t.taker_id)
            )
            public.append(
                {
                    "id": exec_id,
                    "side": t.taker_side.value if self.state == "RUNNING" else "",
                    "price": price_out(t.price),
                    "size": size_out(t.size),
                    "exec_date": date,
                    "buy_child_order_acceptance_id": buy_id,
                    "sell_child_order_acceptance_id": sell_id,
                }
            )
            for oid, own in ((t.maker_id, t.maker_own), (t.taker_id, t.taker_own)):
                if not own:
                    continue
                order = self._orders[oid]
                self.ledger.apply_fill(order, exec_id, t.price, t.size, wall)
                private.setdefault(order.api_key, []).append(
                    self._event(
                        order,
                        "EXECUTION",
                        date,
                        {
                            "exec_id": exec_id,
                            "side": order.side.value,
                            "price": price_out(t.price),
                            "size": size_out(t.size),
                            "commission": 0,
                            "sfd": 0,
                            "outstanding_size": size_out(order.outstanding),
                        },
                    )
                )
            self.ltp = t.price
            self.volume_sat += t.size
        self._recent.extend(public)
        out: list[Outbound] = [Public(f"lightning_executions_{PRODUCT}", public)]
        out += [Private(k, evs) for k, evs in private.items()]
        return out

    @staticmethod
    def _event(order: ChildOrder, kind: str, date: str, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "product_code": PRODUCT,
            "child_order_id": order.child_order_id,
            "child_order_acceptance_id": order.acceptance_id,
            "event_date": date,
            "event_type": kind,
            **extra,
        }

    def _finish(self, order: ChildOrder, state: ChildOrderState, now: int) -> list[Outbound]:
        self.book.cancel(order.acceptance_id)
        left = self.ledger.finish_order(order, state)
        kind = "CANCEL" if state is ChildOrderState.CANCELED else "EXPIRE"
        ev = self._event(
            order, kind, iso7(self.wall(now)), {"price": price_out(order.price), "size": size_out(left)}
        )
        return [Private(order.api_key, [ev])]

    # ---- orders --------------------------------------------------------------------------------------------
    def add_account(self, api_key: str, collateral_jpy: Decimal | None = None) -> None:
        self.ledger.add_account(api_key, collateral_jpy)

    def send_child_order(
        self, api_key: str, body: dict[str, Any], now: int, fail_reason: str | None = None
    ) -> tuple[str, list[Outbound]]:
        """POST /v1/me/sendchildorder. Returns the acceptance id and the messages it caused. With
        `fail_reason` the order is accepted and then fails (ORDER_FAILED), as bitFlyer does for some
        refusals."""
        self._now = now
        if body.get("product_code") in OTHER_PRODUCTS:
            return self._other_product_order(api_key, body, now)
        side, order_type, price, size, minutes, tif = self._validate_order(body)
        if self.state == "CLOSED" or self.health in ("STOP", "NO ORDER"):
            raise VenueError.of(MARKET_CLOSED)
        self._check_margin(api_key, side, size)
        seq, aid, coid = self._new_order_ids(now)
        wall = self.wall(now)
        minute_ns = self.cfg.minute_ms * 1_000_000
        order = ChildOrder(
            seq=seq,
            api_key=api_key,
            acceptance_id=aid,
            child_order_id=coid,
            side=side,
            order_type=order_type,
            price=price or 0,
            size=size,
            time_in_force=tif,
            order_ns=wall,
            expire_ns=wall + minutes * 60 * SEC,
            expire_at=now + minutes * minute_ns,
        )
        self.ledger.add_order(order)
        self._orders[aid] = order
        if len(self._orders) > 4 * FINISHED_KEPT:  # amortised: keep the orders that can still trade
            self._orders = {a: o for a, o in self._orders.items() if o.state is ChildOrderState.ACTIVE}
        date = iso7(wall)
        if fail_reason is not None:
            self.ledger.finish_order(order, ChildOrderState.REJECTED)
            return aid, [
                Private(api_key, [self._event(order, "ORDER_FAILED", date, {"reason": fail_reason})])
            ]
        out: list[Outbound] = [
            Private(
                api_key,
                [
                    self._event(
                        order,
                        "ORDER",
                        date,
                        {
                            "child_order_type": order_type,
                            "side": side.value,
                            "price": price_out(order.price),
                            "size": size_out(size),
                            "expire_date": rest_date(order.expire_ns, 0),
                        },
                    )
                ],
            )
        ]
        limit = price if order_type == "LIMIT" else None
        if tif == "FOK" and self.book.fillable(side, limit, size) < size:
            return aid, out + self._finish(order, ChildOrderState.CANCELED, now)
        out += self._settle(self.book.take(side, size, limit, aid, True), now)
        if order.outstanding > 0:
            if order_type == "LIMIT" and tif == "GTC":
                assert price is not None
                self.book.rest(side, price, order.outstanding, aid, own=True)
                heapq.heappush(self._expiries, (order.expire_at, aid))
                if len(self._expiries) > 1000 and len(self._expiries) > 4 * self.book.own_count():
                    # cancelled orders leave entries behind until their (up to 30-day) expiry: drop them
                    self._expiries = [x for x in self._expiries if self.book.has_order(x[1])]
                    heapq.heapify(self._expiries)
            else:
                out += self._finish(order, ChildOrderState.CANCELED, now)
        return aid, out

    def _other_product_order(
        self, api_key: str, body: dict[str, Any], now: int
    ) -> tuple[str, list[Outbound]]:
        """An order on another product of the same account (spot BTC_JPY): accepted and filled at once at the
        FX mid, reported on child_order_events with its own product_code, and kept out of the FX ledger — so a
        bot can be tested for counting only its own product."""
        product = str(body["product_code"])
        try:
            side = Side(str(body.get("side")))
            size = btc_to_sat(body.get("size"))
        except (ValueError, TypeError):
            raise VenueError.of(INVALID_PARAM) from None
        if size < MIN_SIZE_SAT:
            raise VenueError.of(SIZE_TOO_SMALL)
        seq, aid, coid = self._new_order_ids(now)
        date = iso7(self.wall(now))
        exec_id = next(self._exec_seq)
        base = {
            "product_code": product,
            "child_order_id": coid,
            "child_order_acceptance_id": aid,
            "event_date": date,
        }
        events = [
            {
                **base,
                "event_type": "ORDER",
                "child_order_type": "MARKET",
                "side": side.value,
                "price": 0,
                "size": size_out(size),
                "expire_date": rest_date(self.wall(now) + 60 * SEC, 0),
            },
            {
                **base,
                "event_type": "EXECUTION",
                "exec_id": exec_id,
                "side": side.value,
                "price": price_out(int(self.mid())),
                "size": size_out(size),
                "commission": 0,
                "sfd": 0,
                "outstanding_size": 0,
            },
        ]
        self.other_product_orders += 1
        return aid, [Private(api_key, events)]

    def _validate_order(self, body: dict[str, Any]) -> tuple[Side, str, int | None, int, int, str]:
        if body.get("product_code") != PRODUCT:
            raise VenueError.of(INVALID_PRODUCT)
        try:
            side = Side(str(body.get("side")))
        except ValueError:
            raise VenueError.of(INVALID_PARAM) from None
        order_type = body.get("child_order_type")
        if order_type not in ("LIMIT", "MARKET"):
            raise VenueError.of(INVALID_PARAM)
        tif = body.get("time_in_force") or "GTC"
        if tif not in ("GTC", "IOC", "FOK"):
            raise VenueError.of(INVALID_PARAM)
        try:
            size = btc_to_sat(body.get("size"))
        except ValueError:
            raise VenueError.of(INVALID_PARAM) from None
        if size < MIN_SIZE_SAT:
            raise VenueError.of(SIZE_TOO_SMALL)
        price: int | None = None
        if order_type == "LIMIT":
            raw = body.get("price")
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise VenueError.of(PRICE_TOO_LOW)
            try:
                d = Decimal(str(raw))
            except ArithmeticError:
                raise VenueError.of(INVALID_PARAM) from None
            if not d.is_finite() or d <= 0:
                raise VenueError.of(PRICE_TOO_LOW)
            if d != d.to_integral_value():
                raise VenueError.of(INVALID_PARAM)  # tick is 1 JPY
            price = int(d)
        minutes = body.get("minute_to_expire", MAX_MINUTE_TO_EXPIRE)
        if minutes is None:
            minutes = MAX_MINUTE_TO_EXPIRE
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int)
            or not 1 <= minutes <= MAX_MINUTE_TO_EXPIRE
        ):
            raise VenueError.of(INVALID_PARAM)
        return side, order_type, price, size, minutes, tif

    def _check_margin(self, api_key: str, side: Side, size: int) -> None:
        acct = self.ledger.account(api_key)
        pos = acct.position_sat()
        if pos and (pos > 0) != (side is Side.BUY) and size <= abs(pos):
            return  # reduces the position: always allowed
        mark = self.mid()
        need = self.ledger.require_collateral(api_key) + self.ledger.order_margin(api_key, mark, size)
        if need > self.ledger.collateral(api_key) + self.ledger.open_pnl(api_key, mark):
            raise VenueError.of(MARGIN_SHORT)

    def cancel_child_order(self, api_key: str, body: dict[str, Any], now: int) -> list[Outbound]:
        """POST /v1/me/cancelchildorder: the outcome is an event (CANCEL, or CANCEL_FAILED if not open)."""
        self._now = now
        if body.get("product_code") != PRODUCT:
            raise VenueError.of(INVALID_PRODUCT)
        aid, coid = body.get("child_order_acceptance_id"), body.get("child_order_id")
        if not isinstance(aid, str | None) or not isinstance(coid, str | None) or not (aid or coid):
            raise VenueError.of(INVALID_PARAM)
        if self.state == "CLOSED":
            raise VenueError.of(MARKET_CLOSED)
        order = self.ledger.find_order(api_key, aid, coid)
        if order is None:
            return []
        if order.state is ChildOrderState.ACTIVE:
            return self._finish(order, ChildOrderState.CANCELED, now)
        return [Private(api_key, [self._event(order, "CANCEL_FAILED", iso7(self.wall(now)), {})])]

    def cancel_all(self, api_key: str, body: dict[str, Any], now: int) -> list[Outbound]:
        self._now = now
        if body.get("product_code") != PRODUCT:
            raise VenueError.of(INVALID_PRODUCT)
        if self.state == "CLOSED":
            raise VenueError.of(MARKET_CLOSED)
        out: list[Outbound] = []
        for order in self.ledger.open_orders(api_key):
            out += self._finish(order, ChildOrderState.CANCELED, now)
        return out

    # ---- private REST views --------------------------------------------------------------------------------
    def child_orders(self, api_key: str, q: dict[str, str]) -> list[dict[str, Any]]:
        if q.get("product_code", PRODUCT) != PRODUCT:
            return []
        state = q.get("child_order_state")
        aid, coid = q.get("child_order_acceptance_id"), q.get("child_order_id")
        count, before, after = _paging(q)
        rows = []
        acct = self.ledger.account(api_key)
        # newest first without sorting the account's whole history: O(active + page), not O(all orders)
        candidates: Any
        if aid:
            candidates = [acct.orders[aid]] if aid in acct.orders else []
        elif coid:
            found = self.ledger.find_order(api_key, child_order_id=coid)
            candidates = [found] if found else []
        elif state == "ACTIVE":
            candidates = sorted(acct.active.values(), key=lambda o: -o.seq)
        else:
            candidates = reversed(acct.orders.values())  # insertion order is seq order
        for o in candidates:
            if (
                o.state is ChildOrderState.REJECTED
                or o.executed == 0
                and o.state in (ChildOrderState.CANCELED, ChildOrderState.EXPIRED)
            ):
                continue  # bitFlyer forgets these
            if (
                state
                and o.state.value != state
                or aid
                and o.acceptance_id != aid
                or coid
                and o.child_order_id != coid
            ):
                continue
            if before is not None and o.seq >= before or after is not None and o.seq <= after:
                continue
            rows.append(self._order_row(o))
            if len(rows) >= count:
                break
        return rows

    @staticmethod
    def _order_row(o: ChildOrder) -> dict[str, Any]:
        return {
            "id": 0 if o.state is ChildOrderState.ACTIVE else o.seq,
            "child_order_id": o.child_order_id,
            "product_code": PRODUCT,
            "side": o.side.value,
            "child_order_type": o.order_type,
            "price": price_out(o.price),
            "average_price": float(o.average_price),
            "size": size_out(o.size),
            "child_order_state": o.state.value,
            "expire_date": rest_date(o.expire_ns, 0),
            "child_order_date": rest_date(o.order_ns, 0),
            "child_order_acceptance_id": o.acceptance_id,
            "outstanding_size": size_out(o.outstanding),
            "cancel_size": size_out(o.cancel_size),
            "executed_size": size_out(o.executed),
            "total_commission": 0,
            "time_in_force": o.time_in_force,
        }

    def executions(self, api_key: str, q: dict[str, str]) -> list[dict[str, Any]]:
        if q.get("product_code", PRODUCT) != PRODUCT:
            return []
        aid, coid = q.get("child_order_acceptance_id"), q.get("child_order_id")
        count, before, after = _paging(q)
        rows = []
        for e in reversed(self.ledger.account(api_key).executions):
            if aid and e.acceptance_id != aid or coid and e.child_order_id != coid:
                continue
            if before is not None and e.exec_id >= before or after is not None and e.exec_id <= after:
                continue
            rows.append(
                {
                    "id": e.exec_id,
                    "child_order_id": e.child_order_id,
                    "side": e.side.value,
                    "price": price_out(e.price),
                    "size": size_out(e.size),
                    "commission": 0,
                    "exec_date": rest_date(e.exec_ns, 3),
                    "child_order_acceptance_id": e.acceptance_id,
                }
            )
            if len(rows) >= count:
                break
        return rows

    def positions(self, api_key: str) -> list[dict[str, Any]]:
        mark = self.mid()
        lev = self.ledger.account(api_key).leverage
        rows = []
        for lot in self.ledger.lots(api_key):
            diff = (mark - lot.price) if lot.side is Side.BUY else (lot.price - mark)
            rows.append(
                {
                    "product_code": PRODUCT,
                    "side": lot.side.value,
                    "price": price_out(lot.price),
                    "size": size_out(lot.size),
                    "commission": 0.0,
                    "swap_point_accumulate": 0.0,
                    "require_collateral": float(Decimal(lot.price * lot.size) / 100_000_000 / lev),
                    "open_date": rest_date(lot.open_ns, 3),
                    "leverage": float(lev),
                    "pnl": float(diff * lot.size / 100_000_000),
                    "sfd": 0.0,
                }
            )
        return rows

    def collateral(self, api_key: str) -> dict[str, Any]:
        mark = self.mid()
        coll = self.ledger.collateral(api_key)
        open_pnl = self.ledger.open_pnl(api_key, mark)
        req = self.ledger.require_collateral(api_key)
        acct = self.ledger.account(api_key)
        return {
            "collateral": float(coll),
            "open_position_pnl": float(open_pnl),
            "require_collateral": float(req),
            "keep_rate": float((coll + open_pnl) / req) if req else 0.0,
            "margin_call_amount": float(acct.margin_call_amount),
            "margin_call_due_date": acct.margin_call_due_date,
        }

    # ---- holding costs -------------------------------------------------------------------------------------
    def _schedule_charge(self, kind: str, now: int) -> None:
        hours = self.cfg.funding_hours_utc if kind == "funding" else [self.cfg.leverage_point_hour_utc]
        wall = next_hour_utc(self.wall(now), list(hours))
        self._charge_due[kind] = None if wall is None else wall - self.wall_offset_ns

    def charge(
        self, kind: str, now: int, *, api_key: str | None = None, rate: Decimal | None = None
    ) -> list[tuple[str, CollateralRow]]:
        """Charge one holding cost now to every account with an open position (or to `api_key` only), at the
        configured rate or `rate`, on the position's notional at the mid, in whole yen. Funding: longs pay a
        positive rate, shorts receive it. Leverage points: every open position pays. A charge that rounds to
        0 writes no row. Returns (api key, row) for each account charged."""
        if kind not in CHARGE_KINDS:
            raise ValueError(f"kind must be one of {sorted(CHARGE_KINDS)}")
        if rate is None:
            rate = self.cfg.funding_rate if kind == "funding" else self.cfg.leverage_point_rate
        mark = self.mid()
        out = []
        for key in [api_key] if api_key is not None else self.ledger.api_keys():
            sat = self.ledger.account(key).position_sat()
            if not sat:
                continue
            notional = mark * abs(sat) / Decimal(100_000_000)
            cost = notional * rate * (1 if sat > 0 or kind == "leverage_points" else -1)
            change = (-cost).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
            if change == 0:
                continue
            out.append((key, self.ledger.charge(key, change, CHARGE_KINDS[kind], self.wall(now))))
        return out

    def collateral_history(self, api_key: str, q: dict[str, str]) -> list[dict[str, Any]]:
        """GET /v1/me/getcollateralhistory: newest first, paged by id (count / before / after)."""
        count, before, after = _paging(q)
        rows = []
        for r in reversed(self.ledger.account(api_key).history):
            if before is not None and r.row_id >= before or after is not None and r.row_id <= after:
                continue
            rows.append(
                {
                    "id": r.row_id,
                    "currency_code": "JPY",
                    "change": float(r.change),
                    "amount": float(r.amount),
                    "reason_code": r.reason_code,
                    "date": rest_date(r.wall_ns, 3),
                }
            )
            if len(rows) >= count:
                break
        return rows

    def ledger_report(self, api_key: str) -> dict[str, Any]:
        """GET /_sim/ledger: the venue's truth for one account (exact decimals as strings)."""
        mark = self.mid()
        avg = self.ledger.average_price(api_key)
        return {
            "api_key": api_key,
            "position": str(self.ledger.position(api_key)),
            "average_price": None if avg is None else str(avg),
            "realized_pnl": str(self.ledger.realized_pnl(api_key)),  # trading PnL less holding costs
            "trading_pnl": str(self.ledger.trading_pnl(api_key)),
            "holding_costs": str(self.ledger.holding_costs(api_key)),  # paid: positive
            "holding_cost_rows": sum(
                r.reason_code in CHARGE_KINDS.values() for r in self.ledger.account(api_key).history
            ),
            "open_position_pnl": str(self.ledger.open_pnl(api_key, mark)),
            "collateral": str(self.ledger.collateral(api_key)),
            "mark": str(mark),
            "executions": len(self.ledger.account(api_key).executions),
            "positions": self.positions(api_key),
            "open_orders": [self._order_row(o) for o in self.ledger.open_orders(api_key)],
        }


def _paging(q: dict[str, str]) -> tuple[int, int | None, int | None]:
    def num(key: str) -> int | None:
        v = q.get(key)
        if v is None or v == "":
            return None
        try:
            return int(v)
        except ValueError:
            raise VenueError.of(INVALID_PARAM) from None

    count = num("count")
    return (100 if count is None or count <= 0 else count), num("before"), num("after")


def _wire_levels(raw: Any) -> dict[int, int]:
    """A message side as {price yen: size satoshi}; bad levels and itayose entries (price 0) are skipped."""
    levels: dict[int, int] = {}
    for lv in raw or ():
        try:
            p = lv["price"]
            price = int(p) if type(p) is float else int(Decimal(str(p)))  # both truncate: the same yen
            size = btc_to_sat(lv["size"])
        except (KeyError, TypeError, ValueError, ArithmeticError):
            continue
        if price > 0:
            levels[price] = size
    return levels


def _uncrossed(bids: dict[int, int], asks: dict[int, int]) -> bool:
    return not bids or not asks or max(bids) < min(asks)
