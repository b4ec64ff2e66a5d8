"""The account watch end to end (the real pybotters client against the simulated venue over loopback): holding
costs the venue charges land in the bot's ledger to the yen, once, and the kill switch sees them; a low keep
rate blocks entries until it recovers; a margin call kills and flattens."""

from __future__ import annotations

import csv
from decimal import Decimal
from typing import Any

import httpx
import pytest
from loguru import logger

from bot.types.dto import Reason, RunState
from tests.conftest import eventually

pytestmark = pytest.mark.integration

D = Decimal
# no strikes (the stall never lasts an hour), no adverse-move closes, the account looked at every second, and
# no scheduled charge (rates 0): only what a test does moves the money
QUIET: dict[str, Any] = {
    "strategy": {"stall_T_ms": 3_600_000, "max_reverse_ticks": 100_000},
    "runner": {"account_poll_sec": 1},
    "sim": {"funding_rate": 0, "leverage_point_rate": 0},
}


def merged(extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in QUIET.items()}
    for k, v in extra.items():
        out.setdefault(k, {}).update(v)
    return out


async def admin(svc: Any, path: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.post(f"{svc.venue.base_url}{path}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def watched_bot(make_service: Any, extra: dict[str, Any] | None = None) -> tuple[Any, Any, Any, str]:
    """A bot that has reconciled and read the collateral history once (its baseline)."""
    svc = await make_service(merged(extra or {}))
    runner = svc.runner
    await eventually(
        lambda: not runner.sync.needed and runner.inventory.cost_watermark is not None,
        30,
        "the first reconcile and the collateral history's baseline",
    )
    return svc, runner, svc.venue, svc.cfg.sim.api_key


async def hold(runner: Any, venue: Any, side: str, size: str) -> None:
    venue.hand_order(side, size)
    want = D(size) if side == "BUY" else -D(size)
    await eventually(lambda: runner.inventory.position_btc == want, 15, "the bot to count the hand trade")
    venue.freeze_market()  # the mark stays put: only the charge moves today's PnL


async def test_a_funding_charge_lowers_realized_and_todays_pnl_by_exactly_the_venues_charge(make_service):
    svc, runner, venue, key = await watched_bot(make_service)
    await hold(runner, venue, "BUY", "0.01")
    inv = runner.inventory

    # today's PnL apart from the open position's mark (which moves with the market, not with the charge)
    def today_but_the_mark() -> Decimal:
        return inv.pnl_today_jpy - inv.unrealized_pnl_jpy

    realized, today = inv.realized_pnl_jpy, today_but_the_mark()
    (charge,) = (await admin(svc, "/_sim/charge", {"kind": "funding", "rate": "0.001"}))["charged"]
    change = D(charge["change"])
    assert change < 0
    await eventually(lambda: inv.holding_costs_total_jpy != 0, 15, "the bot to book the charge")
    assert inv.realized_pnl_jpy == realized + change
    assert today_but_the_mark() == today + change
    assert inv.holding_costs_today_jpy == -change
    assert inv.realized_pnl_jpy == venue.ledger.realized_pnl(key)  # trading less holding costs, to the yen
    assert inv.holding_costs_total_jpy == venue.ledger.holding_costs(key)
    snap = runner.snapshot()
    assert snap.inventory.holding_costs_today_jpy == -change
    # a second poll reads the same row again and books nothing
    polls = runner.account.history_read_at
    await eventually(lambda: runner.account.history_read_at != polls, 15, "another history poll")
    assert inv.realized_pnl_jpy == realized + change
    # the trades CSV has it as a holding_cost row, and its PnL column still sums to the ledger
    await runner.trade_log.aflush()
    rows = [r for p in sorted((svc.log_dir / "trades").glob("*.csv")) for r in csv.DictReader(p.open())]
    costs = [r for r in rows if r["tag"] == "holding_cost"]
    assert len(costs) == 1 and D(costs[0]["pnl_jpy"]) == change and costs[0]["size"] == "0"
    assert sum(D(r["pnl_jpy"]) for r in rows) == inv.realized_pnl_jpy
    assert D(costs[0]["pnl_cum_jpy"]) == inv.realized_pnl_jpy


async def test_a_holding_cost_that_crosses_the_daily_limit_fires_the_kill_switch(make_service):
    svc, runner, venue, key = await watched_bot(make_service, {"risk": {"daily_pnl_jpy": -2000}})
    await hold(runner, venue, "BUY", "0.01")
    assert runner.state is RunState.RUNNING
    await admin(svc, "/_sim/charge", {"kind": "leverage_points", "rate": "0.02"})  # ≈ 2,700 JPY
    await eventually(lambda: runner.state is RunState.KILLED, 15, "the kill switch")
    reason = runner.run_state.reason
    assert reason.startswith("Kill switch: today's PnL") and "incl. holding costs -" in reason
    venue.freeze_market(False)
    await eventually(lambda: runner.settle_status().confirmed_at is not None, 60, "flat and confirmed")
    assert venue.ledger.position(key) == 0


async def test_a_keep_rate_below_the_level_blocks_entries_until_it_recovers(make_service):
    svc = await make_service(
        {
            "strategy": {"max_reverse_ticks": 100_000},
            "risk": {"min_keep_rate": 1.5},
            "runner": {"account_poll_sec": 1},
            "sim": {"funding_rate": 0, "leverage_point_rate": 0},
        }
    )
    runner, venue = svc.runner, svc.venue
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        await eventually(lambda: runner.metrics.orders_sent >= 1, 60, "a first strike")
        # margin is required only with a position; one large enough that the bot's own fills cannot close it
        venue.hand_order("BUY", "0.05")
        key = svc.cfg.sim.api_key
        await eventually(lambda: abs(venue.ledger.position(key)) >= D("0.03"), 15, "a position")
        # collateral of 1.2 × what the position requires (≈ 340,000 JPY for 0.05 BTC): a keep rate ≈ 1.2
        required = venue.ledger.require_collateral(key)
        await admin(svc, "/_sim/collateral", {"collateral": str((required * D("1.2")).quantize(D(1)))})
        await eventually(lambda: runner.snapshot().health.block_reason == "margin_low", 15, "the block")
        snap = runner.snapshot()
        assert snap.health.keep_rate is not None and snap.health.keep_rate < D("1.5")
        assert "keep rate" in (snap.health.margin_alert or "")
        status = runner.status()
        assert status.activity.reason == "margin_low" and "keep rate" in status.activity.detail
        assert status.alert == snap.health.margin_alert
        sent = runner.metrics.orders_sent
        n = runner.metrics.board_messages
        await eventually(lambda: runner.metrics.board_messages > n + 40, 30, "40 more board messages")
        assert runner.metrics.orders_sent == sent, "an entry went out while the keep rate was low"
        await admin(svc, "/_sim/collateral", {"collateral": 10_000_000})
        await eventually(lambda: runner.account.block_reason() is None, 15, "the block lifted")
        await eventually(lambda: runner.metrics.orders_sent > sent, 60, "trading to resume")
    finally:
        logger.remove(sink)
    assert sum("entries blocked" in line and "keep rate" in line for line in lines) == 1
    assert sum("entries allowed" in line for line in lines) == 1


async def test_a_margin_call_kills_and_flattens_with_a_reason_that_names_it(make_service):
    svc, runner, venue, key = await watched_bot(make_service)
    venue.hand_order("BUY", "0.002")
    await eventually(lambda: runner.inventory.position_btc == D("0.002"), 15, "the position")
    await admin(
        svc, "/_sim/collateral", {"margin_call_amount": 12345, "margin_call_due_date": "2026-12-07T06:00:00"}
    )
    await eventually(lambda: runner.state is RunState.KILLED, 15, "the margin call's kill")
    assert runner.run_state.reason == "kill: margin call 12,345 JPY due 2026-12-07T06:00:00"
    await eventually(lambda: runner.settle_status().confirmed_at is not None, 60, "flat and confirmed")
    assert venue.ledger.position(key) == 0
    status = runner.status()
    assert status.activity.reason == "killed" and "margin call 12,345 JPY" in status.activity.detail
    assert status.alert is not None and "margin call 12,345 JPY" in status.alert
    assert runner.account.block_reason() is Reason.MARGIN_CALL  # entries stay blocked while the call stands
    assert "margin call 12,345 JPY" in (runner.snapshot().health.margin_alert or "")


async def test_a_margin_call_only_blocks_entries_when_the_kill_is_turned_off(make_service):
    svc, runner, venue, key = await watched_bot(make_service, {"risk": {"kill_on_margin_call": False}})
    await admin(svc, "/_sim/collateral", {"margin_call_amount": 500})
    await eventually(lambda: runner.snapshot().health.block_reason == "margin_call", 15, "the block")
    assert runner.state is RunState.RUNNING
    activity = runner.status().activity
    assert activity.reason == "margin_call" and "margin call 500 JPY" in activity.detail
    await admin(svc, "/_sim/collateral", {"margin_call_amount": 0})
    await eventually(lambda: runner.snapshot().health.block_reason is None, 15, "the block lifted")
