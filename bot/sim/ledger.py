"""Accounts at the venue: child orders, executions, positions as FIFO lots, collateral, realized PnL, holding
costs and the collateral history. Pure.

This is the truth the bot is checked against. Prices are integer yen, sizes integer satoshi; money is Decimal.
Crypto CFD: no trading fee (commission 0); realized PnL and holding costs (funding, leverage points) go
straight into collateral, each a row of the collateral history (getcollateralhistory).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from bot.sim.wire import SAT_PER_BTC, sat_to_btc
from bot.types.dto import Side
from bot.types.exchange import CollateralReason

_SAT = Decimal(SAT_PER_BTC)
FINISHED_KEPT = 20_000  # finished orders a venue account remembers (getchildorders pages)
HISTORY_KEPT = 20_000  # collateral-history rows an account remembers


class ChildOrderState(StrEnum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"


@dataclass(slots=True)
class ChildOrder:
    seq: int  # the row id once no longer ACTIVE (getchildorders shows 0 while ACTIVE)
    api_key: str
    acceptance_id: str
    child_order_id: str
    side: Side
    order_type: str  # LIMIT | MARKET
    price: int  # 0 for MARKET
    size: int
    time_in_force: str
    order_ns: int  # wall clock
    expire_ns: int  # wall clock
    expire_at: int  # monotonic, when the venue expires it
    executed: int = 0
    notional: int = 0  # sum(price * size) of executions, for average_price
    cancel_size: int = 0
    state: ChildOrderState = ChildOrderState.ACTIVE

    @property
    def outstanding(self) -> int:
        return self.size - self.executed - self.cancel_size

    @property
    def average_price(self) -> Decimal:
        return Decimal(self.notional) / Decimal(self.executed) if self.executed else Decimal(0)

    @property
    def size_btc(self) -> Decimal:
        return sat_to_btc(self.size)

    @property
    def outstanding_btc(self) -> Decimal:
        return sat_to_btc(self.outstanding)

    @property
    def executed_btc(self) -> Decimal:
        return sat_to_btc(self.executed)


@dataclass(frozen=True, slots=True)
class Execution:
    exec_id: int
    api_key: str
    acceptance_id: str
    child_order_id: str
    side: Side
    price: int
    size: int
    exec_ns: int  # wall clock
    commission: int = 0

    @property
    def size_btc(self) -> Decimal:
        return sat_to_btc(self.size)

    @property
    def price_jpy(self) -> Decimal:
        return Decimal(self.price)


@dataclass(slots=True)
class Lot:
    side: Side
    price: int
    size: int
    open_ns: int  # wall clock


@dataclass(frozen=True, slots=True)
class CollateralRow:
    """One getcollateralhistory row: a change of collateral (signed JPY) and the collateral after it."""

    row_id: int
    change: Decimal
    amount: Decimal
    reason_code: str
    wall_ns: int


@dataclass(slots=True)
class Account:
    api_key: str
    collateral_start: Decimal
    leverage: int
    lots: deque[Lot] = field(default_factory=deque)
    realized: Decimal = Decimal(0)
    executions: list[Execution] = field(default_factory=list)
    orders: dict[str, ChildOrder] = field(default_factory=dict)  # acceptance id -> order
    by_child_id: dict[str, str] = field(default_factory=dict)  # child order id -> acceptance id
    active: dict[str, ChildOrder] = field(default_factory=dict)  # the ACTIVE ones, for cheap scans
    finished: deque[str] = field(default_factory=deque)  # finished acceptance ids, oldest first
    holding_costs: Decimal = Decimal(0)  # funding and leverage points paid (a credit lowers it)
    adjusted: Decimal = Decimal(0)  # collateral set by hand (/_sim/collateral): neither PnL nor a cost
    history: deque[CollateralRow] = field(default_factory=lambda: deque(maxlen=HISTORY_KEPT))
    margin_call_amount: Decimal = Decimal(0)
    margin_call_due_date: str | None = None

    def position_sat(self) -> int:
        return sum(lot.size if lot.side is Side.BUY else -lot.size for lot in self.lots)


def _pnl(lot_side: Side, entry: int, exit_: int, size: int) -> Decimal:
    """PnL of closing `size` sat of a lot bought/sold at `entry` at price `exit_`; exact."""
    diff = (exit_ - entry) if lot_side is Side.BUY else (entry - exit_)
    return Decimal(diff * size) / _SAT


class Ledger:
    def __init__(self, collateral_jpy: Decimal = Decimal(10_000_000), leverage: int = 2) -> None:
        self._accounts: dict[str, Account] = {}
        self._collateral = collateral_jpy
        self._leverage = leverage
        self._row_ids = itertools.count(70_000_000)  # collateral-history ids, increasing across accounts

    # ---- accounts ------------------------------------------------------------------------------------------
    def add_account(self, api_key: str, collateral_jpy: Decimal | None = None) -> Account:
        if api_key not in self._accounts:
            self._accounts[api_key] = Account(
                api_key, self._collateral if collateral_jpy is None else collateral_jpy, self._leverage
            )
        return self._accounts[api_key]

    def account(self, api_key: str) -> Account:
        return self._accounts[api_key]

    def has_account(self, api_key: str) -> bool:
        return api_key in self._accounts

    def api_keys(self) -> list[str]:
        return list(self._accounts)

    # ---- the questions tests ask ---------------------------------------------------------------------------
    def position(self, api_key: str) -> Decimal:
        """Signed BTC: long > 0, short < 0."""
        return sat_to_btc(self.account(api_key).position_sat())

    def open_orders(self, api_key: str) -> list[ChildOrder]:
        return list(self.account(api_key).active.values())

    def realized_pnl(self, api_key: str) -> Decimal:
        """What the account made: trading PnL less holding costs (the bot's realized PnL must equal it)."""
        acct = self.account(api_key)
        return acct.realized - acct.holding_costs

    def trading_pnl(self, api_key: str) -> Decimal:
        return self.account(api_key).realized

    def holding_costs(self, api_key: str) -> Decimal:
        """Funding and leverage points paid so far (positive = paid)."""
        return self.account(api_key).holding_costs

    def collateral_history(self, api_key: str) -> list[CollateralRow]:
        return list(self.account(api_key).history)

    def executions(self, api_key: str) -> list[Execution]:
        return list(self.account(api_key).executions)

    def lots(self, api_key: str) -> list[Lot]:
        return list(self.account(api_key).lots)

    def average_price(self, api_key: str) -> Decimal | None:
        lots = self.account(api_key).lots
        size = sum(lot.size for lot in lots)
        if not size:
            return None
        return Decimal(sum(lot.price * lot.size for lot in lots)) / Decimal(size)

    # ---- orders --------------------------------------------------------------------------------------------
    def add_order(self, order: ChildOrder) -> None:
        acct = self.account(order.api_key)
        acct.orders[order.acceptance_id] = order
        acct.by_child_id[order.child_order_id] = order.acceptance_id
        if order.state is ChildOrderState.ACTIVE:
            acct.active[order.acceptance_id] = order

    def find_order(
        self, api_key: str, acceptance_id: str | None = None, child_order_id: str | None = None
    ) -> ChildOrder | None:
        acct = self.account(api_key)
        if acceptance_id:
            return acct.orders.get(acceptance_id)
        if child_order_id:
            aid = acct.by_child_id.get(child_order_id)
            return acct.orders.get(aid) if aid else None
        return None

    def finish_order(self, order: ChildOrder, state: ChildOrderState) -> int:
        """Cancel / expire what is left of an order. Returns the size that was outstanding."""
        left = order.outstanding
        order.cancel_size += left
        order.state = state
        acct = self.account(order.api_key)
        acct.active.pop(order.acceptance_id, None)
        self._finished(acct, order)
        return left

    def _finished(self, acct: Account, order: ChildOrder) -> None:
        """Bounded memory over a long day: the oldest finished orders are forgotten past FINISHED_KEPT."""
        acct.finished.append(order.acceptance_id)
        while len(acct.finished) > FINISHED_KEPT:
            old = acct.orders.pop(acct.finished.popleft(), None)
            if old is not None:
                acct.by_child_id.pop(old.child_order_id, None)

    # ---- fills ---------------------------------------------------------------------------------------------
    def apply_fill(self, order: ChildOrder, exec_id: int, price: int, size: int, wall_ns: int) -> Decimal:
        """One execution of `order`. Updates the order, lots (FIFO) and realized PnL; returns the PnL
        realized."""
        if size <= 0 or size > order.outstanding:
            raise ValueError(f"fill of {size} sat on an order with {order.outstanding} outstanding")
        acct = self.account(order.api_key)
        order.executed += size
        order.notional += price * size
        if order.outstanding == 0:
            order.state = ChildOrderState.COMPLETED
            acct.active.pop(order.acceptance_id, None)
            self._finished(acct, order)
        acct.executions.append(
            Execution(
                exec_id,
                order.api_key,
                order.acceptance_id,
                order.child_order_id,
                order.side,
                price,
                size,
                wall_ns,
            )
        )
        realized = Decimal(0)
        left = size
        while left and acct.lots and acct.lots[0].side is not order.side:
            lot = acct.lots[0]
            q = min(left, lot.size)
            realized += _pnl(lot.side, lot.price, price, q)
            lot.size -= q
            left -= q
            if lot.size == 0:
                acct.lots.popleft()
        if left:
            acct.lots.append(Lot(order.side, price, left, wall_ns))
        acct.realized += realized
        if realized:
            self._history_row(acct, realized, CollateralReason.TRADE_PNL, wall_ns)
        return realized

    # ---- holding costs and collateral ----------------------------------------------------------------------
    def charge(self, api_key: str, change: Decimal, reason_code: str, wall_ns: int) -> CollateralRow:
        """A holding cost: `change` (signed JPY; negative = paid) into collateral and its history."""
        acct = self.account(api_key)
        acct.holding_costs -= change
        return self._history_row(acct, change, reason_code, wall_ns)

    def set_collateral(self, api_key: str, collateral: Decimal) -> None:
        """Collateral set by hand (a deposit or a withdrawal): not PnL, no history row."""
        acct = self.account(api_key)
        acct.adjusted += collateral - self.collateral(api_key)

    def set_margin_call(self, api_key: str, amount: Decimal, due_date: str | None) -> None:
        acct = self.account(api_key)
        acct.margin_call_amount = amount
        acct.margin_call_due_date = due_date if amount > 0 else None

    def _history_row(self, acct: Account, change: Decimal, reason_code: str, wall_ns: int) -> CollateralRow:
        row = CollateralRow(next(self._row_ids), change, self.collateral(acct.api_key), reason_code, wall_ns)
        acct.history.append(row)
        return row

    # ---- money ---------------------------------------------------------------------------------------------
    def open_pnl(self, api_key: str, mark: Decimal) -> Decimal:
        total = Decimal(0)
        for lot in self.account(api_key).lots:
            diff = (mark - lot.price) if lot.side is Side.BUY else (lot.price - mark)
            total += diff * lot.size / _SAT
        return total

    def require_collateral(self, api_key: str) -> Decimal:
        acct = self.account(api_key)
        return sum((Decimal(lot.price * lot.size) / _SAT for lot in acct.lots), Decimal(0)) / acct.leverage

    def collateral(self, api_key: str) -> Decimal:
        acct = self.account(api_key)
        return acct.collateral_start + acct.realized - acct.holding_costs + acct.adjusted

    def free_margin(self, api_key: str, mark: Decimal) -> Decimal:
        return self.collateral(api_key) + self.open_pnl(api_key, mark) - self.require_collateral(api_key)

    def order_margin(self, api_key: str, mark: Decimal, extra_size: int) -> Decimal:
        """Collateral the open orders plus `extra_size` would need at `mark` if they all opened positions."""
        acct = self.account(api_key)
        open_sat = sum(o.outstanding for o in acct.active.values())
        return mark * (open_sat + extra_size) / _SAT / acct.leverage
