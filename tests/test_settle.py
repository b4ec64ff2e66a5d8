"""The kill/stop supervisor's pure parts: the next flatten order never below the venue's minimum size."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.settle import SettleGoal, SettleStatus, flatten_order
from bot.types.dto import Side

D = Decimal
MIN = D("0.001")


@pytest.mark.parametrize(
    ("net", "order"),
    [
        (D("0.003"), (Side.SELL, D("0.003"))),
        (D("-0.001"), (Side.BUY, D("0.001"))),
        (D("0.0004"), (Side.SELL, D("0.0014"))),  # dust: through the other side...
        (D("-0.0014"), (Side.BUY, D("0.0014"))),  # ...then exactly flat
        (D(0), None),
    ],
)
def test_flatten_steps(net: Decimal, order: tuple[Side, Decimal] | None) -> None:
    assert flatten_order(net, MIN) == order


@given(st.integers(min_value=-(10**7), max_value=10**7).filter(bool))
def test_any_position_is_flat_in_at_most_two_orders_none_below_min_size(sat: int) -> None:
    net = D(sat) / D(10**8)
    for _ in range(2):
        step = flatten_order(net, MIN)
        if step is None:
            break
        side, size = step
        assert size >= MIN
        net += side.sign * size
    assert net == 0


def test_status_says_what_the_goal_is_doing() -> None:
    from datetime import UTC, datetime

    working = SettleStatus(SettleGoal.FLAT, True, 3, "market_closed -204", None, 1, ())
    assert working.describe() == "flattening (attempt 3, last error market_closed -204)"
    done = SettleStatus(
        SettleGoal.FLAT, False, 4, None, datetime(2026, 12, 3, 1, 2, 3, tzinfo=UTC), 1, ("SELL 0.001",)
    )
    assert done.describe() == "flat and no orders, confirmed at 2026-12-03T01:02:03+00:00"
