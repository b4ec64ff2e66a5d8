"""Money safety end to end (the real pybotters client against the simulated venue): a kill that always ends
flat, other products ignored, executions of orders we never sent verified before they count."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from bot.types.dto import RunState
from tests.conftest import eventually

pytestmark = pytest.mark.integration

D = Decimal
# no strikes (the stall never lasts an hour) and no adverse-move closes: only what a test does moves the
# position
QUIET = {"strategy": {"stall_T_ms": 3_600_000, "max_reverse_ticks": 100_000}}


async def quiet_bot(make_service, extra: dict | None = None):
    svc = await make_service({**QUIET, **(extra or {})})
    runner = svc.runner
    await eventually(
        lambda: runner.sync.reconciled_at is not None and not runner.sync.needed, 30, "the first reconcile"
    )
    return svc, runner, svc.venue, svc.cfg.sim.api_key


async def test_another_products_fill_never_becomes_an_fx_position(make_service):
    """Defect 2: child_order_events covers the whole account; a hand-placed BTC_JPY spot fill became an
    FX_BTC_JPY position and the reverse stop sent a real FX MARKET SELL to "close" it."""
    svc, runner, venue, key = await quiet_bot(make_service)
    venue.hand_order("BUY", "0.05", product_code="BTC_JPY")
    await eventually(lambda: runner.metrics.other_product_events >= 2, 10, "the BTC_JPY events to arrive")
    n = runner.metrics.reconciles
    await eventually(lambda: runner.metrics.reconciles > n, 15, "a reconcile after them")
    assert runner.inventory.position_btc == 0 and venue.ledger.position(key) == 0
    assert list(runner.tracker.all_orders()) == []  # no close was ever sent for it
    assert runner.metrics.orders_sent == 0


async def test_kill_in_maintenance_with_dust_ends_exactly_flat_after_the_window(make_service):
    """Defects 1 and 4: a kill during the maintenance window gave up after ≈23 s and left the position open;
    a position below 0.001 BTC could never be closed (every close refused for its size)."""
    svc, runner, venue, key = await quiet_bot(make_service)
    venue.hand_order("BUY", "0.0014")
    venue.hand_order("SELL", "0.001")
    await eventually(lambda: runner.inventory.position_btc == D("0.0004"), 15, "the bot to see the dust")
    await venue.maintenance(4, preopen_seconds=1)
    kill = asyncio.create_task(runner.kill("test"))
    await eventually(
        lambda: runner.settle_status() is not None and runner.settle_status().attempt >= 2,
        10,
        "flatten attempts refused during the window",
    )
    assert venue.ledger.position(key) == D("0.0004")
    await kill
    await eventually(lambda: runner.settle_status().confirmed_at is not None, 60, "flat and confirmed")
    assert venue.ledger.position(key) == 0
    assert runner.settle_status().flatten_orders == ("SELL 0.0014", "BUY 0.001")
    assert "-110" not in runner.metrics.exchange_errors  # nothing refused for its size
    await eventually(lambda: runner.inventory.position_btc == 0, 10, "the bot to see flat")
    assert runner.inventory.realized_pnl_jpy == venue.ledger.realized_pnl(key)
    assert "flat and no orders, confirmed at" in runner.status().activity.detail


async def test_a_position_opened_by_hand_while_killed_is_flattened_again(make_service):
    svc, runner, venue, key = await quiet_bot(make_service)
    assert await runner.kill("test") is True
    assert runner.settle_status().confirmed_at is not None
    venue.hand_order("BUY", "0.002")
    await eventually(lambda: venue.ledger.position(key) != 0, 5, "the hand trade")
    await eventually(
        lambda: "SELL 0.002" in runner.settle_status().flatten_orders and not runner.settle_status().working,
        30,
        "flattened again and confirmed",
    )
    assert venue.ledger.position(key) == 0
    assert runner.state is RunState.KILLED
    assert "SELL 0.002" in runner.settle_status().flatten_orders
    await eventually(lambda: runner.inventory.position_btc == 0, 10, "the bot to see flat")


async def test_a_kill_switch_and_a_human_kill_run_one_flatten_not_two(make_service):
    """Suspected: the kill switch's settle and a human kill ran two settle loops at once (a double close)."""
    svc, runner, venue, key = await quiet_bot(make_service)
    venue.hand_order("BUY", "0.003")
    await eventually(lambda: runner.inventory.position_btc == D("0.003"), 15, "the position")
    venue.fail("sendchildorder", "timeout_before", count=1)  # the first close hangs until the client gives up
    runner.run_state.enter_killed("kill switch: test", "kill_switch")
    await asyncio.gather(runner.kill("human 1"), runner.kill("human 2"))
    await eventually(lambda: runner.settle_status().confirmed_at is not None, 60, "flat and confirmed")
    assert venue.ledger.position(key) == 0  # never flipped short by a double close
    closes = [o for o in runner.tracker.all_orders() if o.tag == "close"]
    assert sum(1 for o in closes if o.executed_size > 0) == 1


async def test_an_execution_of_an_order_we_never_sent_is_verified_not_believed(make_service):
    """Edge hardening 3: a forged EXECUTION (BUY 5 @ 13,000,000, unknown acceptance id) became position 5; the
    correction 2.7 s later tripped the kill switch on a phantom drawdown."""
    svc, runner, venue, key = await quiet_bot(make_service)
    forged = {
        "jsonrpc": "2.0",
        "method": "channelMessage",
        "params": {
            "channel": "child_order_events",
            "message": [
                {
                    "product_code": "FX_BTC_JPY",
                    "child_order_id": "JFX-forged",
                    "child_order_acceptance_id": "JRF-forged",
                    "event_date": "2026-12-03T01:00:00.0000000Z",
                    "event_type": "EXECUTION",
                    "exec_id": 1,
                    "side": "BUY",
                    "price": 13000000.0,
                    "size": 5.0,
                    "commission": 0,
                    "sfd": 0,
                    "outstanding_size": 0,
                }
            ],
        },
    }
    n = runner.metrics.reconciles
    runner.feed.on_json(forged)
    assert runner.metrics.unverified_fills == 1 and runner.inventory.position_btc == 0
    await eventually(lambda: runner.metrics.reconciles > n, 10, "the verifying reconcile")
    assert runner.inventory.position_btc == 0 and runner.state is RunState.RUNNING
    assert runner.metrics.position_corrections == 0 and runner.inventory.peak_pnl_today_jpy == 0
    # a real hand trade is an execution we never sent too: REST confirms it and it counts
    venue.hand_order("BUY", "0.001")
    await eventually(lambda: runner.inventory.position_btc == D("0.001"), 15, "the verified hand trade")
    assert runner.inventory.position_btc == venue.ledger.position(key)


async def test_a_used_up_rate_limit_is_waited_out_not_hammered(make_service):
    """Found by the soak: after a 429 every reconnect and the periodic reconcile asked again and again (each
    its own retry loop), so a tripped key stayed unknown; the venue's X-RateLimit-Reset says when to ask
    again."""
    svc, runner, venue, key = await quiet_bot(make_service)
    venue.trip_rate_limit(seconds=4)
    # ask for a reconcile now: left to the periodic one, a loaded machine could let the 4 s window pass with
    # no private call in it, and then nothing is ever refused (the race this test once lost)
    runner.sync.soon("the test's prompt")
    await eventually(lambda: venue.stats["rate_limited"] >= 1, 15, "a private call refused with 429")
    refused = venue.stats["rate_limited"]
    reconciles = runner.metrics.reconciles
    await eventually(
        lambda: runner.metrics.reconciles > reconciles, 30, "a reconcile after the window's reset"
    )
    assert venue.stats["rate_limited"] == refused  # nothing asked again while the window was used up
    assert runner.rest_budget.available(runner._clock()) > 0
