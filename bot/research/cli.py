"""`python -m bot replay …` and `python -m bot sweep …`: argument checking (a bad argument is refused with a
sentence and exit status 2, before any work), then the replay or the sweep; the last stdout line is JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from loguru import logger

from bot.config.loader import ConfigError, load_app_config_with
from bot.infra.tape import TapeError, read_header
from bot.research.replay import replay_tapes
from bot.research.report import replay_html
from bot.research.sweep import SweepTask, grid_points, parse_grid, run_sweep, write_results
from bot.research.venue import Latency

DEFAULT_BASE = Path(__file__).resolve().parent.parent.parent / "configs" / "base.yml"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("tapes", nargs="+", metavar="TAPE", help="tape files (*.jsonl.gz)")
    p.add_argument("--config", default=str(DEFAULT_BASE), help="base config (default configs/base.yml)")
    p.add_argument("--override", default=None, help="override file deep-merged on top")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. strategy.stall_T_ms=400"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--latency-ms",
        default="30,30",
        metavar="ORDER,CANCEL",
        help="round trips of an order and a cancel (default 30,30: an assumption; measure yours from the "
        "orders CSV's latency_ms)",
    )


def add_replay_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay tapes through the strategy in virtual time")
    _common(p)


def add_sweep_parser(sub: Any) -> None:
    p = sub.add_parser("sweep", help="a parameter grid, each point × tape an independent replay")
    _common(p)
    p.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2,…", help="e.g. strategy.stall_T_ms=100,250"
    )
    p.add_argument("--engine", choices=("process", "dask"), default="process")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    p.add_argument("--scheduler", default=None, help="a Dask scheduler, e.g. tcp://HOST:8786 (implies dask)")


def _refuse(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _latency(text: str) -> Latency:
    try:
        order, cancel = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--latency-ms {text!r}: expected ORDER,CANCEL in ms, e.g. 30,30") from None
    if not (0 <= order <= 60_000 and 0 <= cancel <= 60_000):
        raise ValueError(f"--latency-ms {text!r}: each must be within 0..60000 ms")
    return Latency(order, cancel)


def _check_tapes(paths: list[str]) -> None:
    for p in paths:
        if not Path(p).is_file():
            raise TapeError(f"{p}: no such tape file")
        read_header(p)


def replay_main(a: argparse.Namespace) -> int:
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    try:
        latency = _latency(a.latency_ms)
        cfg = load_app_config_with(a.config, a.override, a.set)
        _check_tapes(a.tapes)
    except ConfigError as e:
        return _refuse(str(e))
    except (ValueError, OSError) as e:
        return _refuse(str(e))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary, trace = replay_tapes(a.tapes, cfg, latency=latency, out_dir=out)
    summary["tapes"] = [Path(t).name for t in a.tapes]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    strategy = {k: str(v) for k, v in cfg.strategy.model_dump().items()}
    title = f"Replay of {', '.join(summary['tapes'])}"
    (out / "report.html").write_text(
        replay_html(summary, trace, title=title, config=strategy), encoding="utf-8"
    )
    print(f"report: {out / 'report.html'}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def sweep_main(a: argparse.Namespace) -> int:
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    engine = "dask" if a.scheduler else a.engine
    try:
        latency = _latency(a.latency_ms)
        if not a.grid:
            raise ValueError("--grid is required (e.g. --grid strategy.stall_T_ms=100,250,500)")
        axes = [parse_grid(g) for g in a.grid]
        keys = [ax.key for ax in axes]
        if len(set(keys)) != len(keys):
            raise ValueError("--grid: the same key twice")
        if a.workers is not None and a.workers < 1:
            raise ValueError("--workers must be >= 1")
        points = grid_points(axes)
        for point in points:  # every grid point must be a valid config before any work starts
            load_app_config_with(a.config, a.override, [*a.set, *(f"{k}={v}" for k, v in point)])
        _check_tapes(a.tapes)
    except ConfigError as e:
        return _refuse(str(e))
    except (ValueError, OSError) as e:
        return _refuse(str(e))
    tasks = [
        SweepTask(
            point=i,
            assignments=(*a.set, *(f"{k}={v}" for k, v in point)),
            grid=point,
            tape=str(Path(t).resolve()),
            config=str(Path(a.config).resolve()),
            override=None if a.override is None else str(Path(a.override).resolve()),
            latency=(latency.order_ms, latency.cancel_ms),
        )
        for i, point in enumerate(points)
        for t in a.tapes
    ]
    t0 = time.perf_counter()

    def progress(i: int, n: int) -> None:
        print(f"\r{i}/{n} replays", end="" if i < n else "\n", file=sys.stderr, flush=True)

    rows = run_sweep(tasks, engine=engine, workers=a.workers, scheduler=a.scheduler, progress=progress)
    out = Path(a.out)
    summary = write_results(out, rows, keys)
    result = {
        "engine": engine,
        "grid_points": len(points),
        "tapes": len(a.tapes),
        "replays": len(rows),
        "wall_s": round(time.perf_counter() - t0, 3),
        "best": summary[0] if summary else None,
        "results": str(out / "results.csv"),
        "summary": str(out / "summary.csv"),
    }
    print(f"table: {out / 'sweep.html'}", file=sys.stderr)
    print(json.dumps(result))
    return 0
