"""The venue a replay trades against: the paper venue's matching (`bot/sim/exchange.py` with
`simulate_market=False`, the same core `SimVenue(public_feed_url=…)` runs) fed by the tape, behind a latency
model, on a virtual clock.

- The crowd's liquidity is the tape's: board frames go to `Exchange.feed_board`, prints to `feed_executions`,
  so our limit orders join the queue behind the size already at their price and fill only as the tape's trades
  consume it (or at once, as takers, if they cross); MARKET closes walk the tape's book.
- Only while an order of ours rests does every frame reach the matching: with nothing of ours at the venue the
  crowd's book cannot fill us, so frames are skipped and, when the next request arrives, the crowd is resynced
  from the bot's own book (`crowd_levels`, the top `RESYNC_LEVELS` a side) — most of a replay's frames then
  cost the matching nothing.
- Latency (`Latency`): a request reaches the venue half its round trip after it leaves and its answer comes
  back the other half later; child_order_events reach the bot half an order round trip after the venue acted.
- The bot's own code (`OrderExecutor`) sends through `ReplayGateway`, whose calls are awaitables the
  `EventQueue` resumes at their virtual answer time: no event loop, no threads, same order every run.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.config.loader import SimConfig
from bot.engine.rate_budget import RateBudget
from bot.sim.exchange import PRODUCT, Exchange, Outbound, Private, VenueError
from bot.types.dto import Side
from bot.types.exchange import ExchangeError, price_on_wire, size_on_wire

NS_PER_MS = 1_000_000
REPLAY_KEY = "REPLAY"
RESYNC_LEVELS = 60  # crowd levels a side rebuilt when our first order arrives: far more than a close walks
# the crowd's book now, top levels a side, best first: (bids, asks) of (price yen, size satoshi)
CrowdLevels = Callable[[], tuple[list[tuple[int, int]], list[tuple[int, int]]]]


@dataclass(frozen=True, slots=True)
class Latency:
    """Round trips of our requests, in ms. The default (30 ms / 30 ms) is an assumption: measure your own from
    the orders CSV's `latency_ms` column of a live or paper session."""

    order_ms: float = 30.0
    cancel_ms: float = 30.0

    @property
    def order_ns(self) -> int:
        return int(self.order_ms * NS_PER_MS)

    @property
    def cancel_ns(self) -> int:
        return int(self.cancel_ms * NS_PER_MS)


DEFAULT_LATENCY = Latency()


class EventQueue:
    """Virtual-time callbacks, earliest first; equal times in the order they were scheduled."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callable[[int], None]]] = []
        self._seq = itertools.count()

    def at(self, t: int, fn: Callable[[int], None]) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), fn))

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[int, Callable[[int], None]]:
        t, _, fn = heapq.heappop(self._heap)
        return t, fn

    def __len__(self) -> int:
        return len(self._heap)


class _Call:
    """One REST call in flight: yielded to the replay by the gateway coroutine, resumed with its answer."""

    __slots__ = ("kind", "body", "result", "error")

    def __init__(self, kind: str, body: dict[str, Any]) -> None:
        self.kind = kind
        self.body = body
        self.result: Any = None
        self.error: ExchangeError | None = None

    def __await__(self) -> Generator[_Call, None, Any]:
        yield self
        if self.error is not None:
            raise self.error
        return self.result


class ReplayGateway:
    """The executor's `OrderGateway` in replay: the same request bodies the HTTP adapter sends."""

    async def send_child_order(
        self,
        side: Side,
        size: Decimal,
        *,
        order_type: str = "LIMIT",
        price: Decimal | None = None,
        minute_to_expire: int | None = None,
        time_in_force: str = "GTC",
    ) -> str:
        body: dict[str, Any] = {
            "product_code": PRODUCT,
            "child_order_type": order_type,
            "side": side.value,
            "size": size_on_wire(size),
            "time_in_force": time_in_force,
        }
        if price is not None:
            body["price"] = price_on_wire(price)
        if minute_to_expire is not None:
            body["minute_to_expire"] = minute_to_expire
        result: str = await _Call("send", body)
        return result

    async def cancel_child_order(self, acceptance_id: str) -> None:
        await _Call("cancel", {"product_code": PRODUCT, "child_order_acceptance_id": acceptance_id})

    async def cancel_all_child_orders(self) -> None:
        await _Call("cancel_all", {"product_code": PRODUCT})


def _crowd_id() -> str:
    return "CROWD"


class ReplayVenue:
    """The paper venue on the replay's clock. `on_events(t, events, at)` receives our child_order_events at
    the time `t` they reach the bot; `at` is when the venue made them."""

    def __init__(
        self,
        queue: EventQueue,
        latency: Latency,
        wall_offset_ns: int,
        start_ns: int,
        on_events: Callable[[int, list[dict[str, Any]], int], None],
        crowd_levels: CrowdLevels,
        rest_budget: RateBudget | None = None,
    ) -> None:
        cfg = SimConfig(api_key=REPLAY_KEY, collateral_jpy=1_000_000_000, rate_limits=False)
        self.exchange = Exchange(cfg, start_ns, wall_offset_ns, simulate_market=False)
        self.exchange.add_account(REPLAY_KEY)
        self.exchange.publish = False  # the public channels go nowhere in a replay
        self.exchange.book.new_crowd_id = _crowd_id  # nor do its ids (formatting one per level was 10 %)
        self.queue = queue
        self.latency = latency
        self._on_events = on_events
        self._rest_budget = rest_budget
        self._crowd_levels = crowd_levels
        self._book_behind = True  # frames were skipped: resync before matching anything of ours
        self.requests = 0
        self.resyncs = 0

    # ---- the tape drives the crowd -------------------------------------------------------------------------
    def _ours_rest(self) -> bool:
        return self.exchange.book.own_count() > 0

    def on_board(self, message: dict[str, Any], snapshot: bool, now: int) -> None:
        if not self._ours_rest():
            self._book_behind = True
            return
        self._route(self.exchange.feed_board(message, snapshot, now), now)

    def on_executions(self, message: list[dict[str, Any]], now: int) -> None:
        if self._ours_rest():
            self._route(self.exchange.feed_executions(message, now), now)

    def advance(self, now: int) -> None:
        """Order expiries (minute_to_expire, the backstop) due by `now`."""
        self._route(self.exchange.advance(now), now)

    def _route(self, outs: list[Outbound], now: int) -> None:
        events: list[dict[str, Any]] = []
        for o in outs:
            if isinstance(o, Private):
                events.extend(o.events)
        if events:
            self.queue.at(now + self.latency.order_ns // 2, lambda t: self._on_events(t, events, now))

    # ---- our requests --------------------------------------------------------------------------------------
    def start(self, coro: Coroutine[Any, Any, None], now: int) -> None:
        """Run one executor coroutine until it waits for the venue; each answer resumes it at its time."""
        self._step(coro, None, now)

    def _step(self, coro: Coroutine[Any, Any, None], call: _Call | None, now: int) -> None:
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        if not isinstance(pending, _Call):  # only our gateway may suspend an executor coroutine here
            coro.close()
            raise RuntimeError(f"replay: an executor coroutine waited on {pending!r}")
        self.requests += 1
        if self._rest_budget is not None:
            self._rest_budget.force(now)  # every private request counts, as RateHearing does live
        rtt = self.latency.order_ns if pending.kind == "send" else self.latency.cancel_ns
        arrive = now + rtt // 2
        self.queue.at(arrive, lambda t: self._act(coro, pending, t, now + rtt))

    def _act(self, coro: Coroutine[Any, Any, None], call: _Call, t: int, answer_at: int) -> None:
        ex = self.exchange
        self.advance(t)
        if self._book_behind and not self._ours_rest():
            self._route(ex.resync_crowd(*self._crowd_levels(), t), t)
            self._book_behind = False
            self.resyncs += 1
        try:
            if call.kind == "send":
                call.result, outs = ex.send_child_order(REPLAY_KEY, call.body, t)
            elif call.kind == "cancel":
                outs = ex.cancel_child_order(REPLAY_KEY, call.body, t)
            else:
                outs = ex.cancel_all(REPLAY_KEY, call.body, t)
            self._route(outs, t)
        except VenueError as e:
            call.error = ExchangeError(e.http_status, e.status, e.message, path=call.kind)
        self.queue.at(answer_at, lambda t2: self._step(coro, call, t2))
