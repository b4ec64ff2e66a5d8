"""FillPath: a fill, once, into everything that must know it — the ledger (InventoryManager, the one place a
fill's identity is de-duplicated), the trades CSV, the dashboard, the runtime log — then the state file after
the trade row. A fill after a kill makes the settle look again (flatten what it left). The rows that are not
fills but move the ledger go to the trades CSV here too, so it still sums to the ledger: a position
`correction` and a booked `holding_cost`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from loguru import logger

from bot.dashboard_view import DashboardHistory
from bot.engine.inventory import FillResult, HoldingCostResult, InventoryManager
from bot.engine.markouts import Markouts
from bot.infra.bitflyer_parse import CollateralHistoryRow
from bot.infra.logging_structured import CORRECTION_TAG, HOLDING_COST_TAG, TradeLogger
from bot.links import RunnerMetrics, VenueLinks
from bot.run_state import RunStateMachine
from bot.settle_report import SettleReporter
from bot.types.dto import Fill, RunState, Side, TradeLogRow
from bot.types.exchange import HoldingCostKind

STRATEGY_NAME = "stall_then_strike"
FRESH_FILL = timedelta(seconds=10)  # older fills came from a reconcile, not the feed (clock skew aside)


class FillPath:
    def __init__(
        self,
        *,
        inventory: InventoryManager,
        trade_log: TradeLogger,
        history: DashboardHistory,
        run_state: RunStateMachine,
        links: VenueLinks,
        metrics: RunnerMetrics,
        settle_report: SettleReporter,
        markouts: Markouts,
    ) -> None:
        self._markouts = markouts
        self._settle_report = settle_report
        self._inventory = inventory
        self._trade_log = trade_log
        self._history = history
        self._run_state = run_state
        self._links = links
        self._metrics = metrics

    def apply(self, fill: Fill, now: int) -> None:
        inv = self._inventory
        result = inv.apply_fill(fill, now)
        if result.duplicate:
            return
        self._metrics.fills += 1
        wall = datetime.now(UTC)
        if (
            wall - fill.exec_date <= FRESH_FILL
        ):  # a fill learnt late (from REST) is marked from the wrong time
            self._markouts.on_fill(now, fill.side, fill.price, fill.size)  # its worth 1, 5, 30 s later
        self._trade_log.log(trade_row(fill, result, inv.position_btc))
        self._history.on_fill(fill, result.realized_pnl_jpy, wall)
        logger.info(
            "fill {} {} @ {} ({}) → position {} realized {}",
            fill.side.value,
            fill.size,
            fill.price,
            fill.tag,
            inv.position_btc,
            result.realized_cum_jpy,
        )
        self._settle_report.on_fill(fill, result.realized_pnl_jpy)
        if self._run_state.state is RunState.KILLED and self._links.settler is not None:
            self._links.settler.poke()  # a fill after the kill: flatten again
        self._run_state.save_after(self._trade_log.aflush)

    def record_correction(self, delta: Decimal, effect: Decimal) -> None:
        """The venue's position was adopted: a `correction` row (its size and PnL effect at the mark) so the
        trades CSV still sums to the ledger."""
        inv = self._inventory
        self._trade_log.log(
            TradeLogRow(
                ts=datetime.now(UTC),
                order_id="",
                side=Side.BUY if delta > 0 else Side.SELL,
                price=inv.mark_price or Decimal(0),
                size=abs(delta),
                fee=Decimal(0),
                strategy=STRATEGY_NAME,
                tag=CORRECTION_TAG,
                pnl_jpy=effect,
                pnl_cum_jpy=inv.realized_pnl_jpy,
                inventory_after=inv.position_btc,
                exec_id="",
            )
        )
        self._run_state.save_soon()

    def record_holding_cost(
        self, row: CollateralHistoryRow, kind: HoldingCostKind, result: HoldingCostResult
    ) -> None:
        """A holding cost the ledger booked: a `holding_cost` row (no side or size; its PnL is the
        collateral's change) dated as the venue dated it, then the state file after the row."""
        inv = self._inventory
        self._trade_log.log(
            TradeLogRow(
                ts=row.date,
                order_id="",
                side=None,
                price=Decimal(0),
                size=Decimal(0),
                fee=Decimal(0),
                strategy=STRATEGY_NAME,
                tag=HOLDING_COST_TAG,
                pnl_jpy=row.change,
                pnl_cum_jpy=result.realized_cum_jpy,
                inventory_after=inv.position_btc,
                exec_id=f"collateral-{row.row_id}",
            )
        )
        logger.warning(
            "holding cost {} ({}): {} JPY booked in trading day {}{} → realized {}",
            kind.value,
            row.reason_code,
            result.cost_jpy,
            result.trading_day,
            "" if result.today else " (a past day: not in today's PnL)",
            result.realized_cum_jpy,
        )
        self._run_state.save_after(self._trade_log.aflush)


def trade_row(fill: Fill, result: FillResult, position_after: Decimal) -> TradeLogRow:
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
