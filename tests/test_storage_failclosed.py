"""Fail-closed storage end to end (the real pybotters client against the simulated venue over sockets): with
the state file or the CSV logs refused by the disk, the bot places no new stall order at the venue, a kill
still flattens and stays KILLED, the dashboard's data says why, and once space returns the latch and the held
rows are written and entries resume by themselves.

How the disk is made full: a symlink to /dev/full where the bot (re)opens a file — the state file's temporary
file (opened afresh by every save) or a CSV of today's trading day (opened at its first row). Every write
there fails in the kernel with ENOSPC, exactly what a full disk answers; removing the link is space coming
back. The tests run as root, so a read-only chmod would not stop a single write."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bot.engine.strategy_stall import is_stalled
from bot.infra.logging_structured import KINDS, csv_path
from bot.types.dto import RunState
from tests.conftest import eventually
from tests.conftest_server import build_app, sim_config, uvicorn_server, wait_until
from tests.test_notify_activity import Receiver, receiver

pytestmark = pytest.mark.integration

D = Decimal
JST = ZoneInfo("Asia/Tokyo")


def refuse_writes(path: Path) -> Path:
    """Writes to `path` fail with ENOSPC from now on (a full disk) until the link is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/full")
    return path


def refuse_csv_logs(log_dir: Path, kinds: tuple[str, ...] = KINDS) -> list[Path]:
    """Today's and tomorrow's CSVs (a test may cross midnight JST) of `kinds` refuse every write."""
    today = datetime.now(JST)
    days = {(today + timedelta(days=n)).strftime("%Y%m%d") for n in (0, 1)}
    return [refuse_writes(csv_path(log_dir, kind, day)) for kind in kinds for day in sorted(days)]


def space_returns(links: list[Path]) -> None:
    for link in links:
        link.unlink()


def venue_limit_orders(venue, key: str) -> int:
    """LIMIT orders of ours the venue ever accepted (the bot's entries; its closes are MARKET)."""
    return sum(1 for o in venue.ledger.account(key).orders.values() if o.order_type == "LIMIT")


async def stalls_seen_while_blocked(runner, n: int, within: float) -> None:
    """Wait until the market has stalled `n` distinct times (the best unchanged for stall_T_ms with a spread
    the strategy takes): each one a strike the strategy would have sent with the disk writable."""
    cfg = runner.config.strategy
    seen: set[int] = set()

    def count() -> bool:
        now = runner._clock()
        board = runner.view.snapshot(now)
        if is_stalled(board, now, cfg.stall_T_ms) and (board.spread_ticks or 0) >= cfg.min_spread_tick:
            seen.add(board.best_changed_at)
        return len(seen) >= n

    await eventually(count, within, f"{n} stalls the strategy would have struck")


async def test_a_full_disk_stops_entries_at_the_venue_says_why_and_entries_resume_when_space_returns(
    make_service,
):
    svc = await make_service()
    runner, venue, key = svc.runner, svc.venue, svc.cfg.sim.api_key
    await eventually(lambda: venue_limit_orders(venue, key) >= 1, 60, "a first stall order at the venue")
    saved_before = json.loads(svc.state_file.read_text())["saved_at"]

    full = [refuse_writes(svc.state_file.with_suffix(".tmp"))]  # the next save (≤ 2 s) is refused
    await eventually(lambda: not runner.storage.ok, 15, "the state file's save refused")
    # an entry decided before the refusal may still be resting: wait until its TTL has cancelled it
    await eventually(
        lambda: not runner.tracker.open_orders(tag="stall") and venue.ledger.open_orders(key) == [],
        15,
        "no stall order left",
    )
    entries = venue_limit_orders(venue, key)
    await stalls_seen_while_blocked(runner, 3, 60)
    assert venue_limit_orders(venue, key) == entries  # not one new entry reached the venue
    assert runner.state is RunState.RUNNING  # stopped entering, not stopped

    snap = runner.snapshot()
    assert snap.health.block_reason == "storage_failed"
    assert not snap.storage.ok
    (fault,) = snap.storage.faults
    assert fault.file == "state file" and fault.error == "No space left on device"
    assert fault.path == str(svc.state_file) and fault.failures >= 1
    assert snap.storage.message is not None
    assert snap.storage.message.startswith(
        f"state file not saved: No space left on device ({svc.state_file})"
    )
    assert snap.storage.message.endswith("JST — entries stopped")
    assert (snap.activity.status, snap.activity.reason) == ("blocked", "storage_failed")
    assert snap.activity.detail == snap.storage.message  # "is it trading, and if not, why" names the disk
    assert json.loads(svc.state_file.read_text())["saved_at"] == saved_before  # the old file is intact

    space_returns(full)
    await eventually(lambda: runner.storage.ok, 15, "the next save to succeed")
    assert json.loads(svc.state_file.read_text())["saved_at"] != saved_before
    await eventually(lambda: venue_limit_orders(venue, key) > entries, 60, "entries to resume by themselves")
    assert runner.snapshot().storage.message is None


async def test_a_full_log_disk_alone_stops_entries_and_its_held_rows_are_written_when_space_returns(
    make_service, tmp_path
):
    log_dir = tmp_path / "logs"
    full = refuse_csv_logs(log_dir, ("decisions",))  # the bot's first decision rows are refused
    # started STOPPED (it still logs its decisions), so no entry can beat the first refused write
    svc = await make_service({"runner": {"start_state": "stopped"}}, log_dir=log_dir)
    runner, venue, key = svc.runner, svc.venue, svc.cfg.sim.api_key
    await eventually(lambda: not runner.storage.ok, 30, "the decisions log refused")
    assert await runner.start("test")
    await stalls_seen_while_blocked(runner, 3, 60)
    assert venue_limit_orders(venue, key) == 0
    assert [f.file for f in runner.snapshot().storage.faults] == ["decisions log"]
    assert runner.snapshot().storage.rows_held >= 1

    space_returns(full)
    await eventually(lambda: venue_limit_orders(venue, key) >= 1, 60, "entries once the log takes rows")
    assert runner.storage.ok and runner.snapshot().storage.rows_held == 0
    await runner.decision_log.aflush()
    lines = [ln for p in full if p.exists() for ln in p.read_text().splitlines()]
    assert len(lines) > 2  # a header, the rows held meanwhile and the strike's row


async def test_a_kill_on_a_full_disk_flattens_stays_killed_says_why_and_writes_the_latch_when_space_returns(
    tmp_path,
):
    log_dir = tmp_path / "logs"
    quiet = {"stall_T_ms": 3_600_000, "max_reverse_ticks": 100_000}  # only the test moves the position
    state_file = log_dir / "state.json"
    full = refuse_csv_logs(log_dir, ("orders", "trades"))  # the flatten's rows will be refused
    async with (
        receiver() as (phone, url),
        _served(sim_config(log_dir, strategy=quiet, notify={"urls": [url]}), log_dir) as (app, client),
    ):
        svc = app.state.service
        runner, venue, key = svc.runner, svc.venue, svc.cfg.sim.api_key
        await eventually(lambda: state_file.exists(), 15, "a first state file")
        full.append(refuse_writes(state_file.with_suffix(".tmp")))
        await eventually(lambda: not runner.storage.ok, 15, "the state file refused")

        venue.hand_order("BUY", "0.003")
        await eventually(lambda: runner.inventory.position_btc == D("0.003"), 15, "the position")
        r = await client.post("/strategy/kill")
        assert r.status_code == 200 and r.json()["state"] == "KILLED"
        await eventually(lambda: venue.ledger.position(key) == 0, 30, "flat at the venue")
        assert venue.ledger.open_orders(key) == []

        state = (await client.get("/state")).json()
        assert state["state"] == "KILLED"
        assert state["storage"]["ok"] is False
        assert "state file not saved: No space left on device" in state["storage"]["message"]
        assert "entries stopped" in state["storage"]["message"]
        await wait_until(
            lambda: _failing(client, {"state file", "orders log", "trades log"}),
            15,
            "the flatten's order and trade rows refused",
        )
        page = (await client.get("/")).text  # the dashboard's banner and Health panel
        assert 'id="storage-warning"' in page and "state file not saved: No space left on device" in page
        metrics = (await client.get("/metrics")).text
        assert "stst_storage_ok 0.0" in metrics
        assert 'stst_storage_failing{file="state file"} 1.0' in metrics
        assert json.loads(state_file.read_text())["state"] == "RUNNING"  # the disk refused the latch
        assert runner.state is RunState.KILLED  # … which the bot keeps in memory
        await wait_until(
            lambda: _told(phone, "storage failing", "state file not saved: No space left on device"),
            10,
            "the alert at the phone",
        )

        space_returns(full)
        await eventually(
            lambda: json.loads(state_file.read_text())["state"] == "KILLED", 15, "the latch on disk"
        )
        await wait_until(lambda: _failing(client, set()), 15, "every file written again")
        assert "stst_storage_ok 1.0" in (await client.get("/metrics")).text
        assert (await client.get("/strategy")).json()["state"] == "KILLED"
        assert 'id="storage-warning"' not in (await client.get("/")).text
        await wait_until(lambda: _told(phone, "storage back", "entries allowed again"), 10, "the all-clear")
        await runner.order_log.aflush()
        orders = "".join(p.read_text() for p in full if "orders" in p.name and p.exists())
        assert "SELL" in orders and "0.003" in orders  # the flatten, held while refused, now on disk


@contextlib.asynccontextmanager
async def _served(cfg, log_dir: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The real app on a real uvicorn, and a client talking to it over a socket."""
    app = build_app(cfg, log_dir)
    async with uvicorn_server(app) as base, httpx.AsyncClient(base_url=base) as client:
        yield app, client


async def _told(phone: Receiver, *words: str) -> bool:
    return any(all(w in t for w in words) for t in phone.texts())


async def _failing(client: httpx.AsyncClient, files: set[str]) -> bool:
    storage = (await client.get("/state")).json()["storage"]
    return {f["file"] for f in storage["faults"]} == files
