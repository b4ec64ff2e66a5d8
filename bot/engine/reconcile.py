"""The reconciler: the venue's REST answers, as named reports, against what the bot believes. Pure.

The venue's answers arrive as a `VenueReports` (order status reports from the ACTIVE listing, fill reports
from the executions, position lots from getpositions), taken in the order executions → positions → executions,
so a fill that landed while the snapshot was being taken is seen (`lots_consistent=False`).
`Reconciler.reconcile` turns (our orders, our ledger, the reports) into a `ReconcileResult`; the runner
applies it. Rules:

- **Fills first.** Every execution the ledger has not applied becomes a fill to apply — its PnL is realized,
  not swallowed by adopting the venue's lots.
- **A position correction only when the replay still disagrees**: our position plus the missing fills against
  the venue's, and only when the snapshot was consistent (no fill landed between the calls).
- **An order is gone only on evidence**: absence from two ACTIVE listings that were both requested after we
  learnt the order's acceptance id (or, for a send whose answer was lost, after we sent it) and at least
  `grace` apart. Absence from one listing is weak: bitFlyer may not list an order accepted a moment ago. (An
  order's own CANCEL / EXPIRE / fill events settle it without the reconciler.)
- **Unknown sends** (no acceptance id: the answer was lost) are matched with an untracked ACTIVE row of the
  same side, size and price; untracked rows left over are adopted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from bot.types.dto import Fill, OrderState, OwnOrder, Side

Lot = tuple[Side, Decimal, Decimal]


@dataclass(frozen=True, slots=True)
class OrderStatusReport:
    """One order the venue lists as ACTIVE."""

    acceptance_id: str
    side: Side
    order_type: str
    price: Decimal | None  # None for MARKET
    size: Decimal
    executed_size: Decimal


@dataclass(frozen=True, slots=True)
class VenueReports:
    listed_at: int  # monotonic ns at which the ACTIVE listing was requested
    active: tuple[OrderStatusReport, ...]
    fills: tuple[Fill, ...]  # this product's executions (newest pages), any order
    lots: tuple[Lot, ...]  # this product's position lots
    lots_consistent: bool  # no execution landed between the executions and positions calls


@dataclass(slots=True)
class ReconcileResult:
    found: list[tuple[str, str]] = field(default_factory=list)  # (client_id, acceptance_id) of lost sends
    confirmed: list[str] = field(default_factory=list)  # UNKNOWN orders seen resting
    gone: list[tuple[str, OrderState]] = field(default_factory=list)  # (client_id, final state)
    adopted: list[OrderStatusReport] = field(default_factory=list)  # resting orders we never tracked
    fills: list[Fill] = field(default_factory=list)  # missing executions, oldest first
    correction: tuple[Lot, ...] | None = None  # venue lots to adopt after the fills
    venue_position: Decimal = Decimal(0)
    expected_position: Decimal = Decimal(0)  # ours after the missing fills


def exec_order_key(fill: Fill) -> tuple[int, str]:
    """bitFlyer's execution ids are increasing integers; order by them (numerically), ties by the raw id."""
    eid = fill.exec_id
    return (int(eid), eid) if eid.isdigit() else (-1, eid)


def net_of(lots: Iterable[Lot]) -> Decimal:
    return sum((side.sign * size for side, _, size in lots), Decimal(0))


class Reconciler:
    """Pure. Remembers, between runs, the listing at which each open order was first missing."""

    def __init__(self, grace_ns: int = 3_000_000_000) -> None:
        self.grace_ns = grace_ns
        self._absent_since: dict[str, int] = {}  # client_id -> listed_at of its first absence

    def reconcile(
        self,
        open_orders: Iterable[OwnOrder],
        reports: VenueReports,
        *,
        is_tracked: Callable[[str], bool],
        is_applied: Callable[[Fill], bool],
        position: Decimal,
    ) -> ReconcileResult:
        res = ReconcileResult()
        active = {r.acceptance_id: r for r in reports.active}
        matched: set[str] = set()
        t = reports.listed_at
        still_open: set[str] = set()
        for order in open_orders:
            still_open.add(order.client_id)
            aid = order.acceptance_id
            if aid is not None:
                if aid in active:
                    matched.add(aid)
                    self._absent_since.pop(order.client_id, None)
                    if order.state is OrderState.UNKNOWN:
                        res.confirmed.append(order.client_id)
                    continue
                since = order.accepted_at if order.accepted_at is not None else order.placed_at
                if self._absent_twice(order.client_id, since, t):
                    final = OrderState.FILLED if order.outstanding <= 0 else OrderState.CANCELED
                    res.gone.append((order.client_id, final))
                continue
            if order.state is not OrderState.UNKNOWN:
                continue  # PENDING_NEW: its answer is on the way
            row = next(
                (
                    r
                    for a, r in active.items()
                    if a not in matched
                    and not is_tracked(a)
                    and r.side is order.side
                    and r.size == order.size
                    and (order.price is None or r.price == order.price)
                ),
                None,
            )
            if row is not None:
                matched.add(row.acceptance_id)
                self._absent_since.pop(order.client_id, None)
                res.found.append((order.client_id, row.acceptance_id))
            elif self._absent_twice(order.client_id, order.placed_at, t):
                res.gone.append((order.client_id, OrderState.REJECTED))
        for cid in [c for c in self._absent_since if c not in still_open]:
            del self._absent_since[cid]
        for cid, _ in res.gone:
            self._absent_since.pop(cid, None)
        res.adopted = [r for a, r in active.items() if a not in matched and not is_tracked(a)]

        seen: set[str] = set()
        for fill in sorted(reports.fills, key=exec_order_key):
            key = fill.dedupe_key
            if key in seen or is_applied(fill):
                continue
            seen.add(key)
            res.fills.append(fill)
        expected = position + sum((f.side.sign * f.size for f in res.fills), Decimal(0))
        res.expected_position = expected
        res.venue_position = net_of(reports.lots)
        if reports.lots_consistent and expected != res.venue_position:
            res.correction = tuple(reports.lots)
        return res

    def _absent_twice(self, client_id: str, since: int, listed_at: int) -> bool:
        """Record an absence at `listed_at`; True once two absences after `since` are `grace` apart."""
        if listed_at <= since:
            return False  # the listing was asked for before the order existed for the venue: no evidence
        first = self._absent_since.setdefault(client_id, listed_at)
        return listed_at - first >= self.grace_ns

    def forget(self, client_id: str) -> None:
        self._absent_since.pop(client_id, None)

    @property
    def pending_absences(self) -> int:
        return len(self._absent_since)
