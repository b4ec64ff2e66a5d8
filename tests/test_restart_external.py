"""Hard restarts against a venue in its own process (`python -m bot.sim`, `python -m server --venue URL`): the
venue's ledger outlives the bot, so what happens while the bot is down is really on the account."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import socket
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, eventually

pytestmark = pytest.mark.integration

D = Decimal
OVERRIDE = """
env: sim
strategy: {stall_T_ms: 3600000, max_reverse_ticks: 100000}
runner: {reconcile_interval_sec: 2, account_poll_sec: 1}
pybotters: {timeout_sec: 2}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), 20)


async def spawn(args: list[str], log: Path, cwd: Path, handle_limit: int | None = None) -> Proc:
    """`handle_limit` sets the child's file-handle limit (soft and hard), as a small default would."""
    env = {k: v for k, v in os.environ.items() if k != "STST_TOKEN"}

    def limit() -> None:
        if handle_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (handle_limit, handle_limit))

    f = open(log, "ab")  # noqa: ASYNC230 - a local file opened once per process start
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=cwd, env=env, stdout=f, stderr=f, preexec_fn=limit
    )
    f.close()
    return Proc(proc, log)


@pytest.fixture
async def procs() -> Any:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        await p.kill(signal.SIGTERM if p.proc.returncode is None else signal.SIGKILL)


async def get_json(client: httpx.AsyncClient, url: str) -> Any:
    r = await client.get(url)
    r.raise_for_status()
    return r.json()


async def test_hard_restarts_keep_position_and_pnl_equal_to_the_venue_and_killed_stays_killed(
    tmp_path, procs
):
    venue_log = tmp_path / "venue.log"
    venue = await spawn(["-m", "bot.sim", "--port", "0", "--seed", "5"], venue_log, ROOT)
    procs.append(venue)
    await eventually(lambda: "WebSocket" in venue.text(), 30, "the venue to listen")
    venue_url = re.search(r"REST\s+(http://[\d.]+:\d+)", venue.text()).group(1)  # type: ignore[union-attr]
    cfg = tmp_path / "override.yml"
    cfg.write_text(OVERRIDE)
    log_dir = tmp_path / "logs"
    port = free_port()
    api = f"http://127.0.0.1:{port}"

    async def start_server(n: int) -> Proc:
        p = await spawn(
            [
                "-m",
                "server",
                "--override",
                str(cfg),
                "--port",
                str(port),
                "--log-dir",
                str(log_dir),
                "--env-file",
                str(tmp_path / "no.env"),
                "--venue",
                venue_url,
            ],
            tmp_path / f"server{n}.log",
            ROOT,
        )
        procs.append(p)
        return p

    async with httpx.AsyncClient(timeout=5) as client:

        async def state() -> dict:
            return await get_json(client, f"{api}/state")

        async def ledger() -> dict:
            return await get_json(client, f"{venue_url}/_sim/ledger")

        async def hand(side: str, size: str) -> None:
            r = await client.post(f"{venue_url}/_sim/order", json={"side": side, "size": size})
            assert r.status_code == 200, r.text

        async def until(check: Any, within: float, what: str) -> None:
            box: dict[str, bool] = {"ok": False}

            async def probe() -> None:
                while not box["ok"]:
                    try:
                        box["ok"] = bool(await check())
                    except (httpx.HTTPError, KeyError, TypeError):
                        pass
                    if not box["ok"]:
                        await asyncio.sleep(0.05)

            task = asyncio.create_task(probe())
            try:
                await eventually(lambda: box["ok"] or task.done(), within, what)
            finally:
                task.cancel()
            assert box["ok"], what

        async def reconciled() -> bool:
            return (await state())["health"]["reconciled_at"] is not None

        async def equal_to_venue() -> bool:
            """Position, realized PnL (trading less holding costs) and holding costs, to the yen."""
            s, v = await state(), await ledger()
            inv = s["inventory"]
            return (
                D(inv["position_btc"]) == D(v["position"])
                and D(inv["realized_pnl_jpy"]) == D(v["realized_pnl"])
                and D(inv["holding_costs_total_jpy"]) == D(v["holding_costs"])
            )

        async def charge(kind: str) -> None:
            r = await client.post(f"{venue_url}/_sim/charge", json={"kind": kind, "rate": "0.001"})
            assert r.status_code == 200 and r.json()["charged"], r.text

        s1 = await start_server(1)
        await until(reconciled, 60, "server 1 up and reconciled")
        await hand("BUY", "0.003")
        await until(lambda: _position_is(state, "0.003"), 20, "the bot to count the hand trade")
        await charge("funding")  # booked before the crash: must not be booked again after it
        await until(equal_to_venue, 20, "the funding charge booked")
        state_file = log_dir / "state.json"
        await until(lambda: _saved_lots(state_file), 20, "the position saved in the state file")
        await until(lambda: _saved_cost(state_file), 20, "the charge saved in the state file")
        await s1.kill()  # SIGKILL: no shutdown at all

        await charge("leverage_points")  # charged while it is down: booked once after the restart
        for side, size in (("SELL", "0.002"), ("BUY", "0.001"), ("SELL", "0.003")):  # trades while it is down
            await hand(side, size)
        v = await ledger()
        assert D(v["position"]) == D("-0.001") and D(v["realized_pnl"]) != 0
        assert v["holding_cost_rows"] >= 2

        await start_server(2)
        await until(reconciled, 60, "server 2 up and reconciled")
        await until(equal_to_venue, 30, "position and realized PnL equal to the venue's")
        s = await state()
        assert D(s["inventory"]["position_btc"]) == D("-0.001")

        r = await client.post(f"{api}/strategy/kill")
        assert r.status_code == 200, r.text
        await until(lambda: _venue_flat(ledger), 30, "flat after the kill")
        s2 = procs[-1]
        await s2.kill()  # SIGKILL while KILLED
        await hand("BUY", "0.001")  # a position opened while it is down

        await start_server(3)
        await until(reconciled, 60, "server 3 up")
        assert (await get_json(client, f"{api}/strategy"))["state"] == "KILLED"
        await until(lambda: _venue_flat(ledger), 30, "the position opened while down flattened at boot")
        await until(equal_to_venue, 30, "equal to the venue after the flatten")
        st = await get_json(client, f"{api}/strategy")
        assert st["state"] == "KILLED" and "flat and no orders, confirmed at" in st["activity"]["detail"]


async def _position_is(state: Any, want: str) -> bool:
    return D((await state())["inventory"]["position_btc"]) == D(want)


async def _saved_cost(path: Path) -> bool:
    try:
        inv = json.loads(path.read_text())["inventory"]  # noqa: ASYNC240 - a small local file
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(inv) and D(inv.get("holding_costs_total", "0")) != 0


async def _venue_flat(ledger: Any) -> bool:
    v = await ledger()
    return D(v["position"]) == 0 and v["open_orders"] == []


async def _saved_lots(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text())["inventory"]["lots"])  # noqa: ASYNC240 - a small local file
    except (OSError, ValueError, KeyError):
        return False
