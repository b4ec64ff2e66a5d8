"""`make soak MINUTES=10 SEED=1`: the chaos harness. Black-box: the simulated venue in its own process
(`python -m bot.sim`), the real server in another (`python -m server --venue URL`), and a seeded schedule of
every fault the venue offers, control calls, live config patches, holding-cost charges and hard restarts
(SIGKILL) of the server — while the bot trades. Invariants are checked while it runs (from `/state`) and
afterwards from the bot's own logs (the orders CSV and the runtime log's state transitions), and at the end
the bot's position, realized PnL and holding costs are compared with the venue's ledger. The last line
printed is one JSON object; the exit status is 1 when any invariant failed. A failing seed is a one-line
reproduction: `make soak MINUTES=… SEED=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
D = Decimal
OVERRIDE = """
env: sim
strategy: {stall_T_ms: 150, ttl_ms: 600, stale_after_ms: 1000}
runner: {reconcile_interval_sec: 3, board_state_poll_sec: 1, account_poll_sec: 5}
pybotters: {timeout_sec: 1.5}
"""
MAX_INVENTORY = D("0.2")  # base.yml's strategy.max_inventory_btc (patches here never change it)
ORDER_SIZE = D("0.001")
LOCAL_REFUSALS = {"invalid", "backoff", "rate_budget", "close_backoff"}  # never reached the venue
MAINTENANCE_NOTICE_S = 2.5  # board state is polled every 1 s: entries after this count as violations
ERRORS = ["-208", "500", "html502", "timeout", "timeout_before", "-205", "order_failed"]
ENDPOINTS = [
    "sendchildorder",
    "cancelchildorder",
    "cancelallchildorders",
    "getchildorders",
    "getpositions",
    "getexecutions",
    "*",
]
_TRANSITION = re.compile(r"^(\S+ \S+ \S+) \| \w+\s*\| bot\.run_state:set:\d+ \| state (\w+) → (\w+) by")
_START = re.compile(r"^(\S+ \S+ \S+) \| \w+\s*\| bot\.runner:open:\d+ \| runner: \w+ mode, state (\w+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f %z")


@dataclass
class Run:
    seed: int
    seconds: float
    work: Path
    rng: random.Random = field(init=False)
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    restarts: int = 0
    kills_at: list[tuple[datetime, datetime | None]] = field(default_factory=list)  # server down intervals
    maintenance: list[tuple[datetime, datetime]] = field(default_factory=list)
    max_position: Decimal = D(0)
    charges: int = 0  # holding-cost rows the venue wrote on the harness's demand
    max_stall_orders: int = 0
    max_loop_block_ms: float = 0.0
    rss_growth_mb: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def violate(self, what: str) -> None:
        if len(self.violations) < 200:
            self.violations.append(what)
        print(f"VIOLATION: {what}", file=sys.stderr, flush=True)


class Soak:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.log_dir = run.work / "logs"
        self.cfg = run.work / "soak.yml"
        self.cfg.write_text(OVERRIDE)
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.venue_url = ""
        self.venue: asyncio.subprocess.Process | None = None
        self.server: asyncio.subprocess.Process | None = None
        self.server_started = 0.0
        self.rss_first: float | None = None
        self.http = httpx.AsyncClient(timeout=10)
        self.unsettled = ""
        self.rate_limited_until = 0.0  # monotonic s at which the last tripped rate-limit window ends
        self.reverts: list[tuple[float, str, dict[str, Any]]] = []

    # ---- processes --------------------------------------------------------------------------------------
    async def _spawn(self, args: list[str], name: str) -> asyncio.subprocess.Process:
        env = {k: v for k, v in os.environ.items() if k != "STST_TOKEN"}
        with open(self.run.work / f"{name}.out", "ab") as f:  # noqa: ASYNC230 - once per process start
            return await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=ROOT, env=env, stdout=f, stderr=f
            )

    async def start_venue(self) -> None:
        self.venue = await self._spawn(
            ["-m", "bot.sim", "--port", "0", "--seed", str(self.run.seed), "--activity", "4"], "venue"
        )
        out = self.run.work / "venue.out"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = re.search(r"REST\s+(http://[\d.]+:\d+)", out.read_text(errors="replace"))
            if m:
                self.venue_url = m.group(1)
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the venue did not start: " + out.read_text(errors="replace")[-2000:])

    async def start_server(self) -> None:
        self.server = await self._spawn(
            [
                "-m",
                "server",
                "--override",
                str(self.cfg),
                "--port",
                str(self.port),
                "--log-dir",
                str(self.log_dir),
                "--env-file",
                str(self.run.work / "none"),
                "--venue",
                self.venue_url,
            ],
            "server",
        )
        self.server_started = time.monotonic()
        self.rss_first = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (await self.http.get(f"{self.api}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.server.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError("the server did not start: " + (self.run.work / "server.out").read_text()[-3000:])

    async def hard_restart(self) -> None:
        assert self.server is not None
        self._rss_sample(final=True)
        if not self._server_died():
            self.server.send_signal(signal.SIGKILL)
            await self.server.wait()
        down = datetime.now(UTC)
        self.run.restarts += 1
        if self.run.rng.random() < 0.5:  # a trade by hand while the bot is down: the restart must catch up
            side = self.run.rng.choice(["BUY", "SELL"])
            if await self.hand_trade({"side": side, "size": "0.001"}):
                self.run.faults["hand_trade_while_down"] += 1
        await asyncio.sleep(self.run.rng.uniform(0.2, 2.0))
        await self.start_server()
        self.run.kills_at.append((down, datetime.now(UTC)))

    def _rss_sample(self, final: bool = False) -> None:
        if self.server is None or self.server.returncode is not None:
            return
        try:
            text = Path(f"/proc/{self.server.pid}/status").read_text()
        except OSError:
            return
        m = re.search(r"VmRSS:\s+(\d+) kB", text)
        if not m:
            return
        mb = int(m.group(1)) / 1024
        if self.rss_first is None and time.monotonic() - self.server_started > 20:
            self.rss_first = mb
        elif self.rss_first is not None and (final or time.monotonic() - self.server_started > 60):
            self.run.rss_growth_mb = max(self.run.rss_growth_mb, mb - self.rss_first)

    # ---- the venue's admin API and the bot's API --------------------------------------------------------
    async def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        r = await self.http.post(f"{self.venue_url}/_sim/{path}", json=body or {})
        r.raise_for_status()
        return r.json()

    def _server_died(self) -> bool:
        """The server exited without the harness killing it: a violation (reported once, as it is
        restarted)."""
        if self.server is None or self.server.returncode is None:
            return False
        self.run.violate(f"the server exited on its own (status {self.server.returncode})")
        return True

    async def hand_trade(self, body: dict[str, Any]) -> bool:
        """A trade by hand on the account; the venue may refuse it as it would any order (maintenance -204,
        margin -205): that is the market's answer, not a harness failure."""
        r = await self.http.post(f"{self.venue_url}/_sim/order", json=body)
        if r.status_code == 400 and "status" in r.json():
            self.run.faults["hand_trade_refused"] += 1
            return False
        r.raise_for_status()
        return True

    async def ledger(self) -> dict[str, Any]:
        r = await self.http.get(f"{self.venue_url}/_sim/ledger")
        r.raise_for_status()
        return dict(r.json())

    async def control(self, action: str) -> int:
        try:
            r = await self.http.post(f"{self.api}/strategy/{action}", timeout=40)
        except httpx.HTTPError:
            return 0
        if r.status_code >= 500:
            self.run.violate(f"POST /strategy/{action} answered {r.status_code}: {r.text[:200]}")
        return r.status_code

    async def state(self) -> dict[str, Any] | None:
        try:
            r = await self.http.get(f"{self.api}/state", timeout=5)
            return dict(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    # ---- the schedule -----------------------------------------------------------------------------------
    async def inject(self) -> None:
        rng = self.run.rng
        kinds = [
            "ws_drop",
            "silence",
            "latency",
            "fail",
            "rate_limit",
            "maintenance",
            "health",
            "control",
            "config",
            "restart",
            "other_product",
            "charge",
        ]
        weights = [3, 2, 2, 6, 1, 1, 2, 4, 2, 1, 1, 2]
        kind = rng.choices(kinds, weights)[0]
        now = time.monotonic()
        if kind == "ws_drop":
            await self.admin("drop_ws")
        elif kind == "silence":
            await self.admin("silence", {"seconds": round(rng.uniform(0.5, 3.0), 2)})
        elif kind == "latency":
            await self.admin("latency", {"ms": rng.randint(50, 400)})
            self.reverts.append((now + rng.uniform(1, 4), "latency", {"ms": 0}))
        elif kind == "fail":
            error = rng.choice(ERRORS)
            kind = f"fail:{error}"
            await self.admin(
                "fail", {"endpoint": rng.choice(ENDPOINTS), "error": error, "count": rng.randint(1, 3)}
            )
        elif kind == "rate_limit":  # the key's window used up; it ends within `seconds` (X-RateLimit-Reset)
            seconds = round(rng.uniform(5, 40), 1)
            await self.admin("rate_limit_trip", {"seconds": seconds})
            self.rate_limited_until = max(self.rate_limited_until, now + seconds)
        elif kind == "maintenance":
            seconds, pre = round(rng.uniform(2, 5), 1), round(rng.uniform(0.5, 1.5), 1)
            start = datetime.now(UTC)
            await self.admin("maintenance", {"seconds": seconds, "preopen_seconds": pre})
            self.run.maintenance.append((start, start + timedelta(seconds=seconds)))
        elif kind == "health":
            status = rng.choice(["STOP", "NO ORDER", "BUSY"])
            kind = f"health:{status}"
            await self.admin("health", {"status": status})
            self.reverts.append((now + rng.uniform(2, 5), "health", {"status": "NORMAL"}))
        elif kind == "control":
            action = rng.choice(["pause", "resume", "stop", "start", "kill", "reset", "start", "resume"])
            kind = f"control:{action}"
            await self.control(action)
        elif kind == "config":
            patch = {"strategy": {"stall_T_ms": rng.randint(100, 600), "ttl_ms": rng.randint(300, 1500)}}
            r = await self.http.patch(
                f"{self.api}/config", json=patch, headers={"Content-Type": "application/merge-patch+json"}
            )
            if r.status_code >= 500:
                self.run.violate(f"PATCH /config answered {r.status_code}")
        elif kind == "restart":
            await self.hard_restart()
        elif kind == "other_product":  # the same account trades spot: never an FX position
            await self.hand_trade(
                {"side": rng.choice(["BUY", "SELL"]), "size": "0.01", "product_code": "BTC_JPY"}
            )
        elif kind == "charge":  # a holding cost settled now: booked once, to the yen
            what = rng.choice(["funding", "leverage_points"])
            rate = f"{rng.uniform(0.0005, 0.003):.6f}"
            side = rng.choice(["BUY", "SELL"])
            if D((await self.ledger())["position"]) == 0:  # a flat account pays nothing: hold 0.001 by hand
                await self.hand_trade({"side": side, "size": str(ORDER_SIZE)})
            charged = await self.admin("charge", {"kind": what, "rate": rate})
            kind = f"charge:{what}"
            self.run.charges += len(charged["charged"])
        self.run.faults[kind] += 1

    async def do_reverts(self) -> None:
        now = time.monotonic()
        due = [r for r in self.reverts if r[0] <= now]
        self.reverts = [r for r in self.reverts if r[0] > now]
        for _, path, body in due:
            await self.admin(path, body)

    async def watch(self) -> None:
        """Invariants that hold at every instant, from /state."""
        if self._server_died():
            await self.start_server()
        s = await self.state()
        self._rss_sample()
        if s is None:
            return
        pos = abs(D(s["inventory"]["position_btc"]))
        self.run.max_position = max(self.run.max_position, pos)
        if pos > MAX_INVENTORY + ORDER_SIZE:
            self.run.violate(f"|position| {pos} > max_inventory_btc {MAX_INVENTORY} + one order")
        stall = [o for o in s["orders"] if o["tag"] == "stall"]
        self.run.max_stall_orders = max(self.run.max_stall_orders, len(stall))
        if len(stall) > 2:
            self.run.violate(f"{len(stall)} stall orders live at once")
        self.run.max_loop_block_ms = max(
            self.run.max_loop_block_ms, float(s["health"].get("loop_lag_max_ms") or 0.0)
        )

    async def main(self) -> dict[str, Any]:
        await self.start_venue()
        await self.start_server()
        t_end = time.monotonic() + self.run.seconds
        next_fault = time.monotonic() + 3
        while time.monotonic() < t_end:
            await self.watch()
            await self.do_reverts()
            if time.monotonic() >= next_fault:
                try:
                    await self.inject()
                except (httpx.HTTPError, RuntimeError) as e:
                    self.run.violate(f"injecting a fault failed: {e!r}")
                next_fault = time.monotonic() + self.run.rng.uniform(1.0, 4.0)
            await asyncio.sleep(0.2)
        return await self.finish()

    # ---- the end ----------------------------------------------------------------------------------------
    async def finish(self) -> dict[str, Any]:
        await self.admin("clear_faults")
        await self.admin("latency", {"ms": 0})
        await self.admin("health", {"status": "NORMAL"})
        if self.run.maintenance:
            left = (self.run.maintenance[-1][1] - datetime.now(UTC)).total_seconds() + 2
            if left > 0:
                await asyncio.sleep(left)  # the venue reopens on its own clock; nothing to wait on but time
        # the bot holds private calls until the reset the venue announced (lifting the trip early is not news
        # it can hear), so its settling starts then
        left = self.rate_limited_until - time.monotonic() + 1
        if left > 0:
            await asyncio.sleep(left)
        st = (await self.http.get(f"{self.api}/strategy")).json()
        if st["state"] in ("RUNNING", "PAUSED"):
            await self.control("stop")
        settled = await self._until_settled()
        s = await self.state()
        v = await self.ledger()
        assert s is not None
        pos_diff = abs(D(s["inventory"]["position_btc"]) - D(v["position"]))
        pnl_diff = abs(D(s["inventory"]["realized_pnl_jpy"]) - D(v["realized_pnl"]))
        cost_diff = abs(D(s["inventory"]["holding_costs_total_jpy"]) - D(v["holding_costs"]))
        if not settled:
            self.run.violate(
                "the bot never settled level with the venue after the faults cleared: " + self.unsettled[:300]
            )
        unknown = [o for o in v["open_orders"]]
        if unknown:
            self.run.violate(f"{len(unknown)} order(s) rest at the venue after the stop")
        await self.stop_all(graceful=True)
        checks = self.check_logs(v)
        return {
            "seed": self.run.seed,
            "minutes": round(self.run.seconds / 60, 2),
            "faults_injected": dict(sorted(self.run.faults.items())),
            "restarts": self.run.restarts,
            "orders_sent": checks["orders_sent"],
            "fills": checks["fills"],
            "position_diff_btc": float(pos_diff),
            "realized_diff_jpy": float(pnl_diff),
            "holding_costs_diff_jpy": float(cost_diff),
            "holding_costs_jpy": v["holding_costs"],
            "holding_cost_rows": v["holding_cost_rows"],
            "charges_on_demand": self.run.charges,
            "orders_sent_while_not_running": checks["sent_while_not_running"],
            "entries_during_maintenance": checks["entries_during_maintenance"],
            "refused_for_size": checks["refused_for_size"],
            "unknown_orders_at_end": len(unknown),
            "trades_csv_position_diff_btc": checks["csv_position_diff"],
            "trades_csv_realized_diff_jpy": checks["csv_realized_diff"],
            "trades_csv_holding_costs_diff_jpy": checks["csv_holding_costs_diff"],
            "max_abs_position_btc": float(self.run.max_position),
            "max_live_stall_orders": self.run.max_stall_orders,
            "max_loop_block_ms": round(self.run.max_loop_block_ms, 1),
            "rss_growth_mb": round(self.run.rss_growth_mb, 1),
            "invariant_violations": len(self.run.violations),
            "violations": self.run.violations[:20],
            "bot_state_at_end": s["state"],
        }

    async def _until_settled(self) -> bool:
        """True once the bot lists no order, the venue rests none, and position, realized PnL and holding
        costs agree; otherwise the last disagreement is kept in `unsettled` for the violation line."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s, v = await self.state(), await self.ledger()
            if s is None:
                self.unsettled = "the server did not answer /state"
            elif s["orders"]:
                self.unsettled = f"the bot still lists {s['orders']}"
            elif v["open_orders"]:
                self.unsettled = f"the venue still rests {v['open_orders']}"
            elif (
                D(s["inventory"]["position_btc"]) != D(v["position"])
                or D(s["inventory"]["realized_pnl_jpy"]) != D(v["realized_pnl"])
                or D(s["inventory"]["holding_costs_total_jpy"]) != D(v["holding_costs"])
            ):
                self.unsettled = (
                    f"bot {s['inventory']} vs venue {v['position']} / {v['realized_pnl']} "
                    f"(holding costs {v['holding_costs']})"
                )
            else:
                return True
            await asyncio.sleep(0.2)
        return False

    async def stop_all(self, graceful: bool) -> None:
        for proc in (self.server, self.venue):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        await self.http.aclose()

    # ---- invariants from the bot's own logs ---------------------------------------------------------------
    def timeline(self) -> list[tuple[datetime, str]]:
        """(time, state) from the runtime log: each start's initial state and every transition; DOWN while
        the harness had the server killed."""
        events: list[tuple[datetime, str]] = []
        for path in sorted((self.log_dir / "runtime").glob("app*.log*")):
            for line in path.read_text(errors="replace").splitlines():
                m = _TRANSITION.match(line) or _START.match(line)
                if m:
                    events.append((log_time(m.group(1)), m.groups()[-1]))
        for down, _up in self.run.kills_at:
            events.append((down, "DOWN"))
        events.sort(key=lambda e: e[0])
        return events

    def check_logs(self, ledger: dict[str, Any]) -> dict[str, Any]:
        timeline = self.timeline()

        def state_at(t: datetime) -> str:
            current = "DOWN"
            for at, st in timeline:
                if at > t:
                    break
                current = st
            return current

        sent = while_not_running = in_maintenance = refused_for_size = 0
        for row in self._rows("orders"):
            if row.get("action") not in ("place", "close") or row.get("status") in LOCAL_REFUSALS:
                continue
            sent += 1
            if row.get("status") == "-110":
                refused_for_size += 1
            ts = datetime.fromisoformat(row["ts"])
            latency = float(row["latency_ms"]) if row.get("latency_ms") else 0.0
            at = ts - timedelta(milliseconds=latency)  # the request left when it was decided
            st = state_at(at)
            entry = row.get("tag") == "stall"
            if entry and st != "RUNNING" or not entry and st == "STOPPED":
                while_not_running += 1
                self.run.violate(f"{row['action']} {row.get('tag')} sent at {at.isoformat()} in {st}")
            if entry and any(
                s + timedelta(seconds=MAINTENANCE_NOTICE_S) <= at <= e for s, e in self.run.maintenance
            ):
                in_maintenance += 1
                self.run.violate(f"entry sent at {at.isoformat()} during a maintenance window")
        if refused_for_size:
            self.run.violate(f"{refused_for_size} order(s) refused for their size")
        fills, position, realized, costs = 0, D(0), D(0), D(0)
        for row in self._rows("trades"):
            side = 1 if row["side"] == "BUY" else -1
            position += side * D(row["size"])
            if row.get("tag") == "holding_cost":  # no size; its PnL is the collateral's change
                realized += D(row["pnl_jpy"])
                costs -= D(row["pnl_jpy"])
            elif row.get("tag") != "correction":
                fills += 1
                realized += D(row["pnl_jpy"])
        self._rows("decisions")
        csv_pos = abs(position - D(ledger["position"]))
        csv_pnl = abs(realized - D(ledger["realized_pnl"]))
        csv_costs = abs(costs - D(ledger["holding_costs"]))
        if csv_pos != 0 or csv_pnl > 1 or csv_costs != 0:
            self.run.violate(
                f"trades CSV sums to {position} BTC / {realized} JPY (holding costs {costs}), the venue has "
                f"{ledger['position']} / {ledger['realized_pnl']} (holding costs {ledger['holding_costs']})"
            )
        return {
            "orders_sent": sent,
            "sent_while_not_running": while_not_running,
            "entries_during_maintenance": in_maintenance,
            "refused_for_size": refused_for_size,
            "fills": fills,
            "csv_position_diff": float(csv_pos),
            "csv_realized_diff": float(csv_pnl),
            "csv_holding_costs_diff": float(csv_costs),
        }

    def _rows(self, kind: str) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for path in sorted((self.log_dir / kind).glob(f"{kind}-*.csv")):
            lines = path.read_text(errors="replace").splitlines()
            reader = list(csv.reader(lines))
            if not reader:
                continue
            header = reader[0]
            for i, rec in enumerate(reader[1:], 1):
                if len(rec) != len(header):
                    if i == len(reader) - 1:
                        continue  # a torn last line after a hard kill
                    self.run.violate(f"{path.name} line {i + 1} does not parse ({len(rec)} fields)")
                    continue
                rows.append(dict(zip(header, rec, strict=True)))
        return rows


async def soak(minutes: float, seed: int, work: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        run = Run(seed=seed, seconds=minutes * 60, work=Path(work or tmp))
        run.work.mkdir(parents=True, exist_ok=True)
        s = Soak(run)
        try:
            return await s.main()
        finally:
            if not s.http.is_closed:
                await s.stop_all(graceful=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=None, help="keep logs here (default: a temporary folder)")
    a = ap.parse_args(argv)
    result = asyncio.run(soak(a.minutes, a.seed, Path(a.work) if a.work else None))
    print(json.dumps(result))
    return 1 if result["invariant_violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
