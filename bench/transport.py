"""The transport floor: a board-diff-sized JSON-RPC frame over loopback, from the sender's write to the frame
parsed in the handler (the point where the bot's decision clock starts), with the same client stack as the
bot (pybotters Client.ws_connect over aiohttp, a `hdlr_str` handler parsing with orjson). The sender runs in
a child process and stamps each frame with CLOCK_MONOTONIC, which both processes share on Linux.

    .venv/bin/python -m bench.transport            # prints p50/p99/p99.9 in µs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pybotters
from aiohttp import web

from bench.board import BoardFeed

ROOT = Path(__file__).resolve().parent.parent


def _pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _serve(port: int, frames: int, hz: float, levels: int) -> None:
    feed = BoardFeed(seed=5, levels_per_side=levels)
    bodies = [feed.diff() for _ in range(frames)]

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the client's hello: it is listening
        period = 1.0 / hz
        for body in bodies:
            body["params"]["t_ns"] = time.monotonic_ns()
            await ws.send_str(json.dumps(body, separators=(",", ":")))
            await asyncio.sleep(period)
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "method": "done"}))
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_listening(port: int) -> None:
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.025)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("the frame sender did not start")


async def measure(frames: int = 3_000, hz: float = 146.0, levels: int = 300) -> dict[str, Any]:
    """Frames at `hz` (20× bitFlyer's diff rate by default); µs from the sender's stamp to the handler."""
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.transport",
        "--serve",
        str(port),
        "--frames",
        str(frames),
        "--hz",
        str(hz),
        "--levels",
        str(levels),
        cwd=str(ROOT),
    )
    samples: list[float] = []
    done = asyncio.Event()

    def handler(data: str, ws: Any) -> None:
        msg = orjson.loads(data)  # as the bot's session parses a frame (bot/infra/pyb_session.py)
        t = time.monotonic_ns()
        if isinstance(msg, dict) and msg.get("method") == "done":
            done.set()
            return
        try:
            samples.append((t - msg["params"]["t_ns"]) / 1000)
        except (KeyError, TypeError):
            pass

    try:
        await _wait_listening(port)
        async with pybotters.Client() as client:
            app = await client.ws_connect(f"ws://127.0.0.1:{port}/ws", send_json={}, hdlr_str=handler)
            async with asyncio.timeout(frames / hz + 30):
                await done.wait()
            if app.current_ws is not None:
                await app.current_ws.close()
    finally:
        proc.terminate()
        await proc.wait()
    warm = samples[len(samples) // 20 :]  # the first frames pay for the connection warming up
    return {
        "frames": len(warm),
        "hz": hz,
        "transport_us_p50": _pct(warm, 0.5),
        "transport_us_p99": _pct(warm, 0.99),
        "transport_us_p999": _pct(warm, 0.999),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help="(child) serve frames on this port")
    parser.add_argument("--frames", type=int, default=3_000)
    parser.add_argument("--hz", type=float, default=146.0)
    parser.add_argument("--levels", type=int, default=300)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.frames, args.hz, args.levels))
        return
    print(asyncio.run(measure(args.frames, args.hz, args.levels)))


if __name__ == "__main__":
    main()
