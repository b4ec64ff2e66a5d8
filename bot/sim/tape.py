"""`python -m bot.sim tape --seed S --minutes M --out FILE [--activity A]`: the simulated market written as
a tape (`bot/infra/tape.py`) in virtual time — no sockets, no waiting, no bot quoting — so many seeds cost
seconds.

The frames are the venue's own: the same `Exchange` (book, crowd model, matching) the served venue runs,
advanced through its own schedule (`next_due()`), board snapshots on the served venue's cadence (first one
0.6–3.7 s in, then every `snapshot_interval_ms` ± 2 %). Same seed, activity and minutes → the same bytes.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from pydantic import ValidationError

from bot.config.loader import SimConfig
from bot.infra.tape import TapeHeader, TapeWriter, iso_utc
from bot.sim.exchange import PRODUCT, Exchange, Public

SEC = 1_000_000_000
START_MONO_NS = 1_000_000_000
START_WALL_NS = 1_795_000_000_000_000_000  # 2026-11-18T11:06:40Z; fixed, so a tape's bytes depend on its seed
SNAPSHOT_CHANNEL = f"lightning_board_snapshot_{PRODUCT}"


def write_sim_tape(
    out: str | Path,
    *,
    seed: int,
    minutes: float,
    activity: float = 1.0,
    start_wall_ns: int = START_WALL_NS,
) -> dict[str, int]:
    """Write the tape; returns frame counts per channel kind."""
    cfg = SimConfig(seed=seed, activity=activity)
    ex = Exchange(cfg, START_MONO_NS, start_wall_ns - START_MONO_NS)
    rng = random.Random(cfg.seed * 7 + 1)  # the served venue's per-subscriber snapshot timing
    interval = cfg.snapshot_interval_ms * 1_000_000
    snapshot_due = START_MONO_NS + int(rng.uniform(0.6, 3.7) * SEC)
    end = START_MONO_NS + int(minutes * 60 * SEC)
    header = TapeHeader(
        mode="sim",
        product_code=PRODUCT,
        started_at=iso_utc(start_wall_ns),
        seed=seed,
        own_orders_marked=False,
        extra={"activity": activity, "minutes": minutes},
    )
    counts = {"snapshot": 0, "board": 0, "executions": 0, "ticker": 0}
    with TapeWriter(out, header) as w:
        now = START_MONO_NS
        while True:
            now = min(ex.next_due(), snapshot_due)
            if now > end:
                break
            for o in ex.advance(now):
                if isinstance(o, Public):
                    w.write(ex.wall(now), now, o.channel, o.message)
                    counts[_kind(o.channel)] += 1
            if now >= snapshot_due:
                w.write(ex.wall(now), now, SNAPSHOT_CHANNEL, ex.snapshot_message())
                counts["snapshot"] += 1
                snapshot_due = max(snapshot_due + int(rng.uniform(0.98, 1.02) * interval), now)
    return counts


def _kind(channel: str) -> str:
    if channel.startswith("lightning_board_snapshot_"):
        return "snapshot"
    if channel.startswith("lightning_board_"):
        return "board"
    if channel.startswith("lightning_executions_"):
        return "executions"
    return "ticker"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bot.sim tape", description="Write a tape of the simulated market in virtual time"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--activity", type=float, default=1.0)
    p.add_argument("--out", required=True, help="file, e.g. tapes/sim-s1.jsonl.gz")
    a = p.parse_args(argv)
    if not 0 < a.minutes <= 7 * 24 * 60:
        p.error("--minutes must be > 0 and at most a week")
    try:
        counts = write_sim_tape(a.out, seed=a.seed, minutes=a.minutes, activity=a.activity)
    except ValidationError as e:
        p.error(f"bad option: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}")
    print(f"{a.out}: {sum(counts.values())} frames {counts}")
    return 0
