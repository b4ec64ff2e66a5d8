"""The venue's REST API over real HTTP: shapes, signature checks, bitFlyer's quirks, rate limits, faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from bot.sim import SimVenue
from tests.sim.conftest import KEY, Api, make_cfg

FX = "?product_code=FX_BTC_JPY"


async def body(resp: aiohttp.ClientResponse) -> Any:
    return await resp.json(content_type=None)


async def test_public_endpoints_have_bitflyer_shapes(api: Api) -> None:
    markets = await body(await api.get("/v1/markets", signed=False))
    assert {"product_code": "FX_BTC_JPY", "market_type": "FX"} in markets
    r = await api.get("/v1/getboard" + FX, signed=False)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    assert {"X-RateLimit-Period", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(r.headers)
    board = await body(r)
    bids, asks = [b["price"] for b in board["bids"]], [a["price"] for a in board["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    assert len(bids) > 300 and board["mid_price"] == (bids[0] + asks[0]) / 2  # the whole book
    assert '"price":' + str(float(int(bids[0]))) in await r.text()  # whole yen written as 123.0
    ticker = await body(await api.get("/v1/getticker" + FX, signed=False))
    assert {
        "product_code",
        "state",
        "timestamp",
        "tick_id",
        "best_bid",
        "best_ask",
        "best_bid_size",
        "best_ask_size",
        "total_bid_depth",
        "total_ask_depth",
        "ltp",
        "volume",
        "volume_by_product",
    } <= set(ticker)
    assert ticker["timestamp"].endswith("Z") and len(ticker["timestamp"]) == 28
    assert await body(await api.get("/v1/gethealth" + FX, signed=False)) == {"status": "NORMAL"}
    assert await body(await api.get("/v1/getboardstate" + FX, signed=False)) == {
        "health": "NORMAL",
        "state": "RUNNING",
    }
    r = await api.get("/v1/getboard?product_code=NOPE", signed=False)
    assert r.status == 400 and (await body(r))["status"] == -100


async def test_unknown_path_is_a_plain_404(api: Api) -> None:
    r = await api.get("/v1/nosuchthing", signed=False)
    assert r.status == 404
    with pytest.raises(ValueError):
        await r.json(content_type=None)


async def test_signed_requests_pass_with_ms_or_seconds_timestamps(
    api: Api, session: aiohttp.ClientSession, venue: SimVenue
) -> None:
    assert (await api.get("/v1/me/getcollateral")).status == 200
    path = "/v1/me/getpositions" + FX
    h = api.headers("GET", path, ts=str(int(time.time())))  # seconds, as bitFlyer's docs show
    assert (await session.get(venue.base_url + path, headers=h)).status == 200
    h = api.headers("GET", path, ts=f"{time.time():.3f}")
    assert (await session.get(venue.base_url + path, headers=h)).status == 200


@pytest.mark.parametrize(
    "how", ["bad_sign", "missing", "unknown_key", "old_timestamp", "tampered_body", "tampered_query"]
)
async def test_bad_signatures_get_401_minus_500(
    how: str, session: aiohttp.ClientSession, venue: SimVenue
) -> None:
    api = Api(session, venue)
    path, text = (
        "/v1/me/sendchildorder",
        '{"product_code":"FX_BTC_JPY","child_order_type":"MARKET","side":"BUY","size":0.001}',
    )
    h = api.headers("POST", path, text)
    url = venue.base_url + path
    if how == "bad_sign":
        h["ACCESS-SIGN"] = "0" * 64
    elif how == "missing":
        del h["ACCESS-SIGN"]
    elif how == "unknown_key":
        h = Api(session, venue, key="NOPE").headers("POST", path, text)
    elif how == "old_timestamp":
        h = api.headers("POST", path, text, ts=str(int((time.time() - 3600) * 1000)))
    elif how == "tampered_body":
        text = text.replace("0.001", "0.002")
    elif how == "tampered_query":
        url += "?x=1"
    r = await session.post(url, data=text, headers=h)
    assert r.status == 401
    b = await body(r)
    assert b["status"] == -500 and b["data"] is None and b["error_message"]
    assert venue.ledger.executions(KEY) == []  # nothing happened


async def test_order_life_cycle_over_http(api: Api, venue: SimVenue) -> None:
    bid = venue.exchange.book.best_bid()
    assert bid is not None
    r = await api.order(price=bid - 1000)
    assert r.status == 200 and {"X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(r.headers)
    aid = (await body(r))["child_order_acceptance_id"]
    assert aid.startswith("JRF") and len(aid) == len("JRF20150707-050237-639234")
    rows = await body(await api.get("/v1/me/getchildorders" + FX + "&child_order_state=ACTIVE"))
    assert [(x["id"], x["child_order_acceptance_id"]) for x in rows] == [(0, aid)]
    r = await api.post(
        "/v1/me/cancelchildorder", {"product_code": "FX_BTC_JPY", "child_order_acceptance_id": aid}
    )
    assert r.status == 200 and await r.read() == b""  # bitFlyer answers with an empty body
    assert await body(await api.get("/v1/me/getchildorders" + FX)) == []  # cancelled unfilled: not listed
    r = await api.order(child_order_type="MARKET", side="SELL", size=0.01)
    assert r.status == 200
    execs = await body(await api.get("/v1/me/getexecutions" + FX))
    assert execs and set(execs[0]) == {
        "id",
        "child_order_id",
        "side",
        "price",
        "size",
        "commission",
        "exec_date",
        "child_order_acceptance_id",
    }
    pos = await body(await api.get("/v1/me/getpositions" + FX))
    assert sum(p["size"] for p in pos) == pytest.approx(0.01) and {p["side"] for p in pos} == {"SELL"}
    coll = await body(await api.get("/v1/me/getcollateral"))
    assert coll["collateral"] == 10_000_000 and coll["require_collateral"] > 0
    r = await api.post("/v1/me/cancelallchildorders", {"product_code": "FX_BTC_JPY"})
    assert r.status == 200 and await r.read() == b""


async def test_order_validation_over_http(api: Api) -> None:
    r = await api.order(price=13_000_000, size=0.0001)
    assert r.status == 400 and (await body(r))["status"] == -110
    r = await api.order(price=0)
    assert r.status == 400 and (await body(r))["status"] == -106
    r = await api.post("/v1/me/sendchildorder", "{not json")
    assert r.status == 400 and (await body(r))["data"] is None


async def test_rate_limit_headers_and_trip_answers_429_status_minus_1(api: Api, venue: SimVenue) -> None:
    r = await api.get("/v1/me/getcollateral")
    assert int(r.headers["X-RateLimit-Remaining"]) == 499 and r.headers["X-RateLimit-Period"] == "300"
    assert int(r.headers["X-RateLimit-Reset"]) >= time.time()
    r = await api.post("/_sim/rate_limit_trip", {})
    r = await api.get("/v1/me/getcollateral")
    assert r.status == 429 and (await body(r))["status"] == -1 and r.headers["X-RateLimit-Remaining"] == "0"
    # clearing the faults lifts the trip; the window still holds the requests that really counted
    assert (await api.post("/_sim/clear_faults", {})).status == 200
    r = await api.get("/v1/me/getcollateral")
    assert r.status == 200 and int(r.headers["X-RateLimit-Remaining"]) == 498


async def test_small_orders_limited_to_100_a_minute(session: aiohttp.ClientSession) -> None:
    async with SimVenue(make_cfg(activity=1)) as venue:
        api = Api(session, venue)
        bid = venue.exchange.book.best_bid()
        assert bid is not None
        statuses = [(await api.order(price=bid - 50_000)).status for _ in range(101)]
        assert statuses[:100] == [200] * 100 and statuses[100] == 429
        assert len(venue.ledger.open_orders(KEY)) == 100


@pytest.mark.parametrize(
    ("error", "http", "status"),
    [("-208", 500, -208), ("-205", 400, -205), ("-204", 400, -204), ("500", 500, -1)],
)
async def test_fail_next_call_with_a_bitflyer_error_then_recover(
    api: Api, venue: SimVenue, error: str, http: int, status: int
) -> None:
    r = await api.post("/_sim/fail", {"endpoint": "sendchildorder", "count": 1, "error": error})
    assert r.status == 200
    r = await api.order(child_order_type="MARKET")
    assert r.status == http and (await body(r))["status"] == status
    assert venue.ledger.executions(KEY) == []
    assert (await api.order(child_order_type="MARKET")).status == 200


async def test_html_502_and_fault_at_a_rate(api: Api, venue: SimVenue) -> None:
    venue.fail("getchildorders", "html502", count=None, rate=1.0)
    for _ in range(3):
        r = await api.get("/v1/me/getchildorders" + FX)
        assert r.status == 502 and r.headers["Content-Type"].startswith("text/html")
    venue.clear_faults()
    assert (await api.get("/v1/me/getchildorders" + FX)).status == 200


async def test_timeout_after_processing_leaves_an_order_the_caller_never_heard_of(
    api: Api, venue: SimVenue, session: aiohttp.ClientSession
) -> None:
    venue.fail("sendchildorder", "timeout")
    venue.fail("sendchildorder", "timeout_before")
    bid = venue.exchange.book.best_bid()
    assert bid is not None
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(api.order(price=bid - 10_000), 0.5)
    assert len(venue.ledger.open_orders(KEY)) == 1  # "timeout": done; "timeout_before": not


async def test_latency_delays_answers(api: Api, venue: SimVenue) -> None:
    venue.set_latency(200)
    t0 = time.perf_counter()
    await api.get("/v1/gethealth", signed=False)
    assert time.perf_counter() - t0 >= 0.2
    venue.set_latency(0)


async def test_maintenance_window_via_admin_api(api: Api, venue: SimVenue) -> None:
    r = await api.post("/_sim/maintenance", {"seconds": 0.4, "preopen_seconds": 0.4})
    assert (await body(r))["state"] == "CLOSED"
    assert await body(await api.get("/v1/getboardstate" + FX, signed=False)) == {
        "health": "NORMAL",
        "state": "CLOSED",
    }
    r = await api.order(child_order_type="MARKET")
    assert r.status == 400 and (await body(r)) == {
        "status": -204,
        "error_message": "Market state is closed.",
        "data": None,
    }
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not seen or seen[-1] != "RUNNING"):
        state = (await body(await api.get("/v1/getboardstate" + FX, signed=False)))["state"]
        if not seen or seen[-1] != state:
            seen.append(state)
        await asyncio.sleep(0.05)
    assert seen == ["CLOSED", "PREOPEN", "RUNNING"]
    assert (await api.order(child_order_type="MARKET")).status == 200


async def test_health_and_ledger_admin(api: Api, venue: SimVenue) -> None:
    assert (await api.post("/_sim/health", {"status": "STOP"})).status == 200
    assert await body(await api.get("/v1/gethealth", signed=False)) == {"status": "STOP"}
    assert (await api.order(child_order_type="MARKET")).status == 400
    assert (await api.post("/_sim/health", {"status": "BROKEN"})).status == 400
    venue.set_health("NORMAL")
    await api.order(child_order_type="MARKET", size=0.002)
    rep = await body(await api.get(f"/_sim/ledger?api_key={KEY}", signed=False))
    assert rep["position"] == "0.002" and rep["executions"] >= 1 and rep["open_orders"] == []
    assert (await api.get("/_sim/ledger?api_key=nobody", signed=False)).status == 400
    assert (await api.post("/_sim/fail", {"endpoint": "x", "error": "bogus"})).status == 400
    assert (await api.post("/_sim/silence", "[1]")).status == 400
