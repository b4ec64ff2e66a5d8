"""`python -m bot.sim --host 127.0.0.1 --port 8765 --seed 1 --api-key KEY --api-secret SECRET`: serve the
venue until Ctrl-C. `python -m bot.sim tape --seed S --minutes M --out FILE`: write a tape (bot/sim/tape.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from pydantic import ValidationError

from bot.config.loader import SimConfig
from bot.sim.server import SimVenue


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bot.sim", description="Simulated bitFlyer venue (FX_BTC_JPY)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 = any free port")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--api-key", default="SIM_KEY")
    p.add_argument("--api-secret", default="SIM_SECRET")
    p.add_argument(
        "--activity", type=float, default=1.0, help=">1: a faster market (more ticks, trades, moves)"
    )
    p.add_argument("--start-mid", type=int, default=None)
    p.add_argument("--levels-per-side", type=int, default=None)
    p.add_argument("--diff-rate-hz", type=float, default=None)
    p.add_argument("--missed-delete-rate", type=float, default=None)
    p.add_argument("--collateral-jpy", type=int, default=None)
    p.add_argument("--minute-ms", type=int, default=None, help="length of one minute_to_expire minute")
    p.add_argument("--no-rate-limits", action="store_true")
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace) -> SimConfig:
    data: dict[str, Any] = {
        "host": a.host,
        "port": a.port,
        "seed": a.seed,
        "api_key": a.api_key,
        "api_secret": a.api_secret,
        "activity": a.activity,
        "rate_limits": not a.no_rate_limits,
    }
    for name in (
        "start_mid",
        "levels_per_side",
        "diff_rate_hz",
        "missed_delete_rate",
        "collateral_jpy",
        "minute_ms",
    ):
        if getattr(a, name) is not None:
            data[name] = getattr(a, name)
    return SimConfig.model_validate(data)


async def serve(cfg: SimConfig) -> None:
    venue = SimVenue(cfg)
    await venue.start()
    print(f"sim venue (seed {cfg.seed}, activity {cfg.activity}) for FX_BTC_JPY", flush=True)
    print(f"  REST      {venue.base_url}/v1/getboard?product_code=FX_BTC_JPY", flush=True)
    print(f"  WebSocket {venue.ws_url}", flush=True)
    print(
        f"  admin     {venue.base_url}/_sim/state  (POST /_sim/drop_ws, /_sim/fail, /_sim/maintenance, …)",
        flush=True,
    )
    print(f"  api key   {cfg.api_key}  (secret from --api-secret)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await venue.stop()
        print("sim venue stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["tape"]:  # python -m bot.sim tape …: the market model written as a tape, in virtual time
        from bot.sim.tape import main as tape_main

        return tape_main(args[1:])
    try:
        cfg = config_from_args(parse_args(argv))
    except ValidationError as e:
        print(f"bad option: {e}")
        return 2
    asyncio.run(serve(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
