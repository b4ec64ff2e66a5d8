"""Preflight: is this account, this machine and this venue fit for a live (or paper) session to start?

Ten checks, each a `PreflightCheck` a trader can act on: keys present; their permissions
(`/v1/me/getpermissions` against the endpoints the bot calls); this machine's clock against the venue's
`Date` header (bitFlyer refuses a signature whose timestamp is too far off); collateral, keep rate and margin
call (`getcollateral`); a position or open orders already on the product; board state and health; minutes
to the daily maintenance; rate-limit headroom (`X-RateLimit-*` seen on these very calls); the log folder
writable with free space; the state file belonging to this mode and account. `ready` means no error-level
check failed; a position alone may be overruled by a human (`PreflightReport.start_refusal`).

The verdicts are pure functions of what was read (unit-tested); `run_preflight` does the reading, over the
project's `BitflyerHttp` (the real pybotters client). A call that fails becomes that check's failure with
the venue's own words; nothing here raises. Imports infra and types only; the runner (start gate), the CLI
and the server call it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from bot.config.loader import PreflightConfig
from bot.infra.bitflyer_parse import ParseError, net_position, parse_position_rows
from bot.infra.http_bitflyer import BitflyerHttp
from bot.types.exchange import (
    ENDPOINTS_THE_BOT_NEEDS,
    MAINTENANCE_MINUTES,
    MAINTENANCE_START_HHMM,
    MAINTENANCE_TZ,
    ErrorKind,
    ExchangeError,
    RateLimitInfo,
)
from bot.types.preflight import ADOPTABLE_CHECK, Level, PreflightCheck, PreflightReport

__all__ = ["PreflightInputs", "run_preflight"]

TRADABLE_HEALTH = frozenset({"NORMAL", "BUSY", "VERY BUSY", "SUPER BUSY"})
MB = 1024 * 1024


@dataclass(frozen=True)
class PreflightInputs:
    """What the checks need besides the venue: whose session it is and where it keeps its files."""

    mode: str  # sim | paper | live
    account: str  # the short hash of the API key the state file is tagged with (never the key)
    keys_present: bool
    keys_source: str  # where the keys come from, for the detail ("BITFLYER_API_KEY in the environment")
    product_code: str
    log_dir: Path
    state_file: Path
    thresholds: PreflightConfig
    min_keep_rate: Decimal  # risk.min_keep_rate: the level below which a running bot blocks entries too


def _check(name: str, ok: bool, level: Level, detail: str) -> PreflightCheck:
    return PreflightCheck(name=name, ok=ok, level=level, detail=detail)


def _refused(name: str, what: str, e: ExchangeError) -> PreflightCheck:
    if e.kind is ErrorKind.AUTH:
        return _check(name, False, "error", f"the venue refused this key on {what}: {e.message} ({e.label})")
    return _check(name, False, "error", f"could not read {what} ({e.label}): {e.message}")


def _not_checked(name: str, why: str) -> PreflightCheck:
    return _check(name, False, "info", f"not checked: {why}")


def _num(row: dict[str, Any], key: str) -> Decimal:
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"{key} missing or not a number ({v!r})")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ValueError(f"{key} is not a number ({v!r})") from None
    if not d.is_finite():
        raise ValueError(f"{key} is not finite ({v!r})")
    return d


def _yen(d: Decimal) -> str:
    return f"{d.quantize(Decimal(1)):,} JPY"


def _pct(ratio: Decimal) -> str:
    return f"{(ratio * 100).quantize(Decimal('0.1'))} %"


# ---------------------------------------------------------------- pure verdicts
def keys_verdict(present: bool, source: str) -> PreflightCheck:
    if present:
        return _check("keys", True, "info", f"API key and secret present ({source})")
    return _check("keys", False, "error", f"no API key or secret: {source}")


def permissions_verdict(
    permitted: list[str], needed: tuple[str, ...] = ENDPOINTS_THE_BOT_NEEDS
) -> PreflightCheck:
    missing = [p for p in needed if p not in set(permitted)]
    if missing:
        return _check(
            "permissions",
            False,
            "error",
            f"key lacks {', '.join(missing)}: enable it in bitFlyer's API settings",
        )
    return _check("permissions", True, "info", f"key may call all {len(needed)} endpoints the bot uses")


def clock_verdict(skew_s: float, limit_s: float) -> PreflightCheck:
    """`skew_s`: how far the venue's clock is ahead of ours (negative: behind)."""
    where = "behind" if skew_s > 0 else "ahead of"
    if abs(skew_s) > limit_s:
        return _check(
            "clock",
            False,
            "error",
            f"this machine's clock is {abs(skew_s):.0f} s {where} the exchange's (limit {limit_s:g} s): "
            "bitFlyer refuses signed requests whose timestamp is that far off; sync the clock (NTP)",
        )
    return _check("clock", True, "info", f"within {abs(skew_s):.1f} s of the exchange's clock")


def collateral_verdict(row: dict[str, Any], min_keep_rate: Decimal) -> PreflightCheck:
    try:
        collateral = _num(row, "collateral")
        required = _num(row, "require_collateral")
        keep = _num(row, "keep_rate")
        open_pnl = _num(row, "open_position_pnl")
        call = _num(row, "margin_call_amount") if row.get("margin_call_amount") is not None else Decimal(0)
    except ValueError as e:
        return _check("collateral", False, "error", f"getcollateral answered oddly: {e}")
    if call > 0:
        due = row.get("margin_call_due_date") or "unknown"
        return _check(
            "collateral",
            False,
            "error",
            f"margin call of {_yen(call)} outstanding (due {due}): settle it first",
        )
    if collateral + open_pnl <= 0:
        return _check(
            "collateral", False, "error", f"no collateral ({_yen(collateral)}): deposit before trading"
        )
    if required > 0 and keep < min_keep_rate:
        return _check(
            "collateral",
            False,
            "error",
            f"keep rate {_pct(keep)} is under the {_pct(min_keep_rate)} minimum (risk.min_keep_rate); "
            f"collateral {_yen(collateral)}, margin in use {_yen(required)}",
        )
    rate = f"keep rate {_pct(keep)}" if required > 0 else "no margin in use"
    return _check("collateral", True, "info", f"collateral {_yen(collateral)}, {rate}")


def position_verdict(net_btc: Decimal, avg: Decimal | None, open_orders: int, product: str) -> PreflightCheck:
    if net_btc == 0 and open_orders == 0:
        return _check(ADOPTABLE_CHECK, True, "info", f"flat on {product}, no open orders")
    parts = []
    if net_btc != 0:
        side = "long" if net_btc > 0 else "short"
        at = f" at {_yen(avg)} average" if avg is not None else ""
        parts.append(f"{side} {abs(net_btc)} BTC{at}")
    if open_orders:
        parts.append(f"{open_orders} open order{'s' if open_orders != 1 else ''}")
    return _check(
        ADOPTABLE_CHECK,
        False,
        "error",
        f"{' and '.join(parts)} already on {product}: the bot adopts them only when you confirm "
        "(the dashboard's Start asks; POST /strategy/start?adopt=true)",
    )


def board_verdict(state: str, health: str) -> PreflightCheck:
    if state == "RUNNING" and health in TRADABLE_HEALTH:
        return _check("board", True, "info", f"board {state}, health {health}")
    return _check(
        "board", False, "warning", f"board {state}, health {health}: the bot sends no order until it is open"
    )


def maintenance_verdict(now: datetime, warn_min: int) -> PreflightCheck:
    tz = ZoneInfo(MAINTENANCE_TZ)
    local = now.astimezone(tz)
    hh, mm = MAINTENANCE_START_HHMM
    start = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
    end = start + timedelta(minutes=MAINTENANCE_MINUTES)
    window = f"{start:%H:%M}–{end:%H:%M} JST"
    if start <= local < end:
        return _check(
            "maintenance", False, "warning", f"in the daily maintenance now ({window}): orders are refused"
        )
    if local >= end:
        start += timedelta(days=1)
    minutes = int((start - local).total_seconds() // 60)
    if minutes < warn_min:
        return _check(
            "maintenance",
            False,
            "warning",
            f"daily maintenance in {minutes} min ({window}): orders refused and sockets dropped then",
        )
    return _check("maintenance", True, "info", f"next daily maintenance in {minutes} min ({window})")


def rate_verdict(seen: dict[str, RateLimitInfo], min_remaining: int, now_wall: float) -> PreflightCheck:
    """The tightest `X-RateLimit-Remaining` among the answers whose window has not reset yet (a long-running
    process remembers headers from windows long gone)."""
    known = [
        (path, i)
        for path, i in seen.items()
        if i.remaining is not None and (i.reset_epoch is None or i.reset_epoch > now_wall)
    ]
    if not known:
        return _check("rate_limit", True, "info", "no X-RateLimit headers in the current window")
    path, info = min(known, key=lambda pi: pi[1].remaining or 0)
    left = info.remaining or 0
    window = f"{info.period} s window" if info.period else "window"
    resets = ""
    if info.reset_epoch is not None:
        resets = f", resets in {max(0, round(info.reset_epoch - info.seen_at_wall))} s"
    if left == 0:
        return _check("rate_limit", False, "error", f"rate limit used up on {path}: 0 requests left{resets}")
    if left < min_remaining:
        return _check(
            "rate_limit",
            False,
            "warning",
            f"only {left} requests left in the {window} on {path} "
            f"(preflight.min_rate_remaining {min_remaining}){resets}",
        )
    return _check("rate_limit", True, "info", f"{left} requests left in the {window} on {path}")


# ---------------------------------------------------------------- local files (blocking: run in a thread)
def storage_check(log_dir: Path, min_free_mb: int) -> PreflightCheck:
    """Really write (and fsync) a file in the log folder: a folder that exists but takes no writes, a
    read-only mount or a full disk all fail here, not at the first trade."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(
            prefix=".preflight-", suffix=".tmp", dir=log_dir
        )  # unique: runs may overlap
        try:
            os.write(fd, b"preflight\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        free_mb = shutil.disk_usage(log_dir).free // MB
    except OSError as e:
        return _check("storage", False, "error", f"log folder {log_dir} is not writable: {e.strerror or e}")
    if free_mb < min_free_mb:
        return _check(
            "storage",
            False,
            "error",
            f"only {free_mb} MB free in {log_dir} (preflight.min_free_mb {min_free_mb}): "
            "a full disk stops the logs",
        )
    return _check("storage", True, "info", f"log folder {log_dir} writable, {free_mb:,} MB free")


def state_file_check(path: Path, mode: str, account: str) -> PreflightCheck:
    if not path.exists():
        return _check(
            "state_file", True, "info", f"{path}: none yet (a fresh start for this mode and account)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return _check(
            "state_file", False, "error", f"{path} is unreadable ({e}): the bot would start blind to it"
        )
    if not isinstance(data, dict):
        return _check("state_file", False, "error", f"{path} is not a state file (no JSON object)")
    owner = (data.get("mode"), data.get("account"))
    if owner != (mode, account):
        return _check(
            "state_file",
            False,
            "error",
            f"{path} belongs to mode {owner[0]}, account {owner[1]}, not this {mode} account {account}: "
            "it would be ignored and overwritten; give this session its own (--state-file / --log-dir)",
        )
    if data.get("state") == "KILLED":
        return _check(
            "state_file",
            False,
            "warning",
            f"{path} holds a kill latch: the bot starts KILLED and flattens; only a reset clears it",
        )
    return _check("state_file", True, "info", f"{path} belongs to this {mode} account")


# ---------------------------------------------------------------- the reading
async def _guarded(name: str, what: str, read: Awaitable[PreflightCheck]) -> PreflightCheck:
    """One check's reading: a failed call is that check's failure in the venue's words; anything else
    unexpected too (with one log line), never an exception out of the preflight."""
    try:
        return await read
    except ExchangeError as e:
        return _refused(name, what, e)
    except ParseError as e:
        return _check(name, False, "error", f"{what} answered oddly: {e}")
    except Exception as e:
        logger.opt(exception=e).error("preflight check {} failed unexpectedly", name)
        return _check(name, False, "error", f"could not be checked: {type(e).__name__}: {e}")


async def _clock(http: BitflyerHttp, limit_s: float) -> PreflightCheck:
    return clock_verdict((await http.venue_clock()).skew_s, limit_s)


async def _permissions(http: BitflyerHttp) -> PreflightCheck:
    return permissions_verdict(await http.get_permissions())


async def _collateral(http: BitflyerHttp, min_keep_rate: Decimal) -> PreflightCheck:
    return collateral_verdict(await http.get_collateral(), min_keep_rate)


async def _position(http: BitflyerHttp, product: str) -> PreflightCheck:
    net, avg = net_position(parse_position_rows(await http.get_positions(), product))
    active = await http.get_child_orders(state="ACTIVE", count=100)
    return position_verdict(net, avg, len(active), product)


async def _board(http: BitflyerHttp) -> PreflightCheck:
    board = await http.get_board_state()
    return board_verdict(str(board["state"]), await http.get_health())


async def _venue_checks(http: BitflyerHttp, inputs: PreflightInputs) -> list[PreflightCheck]:
    """The venue's checks run side by side: a venue that does not answer costs one timeout, not six."""
    th = inputs.thresholds
    reads: list[Awaitable[PreflightCheck]] = [
        _guarded("clock", "the venue's clock (gethealth Date header)", _clock(http, th.max_clock_skew_sec))
    ]
    if inputs.keys_present:
        reads += [
            _guarded("permissions", "getpermissions", _permissions(http)),
            _guarded("collateral", "getcollateral", _collateral(http, inputs.min_keep_rate)),
            _guarded(ADOPTABLE_CHECK, "getpositions / getchildorders", _position(http, inputs.product_code)),
        ]
    reads.append(_guarded("board", "getboardstate / gethealth", _board(http)))
    checks = list(await asyncio.gather(*reads))
    if not inputs.keys_present:
        checks[1:1] = [_not_checked(n, "no API key") for n in ("permissions", "collateral", ADOPTABLE_CHECK)]
    return checks


async def run_preflight(
    http: BitflyerHttp, inputs: PreflightInputs, *, now: datetime | None = None
) -> PreflightReport:
    """Every check, in the order a trader reads them. Never raises for a venue or file problem: each
    becomes the failing check's detail."""
    checks = [keys_verdict(inputs.keys_present, inputs.keys_source)]
    checks += await _venue_checks(http, inputs)
    checks.append(maintenance_verdict(now or datetime.now(UTC), inputs.thresholds.maintenance_warn_min))
    checks.append(rate_verdict(dict(http.rate_limits), inputs.thresholds.min_rate_remaining, time.time()))
    checks.append(await asyncio.to_thread(storage_check, inputs.log_dir, inputs.thresholds.min_free_mb))
    if inputs.keys_present:
        checks.append(
            await asyncio.to_thread(state_file_check, inputs.state_file, inputs.mode, inputs.account)
        )
    else:  # whose file it is depends on the key
        checks.append(_not_checked("state_file", "no API key to tell whose account it belongs to"))
    return PreflightReport.of(checks)


def render_table(report: PreflightReport) -> str:
    """The human part of the CLI's output: one line per check, then the verdict."""
    width = max(len(c.name) for c in report.checks)
    lines = []
    for c in report.checks:
        mark = (
            "ok" if c.ok else ("FAIL" if c.level == "error" else ("WARN" if c.level == "warning" else "--"))
        )
        lines.append(f"{mark:<4}  {c.name:<{width}}  {c.detail}")
    failing = report.failing()
    verdict = (
        "READY" if report.ready else f"NOT READY ({len(failing)} error{'s' if len(failing) != 1 else ''})"
    )
    lines.append(verdict)
    return "\n".join(lines)
