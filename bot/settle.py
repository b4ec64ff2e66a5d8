"""SettleSupervisor: a stop or a kill is a goal the runner holds, not a one-shot (SPEC §5, §7).

One task per runner works towards the goal it is given — `NO_ORDERS` (stop: cancel everything, confirm none is
open) or `FLAT` (kill: also flatten, confirm the venue's position is zero) — and never gives up: errors,
refusals and maintenance windows only lengthen its backoff (capped). A kill's goal is held for as long as the
bot is KILLED: once confirmed the supervisor keeps watching (a fill that lands after the kill, a position
opened by hand, an order that was UNKNOWN and turns out to rest) and flattens again. Restarting into KILLED
holds it again. One task means a kill-switch kill and a human kill can never run two flatten loops side by
side (double close).

Orders go through the OrderExecutor, so the executor's close backoff (repeated refusals) applies, and a close
is only sent while no close of ours is open, so a close whose fill has not been seen yet is never doubled.
Dust below `exchange.min_size` is flattened exactly: long 0.0004 → SELL 0.0014 (short 0.001) → BUY 0.001.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from loguru import logger

from bot.engine.executor import OrderExecutor
from bot.engine.orders import OrderTracker
from bot.infra.bitflyer_parse import ParseError, net_position, parse_getchildorders, parse_position_rows
from bot.infra.http_bitflyer import BitflyerHttp
from bot.types.dto import Action, ActionKind, OrderState, Reason, Side
from bot.types.exchange import ExchangeError

FLATTEN_TAG = "close"


class SettleGoal(StrEnum):
    NO_ORDERS = "no_orders"  # stop: nothing of ours rests at the venue; the position is kept
    FLAT = "flat"  # kill: no orders and no position


def flatten_order(net: Decimal, min_size: Decimal) -> tuple[Side, Decimal] | None:
    """The next market order that brings a venue position of `net` BTC towards flat, never below `min_size`:
    |net| itself when the venue accepts it, else through the other side (|net| + min_size), after which a
    second order of min_size closes exactly."""
    if net == 0:
        return None
    side = Side.SELL if net > 0 else Side.BUY
    size = abs(net)
    return side, size if size >= min_size else size + min_size


@dataclass(frozen=True, slots=True)
class SettleStatus:
    """What the dashboard and GET /strategy show about the goal."""

    goal: SettleGoal | None
    working: bool  # the goal is held and not (or no longer) confirmed
    attempt: int
    last_error: str | None
    confirmed_at: datetime | None
    cancelled: int  # cancel-all requests sent for this goal
    flatten_orders: tuple[str, ...]  # e.g. "SELL 0.001 @ 13677761"

    def describe(self) -> str:
        if self.goal is None:
            return ""
        what = "flat and no orders" if self.goal is SettleGoal.FLAT else "no open orders"
        if not self.working and self.confirmed_at is not None:
            return f"{what}, confirmed at {self.confirmed_at.isoformat(timespec='seconds')}"
        doing = "flattening" if self.goal is SettleGoal.FLAT else "cancelling"
        err = f", last error {self.last_error}" if self.last_error else ""
        return f"{doing} (attempt {self.attempt}{err})"


class SettleSupervisor:
    def __init__(
        self,
        *,
        http: BitflyerHttp,
        executor: OrderExecutor,
        tracker: OrderTracker,
        product_code: str,
        min_size: Decimal,
        clock: Callable[[], int] = time.monotonic_ns,
        rest_available: Callable[[int], int] | None = None,
        on_confirmed: Callable[[SettleGoal], Awaitable[None]] | None = None,
        watch_s: float = 5.0,
        backoff_cap_s: float = 5.0,
        unknown_grace_ms: int = 3000,
    ) -> None:
        self._unknown_grace_ns = unknown_grace_ms * 1_000_000
        self._http = http
        self._executor = executor
        self._tracker = tracker
        self._product = product_code
        self._min_size = min_size
        self._clock = clock
        self._rest_available = rest_available
        self._on_confirmed = on_confirmed
        self._watch_s = watch_s
        self._backoff_cap_s = backoff_cap_s
        self._goal: SettleGoal | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._confirmed = asyncio.Event()
        self._attempt = 0
        self._last_error: str | None = None
        self._confirmed_at: datetime | None = None
        self._cancelled = 0
        self._flattens: list[str] = []
        self._closed = False

    # ---- the runner's side ----------------------------------------------------------------------------
    @property
    def goal(self) -> SettleGoal | None:
        return self._goal

    def hold(self, goal: SettleGoal) -> None:
        """Work towards `goal` (a kill's FLAT is never weakened to a stop's NO_ORDERS)."""
        if self._closed:
            return
        if self._goal is not goal and self._goal is not SettleGoal.FLAT:
            self._goal = goal
            self._attempt = 0
            self._last_error = None
            self._cancelled = 0
            self._flattens = []
        self._confirmed.clear()
        self._confirmed_at = None
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="settle-supervisor")

    def release(self) -> None:
        """The goal is no longer wanted (start after stop, a human reset of a kill)."""
        self._goal = None
        self._wake.set()

    def poke(self) -> None:
        """Something may have changed at the venue (a fill, a reconnect): check again now."""
        if self._goal is SettleGoal.FLAT:
            self._confirmed.clear()
            self._confirmed_at = None
            self._wake.set()

    async def wait_confirmed(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._confirmed.wait()
            return True
        except TimeoutError:
            return False

    def status(self) -> SettleStatus:
        return SettleStatus(
            goal=self._goal,
            working=self._goal is not None and not self._confirmed.is_set(),
            attempt=self._attempt,
            last_error=self._last_error,
            confirmed_at=self._confirmed_at,
            cancelled=self._cancelled,
            flatten_orders=tuple(self._flattens),
        )

    async def aclose(self) -> None:
        self._closed = True
        self._goal = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    # ---- the task -------------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.2
        while self._goal is not None and not self._closed:
            goal = self._goal
            self._wake.clear()
            try:
                done = await self._attempt_once(goal)
            except (ExchangeError, ParseError) as e:
                self._last_error = str(e)[:200]
                logger.warning("settle ({}): attempt {} failed: {}", goal, self._attempt, e)
                done = False
            except Exception as e:  # a bug must not end the goal: log it and keep trying
                self._last_error = f"unexpected {type(e).__name__}: {e}"[:200]
                logger.opt(exception=e).error("settle ({}): attempt {} raised", goal, self._attempt)
                done = False
            if self._goal is None:
                break
            if done:
                delay = 0.2
                if not self._confirmed.is_set():
                    self._confirmed_at = datetime.now(UTC)
                    self._confirmed.set()
                    logger.warning(
                        "settle ({}): confirmed over REST after {} attempt(s)", goal, self._attempt
                    )
                    if self._on_confirmed is not None:
                        try:
                            await self._on_confirmed(goal)
                        except Exception as e:
                            logger.opt(exception=e).error("settle: after-confirmation hook raised")
                if goal is SettleGoal.NO_ORDERS and self._goal is SettleGoal.NO_ORDERS:
                    break  # a stop is done once confirmed (its status stays shown); a kill keeps watching
                await self._sleep(self._watch_s)
            else:
                await self._sleep(delay)
                delay = min(delay * 1.6, self._backoff_cap_s)

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _attempt_once(self, goal: SettleGoal) -> bool:
        """One look at the venue and, if needed, one step towards the goal. True when the goal holds."""
        self._attempt += 1
        if self._rest_available is not None and self._rest_available(self._clock()) < 3:
            self._last_error = "private REST budget exhausted; waiting"
            return False
        active = [
            r
            for r in parse_getchildorders(await self._http.get_child_orders(state="ACTIVE"))
            if r.product_code in ("", self._product)
        ]
        net = Decimal(0)
        if goal is SettleGoal.FLAT:
            net = net_position(parse_position_rows(await self._http.get_positions(), self._product))[0]
        now = self._clock()
        in_flight = [o for o in self._tracker.open_orders() if o.state is OrderState.PENDING_NEW]
        # a send whose answer was lost may still appear: absence from a listing right after it is weak
        # evidence
        unsure = [
            o
            for o in self._tracker.open_orders()
            if o.state is OrderState.UNKNOWN and now - o.placed_at < self._unknown_grace_ns
        ]
        if not active and net == 0 and not in_flight and not unsure:
            for o in self._tracker.open_orders():  # the venue has nothing open: our bookkeeping agrees now
                self._tracker.settle(o.client_id, OrderState.CANCELED)
            self._last_error = None
            return True
        if unsure and not active and net == 0 and not in_flight:
            self._last_error = f"{len(unsure)} send(s) with an unknown outcome: listing again after a grace"
            return False
        if active or in_flight:
            self._cancelled += 1
            await self._executor.execute(
                [Action(ActionKind.CANCEL_ALL, Reason.MANUAL, tag="stop")], self._clock()
            )
        if goal is SettleGoal.FLAT and net != 0:
            if self._tracker.open_orders(tag=FLATTEN_TAG):
                self._last_error = "a close of ours is still open; waiting for its fill"
                return False
            step = flatten_order(net, self._min_size)
            assert step is not None
            side, size = step
            (order,) = await self._executor.execute(
                [Action(ActionKind.CLOSE_MARKET, Reason.KILL_SWITCH, side=side, size=size, tag=FLATTEN_TAG)],
                self._clock(),
            )
            if order.state is OrderState.REJECTED:
                self._last_error = f"close {side} {size} refused: {order.last_error}"
            else:
                self._flattens.append(f"{side.value} {size}")
                logger.warning(
                    "settle: venue position {} BTC → market {} {} ({})",
                    net,
                    side.value,
                    size,
                    order.state.value,
                )
        logger.info(
            "settle ({}) attempt {}: {} active at the venue, position {}",
            goal,
            self._attempt,
            len(active),
            net,
        )
        return False
