"""History across days, read from the CSV logs with DuckDB (SQL over the files as they lie; no hand parsing).

- `daily_history(log_dir)`: one row per trading day from the trades CSVs (realized, fees, volume, fills, win
  rate), merged with the day's summary file (max drawdown, kills), which holds what no trade row carries.
- `trade_page(log_dir, query)`: the trades, newest first, filtered by day / side / tag, in pages. The cursor
  is the last row's (day, row number in its day's file): files are only ever appended, so a row keeps its
  number and pages never shift or repeat while the bot keeps trading.
- `audit_rows(log_dir, limit)`: the newest live config changes.

Every function here blocks (file reads, DuckDB): the routes run them in a worker thread. Each call opens its
own in-memory DuckDB connection with one thread (the bot owns this machine's cores). Rows that do not parse
(a torn last line left by a crash, a hand edit) are skipped (`ignore_errors`), and a file too short to hold a
header is not read at all. Money stays exact: amounts are read as DECIMAL(38,10) and handed on as Decimal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from bot.infra.daily_summary import DailySummaryFile
from bot.infra.logging_structured import (
    AUDIT_COLUMNS,
    CORRECTION_TAG,
    HOLDING_COST_TAG,
    TRADE_COLUMNS,
    csv_path,
    list_days,
)

MONEY = "DECIMAL(38,10)"
_TRADE_TYPES = {
    "ts": "VARCHAR",
    "order_id": "VARCHAR",
    "side": "VARCHAR",
    "price": MONEY,
    "size": MONEY,
    "fee": MONEY,
    "strategy": "VARCHAR",
    "tag": "VARCHAR",
    "pnl_jpy": MONEY,
    "pnl_cum_jpy": MONEY,
    "inventory_after": MONEY,
    "exec_id": "VARCHAR",
}
assert tuple(_TRADE_TYPES) == TRADE_COLUMNS  # the reader follows the writer's columns, in order
_AUDIT_TYPES = dict.fromkeys(AUDIT_COLUMNS, "VARCHAR")
# holding costs are in realized PnL but are not trades either; an empty cell reads as NULL
NOT_A_TRADE_ROW = f"coalesce(tag, '') NOT IN ('{CORRECTION_TAG}', '{HOLDING_COST_TAG}')"
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
_CURSOR = re.compile(r"^(\d{8})-(\d{1,12})$")
_TAG = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_DAY = re.compile(r"^\d{8}$")


class HistoryUnavailable(Exception):
    """The files could not be read just now (removed or unreadable mid-query); the message says why (503)."""


class BadQuery(ValueError):
    """A query parameter that cannot be used; the message says which and why (HTTP 422)."""


@dataclass(frozen=True)
class TradeQuery:
    day: str | None = None
    side: str | None = None
    tag: str | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[str, int] | None = None  # (day, row): the page starts below this row

    @classmethod
    def parse(
        cls, day: str | None, side: str | None, tag: str | None, limit: str | None, cursor: str | None
    ) -> TradeQuery:
        """Query-string text → a checked query; BadQuery with a plain sentence otherwise. Empty = absent."""
        day, side, tag, limit, cursor = (
            v.strip() if v and v.strip() else None for v in (day, side, tag, limit, cursor)
        )
        if day is not None and not _DAY.match(day):
            raise BadQuery(f"day must be a trading day as YYYYMMDD (e.g. 20260105), not {day!r}")
        if side is not None:
            if side.upper() not in ("BUY", "SELL"):
                raise BadQuery(f"side must be BUY or SELL, not {side!r}")
            side = side.upper()
        if tag is not None and not _TAG.match(tag):
            raise BadQuery("tag must be 1 to 40 letters, digits, '_', '.' or '-' (e.g. stall, close)")
        n = DEFAULT_LIMIT
        if limit is not None:
            if not re.fullmatch(r"\d{1,6}", limit) or not 1 <= int(limit) <= MAX_LIMIT:
                raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
            n = int(limit)
        after = None
        if cursor is not None:
            m = _CURSOR.match(cursor)
            if m is None:
                raise BadQuery("cursor must be the next_cursor of a previous page (e.g. 20260105-42)")
            after = (m.group(1), int(m.group(2)))
        return cls(day, side, tag, n, after)


@contextmanager
def _connect() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with one thread; a DuckDB failure (a file removed by hand mid-query, an unreadable
    file) becomes HistoryUnavailable rather than an unexplained 500."""
    con = duckdb.connect(":memory:", config={"threads": 1})
    try:
        yield con
    except duckdb.Error as e:
        raise HistoryUnavailable(f"the CSV logs could not be read just now: {e}") from e
    finally:
        con.close()


def _readable(path: Path, columns: tuple[str, ...]) -> bool:
    """Holds at least a header (a file created a moment ago, or emptied by a crash, has nothing to read)."""
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size > len(",".join(columns))
    except OSError:
        return False


def _read_csv_sql(types: dict[str, str]) -> str:
    spec = ", ".join(f"'{k}': '{v}'" for k, v in types.items())
    return (
        "read_csv(?, header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
        f"columns={{{spec}}}, ignore_errors=true)"
    )


def _day_files(log_dir: Path, kind: str, columns: tuple[str, ...], days: list[str]) -> list[tuple[str, Path]]:
    out = []
    for day in days:
        path = csv_path(log_dir, kind, day)
        if _readable(path, columns):
            out.append((day, path))
    return out


def _union(files: list[tuple[str, Path]], types: dict[str, str]) -> tuple[str, list[Any]]:
    """One SELECT over several day files: every row with its day and its row number in that file (one thread
    reads a file in order, so row_number() over the scan is the line's place)."""
    reader = _read_csv_sql(types)
    parts = [f"SELECT ? AS day, row_number() OVER () AS rn, * FROM {reader}" for _ in files]
    params: list[Any] = []
    for day, path in files:
        params += [day, str(path)]
    return " UNION ALL ".join(parts), params


# ---- GET /history/daily ------------------------------------------------------------------------------------
def daily_history(
    log_dir: Path, live_day: str | None = None, live_max_dd: Decimal | None = None
) -> list[dict[str, Any]]:
    """One dict per trading day, oldest first. `live_day`/`live_max_dd`: today's running max drawdown (the
    summary file is written at the roll and at kills only)."""
    files = _day_files(log_dir, "trades", TRADE_COLUMNS, list_days(log_dir)["trades"])
    rows: dict[str, dict[str, Any]] = {}
    if files:
        union, params = _union(files, _TRADE_TYPES)
        sql = f"""
            SELECT day,
                   coalesce(sum(pnl_jpy), 0) AS realized,
                   coalesce(sum(fee), 0) AS fees,
                   coalesce(sum(size) FILTER (WHERE {NOT_A_TRADE_ROW}), 0) AS volume,
                   count(*) FILTER (WHERE {NOT_A_TRADE_ROW}) AS fills,
                   count(*) FILTER (WHERE {NOT_A_TRADE_ROW} AND pnl_jpy > 0) AS wins,
                   count(*) FILTER (WHERE {NOT_A_TRADE_ROW} AND pnl_jpy <> 0) AS closing
            FROM ({union}) GROUP BY day ORDER BY day
        """
        with _connect() as con:
            for day, realized, fees, volume, fills, wins, closing in con.execute(sql, params).fetchall():
                rows[day] = {
                    "day": day,
                    "realized_jpy": _exact(realized),
                    "fees_jpy": _exact(fees),
                    "volume_btc": _exact(volume),
                    "fills": int(fills),
                    # of the fills that realized a profit or a loss, the share that made money
                    "win_rate": None if not closing else round(wins / closing, 4),
                    "max_drawdown_jpy": None,
                    "kills": [],
                }
    for day, summary in DailySummaryFile(log_dir).load_days().items():
        row = rows.setdefault(day, _empty_day(day))
        row["max_drawdown_jpy"] = summary.max_drawdown_jpy
        row["kills"] = [{"at": k.at, "reason": k.reason, "who": k.who} for k in summary.kills]
    if live_day is not None and live_max_dd is not None and live_day in rows:
        known = rows[live_day]["max_drawdown_jpy"]
        rows[live_day]["max_drawdown_jpy"] = live_max_dd if known is None else min(known, live_max_dd)
    return [rows[d] for d in sorted(rows)]


def _empty_day(day: str) -> dict[str, Any]:
    zero = Decimal(0)
    return {
        "day": day,
        "realized_jpy": zero,
        "fees_jpy": zero,
        "volume_btc": zero,
        "fills": 0,
        "win_rate": None,
        "max_drawdown_jpy": None,
        "kills": [],
    }


def _exact(v: Any) -> Decimal:
    """DuckDB's DECIMAL(38,10) as a Decimal without the padding zeros (0.0010000000 → 0.001)."""
    d = v if isinstance(v, Decimal) else Decimal(str(v))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


# ---- GET /trades -------------------------------------------------------------------------------------------
def trade_page(log_dir: Path, q: TradeQuery) -> dict[str, Any]:
    """{"items": [...], "next_cursor": "YYYYMMDD-N" or None}, newest first."""
    days = list_days(log_dir)["trades"]
    if q.day is not None:
        days = [d for d in days if d == q.day]
    if q.after is not None:
        days = [d for d in days if d <= q.after[0]]
    files = _day_files(log_dir, "trades", TRADE_COLUMNS, days)
    if not files:
        return {"items": [], "next_cursor": None}
    union, params = _union(files, _TRADE_TYPES)
    where: list[str] = []
    args: list[Any] = []
    if q.side is not None:
        where.append("side = ?")
        args.append(q.side)
    if q.tag is not None:
        where.append("tag = ?")
        args.append(q.tag)
    if q.after is not None:
        where.append("(day < ? OR (day = ? AND rn < ?))")
        args += [q.after[0], q.after[0], q.after[1]]
    sql = f"SELECT * FROM ({union})"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY day DESC, rn DESC LIMIT ?"
    with _connect() as con:
        cur = con.execute(sql, [*params, *args, q.limit + 1])
        names = [d[0] for d in cur.description]
        fetched = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    more = len(fetched) > q.limit
    page = fetched[: q.limit]
    items = [_trade_item(r) for r in page]
    return {"items": items, "next_cursor": f"{page[-1]['day']}-{page[-1]['rn']}" if more else None}


def _trade_item(r: dict[str, Any]) -> dict[str, Any]:
    money = ("price", "size", "fee", "pnl_jpy", "pnl_cum_jpy", "inventory_after")
    out: dict[str, Any] = {"day": r["day"], "row": int(r["rn"])}
    for col in TRADE_COLUMNS:
        v = r[col]
        out[col] = (None if v is None else _exact(v)) if col in money else (v or "")
    return out


# ---- the audit panel ---------------------------------------------------------------------------------------
def audit_rows(log_dir: Path, limit: int = 50) -> list[dict[str, str]]:
    """The newest live config changes first (who, when, field, old, new)."""
    files = _day_files(log_dir, "audit", AUDIT_COLUMNS, list_days(log_dir)["audit"])
    if not files:
        return []
    union, params = _union(files, _AUDIT_TYPES)
    sql = f"SELECT {', '.join(AUDIT_COLUMNS)} FROM ({union}) ORDER BY day DESC, rn DESC LIMIT ?"
    with _connect() as con:
        rows = con.execute(sql, [*params, limit]).fetchall()
    return [{c: (v or "") for c, v in zip(AUDIT_COLUMNS, r, strict=True)} for r in rows]
