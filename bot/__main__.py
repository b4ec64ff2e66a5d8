"""`python -m bot run --config configs/base.yml --override configs/sim.yml --duration 45`: headless run.
`python -m bot replay TAPE… --out DIR` and `python -m bot sweep TAPE… --grid k=v1,v2 --out DIR`: research
(bot/research/cli.py).

Logs go under ./logs (or --log-dir). The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from decimal import Decimal
from pathlib import Path

from bot.config.loader import ConfigError, describe_config_error, load_app_config
from bot.infra.bitflyer_parse import net_position, parse_position_rows
from bot.infra.logging_runtime import setup_runtime_logging
from bot.research.cli import add_replay_parser, add_sweep_parser, replay_main, sweep_main
from bot.service import BotService, ModeRefused

DEFAULT_BASE = Path(__file__).resolve().parent.parent / "configs" / "base.yml"


async def _run(args: argparse.Namespace) -> dict:
    cfg = load_app_config(args.config, args.override)
    log_dir = Path(args.log_dir)
    setup_runtime_logging(
        log_dir, level=cfg.logging.level, rotation=cfg.logging.rotation, retention=cfg.logging.retention
    )
    service = BotService(cfg, log_dir=log_dir, venue_url=args.venue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    runner = service.runner
    assert runner is not None
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except TimeoutError:
        pass
    if runner.state.value in ("RUNNING", "PAUSED"):
        await runner.stop("cli: end of run")
    venue_position: Decimal | None = None
    try:
        rows = await runner.http.get_positions()  # type: ignore[union-attr]
        venue_position = net_position(parse_position_rows(rows, cfg.exchange.product_code))[0]
    except Exception:
        venue_position = None
    inv = runner.inventory.state()
    summary = {
        "mode": cfg.env,
        "orders_sent": runner.metrics.orders_sent,
        "orders_cancelled": runner.metrics.orders_cancelled,
        "fills": runner.metrics.fills,
        "position_btc": str(inv.position_btc),
        "venue_position_btc": None if venue_position is None else str(venue_position),
        "realized_pnl_jpy": str(inv.realized_pnl_jpy),
        "pnl_today_jpy": str(inv.pnl_today_jpy),
        "board_messages": runner.metrics.board_messages,
        "reconnects": runner.metrics.reconnects,
        "exchange_errors": runner.metrics.exchange_errors,
        "state": runner.state.value,
    }
    if service.venue is not None and cfg.env == "sim":
        summary["venue_realized_pnl_jpy"] = str(service.venue.ledger.realized_pnl(cfg.sim.api_key))
    await service.stop()
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the bot headless (no web server)")
    run.add_argument("--config", default=str(DEFAULT_BASE))
    run.add_argument("--override", default=None)
    run.add_argument("--duration", type=float, default=None, help="seconds; default: until Ctrl-C")
    run.add_argument("--log-dir", default="logs")
    run.add_argument(
        "--venue",
        default=None,
        metavar="URL",
        help="a simulated venue started apart (python -m bot.sim), e.g. http://127.0.0.1:8765",
    )
    add_replay_parser(sub)
    add_sweep_parser(sub)
    args = ap.parse_args(argv)
    if args.cmd == "replay":
        return replay_main(args)
    if args.cmd == "sweep":
        return sweep_main(args)
    try:
        summary = asyncio.run(_run(args))
    except ConfigError as e:
        print(describe_config_error(e), file=sys.stderr)
        return 1
    except ModeRefused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
