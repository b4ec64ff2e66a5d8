"""BotRunner: owns the bot's life on the event loop it is started on (uvicorn's, or the CLI's).

Flow (all on one asyncio loop, no threads):
  board message ─┐
  deadline timer ┴→ _decide(): OrderBookView.snapshot → strategy.on_board → executor.submit (HTTP in a task)
  child_order_events → OrderTracker → fills → InventoryManager → trade log / state file
A decision is a plain synchronous callback, so it is atomic with respect to config patches and control calls.
The strategy says when it next needs to be woken (`next_deadline`); the runner arms one `loop.call_at` timer
for min(that, the stale-feed deadline). No polling loop stands in for the deadlines.

REST reconciliation (SPEC §10) runs at start, after every reconnect (new orders blocked until it succeeds) and
periodically; a failed REST call leaves the state "unknown", never "no orders".
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from bot.config.loader import AppConfig, apply_live_patch
from bot.engine.executor import OrderExecutor
from bot.engine.inventory import FillResult, InventoryManager
from bot.engine.orders import UNTRACKED_TAG, OrderTracker, SuspectFill
from bot.engine.rate_budget import RateBudget, RateHearing
from bot.engine.reconcile import OrderStatusReport, Reconciler, VenueReports, exec_order_key
from bot.engine.strategy_stall import StallThenStrikeStrategy
from bot.infra.bitflyer_parse import (
    ParseError,
    parse_child_order_events,
    parse_getchildorders,
    parse_my_executions,
    parse_position_rows,
)
from bot.infra.board_store import BoardStore
from bot.infra.http_bitflyer import BitflyerHttp
from bot.infra.logging_structured import DecisionLogger, OrderLogger, TradeLogger
from bot.infra.orderbook_view import OrderBookView
from bot.infra.pyb_session import FeedLink, PyBotterSession
from bot.infra.state_file import StateFile
from bot.settle import SettleGoal, SettleStatus, SettleSupervisor
from bot.types.dto import (
    NS_PER_MS,
    Action,
    ActionKind,
    ChildOrderEventType,
    DecisionLogRow,
    DecisionMeta,
    Fill,
    Gate,
    OrderLogRow,
    OrderState,
    Reason,
    RunState,
    Side,
    TradeLogRow,
)
from bot.types.exchange import ExchangeError
from bot.types.tasks import BackgroundTasks

STRATEGY_NAME = "stall_then_strike"
HOUSEKEEPING_S = 2.0
RECONCILE_MAX_PAGES = 20  # getexecutions pages (100 each) read back to the ledger's watermark
# a stop/kill call answers after the first confirmation, or this long (the goal stays held)
SETTLE_WAIT_S = 20.0
RECONCILE_SOON_S = 0.25  # a burst of unverified executions is checked with one reconcile
# epoll sleeps in whole milliseconds, so a timer fires up to 1 ms late: wake this much early and yield to the
# loop until the deadline (at most ~1 ms of loop turns per deadline, I/O still served)
TIMER_EARLY_NS = 1_000_000
JST = ZoneInfo("Asia/Tokyo")


class TransitionRefused(Exception):
    """An impossible transition (e.g. start while KILLED); the message says why (HTTP 409)."""


@dataclass(frozen=True)
class Endpoints:
    rest_base_url: str
    public_ws_url: str
    private_ws_url: str | None
    api_key: str | None
    api_secret: str | None


@dataclass
class RunnerMetrics:
    board_messages: int = 0
    fills: int = 0
    decisions: int = 0
    reconciles: int = 0
    reconcile_failures: int = 0
    reconnects: int = 0
    other_product_events: int = 0  # child_order_events of other products on the account (ignored)
    position_corrections: int = 0  # venue positions adopted after replaying executions still disagreed
    unverified_fills: int = 0  # executions the feed cannot vouch for, held until REST confirms them
    decision_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=20_000))
    deadline_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))
    # stall deadline → strike handed to the HTTP client (the orders' request task is created)
    strike_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))
    loop_lag_ms: float = 0.0
    loop_lag_max_ms: float = 0.0  # the longest event-loop block seen since start
    executor: OrderExecutor | None = None

    @property
    def orders_sent(self) -> int:
        return self.executor.orders_sent if self.executor else 0

    @property
    def orders_cancelled(self) -> int:
        return self.executor.orders_cancelled if self.executor else 0

    @property
    def exchange_errors(self) -> dict[str, int]:
        return dict(self.executor.error_counts) if self.executor else {}


def account_id(api_key: str | None) -> str:
    """A short, non-reversible name for the account an API key trades (never the key itself)."""
    if not api_key:
        return "public"
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


class BotRunner:
    def __init__(
        self,
        cfg: AppConfig,
        *,
        endpoints: Endpoints,
        log_dir: Path,
        state_file: Path,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.config = cfg
        self.mode = cfg.env
        self.log_dir = log_dir
        self.endpoints = endpoints
        self._clock = clock
        tick = cfg.exchange.tick_size
        self.metrics = RunnerMetrics()
        self.store = BoardStore(cfg.exchange.product_code)
        self.tracker = OrderTracker()
        self.view = OrderBookView(self.store, cfg.exchange.product_code, tick, self.tracker)
        self.inventory = InventoryManager(cfg.risk, tick_size=tick)
        self.gate = Gate()  # the runner writes it; the strategy reads it
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
        self.trade_log = TradeLogger(log_dir, STRATEGY_NAME, tz=tz)
        self.order_log = OrderLogger(log_dir, tz=tz)
        self.decision_log = DecisionLogger(log_dir, STRATEGY_NAME, tz=tz)
        self.order_budget = RateBudget(cfg.runner.order_rate_per_min, 60.0)
        # every REST call we make (public ones share bitFlyer's per-IP limit, private ones the per-key limit)
        self.rest_budget = RateBudget(cfg.runner.private_rate_per_5min, 300.0)
        self.state_store = StateFile(state_file)
        # whose state this is: the state file is only ever restored into the same mode and API key
        self.account = account_id(endpoints.api_key)
        self.session: PyBotterSession | None = None
        self.http: BitflyerHttp | None = None
        self.executor: OrderExecutor | None = None
        self.settler: SettleSupervisor | None = None

        self.state = RunState.STOPPED
        self.state_reason = "initial"
        self.state_since = datetime.now(UTC)
        self._restore_state()

        self._timer: asyncio.Handle | None = None
        self._timer_at: int | None = None
        self._last_board_at: int | None = None
        self._reconcile_needed = True  # at start: no new orders before the first reconciliation
        self._reconcile_lock = asyncio.Lock()
        self._reconcile_retry: asyncio.Task | None = None  # one retry loop, however many reconnects ask
        self._reconcile_starved = False  # logged once per run of budget-skipped reconciles
        self._reconciled_at: datetime | None = None
        self._venue_position: Decimal | None = None
        self._feed_generation = 0  # disconnects so far: a reconcile begun before one is stale
        self.reconciler = Reconciler()
        self._reconcile_pending = False
        self._baselined = False  # the first reconcile of this process has run
        self._board_state = "UNKNOWN"
        self._exchange_health = "UNKNOWN"
        self._tasks = BackgroundTasks("runner")
        self._transition_lock = asyncio.Lock()
        self._closing = False
        self._started = False
        self.recent_decisions: deque[dict] = deque(maxlen=20)
        self.recent_fills: deque[dict] = deque(maxlen=20)
        self.chart_mid: deque[tuple[float, str]] = deque(maxlen=3600)
        self.chart_fills: deque[tuple[float, str, str]] = deque(maxlen=500)
        self.chart_pnl: deque[tuple[float, str]] = deque(maxlen=3600)
        self._last_chart_sample = 0.0
        self._last_decision: DecisionMeta | None = None

    # ---------------------------------------------------------------- state persistence
    def _restore_state(self) -> None:
        saved = self.state_store.load()
        start = RunState.RUNNING if self.config.runner.start_state == "running" else RunState.STOPPED
        if self.mode == "live":
            start = RunState.STOPPED  # a human presses start
        if saved is None:
            self.state = start
            self.state_reason = f"start ({self.mode})"
            return
        if saved.get("corrupt"):
            self.state, self.state_reason = RunState.STOPPED, "state file unreadable: check it, then start"
            return
        owner = (saved.get("mode"), saved.get("account"))
        if owner != (self.mode, self.account):
            # a sim kill latch or sim PnL must never reach a live start (a latched KILLED flattens at boot)
            logger.warning(
                "state file {} belongs to mode {} account {}, not {} {}: not restored",
                self.state_store.path,
                owner[0],
                owner[1],
                self.mode,
                self.account,
            )
            self.state = start
            self.state_reason = f"start ({self.mode}); a state file of another mode/account was ignored"
            return
        if saved.get("inventory"):
            try:
                self.inventory = InventoryManager.from_dict(
                    saved["inventory"], self.config.risk, tick_size=self.config.exchange.tick_size
                )
                wall = saved.get("opened_at_wall_ns")
                if isinstance(wall, int) and self.inventory.opened_at is not None:
                    self.inventory.restore_opened_at(self._clock() - max(0, time.time_ns() - wall))
                self.strategy.inventory = self.inventory
            except Exception as e:  # a bad file must not start a bot that forgot its losses
                logger.error("state file inventory unreadable ({}); starting STOPPED", e)
                self.state, self.state_reason = RunState.STOPPED, "state file inventory unreadable"
                return
        if saved.get("state") == RunState.KILLED.value:
            self.state = RunState.KILLED
            self.state_reason = f"still KILLED after restart: {saved.get('reason', '')}"
            self.gate.run_state = RunState.KILLED
        else:
            self.state = start
            self.state_reason = f"restart ({self.mode})"

    def _persisted(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "account": self.account,
            "state": self.state.value,
            "reason": self.state_reason,
            "since": self.state_since.isoformat(),
            "saved_at": datetime.now(UTC).isoformat(),
            "inventory": self.inventory.to_dict(),
            # the hold timer's start on the wall clock: monotonic time means nothing after a reboot
            "opened_at_wall_ns": self._opened_at_wall_ns(),
        }

    def _opened_at_wall_ns(self) -> int | None:
        opened = self.inventory.opened_at
        if opened is None:
            return None
        return time.time_ns() - (self._clock() - opened)

    def _save_state_soon(self) -> None:
        self._spawn(self.state_store.save(self._persisted()), "save-state")

    # ---------------------------------------------------------------- life cycle
    async def open(self) -> None:
        """Connect, reconcile, arm the loop. Returns when the feed is subscribed (or raises)."""
        cfg = self.config
        ep = self.endpoints
        self.session = PyBotterSession(
            rest_base_url=ep.rest_base_url,
            public_ws_url=ep.public_ws_url,
            private_ws_url=ep.private_ws_url,
            channels=list(cfg.ws.channels),
            api_label=cfg.pybotters.api_label,
            api_key=ep.api_key,
            api_secret=ep.api_secret,
            timeout_sec=cfg.pybotters.timeout_sec,
            on_json=self._on_json,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
        )
        await self.session.__aenter__()
        exchange = cfg.exchange.model_copy(update={"base_url": ep.rest_base_url})
        self.http = BitflyerHttp(self.session.get_client(), exchange, timeout_s=cfg.pybotters.timeout_sec)
        self.http.rate_listener = RateHearing(self.order_budget, self.rest_budget, self._clock)
        self.executor = OrderExecutor(
            self.http, cfg.exchange, self.order_log, self.tracker, budget=self.order_budget
        )
        self.metrics.executor = self.executor
        self.settler = SettleSupervisor(
            http=self.http,
            executor=self.executor,
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
        await self.session.connect_ws(wait_up_s=30.0)
        if self.state is RunState.KILLED:  # a kill outlives the process: flatten again, whatever happened
            self.settler.hold(SettleGoal.FLAT)
        self._spawn(self._housekeeping(), "housekeeping")
        self._spawn(self._loop_lag_monitor(), "loop-lag")
        self._save_state_soon()

    async def close(self) -> None:
        """Shutdown: stop rules (cancel our orders, keep the position), flush logs, close sockets."""
        if self._closing:
            return
        if self._started and self.settler is not None and self.state in (RunState.RUNNING, RunState.PAUSED):
            self.settler.hold(SettleGoal.NO_ORDERS)
            if not await self.settler.wait_confirmed(15):
                logger.error(
                    "shutdown: could not confirm our orders cancelled ({})", self.settler.status().describe()
                )
        self._closing = True
        if self.settler is not None:
            await self.settler.aclose()
        if self._timer:
            self._timer.cancel()
        if self.executor:
            try:
                async with asyncio.timeout(5):
                    await self.executor.drain()
            except Exception:
                pass
        await self._tasks.cancel()
        try:
            self.state_store.save_sync(self._persisted())
        except OSError as e:
            logger.error("could not save state: {}", e)
        if self.session:
            await self.session.close()
        for lg in (self.decision_log, self.order_log, self.trade_log):
            await lg.aclose()
        logger.info("runner closed in state {}", self.state.value)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        return self._tasks.spawn(coro, name)

    # ---------------------------------------------------------------- feed callbacks
    def _on_connect(self, link: FeedLink) -> None:
        if link.connects > 1:
            self.metrics.reconnects += 1
        self._reconcile_needed = True
        self._spawn(self._reconcile(f"{link.name} connect #{link.connects}"), "reconcile")

    def _on_disconnect(self, link: FeedLink) -> None:
        self._feed_generation += 1
        self.store.mark_disconnected()
        self._reconcile_needed = True
        self._decide(self._clock(), None)

    def _on_json(self, msg: dict) -> None:
        now = self._clock()
        try:
            params = msg["params"]
            channel = params["channel"]
        except (KeyError, TypeError):
            logger.warning("ws: skipped a malformed frame: {!r}", str(msg)[:200])
            return
        if not isinstance(channel, str):
            logger.warning("ws: skipped a frame whose channel is not a name: {!r}", str(msg)[:200])
            return
        if channel.startswith("lightning_board_"):
            self.store.onmessage(msg)
            self.metrics.board_messages += 1
            self._last_board_at = now
            self._decide(now, now)
        elif channel == "child_order_events":
            self._on_child_order_events(params.get("message"), now)

    def _on_child_order_events(self, message: Any, now: int) -> None:
        events = parse_child_order_events(message if isinstance(message, list) else [])
        wall = datetime.now(UTC)
        product = self.config.exchange.product_code
        for ev in events:
            if ev.product_code and ev.product_code != product:
                # the channel covers the whole account: another product's orders are not ours to count
                self.metrics.other_product_events += 1
                continue
            order = self.tracker.by_acceptance(ev.child_order_acceptance_id)
            fill = self.tracker.on_event(ev)
            if ev.event_type is not ChildOrderEventType.EXECUTION and order is not None:
                self.order_log.log(
                    OrderLogRow(
                        ts=wall,
                        action=ev.event_type.value.lower(),
                        order_id=ev.child_order_acceptance_id,
                        client_order_id=order.client_id,
                        side=order.side,
                        price=order.price,
                        size=ev.size or order.size,
                        tif="GTC",
                        ttl_ms=order.ttl_ms,
                        tag=order.tag,
                        reason=ev.reason or "",
                        status="event",
                    )
                )
            if isinstance(fill, SuspectFill):
                self._verify_fill(fill.fill, fill.why)
                continue
            if fill is not None:
                if order is None:
                    in_flight = [
                        o
                        for o in self.tracker.open_orders()
                        if o.acceptance_id is None and o.side is fill.side
                    ]
                    if not in_flight:
                        self._verify_fill(fill, "an order we did not send")
                        continue
                    # our own fill often beats the send's answer: it is the in-flight order's
                    tags = {o.tag for o in in_flight}
                    fill = replace(fill, tag=tags.pop() if len(tags) == 1 else fill.tag)
                self._apply_fill(fill, now)
        if events:
            self._decide(now, None)

    def _verify_fill(self, fill: Fill, why: str) -> None:
        """An execution the feed cannot vouch for (a hand trade, a forged or corrupt frame) is evidence, not a
        fill: REST's executions apply it if it is real, with its PnL."""
        self.metrics.unverified_fills += 1
        logger.warning(
            "execution {} ({}): {}; verifying over REST", fill.exec_id, fill.child_order_acceptance_id, why
        )
        self._reconcile_soon("an execution the feed cannot vouch for")

    def _reconcile_soon(self, why: str) -> None:
        """One reconcile shortly (coalesced: a burst of evidence costs one set of REST calls)."""
        if self._reconcile_pending or self.http is None:
            return
        self._reconcile_pending = True

        async def run() -> None:
            try:
                await asyncio.sleep(RECONCILE_SOON_S)
                await self._reconcile(why, block=False)
            finally:
                self._reconcile_pending = False

        self._spawn(run(), "reconcile-soon")

    def _apply_fill(self, fill: Fill, now: int) -> None:
        result = self.inventory.apply_fill(fill, now)
        if result.duplicate:
            return
        self.metrics.fills += 1
        inv = self.inventory
        self.trade_log.log(_trade_row(fill, result, inv.position_btc))
        wall = datetime.now(UTC)
        self.recent_fills.appendleft(
            {
                "ts": wall.isoformat(timespec="milliseconds"),
                "side": fill.side.value,
                "price": str(fill.price),
                "size": str(fill.size),
                "tag": fill.tag,
                "pnl_jpy": str(result.realized_pnl_jpy),
            }
        )
        self.chart_fills.append((wall.timestamp(), str(fill.price), fill.side.value))
        logger.info(
            "fill {} {} @ {} ({}) → position {} realized {}",
            fill.side.value,
            fill.size,
            fill.price,
            fill.tag,
            inv.position_btc,
            result.realized_cum_jpy,
        )
        if self.state is RunState.KILLED and self.settler is not None:
            self.settler.poke()  # a fill after the kill: flatten again
        self._save_state_after_trades()

    def _save_state_after_trades(self) -> None:
        """Save the state once the trades CSV has the fill's row: a process killed in between then loses both
        (and the restart applies the execution again from REST), never the row alone."""
        save = self.state_store.save(self._persisted())  # ordered now, at the fill

        async def run() -> None:
            try:
                await self.trade_log.aflush()
            finally:
                await save

        self._spawn(run(), "save-state")

    # ---------------------------------------------------------------- the decision
    def _block_reason(self, now: int) -> Reason | None:
        stale_ns = self.config.strategy.stale_after_ms * NS_PER_MS
        if self._last_board_at is not None and now - self._last_board_at >= stale_ns:
            self.store.mark_silent()  # no strike again until fresh data *and* a new snapshot (SPEC §10)
        if (
            self.session is None
            or not self.session.feed_up
            or self.store.stale
            or self._last_board_at is None
            or now - self._last_board_at >= stale_ns
        ):
            return Reason.STALE_DATA
        if self._reconcile_needed:
            return Reason.RECONCILING
        if self._market_closed(now):
            return Reason.MARKET_CLOSED
        if self.executor is not None and self.executor.in_backoff(now):
            return Reason.EXCHANGE_BACKOFF
        return None

    def _entry_budget(self, now: int) -> int:
        """Order sends the strategy may spend now: the order budget, but none once the REST budget is down to
        the reserve kept for cancels, closes, reconciliation and a kill."""
        reserve = self.rest_budget.limit // 4
        if self.rest_budget.available(now) <= reserve:
            return 0
        return self.order_budget.available(now)

    def _market_closed(self, now: int) -> bool:
        if self._board_state not in ("RUNNING", "UNKNOWN") or self._exchange_health in ("STOP", "NO ORDER"):
            return True
        if self.mode in ("live", "paper"):  # bitFlyer's daily maintenance, 04:00–04:10 JST
            t = datetime.now(JST).time()
            if (t.hour == 4 and t.minute < 10) or (t.hour == 3 and t.minute >= 59):
                return True
        return False

    def _decide(self, now: int, cause_ns: int | None) -> list[Action]:
        """One decision. `cause_ns` is when the triggering message arrived (for the latency histogram).
        Returns the actions handed to the executor."""
        if self._closing or self.executor is None:
            return []
        gate = self.gate
        gate.run_state = self.state
        gate.block_reason = self._block_reason(now)
        gate.order_budget = self._entry_budget(now)
        board = self.view.snapshot(now)
        try:
            actions, meta = self.strategy.on_board(board, now)
        except Exception:
            logger.exception("strategy raised; no action this time")
            actions, meta = [], None
        self.metrics.decisions += 1
        if meta is not None:
            self._record_decision(meta, board)
            if meta.reason is Reason.KILL_SWITCH and self.state in (RunState.RUNNING, RunState.PAUSED):
                detail = getattr(self.inventory, "kill_detail", "") or meta.detail
                self._enter_killed(f"kill switch: {detail}", "kill_switch")
        allowed = self.state in (RunState.RUNNING, RunState.PAUSED) or (
            meta is not None and meta.reason is Reason.KILL_SWITCH
        )
        if not allowed:
            actions = []
        elif self.state is RunState.PAUSED:  # PAUSED: protective exits and cancels only, never an entry
            actions = [a for a in actions if a.kind is not ActionKind.PLACE_LIMIT]
        if actions:
            self.executor.submit(actions, now)
        done = self._clock()
        if cause_ns is not None:
            self.metrics.decision_latency_ns.append(done - cause_ns)
        self._arm_timer(now)
        return actions

    def _record_decision(self, meta: DecisionMeta, board: Any) -> None:
        wall = datetime.now(UTC)
        actions = ";".join(_action_text(a) for a in meta.actions)
        self.decision_log.log(
            DecisionLogRow(
                ts=wall,
                best_age_ms=meta.best_age_ms,
                spread_ticks=meta.spread_ticks,
                inventory_btc=meta.inventory_btc,
                decision_type=meta.decision_type,
                entry_bid_px=meta.entry_bid_px,
                entry_ask_px=meta.entry_ask_px,
                actions=actions,
                reason=meta.reason.value,
                detail=meta.detail,
            )
        )
        last = self._last_decision
        if meta.actions or last is None or last.reason is not meta.reason:
            self.recent_decisions.appendleft(
                {
                    "ts": wall.isoformat(timespec="milliseconds"),
                    "reason": meta.reason.value,
                    "actions": actions,
                    "detail": meta.detail,
                }
            )
        self._last_decision = meta
        ts = wall.timestamp()
        if ts - self._last_chart_sample >= 1.0 and board.mid_price is not None:
            self._last_chart_sample = ts
            self.chart_mid.append((ts, str(board.mid_price)))
            self.chart_pnl.append((ts, str(self.inventory.state().pnl_today_jpy)))

    def _arm_timer(self, now: int) -> None:
        """One timer at the earliest instant a decision could change without new data."""
        deadlines = []
        nd = self.strategy.next_deadline(now)
        if nd is not None:
            deadlines.append(nd)
        if self._last_board_at is not None and not self.store.stale:
            stale_at = self._last_board_at + self.config.strategy.stale_after_ms * NS_PER_MS
            if stale_at > now:
                deadlines.append(stale_at)
        if self.executor is not None:
            # the end of an exchange backoff changes the block reason: decide then, not at the next message
            until = self.executor.backoff_until(now)
            if until is not None:
                deadlines.append(until)
        if not deadlines:
            return
        at = min(deadlines)
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
        self.metrics.deadline_latency_ns.append(max(0, now - due))
        submitted = self._decide(now, None)
        if any(a.kind is ActionKind.PLACE_LIMIT for a in submitted):
            self.metrics.strike_latency_ns.append(self._clock() - due)

    # ---------------------------------------------------------------- control (SPEC §7)
    def _set_state(self, new: RunState, reason: str, who: str) -> None:
        old = self.state
        self.state = new
        self.state_reason = reason
        self.state_since = datetime.now(UTC)
        self.gate.run_state = new
        logger.warning("state {} → {} by {}: {}", old.value, new.value, who, reason)
        self._save_state_soon()

    def _enter_killed(self, reason: str, who: str) -> None:
        self._set_state(RunState.KILLED, reason, who)
        try:  # the latch must hit the disk before anything else can go wrong
            self.state_store.save_sync(self._persisted())
        except OSError as e:
            logger.error("could not persist the kill latch: {}", e)
        if self.settler is not None:
            self.settler.hold(SettleGoal.FLAT)

    async def _after_settled(self, goal: SettleGoal) -> None:
        await self._reconcile(f"after {goal}", block=False)

    def settle_status(self) -> SettleStatus | None:
        return None if self.settler is None else self.settler.status()

    async def start(self, who: str = "api") -> bool:
        async with self._transition_lock:
            if self.state is RunState.RUNNING:
                return False
            if self.state is RunState.KILLED:
                raise TransitionRefused("KILLED: reset (a human decision) before starting again")
            if self.state is RunState.PAUSED:
                raise TransitionRefused("PAUSED: use resume")
            if self.settler is not None:
                self.settler.release()  # a stop still confirming its cancels: entries own the orders again
            self._set_state(RunState.RUNNING, "started", who)
        self._kick()
        return True

    async def pause(self, who: str = "api") -> bool:
        async with self._transition_lock:
            if self.state is RunState.PAUSED:
                return False
            if self.state is not RunState.RUNNING:
                raise TransitionRefused(f"{self.state.value}: only a RUNNING bot can be paused")
            self._set_state(RunState.PAUSED, "paused: no new entries, stall orders cancelled", who)
        self._kick()  # the strategy cancels live stall orders on the PAUSED gate
        return True

    async def resume(self, who: str = "api") -> bool:
        async with self._transition_lock:
            if self.state is RunState.RUNNING:
                return False
            if self.state is not RunState.PAUSED:
                raise TransitionRefused(f"{self.state.value}: only a PAUSED bot can be resumed")
            self._set_state(RunState.RUNNING, "resumed", who)
        self._kick()
        return True

    async def stop(self, who: str = "api") -> bool:
        async with self._transition_lock:
            if self.state is RunState.STOPPED:
                return False
            if self.state is RunState.KILLED:
                raise TransitionRefused("KILLED: reset first (stop would not clear the kill latch)")
            self._set_state(RunState.STOPPED, "stopped: orders cancelled, position kept", who)
            if self.settler is not None:
                self.settler.hold(SettleGoal.NO_ORDERS)
        if self.settler is not None:
            await self.settler.wait_confirmed(SETTLE_WAIT_S)
        return True

    async def kill(self, who: str = "api") -> bool:
        async with self._transition_lock:
            changed = self.state is not RunState.KILLED
            if changed:
                self._enter_killed(f"kill by {who}", who)
            elif self.settler is not None:
                self.settler.poke()  # a repeated kill looks again at once
        # the goal is held until flat, however long that takes; the caller waits for the first confirmation
        if self.settler is not None:
            await self.settler.wait_confirmed(SETTLE_WAIT_S)
        return changed

    async def reset(self, who: str = "api") -> bool:
        async with self._transition_lock:
            if self.state is RunState.STOPPED:
                return False
            if self.state is not RunState.KILLED:
                raise TransitionRefused(f"{self.state.value}: reset only clears a KILLED bot")
            self.strategy.reset_kill()
            if self.settler is not None:
                self.settler.release()
            if self.executor is not None:
                self.executor.reset_backoff()
            self._set_state(RunState.STOPPED, "kill latch cleared by a human", who)
        return True

    def _kick(self) -> None:
        if self.executor is not None:
            self._decide(self._clock(), None)

    # ---------------------------------------------------------------- config (hot)
    async def patch_config(self, patch: dict, who: str = "api") -> AppConfig:
        new = apply_live_patch(self.config, patch)  # raises ConfigError; nothing changed
        old = self.config
        for section in ("strategy", "risk"):
            a, b = getattr(old, section).model_dump(), getattr(new, section).model_dump()
            for k in a:
                if a[k] != b[k]:
                    logger.warning("config {}.{}: {} → {} by {}", section, k, a[k], b[k], who)
        self.config = new  # one assignment between decisions: atomic on this loop
        self.strategy.update_config(new.strategy, new.risk)
        self.inventory.update_risk(new.risk)
        self._kick()
        return new

    # ---------------------------------------------------------------- reconciliation (SPEC §10)
    async def _reconcile(self, why: str, *, block: bool = True) -> bool:
        """Take the venue's reports (executions → positions → executions, and the ACTIVE listing) and apply
        the reconciler's verdict. False (state unknown, entries stay blocked) when any call fails."""
        assert self.http is not None
        async with self._reconcile_lock:
            generation = self._feed_generation
            try:
                reports = await self._venue_reports()
            except (ExchangeError, ParseError) as e:
                self.metrics.reconcile_failures += 1
                logger.warning("reconcile ({}) failed: {}; orders unknown, retrying", why, e)
                if block and (self._reconcile_retry is None or self._reconcile_retry.done()):
                    self._reconcile_retry = self._spawn(self._retry_reconcile(why), "reconcile-retry")
                return False
            if reports is None:
                if not self._reconcile_starved:
                    logger.warning(
                        "reconcile ({}) skipped: private REST budget exhausted; state unknown until "
                        "it refills",
                        why,
                    )
                self._reconcile_starved = True
                self.metrics.reconcile_failures += 1
                return False
            if self._reconcile_starved:
                logger.info("reconcile ({}): private REST budget back", why)
                self._reconcile_starved = False
            self._apply_reconcile(reports, why)
            self._reconciled_at = datetime.now(UTC)
            self.metrics.reconciles += 1
            was_blocked = self._reconcile_needed
            # a disconnect while the calls were out makes this answer older than the feed: still blocked
            if generation == self._feed_generation:
                self._reconcile_needed = False
            if was_blocked:
                logger.info(
                    "reconciled ({}): {} active at venue, position {}",
                    why,
                    len(reports.active),
                    self._venue_position,
                )
            self._decide(self._clock(), None)
            return True

    async def _venue_reports(self) -> VenueReports | None:
        """The venue's answers, in an order that shows a fill landing while they are taken."""
        assert self.http is not None
        if self.rest_budget.available(self._clock()) < 4:
            return None
        fills = await self._recent_fills()
        lots = parse_position_rows(await self.http.get_positions(), self.config.exchange.product_code)
        listed_at = self._clock()
        active_rows = [
            r
            for r in parse_getchildorders(await self.http.get_child_orders(state="ACTIVE", count=100))
            if r.product_code in ("", self.config.exchange.product_code)
        ]
        after = parse_my_executions(await self.http.get_executions(count=20))
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
        assert self.http is not None
        mark = self.inventory.exec_watermark
        out: list[Fill] = []
        before: int | None = None
        for _ in range(RECONCILE_MAX_PAGES):
            page = parse_my_executions(await self.http.get_executions(count=100, before=before))
            out.extend(page)
            ids = [k for k, _ in map(exec_order_key, page) if k >= 0]
            if len(page) < 100 or not ids or mark is None or min(ids) <= mark:
                return out
            before = min(ids)
            if self.rest_budget.available(self._clock()) < 4:
                break
        logger.error(
            "reconcile: executions since id {} span more than the pages read; the position check "
            "will correct what is left",
            mark,
        )
        return out

    def _apply_reconcile(self, reports: VenueReports, why: str) -> None:
        now = self._clock()
        inv = self.inventory
        if not self._baselined:
            self._baselined = True
            if inv.exec_watermark is None:
                # a ledger with no history at all (a first start): the venue's past executions are a baseline,
                # and its position (if any) is adopted below as a correction
                for fill in reports.fills:
                    inv.mark_seen(fill)
        result = self.reconciler.reconcile(
            self.tracker.open_orders(),
            reports,
            is_tracked=lambda aid: self.tracker.by_acceptance(aid) is not None,
            is_applied=inv.is_applied,
            position=inv.position_btc,
        )
        for cid in result.confirmed:
            self.tracker.settle(cid, OrderState.ACTIVE)
        for cid, aid in result.found:
            self.tracker.on_accepted(cid, aid, now)
            logger.info("reconcile: unknown send {} found at venue as {}", cid, aid)
        for cid, final in result.gone:
            self.tracker.settle(cid, final)
            logger.info("reconcile: {} absent from two ACTIVE listings: {}", cid, final.value)
        for r in result.adopted:
            self.tracker.adopt(
                r.acceptance_id, r.side, r.price, r.size, r.executed_size, now, order_type=r.order_type
            )
            logger.warning(
                "reconcile: adopted an order we did not track: {} {} {}@{}",
                r.acceptance_id,
                r.side.value,
                r.size,
                r.price,
            )
        if self.executor is not None:  # cancels that waited for an acceptance id reconciliation just learnt
            self.executor.flush_deferred_cancels(now)
        for fill in result.fills:
            order = self.tracker.by_acceptance(fill.child_order_acceptance_id)
            logger.warning(
                "reconcile ({}): execution {} not seen on the feed, applied from REST", why, fill.exec_id
            )
            self._apply_fill(replace(fill, tag=order.tag if order else UNTRACKED_TAG), now)
        self._venue_position = result.venue_position
        if result.correction is not None:
            self._correct_position(result.correction, result.expected_position, why, now)

    def _correct_position(self, lots: tuple, expected: Decimal, why: str, now: int) -> None:
        """The venue's position still differs after every missing execution was applied: adopt its lots, and
        say so (a warning and a `correction` row in the trades CSV with the PnL effect at the mark)."""
        inv = self.inventory
        before_pos, before_unreal = inv.position_btc, inv.unrealized_pnl_jpy
        try:
            if not inv.replace_lots_from_venue(list(lots), now=now):
                return
        except (ValueError, TypeError) as e:  # a venue answer we cannot use changes nothing
            logger.error("reconcile ({}): venue positions unusable ({}); keeping ours", why, e)
            return
        self.metrics.position_corrections += 1
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
        delta = inv.position_btc - before_pos
        self.trade_log.log(
            TradeLogRow(
                ts=datetime.now(UTC),
                order_id="",
                side=Side.BUY if delta > 0 else Side.SELL,
                price=inv.mark_price or Decimal(0),
                size=abs(delta),
                fee=Decimal(0),
                strategy=STRATEGY_NAME,
                tag="correction",
                pnl_jpy=effect,
                pnl_cum_jpy=inv.realized_pnl_jpy,
                inventory_after=inv.position_btc,
                exec_id="",
            )
        )
        self._save_state_soon()

    async def _retry_reconcile(self, why: str) -> None:
        delay = 0.5
        while self._reconcile_needed and not self._closing:
            await asyncio.sleep(delay)
            if await self._reconcile(why, block=False):
                return
            delay = min(delay * 2, 10.0)

    # ---------------------------------------------------------------- housekeeping
    async def _housekeeping(self) -> None:
        assert self.http is not None
        last_reconcile = last_board_state = float("-inf")
        while True:
            t = time.monotonic()
            if t - last_board_state >= self.config.runner.board_state_poll_sec:
                last_board_state = t
                try:
                    bs = await self.http.get_board_state()
                    self._board_state = str(bs.get("state", "UNKNOWN"))
                    self._exchange_health = str(bs.get("health", "UNKNOWN"))
                except (
                    Exception
                ) as e:  # ExchangeError or a body of the wrong shape: keep the last known state
                    logger.warning("board state poll failed: {}", e)
            self.inventory.roll_day(datetime.now(UTC))
            self.inventory.mark(self.view.snapshot(self._clock()).mid_price)
            self.tracker.prune()
            if t - last_reconcile >= self.config.runner.reconcile_interval_sec:
                if last_reconcile != float("-inf"):  # the first one ran at connect
                    await self._reconcile("periodic", block=False)
                last_reconcile = t
            self._save_state_soon()
            self._decide(self._clock(), None)
            await asyncio.sleep(min(HOUSEKEEPING_S, self.config.runner.board_state_poll_sec))

    async def _loop_lag_monitor(self) -> None:
        period = 0.25
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(period)
            lag = max(0.0, (loop.time() - t0 - period) * 1000)
            self.metrics.loop_lag_ms = lag
            self.metrics.loop_lag_max_ms = max(self.metrics.loop_lag_max_ms, lag)

    # ---------------------------------------------------------------- views for the server
    def status(self) -> dict[str, Any]:
        settle = self.settle_status()
        return {
            "state": self.state.value,
            "reason": self.state_reason,
            "since": self.state_since.isoformat(),
            "mode": self.mode,
            "activity": self._activity(settle),
            "settle": None
            if settle is None or settle.goal is None
            else {
                "goal": settle.goal.value,
                "working": settle.working,
                "attempt": settle.attempt,
                "last_error": settle.last_error,
                "confirmed_at": settle.confirmed_at.isoformat() if settle.confirmed_at else None,
                "cancel_requests": settle.cancelled,
                "flatten_orders": list(settle.flatten_orders),
            },
        }

    def _activity(self, settle: SettleStatus | None) -> str:
        """One line: what the bot is doing about its state (a kill or stop says how far it got)."""
        if settle is not None and settle.goal is not None:
            return f"{self.state.value} — {settle.describe()}"
        return self.state.value

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        board = self.view.snapshot(now)
        inv = self.inventory.state()
        own = self.tracker.resting_levels()
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        for side, out in ((Side.BUY, bids), (Side.SELL, asks)):
            for price, size in self.store.levels(side, 10):
                out.append([str(price), str(size), str(own.get((side, price), ""))])
        orders = []
        for o in self.tracker.open_orders():
            exp = o.expires_at
            orders.append(
                {
                    "client_id": o.client_id,
                    "acceptance_id": o.acceptance_id,
                    "tag": o.tag,
                    "side": o.side.value,
                    "price": _s(o.price),
                    "size": str(o.size),
                    "executed": str(o.executed_size),
                    "state": o.state.value,
                    "age_ms": (now - o.placed_at) // NS_PER_MS,
                    "ttl_left_ms": None if exp is None else max(0, (exp - now) // NS_PER_MS),
                }
            )
        warning = None
        if self.state is RunState.STOPPED and inv.position_btc != 0:
            warning = f"STOPPED with an open position of {inv.position_btc} BTC"
        elif self.state is RunState.KILLED and inv.position_btc != 0:
            settle = self.settle_status()
            doing = (
                settle.describe()
                if settle is not None and settle.goal is not None
                else "flatten not confirmed"
            )
            warning = f"KILLED but position is {inv.position_btc} BTC ({doing})"
        last_age = None if self._last_board_at is None else (now - self._last_board_at) // NS_PER_MS
        block = self._block_reason(now)
        http = self.http
        return {
            **self.status(),
            "position_warning": warning,
            "board": {
                "best_bid": _s(board.best_bid_price),
                "best_bid_size": _s(board.best_bid_size),
                "best_ask": _s(board.best_ask_price),
                "best_ask_size": _s(board.best_ask_size),
                "spread_ticks": board.spread_ticks,
                "mid": _s(board.mid_price),
                "best_age_ms": board.best_age_ms,
                "stale": board.stale or block is Reason.STALE_DATA,
                "stale_reason": getattr(self.store, "stale_reason", None)
                if board.stale
                else ("no board message lately" if block is Reason.STALE_DATA else None),
                "bids": bids,
                "asks": asks,
            },
            "orders": orders,
            "inventory": {
                "position_btc": str(inv.position_btc),
                "avg_price": _s(inv.avg_price),
                "realized_pnl_jpy": str(inv.realized_pnl_jpy),
                "unrealized_pnl_jpy": str(inv.unrealized_pnl_jpy),
                "pnl_today_jpy": str(inv.pnl_today_jpy),
                "fees_today_jpy": str(inv.fees_today_jpy),
                "drawdown_jpy": str(inv.drawdown_jpy),
                "max_drawdown_jpy": str(inv.max_drawdown_jpy),
                "trading_day": inv.trading_day,
            },
            "limits": {
                "daily_pnl_jpy": str(self.config.risk.daily_pnl_jpy),
                "max_dd_jpy": str(self.config.risk.max_dd_jpy),
                "max_inventory_btc": str(self.config.strategy.max_inventory_btc),
            },
            "venue_position_btc": _s(self._venue_position),
            "health": {
                "ws_connected": bool(self.session and self.session.connected),
                "feed_up": bool(self.session and self.session.feed_up),
                "last_message_age_ms": last_age,
                "rest_latency_ms": getattr(http, "last_latency_ms", None) if http else None,
                "order_budget_left": self.order_budget.available(now),
                "private_budget_left": self.rest_budget.available(now),
                "board_state": self._board_state,
                "exchange_health": self._exchange_health,
                "reconciled_at": self._reconciled_at.isoformat() if self._reconciled_at else None,
                "block_reason": block.value if block else None,
                "loop_lag_ms": round(self.metrics.loop_lag_ms, 2),
                "loop_lag_max_ms": round(self.metrics.loop_lag_max_ms, 2),
            },
            "counters": {
                "orders_sent": self.metrics.orders_sent,
                "orders_cancelled": self.metrics.orders_cancelled,
                "fills": self.metrics.fills,
                "board_messages": self.metrics.board_messages,
                "exchange_errors": self.metrics.exchange_errors,
                "reconnects": self.metrics.reconnects,
                "other_product_events": self.metrics.other_product_events,
            },
            "decisions": list(self.recent_decisions),
            "fills": list(self.recent_fills),
            "chart": {
                "mid": [list(p) for p in self.chart_mid],
                "fills": [list(p) for p in self.chart_fills],
                "pnl": [list(p) for p in self.chart_pnl],
            },
            "config": {
                "strategy": self.config.strategy.model_dump(mode="json"),
                "risk": self.config.risk.model_dump(mode="json"),
            },
        }


def _action_text(a: Action) -> str:
    parts = [a.kind.value]
    if a.side:
        parts.append(a.side.value)
    if a.price is not None:
        parts.append(f"@{a.price}")
    if a.size is not None:
        parts.append(f"x{a.size}")
    return " ".join(parts)


def _trade_row(fill: Fill, result: FillResult, position_after: Decimal) -> TradeLogRow:
    return TradeLogRow(
        ts=fill.exec_date,
        order_id=fill.child_order_acceptance_id,
        side=fill.side,
        price=fill.price,
        size=fill.size,
        fee=fill.commission,
        strategy=STRATEGY_NAME,
        tag=fill.tag,
        pnl_jpy=result.realized_pnl_jpy,
        pnl_cum_jpy=result.realized_cum_jpy,
        inventory_after=position_after,
        exec_id=fill.exec_id,
    )
