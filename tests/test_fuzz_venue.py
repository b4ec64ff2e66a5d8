"""The venue's answers fuzzed at the bot (hypothesis): garbage, wrong types, missing fields, huge frames,
events out of order and executions delivered twice. The bot skips what it cannot use, stays up, and after a
reconcile its position and realized PnL are the venue's to the unit."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.infra.bitflyer_parse import (
    ParseError,
    parse_child_order_events,
    parse_getchildorders,
    parse_my_executions,
    parse_position_rows,
)
from bot.types.dto import RunState
from tests.conftest import eventually

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=15,
)
garbage = st.sampled_from([None, [], {}, True, 1.5, "x", "NaN", -1, math.inf, "9" * 500])
ROW_KEYS = [
    "id",
    "child_order_id",
    "child_order_acceptance_id",
    "side",
    "price",
    "size",
    "commission",
    "exec_date",
    "child_order_state",
    "outstanding_size",
    "executed_size",
    "cancel_size",
    "product_code",
    "average_price",
    "total_commission",
    "child_order_date",
    "expire_date",
    "child_order_type",
    "event_type",
    "exec_id",
    "event_date",
    "reason",
    "sfd",
]
rows = st.lists(
    st.one_of(
        json_values, st.dictionaries(st.sampled_from(ROW_KEYS), st.one_of(garbage, json_values), max_size=12)
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(answer=st.one_of(json_values, rows))
def test_rest_answers_parse_or_raise_parse_error_never_anything_else(answer: Any) -> None:
    for parse in (parse_getchildorders, parse_my_executions, lambda r: parse_position_rows(r, "FX_BTC_JPY")):
        try:
            parse(answer)
        except ParseError:
            pass
    parse_child_order_events(answer)  # a channel message: bad items are skipped, it never raises


def _frame(channel: Any, message: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "channelMessage", "params": {"channel": channel, "message": message}}


def _mutations(events: list[dict[str, Any]]) -> st.SearchStrategy[list[Any]]:
    """Real events with one field made wrong or dropped: each one fails to parse, is a repeat, or names an
    order it cannot be of (a fresh exec id on a filled or cancelled order: checked over REST)."""

    def mutate(ev: dict[str, Any], key: str, value: Any, drop: bool) -> dict[str, Any]:
        out = dict(ev)
        if drop:
            out.pop(key, None)
        else:
            out[key] = value
        return out

    one = st.builds(
        mutate,
        st.sampled_from(events),
        st.sampled_from(sorted({k for e in events for k in e})),
        garbage,
        st.booleans(),
    )
    return st.lists(one, min_size=1, max_size=4)


pytestmark = pytest.mark.integration


async def test_fuzzed_frames_are_skipped_the_bot_stays_up_and_its_ledger_stays_the_venues(
    make_service,
) -> None:
    svc = await make_service({"runner": {"start_state": "running"}})
    runner, venue, key = svc.runner, svc.venue, svc.cfg.sim.api_key
    recorded: list[list[Any]] = []
    original = runner.feed.on_child_order_events

    def record(message: Any, now: int) -> None:
        if isinstance(message, list):
            recorded.append(message)
        original(message, now)

    runner.feed.on_child_order_events = record  # type: ignore[method-assign]
    await eventually(lambda: runner.metrics.fills >= 2, 120, "the bot's first fills")
    assert await runner.stop("test")  # no new orders while the venue "misbehaves"
    runner.feed.on_child_order_events = original  # type: ignore[method-assign]
    assert runner.state is RunState.STOPPED
    # a fill made just before the stop's cancel may still be on its way: the snapshot waits until the bot has
    # heard every execution the venue made, so nothing real can move it while the fuzz runs
    await eventually(
        lambda: (
            not venue.ledger.open_orders(key) and runner.metrics.fills == len(venue.ledger.executions(key))
        ),
        60,
        "every venue fill heard",
    )
    events = [ev for msg in recorded for ev in msg if isinstance(ev, dict)]
    executions = [ev for ev in events if ev.get("event_type") == "EXECUTION"]
    assert executions
    position, realized, fills = (
        runner.inventory.position_btc,
        runner.inventory.realized_pnl_jpy,
        runner.metrics.fills,
    )

    board = "lightning_board_FX_BTC_JPY"
    frames = st.one_of(
        json_values,  # not even a frame
        st.builds(lambda p: {"jsonrpc": "2.0", "method": "channelMessage", "params": p}, json_values),
        st.builds(_frame, st.one_of(garbage, json_values), json_values),  # a channel that is not a name
        st.builds(
            _frame,
            st.sampled_from(
                [
                    "child_order_events",
                    board,
                    "lightning_board_snapshot_FX_BTC_JPY",
                    "lightning_executions_FX_BTC_JPY",
                    "lightning_ticker_FX_BTC_JPY",
                ]
            ),
            st.one_of(json_values, rows),
        ),
        st.builds(_frame, st.just("child_order_events"), _mutations(events)),
        st.builds(
            _frame, st.just("child_order_events"), st.permutations(events).map(lambda e: e[:8])
        ),  # again
        st.builds(
            _frame,
            st.just(board),
            st.builds(  # a huge diff of nonsense levels
                lambda n, v: {
                    "mid_price": v,
                    "bids": [{"price": v, "size": v}] * n,
                    "asks": [{"price": "x"}] * n,
                },
                st.integers(1, 20_000),
                garbage,
            ),
        ),
    )

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frame=frames)
    def feed(frame: Any) -> None:
        runner.feed.on_json(frame)  # the handler pybotters calls; it must never raise

    feed()
    assert runner.metrics.fills == fills  # nothing counted twice or invented
    assert runner.inventory.position_btc == position and runner.inventory.realized_pnl_jpy == realized

    # still up: the feed reconnects to real frames, a reconcile runs, and the ledger is the venue's
    n = runner.metrics.reconciles
    runner.sync.needed = True
    await eventually(lambda: runner.metrics.reconciles >= n + 2, 60, "two reconciles after the fuzz")
    assert runner.inventory.position_btc == venue.ledger.position(key)
    assert runner.inventory.realized_pnl_jpy == Decimal(venue.ledger.realized_pnl(key))
    assert runner.metrics.position_corrections == 0
    assert svc.runner.state is RunState.STOPPED
