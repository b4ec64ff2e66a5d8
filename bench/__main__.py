"""`make bench`: the figures SPEC §11 names. Its last line is one JSON object with the headline figures.

0. transport floor: a board-diff frame over loopback from the sender's write to pybotters' handler (p50/p99)
1. board store vs pybotters' bitFlyerDataStore: µs per board diff at 300 and 2,000 levels a side, and a full
   snapshot applied over a book kept by diffs
2. stages, in process: store, view, strategy, decisions log — µs per decision at 300 and 2,000 levels
3. end to end (venue in a child process, real pybotters client): decision latency from the frame handler's
   entry to the actions submitted, for board diffs and deadlines (p50/p99/p99.9), no-action and strike
   decisions apart, board snapshots apart; stall deadline → order request; event-loop lag; CPU per message;
   RSS — at 300/2,000 levels, 1×/20× rate
4. dashboard: decision latency and event-loop lag with 0 and 50 SSE clients
5. RSS over a longer run at 20×
6. replay speed: board messages per second over a simulated tape (bench/replay.py)

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
from bench.stages import STAGES, run_stages
from bench.transport import measure as measure_transport


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

    print("== 0. transport floor: loopback frame → parsed in the handler (µs) ==")
    transport = asyncio.run(measure_transport())
    results["transport"] = transport
    print(table([transport], ["frames", "hz", "transport_us_p50", "transport_us_p99", "transport_us_p999"]))

    print("\n== 1. board store vs pybotters (µs per diff message; µs per full snapshot) ==")
    board = run_board_bench()
    results["board"] = board
    board_rows = [
        {
            "levels": r["levels_per_side"],
            "ours_mean": r["ours_diff"]["mean_us"],
            "ours_p99": r["ours_diff"]["p99_us"],
            "pybotters_mean": r["pybotters_diff"]["mean_us"],
            "speedup": r["speedup"],
            "view_snapshot": r["view_snapshot_us"],
            "snapshot_p50": r["snapshot_apply_us_p50"],
            "snapshot_p99": r["snapshot_apply_us_p99"],
        }
        for r in board["results"]
    ]
    print(table(board_rows, list(board_rows[0])))

    print("\n== 2. stages of a decision, in process (µs; 20x, no orders resting) ==")
    stages = [run_stages(levels) for levels in (300, 2000)]
    results["stages"] = stages
    print(
        table(
            stages,
            ["levels", "decisions", *(f"{k}_us_{q}" for k in STAGES for q in ("p50", "p99")), "total_us_p50"],
        )
    )

    print("\n== 3. end to end: real runner + pybotters against the venue in a child process (µs) ==")
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
                "no_action_us_p50",
                "strike_decision_us_p99",
                "snapshot_us_p50",
                "strikes",
                "strike_us_p99",
                "loop_lag_ms_p99",
                "cpu_us_per_msg",
                "rss_mb_end",
            ],
        )
    )

    print("\n== 4. dashboard clients (SSE) on the bot's loop ==")
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

    print(f"\n== 5. RSS over {long_s:.0f} s at 20x ==")
    long = asyncio.run(run_long(long_s))
    results["long"] = long
    print(long)

    print("\n== 6. replay speed (one core, best of three runs; target >= 30,000 board messages/s) ==")
    rep = run_replay_bench()
    results["replay"] = rep
    print(table(rep, ["case", "market_min", "board_messages", "strikes", "fills", "wall_s", "msgs_per_s"]))

    print()
    print(json.dumps(headline(results)))


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures a reader compares between runs (the issue's names), from this run's sections."""
    e2e = {(r["levels"], r["rate"]): r for r in results["e2e"]}
    big = e2e[(2000, "20x")]
    board = {r["levels_per_side"]: r for r in results["board"]["results"]}
    replay = {r["case"]: r["msgs_per_s"] for r in results["replay"]}
    return {
        "transport_floor_us_p50": results["transport"]["transport_us_p50"],
        "transport_floor_us_p99": results["transport"]["transport_us_p99"],
        "decision_us_p50_2000_levels": big["decision_us_p50"],
        "decision_us_p99_2000_levels": big["decision_us_p99"],
        "decision_us_p999_2000_levels": big["decision_us_p999"],
        "no_action_decision_us_p50": big["no_action_us_p50"],
        "strike_decision_us_p99": big["strike_decision_us_p99"],
        "strike_deadline_to_order_us_p99": big["strike_us_p99"],
        "snapshot_apply_us_2000": board[2000]["snapshot_apply_us_p50"],
        "snapshot_decision_us_2000_e2e": big["snapshot_us_p50"],
        "board_speedup_2000": round(board[2000]["speedup"], 1),
        "cpu_us_per_msg_2000_20x": big["cpu_us_per_msg"],
        "dashboard_50_clients_loop_lag_ms_p99": results["dashboard"][-1]["loop_lag_ms_p99"],
        "replay_msgs_per_s": replay.get("base.yml"),
    }


if __name__ == "__main__":
    main()
