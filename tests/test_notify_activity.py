"""The operator's answers: what a kill did (flash, /strategy, the phone through apprise), and "is it trading,
and if not, why" (activity) — the real app and bot against the simulated venue, a real webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.infra.notify import Notifier, split_urls
from tests.conftest import eventually
from tests.conftest_server import asgi_client, build_app, sim_config, wait_until

pytestmark = pytest.mark.integration

D = Decimal
# no strikes (a stall never lasts an hour) and no adverse-move closes: only the test moves the position
QUIET = {"strategy": {"stall_T_ms": 3_600_000, "max_reverse_ticks": 100_000}}
DASHBOARD = {"HX-Request": "true"}


class Receiver:
    """A webhook endpoint on loopback: apprise's json:// posts {"title", "message", "type", …} here."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.delay_s = delay_s

    async def handle(self, request: web.Request) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a slow notification service
        self.messages.append(await request.json())
        self.arrived.set()
        return web.json_response({"ok": True})

    def texts(self) -> list[str]:
        return [f"{m.get('title', '')} {m.get('message', '')}" for m in self.messages]


@contextlib.asynccontextmanager
async def receiver(delay_s: float = 0.0) -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver(delay_s)
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield rec, f"json://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def test_a_kill_from_the_dashboard_says_what_it_flattened_and_the_phone_hears_it_within_5_s(
    tmp_path: Path,
) -> None:
    async with receiver() as (rec, url):
        cfg = sim_config(tmp_path, notify={"urls": [url]}, **QUIET)
        app = build_app(cfg, tmp_path)
        async with asgi_client(app) as client:
            service = app.state.service
            runner, venue, key = service.runner, service.venue, cfg.sim.api_key
            await eventually(lambda: runner.sync.reconciled_at is not None, 30, "the first reconcile")
            venue.hand_order("BUY", "0.001")  # a position the kill must flatten
            await eventually(lambda: runner.inventory.position_btc == D("0.001"), 15, "the position")

            t0 = time.monotonic()
            r = await client.post("/strategy/kill", headers=DASHBOARD)
            assert r.status_code == 200 and r.json()["state"] == "KILLED"
            report = r.json()["report"]
            assert report["who"] == "dashboard"  # the actor, not a port
            assert report["goal"] == "flat" and report["flattened_btc"] == "0.001"
            assert report["closes"] and report["closes"][0].startswith("SELL 0.001 @ ")
            assert report["text"].startswith("kill by dashboard: ")
            assert "flattened +0.001 BTC (SELL 0.001 @ " in report["text"]
            assert venue.ledger.position(key) == 0

            async def told() -> bool:
                return any("KILLED" in t and "flattened +0.001 BTC" in t for t in rec.texts())

            await wait_until(told, 5 - (time.monotonic() - t0), "the kill report at the webhook")
            confirmed = (await client.get("/strategy")).json()
            assert confirmed["report"]["confirmed_at"] is not None
            assert "confirmed at" in confirmed["report"]["text"]
            assert (
                confirmed["activity"]["status"] == "blocked" and confirmed["activity"]["reason"] == "killed"
            )
            assert confirmed["reason"] == "killed by dashboard"
            # the PnL effect the report states is what the close realized at the venue
            assert D(confirmed["report"]["pnl_effect_jpy"]) == venue.ledger.realized_pnl(key)


async def test_a_slow_notification_service_never_delays_a_decision(tmp_path: Path) -> None:
    async with receiver(delay_s=5.0) as (rec, url):
        cfg = sim_config(tmp_path, notify={"urls": [url], "min_interval_s": 0}, **QUIET)
        app = build_app(cfg, tmp_path)
        async with asgi_client(app):
            runner = app.state.service.runner
            await eventually(lambda: runner.metrics.board_messages > 5, 30, "the feed")
            notifier = runner.alerts.notifier
            for i in range(20):  # each send returns at once; the receiver takes 5 s per message
                t = time.perf_counter()
                assert notifier.send(f"k{i}", "t", "m") is True
                assert time.perf_counter() - t < 0.05
            before = runner.metrics.board_messages
            await eventually(lambda: runner.metrics.board_messages > before + 10, 10, "decisions go on")
            assert runner.metrics.loop_lag_max_ms < 500
            assert rec.messages == []  # still being delivered: nothing waited for it


async def test_notifications_are_rate_limited_per_kind_but_a_kill_always_goes() -> None:
    now = [100.0]
    n = Notifier(["json://127.0.0.1:9/never"], min_interval_s=60, clock=lambda: now[0])
    assert n.send("feed_down", "t", "m") is True
    assert n.send("feed_down", "t", "m") is False  # within a minute: dropped and counted
    assert n.send("market", "t", "m") is True  # another kind is not held back by it
    assert n.send("kill", "t", "m", urgent=True) and n.send("kill", "t", "m", urgent=True)
    now[0] += 61
    assert n.send("feed_down", "t", "m") is True
    assert n.dropped == 1
    await n.aclose(0.1)


def test_stst_notify_takes_commas_or_spaces_and_a_url_apprise_cannot_read_is_refused_by_name() -> None:
    assert split_urls(" json://a/1, tgram://b/c\n  mailto://u:p@x ") == [
        "json://a/1",
        "tgram://b/c",
        "mailto://u:p@x",
    ]
    assert split_urls(None) == [] and split_urls("  ") == []
    n = Notifier(["json://127.0.0.1:9/ok", "nonsense://secret-token"])
    assert n.targets == 1 and n.enabled


async def test_activity_says_idle_then_throttled_by_the_rest_reserve_with_when_it_refills(
    tmp_path: Path,
) -> None:
    cfg = sim_config(tmp_path, **QUIET)
    app = build_app(cfg, tmp_path)
    async with asgi_client(app) as client:
        runner = app.state.service.runner
        await eventually(
            lambda: runner.sync.reconciled_at is not None and not runner.sync.needed, 30, "reconcile"
        )
        await eventually(lambda: runner.gate.block_reason is None, 30, "no guard blocking")
        st = (await client.get("/strategy")).json()
        assert st["activity"]["status"] == "idle" and st["activity"]["reason"] == "not_stalled"
        assert "3600000 ms" in st["activity"]["detail"]

        # spend the REST budget down to its reserve, as a burst of reconciles and cancels would
        budget, reserve = runner.rest_budget, runner.decisions.rest_reserve
        budget.force(runner._clock(), budget.available(runner._clock()) - reserve)
        st = (await client.get("/strategy")).json()
        act = st["activity"]
        assert act["status"] == "throttled" and act["reason"] == "rest_budget"
        assert "kept for cancels and kills" in act["detail"] and "entries resume in" in act["detail"]
        rest = next(
            b for b in (await client.get("/state")).json()["health"]["budgets"] if b["name"] == "rest"
        )
        assert rest["reserve"] == reserve and rest["left"] <= reserve and 0 < rest["refills_in_s"] <= 300

        r = await client.post("/strategy/pause")
        assert r.json()["activity"]["status"] == "blocked" and r.json()["activity"]["reason"] == "paused"
