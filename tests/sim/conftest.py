"""Fixtures for the simulated venue's own tests: a venue on a free port and a signing HTTP client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.config.loader import SimConfig
from bot.sim import SimVenue

KEY, SECRET = "TEST_KEY", "TEST_SECRET"


def rest_sign(secret: str, ts: str, method: str, path_qs: str, body: str = "") -> str:
    return hmac.new(secret.encode(), f"{ts}{method}{path_qs}{body}".encode(), hashlib.sha256).hexdigest()


def ws_auth_request(key: str = KEY, secret: str = SECRET, req_id: Any = "auth") -> dict[str, Any]:
    ts = int(time.time() * 1000)
    nonce = secrets.token_hex(16)
    sig = hmac.new(secret.encode(), f"{ts}{nonce}".encode(), hashlib.sha256).hexdigest()
    return {
        "method": "auth",
        "params": {"api_key": key, "timestamp": ts, "nonce": nonce, "signature": sig},
        "id": req_id,
    }


class Api:
    """A minimal bitFlyer client: signs like pybotters (ms timestamp, path?query, JSON body)."""

    def __init__(self, session: aiohttp.ClientSession, venue: SimVenue, key: str = KEY, secret: str = SECRET):
        self.s, self.v, self.key, self.secret = session, venue, key, secret

    def headers(self, method: str, path_qs: str, body: str = "", ts: str | None = None) -> dict[str, str]:
        ts = ts or str(int(time.time() * 1000))
        return {
            "ACCESS-KEY": self.key,
            "ACCESS-TIMESTAMP": ts,
            "ACCESS-SIGN": rest_sign(self.secret, ts, method, path_qs, body),
            "Content-Type": "application/json",
        }

    async def get(self, path_qs: str, signed: bool = True) -> aiohttp.ClientResponse:
        h = self.headers("GET", path_qs) if signed else {}
        return await self.s.get(self.v.base_url + path_qs, headers=h)

    async def post(self, path: str, body: dict[str, Any] | str) -> aiohttp.ClientResponse:
        text = body if isinstance(body, str) else json.dumps(body)
        return await self.s.post(self.v.base_url + path, data=text, headers=self.headers("POST", path, text))

    async def order(self, **kw: Any) -> aiohttp.ClientResponse:
        body = {"product_code": "FX_BTC_JPY", "child_order_type": "LIMIT", "side": "BUY", "size": 0.001, **kw}
        if body["child_order_type"] == "MARKET":
            body.pop("price", None)
        return await self.post("/v1/me/sendchildorder", body)


async def eventually(pred: Callable[[], bool], within: float = 3.0) -> None:
    """Wait for a condition on venue state that no event announces (checked every 10 ms, bounded)."""
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def make_cfg(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {"api_key": KEY, "api_secret": SECRET, "activity": 4.0, "seed": 7}
    return SimConfig.model_validate({**base, **kw})


@pytest.fixture
async def venue() -> AsyncIterator[SimVenue]:
    v = SimVenue(make_cfg())
    await v.start()
    try:
        yield v
    finally:
        await v.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


@pytest.fixture
def api(session: aiohttp.ClientSession, venue: SimVenue) -> Api:
    return Api(session, venue)
