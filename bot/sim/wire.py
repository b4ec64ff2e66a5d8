"""How bitFlyer writes things on the wire: prices as whole yen with `.0`, sizes as BTC decimals, dates as UTC
ISO.

Inside the venue prices are integer yen and sizes integer satoshi (1e-8 BTC), so nothing drifts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from functools import lru_cache

SAT_PER_BTC = 100_000_000
_SAT = Decimal(SAT_PER_BTC)
_GRID = Decimal("0.00000001")


def price_out(price: int) -> float:
    """13633748 -> 13633748.0 (bitFlyer writes whole yen as floats)."""
    return float(price)


def size_out(sat: int) -> float:
    """Satoshi -> BTC float with at most 8 decimals; int/1e8 is correctly rounded, so repr is the short
    decimal."""
    return sat / SAT_PER_BTC


def sat_to_btc(sat: int) -> Decimal:
    return Decimal(sat) / _SAT


def btc_to_sat(value: object) -> int:
    """A JSON number / string / Decimal in BTC -> satoshi, truncated to the 8-decimal grid. ValueError if not
    a number."""
    if type(value) is float and -1e15 < value < 1e15:  # NaN fails both comparisons
        # the common case, without Decimal: a float on the 8-decimal grid is the double nearest sat / 1e8
        sat = round(value * SAT_PER_BTC)
        if sat / SAT_PER_BTC == value:
            return sat
    if isinstance(value, bool) or value is None:
        raise ValueError("not a number")
    try:
        d = Decimal(str(value))
    except InvalidOperation as e:
        raise ValueError("not a number") from e
    if not d.is_finite():
        raise ValueError("not a finite number")
    return int((d.quantize(_GRID, rounding=ROUND_DOWN) * _SAT).to_integral_value())


def mid_out(best_bid: int, best_ask: int) -> float:
    """mid_price as bitFlyer writes it: the half-sum, possibly .5."""
    return (best_bid + best_ask) / 2


@lru_cache(maxsize=8)
def _second(wall_s: int, fmt: str) -> str:
    """A whole second formatted: ids and dates repeat it for every order and print within that second."""
    return datetime.fromtimestamp(wall_s, tz=UTC).strftime(fmt)


def iso7(wall_ns: int) -> str:
    """Realtime API timestamps: `2026-09-23T03:31:25.6491037Z` (seven fractional digits, Z)."""
    frac = (wall_ns % 1_000_000_000) // 100
    return _second(wall_ns // 1_000_000_000, "%Y-%m-%dT%H:%M:%S") + f".{frac:07d}Z"


def rest_date(wall_ns: int, digits: int = 3) -> str:
    """REST dates as bitFlyer's docs show them: no zone suffix, `2015-07-07T09:57:40.397` (digits=0: no
    fraction)."""
    base = _second(wall_ns // 1_000_000_000, "%Y-%m-%dT%H:%M:%S")
    if digits <= 0:
        return base
    frac = (wall_ns % 1_000_000_000) // 10 ** (9 - digits)
    return f"{base}.{frac:0{digits}d}"


def id_date(wall_ns: int) -> str:
    """The YYYYMMDD-HHMMSS part of bitFlyer order ids (JRF20150707-050237-639234)."""
    return _second(wall_ns // 1_000_000_000, "%Y%m%d-%H%M%S")
