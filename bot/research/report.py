"""Self-contained HTML for a replay (PnL over time, fills on the mid, the markout curve, stall lengths) and
for a sweep (a table sorted by mean PnL; a heat map when the grid has two parameters). Inline SVG: no script,
no CDN, opens from disk anywhere."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bot.research.replay import ReplayTrace

W, H, PAD = 780, 240, 72

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}svg{background:#fcfcfc;border:1px solid #ddd}
.note{color:#666;font-size:12px}
"""


def _esc(x: object) -> str:
    return html.escape(str(x))


def _scale(vals: Sequence[float], lo_px: float, hi_px: float) -> tuple[float, float, Any]:
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1

    def f(v: float) -> float:
        return lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px)

    return lo, hi, f


def _axes(xlo: float, xhi: float, ylo: float, yhi: float, xlabel: str, ylabel: str) -> str:
    def fmt(v: float) -> str:
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"

    return (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#888"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#888"/>'
        f'<text x="{PAD}" y="{H - PAD + 16}" font-size="11">{fmt(xlo)}</text>'
        f'<text x="{W - 10}" y="{H - PAD + 16}" font-size="11" text-anchor="end">{fmt(xhi)}</text>'
        f'<text x="{(W + PAD) / 2}" y="{H - 8}" font-size="11" text-anchor="middle">{_esc(xlabel)}</text>'
        f'<text x="{PAD - 4}" y="16" font-size="11" text-anchor="end">{fmt(yhi)}</text>'
        f'<text x="{PAD - 4}" y="{H - PAD}" font-size="11" text-anchor="end">{fmt(ylo)}</text>'
        f'<text x="12" y="{H / 2}" font-size="11" transform="rotate(-90 12 {H / 2})" '
        f'text-anchor="middle">{_esc(ylabel)}</text>'
    )


def _line_chart(
    xs: Sequence[float], ys: Sequence[float], xlabel: str, ylabel: str, zero: bool = False
) -> str:
    if not xs:
        return '<p class="note">no data</p>'
    xlo, xhi, fx = _scale(xs, PAD, W - 10)
    ylo, yhi, fy = _scale(list(ys) + ([0.0] if zero else []), H - PAD, 10)
    pts = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in zip(xs, ys, strict=True))
    y0 = f"{fy(0):.1f}"
    zl = f'<line x1="{PAD}" x2="{W - 10}" y1="{y0}" y2="{y0}" stroke="#bbb" stroke-dasharray="4"/>'
    return (
        f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">'
        + _axes(xlo, xhi, ylo, yhi, xlabel, ylabel)
        + (zl if zero else "")
        + f'<polyline fill="none" stroke="#2a6fdb" stroke-width="1.3" points="{pts}"/>'
        + "</svg>"
    )


def _fills_chart(trace: ReplayTrace, t0: int) -> str:
    xs = [(t - t0) / 1e9 for t, _ in trace.mid]
    ys = [float(m) for _, m in trace.mid]
    fills = [((t - t0) / 1e9, side, float(px), tag) for t, side, px, _, tag in trace.fills]
    ys_all = ys + [f[2] for f in fills]
    if not xs:
        return '<p class="note">no data</p>'
    xlo, xhi, fx = _scale(xs + [f[0] for f in fills], PAD, W - 10)
    ylo, yhi, fy = _scale(ys_all, H - PAD, 10)
    pts = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in zip(xs, ys, strict=True))
    marks = []
    for x, side, px, tag in fills:
        color = "#1a9850" if side == "BUY" else "#d73027"
        shape = "rect" if tag == "close" else "circle"
        if shape == "circle":
            marks.append(f'<circle cx="{fx(x):.1f}" cy="{fy(px):.1f}" r="3" fill="{color}"/>')
        else:
            marks.append(
                f'<rect x="{fx(x) - 3:.1f}" y="{fy(px) - 3:.1f}" width="6" height="6" fill="none" '
                f'stroke="{color}"/>'
            )
    return (
        f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">'
        + _axes(xlo, xhi, ylo, yhi, "seconds", "JPY")
        + f'<polyline fill="none" stroke="#999" stroke-width="1" points="{pts}"/>'
        + "".join(marks)
        + "</svg>"
    )


def _histogram(vals_ms: Sequence[int]) -> str:
    if not vals_ms:
        return '<p class="note">no stalls</p>'
    edges = [0, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000, math.inf]
    counts = [0] * (len(edges) - 1)
    for v in vals_ms:
        for i in range(len(edges) - 1):
            if edges[i] <= v < edges[i + 1]:
                counts[i] += 1
                break
    top = max(counts) or 1
    bw = (W - PAD - 10) / len(counts)
    bars = []
    for i, c in enumerate(counts):
        h = (H - PAD - 10) * c / top
        x = PAD + i * bw
        label = f"{edges[i] / 1000:g}–{edges[i + 1] / 1000:g}s" if edges[i + 1] != math.inf else "16s+"
        bars.append(
            f'<rect x="{x + 2:.1f}" y="{H - PAD - h:.1f}" width="{bw - 4:.1f}" height="{h:.1f}" '
            'fill="#7aa6e8"/>'
            f'<text x="{x + bw / 2:.1f}" y="{H - PAD + 14}" font-size="10" '
            f'text-anchor="middle">{label}</text>'
            f'<text x="{x + bw / 2:.1f}" y="{H - PAD - h - 3:.1f}" font-size="10" '
            f'text-anchor="middle">{c}</text>'
        )
    return (
        f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#888"/>'
        + "".join(bars)
        + "</svg>"
    )


def _q(m: Decimal | None) -> str:
    return "" if m is None else _esc(m.quantize(Decimal("0.0001")))


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(f'<tr><th class="l">{_esc(k)}</th><td>{_esc(v)}</td></tr>' for k, v in d.items())
    return f"<table>{rows}</table>"


def replay_html(summary: dict[str, Any], trace: ReplayTrace, *, title: str, config: dict[str, Any]) -> str:
    t0 = trace.pnl[0][0] if trace.pnl else 0
    pnl_x = [(t - t0) / 1e9 for t, _ in trace.pnl]
    pnl_y = [float(v) for _, v in trace.pnl]
    curve = [(h, float(m), n) for h, m, n in trace.markout_curve if m is not None]
    pnl_svg = _line_chart(pnl_x, pnl_y, "seconds", "JPY", zero=True)
    fills_svg = _fills_chart(trace, t0)
    curve_svg = _line_chart(
        [c[0] for c in curve], [c[1] for c in curve], "horizon (s)", "JPY per fill", zero=True
    )
    curve_rows = "".join(
        f"<tr><td>{h:g}</td><td>{_q(m)}</td><td>{n}</td></tr>" for h, m, n in trace.markout_curve
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{_esc(title)}</h1>
<p class="note">A replay of recorded market data through the bot's own strategy, book, order tracker and
ledger, with the paper venue's queue-aware matching and a latency model. The simulator's crowd is a model:
real paper tapes should decide before live money.</p>
<h2>Summary</h2>{_kv_table(summary)}
<h2>PnL over time (realized + unrealized at mid, JPY)</h2>{pnl_svg}
<h2>Fills on the mid</h2>
<p class="note">grey: mid; dots: stall fills, squares: closes; green buy, red sell</p>{fills_svg}
<h2>Markout curve (mean per fill, JPY for its size; positive = good for us)</h2>{curve_svg}
<table><tr><th>horizon s</th><th>mean JPY</th><th>fills</th></tr>{curve_rows}</table>
<h2>Stall lengths (time between best bid/ask price changes)</h2>{_histogram(trace.stalls_ms)}
<h2>Strategy config</h2>{_kv_table(config)}
</body></html>"""


def _heat(v: float, lo: float, hi: float) -> str:
    """Red (worst) → white → green (best)."""
    if hi == lo:
        return "#ffffff"
    x = (v - lo) / (hi - lo)
    if x < 0.5:
        k = int(255 * x * 2)
        return f"#ff{k:02x}{k:02x}"
    k = int(255 * (1 - x) * 2)
    return f"#{k:02x}ff{k:02x}"


def sweep_html(rows: list[dict[str, Any]], grid_keys: list[str], *, title: str, sort_key: str) -> str:
    """`rows`: summary.csv rows (one per grid point), already sorted best first."""
    cols = list(rows[0].keys()) if rows else []
    vals = [float(r[sort_key]) for r in rows if r.get(sort_key) not in (None, "")]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            style = ""
            if c == sort_key and r.get(c) not in (None, ""):
                style = f' style="background:{_heat(float(r[c]), lo, hi)}"'
            cells.append(f'<td{style} class="{"l" if c in grid_keys else ""}">{_esc(r.get(c, ""))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    heat = ""
    if len(grid_keys) == 2 and rows:
        a, b = grid_keys
        xs = sorted({r[a] for r in rows}, key=_num_or_str)
        ys = sorted({r[b] for r in rows}, key=_num_or_str)
        by = {(r[a], r[b]): r for r in rows}
        trs = [f'<tr><th class="l">{_esc(b)} \\ {_esc(a)}</th>' + "".join(f"<th>{_esc(x)}</th>" for x in xs)]
        for y in ys:
            tds = []
            for x in xs:
                cell = by.get((x, y))
                v = None if cell is None or cell.get(sort_key) in (None, "") else float(cell[sort_key])
                tds.append(
                    "<td></td>" if v is None else f'<td style="background:{_heat(v, lo, hi)}">{v:,.2f}</td>'
                )
            trs.append(f'<tr><th class="l">{_esc(y)}</th>' + "".join(tds) + "</tr>")
        heat = f"<h2>Heat map: {_esc(sort_key)}</h2><table>" + "</tr>".join(trs) + "</table>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>
<p class="note">One replay per grid point and tape; mean and spread (standard deviation) over tapes, sorted by
mean {_esc(sort_key)}. The simulator's crowd is a model: real paper tapes should decide before live money.</p>
{heat}<h2>All grid points</h2><table><tr>{head}</tr>{"".join(body)}</table></body></html>"""


def _num_or_str(x: Any) -> tuple[int, float, str]:
    try:
        return (0, float(x), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(x))
