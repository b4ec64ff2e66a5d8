"""AccountWatch: the account's money as the venue reports it, polled over REST within the budget.

- **Margin watch** (`getcollateral`): while `keep_rate` is below `risk.min_keep_rate` entries are blocked
  (`Reason.MARGIN_LOW`), with one warning when it starts and one line when it ends. A margin call
  (`margin_call_amount > 0`) blocks entries too (`Reason.MARGIN_CALL`) and, with `risk.kill_on_margin_call`,
  kills a trading bot (RUNNING or PAUSED): flat and no orders, the reason naming the call.
- **Holding costs** (`getcollateralhistory`): the rows after the ledger's cost watermark (paged back to it),
  oldest first; each funding / leverage-point row is booked once into the ledger in the trading day of its
  date, and written to the trades CSV (`holding_cost`). A first start (no watermark) reads the history as a
  baseline and books none of it. Reason codes are read through the built-in mapping plus
  `exchange.collateral_reasons`; an unknown code is named once in the log and not booked unless configured
  (`exchange.unknown_collateral_*`). A page that cannot be read books nothing (the rows come again next poll).

A failed call keeps the last known figures: REST faults are normal, and the venue refuses orders past its
margin anyway. Imports engine, infra, the links and the run-state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from loguru import logger

from bot.config.loader import AppConfig
from bot.engine.inventory import HoldingCostResult, InventoryManager
from bot.engine.rate_budget import RateBudget, exit_reserve
from bot.infra.bitflyer_parse import (
    CollateralHistoryRow,
    CollateralStatus,
    ParseError,
    parse_collateral,
    parse_collateral_history,
)
from bot.links import VenueLinks
from bot.run_state import RunStateMachine
from bot.types.dto import Reason, RunState
from bot.types.exchange import DEFAULT_COLLATERAL_REASONS, ExchangeError, HoldingCostKind

HISTORY_PAGE = 100
HISTORY_MAX_PAGES = 10  # getcollateralhistory pages read back to the watermark in one poll
CALLS_PER_POLL = 2  # getcollateral + one history page, the usual cost of a poll


def classify_row(row: CollateralHistoryRow, cfg: AppConfig) -> tuple[HoldingCostKind, bool]:
    """What a collateral-history row is to the ledger, and whether its reason code was unknown."""
    if row.currency_code.upper() != "JPY":
        return HoldingCostKind.IGNORE, False
    ex = cfg.exchange
    mapped = ex.collateral_reasons.get(row.reason_code)
    if mapped is not None:
        return HoldingCostKind(mapped), False
    known = DEFAULT_COLLATERAL_REASONS.get(row.reason_code)
    if known is not None:
        return known, False
    policy = ex.unknown_collateral_debit if row.change < 0 else ex.unknown_collateral_credit
    return (HoldingCostKind.OTHER_COST if policy == "holding_cost" else HoldingCostKind.IGNORE), True


@dataclass(frozen=True, slots=True)
class MarginView:
    keep_rate: Decimal | None
    margin_call_jpy: Decimal
    margin_call_due: str | None
    alert: str | None  # one line for the trader; None when all is well
    checked_at: datetime | None


class AccountWatch:
    def __init__(
        self,
        *,
        config: Callable[[], AppConfig],
        links: VenueLinks,
        inventory: InventoryManager,
        rest_budget: RateBudget,
        run_state: RunStateMachine,
        clock: Callable[[], int],
        on_cost: Callable[[CollateralHistoryRow, HoldingCostKind, HoldingCostResult], None],
    ) -> None:
        self._config = config
        self._links = links
        self._inventory = inventory
        self._rest_budget = rest_budget
        self._run_state = run_state
        self._clock = clock
        self._on_cost = on_cost
        # decide again: a margin block that starts or ends changes what may be done (set by the runner)
        self.after: Callable[[], None] = lambda: None
        self.status: CollateralStatus | None = None
        self.checked_at: datetime | None = None  # the last getcollateral answer
        self.history_read_at: datetime | None = None  # the last complete read of the collateral history
        self._low = False
        self._unknown_codes: set[str] = set()
        self._killed_for: tuple[Decimal, str | None] | None = None  # the margin call a kill was made for
        self._alerted_for: tuple[Decimal, str | None] | None = None  # the margin call last logged

    # ---------------------------------------------------------------- what may be done
    def block_reason(self) -> Reason | None:
        if self._margin_call() is not None:
            return Reason.MARGIN_CALL
        return Reason.MARGIN_LOW if self._low else None

    def _margin_call(self) -> tuple[Decimal, str | None] | None:
        st = self.status
        if st is None or st.margin_call_amount <= 0:
            return None
        return st.margin_call_amount, st.margin_call_due_date

    def _keep_rate_low(self, st: CollateralStatus) -> bool:
        floor = self._config().risk.min_keep_rate
        # with no position bitFlyer reports keep_rate 0 (nothing required): nothing to watch
        return floor > 0 and st.require_collateral > 0 and st.keep_rate < floor

    def view(self) -> MarginView:
        st = self.status
        return MarginView(
            keep_rate=None if st is None else st.keep_rate,
            margin_call_jpy=Decimal(0) if st is None else st.margin_call_amount,
            margin_call_due=None if st is None else st.margin_call_due_date,
            alert=self.alert(),
            checked_at=self.checked_at,
        )

    def alert(self) -> str | None:
        call = self._margin_call()
        if call is not None:
            return f"margin call {call[0]:,.0f} JPY due {call[1] or 'unknown'}: entries blocked"
        if self._low and self.status is not None:
            return (
                f"keep rate {self.status.keep_rate:.4f} below {self._config().risk.min_keep_rate}: "
                "entries blocked"
            )
        return None

    # ---------------------------------------------------------------- the poll
    async def poll(self) -> None:
        """One look at the account: collateral (keep rate, margin call), then the collateral history. Skipped
        while the REST budget is down to the reserve kept for cancels, closes, reconciliation and a kill."""
        if self._links.http is None or not self._budget_ok():
            return
        try:
            await self._poll_collateral()
            if self._budget_ok():
                await self._poll_history()
        except Exception:  # a bug here must not stop the housekeeping loop that calls it
            logger.exception("account poll failed")

    def _budget_ok(self) -> bool:
        budget = self._rest_budget
        return budget.available(self._clock()) > exit_reserve(budget) + CALLS_PER_POLL

    async def _poll_collateral(self) -> None:
        assert self._links.http is not None
        try:
            st = parse_collateral(await self._links.http.get_collateral())
        except (ExchangeError, ParseError) as e:
            logger.warning("getcollateral failed: {}; margin figures are the last known", e)
            return
        self.status, self.checked_at = st, datetime.now(UTC)
        low = self._keep_rate_low(st)
        if low != self._low:
            self._low = low
            floor = self._config().risk.min_keep_rate
            if low:
                logger.warning(
                    "margin: keep rate {} below risk.min_keep_rate {}: entries blocked", st.keep_rate, floor
                )
            else:
                logger.warning(
                    "margin: keep rate {} back at or above {}: entries allowed", st.keep_rate, floor
                )
            self.after()
        self._on_margin_call()

    def _on_margin_call(self) -> None:
        call = self._margin_call()
        if call is None:
            if self._alerted_for is not None:
                logger.warning("margin: the venue's margin call is cleared")
            self._alerted_for = self._killed_for = None
            return
        amount, due = call
        reason = f"kill: margin call {amount:,.0f} JPY due {due or 'unknown'}"
        run, kill = self._run_state, self._config().risk.kill_on_margin_call
        # one kill per call: a human's reset is not undone by the same call at the next poll
        if kill and call != self._killed_for and run.state in (RunState.RUNNING, RunState.PAUSED):
            self._killed_for = self._alerted_for = call
            logger.error("margin: {}", reason)
            run.enter_killed(reason, "margin_call")
        elif call != self._alerted_for:
            self._alerted_for = call
            why = "risk.kill_on_margin_call is false" if not kill else f"state {run.state.value}"
            logger.error("margin: {} not acted on ({}): entries blocked", reason.removeprefix("kill: "), why)
        self.after()

    async def _poll_history(self) -> None:
        assert self._links.http is not None
        inv = self._inventory
        mark = inv.cost_watermark
        rows: list[CollateralHistoryRow] = []
        before: int | None = None
        try:
            for page_no in range(HISTORY_MAX_PAGES):
                raw = await self._links.http.get_collateral_history(count=HISTORY_PAGE, before=before)
                page = parse_collateral_history(raw)
                rows.extend(page)
                ids = [r.row_id for r in page]
                if len(raw) < HISTORY_PAGE or not ids or mark is None or min(ids) <= mark:
                    break
                before = min(ids)
                if page_no + 1 < HISTORY_MAX_PAGES and not self._budget_ok():
                    logger.warning("collateral history: REST budget low; the rest is read next poll")
                    return  # nothing booked from a partial read: the next poll reads it whole
            else:
                logger.error(
                    "collateral history: rows since id {} span more than {} pages; the oldest unread are "
                    "not booked",
                    mark,
                    HISTORY_MAX_PAGES,
                )
        except (ExchangeError, ParseError) as e:
            logger.warning("getcollateralhistory failed: {}; holding costs are read next poll", e)
            return
        self.history_read_at = datetime.now(UTC)
        if mark is None:
            # a first start: the venue's history is the past, already in the collateral; never booked
            inv.baseline_costs(max((r.row_id for r in rows), default=0))
            logger.info("collateral history baselined at row {}", inv.cost_watermark)
            return
        booked = False
        for row in sorted(rows, key=lambda r: r.row_id):
            if inv.is_cost_booked(row.row_id):
                continue
            kind, unknown = classify_row(row, self._config())
            if unknown and row.reason_code not in self._unknown_codes:
                self._unknown_codes.add(row.reason_code)
                logger.warning(
                    "collateral history: unknown reason_code {!r} (change {} JPY) read as {}; map it in "
                    "exchange.collateral_reasons",
                    row.reason_code,
                    row.change,
                    kind.value,
                )
            if not kind.is_cost:
                inv.baseline_costs(row.row_id)  # read, and not a cost: never looked at again
                continue
            result = inv.apply_holding_cost(row.row_id, row.change, row.date)
            if not result.duplicate:
                booked = True
                self._on_cost(row, kind, result)
        if booked:
            self.after()  # the kill switch looks at today's PnL with the cost in it now
