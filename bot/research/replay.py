"""Replay: the live bot's own trading code over tapes, in virtual time, against the paper venue's matching.

What runs is what trades live: `BoardStore` (the book), `OrderBookView` (own-excluded best, the stall clock),
`StallThenStrikeStrategy`, `OrderTracker`, `OrderExecutor` (intents, backoff, the rate budget, the orders
CSV), `InventoryManager` (FIFO lots, exact Decimal PnL, the kill switch) and the project's CSV loggers. What
is replaced is only what touches the world: the socket (the tape), the clock (the tape's monotonic times), the
venue (`bot/research/venue.py`: the paper matching behind a latency model) and the timer.

The clock moves from event to event, in order: a tape frame, a venue action or answer, our child_order_events
reaching us, or the decision deadline (the strategy's `next_deadline(now)`, the stale-feed instant, the end of
an exchange backoff — the same three the live decision loop arms its one timer for). Same tape + same config →
the same summary (only `wall_s` and `replay_msgs_per_s` differ).

The tape's board never holds our orders (a sim or paper tape has none; a marked live tape has them taken out
here), so the view subtracts nothing: it is handed `NoRestingOrders`. Differences from live, on purpose: the
run state is RUNNING throughout (no control calls), no reconciliation (the replay venue loses nothing), and
the decisions CSV merges each run of identical no-action decisions into one row (counted), so it is
deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from loguru import logger

from bot.config.loader import AppConfig
from bot.engine.executor import OrderExecutor
from bot.engine.inventory import InventoryManager
from bot.engine.markouts import Markouts
from bot.engine.orders import OrderTracker, SuspectFill
from bot.engine.rate_budget import GateBudget, RateBudget
from bot.engine.strategy_stall import StallThenStrikeStrategy
from bot.fill_path import STRATEGY_NAME, trade_row
from bot.infra.bitflyer_parse import parse_child_order_events
from bot.infra.board_store import BoardStore
from bot.infra.decision_runs import DecisionRuns
from bot.infra.logging_structured import (
    CsvLogWriter,
    DecisionLogger,
    OrderLogger,
    TradeLogger,
)
from bot.infra.orderbook_view import OrderBookView
from bot.infra.tape import Frame, read_header, read_tapes
from bot.research.venue import (
    DEFAULT_LATENCY,
    RESYNC_LEVELS,
    EventQueue,
    Latency,
    ReplayGateway,
    ReplayVenue,
)
from bot.sim.wire import btc_to_sat
from bot.types.dto import (
    NS_PER_MS,
    Action,
    ActionKind,
    BoardSnapshot,
    ChildOrderEventType,
    Gate,
    OrderLogRow,
    Reason,
    RunState,
    Side,
)

NS_PER_S = 1_000_000_000
_NEVER = 1 << 62
SERIES_STEP_NS = NS_PER_S  # the report's PnL and mid series: one point per simulated second (and per fill)


class NoRestingOrders:
    """The tape's book holds none of our orders: nothing to subtract (the `RestingOrders` the view reads)."""

    def may_have_open(self) -> bool:
        return False

    def resting_levels(self) -> dict[tuple[Side, Decimal], Decimal]:
        return {}


class ReplayExecutor(OrderExecutor):
    """The live executor; its REST calls run on the replay venue's clock instead of asyncio tasks."""

    def __init__(self, venue: ReplayVenue, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._venue = venue

    def _spawn(self, jobs: list[Coroutine[Any, Any, None]], name: str) -> None:
        now = self._clock()
        for job in jobs:
            self._venue.start(job, now)


@dataclass(slots=True)
class ReplayTrace:
    """What the report draws: PnL and mid over time, our fills, stall lengths, the markout curve."""

    pnl: list[tuple[int, Decimal]] = field(default_factory=list)  # (wall ns, realized + unrealized)
    mid: list[tuple[int, Decimal]] = field(default_factory=list)
    fills: list[tuple[int, str, Decimal, Decimal, str]] = field(
        default_factory=list
    )  # wall, side, px, size, tag
    stalls_ms: list[int] = field(default_factory=list)
    markout_curve: list[tuple[float, Decimal | None, int]] = field(default_factory=list)


def _exact(x: Decimal) -> str:
    """Money as the ledger holds it: exact, no float, no rounding."""
    return format(x.normalize(), "f")  # exact digits, never an exponent (3.1E+2)


def _ratio(x: Decimal | None) -> str | None:
    """A mean or a ratio (a division: not money the ledger holds) to 4 decimals."""
    return None if x is None else format(x.quantize(Decimal("0.0001")).normalize(), "f")


class Replay:
    def __init__(
        self,
        cfg: AppConfig,
        *,
        latency: Latency = DEFAULT_LATENCY,
        log_dir: Path | None = None,
        reuse_decisions: bool = True,
    ) -> None:
        self.cfg = cfg
        self.latency = latency
        ex = cfg.exchange
        self.now = 0
        self._wall_offset = 0
        self.queue = EventQueue()
        self.store = BoardStore(ex.product_code)
        self.view = OrderBookView(self.store, ex.product_code, ex.tick_size, NoRestingOrders())
        self.tracker = OrderTracker()
        self.inventory = InventoryManager(cfg.risk, tick_size=ex.tick_size)
        self.gate = Gate(run_state=RunState.RUNNING)
        self.strategy = StallThenStrikeStrategy(
            cfg.strategy,
            ex.tick_size,
            self.inventory,
            orders=self.tracker,
            risk=cfg.risk,
            min_size=ex.min_size,
            gate=self.gate,
            reuse_repeats=reuse_decisions,
        )
        self.order_budget = RateBudget(cfg.runner.order_rate_per_min, 60.0)
        self.rest_budget = RateBudget(cfg.runner.private_rate_per_5min, 300.0)
        self.gate_budget = GateBudget(self.gate, self.order_budget, self.rest_budget)
        self._writer: CsvLogWriter | None = None
        self.trade_log: TradeLogger | None = None
        self.order_log: OrderLogger | None = None
        self.decision_log: DecisionLogger | None = None
        self.decision_runs: DecisionRuns | None = None
        if log_dir is not None:
            self._writer = CsvLogWriter()
            tz = cfg.risk.trading_day_tz
            self.trade_log = TradeLogger(log_dir, STRATEGY_NAME, tz, writer=self._writer)
            self.order_log = OrderLogger(log_dir, tz, writer=self._writer)
            self.decision_log = DecisionLogger(log_dir, STRATEGY_NAME, tz, writer=self._writer)
            # runs end on a change only (never on time): the same tape writes the same rows
            self.decision_runs = DecisionRuns(self.decision_log, self._wall, flush_ns=None)
        self.venue: ReplayVenue | None = None
        self.executor: ReplayExecutor | None = None
        self.markouts = Markouts()
        self.trace = ReplayTrace()
        # counters
        self.board_messages = 0
        self.frames = 0
        self.strikes = 0
        self.decisions = 0
        self.rate_budget_blocks = 0
        self.fills = 0
        self.ordered_btc = Decimal(0)
        self.filled_btc = Decimal(0)
        self.unverified_fills = 0
        self.last_board_at: int | None = None
        self._timer_at: int | None = None
        self._blocked_stall: int | None = None
        self._mid: Decimal | None = None
        self._last_board: BoardSnapshot | None = None
        self._peak_equity = Decimal(0)
        self.max_drawdown = Decimal(0)
        self._next_sample = 0
        self._last_changed_at: int | None = None
        self._first_mono: int | None = None
        self._day_check_ns = 0  # wall ns the trading day may next change at (roll_day then)
        self._last_mono = 0
        # a board message that changed nothing the last decision read reuses it (see `_reuse_decision`)
        self._reuse = reuse_decisions
        self._events = 0  # queue events run: answers, our events, the venue's actions
        self._seen: tuple[int, int, bool, int, int] | None = None  # what a reusable decision read (see below)
        self._due_strategy: int | None = None  # the strategy's deadline at the last decision
        self._due_backoff: int | None = None  # the end of an exchange backoff then

    # ---- clocks --------------------------------------------------------------------------------------------
    def _clock(self) -> int:
        return self.now

    def _wall_ns(self, mono: int) -> int:
        return mono + self._wall_offset

    def _wall(self) -> datetime:
        return datetime.fromtimestamp(self._wall_ns(self.now) / 1e9, UTC)

    def _open(self, first: Frame) -> None:
        self._wall_offset = first.t_wall_ns - first.t_mono_ns
        self._first_mono = first.t_mono_ns
        self.now = first.t_mono_ns
        self.venue = ReplayVenue(
            self.queue,
            self.latency,
            self._wall_offset,
            first.t_mono_ns,
            self._on_private,
            self._crowd_levels,
            self.rest_budget,
        )
        self.executor = ReplayExecutor(
            self.venue,
            ReplayGateway(),
            self.cfg.exchange,
            self.order_log,
            self.tracker,
            clock=self._clock,
            wall=self._wall,
            budget=self.order_budget,
        )
        self._next_sample = first.t_mono_ns
        self.inventory.roll_day(datetime.fromtimestamp(first.t_wall_ns / 1e9, UTC))

    # ---- the run -------------------------------------------------------------------------------------------
    def run(self, frames: Iterable[Frame]) -> dict[str, Any]:
        t0 = time.perf_counter()
        it: Iterator[Frame] = iter(frames)
        nxt = next(it, None)
        if nxt is not None:
            self._open(nxt)
        queue = self.queue
        while True:
            tf = nxt.t_mono_ns if nxt is not None else _NEVER
            te = queue.next_time()
            te = _NEVER if te is None else te
            td = self._timer_at if self._timer_at is not None else _NEVER
            if nxt is None:
                break  # the tape is over: what is still in flight never happens
            if te <= tf and te <= td:
                t, fn = queue.pop()
                self.now = max(self.now, t)
                self._events += 1
                fn(self.now)
            elif tf <= td:
                assert nxt is not None
                self.now = max(self.now, tf)
                self._on_frame(nxt)
                nxt = next(it, None)
            else:
                self._timer_at = None
                self.now = max(self.now, td)
                self._decide()
        wall_s = time.perf_counter() - t0
        self.markouts.settle_before(_NEVER, None)  # horizons past the tape's end: no markout
        if self.decision_runs is not None:
            self.decision_runs.flush()
        return self._summary(wall_s)

    def close(self) -> None:
        for lg in (self.trade_log, self.order_log, self.decision_log):
            if lg is not None:
                lg.close()
        if self._writer is not None:
            self._writer.stop()

    # ---- frames --------------------------------------------------------------------------------------------
    def _on_frame(self, fr: Frame) -> None:
        self.frames += 1
        self._last_mono = fr.t_mono_ns
        ch = fr.channel
        msg = fr.message
        if fr.resumed:
            self.store.mark_disconnected()  # a gap between files: the book is unknown until a snapshot
        if ch.startswith("lightning_board_"):
            if not isinstance(msg, dict):
                return
            snapshot = ch.startswith("lightning_board_snapshot_")
            if fr.own is not None:
                msg = _without_own(msg, fr.own)
            if self.markouts.due_before(self.now):
                self.markouts.settle_before(self.now, self._mid)
            self.store.onmessage({"params": {"channel": ch, "message": msg}})
            assert self.venue is not None
            self.venue.on_board(msg, snapshot, self.now)
            self.board_messages += 1
            self.last_board_at = self.now
            if not self._reuse_decision():
                self._decide()
        elif ch.startswith("lightning_executions_"):
            if isinstance(msg, list):
                assert self.venue is not None
                self.venue.on_executions(msg, self.now)

    def _crowd_levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The tape's book now, the top levels a side in yen and satoshi (the venue resyncs its crowd from
        it)."""
        store = self.store
        return (
            [(int(p), btc_to_sat(s)) for p, s in islice(store.iter_raw(Side.BUY), RESYNC_LEVELS)],
            [(int(p), btc_to_sat(s)) for p, s in islice(store.iter_raw(Side.SELL), RESYNC_LEVELS)],
        )

    # ---- our child_order_events, as FeedDispatch handles them live -----------------------------------------
    def _on_private(self, now: int, raw: list[dict[str, Any]], at: int) -> None:
        """Our events reach us at `now`; the venue made them at `at` (markouts and the report run from it)."""
        tracker = self.tracker
        for ev in parse_child_order_events(raw):
            order = tracker.by_acceptance(ev.child_order_acceptance_id)
            fill = tracker.on_event(ev)
            if ev.event_type is not ChildOrderEventType.EXECUTION and order is not None and self.order_log:
                self.order_log.log(
                    OrderLogRow(
                        ts=self._wall(),
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
                self.unverified_fills += 1
                continue
            if fill is None:
                continue
            if order is None:  # our fill beat the send's answer: it is the in-flight order's
                in_flight = [
                    o for o in tracker.open_orders() if o.acceptance_id is None and o.side is fill.side
                ]
                tags = {o.tag for o in in_flight}
                if len(tags) == 1:
                    fill = replace(fill, tag=tags.pop())
            result = self.inventory.apply_fill(fill, now)
            if result.duplicate:
                continue
            self.fills += 1
            self.filled_btc += fill.size
            if self.trade_log is not None:
                self.trade_log.log(trade_row(fill, result, self.inventory.position_btc))
            self.markouts.on_fill(at, fill.side, fill.price, fill.size)
            self.trace.fills.append(
                (self._wall_ns(at), fill.side.value, fill.price, fill.size, fill.tag or "")
            )
            self._sample(now, force=True)
        self._decide()

    # ---- one decision, as DecisionLoop.decide does live ----------------------------------------------------
    def _block_reason(self, now: int) -> Reason | None:
        stale_ns = self.cfg.strategy.stale_after_ms * NS_PER_MS
        last = self.last_board_at
        if last is not None and now - last >= stale_ns:
            self.store.mark_silent()
        if self.store.stale or last is None or now - last >= stale_ns:
            return Reason.STALE_DATA
        assert self.executor is not None
        if self.executor.in_backoff(now):
            return Reason.EXCHANGE_BACKOFF
        return None

    def _decide(self) -> None:
        now = self.now
        executor = self.executor
        assert executor is not None
        gate = self.gate
        gate.block_reason = self._block_reason(now)
        self.gate_budget.apply(now)
        board = self.view.snapshot(now)
        actions, meta = self.strategy.on_board(board, now)
        self.decisions += 1
        self._observe(board, now)
        reason = meta.reason
        if reason is Reason.RATE_BUDGET and board.best_changed_at != self._blocked_stall:
            self._blocked_stall = board.best_changed_at  # one count per stall, not per 100 ms retry
            self.rate_budget_blocks += 1
        if self.decision_runs is not None:
            self.decision_runs.record(meta, now)
        if reason is Reason.KILL_SWITCH and gate.run_state is not RunState.KILLED:
            gate.run_state = RunState.KILLED
            logger.info("replay: kill switch at {}: {}", self._wall(), self.inventory.kill_detail)
        if actions:
            self._count(actions)
            refused = executor.local_refusals
            executor.submit(actions, now)
            if executor.error_counts["rate_budget"] and executor.local_refusals > refused:
                self.rate_budget_blocks += executor.local_refusals - refused
        self._arm_timer(now)
        reusable = self._reuse and not actions
        if reason is Reason.RATE_BUDGET and gate.order_budget_grows_at is None:
            reusable = False  # its retry runs from each decision's instant: each must be made
        self._seen = self._inputs() if reusable else None

    def _inputs(self) -> tuple[int, int, bool, int, int]:
        """What a decision reads that a board message may change, as counts: queue events run, the book's
        best prices, staleness and resyncs, the ledger (a trading day rolled by `_sample`)."""
        store = self.store
        return self._events, store.version, store.stale, store.resyncs, self.inventory.version

    def _reuse_decision(self) -> bool:
        """The last decision again, without deciding, for a board message that changed nothing it read:
        `_inputs` (best prices, staleness, resyncs — a snapshot ending a gap restarts the stall clock even
        when the bests come back the same — and the ledger), no queue event since (an answer, our events, the
        venue's action: any may change the orders, the ledger, the budget or a backoff) and no deadline
        reached (the timer). The last decision acted on nothing, so the strategy would decide the same; a
        budget that only grew cannot change a decision without action. The shortcut changes no result:
        tests replay with and without it and compare summaries and logs."""
        seen = self._seen
        if seen is None or seen != self._inputs():
            return False
        now = self.now
        timer = self._timer_at
        if timer is not None and now >= timer:
            return False
        board = self._last_board
        assert board is not None
        if self.decision_runs is not None:
            meta = self.strategy.repeat_meta(board, now)
            if meta is None:  # a decision that is not a plain wait: its row is the strategy's to write
                return False
            self.decision_runs.record(meta, now)
        self.decisions += 1
        self._set_timer(now)  # the stale limit now runs from this message
        if now >= self._next_sample:
            self._sample(now)
        return True

    def _count(self, actions: list[Action]) -> None:
        places = [a for a in actions if a.kind is ActionKind.PLACE_LIMIT]
        if places:
            self.strikes += 1
        for a in actions:
            if a.kind in (ActionKind.PLACE_LIMIT, ActionKind.CLOSE_MARKET) and a.size is not None:
                self.ordered_btc += a.size

    def _arm_timer(self, now: int) -> None:
        assert self.executor is not None
        self._due_strategy = self.strategy.next_deadline(now)
        self._due_backoff = self.executor.backoff_until(now)
        self._set_timer(now)

    def _set_timer(self, now: int) -> None:
        at = self._due_strategy
        if self.last_board_at is not None and not self.store.stale:
            stale_at = self.last_board_at + self.cfg.strategy.stale_after_ms * NS_PER_MS
            if stale_at > now and (at is None or stale_at < at):
                at = stale_at
        until = self._due_backoff
        if until is not None and (at is None or until < at):
            at = until
        self._timer_at = at

    # ---- what the report and the summary need --------------------------------------------------------------
    def _observe(self, board: BoardSnapshot, now: int) -> None:
        changed = board.best_changed_at
        if changed != self._last_changed_at:
            if self._last_changed_at is not None and board.has_both_sides:
                self.trace.stalls_ms.append((changed - self._last_changed_at) // NS_PER_MS)
            self._last_changed_at = changed
        if board is not self._last_board:  # the view hands back the same snapshot while the touch holds
            self._last_board = board
            if board.mid_price is not None:
                self._mid = board.mid_price
        if now >= self._next_sample:
            self._sample(now)

    def _sample(self, now: int, force: bool = False) -> None:
        inv = self.inventory
        equity = inv.realized_pnl_jpy + inv.unrealized_pnl_jpy
        if equity > self._peak_equity:
            self._peak_equity = equity
        dd = equity - self._peak_equity
        if dd < self.max_drawdown:
            self.max_drawdown = dd
        if not force or now >= self._next_sample:
            wall = self._wall_ns(now)
            if wall >= self._day_check_ns:  # a tape may span trading days
                at = datetime.fromtimestamp(wall / 1e9, UTC)
                self.inventory.roll_day(at)
                self._day_check_ns = int(self.inventory.next_day_check_at(at).timestamp()) * NS_PER_S
            self.trace.pnl.append((wall, equity))
            if self._mid is not None:
                self.trace.mid.append((wall, self._mid))
            self._next_sample = now - (now - self._next_sample) % SERIES_STEP_NS + SERIES_STEP_NS
        else:
            self.trace.pnl.append((self._wall_ns(now), equity))

    def _summary(self, wall_s: float) -> dict[str, Any]:
        inv = self.inventory
        if self._mid is not None:
            inv.mark(self._mid)
        self._sample(self.now, force=True)
        market_s = (self._last_mono - (self._first_mono or 0)) / NS_PER_S if self._first_mono else 0.0
        assert self.executor is not None or self.frames == 0
        ex = self.executor
        realized = inv.realized_pnl_jpy
        unrealized = inv.unrealized_pnl_jpy
        self.trace.markout_curve = self.markouts.curve()
        fill_ratio = self.filled_btc / self.ordered_btc if self.ordered_btc else Decimal(0)
        return {
            "board_messages": self.board_messages,
            "frames": self.frames,
            "market_seconds": round(market_s, 3),
            "wall_s": round(wall_s, 3),
            "replay_msgs_per_s": round(self.board_messages / wall_s) if wall_s > 0 else None,
            "decisions": self.decisions,
            "strikes": self.strikes,
            "orders": ex.orders_sent if ex else 0,
            "cancels": (ex.orders_cancelled + ex.cancel_all_sent) if ex else 0,
            "fills": self.fills,
            "fill_ratio": _ratio(fill_ratio),
            "realized_pnl_jpy": _exact(realized),
            "unrealized_pnl_jpy": _exact(unrealized),
            "total_pnl_jpy": _exact(realized + unrealized),
            "position_btc": str(inv.position_btc),
            "max_drawdown_jpy": _exact(self.max_drawdown),
            "markout_1s_jpy": _ratio(self.markouts.mean(1)),
            "markout_5s_jpy": _ratio(self.markouts.mean(5)),
            "markout_30s_jpy": _ratio(self.markouts.mean(30)),
            "rate_budget_blocks": self.rate_budget_blocks,
            "killed": self.gate.run_state is RunState.KILLED,
            "unverified_fills": self.unverified_fills,
            "latency_ms": [self.latency.order_ms, self.latency.cancel_ms],
        }


def _without_own(message: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A marked frame with our own resting size taken out of its levels (the crowd's book only)."""
    out = dict(message)
    for key in ("bids", "asks"):
        mine: dict[float, float] = {}
        for pair in own.get(key) or []:
            try:
                mine[float(pair[0])] = mine.get(float(pair[0]), 0.0) + float(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
        if not mine:
            continue
        levels = []
        for lv in message.get(key) or []:
            try:
                p = float(lv["price"])
            except (KeyError, TypeError, ValueError):
                levels.append(lv)
                continue
            if p in mine:
                left = Decimal(repr(float(lv["size"]))) - Decimal(repr(mine[p]))
                levels.append({"price": lv["price"], "size": float(max(left, Decimal(0)))})
            else:
                levels.append(lv)
        out[key] = levels
    return out


def replay_tapes(
    paths: list[str | Path],
    cfg: AppConfig,
    *,
    latency: Latency = DEFAULT_LATENCY,
    out_dir: Path | None = None,
) -> tuple[dict[str, Any], ReplayTrace]:
    """Replay tapes (in time order) with one config; logs under `out_dir` when given."""
    for p in paths:
        h = read_header(p)
        if h.product_code != cfg.exchange.product_code:
            raise ValueError(f"{p}: a tape of {h.product_code}, not {cfg.exchange.product_code}")
        if h.mode == "live" and not h.own_orders_marked:
            logger.warning("{}: a live tape without own orders marked: our past quotes count as crowd", p)
    r = Replay(cfg, latency=latency, log_dir=out_dir)
    try:
        summary = r.run(read_tapes(paths))
    finally:
        r.close()
    return summary, r.trace
