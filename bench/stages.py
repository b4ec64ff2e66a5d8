"""Where a decision's time goes, stage by stage, in process: the board store applying a diff, the own-excluded
view, the strategy, and the decisions log (a repeated no-action is counted, a changed one becomes a row) — the
real objects the runner wires, fed the bench's board diffs on a virtual clock at 20× bitFlyer's rate. The
submit stage (the executor handing a request to the HTTP client) only runs on a strike; the end-to-end bench
measures it with the real client.

    .venv/bin/python -m bench.stages
"""

from __future__ import annotations

import gc
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.board import PRODUCT, BoardFeed
from bot.config.loader import load_app_config
from bot.engine.inventory import InventoryManager
from bot.engine.orders import OrderTracker
from bot.engine.strategy_stall import StallThenStrikeStrategy
from bot.infra.board_store import BoardStore
from bot.infra.decision_runs import DecisionRuns
from bot.infra.logging_structured import DecisionLogger
from bot.infra.orderbook_view import OrderBookView
from bot.types.dto import Gate

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("store", "view", "strategy", "log")


def _pct(xs: list[int], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000


def run_stages(levels: int = 2_000, n: int = 5_000, warmup: int = 500, hz: float = 146.0) -> dict[str, Any]:
    cfg = load_app_config(ROOT / "configs" / "base.yml")
    feed = BoardFeed(seed=11, levels_per_side=levels)
    snapshot = feed.snapshot()
    frames = [feed.diff() for _ in range(warmup + n)]
    store = BoardStore(PRODUCT)
    tracker = OrderTracker()
    tick = Decimal(1)
    view = OrderBookView(store, PRODUCT, tick, tracker)
    inventory = InventoryManager(cfg.risk, tick_size=tick)
    inventory.roll_day(datetime.now(UTC))
    strategy = StallThenStrikeStrategy(
        cfg.strategy,
        tick,
        inventory,
        orders=tracker,
        risk=cfg.risk,
        min_size=cfg.exchange.min_size,
        gate=Gate(),
    )
    with tempfile.TemporaryDirectory() as d:
        log = DecisionLogger(Path(d), "bench")
        runs = DecisionRuns(log, lambda: datetime.now(UTC))
        clock = time.perf_counter_ns
        step = int(1e9 / hz)
        now = 1_000_000_000
        store.onmessage(snapshot)
        samples: dict[str, list[int]] = {k: [] for k in (*STAGES, "total")}
        acted = 0
        gc.disable()
        try:
            for i, fr in enumerate(frames):
                now += step
                t0 = clock()
                store.onmessage(fr)
                t1 = clock()
                board = view.snapshot(now)
                t2 = clock()
                actions, meta = strategy.on_board(board, now)
                t3 = clock()
                runs.record(meta, now)
                t4 = clock()
                if i < warmup:
                    continue
                acted += bool(actions)
                for k, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    samples[k].append(dt)
                samples["total"].append(t4 - t0)
        finally:
            gc.enable()
        runs.flush()
        log.close()
    out: dict[str, Any] = {"levels": levels, "decisions": n, "acted": acted}
    for k, xs in samples.items():
        out[f"{k}_us_p50"] = _pct(xs, 0.5)
        out[f"{k}_us_p99"] = _pct(xs, 0.99)
    return out


if __name__ == "__main__":
    for lv in (300, 2_000):
        print(run_stages(lv))
