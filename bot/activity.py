"""ActivityWatch: the one answer to "is it trading, and if not, why" — for the banner, GET /strategy, the log.

The first rule that holds wins, so the answer names what a trader must act on first:
  1. blocked by the run state (KILLED, STOPPED, PAUSED) — only a human changes it;
  2. blocked by a guard (stale feed, reconciling, margin low or called, market closed, storage failing,
     exchange backoff) — it clears by itself (a margin block when the account recovers);
  3. trading — stall orders live, or a strike in the last few seconds;
  4. throttled — a request budget leaves no order for a strike (the REST budget's reserve is kept for cancels,
     closes and kills, so entries stop before it);
  5. idle — running and waiting, with the strategy's own reason (no stall yet, spread too narrow, …).
`since` is when this status and reason began (as observed: the dashboard looks 8 times a second).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bot.account_watch import AccountWatch
from bot.config.loader import AppConfig
from bot.decision_loop import DecisionLoop
from bot.engine.orders import OrderTracker
from bot.engine.rate_budget import RateBudget
from bot.infra.storage_health import StorageHealth
from bot.links import VenueLinks
from bot.run_state import RunStateMachine
from bot.types.dto import Gate, Reason, RunState
from bot.types.snapshot import Activity, BudgetView
from bot.venue_sync import VenueSync

RECENT_STRIKE_NS = 5_000_000_000  # a strike this recent still counts as trading (its orders may be done)
STALL_TAG = "stall"


def _seconds(ns: int) -> float:
    return round(max(0, ns) / 1e9, 1)


class ActivityWatch:
    def __init__(
        self,
        *,
        config: Callable[[], AppConfig],
        clock: Callable[[], int],
        run_state: RunStateMachine,
        gate: Gate,
        decisions: DecisionLoop,
        tracker: OrderTracker,
        sync: VenueSync,
        account: AccountWatch,
        links: VenueLinks,
        order_budget: RateBudget,
        rest_budget: RateBudget,
        storage: StorageHealth,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._clock = clock
        self._run_state = run_state
        self._gate = gate
        self._decisions = decisions
        self._tracker = tracker
        self._sync = sync
        self._account = account
        self._links = links
        self._order_budget = order_budget
        self._rest_budget = rest_budget
        self._storage = storage
        self._wall = wall
        self._current: tuple[str, str] | None = None
        self._since = wall()

    # ---------------------------------------------------------------- budgets
    def budgets(self, now: int) -> list[BudgetView]:
        reserve = self._decisions.rest_reserve
        return [
            self._budget("orders", self._order_budget, 0, now),
            self._budget("rest", self._rest_budget, reserve, now),
        ]

    @staticmethod
    def _budget(name: str, budget: RateBudget, reserve: int, now: int) -> BudgetView:
        left = budget.available(now)
        need = min(budget.limit, reserve + 1)  # one request above the reserve lets an entry go
        refills = None if left >= need else _seconds(budget.available_at(now, need) - now)
        return BudgetView(name=name, left=left, limit=budget.limit, reserve=reserve, refills_in_s=refills)

    # ---------------------------------------------------------------- the answer
    def now(self) -> Activity:
        status, reason, detail = self._classify(self._clock())
        if self._current != (status, reason):
            self._current = (status, reason)
            self._since = self._wall()
        return Activity(status=status, reason=reason, detail=detail, since=self._since.isoformat())

    def _classify(self, now: int) -> tuple[str, str, str]:
        rs = self._run_state
        settler = self._links.settler
        settle = None if settler is None else settler.status()
        doing = f" ({settle.describe()})" if settle is not None and settle.goal is not None else ""
        match rs.state:
            case RunState.KILLED:
                return (
                    "blocked",
                    "killed",
                    f"KILLED: {rs.reason}{doing}. Reset (a human decision) to trade again.",
                )
            case RunState.STOPPED:
                return "blocked", "stopped", f"STOPPED{doing}: press Start to trade."
            case RunState.PAUSED:
                return "blocked", "paused", "PAUSED: no new entries; protective exits stay on."
        block = self._gate.block_reason
        if block is not None:
            return "blocked", block.value, self._block_detail(block, now)
        live = self._tracker.open_orders(tag=STALL_TAG)
        struck = self._decisions.last_strike_at
        if live:
            return "trading", "orders_live", f"{len(live)} stall order(s) live"
        if struck is not None and now - struck < RECENT_STRIKE_NS:
            return "trading", "strike", f"struck {_seconds(now - struck)} s ago"
        throttled = self._throttle(now)
        if throttled is not None:
            return throttled
        return "idle", *self._idle(self._decisions.last_reason)

    def _throttle(self, now: int) -> tuple[str, str, str] | None:
        if self._decisions.entry_budget(now) >= 2:  # a strike sends one order a side
            return None
        orders, rest = self.budgets(now)
        if rest.left <= rest.reserve:
            return (
                "throttled",
                "rest_budget",
                f"REST budget at its reserve: {rest.left}/{rest.limit} left, {rest.reserve} kept for cancels "
                f"and kills; entries resume in {rest.refills_in_s} s",
            )
        return (
            "throttled",
            "order_budget",
            f"order budget used up: {orders.left}/{orders.limit} a minute; "
            f"refills in {_seconds(self._order_budget.available_at(now, 2) - now)} s",
        )

    def _block_detail(self, block: Reason, now: int) -> str:
        sync = self._sync
        match block:
            case Reason.STALE_DATA:
                return "no fresh board data: waiting for messages and a new snapshot"
            case Reason.RECONCILING:
                return "checking orders and position with the exchange before trading"
            case Reason.MARKET_CLOSED:
                if sync.board_state not in ("RUNNING", "UNKNOWN") or sync.exchange_health in (
                    "STOP",
                    "NO ORDER",
                ):
                    return f"market closed: board {sync.board_state}, health {sync.exchange_health}"
                return "bitFlyer's daily maintenance (04:00–04:10 JST): no orders"
            case Reason.MARGIN_LOW | Reason.MARGIN_CALL:
                return self._account.alert() or block.value.replace("_", " ")
            case Reason.STORAGE:  # which file, why, since when: the storage health's own line
                return self._storage.message() or "storage failing: entries stopped"
            case Reason.EXCHANGE_BACKOFF:
                ex = self._links.executor
                until = None if ex is None else ex.backoff_until(now)
                left = "" if until is None else f"; {_seconds(until - now)} s left"
                why = "" if ex is None or ex.backoff_reason is None else f" ({ex.backoff_reason})"
                return f"backing off after exchange errors{why}{left}"
        return block.value.replace("_", " ")

    def _idle(self, reason: Reason | None) -> tuple[str, str]:
        s = self._config().strategy
        match reason:
            case None | Reason.NOT_STALLED:
                return "not_stalled", f"waiting for the best bid and ask to stand still for {s.stall_T_ms} ms"
            case Reason.SPREAD_TOO_NARROW:
                return reason.value, f"spread narrower than {s.min_spread_tick} tick(s): no room to quote"
            case Reason.INVENTORY_LIMIT:
                return reason.value, f"position at the inventory limit ({s.max_inventory_btc} BTC)"
            case Reason.ALREADY_STRUCK:
                return reason.value, "struck this stall; waiting for the best to move and a new stall"
            case Reason.NO_BOOK:
                return reason.value, "one side of the book is empty"
            case Reason.RATE_BUDGET:
                return reason.value, "the last strike was skipped for the request budget"
        return reason.value, reason.value.replace("_", " ")
