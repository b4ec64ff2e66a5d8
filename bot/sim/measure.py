"""Measure the simulated feed's shape in simulated time (no sockets, no waiting): diff rate, levels per diff,
spread and stall distributions, execution rate, book depth. `python -m bot.sim.measure --seconds 600`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from bot.config.loader import SimConfig
from bot.sim.exchange import Exchange, Public
from bot.types.dto import Side

SEC = 1_000_000_000
MS = 1_000_000


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * q))]


@dataclass(frozen=True, slots=True)
class FeedStats:
    seconds: float
    diffs_per_s: float
    levels_per_diff_median: float
    levels_per_diff_p90: float
    max_diff_gap_ms: float
    exec_frames_per_s: float
    trades_per_s: float
    spread_ticks_pcts: dict[str, float]  # p5 p25 p50 p75 p95, sampled at each diff (own orders: none)
    tight_share: float  # diffs with spread ≤ 20 ticks
    stall_ms_pcts: dict[str, float]  # time between best-price changes: p10 p50 p90 p99 max
    share_of_time_stalled_over_250ms: float
    best_changes_per_s: float
    depth_bid: int
    depth_ask: int
    snapshot_levels: int
    missed_deletes: int


def measure_feed(seed: int = 1, activity: float = 1.0, seconds: int = 600) -> FeedStats:
    ex = Exchange(SimConfig(seed=seed, activity=activity), 0, 1_795_000_000_000_000_000)
    now = 0
    levels: list[float] = []
    spreads: list[float] = []
    stalls: list[float] = []
    gaps: list[float] = []
    diffs = exec_frames = trades = 0
    last: tuple[int, int] | None = None
    changed = prev_diff = 0
    while now < seconds * SEC:
        now = ex.next_due()
        for o in ex.advance(now):
            if not isinstance(o, Public):
                continue
            if o.channel == "lightning_board_FX_BTC_JPY":
                diffs += 1
                gaps.append((now - prev_diff) / MS)
                prev_diff = now
                levels.append(len(o.message["bids"]) + len(o.message["asks"]))
                b, a = ex.book.crowd_best(Side.BUY), ex.book.crowd_best(Side.SELL)
                if b is None or a is None:
                    continue
                spreads.append(a - b)
                if (b, a) != last:
                    if last is not None:
                        stalls.append((now - changed) / MS)
                    last, changed = (b, a), now
            elif o.channel.startswith("lightning_executions"):
                exec_frames += 1
                trades += len(o.message)
    for xs in (levels, spreads, stalls):
        xs.sort()
    return FeedStats(
        seconds=seconds,
        diffs_per_s=round(diffs / seconds, 2),
        levels_per_diff_median=_pct(levels, 0.5),
        levels_per_diff_p90=_pct(levels, 0.9),
        max_diff_gap_ms=round(max(gaps), 1),
        exec_frames_per_s=round(exec_frames / seconds, 3),
        trades_per_s=round(trades / seconds, 3),
        spread_ticks_pcts={f"p{int(q * 100)}": _pct(spreads, q) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
        tight_share=round(sum(s <= 20 for s in spreads) / len(spreads), 3),
        stall_ms_pcts={
            **{f"p{int(q * 100)}": round(_pct(stalls, q), 1) for q in (0.1, 0.5, 0.9, 0.99)},
            "max": round(stalls[-1], 1),
        },
        share_of_time_stalled_over_250ms=round(sum(s for s in stalls if s > 250) / (seconds * 1000), 3),
        best_changes_per_s=round(len(stalls) / seconds, 2),
        depth_bid=ex.book.depth(Side.BUY),
        depth_ask=ex.book.depth(Side.SELL),
        snapshot_levels=len(ex.snapshot_message()["bids"]),
        missed_deletes=ex.missed_delete_count,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bot.sim.measure")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--activity", type=float, default=1.0)
    p.add_argument("--seconds", type=int, default=600)
    a = p.parse_args(argv)
    stats = measure_feed(a.seed, a.activity, a.seconds)
    for name in stats.__slots__:
        print(f"{name}: {getattr(stats, name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
