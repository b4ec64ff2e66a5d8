"""PyBotterSession against the simulated venue: its watcher outlives a failing callback."""

from __future__ import annotations

import pytest

from bot.config.loader import SimConfig
from bot.infra.pyb_session import PyBotterSession
from bot.sim import SimVenue
from tests.conftest import eventually

pytestmark = pytest.mark.integration


async def test_a_failing_disconnect_callback_does_not_end_the_watcher() -> None:
    """Suspected: the session's watcher tasks died silently when a callback raised, leaving connection state
    frozen at "down" (and reconciliation never asked for again)."""
    calls = {"disconnects": 0}

    def on_disconnect(link) -> None:
        calls["disconnects"] += 1
        if calls["disconnects"] == 1:
            raise RuntimeError("a bug in the runner's callback")

    async with SimVenue(SimConfig(seed=2)) as venue:
        session = PyBotterSession(
            rest_base_url=venue.base_url,
            public_ws_url=venue.ws_url,
            private_ws_url=None,
            channels=["lightning_board_FX_BTC_JPY", "child_order_events"],
            api_label="bitflyer",
            api_key=venue.api_key,
            api_secret=venue.api_secret,
            timeout_sec=2,
            on_json=lambda m: None,
            on_connect=lambda link: None,
            on_disconnect=on_disconnect,
            reconnect_backoff=(0.05, 0.5, 1.5, 0.0),
        )
        async with session:
            await session.connect_ws(wait_up_s=10)
            link = session.links[0]
            for n in (2, 3):
                await venue.drop_ws()
                await eventually(lambda n=n: link.connects == n and session.feed_up, 15, f"connect #{n}")
            assert calls["disconnects"] == 2
            assert all(not t.done() for t in session._watchers)
