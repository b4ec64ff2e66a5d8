"""Dashboard HTML: one Jinja2 environment (autoescaped) for the page and for the per-panel SSE fragments."""

from __future__ import annotations

import re
import types
import typing
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import annotated_types
from fastapi.templating import Jinja2Templates
from jinja2 import Undefined
from pydantic import BaseModel

from bot.config import RiskConfig, StallStrategyConfig
from bot.config.loader import field_unit
from bot.types.snapshot import BotSnapshot, plain

# Panel name = SSE event name = templates/fragments/<name>.html = the sse-swap target on the page.
PANELS = ("banner", "board", "orders", "inventory", "decisions", "fills", "health", "config")
HOT_MODELS: dict[str, type[BaseModel]] = {"strategy": StallStrategyConfig, "risk": RiskConfig}
_DASH = "—"


def _dec(v: Any) -> Decimal | None:
    if v is None or isinstance(v, Undefined) or v == "":
        return None
    try:
        return Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None


def fmt_num(v: Any, places: int | None = None) -> str:
    """'13600000' → '13,600,000'; '0.00100000' → '0.001'; None → '—'. Display only: values stay strings."""
    d = _dec(v)
    if d is None:
        return _DASH if v is None or isinstance(v, Undefined) or v == "" else str(v)
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places))
    elif d == d.to_integral_value():
        d = d.quantize(Decimal(1))
    else:
        d = d.normalize()
    if d == 0:
        d = abs(d)  # −0.4 shown to the yen is 0, never "-0"
    return f"{d:,f}"


def fmt_signed(v: Any, places: int | None = None) -> str:
    d = _dec(v)
    text = fmt_num(v, places)
    return f"+{text}" if d is not None and d > 0 else text


def sign_class(v: Any) -> str:
    d = _dec(v)
    if d is None or d == 0:
        return "zero"
    return "pos" if d > 0 else "neg"


def fmt_ms(v: Any) -> str:
    d = _dec(v)
    if d is None:
        return _DASH
    if d < 1:
        return "<1 ms"  # a loopback answer; "0 ms" reads as "never measured"
    return f"{d:.1f} ms" if d < 10 else f"{int(d):,} ms"


def fmt_clock(ts: Any, tz: Any = None) -> str:
    """'2026-11-25T23:21:09.322+00:00' → '08:21:09.322' in the trading-day zone (the trader's clock)."""
    if not ts or isinstance(ts, Undefined):
        return _DASH
    try:
        when = datetime.fromisoformat(str(ts))
        if when.tzinfo is not None and tz and not isinstance(tz, Undefined):
            when = when.astimezone(ZoneInfo(str(tz)))
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return str(ts)
    return when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def fmt_tzname(tz: Any) -> str:
    """'Asia/Tokyo' → 'JST': the label beside every time on the page (one zone on screen)."""
    if not tz or isinstance(tz, Undefined):
        return "UTC"
    try:
        return datetime.now(ZoneInfo(str(tz))).strftime("%Z")
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return str(tz)


def fmt_seconds(ts: Any, tz: Any = None) -> str:
    """A transition's time to the second, in the trading-day zone: '19:44:02'."""
    text = fmt_clock(ts, tz)
    return text.rsplit(".", 1)[0] if text != _DASH else text


def jpy_left(value: Any, limit: Any) -> str:
    """How many JPY remain before a (negative) kill limit is reached: '29,970'."""
    v, lim = _dec(value), _dec(limit)
    if v is None or lim is None:
        return _DASH
    return fmt_num(max(Decimal(0), v - lim), 0)


def ratio_pct(value: Any, limit: Any) -> int:
    """How far `value` has gone toward a (negative) kill limit, 0–100, for the drawdown bars."""
    v, lim = _dec(value), _dec(limit)
    if v is None or lim is None or lim == 0:
        return 0
    return max(0, min(100, int(v / lim * 100)))


# ---- the config form: generated from the pydantic models so it can never drift from them -------------------
def _field_kind(annotation: Any) -> tuple[str, list[str]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", [str(a) for a in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _field_kind(args[0]) if args else ("text", [])
    if annotation is bool:
        return "bool", ["true", "false"]
    if annotation is int:
        return "int", []
    if annotation is Decimal or annotation is float:
        return "decimal", []
    return "text", []


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def field_range(info: Any, kind: str, unit: str) -> str:
    """What the field accepts, from its constraints: '1 – 3,600,000 ms' (a whole number's gt 0 is 1), or
    '> 0 and ≤ 100 BTC' where a bound is exclusive."""
    if kind not in ("int", "decimal"):
        return ""
    whole = kind == "int"
    low: tuple[str, Any] | None = None
    high: tuple[str, Any] | None = None
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            low = ("≥", m.ge)
        elif isinstance(m, annotated_types.Gt):
            low = ("≥", int(str(m.gt)) + 1) if whole else (">", m.gt)
        elif isinstance(m, annotated_types.Le):
            high = ("≤", m.le)
        elif isinstance(m, annotated_types.Lt):
            high = ("≤", int(str(m.lt)) - 1) if whole else ("<", m.lt)
    if low is not None and high is not None and low[0] == "≥" and high[0] == "≤":
        return f"{fmt_num(low[1])} – {fmt_num(high[1])}{unit}"
    parts = [f"{b[0]} {fmt_num(b[1])}" for b in (low, high) if b is not None]
    return " and ".join(parts) + unit if parts else ""


def config_fields(config: dict[str, Any], file_config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One entry per hot field: name 'strategy.stall_T_ms', kind int|decimal|bool|choice|text, the running
    value and the config file's value as text, choices, unit and allowed range (from the model), help."""
    out = []
    for section, model in HOT_MODELS.items():
        running = config.get(section, {})
        in_file = (file_config or config).get(section, {})
        for name, info in model.model_fields.items():
            kind, choices = _field_kind(info.annotation)
            unit = field_unit(info)
            out.append(
                {
                    "name": f"{section}.{name}",
                    "section": section,
                    "field": name,
                    "kind": kind,
                    "choices": choices,
                    "value": _text(running.get(name)),
                    "file_value": _text(in_file.get(name)),
                    "unit": unit.strip(),
                    "range": field_range(info, kind, unit),
                    "help": info.description or "",
                }
            )
    return out


def hot_config(config: dict[str, Any]) -> dict[str, Any]:
    return {section: config.get(section, {}) for section in HOT_MODELS}


def make_templates(directory: Path) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(directory))
    env = templates.env
    env.filters.update(
        num=fmt_num,
        signed=fmt_signed,
        sign=sign_class,
        ms=fmt_ms,
        clock=fmt_clock,
        seconds=fmt_seconds,
        tzname=fmt_tzname,
    )
    env.globals.update(ratio_pct=ratio_pct, jpy_left=jpy_left, panels=PANELS)
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates


_NEWLINE_INDENT = re.compile(r"\n\s*")
_BETWEEN_TAGS = re.compile(r">\s+<")


def compact(html: str) -> str:
    """Template indentation is for people; on the wire (8 times a second, to every client) it is a third of
    the bytes. No <pre> in the fragments, so whitespace runs are insignificant."""
    return _BETWEEN_TAGS.sub("><", _NEWLINE_INDENT.sub(" ", html)).strip()


class FragmentRenderer:
    """Renders every panel from one snapshot: {panel name: html}. Used by the broadcaster and the page."""

    def __init__(self, templates: Jinja2Templates) -> None:
        self._templates = {name: templates.env.get_template(f"fragments/{name}.html") for name in PANELS}

    def context(self, snap: BotSnapshot) -> dict[str, Any]:
        return {"s": snap}

    def __call__(self, snap: BotSnapshot) -> dict[str, str]:
        ctx = self.context(snap)
        return {name: compact(tpl.render(ctx)) for name, tpl in self._templates.items()}


CHART_MAX_POINTS = 600  # per line: plenty for a chart a few hundred pixels wide, small on the wire


def thin(points: list[Any], max_points: int = CHART_MAX_POINTS) -> list[Any]:
    """Every k-th point so at most `max_points` remain; the newest point always stays."""
    if len(points) <= max_points:
        return points
    step = -(-len(points) // max_points)
    out = points[::-1][::step][::-1]
    return out


def chart_payload(snap: BotSnapshot) -> dict[str, Any]:
    """The chart event's JSON: points as [unix seconds, "decimal string"] (the browser parses them)."""
    chart = snap.chart
    return {
        "mid": [[t, plain(v)] for t, v in thin(chart.mid)],
        "fills": [[t, plain(v), side] for t, v, side in chart.fills],
        "pnl": [[t, plain(v)] for t, v in thin(chart.pnl)],
        "limits": snap.limits.model_dump(mode="json"),
    }
