"""What the trader sees. DashboardHistory keeps the recent decisions and fills and the chart series (bounded);
DashboardView builds one typed BotSnapshot from them and from the rooms that own each other fact. Neither
decides anything."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bot.account_watch import AccountWatch
from bot.config.loader import AppConfig
from bot.engine.inventory import InventoryManager
from bot.engine.orders import OrderTracker
from bot.engine.rate_budget import RateBudget
from bot.infra.board_store import BoardStore
from bot.infra.logging_structured import format_actions
from bot.infra.orderbook_view import OrderBookView
from bot.infra.storage_health import StorageHealth
from bot.links import RunnerMetrics, VenueLinks
from bot.run_state import RunStateMachine
from bot.types.dto import NS_PER_MS, DecisionMeta, Fill, Reason, RunState, Side
from bot.types.snapshot import (
    BoardPanel,
    BotSnapshot,
    BudgetView,
    Chart,
    Counters,
    DecisionEntry,
    FillEntry,
    HealthPanel,
    InventoryPanel,
    Limits,
    OrderRow,
    RunStatus,
    StorageFaultView,
    StorageView,
)
from bot.venue_sync import VenueSync

LADDER_LEVELS = 10
CHART_SAMPLE_NS = 1_000_000_000


class HeldRows(Protocol):
    """A CSV logger, as the storage panel sees it."""

    @property
    def rows_held(self) -> int: ...


class DashboardHistory:
    def __init__(self) -> None:
        self.recent_decisions: deque[DecisionEntry] = deque(maxlen=20)
        self.recent_fills: deque[FillEntry] = deque(maxlen=20)
        self.chart_mid: deque[tuple[float, Decimal]] = deque(maxlen=3600)
        self.chart_fills: deque[tuple[float, Decimal, str]] = deque(maxlen=500)
        self.chart_pnl: deque[tuple[float, Decimal]] = deque(maxlen=3600)
        self._next_chart_sample = 0  # monotonic ns
        self._last_reason: Reason | None = None

    # ---------------------------------------------------------------- what happened
    def on_fill(self, fill: Fill, pnl_jpy: Decimal, wall: datetime) -> None:
        self.recent_fills.appendleft(
            FillEntry.model_construct(
                ts=wall.isoformat(timespec="milliseconds"),
                side=fill.side.value,
                price=fill.price,
                size=fill.size,
                tag=fill.tag,
                pnl_jpy=pnl_jpy,
            )
        )
        self.chart_fills.append((wall.timestamp(), fill.price, fill.side.value))

    def on_decision(self, meta: DecisionMeta, wall: datetime) -> None:
        """A decision that began a decisions-log row: kept when it acted or its reason changed (a run of the
        same no-action is one)."""
        if meta.actions or self._last_reason is not meta.reason:
            self.recent_decisions.appendleft(
                DecisionEntry.model_construct(
                    ts=wall.isoformat(timespec="milliseconds"),
                    reason=meta.reason.value,
                    actions=format_actions(meta),
                    detail=meta.detail,
                )
            )
        self._last_reason = meta.reason

    def sample_due(self, now: int) -> bool:
        """Is a chart point due at monotonic `now` (one per CHART_SAMPLE_NS)?"""
        return now >= self._next_chart_sample

    def sample(self, now: int, wall_s: float, mid: Decimal | None, pnl_today: Decimal) -> None:
        """One chart point (mid and today's PnL) at wall time `wall_s`; none while there is no mid."""
        if mid is None:
            return
        self._next_chart_sample = now + CHART_SAMPLE_NS
        self.chart_mid.append((wall_s, mid))
        self.chart_pnl.append((wall_s, pnl_today))


class DashboardView:
    def __init__(
        self,
        *,
        status: Callable[[], RunStatus],
        budgets: Callable[[int], list[BudgetView]],
        history: DashboardHistory,
        config: Callable[[], AppConfig],
        clock: Callable[[], int],
        store: BoardStore,
        view: OrderBookView,
        tracker: OrderTracker,
        inventory: InventoryManager,
        run_state: RunStateMachine,
        sync: VenueSync,
        account: AccountWatch,
        links: VenueLinks,
        order_budget: RateBudget,
        rest_budget: RateBudget,
        metrics: RunnerMetrics,
        block_reason: Callable[[int], Reason | None],
        last_board_at: Callable[[], int | None],
        storage: StorageHealth,
        csv_logs: Sequence[HeldRows],
    ) -> None:
        self._status = status
        self._budgets = budgets
        self._history = history
        self._config = config
        self._clock = clock
        self._store = store
        self._view = view
        self._tracker = tracker
        self._inventory = inventory
        self._run_state = run_state
        self._sync = sync
        self._account = account
        self._links = links
        self._order_budget = order_budget
        self._rest_budget = rest_budget
        self._metrics = metrics
        self._block_reason = block_reason
        self._last_board_at = last_board_at
        self._storage = storage
        self._csv_logs = csv_logs

    # ---------------------------------------------------------------- the snapshot
    def snapshot(self) -> BotSnapshot:
        now = self._clock()
        cfg = self._config()
        board = self._view.snapshot(now)
        inv = self._inventory.state()
        status = self._status()
        state = self._run_state.state
        warning = None
        if state is RunState.STOPPED and inv.position_btc != 0:
            warning = f"STOPPED with an open position of {inv.position_btc} BTC"
        elif state is RunState.KILLED and inv.position_btc != 0:
            settler = self._links.settler
            settle = None if settler is None else settler.status()
            doing = (
                settle.describe()
                if settle is not None and settle.goal is not None
                else "flatten not confirmed"
            )
            warning = f"KILLED but position is {inv.position_btc} BTC ({doing})"
        last_board = self._last_board_at()
        block = self._block_reason(now)
        stale_reason = None
        if board.stale:
            reason = self._store.stale_reason
            stale_reason = None if reason is None else reason.value
        elif block is Reason.STALE_DATA:
            stale_reason = "no board message lately"
        session, http, m, sync = self._links.session, self._links.http, self._metrics, self._sync
        margin = self._account.view()
        h = self._history
        return BotSnapshot.model_construct(
            **dict(status),
            position_warning=warning,
            board=BoardPanel.model_construct(
                best_bid=board.best_bid_price,
                best_bid_size=board.best_bid_size,
                best_ask=board.best_ask_price,
                best_ask_size=board.best_ask_size,
                spread_ticks=board.spread_ticks,
                mid=board.mid_price,
                best_age_ms=board.best_age_ms(now),
                stale=board.stale or block is Reason.STALE_DATA,
                stale_reason=stale_reason,
                bids=[(lv.price, lv.size, lv.own_size) for lv in self._view.ladder(Side.BUY, LADDER_LEVELS)],
                asks=[(lv.price, lv.size, lv.own_size) for lv in self._view.ladder(Side.SELL, LADDER_LEVELS)],
            ),
            orders=[
                OrderRow.model_construct(
                    client_id=o.client_id,
                    acceptance_id=o.acceptance_id,
                    tag=o.tag,
                    side=o.side.value,
                    price=o.price,
                    size=o.size,
                    executed=o.executed_size,
                    state=o.state.value,
                    age_ms=(now - o.placed_at) // NS_PER_MS,
                    ttl_left_ms=None if o.expires_at is None else max(0, (o.expires_at - now) // NS_PER_MS),
                )
                for o in self._tracker.open_orders()
            ],
            inventory=InventoryPanel.model_construct(
                position_btc=inv.position_btc,
                avg_price=inv.avg_price,
                realized_pnl_jpy=inv.realized_pnl_jpy,
                unrealized_pnl_jpy=inv.unrealized_pnl_jpy,
                pnl_today_jpy=inv.pnl_today_jpy,
                fees_today_jpy=inv.fees_today_jpy,
                holding_costs_today_jpy=self._inventory.holding_costs_today_jpy,
                holding_costs_total_jpy=self._inventory.holding_costs_total_jpy,
                drawdown_jpy=inv.drawdown_jpy,
                max_drawdown_jpy=inv.max_drawdown_jpy,
                trading_day=inv.trading_day,
            ),
            limits=Limits.model_construct(
                daily_pnl_jpy=cfg.risk.daily_pnl_jpy,
                max_dd_jpy=cfg.risk.max_dd_jpy,
                max_inventory_btc=cfg.strategy.max_inventory_btc,
            ),
            venue_position_btc=sync.venue_position,
            health=HealthPanel.model_construct(
                ws_connected=bool(session and session.connected),
                feed_up=self._links.feed_up,
                last_message_age_ms=None if last_board is None else (now - last_board) // NS_PER_MS,
                rest_latency_ms=None if http is None else http.last_latency_ms,
                order_budget_left=self._order_budget.available(now),
                private_budget_left=self._rest_budget.available(now),
                board_state=sync.board_state,
                exchange_health=sync.exchange_health,
                reconciled_at=sync.reconciled_at.isoformat() if sync.reconciled_at else None,
                block_reason=block.value if block else None,
                keep_rate=margin.keep_rate,
                margin_call_jpy=margin.margin_call_jpy,
                margin_checked_at=margin.checked_at.isoformat() if margin.checked_at else None,
                margin_alert=margin.alert,
                budgets=self._budgets(now),
                loop_lag_ms=round(m.loop_lag_ms, 2),
                loop_lag_max_ms=round(m.loop_lag_max_ms, 2),
            ),
            storage=self._storage_view(),
            counters=Counters.model_construct(
                orders_sent=m.orders_sent,
                orders_cancelled=m.orders_cancelled,
                fills=m.fills,
                board_messages=m.board_messages,
                exchange_errors=m.exchange_errors,
                reconnects=m.reconnects,
                other_product_events=m.other_product_events,
            ),
            decisions=list(h.recent_decisions),
            fills=list(h.recent_fills),
            chart=Chart.model_construct(
                mid=list(h.chart_mid), fills=list(h.chart_fills), pnl=list(h.chart_pnl)
            ),
            config={
                "strategy": cfg.strategy.model_dump(mode="json"),
                "risk": cfg.risk.model_dump(mode="json"),
            },
        )

    def _storage_view(self) -> StorageView:
        faults = self._storage.faults()
        return StorageView.model_construct(
            ok=not faults,
            message=self._storage.message(),
            faults=[
                StorageFaultView.model_construct(
                    file=f.file,
                    path=f.path,
                    errno=f.errno,
                    error=f.error,
                    since=f.since.isoformat(),
                    failures=f.failures,
                    rows_held=f.rows_held,
                )
                for f in faults
            ],
            rows_held=sum(lg.rows_held for lg in self._csv_logs),
            rows_dropped=self._storage.rows_dropped,
        )
