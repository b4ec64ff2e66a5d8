"""Rate limits (fixed windows, the small-order penalty) and fault rules, with time passed in; and accounts
that never see each other's events."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.sim import SimVenue
from bot.sim.faults import Faults
from bot.sim.ratelimit import RateLimiter
from tests.sim.conftest import Api, make_cfg, ws_auth_request

SEC = 1_000_000_000


def test_private_window_counts_down_refuses_then_resets() -> None:
    rl = RateLimiter()
    for i in range(500):
        v = rl.hit(i, f"ip{i % 2}", "K")  # two IPs so the per-IP limit does not bind first
        assert v.ok and v.window.remaining == 499 - i
    v = rl.hit(1000, "ip0", "K")
    assert not v.ok and v.limit.name == "private" and v.window.remaining == 0
    assert rl.hit(300 * SEC, "ip0", "K").ok  # a new window
    assert rl.hit(300 * SEC, "ip1", "OTHER").ok  # per key


def test_small_orders_over_100_a_minute_drop_the_key_to_10_a_minute_for_an_hour() -> None:
    rl = RateLimiter()
    for i in range(100):
        assert rl.hit(i, "ip", "K", order=True, small_order=True).ok
    assert not rl.hit(100, "ip", "K", order=True, small_order=True).ok
    t = 61 * SEC  # next minute: only 10 allowed now
    assert all(rl.hit(t + i, "ip", "K", order=True, small_order=True).ok for i in range(10))
    assert not rl.hit(t + 10, "ip", "K", order=True, small_order=True).ok
    assert rl.hit(t + 11, "ip", "K", order=True, small_order=False).ok  # large orders are not penalised
    t = 3700 * SEC
    assert all(rl.hit(t + i, "ip", "K", order=True, small_order=True).ok for i in range(50))


def test_disabled_limiter_never_refuses() -> None:
    rl = RateLimiter(enabled=False)
    assert all(rl.hit(i, "ip", "K").ok for i in range(1200))


def test_fault_rules_count_rate_and_wildcard() -> None:
    f = Faults(seed=1)
    f.fail("sendchildorder", "-208", count=2)
    f.fail("*", "html502", count=1)
    assert [f.take("sendchildorder") for _ in range(3)] == ["-208", "-208", "html502"]
    assert f.take("sendchildorder") is None
    f.fail("getchildorders", "500", count=None, rate=0.5)
    hits = sum(f.take("getchildorders") == "500" for _ in range(400))
    assert 150 <= hits <= 250
    with pytest.raises(ValueError):
        f.fail("x", "nonsense")
    with pytest.raises(ValueError):
        f.fail("x", "-208", count=1, rate=1.5)
    f.clear()
    assert f.take("getchildorders") is None
    f.fail("sendchildorder", "-205", count=None)  # every call until cleared
    assert [f.take("sendchildorder") for _ in range(5)] == ["-205"] * 5


async def test_accounts_see_only_their_own_events_and_ledgers() -> None:
    async with SimVenue(make_cfg()) as venue, aiohttp.ClientSession() as s:
        venue.add_account("OTHER", "OTHER_SECRET")
        mine, other = Api(s, venue), Api(s, venue, "OTHER", "OTHER_SECRET")
        async with s.ws_connect(venue.ws_url) as ws_other:
            await ws_other.send_json(ws_auth_request("OTHER", "OTHER_SECRET", req_id=1))
            await ws_other.send_json(
                {"method": "subscribe", "params": {"channel": "child_order_events"}, "id": 2}
            )
            replies = [await ws_other.receive_json() for _ in range(2)]
            assert all(r.get("result") is True for r in replies)
            await mine.order(child_order_type="MARKET", size=0.003)
            aid = (await (await other.order(child_order_type="MARKET", side="SELL", size=0.001)).json())[
                "child_order_acceptance_id"
            ]
            async with asyncio.timeout(3):
                while True:
                    m = await ws_other.receive_json()
                    if m.get("params", {}).get("channel") == "child_order_events":
                        assert {e["child_order_acceptance_id"] for e in m["params"]["message"]} == {aid}
                        if any(e["event_type"] == "EXECUTION" for e in m["params"]["message"]):
                            break
        assert str(venue.ledger.position(venue.api_key)) == "0.003"
        assert str(venue.ledger.position("OTHER")) == "-0.001"


def test_a_second_trip_in_a_later_window_is_lifted_too() -> None:
    from bot.sim.ratelimit import PRIVATE, SEC, RateLimiter

    lim = RateLimiter()
    for _ in range(3):
        lim.hit(0, "ip", "k")
    lim.trip(0, "k", seconds=1)
    t = 2 * SEC  # the tripped window has ended; a new one counts afresh
    lim.hit(t, "ip", "k")
    lim.trip(t, "k")
    lim.lift_trips()
    assert lim.hit(t, "ip", "k").ok
    assert (
        lim._window(PRIVATE, "k", t).count == 2
    )  # this window's request before the trip and this one, not the last window's 3
