"""Pure parsers for bitFlyer's REST rows and realtime messages (bitflyer-api-notes.md).

Numbers arrive as JSON floats (`13633748.0`, `0.001`); they become Decimal through their shortest repr, so
0.001 stays exactly 0.001. Whole-yen prices are normalised to integral Decimals (`Decimal("13633748")`).

Two policies, on purpose:
- Stream parsers (`parse_child_order_events`, `parse_executions`) never raise: a malformed item is skipped
  with a log line and the rest of the frame still counts (a WebSocket frame cannot be asked for again).
- REST row parsers (`parse_getchildorders_row`, `parse_position_rows`, `parse_my_executions`,
  `parse_collateral`) raise `ParseError`: reconciliation must treat a response it cannot read as "unknown",
  never as "nothing there".
- `parse_collateral_history` skips a junk row with a log line (a row without a usable id, amount or date
  can never be booked, and must not hold back the rows after it); a page that is not a list raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from loguru import logger

from bot.types.dto import ChildOrderEvent, ChildOrderEventType, Fill, Side

T = TypeVar("T")


class ParseError(ValueError):
    """A venue payload that does not have the shape or values bitFlyer documents."""


# ---- scalars ---------------------------------------------------------------------------------------------
_DATE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_exec_date(s: str) -> datetime:
    """bitFlyer timestamp -> tz-aware UTC datetime. Accepts 0-9 fractional digits (the realtime feed sends
    seven: `2026-09-23T03:31:25.6491037Z`; digits past microseconds are dropped), with `Z`, with an offset,
    or with no zone at all (REST rows such as `2015-07-07T09:57:40.397`), which bitFlyer means as UTC."""
    if not isinstance(s, str):
        raise ParseError(f"timestamp must be a string, got {type(s).__name__}")
    m = _DATE_RE.match(s.strip())
    if not m:
        raise ParseError(f"bad timestamp {s!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "").ljust(6, "0")[:6])
    tz = UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    except ValueError as e:
        raise ParseError(f"bad timestamp {s!r}: {e}") from None
    return dt.astimezone(UTC)


def to_decimal(x: Any, what: str = "number") -> Decimal:
    """JSON number (or numeric string) -> exact finite Decimal. Floats go through repr: 0.001 ->
    Decimal('0.001')."""
    if isinstance(x, bool):
        raise ParseError(f"{what}: boolean is not a number")
    try:
        if isinstance(x, float):
            d = Decimal(repr(x))
        elif isinstance(x, int | Decimal):
            d = Decimal(x)
        elif isinstance(x, str):
            d = Decimal(x.strip())
        else:
            raise ParseError(f"{what}: expected a number, got {type(x).__name__}")
    except InvalidOperation:
        raise ParseError(f"{what}: not a number: {x!r}") from None
    if not d.is_finite():
        raise ParseError(f"{what}: not finite: {x!r}")
    return d


def to_price(x: Any, what: str = "price") -> Decimal:
    """A price as Decimal; whole yen written `13633748.0` becomes `Decimal('13633748')`."""
    d = to_decimal(x, what)
    return Decimal(int(d)) if d == d.to_integral_value() else d


def to_size(x: Any, what: str = "size") -> Decimal:
    d = to_decimal(x, what)
    if d < 0:
        raise ParseError(f"{what}: negative: {x!r}")
    return d


def to_side(x: Any, what: str = "side") -> Side:
    if x == "BUY":
        return Side.BUY
    if x == "SELL":
        return Side.SELL
    raise ParseError(f"{what}: expected BUY or SELL, got {x!r}")


def _opt_side(x: Any) -> Side | None:
    """Side that may legitimately be blank (itayose executions, ORDER_FAILED)."""
    return None if x in ("", None) else to_side(x)


def _str_id(x: Any, what: str) -> str:
    """Ids: strings, or integers written as JSON numbers (exec_id). Never floats or booleans."""
    if isinstance(x, str):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    raise ParseError(f"{what}: expected an id, got {x!r}")


def _req(row: Mapping[str, Any], key: str) -> Any:
    if key not in row or row[key] is None:
        raise ParseError(f"missing {key!r}")
    return row[key]


def _opt(row: Mapping[str, Any], key: str, conv: Any) -> Any:
    v = row.get(key)
    return None if v is None else conv(v, key)


def _as_mapping(item: Any) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise ParseError(f"expected an object, got {type(item).__name__}")
    return item


# ---- child_order_events ----------------------------------------------------------------------------------
def parse_child_order_event(item: Any) -> ChildOrderEvent:
    """One child_order_events item; raises ParseError if it cannot be trusted."""
    row = _as_mapping(item)
    try:
        event_type = ChildOrderEventType(_req(row, "event_type"))
    except ValueError:
        raise ParseError(f"unknown event_type {row.get('event_type')!r}") from None
    acceptance_id = _str_id(_req(row, "child_order_acceptance_id"), "child_order_acceptance_id")
    if not acceptance_id:
        raise ParseError("empty child_order_acceptance_id")
    child_order_id = _str_id(row.get("child_order_id") or "", "child_order_id")
    event_date = parse_exec_date(_req(row, "event_date"))
    product = row.get("product_code")
    if product is not None and not isinstance(product, str):
        raise ParseError(f"product_code must be a string, got {product!r}")
    product = product or ""

    def expire(v: Any, _: str) -> datetime:
        return parse_exec_date(v)

    match event_type:
        case ChildOrderEventType.ORDER:
            return ChildOrderEvent(
                event_type,
                acceptance_id,
                child_order_id,
                event_date,
                product_code=product,
                side=to_side(_req(row, "side")),
                price=_opt(row, "price", to_price),
                size=to_size(_req(row, "size")),
                child_order_type=str(row.get("child_order_type") or "") or None,
                expire_date=_opt(row, "expire_date", expire),
            )
        case ChildOrderEventType.ORDER_FAILED:
            return ChildOrderEvent(
                event_type,
                acceptance_id,
                child_order_id,
                event_date,
                product_code=product,
                reason=str(row.get("reason") or ""),
            )
        case ChildOrderEventType.EXECUTION:
            # the tracker turns this into a Fill: every field a position needs must be there
            size = to_size(_req(row, "size"))
            if size <= 0:
                raise ParseError("execution size must be > 0")
            return ChildOrderEvent(
                event_type,
                acceptance_id,
                child_order_id,
                event_date,
                product_code=product,
                side=to_side(_req(row, "side")),
                price=to_price(_req(row, "price")),
                size=size,
                exec_id=_str_id(_req(row, "exec_id"), "exec_id"),
                commission=to_decimal(row.get("commission") or 0, "commission"),
                outstanding_size=_opt(row, "outstanding_size", to_size),
            )
        case ChildOrderEventType.CANCEL | ChildOrderEventType.EXPIRE:
            return ChildOrderEvent(
                event_type,
                acceptance_id,
                child_order_id,
                event_date,
                product_code=product,
                price=_opt(row, "price", to_price),
                size=_opt(row, "size", to_size),
            )
        case ChildOrderEventType.CANCEL_FAILED:
            return ChildOrderEvent(
                event_type, acceptance_id, child_order_id, event_date, product_code=product
            )
    raise ParseError(f"unhandled event_type {event_type}")  # pragma: no cover - the match is exhaustive


def _parse_each(message: Any, parse_one: Callable[[Any], T], channel: str) -> list[T]:
    """A channel `message` that is a list of items: malformed items are skipped and logged; never raises."""
    if not isinstance(message, list):
        logger.warning("{}: message is not a list, ignored: {!r}", channel, _clip(message))
        return []
    out: list[T] = []
    for item in message:
        try:
            out.append(parse_one(item))
        except ParseError as e:
            logger.warning("{}: malformed item skipped ({}): {!r}", channel, e, _clip(item))
    return out


def parse_child_order_events(message: Any) -> list[ChildOrderEvent]:
    """A child_order_events `message` (a list of items). Malformed items are skipped and logged; never
    raises."""
    return _parse_each(message, parse_child_order_event, "child_order_events")


# ---- public executions (lightning_executions_*) ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PublicExecution:
    id: int
    side: Side | None  # blank during itayose
    price: Decimal
    size: Decimal
    exec_date: datetime
    buy_child_order_acceptance_id: str
    sell_child_order_acceptance_id: str


def parse_execution(item: Any) -> PublicExecution:
    row = _as_mapping(item)
    exec_id = _req(row, "id")
    if not isinstance(exec_id, int) or isinstance(exec_id, bool):
        raise ParseError(f"execution id must be an integer, got {exec_id!r}")
    price = to_price(_req(row, "price"))
    size = to_size(_req(row, "size"))
    if price <= 0 or size <= 0:
        raise ParseError("execution price and size must be > 0")
    return PublicExecution(
        id=exec_id,
        side=_opt_side(row.get("side")),
        price=price,
        size=size,
        exec_date=parse_exec_date(_req(row, "exec_date")),
        buy_child_order_acceptance_id=_str_id(row.get("buy_child_order_acceptance_id") or "", "buy id"),
        sell_child_order_acceptance_id=_str_id(row.get("sell_child_order_acceptance_id") or "", "sell id"),
    )


def parse_executions(message: Any) -> list[PublicExecution]:
    """A lightning_executions `message` (list). Malformed items are skipped and logged; never raises."""
    return _parse_each(message, parse_execution, "executions")


# ---- REST rows (raise on anything untrustworthy) ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChildOrderRow:
    """One getchildorders row. ACTIVE rows carry `id: 0`."""

    id: int
    child_order_id: str
    child_order_acceptance_id: str
    side: Side
    child_order_type: str
    price: Decimal  # 0 for MARKET
    average_price: Decimal
    size: Decimal
    child_order_state: str  # ACTIVE, COMPLETED, CANCELED, EXPIRED, REJECTED
    outstanding_size: Decimal
    cancel_size: Decimal
    executed_size: Decimal
    total_commission: Decimal
    child_order_date: datetime | None
    expire_date: datetime | None
    product_code: str = ""


_STATES = frozenset({"ACTIVE", "COMPLETED", "CANCELED", "EXPIRED", "REJECTED"})


def parse_getchildorders_row(row: Any) -> ChildOrderRow:
    r = _as_mapping(row)
    state = _req(r, "child_order_state")
    if not isinstance(state, str) or state not in _STATES:
        raise ParseError(f"unknown child_order_state {state!r}")
    row_id = r.get("id", 0)
    if not isinstance(row_id, int) or isinstance(row_id, bool):
        raise ParseError(f"id must be an integer, got {row_id!r}")
    acceptance_id = _str_id(_req(r, "child_order_acceptance_id"), "child_order_acceptance_id")
    if not acceptance_id:
        raise ParseError("empty child_order_acceptance_id")

    def date(v: Any, _: str) -> datetime:
        return parse_exec_date(v)

    return ChildOrderRow(
        id=row_id,
        child_order_id=_str_id(r.get("child_order_id") or "", "child_order_id"),
        child_order_acceptance_id=acceptance_id,
        side=to_side(_req(r, "side")),
        child_order_type=str(_req(r, "child_order_type")),
        price=to_price(r.get("price") or 0),
        average_price=to_price(r.get("average_price") or 0, "average_price"),
        size=to_size(_req(r, "size")),
        child_order_state=state,
        outstanding_size=to_size(r.get("outstanding_size") or 0, "outstanding_size"),
        cancel_size=to_size(r.get("cancel_size") or 0, "cancel_size"),
        executed_size=to_size(r.get("executed_size") or 0, "executed_size"),
        total_commission=to_decimal(r.get("total_commission") or 0, "total_commission"),
        child_order_date=_opt(r, "child_order_date", date),
        expire_date=_opt(r, "expire_date", date),
        product_code=str(r.get("product_code") or ""),
    )


def parse_getchildorders(rows: Any) -> list[ChildOrderRow]:
    if not isinstance(rows, list):
        raise ParseError(f"getchildorders: expected a list, got {type(rows).__name__}")
    return [parse_getchildorders_row(r) for r in rows]


def parse_position_rows(rows: Any, product_code: str | None = None) -> list[tuple[Side, Decimal, Decimal]]:
    """getpositions -> [(side, price, size)], one per open lot. With `product_code`, rows that name another
    product are left out (only this product's position counts)."""
    if not isinstance(rows, list):
        raise ParseError(f"getpositions: expected a list, got {type(rows).__name__}")
    out: list[tuple[Side, Decimal, Decimal]] = []
    for row in rows:
        r = _as_mapping(row)
        if product_code is not None and r.get("product_code") not in (None, "", product_code):
            continue
        size = to_size(_req(r, "size"))
        price = to_price(_req(r, "price"))
        if size <= 0 or price <= 0:
            raise ParseError(f"position lot with non-positive price/size: {_clip(r)!r}")
        out.append((to_side(_req(r, "side")), price, size))
    return out


def net_position(lots: Iterable[tuple[Side, Decimal, Decimal]]) -> tuple[Decimal, Decimal | None]:
    """(signed BTC, size-weighted average price of the lots) — bitFlyer nets FX lots, so all lots share a
    side; mixed sides would be netted here anyway. Average is None when flat."""
    net = Decimal(0)
    notional = Decimal(0)
    gross = Decimal(0)
    for side, price, size in lots:
        net += side.sign * size
        notional += price * size
        gross += size
    if net == 0 or gross == 0:
        return Decimal(0), None
    return net, notional / gross


def parse_my_execution_row(row: Any) -> Fill:
    """One private getexecutions row as a Fill (for reconciliation after missed events)."""
    r = _as_mapping(row)
    exec_id = _req(r, "id")
    size = to_size(_req(r, "size"))
    if size <= 0:
        raise ParseError("execution size must be > 0")
    return Fill(
        exec_id=_str_id(exec_id, "id"),
        child_order_acceptance_id=_str_id(_req(r, "child_order_acceptance_id"), "child_order_acceptance_id"),
        side=to_side(_req(r, "side")),
        price=to_price(_req(r, "price")),
        size=size,
        commission=to_decimal(r.get("commission") or 0, "commission"),
        exec_date=parse_exec_date(_req(r, "exec_date")),
        child_order_id=_str_id(r.get("child_order_id") or "", "child_order_id"),
    )


def parse_my_executions(rows: Any) -> list[Fill]:
    if not isinstance(rows, list):
        raise ParseError(f"getexecutions: expected a list, got {type(rows).__name__}")
    return [parse_my_execution_row(r) for r in rows]


def _clip(x: Any, n: int = 300) -> str:
    s = repr(x)
    return s if len(s) <= n else s[:n] + "…"


# ---- collateral ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CollateralStatus:
    """GET /v1/me/getcollateral. `keep_rate` is a ratio (1.5 = 150 %); bitFlyer sends 0 with no position."""

    collateral: Decimal
    open_position_pnl: Decimal
    require_collateral: Decimal
    keep_rate: Decimal
    margin_call_amount: Decimal
    margin_call_due_date: str | None


def parse_collateral(data: Any) -> CollateralStatus:
    r = _as_mapping(data)
    due = r.get("margin_call_due_date")
    return CollateralStatus(
        collateral=to_decimal(_req(r, "collateral"), "collateral"),
        open_position_pnl=to_decimal(r.get("open_position_pnl") or 0, "open_position_pnl"),
        require_collateral=to_decimal(r.get("require_collateral") or 0, "require_collateral"),
        keep_rate=to_decimal(_req(r, "keep_rate"), "keep_rate"),
        margin_call_amount=to_decimal(r.get("margin_call_amount") or 0, "margin_call_amount"),
        margin_call_due_date=None if due in (None, "") else str(due),
    )


@dataclass(frozen=True, slots=True)
class CollateralHistoryRow:
    """One getcollateralhistory row: a change of the collateral (signed JPY) and why."""

    row_id: int
    currency_code: str
    change: Decimal
    amount: Decimal | None  # the collateral after it
    reason_code: str
    date: datetime


def parse_collateral_history_row(row: Any) -> CollateralHistoryRow:
    r = _as_mapping(row)
    row_id = _req(r, "id")
    if isinstance(row_id, bool) or not isinstance(row_id, int) or row_id <= 0:
        raise ParseError(f"collateral history id must be a positive integer, got {row_id!r}")
    amount = r.get("amount")
    return CollateralHistoryRow(
        row_id=row_id,
        currency_code=str(r.get("currency_code") or "JPY"),
        change=to_decimal(_req(r, "change"), "change"),
        amount=None if amount is None else to_decimal(amount, "amount"),
        reason_code=str(r.get("reason_code") or ""),
        date=parse_exec_date(_req(r, "date")),
    )


def parse_collateral_history(rows: Any) -> list[CollateralHistoryRow]:
    """A page of getcollateralhistory, in the order given; junk rows skipped with one log line each."""
    if not isinstance(rows, list):
        raise ParseError(f"getcollateralhistory: expected a list, got {type(rows).__name__}")
    out = []
    for row in rows:
        try:
            out.append(parse_collateral_history_row(row))
        except ParseError as e:
            logger.warning("getcollateralhistory: row skipped ({}): {}", e, _clip(row))
    return out
