"""Sweeps: every grid point × tape an independent replay, on a local process pool or on Dask distributed (a
`LocalCluster`, or the user's scheduler: months of tape × big grids on many machines, with no scheduler of our
own). Results: `results.csv` (one row per grid point and tape: grid columns, `tape`, the replay summary),
`summary.csv` (one row per grid point: mean and spread over tapes, best mean PnL first, and
`total_pnl_jpy_low`, the mean less one standard error), `sweep.html`."""

from __future__ import annotations

import csv
import itertools
import json
import multiprocessing
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.config.loader import load_app_config_with, parse_assignment
from bot.research.replay import replay_tapes
from bot.research.report import sweep_html
from bot.research.venue import Latency

# the summary fields a sweep averages (mean and spread over tapes), in the order summary.csv shows them
METRICS = (
    "total_pnl_jpy",
    "realized_pnl_jpy",
    "markout_1s_jpy",
    "markout_5s_jpy",
    "markout_30s_jpy",
    "max_drawdown_jpy",
    "fills",
    "fill_ratio",
    "strikes",
    "orders",
    "rate_budget_blocks",
)
SORT_METRIC = "total_pnl_jpy"
WALL_FIELDS = ("wall_s", "replay_msgs_per_s")  # differ run to run; everything else is deterministic


@dataclass(frozen=True, slots=True)
class GridAxis:
    key: str  # dotted config path
    values: tuple[str, ...]  # as typed (one `--set` each)


def parse_grid(text: str) -> GridAxis:
    """`strategy.stall_T_ms=100,250,500` → the axis. ValueError with a sentence when malformed."""
    key, sep, raw = text.partition("=")
    values = tuple(v.strip() for v in raw.split(","))
    if not sep or not key.strip() or not raw.strip() or any(v == "" for v in values):
        raise ValueError(
            f"--grid {text!r}: expected section.key=v1,v2,… (e.g. strategy.stall_T_ms=100,250,500)"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"--grid {text!r}: a value is repeated")
    for v in values:
        parse_assignment(f"{key.strip()}={v}")
    return GridAxis(key.strip(), values)


@dataclass(frozen=True, slots=True)
class SweepTask:
    point: int
    assignments: tuple[str, ...]  # base --set items, then this point's grid values
    grid: tuple[tuple[str, str], ...]  # (key, value) of this point
    tape: str
    config: str
    override: str | None
    latency: tuple[float, float]


def grid_points(axes: list[GridAxis]) -> list[tuple[tuple[str, str], ...]]:
    return [
        tuple(zip([a.key for a in axes], combo, strict=True))
        for combo in itertools.product(*(a.values for a in axes))
    ]


def run_task(task: SweepTask) -> dict[str, Any]:
    """One replay (a worker's job: module-level, so a process pool or a Dask worker can import it)."""
    from loguru import logger

    logger.remove()  # a worker's log lines would interleave on the caller's terminal
    cfg = load_app_config_with(task.config, task.override, list(task.assignments))
    summary, _ = replay_tapes([task.tape], cfg, latency=Latency(*task.latency))
    row: dict[str, Any] = {k: v for k, v in task.grid}
    row["tape"] = Path(task.tape).name
    for k, v in summary.items():
        row[k] = json.dumps(v) if isinstance(v, list | dict) else v
    return row


def run_sweep(
    tasks: list[SweepTask],
    *,
    engine: str = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows in task order, whichever engine ran them."""
    if engine == "dask":
        return _run_dask(tasks, workers, scheduler)
    if workers == 1:
        return [run_task(t) for t in tasks]
    ctx = multiprocessing.get_context("spawn")  # no inherited threads or loop state in workers
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        rows = []
        for i, row in enumerate(pool.map(run_task, tasks), 1):
            rows.append(row)
            if progress is not None:
                progress(i, len(tasks))
        return rows


def _run_dask(tasks: list[SweepTask], workers: int | None, scheduler: str | None) -> list[dict[str, Any]]:
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            return list(client.gather(client.map(run_task, tasks, pure=False)))
    with (
        LocalCluster(
            n_workers=workers or 2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        return list(client.gather(client.map(run_task, tasks, pure=False)))


def _dec(v: Any) -> Decimal | None:
    if v is None or v == "":
        return None
    try:
        return Decimal(str(v))
    except ArithmeticError:
        return None


def summarize(rows: list[dict[str, Any]], grid_keys: list[str]) -> list[dict[str, Any]]:
    """One row per grid point: tapes counted, then mean and spread (sample standard deviation) per metric;
    best mean PnL first."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in grid_keys), []).append(r)
    out = []
    for key, rs in groups.items():
        s: dict[str, Any] = dict(zip(grid_keys, key, strict=True))
        s["tapes"] = len(rs)
        for m in METRICS:
            vals = [d for r in rs if (d := _dec(r.get(m))) is not None]
            s[f"{m}_mean"] = _fmt(statistics.mean(vals)) if vals else ""
            s[f"{m}_spread"] = _fmt(statistics.stdev(vals)) if len(vals) > 1 else ("0" if vals else "")
        pnl = [d for r in rs if (d := _dec(r.get(SORT_METRIC))) is not None]
        if len(pnl) > 1:  # one standard error below the mean: a noisy point must beat a steady one by more
            low = statistics.mean(pnl) - statistics.stdev(pnl) / Decimal(len(pnl)).sqrt()
            s[f"{SORT_METRIC}_low"] = _fmt(low)
        else:
            s[f"{SORT_METRIC}_low"] = _fmt(pnl[0]) if pnl else ""
        out.append(s)
    out.sort(key=lambda s: -(_dec(s[f"{SORT_METRIC}_mean"]) or Decimal("-1e18")))
    return out


def _fmt(d: Decimal) -> str:
    return format(d.quantize(Decimal("0.0001")).normalize(), "f")  # 310, never 3.1E+2


def write_results(out: Path, rows: list[dict[str, Any]], grid_keys: list[str]) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    if rows:
        cols = list(rows[0].keys())
        with open(out / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    summary = summarize(rows, grid_keys)
    if summary:
        with open(out / "summary.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(summary[0].keys()))
            w.writeheader()
            w.writerows(summary)
    (out / "sweep.html").write_text(
        sweep_html(
            summary, grid_keys, title=f"Sweep: {', '.join(grid_keys)}", sort_key=f"{SORT_METRIC}_mean"
        ),
        encoding="utf-8",
    )
    return summary
