"""The paper venue: the same book and matching, with bitFlyer's public feed as the other participants. Our
orders queue behind the real size at their price and fill when real prints consume it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.config.loader import SimConfig
from bot.sim import SimVenue
from bot.sim.exchange import Exchange, Outbound, Private
from bot.types.dto import Side
from tests.sim.conftest import Api, eventually, make_cfg

K = "K"
SNAP = {
    "mid_price": 10_000_500.0,
    "bids": [{"price": 10_000_000.0, "size": 0.5}, {"price": 9_999_000.0, "size": 1.0}],
    "asks": [{"price": 10_001_000.0, "size": 0.4}, {"price": 10_002_000.0, "size": 2.0}],
}


def paper() -> Exchange:
    ex = Exchange(SimConfig(), 0, 1_795_000_000_000_000_000, simulate_market=False)
    ex.add_account(K)
    ex.feed_board(SNAP, snapshot=True, now=0)
    return ex


def fills(outs: list[Outbound]) -> list[tuple[str, float, float]]:
    return [
        (e["side"], e["price"], e["size"])
        for o in outs
        if isinstance(o, Private)
        for e in o.events
        if e["event_type"] == "EXECUTION"
    ]


def send(ex: Exchange, **kw: Any) -> tuple[str, list[Outbound]]:
    return ex.send_child_order(
        K, {"product_code": "FX_BTC_JPY", "child_order_type": "LIMIT", "side": "BUY", "size": 0.2, **kw}, 0
    )


def test_no_crowd_of_its_own_only_the_feed() -> None:
    ex = paper()
    assert ex.book.levels(Side.BUY) == [(10_000_000, 50_000_000), (9_999_000, 100_000_000)]
    assert ex.advance(10 * 1_000_000_000) != [] and ex.book.depth(Side.SELL) == 2  # only tickers, no ticks
    ex.feed_board(
        {
            "mid_price": 10_000_500.0,
            "bids": [{"price": 9_999_000.0, "size": 0.0}, {"price": 0.0, "size": 3.0}],
            "asks": [],
        },
        False,
        1,
    )
    assert ex.book.levels(Side.BUY) == [(10_000_000, 50_000_000)]  # deleted; itayose 0 ignored


def test_our_bid_fills_only_after_the_real_size_ahead_has_traded() -> None:
    ex = paper()
    send(ex, price=10_000_000)  # behind the real 0.5
    assert fills(ex.feed_executions([{"side": "SELL", "price": 10_000_000.0, "size": 0.3}], 1)) == []
    out = ex.feed_executions([{"side": "SELL", "price": 10_000_000.0, "size": 0.3}], 2)
    assert fills(out) == [("BUY", 10_000_000.0, 0.1)]  # 0.2 ahead left, then 0.1 of ours
    assert ex.ledger.position(K) == Decimal("0.1")
    assert (
        fills(ex.feed_executions([{"side": "", "price": 10_000_000.0, "size": 5}], 3)) == []
    )  # itayose print


def test_real_size_changes_keep_our_queue_place_and_snapshot_resyncs() -> None:
    ex = paper()
    aid, _ = send(ex, price=10_000_000)
    ex.feed_board(
        {"mid_price": 10_000_500.0, "bids": [{"price": 10_000_000.0, "size": 1.5}], "asks": []}, False, 1
    )
    assert ex.book.queue_ahead(aid) == 50_000_000  # new real size queued behind us
    ex.feed_board({**SNAP, "bids": [{"price": 9_999_000.0, "size": 1.0}]}, True, 2)
    assert ex.book.size_at(Side.BUY, 10_000_000) == 20_000_000  # only ours left there
    assert ex.book.queue_ahead(aid) == 0


def test_a_snapshot_after_the_market_moved_is_the_crowd_exactly_and_trades_with_no_stale_level() -> None:
    """The market rose past the old asks while we were not listening: the snapshot's bids sit above them.
    Its levels must replace the stale ones, not trade with them (a crowd bid eaten by a stale ask)."""
    moved = {
        "mid_price": 10_003_500.0,
        "bids": [{"price": 10_003_000.0, "size": 0.7}, {"price": 10_001_000.0, "size": 0.2}],
        "asks": [{"price": 10_004_000.0, "size": 0.3}],
    }
    for ours in (False, True):
        ex = paper()
        if ours:  # one of our bids rests far below: the level-by-level path
            send(ex, price=9_990_000)
        out = ex.feed_board(moved, snapshot=True, now=1)
        assert [o for o in out if not isinstance(o, Private) and "executions" in o.channel] == []
        bids = [lv for lv in ex.book.levels(Side.BUY) if lv[0] != 9_990_000]
        assert bids == [(10_003_000, 70_000_000), (10_001_000, 20_000_000)]
        assert ex.book.levels(Side.SELL) == [(10_004_000, 30_000_000)]
        assert ex.ltp == SimConfig().start_mid  # no trade happened


def test_a_snapshot_while_our_order_rests_adds_its_new_levels_and_a_crossing_one_trades_with_us() -> None:
    """New levels come before and after one that crosses our resting ask: we are filled by it, the rest of
    it rests, and every new level is in the book in price order."""
    ex = paper()
    send(ex, side="SELL", price=10_000_600, size=0.1)
    bids = [
        {"price": 9_999_500.0, "size": 0.4},
        {"price": 10_000_700.0, "size": 0.3},  # through our ask
        {"price": 9_998_000.0, "size": 1.2},
    ]
    out = ex.feed_board({"mid_price": 10_000_850.0, "bids": bids, "asks": SNAP["asks"]}, True, 1)
    assert fills(out) == [("SELL", 10_000_600.0, 0.1)]
    assert ex.book.levels(Side.BUY) == [
        (10_000_700, 20_000_000),
        (9_999_500, 40_000_000),
        (9_998_000, 120_000_000),
    ]
    assert ex.book.levels(Side.SELL) == [(10_001_000, 40_000_000), (10_002_000, 200_000_000)]


def test_better_priced_order_fills_on_a_print_through_it_and_a_crossing_level_trades() -> None:
    ex = paper()
    send(ex, price=10_000_400)  # inside the real spread
    assert fills(ex.feed_executions([{"side": "SELL", "price": 10_000_000.0, "size": 0.05}], 1)) == [
        ("BUY", 10_000_400.0, 0.05)
    ]
    send(ex, side="SELL", price=10_000_600, size=0.1)
    out = ex.feed_board(
        {"mid_price": 10_000_500.0, "bids": [{"price": 10_000_700.0, "size": 0.3}], "asks": []}, False, 2
    )
    assert ("SELL", 10_000_600.0, 0.1) in fills(out)  # a real bid moved through our ask


def test_market_order_takes_the_real_best() -> None:
    ex = paper()
    _, out = ex.send_child_order(
        K, {"product_code": "FX_BTC_JPY", "child_order_type": "MARKET", "side": "BUY", "size": 0.5}, 0
    )
    assert fills(out) == [("BUY", 10_001_000.0, 0.4), ("BUY", 10_002_000.0, 0.1)]


@pytest.fixture
async def fake_feed() -> AsyncIterator[
    tuple[str, asyncio.Queue[Any], list[Any], list[web.WebSocketResponse]]
]:
    """A stand-in for bitFlyer's public WebSocket: records requests, sends what the test queues."""
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    requests: list[Any] = []
    sockets: list[web.WebSocketResponse] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.append(ws)

        async def pump() -> None:
            while not ws.closed:
                await ws.send_json(await outbox.get())

        task = asyncio.create_task(pump())
        async for msg in ws:
            requests.append(msg.json())
        task.cancel()
        return ws

    app = web.Application()
    app.router.add_get("/json-rpc", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/json-rpc", outbox, requests, sockets
    finally:
        await runner.cleanup()


async def test_paper_venue_follows_a_real_feed_over_the_wire(fake_feed: Any) -> None:
    url, outbox, requests, sockets = fake_feed
    async with SimVenue(make_cfg(), public_feed_url=url) as venue, aiohttp.ClientSession() as s:
        await eventually(lambda: len(requests) == 3)
        assert {r["params"]["channel"] for r in requests} == {
            "lightning_board_snapshot_FX_BTC_JPY",
            "lightning_board_FX_BTC_JPY",
            "lightning_executions_FX_BTC_JPY",
        }
        outbox.put_nowait(
            {
                "jsonrpc": "2.0",
                "method": "channelMessage",
                "params": {"channel": "lightning_board_snapshot_FX_BTC_JPY", "message": SNAP},
            }
        )
        await eventually(lambda: venue.exchange.book.best_bid() == 10_000_000)
        api = Api(s, venue)
        r = await api.order(price=10_000_000, size=0.2)
        assert r.status == 200
        outbox.put_nowait(
            {
                "jsonrpc": "2.0",
                "method": "channelMessage",
                "params": {
                    "channel": "lightning_executions_FX_BTC_JPY",
                    "message": [
                        {
                            "id": 1,
                            "side": "SELL",
                            "price": 10_000_000.0,
                            "size": 0.6,
                            "exec_date": "x",
                            "buy_child_order_acceptance_id": "a",
                            "sell_child_order_acceptance_id": "b",
                        }
                    ],
                },
            }
        )
        await eventually(lambda: venue.ledger.position(venue.api_key) == Decimal("0.1"))
        await sockets[0].close()  # the feed drops: the venue reconnects
        await eventually(lambda: venue.feed_connects == 2, within=5)
