"""OrderTracker: our own orders as we know them, kept from our requests and child_order_events. Pure.

bitFlyer does not echo tags, and child_order_events for an order can arrive before the sendchildorder response
that tells us its acceptance id; events for ids we do not know yet are parked and replayed on acceptance.
Every new EXECUTION becomes a Fill at once; one that cannot be of the order it names (the order is finished,
or the size would take it past its own) comes back as a SuspectFill, for the caller to verify over REST.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from bot.types.dto import (
    ChildOrderEvent,
    ChildOrderEventType,
    Fill,
    OrderState,
    OwnOrder,
    Reason,
    Side,
)

_FINAL = (OrderState.FILLED, OrderState.CANCELED, OrderState.EXPIRED, OrderState.REJECTED)
UNTRACKED_TAG = "untracked"


@dataclass(frozen=True, slots=True)
class SuspectFill:
    """An execution the venue cannot have made for the order it names: not applied until REST shows it."""

    fill: Fill
    why: str


class OrderTracker:
    def __init__(self, keep_finished: int = 500) -> None:
        self._seq = itertools.count(1)
        self._orders: dict[str, OwnOrder] = {}  # client_id -> order
        # orders that may still be open; finished ones are dropped lazily on read. Decisions read the open
        # orders on every board message, and the finished ones (kept for lookups) would otherwise be scanned
        # each time.
        self._maybe_open: dict[str, OwnOrder] = {}
        self._by_acceptance: dict[str, str] = {}  # acceptance id -> client_id
        self._parked: dict[str, list[ChildOrderEvent]] = {}
        self._parked_cap = 1000
        self._keep_finished = keep_finished

    # ---- requests we make -------------------------------------------------------------------------
    def new_order(
        self,
        *,
        tag: str,
        side: Side,
        order_type: str,
        price: Decimal | None,
        size: Decimal,
        now: int,
        ttl_ms: int | None = None,
        reason: Reason | None = None,
    ) -> OwnOrder:
        order = OwnOrder(
            client_id=f"c{next(self._seq)}",
            tag=tag,
            side=side,
            order_type=order_type,
            price=price,
            size=size,
            placed_at=now,
            ttl_ms=ttl_ms,
            reason=reason,
        )
        self._orders[order.client_id] = order
        self._maybe_open[order.client_id] = order
        return order

    def on_accepted(self, client_id: str, acceptance_id: str, now: int | None = None) -> None:
        """The venue answered with an acceptance id: the order rests (or already traded). Replays parked
        events; their fills were already reported when they arrived, so only the order's state moves here."""
        order = self._orders[client_id]
        order.acceptance_id = acceptance_id
        order.accepted_at = now if now is not None else order.placed_at
        self._by_acceptance[acceptance_id] = client_id
        if order.state in (OrderState.PENDING_NEW, OrderState.UNKNOWN):
            order.state = OrderState.ACTIVE
        for ev in self._parked.pop(acceptance_id, []):
            if ev.event_type is ChildOrderEventType.EXECUTION:
                key = _execution_key(ev)
                if key not in order.heard_executions:  # a parked event sent twice counts once
                    order.heard_executions.add(key)
                    self._apply_execution(order, ev)
            else:
                self.on_event(ev)

    def on_rejected(self, client_id: str, error: str) -> None:
        """The venue said no (a typed bitFlyer error): the order never existed."""
        order = self._orders[client_id]
        order.state = OrderState.REJECTED
        order.last_error = error

    def on_unknown(self, client_id: str, error: str) -> None:
        """Timeout / 5xx / non-JSON: it may or may not rest. Open until reconciliation settles it."""
        order = self._orders[client_id]
        if order.state is OrderState.PENDING_NEW or order.state is OrderState.PENDING_CANCEL:
            order.state = OrderState.UNKNOWN
        order.last_error = error

    def on_cancel_requested(self, client_id: str) -> None:
        order = self._orders[client_id]
        if order.state is OrderState.ACTIVE:
            order.state = OrderState.PENDING_CANCEL

    def settle(self, client_id: str, state: OrderState) -> None:
        """Reconciliation's verdict on an order (e.g. not ACTIVE at the venue any more)."""
        order = self._orders[client_id]
        order.state = state
        if state.is_open:
            self._maybe_open[client_id] = order

    def adopt(
        self,
        acceptance_id: str,
        side: Side,
        price: Decimal | None,
        size: Decimal,
        executed: Decimal,
        now: int,
        order_type: str = "LIMIT",
    ) -> OwnOrder:
        """An order the venue has that we never tracked (placed by a lost session or by hand)."""
        order = self.new_order(
            tag=UNTRACKED_TAG, side=side, order_type=order_type, price=price, size=size, now=now
        )
        order.executed_size = executed
        self.on_accepted(order.client_id, acceptance_id, now)
        return order

    # ---- what the venue tells us ------------------------------------------------------------------
    def on_event(self, ev: ChildOrderEvent) -> Fill | SuspectFill | None:
        """Apply one child_order_events item. Returns the Fill for an EXECUTION not seen before (a
        SuspectFill when it cannot be of the order it names)."""
        cid = self._by_acceptance.get(ev.child_order_acceptance_id)
        order = self._orders.get(cid) if cid else None
        if ev.event_type is ChildOrderEventType.EXECUTION:
            exec_id = ev.exec_id or ""
            key = _execution_key(ev)
            if order is not None:
                if key in order.heard_executions:
                    return None  # a re-sent event
                order.heard_executions.add(key)
            elif any(_execution_key(p) == key for p in self._parked.get(ev.child_order_acceptance_id, ())):
                return None  # a re-sent event for an order whose acceptance id is still on its way
            assert ev.side is not None and ev.price is not None and ev.size is not None
            why = self._implausible(order, ev.size) if order is not None else None
            if order is not None and why is None:
                self._apply_execution(order, ev)
            elif order is None and ev.child_order_acceptance_id:
                # the order's state waits for its acceptance id; the fill itself counts now
                self._park(ev)
            fill = Fill(
                exec_id=exec_id,
                child_order_acceptance_id=ev.child_order_acceptance_id,
                side=ev.side,
                price=ev.price,
                size=ev.size,
                commission=ev.commission or Decimal(0),
                exec_date=ev.event_date,
                child_order_id=ev.child_order_id,
                tag=order.tag if order else UNTRACKED_TAG,
            )
            return fill if why is None else SuspectFill(fill, why)
        if order is None:
            if ev.child_order_acceptance_id:
                self._park(ev)
            return None
        if ev.child_order_id:
            order.child_order_id = ev.child_order_id
        match ev.event_type:
            case ChildOrderEventType.ORDER:
                if order.state in (OrderState.PENDING_NEW, OrderState.UNKNOWN):
                    order.state = OrderState.ACTIVE
            case ChildOrderEventType.ORDER_FAILED:
                order.state = OrderState.REJECTED
                order.last_error = ev.reason
            case ChildOrderEventType.CANCEL:
                order.state = OrderState.CANCELED
            case ChildOrderEventType.EXPIRE:
                order.state = OrderState.EXPIRED
            case ChildOrderEventType.CANCEL_FAILED:
                if order.state is OrderState.PENDING_CANCEL:
                    order.state = OrderState.FILLED if order.outstanding <= 0 else OrderState.ACTIVE
            case ChildOrderEventType.EXECUTION:  # handled above
                pass
        return None

    def _park(self, ev: ChildOrderEvent) -> None:
        """Hold an event until its acceptance id is known. Bounded: ids never claimed (other sessions' orders,
        hand trades) age out oldest first."""
        self._parked.setdefault(ev.child_order_acceptance_id, []).append(ev)
        while len(self._parked) > self._parked_cap:
            del self._parked[next(iter(self._parked))]

    @staticmethod
    def _implausible(order: OwnOrder, size: Decimal) -> str | None:
        """Why an execution cannot be this order's (a forged or corrupt frame), or None. Orders finished by
        inference (absent from listings) are included: a late real fill is then applied from REST instead."""
        if not order.state.is_open:
            return f"order {order.acceptance_id} is already {order.state.value}"
        if order.executed_size + size > order.size:
            return f"{size} more would fill order {order.acceptance_id} past its size {order.size}"
        return None

    @staticmethod
    def _apply_execution(order: OwnOrder, ev: ChildOrderEvent) -> None:
        order.executed_size += ev.size or Decimal(0)
        if ev.child_order_id:
            order.child_order_id = ev.child_order_id
        done = ev.outstanding_size is not None and ev.outstanding_size <= 0
        if done or order.outstanding <= 0:
            order.state = OrderState.FILLED

    # ---- queries ------------------------------------------------------------------------------------
    def get(self, client_id: str) -> OwnOrder | None:
        return self._orders.get(client_id)

    def by_acceptance(self, acceptance_id: str) -> OwnOrder | None:
        cid = self._by_acceptance.get(acceptance_id)
        return self._orders.get(cid) if cid else None

    def _open(self) -> list[OwnOrder]:
        done = [cid for cid, o in self._maybe_open.items() if not o.state.is_open]
        for cid in done:
            del self._maybe_open[cid]
        return list(self._maybe_open.values())

    def may_have_open(self) -> bool:
        """False only when no order can be open: the per-message reads skip all work then."""
        return bool(self._maybe_open)

    def open_orders(self, tag: str | None = None) -> list[OwnOrder]:
        return [o for o in self._open() if tag is None or o.tag == tag]

    def resting_levels(self) -> dict[tuple[Side, Decimal], Decimal]:
        """Outstanding size of our open LIMIT orders by (side, price): what OrderBookView subtracts."""
        out: dict[tuple[Side, Decimal], Decimal] = {}
        for o in self._open():
            if o.order_type == "LIMIT" and o.price is not None and o.outstanding > 0:
                key = (o.side, o.price)
                out[key] = out.get(key, Decimal(0)) + o.outstanding
        return out

    def all_orders(self) -> Iterable[OwnOrder]:
        return self._orders.values()

    def prune(self) -> None:
        """Forget the oldest finished orders beyond `keep_finished` (bounded memory on long runs)."""
        finished = [cid for cid, o in self._orders.items() if o.state in _FINAL]
        for cid in finished[: max(0, len(finished) - self._keep_finished)]:
            o = self._orders.pop(cid)
            if o.acceptance_id:
                self._by_acceptance.pop(o.acceptance_id, None)


def _execution_key(ev: ChildOrderEvent) -> str:
    """exec_id + side: a self-trade gives both of our orders one exec_id."""
    return f"{ev.exec_id or ''}:{ev.side.value if ev.side else ''}"
