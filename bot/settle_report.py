"""SettleReporter: what a stop or a kill did, in figures and in one sentence — our orders it cancelled, what
it flattened at which prices, the PnL those closes realized, and when the venue confirmed it. The flash, GET
/strategy, the runtime log and the notification all read the same report.

It listens; it decides nothing: the run-state machine says when a stop or kill begins, the fill path hands it
the fills of the closes, the settle supervisor's confirmation stamps it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from bot.engine.inventory import InventoryManager
from bot.engine.orders import OrderTracker
from bot.settle import FLATTEN_TAG, SettleGoal
from bot.types.dto import Fill, OrderState, Side
from bot.types.snapshot import SettleReport

_ZERO = Decimal(0)


def signed(d: Decimal) -> str:
    """+0.001 / −0.4: a sign always, thousands separated, no exponent."""
    return ("−" if d < 0 else "+") + format(abs(d), ",f")


class SettleReporter:
    def __init__(
        self,
        *,
        tracker: OrderTracker,
        inventory: InventoryManager,
        tz: Callable[[], str],
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._tracker = tracker
        self._inventory = inventory
        self._tz = tz
        self._wall = wall
        self._goal: SettleGoal | None = None
        self._who = ""
        self._started = wall()
        self._position = _ZERO
        self._open_at_start: list[str] = []
        self._closes: list[str] = []
        self._flattened = _ZERO
        self._pnl = _ZERO
        self._confirmed: datetime | None = None

    def begin(self, goal: SettleGoal, who: str) -> None:
        """A stop or a kill begins now (a kill after a stop starts a new report; a repeated kill does not)."""
        self._goal = goal
        self._who = who
        self._started = self._wall()
        self._position = self._inventory.position_btc
        self._open_at_start = [o.client_id for o in self._tracker.open_orders()]
        self._closes = []
        self._flattened = _ZERO
        self._pnl = _ZERO
        self._confirmed = None

    def on_fill(self, fill: Fill, realized_jpy: Decimal) -> None:
        if self._goal is not SettleGoal.FLAT or fill.tag != FLATTEN_TAG:
            return
        self._closes.append(f"{fill.side.value} {format(fill.size, 'f')} @ {format(fill.price, ',f')}")
        self._flattened += fill.size if fill.side is Side.SELL else -fill.size
        self._pnl += realized_jpy
        self._confirmed = None  # a new close: the next confirmation counts

    def on_confirmed(self, goal: SettleGoal) -> SettleReport | None:
        if self._goal is None or goal is not self._goal:
            return None
        self._confirmed = self._wall()
        return self.report()

    def report(self) -> SettleReport | None:
        if self._goal is None:
            return None
        cancelled = 0
        for cid in self._open_at_start:
            order = self._tracker.get(cid)
            if order is not None and order.state in (OrderState.CANCELED, OrderState.EXPIRED):
                cancelled += 1
        return SettleReport(
            goal=self._goal.value,
            who=self._who,
            started_at=self._started.isoformat(),
            position_at_start_btc=self._position,
            orders_cancelled=cancelled,
            closes=list(self._closes),
            flattened_btc=self._flattened,
            pnl_effect_jpy=self._pnl,
            confirmed_at=None if self._confirmed is None else self._confirmed.isoformat(),
            text=self._text(cancelled),
        )

    def _text(self, cancelled: int) -> str:
        what = "kill" if self._goal is SettleGoal.FLAT else "stop"
        parts = [f"cancelled {cancelled} order(s)" if cancelled else "no orders of ours were open"]
        if self._goal is SettleGoal.FLAT:
            if self._closes:
                parts.append(
                    f"flattened {signed(self._flattened)} BTC ({', '.join(self._closes)}), "
                    f"PnL {signed(self._pnl)} JPY"
                )
            elif self._position == 0:
                parts.append("no position to flatten")
            else:
                parts.append(f"flattening {signed(self._position)} BTC")
        elif self._position != 0:
            parts.append(f"position kept ({signed(self._position)} BTC)")
        if self._confirmed is not None:
            local = self._confirmed.astimezone(ZoneInfo(self._tz()))
            parts.append(f"confirmed at {local.strftime('%H:%M:%S %Z')}")
        else:
            parts.append("not yet confirmed by the exchange")
        return f"{what} by {self._who}: " + "; ".join(parts)
