"""End-to-end latency bench (SPEC §11): the real runner and pybotters client against the venue in another
process.

For each book size (300, 2,000 levels a side) and message rate (1× and 20× bitFlyer's ≈7.3 diffs/s): the
decision latency from the frame handler's (or the deadline timer's) entry to the actions handed to the
executor, board update included (p50/p99/p99.9 over diff- and deadline-triggered decisions; no-action and
strike decisions apart; full snapshots apart), stall deadline → order request latency, event-loop lag, CPU per
board message of this process, RSS. The venue runs in a subprocess so its CPU does not sit on the bot's loop.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bot.config.loader import deep_merge, load_app_config, validate_config
from bot.runner import BotRunner, Endpoints

ROOT = Path(__file__).resolve().parent.parent
BITFLYER_DIFF_HZ = 7.3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def start_venue(levels: int, diff_hz: float, seed: int = 3) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.sim",
        "--port",
        str(port),
        "--seed",
        str(seed),
        "--levels-per-side",
        str(levels),
        "--diff-rate-hz",
        str(diff_hz),
        "--api-key",
        "BENCH",
        "--api-secret",
        "BENCHSECRET",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=str(ROOT),
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as c:
        for _ in range(200):
            try:
                if (
                    await c.get(f"{base}/v1/gethealth", params={"product_code": "FX_BTC_JPY"})
                ).status_code == 200:
                    return proc, base
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError("venue did not start")


async def lag_probe(samples: list[float], stop: asyncio.Event, period: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(period)
        samples.append(max(0.0, (loop.time() - t0 - period) * 1000))


async def run_case(levels: int, rate_mult: float, seconds: float) -> dict[str, Any]:
    proc, base = await start_venue(levels, BITFLYER_DIFF_HZ * rate_mult)
    tmp = Path(tempfile.mkdtemp(prefix="stst-bench-"))
    base_cfg = load_app_config(ROOT / "configs" / "base.yml").model_dump(mode="python")
    cfg = validate_config(
        deep_merge(
            base_cfg,
            {"env": "sim", "sim": {"api_secret": "BENCHSECRET"}, "runner": {"order_rate_per_min": 100}},
        ),
        "bench",
    )
    ep = Endpoints(base, base.replace("http", "ws") + "/json-rpc", None, "BENCH", "BENCHSECRET")
    runner = BotRunner(cfg, endpoints=ep, log_dir=tmp / "logs", state_file=tmp / "state.json")
    lag: list[float] = []
    stop = asyncio.Event()
    try:
        await runner.open()
        await asyncio.sleep(2.0)  # warm up: first snapshot, reconcile
        m = runner.metrics
        for samples in (
            m.decision_latency_ns,
            m.no_action_latency_ns,
            m.strike_decision_latency_ns,
            m.snapshot_latency_ns,
            m.strike_latency_ns,
        ):
            samples.clear()
        msgs0, cpu0, rss0 = runner.metrics.board_messages, time.process_time(), rss_mb()
        probe = asyncio.create_task(lag_probe(lag, stop))
        await asyncio.sleep(seconds)
        stop.set()
        await probe
        msgs = runner.metrics.board_messages - msgs0
        cpu = time.process_time() - cpu0
        dec = [x / 1000 for x in m.decision_latency_ns]
        no_action = [x / 1000 for x in m.no_action_latency_ns]
        strike_dec = [x / 1000 for x in m.strike_decision_latency_ns]
        snap = [x / 1000 for x in m.snapshot_latency_ns]
        strike = [x / 1000 for x in m.strike_latency_ns]
        return {
            "levels": levels,
            "rate": f"{rate_mult:g}x",
            "seconds": seconds,
            "board_msgs": msgs,
            "msgs_per_s": round(msgs / seconds, 1),
            "decision_us_p50": pct(dec, 0.5),
            "decision_us_p99": pct(dec, 0.99),
            "decision_us_p999": pct(dec, 0.999),
            "no_action_us_p50": pct(no_action, 0.5),
            "no_action_us_p99": pct(no_action, 0.99),
            "strike_decision_us_p50": pct(strike_dec, 0.5),
            "strike_decision_us_p99": pct(strike_dec, 0.99),
            "snapshots": len(snap),
            "snapshot_us_p50": pct(snap, 0.5),
            "snapshot_us_p99": pct(snap, 0.99),
            "strikes": len(strike),
            "strike_us_p50": pct(strike, 0.5),
            "strike_us_p99": pct(strike, 0.99),
            "loop_lag_ms_p99": pct(lag, 0.99),
            "loop_lag_ms_max": max(lag) if lag else None,
            "cpu_us_per_msg": round(cpu / msgs * 1e6, 1) if msgs else None,
            "rss_mb_start": round(rss0, 1),
            "rss_mb_end": round(rss_mb(), 1),
            "orders_sent": runner.metrics.orders_sent,
            "fills": runner.metrics.fills,
        }
    finally:
        await runner.close()
        proc.terminate()
        await proc.wait()


async def run_e2e(seconds: float = 15.0) -> list[dict[str, Any]]:
    out = []
    for levels in (300, 2000):
        for mult in (1.0, 20.0):
            out.append(await run_case(levels, mult, seconds))
    return out


async def run_long(seconds: float, levels: int = 300, mult: float = 20.0) -> dict[str, Any]:
    """RSS over a long run at 20×: sampled every few seconds."""
    proc, base = await start_venue(levels, BITFLYER_DIFF_HZ * mult)
    tmp = Path(tempfile.mkdtemp(prefix="stst-bench-long-"))
    base_cfg = load_app_config(ROOT / "configs" / "base.yml").model_dump(mode="python")
    cfg = validate_config(deep_merge(base_cfg, {"env": "sim", "sim": {"api_secret": "BENCHSECRET"}}), "bench")
    ep = Endpoints(base, base.replace("http", "ws") + "/json-rpc", None, "BENCH", "BENCHSECRET")
    runner = BotRunner(cfg, endpoints=ep, log_dir=tmp / "logs", state_file=tmp / "state.json")
    samples = []
    try:
        await runner.open()
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            samples.append((round(time.monotonic() - t0), round(rss_mb(), 1)))
            await asyncio.sleep(max(1.0, seconds / 12))
        samples.append((round(time.monotonic() - t0), round(rss_mb(), 1)))
        return {"seconds": seconds, "board_msgs": runner.metrics.board_messages, "rss_mb": samples}
    finally:
        await runner.close()
        proc.terminate()
        await proc.wait()


def main() -> None:
    seconds = float(os.environ.get("BENCH_SECONDS", "15"))
    for row in asyncio.run(run_e2e(seconds)):
        print(row)


if __name__ == "__main__":
    main()
