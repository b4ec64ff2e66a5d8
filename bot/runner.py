"""BotRunner: builds the bot's rooms, connects them to the venue, and runs its life on the event loop it is
started on (uvicorn's, or the CLI's). It owns no trading fact itself; each room owns its own:

  frames ──→ FeedDispatch ─┬→ BoardStore → DecisionLoop → strategy → executor (HTTP in a task)
                           └→ OrderTracker → FillPath → InventoryManager, trades CSV, state file
  REST   ──→ VenueSync (reconciliation: the venue's reports through the Reconciler)
         ──→ AccountWatch (keep rate, margin call; holding costs → FillPath → InventoryManager)
  control ─→ RunStateMachine (transitions, the kill latch, the state file);  view → DashboardView

All on one asyncio loop, no threads. The strategy says when it next needs to be woken; the decision loop arms
one timer for it. No polling loop stands in for the deadlines.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from bot.account_watch import AccountWatch
from bot.activity import ActivityWatch
from bot.alerts import Alerts
from bot.config.loader import AppConfig
from bot.dashboard_view import DashboardHistory, DashboardView
from bot.decision_loop import DecisionLoop
from bot.engine.executor import OrderExecutor
from bot.engine.inventory import InventoryManager
from bot.engine.markouts import Markouts
from bot.engine.orders import OrderTracker
from bot.engine.rate_budget import RateBudget, RateHearing
from bot.engine.strategy_stall import StallThenStrikeStrategy
from bot.feed_dispatch import FeedDispatch
from bot.fill_path import STRATEGY_NAME, FillPath
from bot.infra.board_store import BoardStore
from bot.infra.daily_summary import DailySummaryFile
from bot.infra.http_bitflyer import BitflyerHttp
from bot.infra.logging_structured import AuditLogger, DecisionLogger, OrderLogger, TradeLogger
from bot.infra.notify import Notifier
from bot.infra.orderbook_view import OrderBookView
from bot.infra.pyb_session import PyBotterSession
from bot.infra.state_file import StateFile
from bot.infra.storage_health import StorageEvent, StorageHealth
from bot.infra.tape_recorder import TapeRecorder
from bot.links import RunnerMetrics, VenueLinks
from bot.live_config import LiveConfig
from bot.preflight import PreflightInputs, run_preflight
from bot.run_state import PreflightRefused, RunStateMachine, TransitionRefused
from bot.settle import SettleGoal, SettleStatus, SettleSupervisor
from bot.settle_report import SettleReporter
from bot.types.dto import Gate, InventoryState, RunState
from bot.types.preflight import ADOPTABLE_CHECK, PreflightReport
from bot.types.snapshot import BotSnapshot, RunStatus
from bot.types.tasks import BackgroundTasks
from bot.venue_sync import VenueSync

__all__ = [
    "BotRunner",
    "Endpoints",
    "PreflightBusy",
    "PreflightRefused",
    "RunnerMetrics",
    "TransitionRefused",
    "account_id",
]

# modes whose first start of a process waits for a passing preflight (sim starts as it always did)
PREFLIGHT_MODES = ("live", "paper")
PREFLIGHT_CALLS = 10  # REST requests one preflight spends at most (it reads the venue side by side)


class PreflightBusy(Exception):
    """The preflight would spend the REST requests kept for cancels, closes and a kill (HTTP 503)."""


HOUSEKEEPING_S = 2.0
LOOP_LAG_PERIOD_S = 0.25


@dataclass(frozen=True)
class Endpoints:
    rest_base_url: str
    public_ws_url: str
    private_ws_url: str | None
    api_key: str | None
    api_secret: str | None


def account_id(api_key: str | None) -> str:
    """A short, non-reversible name for the account an API key trades (never the key itself)."""
    if not api_key:
        return "public"
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class BotRunner:
    def __init__(
        self,
        cfg: AppConfig,
        *,
        endpoints: Endpoints,
        log_dir: Path,
        state_file: Path,
        notify_urls: Sequence[str] = (),
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.mode = cfg.env
        self.log_dir = log_dir
        self.endpoints = endpoints
        self._clock = clock
        product, tick = cfg.exchange.product_code, cfg.exchange.tick_size
        self.metrics = RunnerMetrics()
        self.links = VenueLinks()
        self._tasks = BackgroundTasks("runner")
        self.gate = Gate()  # the decision loop writes it; the strategy reads it
        # the one owner of "can the bot write its files": the state file and the CSV logs report into it
        self.storage = StorageHealth(tz=ZoneInfo(cfg.risk.trading_day_tz))
        self.run_state = RunStateMachine(
            cfg,
            account=account_id(endpoints.api_key),  # the state file is only restored into the same one
            state_file=StateFile(state_file, self.storage),
            gate=self.gate,
            links=self.links,
            tasks=self._tasks,
            clock=clock,
        )
        self.inventory = self.run_state.restore() or InventoryManager(cfg.risk, tick_size=tick)
        self.run_state.inventory = self.inventory
        self.audit_log = AuditLogger(log_dir, tz=cfg.risk.trading_day_tz, health=self.storage)
        self.live = LiveConfig(cfg, run_state=self.run_state, audit_log=self.audit_log)
        cfg = self.live.reapply_saved()
        self.inventory.update_risk(cfg.risk)
        self.daily = DailySummaryFile(log_dir)
        self.run_state.daily = self.daily
        self.store = BoardStore(product)
        self.tracker = OrderTracker()
        self.view = OrderBookView(self.store, product, tick, self.tracker)
        self.strategy = StallThenStrikeStrategy(
            cfg.strategy,
            tick,
            self.inventory,
            orders=self.tracker,
            risk=cfg.risk,
            min_size=cfg.exchange.min_size,
            gate=self.gate,
        )
        tz = cfg.risk.trading_day_tz
        self.trade_log = TradeLogger(log_dir, STRATEGY_NAME, tz=tz, health=self.storage)
        self.order_log = OrderLogger(log_dir, tz=tz, health=self.storage)
        self.decision_log = DecisionLogger(log_dir, STRATEGY_NAME, tz=tz, health=self.storage)
        self.order_budget = RateBudget(cfg.runner.order_rate_per_min, 60.0)
        # every REST call we make (public ones share bitFlyer's per-IP limit, private ones the per-key limit)
        self.rest_budget = RateBudget(cfg.runner.private_rate_per_5min, 300.0)
        self.history = DashboardHistory()
        self.settle_report = SettleReporter(
            tracker=self.tracker, inventory=self.inventory, tz=lambda: self.config.risk.trading_day_tz
        )
        self.alerts = Alerts(
            Notifier(notify_urls, min_interval_s=cfg.notify.min_interval_s),
            down_after_s=lambda: self.config.notify.down_after_s,
        )
        self.run_state.on_settle = self._settle_began
        self.markouts = Markouts()
        self.fills = FillPath(
            inventory=self.inventory,
            trade_log=self.trade_log,
            history=self.history,
            run_state=self.run_state,
            links=self.links,
            metrics=self.metrics,
            settle_report=self.settle_report,
            markouts=self.markouts,
        )
        self.sync = VenueSync(
            product_code=product,
            links=self.links,
            tracker=self.tracker,
            inventory=self.inventory,
            rest_budget=self.rest_budget,
            metrics=self.metrics,
            tasks=self._tasks,
            clock=clock,
            apply_fill=self.fills.apply,
            on_correction=self.fills.record_correction,
        )
        self.account = AccountWatch(
            config=lambda: self.config,
            links=self.links,
            inventory=self.inventory,
            rest_budget=self.rest_budget,
            run_state=self.run_state,
            clock=clock,
            on_cost=self.fills.record_holding_cost,
        )
        self.decisions = DecisionLoop(
            config=lambda: self.config,
            clock=clock,
            store=self.store,
            view=self.view,
            strategy=self.strategy,
            gate=self.gate,
            inventory=self.inventory,
            run_state=self.run_state,
            sync=self.sync,
            account=self.account,
            links=self.links,
            order_budget=self.order_budget,
            rest_budget=self.rest_budget,
            metrics=self.metrics,
            decision_log=self.decision_log,
            history=self.history,
            storage=self.storage,
            markouts=self.markouts,
        )
        self.decisions.on_error = self.alerts.loop_error
        self.sync.after = self.decisions.kick
        self.account.after = self.decisions.kick
        self.run_state.account_alert = self.account.alert
        self.run_state.kick = self.decisions.kick
        self.run_state.on_reset = self._forget_kill
        self.recorder = (
            None
            if cfg.record.dir is None
            else TapeRecorder(
                cfg.record.dir,
                mode=cfg.env,
                product_code=product,
                own_orders_marked=cfg.env != "paper",  # paper: our orders never reach bitFlyer's book
                retention_hours=cfg.record.retention_hours,
            )
        )
        self.feed = FeedDispatch(
            product_code=product,
            clock=clock,
            store=self.store,
            tracker=self.tracker,
            fills=self.fills,
            decisions=self.decisions,
            sync=self.sync,
            order_log=self.order_log,
            metrics=self.metrics,
            tasks=self._tasks,
            recorder=self.recorder,
            mark_own=cfg.env != "paper",
        )
        self.activity = ActivityWatch(
            config=lambda: self.config,
            clock=clock,
            run_state=self.run_state,
            gate=self.gate,
            decisions=self.decisions,
            tracker=self.tracker,
            sync=self.sync,
            account=self.account,
            links=self.links,
            order_budget=self.order_budget,
            rest_budget=self.rest_budget,
            storage=self.storage,
        )
        self.dashboard = DashboardView(
            status=self.status,
            budgets=self.activity.budgets,
            history=self.history,
            config=lambda: self.config,
            clock=clock,
            store=self.store,
            view=self.view,
            tracker=self.tracker,
            inventory=self.inventory,
            run_state=self.run_state,
            sync=self.sync,
            account=self.account,
            links=self.links,
            order_budget=self.order_budget,
            rest_budget=self.rest_budget,
            metrics=self.metrics,
            block_reason=self.decisions.block_reason,
            last_board_at=lambda: self.decisions.last_board_at,
            storage=self.storage,
            csv_logs=(self.trade_log, self.order_log, self.decision_log),
        )
        self.live.on_change = self._config_changed
        self._started = False
        self._preflight_passed = False  # once per process: the first start of a live/paper session
        self._fills_at_day_start = 0
        # the ledger at the last housekeeping look (at start: as restored, so a restart into a new day reports
        # the day it closed)
        self._day_seen: InventoryState | None = self.inventory.state()

    # ---------------------------------------------------------------- what the server reads
    @property
    def config(self) -> AppConfig:
        """The running config (the files' values with the live changes applied)."""
        return self.live.current

    @property
    def file_config(self) -> AppConfig:
        return self.live.file

    @property
    def state(self) -> RunState:
        return self.run_state.state

    @property
    def http(self) -> BitflyerHttp | None:
        return self.links.http

    @property
    def executor(self) -> OrderExecutor | None:
        return self.links.executor

    def status(self) -> RunStatus:
        return self.run_state.status(self.activity.now(), self.settle_report.report())

    def snapshot(self) -> BotSnapshot:
        return self.dashboard.snapshot()

    def settle_status(self) -> SettleStatus | None:
        return None if self.links.settler is None else self.links.settler.status()

    # ---------------------------------------------------------------- control (SPEC §7)
    async def start(self, who: str = "api", adopt: bool = False) -> bool:
        """STOPPED → RUNNING. The first start of a live or paper process runs the preflight first (outside the
        run-state lock, so a kill is never kept waiting behind it) and is refused unless it is ready; a
        position or open orders already on the account are adopted only with `adopt` (a human confirmed)."""
        if self.mode in PREFLIGHT_MODES and not self._preflight_passed and self.state is RunState.STOPPED:
            try:
                report = await self.preflight()
            except PreflightBusy as e:
                raise TransitionRefused(f"preflight not run: {e}") from None
            refusal = report.start_refusal(adopt)
            if refusal is not None:
                raise PreflightRefused(refusal, adoptable=report.start_refusal(adopt=True) is None)
            found = report.check(ADOPTABLE_CHECK)
            if found is not None and not found.ok:
                logger.warning(
                    "start by {}: adopting what is on the account, as confirmed: {}", who, found.detail
                )
            self._preflight_passed = True
        return await self.run_state.start(who)

    async def preflight(self) -> PreflightReport:
        """The checks of `python -m bot preflight`, over this runner's own REST client (its calls count
        against the rate budget like any other)."""
        http = self.links.http
        if http is None:
            raise RuntimeError("the runner is not open")
        now = self._clock()
        reserve = self.decisions.rest_reserve
        if self.rest_budget.available(now) < reserve + PREFLIGHT_CALLS:
            # the reserve is a kill's and a stop's: a script polling the preflight must never spend it
            wait = (self.rest_budget.available_at(now, reserve + PREFLIGHT_CALLS) - now) / 1e9
            raise PreflightBusy(f"the REST budget is at its reserve; try again in {wait:.0f} s")
        ep = self.endpoints
        inputs = PreflightInputs(
            mode=self.mode,
            account=self.run_state.account,
            keys_present=bool(ep.api_key and ep.api_secret),
            keys_source="BITFLYER_API_KEY / BITFLYER_API_SECRET from the environment or .env"
            if self.mode == "live"
            else f"the {self.mode} venue's test keys",
            product_code=self.config.exchange.product_code,
            log_dir=self.log_dir,
            state_file=self.run_state.store.path,
            thresholds=self.config.preflight,
            min_keep_rate=self.config.risk.min_keep_rate,
        )
        return await run_preflight(http, inputs)

    async def pause(self, who: str = "api") -> bool:
        return await self.run_state.pause(who)

    async def resume(self, who: str = "api") -> bool:
        return await self.run_state.resume(who)

    async def stop(self, who: str = "api") -> bool:
        return await self.run_state.stop(who)

    async def kill(self, who: str = "api") -> bool:
        return await self.run_state.kill(who)

    async def reset(self, who: str = "api") -> bool:
        return await self.run_state.reset(who)

    def _forget_kill(self) -> None:
        """A human's reset: the strategy's kill latch and every exchange backoff (the long ones too) go."""
        self.strategy.reset_kill()
        if self.links.executor is not None:
            self.links.executor.reset_backoff()

    async def patch_config(self, patch: dict[str, Any], who: str = "api") -> AppConfig:
        return await self.live.patch(patch, who)  # raises ConfigError; nothing changed

    async def revert_config(self, who: str = "api") -> AppConfig:
        return await self.live.revert(who)

    def _config_changed(self, new: AppConfig) -> None:
        self.strategy.update_config(new.strategy, new.risk)
        self.inventory.update_risk(new.risk)
        self.decisions.kick()

    # ---------------------------------------------------------------- life cycle
    async def open(self) -> None:
        """Connect, reconcile, arm the loop. Returns when the feed is subscribed (or raises)."""
        cfg, ep, links = self.config, self.endpoints, self.links
        loop = asyncio.get_running_loop()

        def storage_changed(
            event: StorageEvent,
        ) -> None:  # from a writer thread: the notifier lives on the loop
            try:
                loop.call_soon_threadsafe(self.alerts.storage_changed, event)
            except RuntimeError:  # the loop is closed (a last write at exit): the log line has said it
                pass

        self.storage.subscribe(storage_changed)
        links.session = PyBotterSession(
            rest_base_url=ep.rest_base_url,
            public_ws_url=ep.public_ws_url,
            private_ws_url=ep.private_ws_url,
            channels=list(cfg.ws.channels),
            api_label=cfg.pybotters.api_label,
            api_key=ep.api_key,
            api_secret=ep.api_secret,
            timeout_sec=cfg.pybotters.timeout_sec,
            on_json=self.feed.on_json,
            on_connect=self.feed.on_connect,
            on_disconnect=self.feed.on_disconnect,
        )
        await links.session.__aenter__()
        exchange = cfg.exchange.model_copy(update={"base_url": ep.rest_base_url})
        http = BitflyerHttp(links.session.get_client(), exchange, timeout_s=cfg.pybotters.timeout_sec)
        http.rate_listener = RateHearing(self.order_budget, self.rest_budget, self._clock)
        links.http = http
        links.executor = OrderExecutor(
            http, cfg.exchange, self.order_log, self.tracker, budget=self.order_budget
        )
        self.metrics.executor = links.executor
        links.settler = SettleSupervisor(
            http=http,
            executor=links.executor,
            tracker=self.tracker,
            product_code=cfg.exchange.product_code,
            min_size=cfg.exchange.min_size,
            clock=self._clock,
            rest_available=self.rest_budget.available,
            on_confirmed=self._after_settled,
        )
        self._started = True
        logger.info(
            "runner: {} mode, state {}, REST {}, WS {}",
            self.mode,
            self.state.value,
            ep.rest_base_url,
            ep.public_ws_url,
        )
        await links.session.connect_ws(wait_up_s=30.0)
        if self.state is RunState.KILLED:  # a kill outlives the process: flatten again, whatever happened
            self.settle_report.begin(SettleGoal.FLAT, "the latch, after a restart")
            links.settler.hold(SettleGoal.FLAT)
        self._tasks.spawn(self._housekeeping(), "housekeeping")
        self._tasks.spawn(self._loop_lag_monitor(), "loop-lag")
        self.run_state.save_soon()

    def _settle_began(self, goal: SettleGoal, who: str) -> None:
        self.settle_report.begin(goal, who)
        self.alerts.settle_began(goal, who, self.run_state.reason)

    async def _after_settled(self, goal: SettleGoal) -> None:
        await self.sync.reconcile(f"after {goal}", block=False)
        report = self.settle_report.on_confirmed(goal)
        if report is not None:
            logger.warning("{}", report.text)
            self.alerts.settle_confirmed(report, self.inventory.position_btc)

    async def close(self) -> None:
        """Shutdown: stop rules (cancel our orders, keep the position), flush logs, close sockets."""
        links = self.links
        if links.closing:
            return
        if self._started and links.settler is not None and self.state in (RunState.RUNNING, RunState.PAUSED):
            links.settler.hold(SettleGoal.NO_ORDERS)
            if not await links.settler.wait_confirmed(15):
                logger.error(
                    "shutdown: could not confirm our orders cancelled ({})", links.settler.status().describe()
                )
        links.closing = True
        if links.settler is not None:
            await links.settler.aclose()
        self.decisions.cancel_timer()
        self.decisions.flush_decisions()
        if links.executor:
            try:
                async with asyncio.timeout(5):
                    await links.executor.drain()
            except Exception:
                pass
        await self._tasks.cancel()
        if not self.run_state.save_now():
            latch = " — the kill latch is NOT on disk" if self.state is RunState.KILLED else ""
            logger.error("shutdown: the last state could not be saved ({}){}", self.storage.message(), latch)
        if links.session:
            await links.session.close()
        for lg in (self.decision_log, self.order_log, self.trade_log, self.audit_log):
            await lg.aclose()
        await self.alerts.notifier.aclose()
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)  # the last second of tape, off the loop
            logger.info("tape: {} frames recorded, {} dropped", self.recorder.frames, self.recorder.dropped)
        logger.info("runner closed in state {}", self.state.value)

    async def _housekeeping(self) -> None:
        last_reconcile = last_board_state = last_account = float("-inf")
        while True:
            t = time.monotonic()
            if t - last_board_state >= self.config.runner.board_state_poll_sec:
                last_board_state = t
                await self.sync.poll_board_state()
            self._roll_day()
            if t - last_account >= self.config.runner.account_poll_sec:  # after the roll: a cost of the new
                last_account = t  # day must not be the one that rolls it (the day's summary would be lost)
                await self.account.poll()
            self.inventory.mark(self.view.snapshot(self._clock()).mid_price)
            self.tracker.prune()
            if t - last_reconcile >= self.config.runner.reconcile_interval_sec:
                if last_reconcile != float("-inf"):  # the first one ran at connect
                    await self.sync.reconcile("periodic", block=False)
                last_reconcile = t
            self.run_state.save_soon()  # also the retry while the disk refuses it (the kill latch included)
            self.decisions.decide(self._clock(), None)
            block = self.gate.block_reason
            self.alerts.watch(
                t,
                feed_up=self.links.feed_up,
                block=block,
                block_detail=self.activity.now().detail if block is not None else "",
                margin_alert=self.account.alert(),
            )
            runner = self.config.runner
            await asyncio.sleep(min(HOUSEKEEPING_S, runner.board_state_poll_sec, runner.account_poll_sec))

    def _roll_day(self) -> None:
        """Report a closed trading day. The ledger may have rolled already (a fill or a cost dated after
        midnight rolls it as it lands), so the closing day's figures are the ones seen at the last look,
        at most one housekeeping period old."""
        self.inventory.roll_day(datetime.now(UTC))
        now = self.inventory.state()
        before, self._day_seen = self._day_seen, now
        if before is not None and before.trading_day and now.trading_day != before.trading_day:
            # the CSVs hold no drawdown: the closing day's goes to its summary file
            self._tasks.spawn(
                self.daily.record_day(before.trading_day, before.max_drawdown_jpy), "daily-summary"
            )
            self.alerts.day_rolled(
                before.trading_day,
                before.realized_today_jpy,
                before.pnl_today_jpy,
                before.max_drawdown_jpy,
                self.metrics.fills - self._fills_at_day_start,
            )
            self._fills_at_day_start = self.metrics.fills

    async def _loop_lag_monitor(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LOOP_LAG_PERIOD_S)
            lag = max(0.0, (loop.time() - t0 - LOOP_LAG_PERIOD_S) * 1000)
            self.metrics.loop_lag_ms = lag
            self.metrics.loop_lag_max_ms = max(self.metrics.loop_lag_max_ms, lag)
