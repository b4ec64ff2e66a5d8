"""Dashboard load bench (SPEC §11, issue 4): decision latency and event-loop lag with 0 and with 50 SSE
clients.

The app (bot + in-process venue + dashboard broadcaster) runs under a real uvicorn server on this process's
loop; the 50 dashboard clients run in a child process (`python -m bench.dashboard clients N URL`) so that
their own CPU does not count against the bot's loop — only what serving them costs does.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.e2e import free_port, lag_probe, pct
from bot.config.loader import deep_merge, load_app_config, validate_config

ROOT = Path(__file__).resolve().parent.parent


async def _clients(n: int, url: str) -> None:
    """N dashboard clients, each holding one /events stream and reading it as a browser would."""
    counts = [0] * n

    async def one(i: int) -> None:
        async with httpx.AsyncClient(timeout=None) as c:
            async with c.stream("GET", url, headers={"Accept": "text/event-stream"}) as r:
                async for _ in r.aiter_lines():
                    counts[i] += 1

    await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


async def measure(clients: int, seconds: float) -> dict[str, Any]:
    from server.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="stst-bench-dash-"))
    base = load_app_config(ROOT / "configs" / "base.yml").model_dump(mode="python")
    base["sim"]["api_secret"] = "SIM_SECRET"
    port = free_port()
    cfg = validate_config(
        # every client streams: the default cap (20 streams) would refuse the rest and flatter the figure
        deep_merge(
            base,
            {
                "env": "sim",
                "sim": {"activity": 4.0},
                "server": {"port": port, "max_streams": max(20, clients)},
            },
        ),
        "bench",
    )
    app = create_app(cfg, log_dir=tmp / "logs")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            **app.state.connections.uvicorn_options(),
        )
    )
    serve = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.05)
    runner = app.state.service.runner
    proc = None
    if clients:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.dashboard",
            "clients",
            str(clients),
            f"http://127.0.0.1:{port}/events",
            cwd=str(ROOT),
        )
    await asyncio.sleep(3.0)  # clients connected, warm
    runner.metrics.decision_latency_ns.clear()
    lag: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(lag_probe(lag, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await probe
    dec = [x / 1000 for x in runner.metrics.decision_latency_ns]
    broadcaster = getattr(app.state, "broadcaster", None)
    connected = len(getattr(broadcaster, "_clients", ()) or ()) if broadcaster else None
    if proc:
        proc.terminate()
        await proc.wait()
    server.should_exit = True
    await serve
    return {
        "clients": clients,
        "connected_at_end": connected,
        "decisions": len(dec),
        "decision_us_p50": pct(dec, 0.5),
        "decision_us_p99": pct(dec, 0.99),
        "decision_us_p999": pct(dec, 0.999),
        "loop_lag_ms_p99": pct(lag, 0.99),
        "loop_lag_ms_max": max(lag) if lag else None,
    }


async def run_dashboard_bench(seconds: float = 15.0) -> list[dict[str, Any]]:
    return [await measure(0, seconds), await measure(50, seconds)]


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "clients":
        asyncio.run(_clients(int(sys.argv[2]), sys.argv[3]))
    else:
        for row in asyncio.run(run_dashboard_bench(float(sys.argv[1]) if len(sys.argv) > 1 else 15.0)):
            print(row)
