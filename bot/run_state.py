"""RunStateMachine: the run state (RUNNING / PAUSED / STOPPED / KILLED), who set it and why, the transitions a
human or the kill switch may make, and the state file that carries it — with the ledger — across restarts.

A kill is a latch: written to disk before anything else can go wrong, restored as KILLED (and flattened again)
after a restart, cleared only by a human's reset. A state file of another mode or account is never restored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from bot.config.loader import AppConfig
from bot.engine.inventory import InventoryManager
from bot.infra.daily_summary import DailySummaryFile
from bot.infra.state_file import StateFile
from bot.links import VenueLinks
from bot.settle import SettleGoal
from bot.types.dto import Gate, RunState
from bot.types.snapshot import Activity, RunStatus, SettleReport, SettleView
from bot.types.tasks import BackgroundTasks

# a stop/kill call answers after the first confirmation, or this long (the goal stays held)
SETTLE_WAIT_S = 20.0


class TransitionRefused(Exception):
    """An impossible transition (e.g. start while KILLED); the message says why (HTTP 409)."""


class PreflightRefused(TransitionRefused):
    """A first live/paper start the preflight does not allow; `adoptable`: only a position or open orders
    already on the account stand in the way, and a human's confirmation (start with adopt) lets it go."""

    def __init__(self, message: str, *, adoptable: bool) -> None:
        super().__init__(message)
        self.adoptable = adoptable


class RunStateMachine:
    def __init__(
        self,
        cfg: AppConfig,
        *,
        account: str,
        state_file: StateFile,
        gate: Gate,
        links: VenueLinks,
        tasks: BackgroundTasks,
        clock: Callable[[], int],
    ) -> None:
        self.mode = cfg.env
        self.account = account
        self.store = state_file
        self._cfg = cfg
        self._gate = gate
        self._links = links
        self._tasks = tasks
        self._clock = clock
        self._lock = asyncio.Lock()
        self.state = RunState.STOPPED
        self.reason = "initial"
        self.since = datetime.now(UTC)
        self.inventory: InventoryManager | None = None  # the ledger saved with the state (set after restore)
        self.kick: Callable[[], None] = lambda: None  # decide now (a transition changes what is allowed)
        self.on_reset: Callable[[], None] = lambda: None  # a human cleared the kill: forget its latches
        self.on_settle: Callable[[SettleGoal, str], None] = lambda goal, who: None  # a stop or kill begins
        # what the account watch says is wrong (a margin block or call), shown beside the activity
        self.account_alert: Callable[[], str | None] = lambda: None
        self.daily: DailySummaryFile | None = None  # each kill is written to the day's summary file
        # the hot config sections' changes from the config file (a merge patch), saved with the latch
        self.live_patch: dict[str, Any] = {}
        self.saved_live_patch: dict[str, Any] | None = None  # what restore() found (the runner re-applies it)

    # ---------------------------------------------------------------- persistence
    def restore(self) -> InventoryManager | None:
        """Read the state file: sets the state; returns the saved ledger (None: start with an empty one)."""
        saved = self.store.load()
        start = RunState.RUNNING if self._cfg.runner.start_state == "running" else RunState.STOPPED
        if self.mode == "live":
            start = RunState.STOPPED  # a human presses start
        self.state, self.reason = start, f"start ({self.mode})"
        if saved is None:
            return None
        if saved.get("corrupt"):
            self.state, self.reason = RunState.STOPPED, "state file unreadable: check it, then start"
            return None
        owner = (saved.get("mode"), saved.get("account"))
        if owner != (self.mode, self.account):
            # a sim kill latch or sim PnL must never reach a live start (a latched KILLED flattens at boot)
            logger.warning(
                "state file {} belongs to mode {} account {}, not {} {}: not restored",
                self.store.path,
                owner[0],
                owner[1],
                self.mode,
                self.account,
            )
            self.reason = f"start ({self.mode}); a state file of another mode/account was ignored"
            return None
        inventory = None
        patch = saved.get("live_config")
        self.saved_live_patch = patch if isinstance(patch, dict) and patch else None
        if saved.get("inventory"):
            cfg = self._cfg
            try:
                inventory = InventoryManager.from_dict(
                    saved["inventory"], cfg.risk, tick_size=cfg.exchange.tick_size
                )
                wall = saved.get("opened_at_wall_ns")
                if isinstance(wall, int) and inventory.opened_at is not None:
                    inventory.restore_opened_at(self._clock() - max(0, time.time_ns() - wall))
            except Exception as e:  # a bad file must not start a bot that forgot its losses
                logger.error("state file inventory unreadable ({}); starting STOPPED", e)
                self.state, self.reason = RunState.STOPPED, "state file inventory unreadable"
                return None
        if saved.get("state") == RunState.KILLED.value:
            self.state = RunState.KILLED
            self.reason = f"still KILLED after restart: {saved.get('reason', '')}"
        else:
            self.reason = f"restart ({self.mode})"
        self._gate.run_state = self.state
        return inventory

    def persisted(self) -> dict[str, Any]:
        inv = self.inventory
        return {
            "mode": self.mode,
            "account": self.account,
            "state": self.state.value,
            "reason": self.reason,
            "since": self.since.isoformat(),
            "saved_at": datetime.now(UTC).isoformat(),
            "inventory": None if inv is None else inv.to_dict(),
            # the hold timer's start on the wall clock: monotonic time means nothing after a reboot
            "opened_at_wall_ns": self._opened_at_wall_ns(),
            "live_config": self.live_patch,
        }

    def _opened_at_wall_ns(self) -> int | None:
        opened = None if self.inventory is None else self.inventory.opened_at
        if opened is None:
            return None
        return time.time_ns() - (self._clock() - opened)

    def save_soon(self) -> None:
        self._tasks.spawn(self.store.save(self.persisted()), "save-state")

    def save_after(self, first: Callable[[], Awaitable[object]]) -> None:
        """Save once `first` (the trades CSV's flush) is done: a process killed in between then loses both
        (and the restart applies the execution again from REST), never the row alone."""
        save = self.store.save(self.persisted())  # ordered now, at the fill

        async def run() -> None:
            try:
                await first()
            finally:
                await save

        self._tasks.spawn(run(), "save-state")

    def save_now(self) -> bool:
        """Write now; False if the disk refused it (the storage health says why and entries stop)."""
        return self.store.save_sync(self.persisted())

    # ---------------------------------------------------------------- transitions (SPEC §7)
    def set(self, new: RunState, reason: str, who: str) -> None:
        old = self.state
        self.state = new
        self.reason = reason
        self.since = datetime.now(UTC)
        self._gate.run_state = new
        logger.warning("state {} → {} by {}: {}", old.value, new.value, who, reason)
        self.save_soon()

    def enter_killed(self, reason: str, who: str) -> None:
        self.set(RunState.KILLED, reason, who)
        # the latch must hit the disk before anything else can go wrong; if the disk refuses, the bot is
        # KILLED in memory all the same (the flatten goes on) and every later save writes the latch
        if not self.save_now():
            logger.error(
                "kill latch kept in memory only: the state file is not writable; retried until it is"
            )
        if self._links.settler is not None:
            self._links.settler.hold(SettleGoal.FLAT)
        self._settle_began(SettleGoal.FLAT, who)  # after the latch and the goal: never in their way
        inv = self.inventory
        if self.daily is not None and inv is not None:  # the CSVs hold no kill: the day's summary does
            day = inv.trading_day or inv.trading_day_of(self.since)
            self._tasks.spawn(
                self.daily.record_kill(day, inv.max_drawdown_jpy, self.since, reason, who), "daily-summary"
            )

    def _settle_began(self, goal: SettleGoal, who: str) -> None:
        """Tell the report and the phone; the goal is already held (the hold's task has not run yet, so the
        report still sees the orders open before it)."""
        try:
            self.on_settle(goal, who)
        except Exception as e:  # a report or a notification must never undo a kill
            logger.opt(exception=e).error("settle report for {} raised", goal)

    async def start(self, who: str = "api") -> bool:
        async with self._lock:
            if self.state is RunState.RUNNING:
                return False
            if self.state is RunState.KILLED:
                raise TransitionRefused("KILLED: reset (a human decision) before starting again")
            if self.state is RunState.PAUSED:
                raise TransitionRefused("PAUSED: use resume")
            if self._links.settler is not None:
                self._links.settler.release()  # a stop still confirming its cancels: entries own the orders
            self.set(RunState.RUNNING, "started", who)
        self.kick()
        return True

    async def pause(self, who: str = "api") -> bool:
        async with self._lock:
            if self.state is RunState.PAUSED:
                return False
            if self.state is not RunState.RUNNING:
                raise TransitionRefused(f"{self.state.value}: only a RUNNING bot can be paused")
            self.set(RunState.PAUSED, "paused: no new entries, stall orders cancelled", who)
        self.kick()  # the strategy cancels live stall orders on the PAUSED gate
        return True

    async def resume(self, who: str = "api") -> bool:
        async with self._lock:
            if self.state is RunState.RUNNING:
                return False
            if self.state is not RunState.PAUSED:
                raise TransitionRefused(f"{self.state.value}: only a PAUSED bot can be resumed")
            self.set(RunState.RUNNING, "resumed", who)
        self.kick()
        return True

    async def stop(self, who: str = "api") -> bool:
        settler = self._links.settler
        async with self._lock:
            if self.state is RunState.STOPPED:
                return False
            if self.state is RunState.KILLED:
                raise TransitionRefused("KILLED: reset first (stop would not clear the kill latch)")
            self.set(RunState.STOPPED, "stopped: orders cancelled, position kept", who)
            if settler is not None:
                settler.hold(SettleGoal.NO_ORDERS)
            self._settle_began(SettleGoal.NO_ORDERS, who)
        if settler is not None:
            await settler.wait_confirmed(SETTLE_WAIT_S)
        return True

    async def kill(self, who: str = "api") -> bool:
        settler = self._links.settler
        async with self._lock:
            changed = self.state is not RunState.KILLED
            if changed:
                self.enter_killed(f"killed by {who}", who)
            elif settler is not None:
                settler.poke()  # a repeated kill looks again at once
        # the goal is held until flat, however long that takes; the caller waits for the first confirmation
        if settler is not None:
            await settler.wait_confirmed(SETTLE_WAIT_S)
        return changed

    async def reset(self, who: str = "api") -> bool:
        async with self._lock:
            if self.state is RunState.STOPPED:
                return False
            if self.state is not RunState.KILLED:
                raise TransitionRefused(f"{self.state.value}: reset only clears a KILLED bot")
            self.on_reset()
            if self._links.settler is not None:
                self._links.settler.release()
            self.set(RunState.STOPPED, "kill latch cleared by a human", who)
        return True

    # ---------------------------------------------------------------- view
    def status(self, activity: Activity, report: SettleReport | None) -> RunStatus:
        settle = None if self._links.settler is None else self._links.settler.status()
        view = None
        if settle is not None and settle.goal is not None:
            view = SettleView(
                goal=settle.goal.value,
                working=settle.working,
                attempt=settle.attempt,
                last_error=settle.last_error,
                confirmed_at=settle.confirmed_at.isoformat() if settle.confirmed_at else None,
                cancel_requests=settle.cancelled,
                flatten_orders=list(settle.flatten_orders),
            )
        return RunStatus(
            state=self.state.value,
            reason=self.reason,
            since=self.since.isoformat(),
            mode=self.mode,
            activity=activity,
            alert=self.account_alert(),
            settle=view,
            report=report,
        )
