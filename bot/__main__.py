"""`python -m bot run --config configs/base.yml --override configs/sim.yml --duration 45`: headless run.
`python -m bot replay TAPE… --out DIR` and `python -m bot sweep TAPE… --grid k=v1,v2 --out DIR`: research
(bot/research/cli.py).

Logs go under ./logs (or --log-dir). The last line printed is a JSON summary.

`python -m bot preflight --override configs/live.yml [--venue URL]`: the checks before a live start, as a
table and a last JSON line `{"ready": …, "checks": […]}`; exit status 0 only when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

from bot.config.loader import ConfigError, describe_config_error, load_app_config
from bot.infra.bitflyer_parse import net_position, parse_position_rows
from bot.infra.logging_runtime import setup_runtime_logging
from bot.research.cli import add_replay_parser, add_sweep_parser, replay_main, sweep_main
from bot.service import BotService, ModeRefused
from bot.types.preflight import PreflightReport

DEFAULT_BASE = Path(__file__).resolve().parent.parent / "configs" / "base.yml"


async def _run(args: argparse.Namespace) -> dict:
    cfg = load_app_config(args.config, args.override)
    if args.record:
        cfg = cfg.model_copy(update={"record": cfg.record.model_copy(update={"dir": args.record})})
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


async def _preflight(args: argparse.Namespace) -> PreflightReport:
    """The same checks the dashboard runs before a first live start, against the venue the config (or
    `--venue`) names. In sim/paper mode without `--venue` a local venue is started for the run, as `run`
    does."""
    import pybotters
    from loguru import logger

    from bot.infra.http_bitflyer import BitflyerHttp
    from bot.infra.pyb_auth import register_bitflyer_hosts
    from bot.preflight import PreflightInputs, run_preflight
    from bot.runner import account_id
    from bot.sim.server import SimVenue

    logger.remove()  # the report is the output; the log folder is one of the things checked, not written
    logger.add(sys.stderr, level="WARNING")
    cfg = load_app_config(args.config, args.override)
    log_dir = Path(
        args.log_dir or cfg.logging.dir
    )  # where the server would write (python -m server does the same)
    state_file = Path(args.state_file) if args.state_file else log_dir / "state.json"
    venue: SimVenue | None = None
    sim_keys = (cfg.sim.api_key, cfg.sim.api_secret.get_secret_value())
    if args.venue:
        rest = args.venue.rstrip("/")
        ws = "ws" + rest.removeprefix("http") + "/json-rpc"
        (key, secret), source = sim_keys, f"the simulated venue's test keys, at {rest}"
    elif cfg.env in ("sim", "paper"):
        feed = cfg.exchange.ws_url if cfg.env == "paper" else None
        venue = SimVenue(cfg.sim, public_feed_url=feed, product_code=cfg.exchange.product_code)
        await venue.start()
        rest, ws = venue.base_url, venue.ws_url
        (key, secret), source = sim_keys, f"the local {cfg.env} venue's test keys"
    else:
        rest, ws = cfg.exchange.base_url, cfg.exchange.ws_url
        key = os.environ.get("BITFLYER_API_KEY", "").strip()
        secret = os.environ.get("BITFLYER_API_SECRET", "").strip()
        source = (
            "BITFLYER_API_KEY / BITFLYER_API_SECRET from the environment "
            "(this command does not read .env: `set -a; . ./.env; set +a` first)"
        )
    try:
        register_bitflyer_hosts(rest, ws)
        apis = {cfg.pybotters.api_label: [key, secret]} if key and secret else {}
        async with pybotters.Client(apis=apis, base_url=rest) as client:
            exchange = cfg.exchange.model_copy(update={"base_url": rest})
            http = BitflyerHttp(client, exchange, timeout_s=cfg.pybotters.timeout_sec)
            inputs = PreflightInputs(
                mode=cfg.env,
                account=account_id(key or None),
                keys_present=bool(key and secret),
                keys_source=source,
                product_code=cfg.exchange.product_code,
                log_dir=log_dir,
                state_file=state_file,
                thresholds=cfg.preflight,
                min_keep_rate=cfg.risk.min_keep_rate,
            )
            return await run_preflight(http, inputs)
    finally:
        if venue is not None:
            await venue.stop()


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
    run.add_argument("--record", default=None, metavar="DIR", help="the public feed to hourly tapes in DIR")
    pre = sub.add_parser(
        "preflight", help="check keys, clock, margin, account, venue and storage before a start"
    )
    pre.add_argument("--config", default=str(DEFAULT_BASE))
    pre.add_argument("--override", default=None)
    pre.add_argument("--log-dir", default=None, help="default: the config's logging.dir")
    pre.add_argument("--state-file", default=None, help="default: LOG_DIR/state.json")
    pre.add_argument("--venue", default=None, metavar="URL", help="a simulated venue (python -m bot.sim)")
    add_replay_parser(sub)
    add_sweep_parser(sub)
    args = ap.parse_args(argv)
    if args.cmd == "preflight":
        return _print_preflight(args)
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


def _print_preflight(args: argparse.Namespace) -> int:
    """A table for people, the JSON last; 0 only when ready, 1 when not, 2 for a config that cannot be
    used."""
    try:
        report = asyncio.run(_preflight(args))
    except ConfigError as e:
        print(describe_config_error(e), file=sys.stderr)
        return 2
    from bot.preflight import render_table

    print(render_table(report))
    print(report.model_dump_json())
    return 0 if report.ready else 1


if __name__ == "__main__":
    sys.exit(main())
