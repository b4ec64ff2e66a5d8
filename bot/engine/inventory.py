"""InventoryManager: position, FIFO lots and PnL in JPY (SPEC §6). Pure: no clocks, sockets or files.

Lots are kept as bitFlyer keeps them (getpositions returns one row per lot and the venue closes the oldest
lots first), so a reducing fill closes the oldest lots first and the realized PnL equals the venue's lot by
lot. All open lots are on one side: a fill on the other side closes lots, and only what is left after all of
them are closed opens a lot on the fill's side (a flip through zero).

Money is exact Decimal. Sums and products run in a wide context so nothing is rounded; only `avg_price` (a
division) is rounded, in the last of its 28 significant digits.

Trading day figures (realized, fees, peak, drawdown) reset when the day in `risk.trading_day_tz` changes; the
position and its lots carry into the new day. Today's PnL is the mark-to-market change since the day opened
(SPEC §6): realized today + unrealized now − the carried position's unrealized at the day's open − fees today,
so it opens at 0 and yesterday's open loss is not counted again.

Holding costs (funding, leverage points) are what the venue's collateral history says they were: each row is
booked once (by its id, with a watermark like the executions') into realized PnL, and into today's figures
only when its date falls in the current trading day (a later day rolls the day first; an earlier day's row,
learnt late, changes the record since start but not today).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

from bot.config.loader import RiskConfig
from bot.types.dto import Fill, InventoryState, Reason, Side

_ZERO = Decimal(0)
# Prices ~1e7 with a few decimals times sizes with 8 decimals, summed over years: far below 60 digits.
_WIDE = Context(prec=60, rounding=ROUND_HALF_EVEN)
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class FillResult:
    """What one fill did to the inventory; the trades log row is built from it."""

    exec_id: str
    duplicate: bool  # already applied: nothing changed
    realized_pnl_jpy: Decimal  # of this fill (gross of commission)
    realized_cum_jpy: Decimal  # since start of records, after this fill
    realized_today_jpy: Decimal
    commission_jpy: Decimal
    position_after: Decimal  # signed BTC
    avg_price_after: Decimal | None
    closed_btc: Decimal  # size that closed existing lots
    opened_btc: Decimal  # size that opened a new lot
    flipped: bool = False  # went through zero to the other side


@dataclass(frozen=True, slots=True)
class HoldingCostResult:
    """What one collateral-history row did to the ledger; the trades log row is built from it."""

    row_id: int
    duplicate: bool  # already booked (or before the baseline): nothing changed
    cost_jpy: Decimal  # paid: positive (a funding credit is negative)
    trading_day: str  # the day of the row's date
    today: bool  # counted in today's PnL
    realized_cum_jpy: Decimal


class _Lot:
    """One open lot: entry price and remaining size (mutable, private; reduced in place by partial closes)."""

    __slots__ = ("price", "size")

    def __init__(self, price: Decimal, size: Decimal) -> None:
        self.price = price
        self.size = size


def _require_decimal(name: str, value: object, *, positive: bool = False) -> Decimal:
    """Refuse floats (and anything not Decimal) and non-finite values: exact money only."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _as_utc(wall: datetime) -> datetime:
    # bitFlyer's REST dates come without a zone and are UTC; treat naive times the same way
    return wall.replace(tzinfo=UTC) if wall.tzinfo is None else wall


def _yen(x: Decimal) -> str:
    return f"{x:,.0f}" if x == x.to_integral_value() else f"{x:,.2f}"


def _merged(lots: list[tuple[Side, Decimal, Decimal]]) -> list[tuple[Side, Decimal, Decimal]]:
    """Adjacent lots of the same side and price merged: FIFO PnL cannot tell them apart."""
    out: list[tuple[Side, Decimal, Decimal]] = []
    for side, price, size in lots:
        if out and out[-1][0] is side and out[-1][1] == price:
            with localcontext(_WIDE):
                out[-1] = (side, price, out[-1][2] + size)
        else:
            out.append((side, price, size))
    return out


class InventoryManager:
    def __init__(
        self, risk: RiskConfig, *, tick_size: Decimal = Decimal(1), seen_exec_ids_cap: int = 5000
    ) -> None:
        self._risk = risk
        self._tz = ZoneInfo(risk.trading_day_tz)
        self.tick_size = _require_decimal("tick_size", tick_size, positive=True)
        self._side: Side | None = None  # side of every open lot; None when flat
        self._lots: deque[_Lot] = deque()  # oldest first
        self._qty = _ZERO  # Σ lot.size (absolute BTC)
        self._cost = _ZERO  # Σ lot.price × lot.size
        self._opened_at: int | None = None
        self._realized_total = _ZERO
        self._fees_total = _ZERO
        self._realized_today = _ZERO
        self._fees_today = _ZERO
        self.version = 0  # moves on every change to the ledger, its mark or its limits (readers cache on it)
        self._avg: Decimal | None = None  # avg_price and position_btc, recomputed with the rest
        self._position = _ZERO
        self._mark_price: Decimal | None = None  # last mid seen; unrealized is 0 until one is known
        self._unrealized = _ZERO
        self._pnl_today = _ZERO
        self._day_open_unrealized = _ZERO  # the carried position's unrealized when the day opened
        self._peak = _ZERO  # running peak of pnl_today in the day; starts at 0
        self._drawdown = _ZERO
        self._max_drawdown = _ZERO
        self._day = ""  # YYYYMMDD; "" until the first roll_day / fill
        self._kill_detail = ""
        self._seen_cap = max(1, seen_exec_ids_cap)
        self._seen: dict[str, None] = {}  # insertion-ordered set of applied exec ids, bounded
        self._watermark: int | None = None  # highest numeric exec id applied (or baselined)
        self._holding_total = _ZERO  # holding costs paid since start of records (positive = paid)
        self._holding_today = _ZERO
        self._seen_costs: dict[int, None] = {}  # collateral-history row ids booked, bounded
        self._cost_watermark: int | None = None  # highest collateral-history row id booked or baselined

    # ---- fills --------------------------------------------------------------------------------------
    def apply_fill(self, fill: Fill, now: int | None = None) -> FillResult:
        """Apply one execution of ours. A repeated exec_id changes nothing and comes back `duplicate=True`.
        `now` (monotonic ns) stamps `opened_at` when this fill opens a position from flat or flips it."""
        price = _require_decimal("fill.price", fill.price, positive=True)
        size = _require_decimal("fill.size", fill.size, positive=True)
        commission = _require_decimal("fill.commission", fill.commission)
        if not isinstance(fill.side, Side):
            raise TypeError(f"fill.side must be a Side, got {fill.side!r}")
        exec_id = fill.dedupe_key  # exec_id + side: a self-trade's two sides are two fills
        if exec_id and exec_id in self._seen:
            return self._result(
                exec_id,
                duplicate=True,
                realized=_ZERO,
                commission=_ZERO,
                closed=_ZERO,
                opened=_ZERO,
                flipped=False,
            )
        self.roll_day(fill.exec_date)

        realized = _ZERO
        closed = _ZERO
        remaining = size
        was_side = self._side
        with localcontext(_WIDE):
            if self._side is not None and fill.side is not self._side:
                sign = self._side.sign
                while remaining > 0 and self._lots:
                    lot = self._lots[0]
                    take = min(lot.size, remaining)
                    realized += (price - lot.price) * take * sign
                    lot.size -= take
                    self._qty -= take
                    self._cost -= lot.price * take
                    remaining -= take
                    closed += take
                    if lot.size == 0:
                        self._lots.popleft()
                if not self._lots:
                    self._side = None
                    self._opened_at = None
                    self._qty = _ZERO
                    self._cost = _ZERO
            if remaining > 0:
                if self._side is None:
                    self._side = fill.side
                    self._opened_at = now
                self._lots.append(_Lot(price, remaining))
                self._qty += remaining
                self._cost += price * remaining
            self._realized_total += realized
            self._realized_today += realized
            self._fees_total += commission
            self._fees_today += commission
        if exec_id:
            self._remember(exec_id)
        self._recompute()
        flipped = was_side is not None and self._side is not None and self._side is not was_side
        return self._result(
            exec_id,
            duplicate=False,
            realized=realized,
            commission=commission,
            closed=closed,
            opened=remaining,
            flipped=flipped,
        )

    def _remember(self, exec_id: str) -> None:
        num = exec_id.split(":", 1)[0]
        if num.isdigit():
            n = int(num)
            if self._watermark is None or n > self._watermark:
                self._watermark = n
        self._seen[exec_id] = None
        while len(self._seen) > self._seen_cap:
            del self._seen[next(iter(self._seen))]

    def _result(
        self,
        exec_id: str,
        *,
        duplicate: bool,
        realized: Decimal,
        commission: Decimal,
        closed: Decimal,
        opened: Decimal,
        flipped: bool,
    ) -> FillResult:
        return FillResult(
            exec_id=exec_id,
            duplicate=duplicate,
            realized_pnl_jpy=realized,
            realized_cum_jpy=self._realized_total,
            realized_today_jpy=self._realized_today,
            commission_jpy=commission,
            position_after=self.position_btc,
            avg_price_after=self.avg_price,
            closed_btc=closed,
            opened_btc=opened,
            flipped=flipped,
        )

    # ---- holding costs ------------------------------------------------------------------------------
    def apply_holding_cost(self, row_id: int, change: Decimal, wall: datetime) -> HoldingCostResult:
        """Book one holding-cost row of the venue's collateral history: `change` is the collateral's
        change (signed JPY, negative = paid), `wall` the row's date. It lands in realized PnL, and in today's
        PnL when `wall` falls in the current trading day (a later day is rolled to first). A row id at or
        below the cost watermark, or seen before, changes nothing."""
        change = _require_decimal("change", change)
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise TypeError(f"row_id must be an int, got {row_id!r}")
        day = self.trading_day_of(wall)
        if self.is_cost_booked(row_id):
            return HoldingCostResult(row_id, True, _ZERO, day, False, self._realized_total)
        self.roll_day(wall)
        today = day == self._day
        with localcontext(_WIDE):
            self._realized_total += change
            self._holding_total -= change
            if today:
                self._realized_today += change
                self._holding_today -= change
        self._remember_cost(row_id)
        self._recompute()
        return HoldingCostResult(row_id, False, -change, day, today, self._realized_total)

    def is_cost_booked(self, row_id: int) -> bool:
        wm = self._cost_watermark
        return row_id in self._seen_costs or (wm is not None and row_id <= wm)

    def baseline_costs(self, row_id: int) -> None:
        """A first start: the venue's collateral history up to `row_id` is the past, never booked."""
        if self._cost_watermark is None or row_id > self._cost_watermark:
            self._cost_watermark = row_id

    def _remember_cost(self, row_id: int) -> None:
        self.baseline_costs(row_id)
        self._seen_costs[row_id] = None
        while len(self._seen_costs) > self._seen_cap:
            del self._seen_costs[next(iter(self._seen_costs))]

    @property
    def cost_watermark(self) -> int | None:
        """The highest collateral-history row id booked or baselined (None: no history read yet)."""
        return self._cost_watermark

    @property
    def holding_costs_today_jpy(self) -> Decimal:
        """Holding costs booked in today's PnL (positive = paid)."""
        return self._holding_today

    @property
    def holding_costs_total_jpy(self) -> Decimal:
        return self._holding_total

    # ---- marking, the trading day and the kill switch ---------------------------------------------
    def mark(self, mid: Decimal | None) -> None:
        """Mark the open lots at `mid` and update today's PnL, peak and drawdown. `None` (no book right now)
        keeps the last known mid: a missing book must not make an open loss disappear."""
        if mid is None or mid is self._mark_price:
            return  # every change to the ledger recomputes at once, so the same mark changes nothing
        _require_decimal("mid", mid, positive=True)
        if mid == self._mark_price:
            return
        self._mark_price = mid
        self._recompute()

    def _recompute(self) -> None:
        self.version += 1  # every change to the ledger or its mark passes here
        with localcontext(_WIDE):
            if self._side is None or self._mark_price is None:
                self._unrealized = _ZERO
            else:
                self._unrealized = (self._mark_price * self._qty - self._cost) * self._side.sign
            self._pnl_today = (
                self._realized_today + self._unrealized - self._day_open_unrealized - self._fees_today
            )
            self._peak = max(self._peak, self._pnl_today)
            self._drawdown = self._pnl_today - self._peak
            self._max_drawdown = min(self._max_drawdown, self._drawdown)
        # the one rounded figure (default 28-digit context), kept: the strategy reads it on every decision
        self._avg = None if self._side is None else self._cost / self._qty
        self._position = _ZERO if self._side is None else self._qty * self._side.sign

    def trading_day_of(self, wall_now: datetime) -> str:
        return _as_utc(wall_now).astimezone(self._tz).strftime("%Y%m%d")

    def next_day_check_at(self, wall_now: datetime) -> datetime:
        """When a caller that rolls the day itself next needs `roll_day`: the next trading day's midnight in
        `trading_day_tz`, an hour early (around a DST change local midnight can move; `roll_day` decides)."""
        local = _as_utc(wall_now).astimezone(self._tz)
        midnight = datetime.combine(local.date() + timedelta(days=1), dtime(0), tzinfo=self._tz)
        return midnight - timedelta(hours=1)

    def roll_day(self, wall_now: datetime) -> bool:
        """Start a new trading day if `wall_now` (tz-aware; naive = UTC) falls in a later day than the current
        one: today's realized, fees, peak, drawdown and max drawdown reset; the position carries. Returns True
        when a new day began. An earlier day (a late fill, a clock step back) never rolls back."""
        day = self.trading_day_of(wall_now)
        if day <= self._day:
            return False
        first = self._day == ""
        self._day = day
        if first:
            return False
        self._realized_today = _ZERO
        self._fees_today = _ZERO
        self._holding_today = _ZERO
        self._recompute()  # the unrealized of the carried lots at the last mark
        self._day_open_unrealized = self._unrealized
        self._peak = _ZERO
        self._drawdown = _ZERO
        self._max_drawdown = _ZERO
        self._recompute()
        return True

    def kill_check(self, mid: Decimal | None) -> Reason | None:
        """Mark to `mid`; `Reason.KILL_SWITCH` if today's PnL or drawdown is at or beyond its limit.
        `kill_detail` then says why with the figures; it is "" after a check that does not trigger."""
        self.mark(mid)
        r = self._risk
        why = []
        if self._pnl_today <= r.daily_pnl_jpy:
            why.append(
                f"today's PnL {_yen(self._pnl_today)} JPY reached the daily limit "
                f"{_yen(r.daily_pnl_jpy)} JPY "
                f"(realized {_yen(self._realized_today)} incl. holding costs {_yen(-self._holding_today)}, "
                f"unrealized {_yen(self._unrealized)}, fees {_yen(self._fees_today)})"
            )
        if self._drawdown <= r.max_dd_jpy:
            why.append(
                f"drawdown {_yen(self._drawdown)} JPY from today's peak {_yen(self._peak)} JPY reached the "
                f"limit {_yen(r.max_dd_jpy)} JPY"
            )
        if not why:
            self._kill_detail = ""
            return None
        self._kill_detail = "Kill switch: " + "; ".join(why) + f" (trading day {self._day or 'unknown'})."
        return Reason.KILL_SWITCH

    def update_risk(self, risk: RiskConfig) -> None:
        """Live config change; a new time zone applies from the next roll (the current day is kept)."""
        self._tz = ZoneInfo(risk.trading_day_tz)
        self._risk = risk
        self.version += 1

    # ---- reconciliation -----------------------------------------------------------------------------
    def replace_lots_from_venue(
        self, lots: list[tuple[Side, Decimal, Decimal]], now: int | None = None
    ) -> bool:
        """Adopt getpositions' rows (side, price, size), oldest first, if they differ from ours: the venue is
        the truth for the position. Realized and today's figures are kept. Returns True when something
        changed. `now` stamps `opened_at` if this opens or flips the position. Bad rows raise and change
        nothing."""
        rows: list[tuple[Side, Decimal, Decimal]] = []
        for i, row in enumerate(lots):
            side, price, size = row
            if not isinstance(side, Side):
                raise TypeError(f"venue lot {i}: side must be a Side, got {side!r}")
            rows.append(
                (
                    side,
                    _require_decimal(f"venue lot {i} price", price, positive=True),
                    _require_decimal(f"venue lot {i} size", size, positive=True),
                )
            )
        if len({side for side, _, _ in rows}) > 1:
            raise ValueError("venue lots are on both sides; FX_BTC_JPY positions are one-sided")
        if _merged(rows) == _merged(list(self.lots)):
            return False
        was_side = self._side
        self._lots = deque(_Lot(price, size) for _, price, size in rows)
        self._side = rows[0][0] if rows else None
        with localcontext(_WIDE):
            self._qty = sum((lot.size for lot in self._lots), _ZERO)
            self._cost = sum((lot.price * lot.size for lot in self._lots), _ZERO)
        if self._side is None:
            self._opened_at = None
        elif self._side is not was_side:
            self._opened_at = now
        self._recompute()
        return True

    # ---- views --------------------------------------------------------------------------------------
    @property
    def risk(self) -> RiskConfig:
        return self._risk

    @property
    def position_btc(self) -> Decimal:
        return self._position

    @property
    def avg_price(self) -> Decimal | None:
        """Size-weighted average entry of the open lots (what the venue shows as the average)."""
        return self._avg

    @property
    def opened_at(self) -> int | None:
        return self._opened_at

    def restore_opened_at(self, monotonic_ns: int) -> None:
        """After a restart: when the open position was opened, on this process's monotonic clock."""
        if self._side is not None:
            self._opened_at = monotonic_ns
            self.version += 1

    @property
    def lots(self) -> tuple[tuple[Side, Decimal, Decimal], ...]:
        if self._side is None:
            return ()
        side = self._side
        return tuple((side, lot.price, lot.size) for lot in self._lots)

    @property
    def realized_pnl_jpy(self) -> Decimal:
        return self._realized_total

    @property
    def realized_today_jpy(self) -> Decimal:
        return self._realized_today

    @property
    def unrealized_pnl_jpy(self) -> Decimal:
        return self._unrealized

    @property
    def fees_today_jpy(self) -> Decimal:
        return self._fees_today

    @property
    def fees_total_jpy(self) -> Decimal:
        return self._fees_total

    @property
    def pnl_today_jpy(self) -> Decimal:
        return self._pnl_today

    @property
    def day_open_unrealized_jpy(self) -> Decimal:
        """The carried position's unrealized PnL when the trading day opened (today's PnL starts from it)."""
        return self._day_open_unrealized

    @property
    def peak_pnl_today_jpy(self) -> Decimal:
        return self._peak

    @property
    def drawdown_jpy(self) -> Decimal:
        return self._drawdown

    @property
    def max_drawdown_jpy(self) -> Decimal:
        return self._max_drawdown

    @property
    def trading_day(self) -> str:
        return self._day

    @property
    def mark_price(self) -> Decimal | None:
        return self._mark_price

    @property
    def kill_detail(self) -> str:
        return self._kill_detail

    @property
    def exec_watermark(self) -> int | None:
        """The highest execution id this ledger has applied or baselined (None: no history yet)."""
        return self._watermark

    def mark_seen(self, fill: Fill) -> None:
        """A venue execution from before this ledger's records began (a first start): known, never applied."""
        if fill.dedupe_key:
            self._remember(fill.dedupe_key)

    def is_applied(self, fill: Fill) -> bool:
        return bool(fill.dedupe_key) and fill.dedupe_key in self._seen

    def has_seen(self, exec_id: str) -> bool:
        """True if this exec_id (on either side) or this exact dedupe key was applied."""
        return exec_id in self._seen or any(f"{exec_id}:{side}" in self._seen for side in ("BUY", "SELL"))

    def state(self) -> InventoryState:
        pos = self.position_btc
        return InventoryState(
            side="flat" if self._side is None else ("long" if self._side is Side.BUY else "short"),
            size=abs(pos),
            position_btc=pos,
            avg_price=self.avg_price,
            realized_pnl_jpy=self._realized_total,
            realized_today_jpy=self._realized_today,
            unrealized_pnl_jpy=self._unrealized,
            fees_today_jpy=self._fees_today,
            pnl_today_jpy=self._pnl_today,
            drawdown_jpy=self._drawdown,
            max_drawdown_jpy=self._max_drawdown,
            trading_day=self._day,
            opened_at=self._opened_at,
        )

    # ---- persistence (SPEC §10) ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able snapshot (Decimals as strings) that `from_dict` restores exactly."""

        def s(x: Decimal | None) -> str | None:
            return None if x is None else str(x)

        return {
            "version": STATE_VERSION,
            "side": None if self._side is None else self._side.value,
            "lots": [[str(lot.price), str(lot.size)] for lot in self._lots],
            "opened_at": self._opened_at,
            "realized_total": s(self._realized_total),
            "fees_total": s(self._fees_total),
            "realized_today": s(self._realized_today),
            "fees_today": s(self._fees_today),
            "mark_price": s(self._mark_price),
            "peak": s(self._peak),
            "day_open_unrealized": s(self._day_open_unrealized),
            "max_drawdown": s(self._max_drawdown),
            "trading_day": self._day,
            "kill_detail": self._kill_detail,
            "seen_exec_ids": list(self._seen),
            "exec_watermark": self._watermark,
            "holding_costs_total": s(self._holding_total),
            "holding_costs_today": s(self._holding_today),
            "seen_cost_ids": list(self._seen_costs),
            "cost_watermark": self._cost_watermark,
        }

    @classmethod
    def from_dict(
        cls,
        d: dict[str, Any],
        risk: RiskConfig,
        *,
        tick_size: Decimal = Decimal(1),
        seen_exec_ids_cap: int = 5000,
    ) -> InventoryManager:
        """Restore a `to_dict` snapshot. A malformed one raises ValueError naming the field."""
        inv = cls(risk, tick_size=tick_size, seen_exec_ids_cap=seen_exec_ids_cap)
        try:
            if d.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported inventory state version {d.get('version')!r}")

            def dec(key: str) -> Decimal:
                return _require_decimal(key, Decimal(str(d[key])))

            side = None if d["side"] is None else Side(d["side"])
            lots = [
                _Lot(
                    _require_decimal("lot price", Decimal(str(p)), positive=True),
                    _require_decimal("lot size", Decimal(str(q)), positive=True),
                )
                for p, q in d["lots"]
            ]
            if (side is None) != (not lots):
                raise ValueError("side and lots disagree")
            inv._side = side
            inv._lots = deque(lots)
            with localcontext(_WIDE):
                inv._qty = sum((lot.size for lot in lots), _ZERO)
                inv._cost = sum((lot.price * lot.size for lot in lots), _ZERO)
            opened_at = d.get("opened_at")
            inv._opened_at = None if opened_at is None or side is None else int(opened_at)
            inv._realized_total = dec("realized_total")
            inv._fees_total = dec("fees_total")
            inv._realized_today = dec("realized_today")
            inv._fees_today = dec("fees_today")
            mark = d.get("mark_price")
            inv._mark_price = (
                None if mark is None else _require_decimal("mark_price", Decimal(str(mark)), positive=True)
            )
            inv._peak = dec("peak")
            inv._day_open_unrealized = _require_decimal(
                "day_open_unrealized", Decimal(str(d.get("day_open_unrealized", "0")))
            )
            inv._max_drawdown = dec("max_drawdown")
            day = str(d["trading_day"])
            if day and not (len(day) == 8 and day.isdigit()):
                raise ValueError(f"trading_day must be YYYYMMDD, got {day!r}")
            inv._day = day
            inv._kill_detail = str(d.get("kill_detail", ""))
            for exec_id in d.get("seen_exec_ids", []):
                inv._remember(str(exec_id))
            wm = d.get("exec_watermark")
            if wm is not None:
                inv._watermark = max(int(wm), inv._watermark or 0)
            # a state file from before holding costs were booked has none: zero, no watermark
            inv._holding_total = _require_decimal(
                "holding_costs_total", Decimal(str(d.get("holding_costs_total", "0")))
            )
            inv._holding_today = _require_decimal(
                "holding_costs_today", Decimal(str(d.get("holding_costs_today", "0")))
            )
            for row_id in d.get("seen_cost_ids", []):
                inv._remember_cost(int(row_id))
            cwm = d.get("cost_watermark")
            if cwm is not None:
                inv.baseline_costs(int(cwm))
        except (KeyError, TypeError, ArithmeticError) as e:
            raise ValueError(f"inventory state is malformed: {type(e).__name__}: {e}") from e
        inv._recompute()
        return inv
