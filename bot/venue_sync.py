"""VenueSync: the venue's answers over REST taken as named reports and applied through the Reconciler — at
start, after every reconnect (entries blocked until one succeeds), periodically, after a settle, and soon
after an execution the feed cannot vouch for. A failed call leaves the state unknown, never "no orders". It
also polls the board state and health the venue reports about itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from loguru import logger

from bot.engine.inventory import InventoryManager
from bot.engine.orders import UNTRACKED_TAG, OrderTracker
from bot.engine.rate_budget import RateBudget
from bot.engine.reconcile import OrderStatusReport, Reconciler, VenueReports, exec_order_key
from bot.infra.bitflyer_parse import (
    ParseError,
    parse_getchildorders,
    parse_my_executions,
    parse_position_rows,
)
from bot.links import RunnerMetrics, VenueLinks
from bot.types.dto import Fill, OrderState
from bot.types.exchange import ExchangeError
from bot.types.tasks import BackgroundTasks

RECONCILE_MAX_PAGES = 20  # getexecutions pages (100 each) read back to the ledger's watermark
RECONCILE_SOON_S = 0.25  # a burst of unverified executions is checked with one reconcile


class VenueSync:
    def __init__(
        self,
        *,
        product_code: str,
        links: VenueLinks,
        tracker: OrderTracker,
        inventory: InventoryManager,
        rest_budget: RateBudget,
        metrics: RunnerMetrics,
        tasks: BackgroundTasks,
        clock: Callable[[], int],
        apply_fill: Callable[[Fill, int], None],
        on_correction: Callable[[Decimal, Decimal], None],
    ) -> None:
        self._product = product_code
        self._links = links
        self._tracker = tracker
        self._inventory = inventory
        self._rest_budget = rest_budget
        self._metrics = metrics
        self._tasks = tasks
        self._clock = clock
        self._apply_fill = apply_fill
        self._on_correction = on_correction  # (position change, PnL effect at the mark): a correction row
        # decide again: what reconciliation learnt may unblock or change a decision (set by the runner)
        self.after: Callable[[], None] = lambda: None
        self._reconciler = Reconciler()
        self._lock = asyncio.Lock()
        self._retry: asyncio.Task | None = None  # one retry loop, however many reconnects ask
        self._starved = False  # logged once per run of budget-skipped reconciles
        self._pending = False
        self._baselined = False  # the first reconcile of this process has run
        self.needed = True  # at start: no new orders before the first reconciliation
        self.reconciled_at: datetime | None = None
        self.venue_position: Decimal | None = None
        self.feed_generation = 0  # disconnects so far: a reconcile begun before one is stale
        self.board_state = "UNKNOWN"
        self.exchange_health = "UNKNOWN"

    def feed_lost(self) -> None:
        """The feed dropped: what it would have told us is unknown until a reconcile after it."""
        self.feed_generation += 1
        self.needed = True

    async def poll_board_state(self) -> None:
        assert self._links.http is not None
        try:
            bs = await self._links.http.get_board_state()
            self.board_state = str(bs.get("state", "UNKNOWN"))
            self.exchange_health = str(bs.get("health", "UNKNOWN"))
        except Exception as e:  # ExchangeError or a body of the wrong shape: keep the last known state
            logger.warning("board state poll failed: {}", e)

    def soon(self, why: str) -> None:
        """One reconcile shortly (coalesced: a burst of evidence costs one set of REST calls)."""
        if self._pending or self._links.http is None:
            return
        self._pending = True

        async def run() -> None:
            try:
                await asyncio.sleep(RECONCILE_SOON_S)
                await self.reconcile(why, block=False)
            finally:
                self._pending = False

        self._tasks.spawn(run(), "reconcile-soon")

    async def reconcile(self, why: str, *, block: bool = True) -> bool:
        """Take the venue's reports (executions → positions → executions, and the ACTIVE listing) and apply
        the reconciler's verdict. False (state unknown, entries stay blocked) when any call fails."""
        assert self._links.http is not None
        async with self._lock:
            generation = self.feed_generation
            try:
                reports = await self._venue_reports()
            except (ExchangeError, ParseError) as e:
                self._metrics.reconcile_failures += 1
                logger.warning("reconcile ({}) failed: {}; orders unknown, retrying", why, e)
                if block and (self._retry is None or self._retry.done()):
                    self._retry = self._tasks.spawn(self._retry_loop(why), "reconcile-retry")
                return False
            if reports is None:
                if not self._starved:
                    logger.warning(
                        "reconcile ({}) skipped: private REST budget exhausted; state unknown until "
                        "it refills",
                        why,
                    )
                self._starved = True
                self._metrics.reconcile_failures += 1
                return False
            if self._starved:
                logger.info("reconcile ({}): private REST budget back", why)
                self._starved = False
            self._apply_reconcile(reports, why)
            self.reconciled_at = datetime.now(UTC)
            self._metrics.reconciles += 1
            was_blocked = self.needed
            # a disconnect while the calls were out makes this answer older than the feed: still blocked
            if generation == self.feed_generation:
                self.needed = False
            if was_blocked:
                logger.info(
                    "reconciled ({}): {} active at venue, position {}",
                    why,
                    len(reports.active),
                    self.venue_position,
                )
            self.after()
            return True

    async def _venue_reports(self) -> VenueReports | None:
        """The venue's answers, in an order that shows a fill landing while they are taken."""
        assert self._links.http is not None
        if self._rest_budget.available(self._clock()) < 4:
            return None
        fills = await self._recent_fills()
        lots = parse_position_rows(await self._links.http.get_positions(), self._product)
        listed_at = self._clock()
        active_rows = [
            r
            for r in parse_getchildorders(await self._links.http.get_child_orders(state="ACTIVE", count=100))
            if r.product_code in ("", self._product)
        ]
        after = parse_my_executions(await self._links.http.get_executions(count=20))
        newest = max((exec_order_key(f) for f in fills), default=(-1, ""))
        landed = [f for f in after if exec_order_key(f) > newest]
        return VenueReports(
            listed_at=listed_at,
            active=tuple(
                OrderStatusReport(
                    r.child_order_acceptance_id,
                    r.side,
                    r.child_order_type,
                    r.price or None,
                    r.size,
                    r.executed_size,
                )
                for r in active_rows
            ),
            fills=tuple(fills + landed),
            lots=tuple(lots),
            lots_consistent=not landed,
        )

    async def _recent_fills(self) -> list[Fill]:
        """Executions newest first, page after page, until the page reaches what the ledger has already
        applied (its watermark): everything that happened while the bot was down or deaf is in the answer."""
        assert self._links.http is not None
        mark = self._inventory.exec_watermark
        out: list[Fill] = []
        before: int | None = None
        for _ in range(RECONCILE_MAX_PAGES):
            page = parse_my_executions(await self._links.http.get_executions(count=100, before=before))
            out.extend(page)
            ids = [k for k, _ in map(exec_order_key, page) if k >= 0]
            if len(page) < 100 or not ids or mark is None or min(ids) <= mark:
                return out
            before = min(ids)
            if self._rest_budget.available(self._clock()) < 4:
                break
        logger.error(
            "reconcile: executions since id {} span more than the pages read; the position check "
            "will correct what is left",
            mark,
        )
        return out

    def _apply_reconcile(self, reports: VenueReports, why: str) -> None:
        now = self._clock()
        inv = self._inventory
        if not self._baselined:
            self._baselined = True
            if inv.exec_watermark is None:
                # a ledger with no history at all (a first start): the venue's past executions are a baseline,
                # and its position (if any) is adopted below as a correction
                for fill in reports.fills:
                    inv.mark_seen(fill)
        result = self._reconciler.reconcile(
            self._tracker.open_orders(),
            reports,
            is_tracked=lambda aid: self._tracker.by_acceptance(aid) is not None,
            is_applied=inv.is_applied,
            position=inv.position_btc,
        )
        for cid in result.confirmed:
            self._tracker.settle(cid, OrderState.ACTIVE)
        for cid, aid in result.found:
            self._tracker.on_accepted(cid, aid, now)
            logger.info("reconcile: unknown send {} found at venue as {}", cid, aid)
        for cid, final in result.gone:
            self._tracker.settle(cid, final)
            logger.info("reconcile: {} absent from two ACTIVE listings: {}", cid, final.value)
        for r in result.adopted:
            self._tracker.adopt(
                r.acceptance_id, r.side, r.price, r.size, r.executed_size, now, order_type=r.order_type
            )
            logger.warning(
                "reconcile: adopted an order we did not track: {} {} {}@{}",
                r.acceptance_id,
                r.side.value,
                r.size,
                r.price,
            )
        executor = self._links.executor
        if executor is not None:  # cancels that waited for an acceptance id reconciliation just learnt
            executor.flush_deferred_cancels(now)
        for fill in result.fills:
            order = self._tracker.by_acceptance(fill.child_order_acceptance_id)
            logger.warning(
                "reconcile ({}): execution {} not seen on the feed, applied from REST", why, fill.exec_id
            )
            self._apply_fill(replace(fill, tag=order.tag if order else UNTRACKED_TAG), now)
        self.venue_position = result.venue_position
        if result.correction is not None:
            self._correct_position(result.correction, result.expected_position, why, now)

    def _correct_position(self, lots: tuple, expected: Decimal, why: str, now: int) -> None:
        """The venue's position still differs after every missing execution was applied: adopt its lots, and
        say so (a warning and a `correction` row in the trades CSV with the PnL effect at the mark)."""
        inv = self._inventory
        before_pos, before_unreal = inv.position_btc, inv.unrealized_pnl_jpy
        try:
            if not inv.replace_lots_from_venue(list(lots), now=now):
                return
        except (ValueError, TypeError) as e:  # a venue answer we cannot use changes nothing
            logger.error("reconcile ({}): venue positions unusable ({}); keeping ours", why, e)
            return
        self._metrics.position_corrections += 1
        effect = inv.unrealized_pnl_jpy - before_unreal
        logger.warning(
            "reconcile ({}): position {} BTC (expected {} after the venue's executions) corrected to "
            "the venue's {} BTC; PnL effect at the mark {} JPY",
            why,
            before_pos,
            expected,
            inv.position_btc,
            effect,
        )
        self._on_correction(inv.position_btc - before_pos, effect)

    async def _retry_loop(self, why: str) -> None:
        delay = 0.5
        while self.needed and not self._links.closing:
            await asyncio.sleep(delay)
            if await self.reconcile(why, block=False):
                return
            delay = min(delay * 2, 10.0)
