"""PyBotterSession against the simulated venue: its watcher outlives a failing callback."""

from __future__ import annotations

import pytest
from loguru import logger

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


async def test_a_frame_that_is_not_json_is_skipped_with_one_line_and_the_feed_goes_on() -> None:
    """Frames are parsed by the session (orjson), not by pybotters: a garbled frame, or one with a NaN the
    standard library would have let through, is one warning; the frames after it still arrive."""
    seen: list[object] = []
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    try:
        async with SimVenue(SimConfig(seed=3)) as venue:
            session = PyBotterSession(
                rest_base_url=venue.base_url,
                public_ws_url=venue.ws_url,
                private_ws_url=None,
                channels=["lightning_board_FX_BTC_JPY"],
                api_label="bitflyer",
                api_key=venue.api_key,
                api_secret=venue.api_secret,
                timeout_sec=2,
                on_json=seen.append,
                on_connect=lambda link: None,
                on_disconnect=lambda link: None,
            )
            async with session:
                await session.connect_ws(wait_up_s=10)
                venue.freeze_market()  # only the frames this test sends
                assert venue.send_raw('{"jsonrpc": "2.0", "method": "channelMessage", "params": {') == 1
                assert venue.send_raw('{"method": "channelMessage", "params": {"x": NaN}}') == 1
                marker = {"jsonrpc": "2.0", "method": "channelMessage", "params": {"channel": "marker"}}
                venue.send_raw(
                    '{"jsonrpc": "2.0", "method": "channelMessage", "params": {"channel": "marker"}}'
                )
                await eventually(lambda: marker in seen, 10, "the frame after the bad ones")
    finally:
        logger.remove(sink)
    assert [m for m in seen if isinstance(m, dict) and "x" in m.get("params", {})] == []
    assert len([ln for ln in lines if "not JSON" in ln]) == 2
