"""DecisionLoop: one decision at a time, on a board message or a deadline — the gate the strategy reads is
set (run state, block reason — stale feed, reconciling, margin low or called, market closed, exchange
backoff — entry budget), the strategy decides on the board view, what the run state allows
goes to the executor, the decision is logged, and one timer is armed for the earliest instant a decision could
change without new data (the strategy's next deadline, the stale-feed deadline, the end of a backoff).

A decision is a plain synchronous callback, so it is atomic with respect to config patches and control calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from loguru import logger

from bot.account_watch import AccountWatch
from bot.config.loader import AppConfig
from bot.dashboard_view import DashboardHistory
from bot.engine.inventory import InventoryManager
from bot.engine.markouts import Markouts
from bot.engine.rate_budget import GateBudget, RateBudget, entry_budget, exit_reserve
from bot.engine.strategy_stall import StallThenStrikeStrategy
from bot.infra.board_store import BoardStore
from bot.infra.decision_runs import DecisionRuns
from bot.infra.logging_structured import DecisionLogger
from bot.infra.orderbook_view import OrderBookView
from bot.infra.storage_health import StorageHealth
from bot.links import RunnerMetrics, VenueLinks
from bot.run_state import RunStateMachine
from bot.types.dto import NS_PER_MS, Action, ActionKind, BoardSnapshot, Gate, Reason, RunState
from bot.venue_sync import VenueSync

# epoll sleeps in whole milliseconds, so a timer fires up to 1 ms late: wake this much early and yield to the
# loop until the deadline (at most ~1 ms of loop turns per deadline, I/O still served)
TIMER_EARLY_NS = 1_000_000
JST = ZoneInfo("Asia/Tokyo")
# enum members read through the class cost ~70 ns each; the per-message path reads these names instead
_RUNNING, _PAUSED, _KILL_SWITCH = RunState.RUNNING, RunState.PAUSED, Reason.KILL_SWITCH
_ACTING = (_RUNNING, _PAUSED)
_PLACE_LIMIT = ActionKind.PLACE_LIMIT
MAINTENANCE_CHECK_NS = 200_000_000  # the wall clock is read for the maintenance window at most this often


def _wall_utc() -> datetime:
    return datetime.now(UTC)


class DecisionLoop:
    def __init__(
        self,
        *,
        config: Callable[[], AppConfig],
        clock: Callable[[], int],
        store: BoardStore,
        view: OrderBookView,
        strategy: StallThenStrikeStrategy,
        gate: Gate,
        inventory: InventoryManager,
        run_state: RunStateMachine,
        sync: VenueSync,
        account: AccountWatch,
        links: VenueLinks,
        order_budget: RateBudget,
        rest_budget: RateBudget,
        metrics: RunnerMetrics,
        decision_log: DecisionLogger,
        history: DashboardHistory,
        storage: StorageHealth,
        markouts: Markouts,
    ) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        self._view = view
        self._strategy = strategy
        self._gate = gate
        self._inventory = inventory
        self._run_state = run_state
        self._sync = sync
        self._account = account
        self._links = links
        self._order_budget = order_budget
        self._rest_budget = rest_budget
        self._gate_budget = GateBudget(gate, order_budget, rest_budget)
        self._metrics = metrics
        self._runs = DecisionRuns(decision_log, _wall_utc)
        self._history = history
        self._storage = storage
        self._timer: asyncio.Handle | None = None
        self._timer_at: int | None = None
        self._stale_timer: asyncio.TimerHandle | None = None
        self._stale_at: int | None = None
        self.last_board_at: int | None = None  # when the latest board message arrived (monotonic ns)
        self.markouts = markouts  # the live session's fills, marked 1, 5, 30 s later (as replay does)
        self._last_board: BoardSnapshot | None = None
        self._in_maintenance = False
        self._maintenance_checked_at: int | None = None
        self.last_strike_at: int | None = None  # when stall orders were last handed to the executor
        self.last_reason: Reason | None = None  # the strategy's latest reason (why it did or did not act)
        self.on_error: Callable[[str, BaseException], None] = lambda where, e: None  # told to the trader

    # ---------------------------------------------------------------- what may be done
    def block_reason(self, now: int) -> Reason | None:
        silent_at = self._silent_at()
        if silent_at is not None and now >= silent_at:
            self._store.mark_silent()  # no strike again until fresh data *and* a new snapshot (SPEC §10)
        if not self._links.feed_up or self._store.stale or silent_at is None or now >= silent_at:
            return Reason.STALE_DATA
        if self._sync.needed:
            return Reason.RECONCILING
        margin = self._account.block_reason()
        if margin is not None:
            return margin
        if self._market_closed(now):
            return Reason.MARKET_CLOSED
        if not self._storage.ok:  # fail closed: no entry the state file or the logs could not record
            return Reason.STORAGE
        executor = self._links.executor
        if executor is not None and executor.in_backoff(now):
            return Reason.EXCHANGE_BACKOFF
        return None

    @property
    def rest_reserve(self) -> int:
        """REST requests kept for cancels, closes, reconciliation and a kill: entries never spend them."""
        return exit_reserve(self._rest_budget)

    def entry_budget(self, now: int) -> int:
        """Order sends the strategy may spend now: the order budget, but none once the REST budget is down to
        the reserve."""
        return entry_budget(self._order_budget, self._rest_budget, now)

    def _market_closed(self, now: int) -> bool:
        sync = self._sync
        if sync.board_state not in ("RUNNING", "UNKNOWN") or sync.exchange_health in ("STOP", "NO ORDER"):
            return True
        if self._run_state.mode in ("live", "paper"):  # bitFlyer's daily maintenance, 04:00–04:10 JST
            checked = self._maintenance_checked_at
            if checked is None or now - checked >= MAINTENANCE_CHECK_NS or now < checked:
                t = datetime.now(JST).time()
                self._in_maintenance = (t.hour == 4 and t.minute < 10) or (t.hour == 3 and t.minute >= 59)
                self._maintenance_checked_at = now
            return self._in_maintenance
        return False

    # ---------------------------------------------------------------- the decision
    def on_board(self, now: int, snapshot: bool = False) -> None:
        """A board message arrived at `now` (the store has applied it); `snapshot`: a whole-book resync."""
        self._metrics.board_messages += 1
        self.last_board_at = now
        self.decide(now, now, snapshot)

    def kick(self) -> None:
        """Decide now: something other than the market changed (state, config, reconciliation, the feed)."""
        if self._links.executor is not None:
            self.decide(self._clock(), None)

    def decide(self, now: int, cause_ns: int | None, snapshot: bool = False) -> list[Action]:
        """One decision. `cause_ns` is when the triggering message (or timer) arrived, for the latency
        histograms; `snapshot`: it was a whole-book snapshot, measured apart. Returns the actions handed to
        the executor."""
        executor = self._links.executor
        if self._links.closing or executor is None:
            return []
        state = self._run_state.state
        gate = self._gate
        gate.run_state = state
        gate.block_reason = self.block_reason(now)
        self._gate_budget.apply(now)
        board = self._view.snapshot(now)
        last = self._last_board
        if self.markouts.due_before(now):  # horizons due before now, at the mid until now
            self.markouts.settle_before(now, None if last is None else last.mid_price)
        self._last_board = board
        try:
            actions, meta = self._strategy.on_board(board, now)
        except Exception as e:
            logger.exception("strategy raised; no action this time")
            self.on_error("the strategy", e)
            actions, meta = [], None
        self._metrics.decisions += 1
        if meta is not None:
            wall = self._runs.record(meta, now)  # a repeated no-action is counted: no clock, no row
            history = self._history
            if wall is not None:
                history.on_decision(meta, wall)
            if history.sample_due(now):
                history.sample(now, time.time(), board.mid_price, self._inventory.pnl_today_jpy)
            if meta.reason is _KILL_SWITCH and state in _ACTING:
                # the inventory's sentence names the limit and the figures ("Kill switch: today's PnL …")
                detail = self._inventory.kill_detail or f"Kill switch: {meta.detail}"
                self._run_state.enter_killed(detail, "kill switch")
        if actions:
            if not (state in _ACTING or (meta is not None and meta.reason is _KILL_SWITCH)):
                actions = []
            elif state is _PAUSED:  # PAUSED: protective exits and cancels only, never an entry
                actions = [a for a in actions if a.kind is not _PLACE_LIMIT]
        struck = False
        if actions:
            executor.submit(actions, now)
            if any(a.kind is _PLACE_LIMIT for a in actions):
                self.last_strike_at = now
                struck = True
        if meta is not None:
            self.last_reason = meta.reason
        if cause_ns is not None:
            took = self._clock() - cause_ns
            m = self._metrics
            if snapshot:
                m.snapshot_latency_ns.append(took)
            else:
                m.decision_latency_ns.append(took)
                if struck:
                    m.strike_decision_latency_ns.append(took)
                elif not actions:
                    m.no_action_latency_ns.append(took)
        self._arm_timer(now)
        return actions

    # ---------------------------------------------------------------- the one timer
    def _arm_timer(self, now: int) -> None:
        """The decision timer, at the earliest instant the strategy's decision could change without new data
        (or an exchange backoff ends), re-armed only when that instant moves; and the stale-feed watch."""
        self._arm_stale_watch()
        at = self._strategy.next_deadline(now)
        executor = self._links.executor
        if executor is not None:
            # the end of an exchange backoff changes the block reason: decide then, not at the next message
            until = executor.backoff_until(now)
            if until is not None and (at is None or until < at):
                at = until
        if at is None:
            return
        if self._timer is not None and self._timer_at == at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay_s = max(0.0, (at - TIMER_EARLY_NS - self._clock()) / 1e9)
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + delay_s, self._on_timer, at)

    def _on_timer(self, due: int) -> None:
        if self._clock() < due:
            # woke early on purpose: come back on the next loop turn (which still polls the sockets)
            self._timer = asyncio.get_running_loop().call_soon(self._on_timer, due)
            return
        self._timer = None
        self._timer_at = None
        now = self._clock()
        self._metrics.deadline_latency_ns.append(max(0, now - due))
        submitted = self.decide(now, now)
        if any(a.kind is _PLACE_LIMIT for a in submitted):
            self._metrics.strike_latency_ns.append(self._clock() - due)

    def _silent_at(self) -> int | None:
        """When the feed counts as silent if no board message comes before: the last one + stale_after_ms
        (None before the first)."""
        last = self.last_board_at
        return None if last is None else last + self._config().strategy.stale_after_ms * NS_PER_MS

    def _arm_stale_watch(self) -> None:
        """A timer at the instant the feed counts as silent (the last board message + stale_after_ms). Every
        message moves that instant on, so the armed watch is not moved with it: when it fires before the
        instant it re-arms itself, with no decision; a shorter stale_after_ms (live config) re-arms it at
        once. It needs no sub-millisecond precision, so it does not wake early."""
        at = self._silent_at()
        if at is None or self._store.stale:
            return
        armed = self._stale_at
        if self._stale_timer is not None and armed is not None and armed <= at:
            return
        if self._stale_timer is not None:
            self._stale_timer.cancel()
        loop = asyncio.get_running_loop()
        self._stale_at = at
        self._stale_timer = loop.call_at(
            loop.time() + max(0.0, (at - self._clock()) / 1e9), self._on_stale_watch
        )

    def _on_stale_watch(self) -> None:
        self._stale_timer = None
        self._stale_at = None
        now = self._clock()
        silent_at = self._silent_at()
        if silent_at is not None and now < silent_at:
            self._arm_stale_watch()  # messages came meanwhile: watch from the latest one
            return
        self.decide(now, None)  # silent: the guard blocks entries and the strategy pulls the stall orders

    def flush_decisions(self) -> None:
        """Write the open run of repeated decisions (at shutdown, before the logs close)."""
        self._runs.flush()

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None
