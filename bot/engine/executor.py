"""OrderExecutor: turns the strategy's Actions into bitFlyer REST calls without ever blocking the trading
loop.

`submit` registers every order intent in the OrderTracker synchronously — so the very next decision already
sees the orders as live — and runs the HTTP calls in one background task (both sides of a strike
concurrently). Outcomes go back into the tracker by rule:
- an acceptance id -> `on_accepted` (and a cancel that was asked for before the id was known is sent now);
- a definite "no" (rejected, market closed, auth, rate limited, could not connect) -> `on_rejected`;
- timeout / -208 / 5xx / unreadable answer -> `on_unknown`: never marked failed, never re-sent; reconciliation
  settles it.
Errors feed a backoff state the runner turns into `Gate.block_reason = EXCHANGE_BACKOFF`; the executor refuses
new entries during it as well, so -205 (margin) cannot become a retry storm. Closing orders and cancels reduce
risk and are never held back by backoff. Nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from loguru import logger

from bot.config.loader import ExchangeConfig
from bot.engine.orders import OrderTracker
from bot.engine.rate_budget import RateBudget
from bot.types.dto import Action, ActionKind, OrderLogRow, OrderState, OwnOrder, Side
from bot.types.exchange import ErrorKind, ExchangeError, price_on_wire, size_on_wire
from bot.types.tasks import BackgroundTasks

NS_PER_S = 1_000_000_000


class OrderGateway(Protocol):
    """The exchange's order endpoints as the executor needs them (bot/infra/http_bitflyer.py implements it).
    Each raises `ExchangeError` with a kind that says whether the venue may have acted."""

    async def send_child_order(
        self,
        side: Side,
        size: Decimal,
        *,
        order_type: str = "LIMIT",
        price: Decimal | None = None,
        minute_to_expire: int | None = None,
        time_in_force: str = "GTC",
    ) -> str: ...

    async def cancel_child_order(self, acceptance_id: str) -> None: ...

    async def cancel_all_child_orders(self) -> None: ...


class OrderLogSink(Protocol):
    def log(self, row: OrderLogRow) -> None: ...


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long to hold new entries after exchange trouble. Exponential for transient trouble, reset by any
    successful call; fixed and long for conditions a retry cannot fix (margin, ordering restriction)."""

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0
    rate_limited_s: float = 60.0  # -1 / 429: at least this long
    market_closed_s: float = 30.0  # -204: maintenance lasts minutes
    margin_s: float = 300.0  # -205 / -200: margin or funds insufficient; not reset by success
    order_limited_s: float = 600.0  # -508 / -509: bitFlyer restricted our ordering; not reset by success
    close_base_s: float = 1.0  # a refused close: retried after 1, 2, 4 … s
    close_cap_s: float = 30.0  # … at most this long (a maintenance window lasts 10 min)


_MARGIN_CODES = frozenset({-205, -200})
_ORDER_LIMIT_CODES = frozenset({-508, -509})
_TRANSIENT_KINDS = frozenset(
    {
        ErrorKind.RETRYABLE_UNKNOWN,
        ErrorKind.TIMEOUT,
        ErrorKind.BAD_RESPONSE,
        ErrorKind.CONNECT_FAILED,
        ErrorKind.AUTH,
        ErrorKind.MARKET_CLOSED,
        ErrorKind.RATE_LIMITED,
    }
)


class OrderExecutor:
    def __init__(
        self,
        http: OrderGateway,
        exchange_cfg: ExchangeConfig,
        order_logger: OrderLogSink | None,
        orders: OrderTracker,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        budget: RateBudget | None = None,
        policy: BackoffPolicy = BackoffPolicy(),
        backstop_minute_to_expire: int = 1,
        cancel_retry_ms: int = 1000,
    ) -> None:
        self._http = http
        self._exchange = exchange_cfg
        self._log_sink = order_logger
        self.orders = orders
        self._clock = clock
        self._wall = wall
        self.budget = budget
        self.policy = policy
        self._minute_to_expire = backstop_minute_to_expire
        self._cancel_retry_ns = cancel_retry_ms * 1_000_000
        self._tasks = BackgroundTasks("executor")
        self._cancel_on_ack: set[str] = set()  # client ids to cancel as soon as their acceptance id is known
        self._cancel_sent_at: dict[str, int] = {}  # client id -> monotonic ns of the last cancel request
        # error bookkeeping for the runner / dashboard
        self.error_counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_error_at: int | None = None
        self._fail_streak = 0
        self._backoff_until = 0  # transient: exponential, reset on success
        self._entry_block_until = 0  # long: margin / ordering restriction
        # closes refused by the venue in a row: each retry of the same intent waits twice as long (bitFlyer
        # cuts an account to 10 orders/min for an hour past 100 small orders a minute, refused ones included)
        self._close_refusals = 0
        self._close_hold_until = 0
        self.backoff_reason: str | None = None
        # counters
        self.orders_sent = 0  # sendchildorder requests (entries and closes)
        self.orders_cancelled = 0  # cancelchildorder requests
        self.cancel_all_sent = 0  # cancelallchildorders requests
        self.orders_accepted = 0
        self.orders_rejected = 0
        self.orders_unknown = 0
        self.local_refusals = 0  # entries refused here (backoff, rate budget, invalid)
        self.deferred_cancels = 0

    # ---- the runner's view ------------------------------------------------------------------------------
    def backoff_until(self, now: int) -> int | None:
        """Monotonic ns until which new entries are held back, or None when not backing off."""
        until = max(self._backoff_until, self._entry_block_until)
        return until if until > now else None

    def in_backoff(self, now: int) -> bool:
        return self.backoff_until(now) is not None

    def reset_backoff(self) -> None:
        """A human's reset (or a fresh start): forget every backoff, the long ones included."""
        self._fail_streak = 0
        self._backoff_until = 0
        self._entry_block_until = 0
        self._close_refusals = 0
        self._close_hold_until = 0
        self.backoff_reason = None

    @property
    def running(self) -> int:
        return len(self._tasks)

    # ---- entry points -----------------------------------------------------------------------------------
    def submit(self, actions: list[Action], now: int) -> asyncio.Task[None] | None:
        """Register every intent now; run the HTTP calls in one background task. Returns it (None if no
        call)."""
        return self._submit(actions, now, [])

    async def execute(self, actions: list[Action], now: int) -> list[OwnOrder]:
        """`submit` and wait for every call to finish. Returns the orders placed or targeted for cancel."""
        touched: list[OwnOrder] = []
        task = self._submit(actions, now, touched)
        if task is not None:
            await asyncio.shield(task)  # a cancelled caller must not cancel requests already on the wire
        return touched

    def flush_deferred_cancels(self, now: int) -> asyncio.Task[None] | None:
        """Send the cancels waiting for an acceptance id that something else (reconciliation) has learnt
        since."""
        jobs = self._ready_deferred_cancels(now, [])
        return self._spawn(jobs, "deferred-cancels")

    async def drain(self) -> None:
        """Wait until every request in flight has finished (shutdown, tests)."""
        await self._tasks.drain()

    # ---- synchronous part ---------------------------------------------------------------------------------
    def _submit(self, actions: list[Action], now: int, touched: list[OwnOrder]) -> asyncio.Task[None] | None:
        if len(self._cancel_sent_at) > 256:  # bounded memory on long runs: forget finished orders
            self._cancel_sent_at = {
                cid: t
                for cid, t in self._cancel_sent_at.items()
                if (o := self.orders.get(cid)) is not None and o.state.is_open
            }
        jobs: list[Coroutine[Any, Any, None]] = self._ready_deferred_cancels(now, touched)
        for action in actions:
            match action.kind:
                case ActionKind.PLACE_LIMIT:
                    job = self._prepare_place(action, now, touched, market=False)
                    if job is not None:
                        jobs.append(job)
                case ActionKind.CLOSE_MARKET:
                    job = self._prepare_place(action, now, touched, market=True)
                    if job is not None:
                        jobs.append(job)
                case ActionKind.CANCEL_ALL_STALL:
                    jobs.extend(self._prepare_cancel_tag("stall", action, now, touched))
                case ActionKind.CANCEL_ALL:
                    jobs.append(self._prepare_cancel_all(action, touched))
        return self._spawn(jobs, "orders")

    def _spawn(self, jobs: list[Coroutine[Any, Any, None]], name: str) -> asyncio.Task[None] | None:
        if not jobs:
            return None

        async def run() -> None:
            await asyncio.gather(*jobs)

        return self._tasks.spawn(run(), name)

    def _prepare_place(
        self,
        action: Action,
        now: int,
        touched: list[OwnOrder],
        *,
        market: bool,
    ) -> Coroutine[Any, Any, None] | None:
        kind = "close" if market else "place"
        side, size = action.side, action.size
        price = None if market else action.price
        problem = None
        if side is None or size is None or (not market and price is None):
            problem = "side, size" + ("" if market else " and price") + " are required"
        else:
            try:
                size_on_wire(size)
                if price is not None:
                    price_on_wire(price)
            except ValueError as e:
                problem = str(e)
            if problem is None and not market and size > self._exchange.max_order_btc:
                problem = f"size {size} is above exchange.max_order_btc {self._exchange.max_order_btc}"
        if problem is not None:
            logger.error("executor: invalid {} action refused ({}): {}", kind, problem, action)
            self.local_refusals += 1
            self.error_counts["invalid"] += 1
            self._log(kind, None, action=action, status="invalid", reason=f"{action.reason.value}: {problem}")
            return None
        assert side is not None and size is not None
        order = self.orders.new_order(
            tag=action.tag,
            side=side,
            order_type="MARKET" if market else "LIMIT",
            price=price,
            size=size,
            now=now,
            ttl_ms=None if market else action.ttl_ms,
            reason=action.reason,
        )
        touched.append(order)
        if not market:
            # protective closes always go; new entries wait out backoff and the client-side rate budget
            refusal = None
            if self.in_backoff(now):
                refusal = "backoff"
            elif self.budget is not None and not self.budget.take(now):
                refusal = "rate_budget"
            if refusal is not None:
                self.orders.on_rejected(order.client_id, f"local:{refusal}")
                self.local_refusals += 1
                self.error_counts[refusal] += 1
                self._log(kind, order, action=action, status=refusal)
                return None
        else:
            if self._close_hold_until > now:
                wait_ms = (self._close_hold_until - now) // 1_000_000
                self.orders.on_rejected(order.client_id, "local:close_backoff")
                self.local_refusals += 1
                self.error_counts["close_backoff"] += 1
                self._log(
                    kind,
                    order,
                    action=action,
                    status="close_backoff",
                    reason=f"{action.reason.value}: {self._close_refusals} refused in a row, "
                    f"next in {wait_ms} ms",
                )
                return None
            if self.budget is not None:
                self.budget.force(now)  # a protective close always goes, but it counts against the limit
        return self._place(order, action, market=market)

    def close_hold_until(self, now: int) -> int | None:
        """Monotonic ns until which a close is held back after repeated refusals (None: a close may go
        now)."""
        return self._close_hold_until if self._close_hold_until > now else None

    def _close_refused(self) -> None:
        self._close_refusals += 1
        p = self.policy
        delay = min(p.close_cap_s, p.close_base_s * p.factor ** (self._close_refusals - 1))
        self._close_hold_until = self._clock() + int(delay * NS_PER_S)

    def _prepare_cancel_tag(
        self,
        tag: str,
        action: Action,
        now: int,
        touched: list[OwnOrder],
    ) -> list[Coroutine[Any, Any, None]]:
        jobs = []
        for order in self.orders.open_orders(tag=tag):
            if order.state is OrderState.PENDING_CANCEL:
                continue
            touched.append(order)
            if order.acceptance_id is None:
                self._defer_cancel(order, action)
                continue
            last = self._cancel_sent_at.get(order.client_id)
            if last is not None and now - last < self._cancel_retry_ns:
                continue  # an UNKNOWN cancel was sent moments ago: no storm of repeats
            self._cancel_sent_at[order.client_id] = now
            self.orders.on_cancel_requested(order.client_id)
            jobs.append(self._cancel(order, action.reason.value))
        return jobs

    def _defer_cancel(self, order: OwnOrder, action: Action | None) -> None:
        if order.client_id in self._cancel_on_ack:
            return
        self._cancel_on_ack.add(order.client_id)
        self.deferred_cancels += 1
        self._log(
            "cancel", order, action=action, status="deferred", reason=action.reason.value if action else ""
        )

    def _ready_deferred_cancels(self, now: int, touched: list[OwnOrder]) -> list[Coroutine[Any, Any, None]]:
        """Deferred cancels whose order learnt its acceptance id outside `_place` (e.g. from
        reconciliation)."""
        jobs = []
        for cid in list(self._cancel_on_ack):
            order = self.orders.get(cid)
            if order is None or not order.state.is_open:
                self._cancel_on_ack.discard(cid)
                continue
            if order.acceptance_id is None or order.state is OrderState.PENDING_NEW:
                continue  # still waiting; `_place` handles it when the answer arrives
            self._cancel_on_ack.discard(cid)
            touched.append(order)
            self._cancel_sent_at[cid] = now
            self.orders.on_cancel_requested(cid)
            jobs.append(self._cancel(order, "deferred"))
        return jobs

    def _prepare_cancel_all(self, action: Action, touched: list[OwnOrder]) -> Coroutine[Any, Any, None]:
        marked: list[OwnOrder] = []
        for order in self.orders.open_orders():
            touched.append(order)
            if order.acceptance_id is None:
                # it may reach the venue after cancelall does: cancel it by id once we know it
                self._defer_cancel(order, action)
            elif order.state is OrderState.ACTIVE:
                self.orders.on_cancel_requested(order.client_id)
                marked.append(order)
        return self._cancel_all(action, marked)

    # ---- asynchronous part (one coroutine per REST call) ---------------------------------------------------
    async def _place(self, order: OwnOrder, action: Action, *, market: bool) -> None:
        kind = "close" if market else "place"
        cid = order.client_id
        self.orders_sent += 1
        t0 = self._clock()
        try:
            aid = await self._http.send_child_order(
                order.side,
                order.size,
                order_type="MARKET" if market else "LIMIT",
                price=None if market else order.price,
                minute_to_expire=None if market else self._minute_to_expire,
                time_in_force="GTC",
            )
        except ExchangeError as e:
            if e.definite:
                self._cancel_on_ack.discard(cid)  # it never existed: nothing to cancel
                self.orders.on_rejected(cid, e.label)
                self.orders_rejected += 1
                if market:
                    self._close_refused()
            else:
                self.orders.on_unknown(cid, e.label)
                self.orders_unknown += 1
            self._on_error(e)
            self._log(
                kind,
                order,
                action=action,
                status=e.label,
                latency_ns=self._clock() - t0,
                reason=f"{action.reason.value}: {e.message}"[:200],
            )
            logger.warning("executor: {} {} {} {} failed: {}", kind, order.side, order.size, order.price, e)
            return
        except asyncio.CancelledError:
            # shutdown while the request was on the wire: it may exist
            self.orders.on_unknown(cid, "cancelled")
            self.orders_unknown += 1
            self._log(
                kind,
                order,
                action=action,
                status="unknown",
                latency_ns=self._clock() - t0,
                reason="request cancelled in flight",
            )
            raise
        except Exception as e:  # a bug below us: the order may or may not exist
            self.orders.on_unknown(cid, f"error:{type(e).__name__}")
            self.orders_unknown += 1
            self.error_counts["unexpected"] += 1
            self.last_error = f"unexpected {type(e).__name__}: {e}"
            logger.opt(exception=e).error("executor: unexpected error sending {}", order)
            self._log(
                kind,
                order,
                action=action,
                status="unknown",
                latency_ns=self._clock() - t0,
                reason=f"unexpected {type(e).__name__}",
            )
            return
        self._on_success()
        if market:
            self._close_refusals = 0
            self._close_hold_until = 0
        self.orders_accepted += 1
        self.orders.on_accepted(cid, aid, self._clock())
        self._log(kind, order, action=action, status="ok", latency_ns=self._clock() - t0)
        if cid in self._cancel_on_ack:
            self._cancel_on_ack.discard(cid)
            if order.state.is_open and order.state is not OrderState.PENDING_CANCEL:
                self._cancel_sent_at[cid] = self._clock()
                self.orders.on_cancel_requested(cid)
                await self._cancel(order, "deferred")

    async def _cancel(self, order: OwnOrder, reason: str) -> None:
        cid = order.client_id
        assert order.acceptance_id is not None
        self.orders_cancelled += 1
        t0 = self._clock()
        try:
            await self._http.cancel_child_order(order.acceptance_id)
        except ExchangeError as e:
            if e.definite:
                # refused: it still rests (or its fill/cancel event will say otherwise); a later action
                # retries
                if order.state is OrderState.PENDING_CANCEL:
                    self.orders.settle(cid, OrderState.ACTIVE)
                self._cancel_sent_at.pop(cid, None)
            else:
                self.orders.on_unknown(cid, e.label)
            self._on_error(e)
            self._log(
                "cancel",
                order,
                status=e.label,
                latency_ns=self._clock() - t0,
                reason=f"{reason}: {e.message}"[:200],
            )
            logger.warning("executor: cancel {} failed: {}", order.acceptance_id, e)
            return
        except asyncio.CancelledError:
            self.orders.on_unknown(cid, "cancelled")
            self._log(
                "cancel",
                order,
                status="unknown",
                latency_ns=self._clock() - t0,
                reason="request cancelled in flight",
            )
            raise
        except Exception as e:
            self.orders.on_unknown(cid, f"error:{type(e).__name__}")
            self.error_counts["unexpected"] += 1
            logger.opt(exception=e).error("executor: unexpected error cancelling {}", order)
            self._log(
                "cancel",
                order,
                status="unknown",
                latency_ns=self._clock() - t0,
                reason=f"unexpected {type(e).__name__}",
            )
            return
        self._on_success()
        # 200 with an empty body: the CANCEL (or CANCEL_FAILED) event settles the order
        self._log("cancel", order, status="ok", latency_ns=self._clock() - t0, reason=reason)

    async def _cancel_all(self, action: Action, marked: list[OwnOrder]) -> None:
        self.cancel_all_sent += 1
        t0 = self._clock()
        try:
            await self._http.cancel_all_child_orders()
        except ExchangeError as e:
            for order in marked:
                if e.definite:
                    if order.state is OrderState.PENDING_CANCEL:
                        self.orders.settle(order.client_id, OrderState.ACTIVE)
                else:
                    self.orders.on_unknown(order.client_id, e.label)
            self._on_error(e)
            self._log(
                "cancel_all",
                None,
                action=action,
                status=e.label,
                latency_ns=self._clock() - t0,
                reason=f"{action.reason.value}: {e.message}"[:200],
            )
            logger.warning("executor: cancel_all failed: {}", e)
            return
        except Exception as e:
            if not isinstance(e, asyncio.CancelledError):
                self.error_counts["unexpected"] += 1
                logger.opt(exception=e).error("executor: unexpected error in cancel_all")
            for order in marked:
                self.orders.on_unknown(order.client_id, f"error:{type(e).__name__}")
            self._log("cancel_all", None, action=action, status="unknown", latency_ns=self._clock() - t0)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        self._on_success()
        self._log("cancel_all", None, action=action, status="ok", latency_ns=self._clock() - t0)

    # ---- bookkeeping ---------------------------------------------------------------------------------------
    def _on_success(self) -> None:
        self._fail_streak = 0
        self._backoff_until = 0
        if self._entry_block_until <= self._clock():
            self.backoff_reason = None

    def _on_error(self, e: ExchangeError) -> None:
        now = self._clock()
        self.error_counts[e.label] += 1
        self.last_error = e.describe()
        self.last_error_at = now
        p = self.policy
        if e.code in _MARGIN_CODES:
            self._block_entries(now, p.margin_s, e)
            return
        if e.code in _ORDER_LIMIT_CODES:
            self._block_entries(now, p.order_limited_s, e)
            return
        if e.kind not in _TRANSIENT_KINDS:
            return  # a plain rejection (price too low, size too small...): counted, no backoff
        self._fail_streak += 1
        delay = min(p.cap_s, p.base_s * p.factor ** (self._fail_streak - 1))
        if e.kind is ErrorKind.RATE_LIMITED:
            delay = max(delay, p.rate_limited_s)
        elif e.kind is ErrorKind.MARKET_CLOSED:
            delay = max(delay, p.market_closed_s)
        until = now + int(delay * NS_PER_S)
        if until > self._backoff_until:
            self._backoff_until = until
            self.backoff_reason = e.label
        logger.warning("executor: backing off new entries for {:.1f}s after {}", delay, e.label)

    def _block_entries(self, now: int, seconds: float, e: ExchangeError) -> None:
        until = now + int(seconds * NS_PER_S)
        if until > self._entry_block_until:
            self._entry_block_until = until
            self.backoff_reason = e.label
        logger.error("executor: new entries blocked for {:.0f}s after {} ({})", seconds, e.label, e.message)

    def _log(
        self,
        kind: str,
        order: OwnOrder | None,
        *,
        action: Action | None = None,
        status: str,
        latency_ns: int | None = None,
        reason: str | None = None,
    ) -> None:
        if self._log_sink is None:
            return
        side: Side | None = order.side if order else (action.side if action else None)
        price: Decimal | None = order.price if order else (action.price if action else None)
        size: Decimal | None = order.size if order else (action.size if action else None)
        row = OrderLogRow(
            ts=self._wall(),
            action=kind,
            order_id=(order.acceptance_id or "") if order else "",
            client_order_id=order.client_id if order else "",
            side=side,
            price=price,
            size=size,
            tif="GTC" if kind in ("place", "close") else "",
            ttl_ms=order.ttl_ms if order else None,
            tag=order.tag if order else (action.tag if action else ""),
            reason=reason if reason is not None else (action.reason.value if action else ""),
            status=status,
            latency_ms=None if latency_ns is None else round(latency_ns / 1e6, 3),
        )
        try:
            self._log_sink.log(row)
        except Exception as e:  # the orders log must never break order handling
            logger.opt(exception=e).error("executor: order log write failed")
