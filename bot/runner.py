"""BotRunner: owns the bot's life on the event loop it is started on (uvicorn's, or the CLI's).

Flow (all on one asyncio loop, no threads):
  board message ─┐
  deadline timer ┴→ _decide(): OrderBookView.snapshot → strategy.on_board → executor.submit (HTTP in a task)
  child_order_events → OrderTracker → fills → InventoryManager → trade log / state file
A decision is a plain synchronous callback, so it is atomic with respect to config patches and control calls.
The strategy says when it next needs to be woken (`next_deadline`); the runner arms one `loop.call_at` timer for
min(that, the stale-feed deadline). No polling loop stands in for the deadlines.

REST reconciliation (SPEC §10) runs at start, after every reconnect (new orders blocked until it succeeds) and
periodically; a failed REST call leaves the state "unknown", never "no orders".
"""

from __future__ import annotations

import asyncio
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
from bot.engine.orders import UNTRACKED_TAG, OrderTracker
from bot.engine.strategy_stall import StallThenStrikeStrategy
from bot.infra.bitflyer_parse import (
    ChildOrderRow,
    ParseError,
    net_position,
    parse_child_order_events,
    parse_getchildorders,
    parse_my_execution_row,
    parse_position_rows,
)
from bot.infra.board_store import BoardStore
from bot.infra.http_bitflyer import BitflyerHttp, ExchangeError
from bot.infra.logging_structured import DecisionLogger, OrderLogger, TradeLogger
from bot.infra.orderbook_view import OrderBookView
from bot.infra.pyb_session import FeedLink, PyBotterSession
from bot.infra.rate_budget import RateBudget
from bot.infra.state_file import StateFile
from bot.infra.tasks import BackgroundTasks
from bot.types.dto import (
    NS_PER_MS,
    Action,
    ActionKind,
    ChildOrderEventType,
    DecisionLogRow,
    DecisionMeta,
    Fill,
    OrderLogRow,
    OrderState,
    Reason,
    RunState,
    Side,
    TradeLogRow,
)

STRATEGY_NAME = "stall_then_strike"
HOUSEKEEPING_S = 2.0
# epoll sleeps in whole milliseconds, so a timer fires up to 1 ms late: wake this much early and yield to the loop
# until the deadline (at most ~1 ms of loop turns per deadline, I/O still served)
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
    decision_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=20_000))
    deadline_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))
    # stall deadline → strike handed to the HTTP client (the orders' request task is created)
    strike_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))
    loop_lag_ms: float = 0.0
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
        self.strategy = StallThenStrikeStrategy(cfg.strategy, tick, self.inventory, orders=self.tracker, risk=cfg.risk)
        tz = cfg.risk.trading_day_tz
        self.trade_log = TradeLogger(log_dir, STRATEGY_NAME, tz=tz)
        self.order_log = OrderLogger(log_dir, tz=tz)
        self.decision_log = DecisionLogger(log_dir, STRATEGY_NAME, tz=tz)
        self.order_budget = RateBudget(cfg.runner.order_rate_per_min, 60.0)
        # every REST call we make (public ones share bitFlyer's per-IP limit, private ones the per-key limit)
        self.rest_budget = RateBudget(cfg.runner.private_rate_per_5min, 300.0)
        self.state_store = StateFile(state_file)
        self.session: PyBotterSession | None = None
        self.http: BitflyerHttp | None = None
        self.executor: OrderExecutor | None = None

        self.state = RunState.STOPPED
        self.state_reason = "initial"
        self.state_since = datetime.now(UTC)
        self._restore_state()

        self._timer: asyncio.Handle | None = None
        self._timer_at: int | None = None
        self._last_board_at: int | None = None
        self._reconcile_needed = True          # at start: no new orders before the first reconciliation
        self._reconcile_lock = asyncio.Lock()
        self._reconciled_at: datetime | None = None
        self._venue_position: Decimal | None = None
        self._known_exec_ids: set[str] = set()
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
        if saved.get("inventory"):
            try:
                self.inventory = InventoryManager.from_dict(saved["inventory"], self.config.risk,
                                                            tick_size=self.config.exchange.tick_size)
                self.strategy.inventory = self.inventory
            except Exception as e:  # a bad file must not start a bot that forgot its losses
                logger.error("state file inventory unreadable ({}); starting STOPPED", e)
                self.state, self.state_reason = RunState.STOPPED, "state file inventory unreadable"
                return
        if saved.get("state") == RunState.KILLED.value:
            self.state = RunState.KILLED
            self.state_reason = f"still KILLED after restart: {saved.get('reason', '')}"
            self.strategy.gate.run_state = RunState.KILLED
        else:
            self.state = start
            self.state_reason = f"restart ({self.mode})"

    def _persisted(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.state_reason,
            "since": self.state_since.isoformat(),
            "saved_at": datetime.now(UTC).isoformat(),
            "inventory": self.inventory.to_dict(),
        }

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
        self.http.request_listeners.append(lambda _path: self.rest_budget.force(self._clock()))
        self.executor = OrderExecutor(self.http, cfg.exchange, self.order_log, self.tracker, budget=self.order_budget)
        self.metrics.executor = self.executor
        self._started = True
        logger.info("runner: {} mode, state {}, REST {}, WS {}", self.mode, self.state.value, ep.rest_base_url,
                    ep.public_ws_url)
        await self.session.connect_ws(wait_up_s=30.0)
        self._spawn(self._housekeeping(), "housekeeping")
        self._spawn(self._loop_lag_monitor(), "loop-lag")
        self._save_state_soon()

    async def close(self) -> None:
        """Shutdown: stop rules (cancel our orders, keep the position), flush logs, close sockets."""
        if self._closing:
            return
        if self._started and self.state in (RunState.RUNNING, RunState.PAUSED):
            try:
                async with asyncio.timeout(15):
                    await self._settle_orders(flatten=False)
            except Exception as e:
                logger.error("shutdown: could not confirm our orders cancelled: {!r}", e)
        self._closing = True
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
        for ev in events:
            order = self.tracker.by_acceptance(ev.child_order_acceptance_id)
            fill = self.tracker.on_event(ev)
            if ev.event_type is not ChildOrderEventType.EXECUTION and order is not None:
                self.order_log.log(OrderLogRow(
                    ts=wall, action=ev.event_type.value.lower(), order_id=ev.child_order_acceptance_id,
                    client_order_id=order.client_id, side=order.side, price=order.price, size=ev.size or order.size,
                    tif="GTC", ttl_ms=order.ttl_ms, tag=order.tag, reason=ev.reason or "", status="event",
                ))
            if fill is not None:
                self._apply_fill(fill, now)
        if events:
            self._decide(now, None)

    def _apply_fill(self, fill: Fill, now: int) -> None:
        if fill.dedupe_key in self._known_exec_ids:
            return
        self._known_exec_ids.add(fill.dedupe_key)
        result = self.inventory.apply_fill(fill, now)
        if result.duplicate:
            return
        self.metrics.fills += 1
        inv = self.inventory
        self.trade_log.log(_trade_row(fill, result, inv.position_btc))
        wall = datetime.now(UTC)
        self.recent_fills.appendleft({
            "ts": wall.isoformat(timespec="milliseconds"), "side": fill.side.value, "price": str(fill.price),
            "size": str(fill.size), "tag": fill.tag, "pnl_jpy": str(result.realized_pnl_jpy),
        })
        self.chart_fills.append((wall.timestamp(), str(fill.price), fill.side.value))
        logger.info("fill {} {} @ {} ({}) → position {} realized {}", fill.side.value, fill.size, fill.price,
                    fill.tag, inv.position_btc, result.realized_cum_jpy)
        self._save_state_soon()

    # ---------------------------------------------------------------- the decision
    def _block_reason(self, now: int) -> Reason | None:
        stale_ns = self.config.strategy.stale_after_ms * NS_PER_MS
        if (
            self.session is None or not self.session.feed_up or self.store.stale
            or self._last_board_at is None or now - self._last_board_at >= stale_ns
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
        """Order sends the strategy may spend now: the order budget, but none once the REST budget is down to the
        reserve kept for cancels, closes, reconciliation and a kill."""
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
        gate = self.strategy.gate
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
                self._spawn(self._settle_orders(flatten=True), "kill-switch-flatten")
        allowed = self.state in (RunState.RUNNING, RunState.PAUSED) or (
            meta is not None and meta.reason is Reason.KILL_SWITCH)
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
        self.decision_log.log(DecisionLogRow(
            ts=wall, best_age_ms=meta.best_age_ms, spread_ticks=meta.spread_ticks, inventory_btc=meta.inventory_btc,
            decision_type=meta.decision_type, entry_bid_px=meta.entry_bid_px, entry_ask_px=meta.entry_ask_px,
            actions=actions, reason=meta.reason.value, detail=meta.detail,
        ))
        last = self._last_decision
        if meta.actions or last is None or last.reason is not meta.reason:
            self.recent_decisions.appendleft({
                "ts": wall.isoformat(timespec="milliseconds"), "reason": meta.reason.value, "actions": actions,
                "detail": meta.detail,
            })
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
        self.strategy.gate.run_state = new
        logger.warning("state {} → {} by {}: {}", old.value, new.value, who, reason)
        self._save_state_soon()

    def _enter_killed(self, reason: str, who: str) -> None:
        self._set_state(RunState.KILLED, reason, who)
        try:  # the latch must hit the disk before anything else can go wrong
            self.state_store.save_sync(self._persisted())
        except OSError as e:
            logger.error("could not persist the kill latch: {}", e)

    async def start(self, who: str = "api") -> bool:
        async with self._transition_lock:
            if self.state is RunState.RUNNING:
                return False
            if self.state is RunState.KILLED:
                raise TransitionRefused("KILLED: reset (a human decision) before starting again")
            if self.state is RunState.PAUSED:
                raise TransitionRefused("PAUSED: use resume")
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
            await self._settle_orders(flatten=False)
        return True

    async def kill(self, who: str = "api") -> bool:
        async with self._transition_lock:
            changed = self.state is not RunState.KILLED
            if changed:
                self._enter_killed(f"kill by {who}", who)
            # repeated kill re-checks: a kill must really flatten, even if the first attempt was cut short
            await self._settle_orders(flatten=True)
        return changed

    async def reset(self, who: str = "api") -> bool:
        async with self._transition_lock:
            if self.state is RunState.STOPPED:
                return False
            if self.state is not RunState.KILLED:
                raise TransitionRefused(f"{self.state.value}: reset only clears a KILLED bot")
            self.strategy.reset_kill()
            self._set_state(RunState.STOPPED, "kill latch cleared by a human", who)
        return True

    def _kick(self) -> None:
        if self.executor is not None:
            self._decide(self._clock(), None)

    async def _settle_orders(self, *, flatten: bool, attempts: int = 12) -> bool:
        """Cancel everything (and flatten) and confirm over REST. True when confirmed."""
        assert self.http is not None and self.executor is not None
        delay = 0.2
        for attempt in range(attempts):
            try:
                await self.executor.drain()
                await self.executor.execute([Action(ActionKind.CANCEL_ALL, Reason.MANUAL, tag="stop")],
                                            self._clock())
                active = await self.http.get_child_orders(state="ACTIVE")
                net = Decimal(0)
                if flatten:
                    net = net_position(parse_position_rows(await self.http.get_positions()))[0]
                    self._venue_position = net
                    closing = self.tracker.open_orders(tag="close")
                    if net != 0 and not closing:
                        side = Side.SELL if net > 0 else Side.BUY
                        await self.executor.execute(
                            [Action(ActionKind.CLOSE_MARKET, Reason.KILL_SWITCH, side=side, size=abs(net), tag="close")],
                            self._clock())
                if not active and net == 0:
                    for o in self.tracker.open_orders():
                        if o.acceptance_id is not None or o.state is OrderState.UNKNOWN:
                            self.tracker.settle(o.client_id, OrderState.CANCELED)
                    logger.info("confirmed over REST: no open orders{}", ", flat" if flatten else "")
                    await self._reconcile("after stop/kill", block=False)
                    return True
                logger.info("settle attempt {}: {} active orders, venue position {}", attempt + 1, len(active), net)
            except (ExchangeError, ParseError) as e:
                logger.warning("settle attempt {} failed: {}", attempt + 1, e)
            await asyncio.sleep(delay)
            delay = min(delay * 1.6, 3.0)
        logger.error("could NOT confirm {} after {} attempts", "flat and no orders" if flatten else "no orders",
                     attempts)
        return False

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
        assert self.http is not None
        async with self._reconcile_lock:
            if self.rest_budget.available(self._clock()) < 3:
                logger.warning("reconcile ({}) skipped: private REST budget exhausted; state unknown", why)
                self.metrics.reconcile_failures += 1
                return False
            try:
                active_rows = parse_getchildorders(await self.http.get_child_orders(state="ACTIVE", count=100))
                exec_rows = await self.http.get_executions(count=100)
                lots = parse_position_rows(await self.http.get_positions())
            except (ExchangeError, ParseError) as e:
                self.metrics.reconcile_failures += 1
                logger.warning("reconcile ({}) failed: {}; orders unknown, retrying", why, e)
                if block:
                    self._spawn(self._retry_reconcile(why), "reconcile-retry")
                return False
            now = self._clock()
            first = self._reconciled_at is None
            self._reconcile_orders(active_rows, now)
            if self.executor is not None:  # cancels that waited for an acceptance id reconciliation just learnt
                self.executor.flush_deferred_cancels(now)
            self._reconcile_fills(exec_rows, now, baseline=first)
            self._venue_position = net_position(lots)[0]
            try:
                if self.inventory.replace_lots_from_venue(lots, now=now):
                    logger.warning("reconcile ({}): position adopted from the venue: {} BTC", why,
                                   self._venue_position)
                    self._save_state_soon()
            except (ValueError, TypeError) as e:  # a venue answer we cannot use changes nothing
                logger.error("reconcile ({}): venue positions unusable ({}); keeping ours", why, e)
            self._reconciled_at = datetime.now(UTC)
            self.metrics.reconciles += 1
            was_blocked = self._reconcile_needed
            self._reconcile_needed = False
            if was_blocked:
                logger.info("reconciled ({}): {} active at venue, position {}", why, len(active_rows),
                            self._venue_position)
            self._decide(self._clock(), None)
            return True

    async def _retry_reconcile(self, why: str) -> None:
        delay = 0.5
        while self._reconcile_needed and not self._closing:
            await asyncio.sleep(delay)
            if await self._reconcile(why, block=False):
                return
            delay = min(delay * 2, 10.0)

    def _reconcile_orders(self, active_rows: list[ChildOrderRow], now: int) -> None:
        grace = 3_000 * NS_PER_MS  # an order just accepted may not be listed yet
        active = {r.child_order_acceptance_id: r for r in active_rows}
        matched: set[str] = set()
        for order in self.tracker.open_orders():
            if order.acceptance_id is not None:
                if order.acceptance_id in active:
                    matched.add(order.acceptance_id)
                    if order.state is OrderState.UNKNOWN:
                        self.tracker.settle(order.client_id, OrderState.ACTIVE)
                elif now - order.placed_at > grace and order.state is not OrderState.PENDING_NEW:
                    # gone from the venue; fills (if any) come from executions below
                    final = OrderState.FILLED if order.outstanding <= 0 else OrderState.CANCELED
                    self.tracker.settle(order.client_id, final)
            elif order.state is OrderState.UNKNOWN:
                for aid, row in active.items():
                    if aid in matched or self.tracker.by_acceptance(aid) is not None:
                        continue
                    if (row.side is order.side and row.size == order.size
                            and (order.price is None or row.price == order.price)):
                        self.tracker.on_accepted(order.client_id, aid)
                        matched.add(aid)
                        logger.info("reconcile: unknown send {} found at venue as {}", order.client_id, aid)
                        break
                else:
                    if now - order.placed_at > grace:
                        self.tracker.settle(order.client_id, OrderState.REJECTED)
                        logger.info("reconcile: unknown send {} not at venue: settled as not resting",
                                    order.client_id)
        for aid, row in active.items():
            if aid not in matched and self.tracker.by_acceptance(aid) is None:
                self.tracker.adopt(aid, row.side, row.price or None, row.size, row.executed_size, now,
                                   order_type=row.child_order_type)
                logger.warning("reconcile: adopted an order we did not track: {} {} {}@{}", aid, row.side.value,
                               row.size, row.price)

    def _reconcile_fills(self, rows: list[dict], now: int, *, baseline: bool) -> None:
        """Executions we missed (events lost in a disconnect) are applied; at the first reconcile the venue's
        past executions are a baseline (the position itself comes from the state file + getpositions)."""
        for row in sorted((r for r in rows if isinstance(r, dict)), key=lambda r: (len(str(r.get("id", ""))), str(r.get("id", "")))):
            try:
                fill = parse_my_execution_row(row)
            except ParseError as e:
                logger.warning("reconcile: skipped a malformed execution row: {}", e)
                continue
            if baseline:
                self._known_exec_ids.add(fill.dedupe_key)
                continue
            if fill.dedupe_key in self._known_exec_ids:
                continue
            order = self.tracker.by_acceptance(fill.child_order_acceptance_id)
            fill = replace(fill, tag=order.tag if order else UNTRACKED_TAG)
            logger.warning("reconcile: missed fill recovered from REST: {}", fill.exec_id)
            self._apply_fill(fill, now)

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
                except Exception as e:  # ExchangeError or a body of the wrong shape: keep the last known state
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
            self.metrics.loop_lag_ms = max(0.0, (loop.time() - t0 - period) * 1000)

    # ---------------------------------------------------------------- views for the server
    def status(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.state_reason, "since": self.state_since.isoformat(),
                "mode": self.mode}

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        board = self.view.snapshot(now)
        inv = self.inventory.state()
        own = self.tracker.resting_levels()
        bids, asks = [], []
        for side, out in ((Side.BUY, bids), (Side.SELL, asks)):
            for price, size in self.store.levels(side, 10):
                out.append([str(price), str(size), str(own.get((side, price), ""))])
        orders = []
        for o in self.tracker.open_orders():
            exp = o.expires_at
            orders.append({
                "client_id": o.client_id, "acceptance_id": o.acceptance_id, "tag": o.tag, "side": o.side.value,
                "price": _s(o.price), "size": str(o.size), "executed": str(o.executed_size), "state": o.state.value,
                "age_ms": (now - o.placed_at) // NS_PER_MS,
                "ttl_left_ms": None if exp is None else max(0, (exp - now) // NS_PER_MS),
            })
        warning = None
        if self.state is RunState.STOPPED and inv.position_btc != 0:
            warning = f"STOPPED with an open position of {inv.position_btc} BTC"
        elif self.state is RunState.KILLED and inv.position_btc != 0:
            warning = f"KILLED but position is {inv.position_btc} BTC (flatten not confirmed)"
        last_age = None if self._last_board_at is None else (now - self._last_board_at) // NS_PER_MS
        block = self._block_reason(now)
        http = self.http
        return {
            **self.status(),
            "position_warning": warning,
            "board": {
                "best_bid": _s(board.best_bid_price), "best_bid_size": _s(board.best_bid_size),
                "best_ask": _s(board.best_ask_price), "best_ask_size": _s(board.best_ask_size),
                "spread_ticks": board.spread_ticks, "mid": _s(board.mid_price), "best_age_ms": board.best_age_ms,
                "stale": board.stale or block is Reason.STALE_DATA,
                "stale_reason": getattr(self.store, "stale_reason", None) if board.stale else (
                    "no board message lately" if block is Reason.STALE_DATA else None),
                "bids": bids, "asks": asks,
            },
            "orders": orders,
            "inventory": {
                "position_btc": str(inv.position_btc), "avg_price": _s(inv.avg_price),
                "realized_pnl_jpy": str(inv.realized_pnl_jpy), "unrealized_pnl_jpy": str(inv.unrealized_pnl_jpy),
                "pnl_today_jpy": str(inv.pnl_today_jpy), "fees_today_jpy": str(inv.fees_today_jpy),
                "drawdown_jpy": str(inv.drawdown_jpy), "max_drawdown_jpy": str(inv.max_drawdown_jpy),
                "trading_day": inv.trading_day,
            },
            "limits": {"daily_pnl_jpy": str(self.config.risk.daily_pnl_jpy),
                       "max_dd_jpy": str(self.config.risk.max_dd_jpy),
                       "max_inventory_btc": str(self.config.strategy.max_inventory_btc)},
            "venue_position_btc": _s(self._venue_position),
            "health": {
                "ws_connected": bool(self.session and self.session.connected),
                "feed_up": bool(self.session and self.session.feed_up),
                "last_message_age_ms": last_age,
                "rest_latency_ms": getattr(http, "last_latency_ms", None) if http else None,
                "order_budget_left": self.order_budget.available(now),
                "private_budget_left": self.rest_budget.available(now),
                "board_state": self._board_state, "exchange_health": self._exchange_health,
                "reconciled_at": self._reconciled_at.isoformat() if self._reconciled_at else None,
                "block_reason": block.value if block else None,
            },
            "counters": {
                "orders_sent": self.metrics.orders_sent, "orders_cancelled": self.metrics.orders_cancelled,
                "fills": self.metrics.fills, "board_messages": self.metrics.board_messages,
                "exchange_errors": self.metrics.exchange_errors, "reconnects": self.metrics.reconnects,
            },
            "decisions": list(self.recent_decisions),
            "fills": list(self.recent_fills),
            "chart": {"mid": [list(p) for p in self.chart_mid], "fills": [list(p) for p in self.chart_fills],
                      "pnl": [list(p) for p in self.chart_pnl]},
            "config": {"strategy": self.config.strategy.model_dump(mode="json"),
                       "risk": self.config.risk.model_dump(mode="json")},
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
        ts=fill.exec_date, order_id=fill.child_order_acceptance_id, side=fill.side, price=fill.price, size=fill.size,
        fee=fill.commission, strategy=STRATEGY_NAME, tag=fill.tag, pnl_jpy=result.realized_pnl_jpy,
        pnl_cum_jpy=result.realized_cum_jpy, inventory_after=position_after, exec_id=fill.exec_id,
    )

