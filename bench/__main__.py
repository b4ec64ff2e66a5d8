"""`make bench`: the figures SPEC §11 names.

1. board store vs pybotters' bitFlyerDataStore: µs per board message at 300 and 2,000 levels a side
2. end to end (venue in a child process, real pybotters client): board message → decision latency
   p50/p99/p99.9, stall deadline → order request latency, event-loop lag, CPU per message, RSS — at 300/2,000
   levels, 1×/20× rate
3. dashboard: decision latency and event-loop lag with 0 and 50 SSE clients
4. RSS over a longer run at 20×
5. replay speed: board messages per second over a simulated tape (bench/replay.py)

BENCH_SECONDS (default 15) sets each end-to-end case's length; BENCH_LONG_SECONDS (default 120) the long run.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from bench.board import run_board_bench
from bench.dashboard import run_dashboard_bench
from bench.e2e import run_e2e, run_long
from bench.replay import run_replay_bench


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    seconds = float(os.environ.get("BENCH_SECONDS", "15"))
    long_s = float(os.environ.get("BENCH_LONG_SECONDS", "120"))
    results: dict[str, Any] = {}

    print("== 1. board store vs pybotters (µs per diff message) ==")
    board = run_board_bench()
    results["board"] = board
    print(json.dumps(board, indent=1, default=str)[:4000])

    print("\n== 2. end to end: real runner + pybotters against the venue in a child process ==")
    e2e = asyncio.run(run_e2e(seconds))
    results["e2e"] = e2e
    print(
        table(
            e2e,
            [
                "levels",
                "rate",
                "msgs_per_s",
                "decision_us_p50",
                "decision_us_p99",
                "decision_us_p999",
                "strikes",
                "strike_us_p50",
                "strike_us_p99",
                "loop_lag_ms_p99",
                "cpu_us_per_msg",
                "rss_mb_end",
            ],
        )
    )

    print("\n== 3. dashboard clients (SSE) on the bot's loop ==")
    dash = asyncio.run(run_dashboard_bench(seconds))
    results["dashboard"] = dash
    print(
        table(
            dash,
            [
                "clients",
                "connected_at_end",
                "decision_us_p50",
                "decision_us_p99",
                "decision_us_p999",
                "loop_lag_ms_p99",
                "loop_lag_ms_max",
            ],
        )
    )

    print(f"\n== 4. RSS over {long_s:.0f} s at 20x ==")
    long = asyncio.run(run_long(long_s))
    results["long"] = long
    print(long)

    print("\n== 5. replay speed (one core; target >= 30,000 board messages/s) ==")
    rep = run_replay_bench()
    results["replay"] = rep
    print(table(rep, ["case", "market_min", "board_messages", "strikes", "fills", "wall_s", "msgs_per_s"]))


if __name__ == "__main__":
    main()
