"""paper mode wiring: market data from a public feed (here a simulated venue standing in for bitFlyer), orders
matched by the local paper venue against that feed. No keys for the public side; nothing reaches the feed's
venue."""

from __future__ import annotations

import pytest

from bot.service import BotService
from bot.sim import SimVenue
from tests.conftest import eventually, make_config

pytestmark = pytest.mark.integration


async def test_paper_mode_trades_on_the_local_venue_fed_by_the_public_feed(tmp_path):
    public = SimVenue(make_config().sim.model_copy(update={"seed": 11, "activity": 4.0}))
    await public.start()
    svc = BotService(
        make_config({"env": "paper", "exchange": {"ws_url": public.ws_url}}), log_dir=tmp_path / "logs"
    )
    try:
        await svc.start()
        runner, paper = svc.runner, svc.venue
        assert paper is not None and paper is not public
        assert runner.endpoints.public_ws_url == public.ws_url
        assert runner.endpoints.rest_base_url == paper.base_url
        await eventually(lambda: not runner.store.stale, 20, "the public feed's snapshot")
        # the bot's book is the public venue's book
        bid, _, ask, _ = runner.store.best()
        assert bid is not None and ask is not None
        key = svc.cfg.sim.api_key
        # orders reach the paper venue (it refuses them until its own first snapshot of the feed has arrived)
        await eventually(lambda: bool(paper.ledger.account(key).orders), 60, "orders at the paper venue")
        assert not public.ledger.account(public.api_key).orders or all(
            o.api_key != key for o in public.ledger.account(public.api_key).orders.values()
        )
        await runner.stop("test")
        await eventually(
            lambda: runner.inventory.position_btc == paper.ledger.position(key), 10, "positions equal"
        )
        assert paper.ledger.open_orders(key) == []
    finally:
        await svc.stop()
        await public.stop()
