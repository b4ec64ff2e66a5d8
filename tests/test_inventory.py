"""InventoryManager: FIFO lots, exact PnL, the trading day, the kill switch, persistence and reconciliation.

Property tests compare it with naive ledgers written here in integers (yen, satoshi), as plainly as possible.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config.loader import RiskConfig
from bot.engine.inventory import FillResult, InventoryManager
from bot.types.dto import Fill, Reason, Side

D = Decimal
SAT = D("0.00000001")
T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # 12:00 JST, trading day 20260105
_ids = itertools.count(1)


def fill(
    side: Side,
    price: str | int,
    size: str,
    *,
    exec_id: str | None = None,
    commission: str = "0",
    at: datetime = T0,
) -> Fill:
    return Fill(
        exec_id=exec_id or f"e{next(_ids)}",
        child_order_acceptance_id="JRF1",
        side=side,
        price=D(price),
        size=D(size),
        commission=D(commission),
        exec_date=at,
    )


def buy(price: str | int, size: str, **kw: Any) -> Fill:
    return fill(Side.BUY, price, size, **kw)


def sell(price: str | int, size: str, **kw: Any) -> Fill:
    return fill(Side.SELL, price, size, **kw)


def risk(daily: int = -30000, dd: int = -20000) -> RiskConfig:
    return RiskConfig(daily_pnl_jpy=D(daily), max_dd_jpy=D(dd))


@pytest.fixture
def inv() -> InventoryManager:
    return InventoryManager(risk())


# ---- worked examples a trader can check by hand ----------------------------------------------------------


def test_round_trip_of_one_hundred_yen_on_a_hundredth_of_a_btc_makes_one_yen(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01"))
    r = inv.apply_fill(sell(10_000_100, "0.01"))
    assert r.realized_pnl_jpy == D(1)
    assert r.realized_cum_jpy == D(1)
    assert r.position_after == 0 and r.avg_price_after is None
    assert inv.position_btc == 0 and inv.lots == () and inv.avg_price is None
    assert inv.state().side == "flat"
    assert inv.realized_pnl_jpy == inv.pnl_today_jpy == D(1)


def test_short_round_trip_profits_when_price_falls(inv: InventoryManager) -> None:
    inv.apply_fill(sell(10_000_000, "0.02"))
    r = inv.apply_fill(buy(9_999_000, "0.02"))
    assert r.realized_pnl_jpy == D(20)


def test_sell_three_times_the_long_flips_to_a_short_at_the_sell_price(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01"), now=100)
    r = inv.apply_fill(sell(10_000_500, "0.03"), now=200)
    assert r.realized_pnl_jpy == D(5)  # the 0.01 long closed 500 yen higher
    assert r.closed_btc == D("0.01") and r.opened_btc == D("0.02") and r.flipped
    assert inv.position_btc == D("-0.02")
    assert inv.avg_price == D(10_000_500)
    assert inv.lots == ((Side.SELL, D(10_000_500), D("0.02")),)
    assert inv.state().side == "short" and inv.state().size == D("0.02")
    assert inv.opened_at == 200  # the short is a new position


def test_partial_closes_realize_piece_by_piece_and_keep_the_entry(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.03"))
    assert inv.apply_fill(sell(10_000_100, "0.01")).realized_pnl_jpy == D(1)
    assert inv.avg_price == D(10_000_000) and inv.position_btc == D("0.02")
    assert inv.apply_fill(sell(9_999_900, "0.005")).realized_pnl_jpy == D("-0.5")
    assert inv.position_btc == D("0.015")
    assert inv.apply_fill(sell(10_000_300, "0.015")).realized_pnl_jpy == D("4.5")
    assert inv.position_btc == 0
    assert inv.realized_pnl_jpy == D(5)


def test_reducing_fill_closes_the_oldest_lot_first_as_the_venue_does(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01"))
    inv.apply_fill(buy(10_001_000, "0.01"))
    assert inv.avg_price == D(10_000_500)  # what the dashboard shows as average entry
    r = inv.apply_fill(sell(10_000_500, "0.01"))
    # FIFO closes the 10,000,000 lot: +5 JPY (an average-cost book would say 0)
    assert r.realized_pnl_jpy == D(5)
    assert inv.lots == ((Side.BUY, D(10_001_000), D("0.01")),)
    assert inv.avg_price == D(10_001_000)


def test_one_fill_can_close_several_lots_and_part_of_the_next(inv: InventoryManager) -> None:
    inv.apply_fill(sell(10_000_000, "0.01"))
    inv.apply_fill(sell(10_000_200, "0.02"))
    inv.apply_fill(sell(10_000_400, "0.01"))
    r = inv.apply_fill(buy(10_000_100, "0.025"))
    # short 0.01 @ 10,000,000 bought back 100 higher: -1; 0.015 of the 10,000,200 lot, 100 lower: +1.5
    assert r.realized_pnl_jpy == D("0.5")
    assert inv.lots == ((Side.SELL, D(10_000_200), D("0.005")), (Side.SELL, D(10_000_400), D("0.01")))
    assert inv.position_btc == D("-0.015")


def test_commission_counts_in_fees_and_reduces_todays_pnl_not_realized(inv: InventoryManager) -> None:
    r = inv.apply_fill(buy(10_000_000, "0.01", commission="3"))
    assert r.commission_jpy == D(3)
    inv.apply_fill(sell(10_000_100, "0.01", commission="2"))
    s = inv.state()
    assert s.realized_pnl_jpy == D(1)
    assert s.fees_today_jpy == D(5)
    assert s.pnl_today_jpy == D(-4)


def test_unrealized_pnl_is_marked_at_mid(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.02"))
    inv.mark(D(10_000_250))
    assert inv.unrealized_pnl_jpy == D(5)
    assert inv.pnl_today_jpy == D(5)
    inv.apply_fill(sell(10_000_000, "0.03"))  # now short 0.01 @ 10,000,000
    inv.mark(D("9999000.5"))  # a mid between two whole-yen bests
    assert inv.unrealized_pnl_jpy == D("9.995")
    assert inv.state().unrealized_pnl_jpy == D("9.995")


def test_unrealized_is_zero_until_a_mid_is_known_and_a_missing_mid_keeps_the_last(
    inv: InventoryManager,
) -> None:
    inv.apply_fill(buy(10_000_000, "0.1"))
    assert inv.unrealized_pnl_jpy == 0
    inv.mark(D(9_990_000))
    assert inv.unrealized_pnl_jpy == D(-1000)
    inv.mark(None)  # no book for a moment: the loss must not vanish
    assert inv.unrealized_pnl_jpy == D(-1000)
    assert inv.mark_price == D(9_990_000)


def test_drawdown_follows_the_peak_of_the_day_through_a_rise_and_fall(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.1"))
    seen = []
    for mid in (10_010_000, 9_995_000, 10_005_000, 10_030_000, 10_020_000):
        inv.mark(D(mid))
        seen.append((inv.pnl_today_jpy, inv.drawdown_jpy, inv.max_drawdown_jpy))
    assert seen == [
        (D(1000), D(0), D(0)),
        (D(-500), D(-1500), D(-1500)),
        (D(500), D(-500), D(-1500)),
        (D(3000), D(0), D(-1500)),
        (D(2000), D(-1000), D(-1500)),
    ]


def test_the_peak_starts_at_zero_so_a_first_loss_is_already_drawdown(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.1"))
    inv.mark(D(9_999_000))
    assert inv.pnl_today_jpy == D(-100)
    assert inv.drawdown_jpy == D(-100) and inv.max_drawdown_jpy == D(-100)


def test_a_realized_loss_is_drawdown_too(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.1"))
    inv.apply_fill(sell(9_998_000, "0.1"))
    assert inv.drawdown_jpy == D(-200) and inv.max_drawdown_jpy == D(-200)


def test_day_rolls_at_midnight_tokyo_resetting_today_but_keeping_the_position(inv: InventoryManager) -> None:
    before = datetime(2026, 1, 5, 14, 59, 59, 999999, tzinfo=UTC)  # 23:59:59.999999 JST
    inv.apply_fill(buy(10_000_000, "0.02", at=before, commission="1"))
    inv.apply_fill(sell(9_990_000, "0.01", at=before))  # realized -100
    inv.mark(D(9_980_000))  # unrealized -200 on the 0.01 left
    assert inv.trading_day == "20260105"
    assert (inv.realized_today_jpy, inv.fees_today_jpy, inv.pnl_today_jpy) == (D(-100), D(1), D(-301))
    assert inv.roll_day(before) is False

    assert inv.roll_day(datetime(2026, 1, 5, 15, 0, tzinfo=UTC)) is True  # 00:00 JST
    s = inv.state()
    assert s.trading_day == "20260106"
    assert (s.realized_today_jpy, s.fees_today_jpy) == (D(0), D(0))
    assert s.position_btc == D("0.01") and s.avg_price == D(10_000_000)
    assert s.realized_pnl_jpy == D(-100)  # the record since start is kept
    assert s.unrealized_pnl_jpy == D(-200)  # the open position's loss carries...
    assert s.pnl_today_jpy == 0  # ...but today opens at 0 (mark-to-market)
    assert s.drawdown_jpy == 0 and s.max_drawdown_jpy == 0
    inv.mark(D(9_975_000))  # today's move: -5,000 on 0.01
    assert inv.pnl_today_jpy == D(-50) and inv.drawdown_jpy == D(-50)


def test_day_roll_does_not_count_a_carried_loss_again() -> None:
    """Defect 8: yesterday's unrealized loss reappeared in today's PnL and drawdown, so a 5,000 JPY move on
    the new day tripped the 20,000 JPY drawdown kill."""
    inv = InventoryManager(RiskConfig(daily_pnl_jpy=D(-30000), max_dd_jpy=D(-20000)))
    inv.apply_fill(buy(10_000_000, "1", at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC)))
    inv.mark(D(9_980_000))  # -20,000 carried (but not yet a kill: day 1 peak 0)
    inv.roll_day(datetime(2026, 1, 5, 15, 0, tzinfo=UTC))  # 00:00 JST
    assert inv.pnl_today_jpy == 0
    assert inv.kill_check(D(9_975_000)) is None  # -5,000 today: no kill
    assert inv.pnl_today_jpy == D(-5000) and inv.drawdown_jpy == D(-5000)
    r = inv.apply_fill(sell(9_975_000, "1", at=datetime(2026, 1, 5, 16, 0, tzinfo=UTC)))
    assert r.realized_pnl_jpy == D(-25000)  # the lot's whole loss is realized...
    assert inv.pnl_today_jpy == D(-5000)  # ...but today's PnL is still today's move only
    restored = InventoryManager.from_dict(inv.to_dict(), inv.risk)
    assert restored.pnl_today_jpy == D(-5000)


def test_yesterdays_peak_does_not_count_against_today(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.1"))
    inv.mark(D(10_020_000))  # +2,000: yesterday's peak
    inv.mark(D(10_010_000))  # +1,000: drawdown -1,000 yesterday
    assert (inv.peak_pnl_today_jpy, inv.max_drawdown_jpy) == (D(2000), D(-1000))
    inv.roll_day(datetime(2026, 1, 5, 15, 0, tzinfo=UTC))
    # today opens at 0 (the carried +1,000 is yesterday's); the peak restarts from 0, so no drawdown yet
    assert inv.pnl_today_jpy == 0 and inv.peak_pnl_today_jpy == 0
    assert inv.drawdown_jpy == 0 and inv.max_drawdown_jpy == 0


def test_a_fill_after_midnight_tokyo_rolls_the_day_before_it_counts(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01", at=datetime(2026, 1, 5, 14, 0, tzinfo=UTC), commission="5"))
    r = inv.apply_fill(sell(10_000_300, "0.01", at=datetime(2026, 1, 5, 15, 0, 1, tzinfo=UTC)))
    assert inv.trading_day == "20260106"
    assert r.realized_today_jpy == D(3) and inv.fees_today_jpy == 0
    assert inv.realized_pnl_jpy == D(3) and inv.fees_total_jpy == D(5)


def test_a_late_fill_from_yesterday_never_rolls_the_day_back(inv: InventoryManager) -> None:
    inv.roll_day(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))
    inv.apply_fill(buy(10_000_000, "0.01", at=datetime(2026, 1, 5, 14, 0, tzinfo=UTC)))
    assert inv.trading_day == "20260106"
    assert inv.position_btc == D("0.01")


def test_bitflyer_dates_without_a_zone_are_read_as_utc(inv: InventoryManager) -> None:
    inv.roll_day(datetime(2026, 1, 5, 15, 0))  # naive, as REST getexecutions writes it
    assert inv.trading_day == "20260106"


def test_trading_day_zone_is_configurable() -> None:
    inv = InventoryManager(RiskConfig(trading_day_tz="UTC"))
    inv.roll_day(datetime(2026, 1, 5, 23, 0, tzinfo=UTC))
    assert inv.trading_day == "20260105"


def test_kill_switch_fires_exactly_at_the_daily_loss_limit() -> None:
    inv = InventoryManager(risk(daily=-30000, dd=-50000))
    inv.apply_fill(buy(10_000_000, "1"))
    assert inv.kill_check(D(9_970_001)) is None  # -29,999
    assert inv.kill_detail == ""
    assert inv.kill_check(D(9_970_000)) is Reason.KILL_SWITCH  # -30,000: at the limit is enough
    assert "-30,000" in inv.kill_detail and "daily limit" in inv.kill_detail


def test_kill_switch_fires_exactly_at_the_drawdown_limit() -> None:
    inv = InventoryManager(risk(daily=-30000, dd=-20000))
    inv.apply_fill(buy(10_000_000, "1"))
    assert inv.kill_check(D(10_010_000)) is None  # +10,000: the peak
    assert inv.kill_check(D(9_990_001)) is None  # -9,999: drawdown -19,999
    assert inv.kill_check(D(9_990_000)) is Reason.KILL_SWITCH  # drawdown -20,000
    assert "drawdown -20,000" in inv.kill_detail and "peak 10,000" in inv.kill_detail
    assert "daily limit" not in inv.kill_detail  # today's PnL (-10,000) is far from -30,000


def test_kill_switch_counts_fees_and_realized_losses() -> None:
    inv = InventoryManager(risk(daily=-100, dd=-1000))
    inv.apply_fill(buy(10_000_000, "0.01", commission="50"))
    inv.apply_fill(sell(9_995_000, "0.01", commission="0"))  # realized -50, fees 50
    assert inv.kill_check(None) is Reason.KILL_SWITCH


def test_update_risk_moves_the_limits_live() -> None:
    inv = InventoryManager(risk(daily=-30000, dd=-20000))
    inv.apply_fill(buy(10_000_000, "1"))
    assert inv.kill_check(D(9_995_000)) is None  # -5,000
    inv.update_risk(risk(daily=-5000, dd=-20000))
    assert inv.kill_check(D(9_995_000)) is Reason.KILL_SWITCH


def test_a_repeated_exec_id_changes_nothing(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01", exec_id="X1"))
    before = inv.to_dict()
    r = inv.apply_fill(buy(10_000_000, "0.01", exec_id="X1"))
    assert r.duplicate and r.realized_pnl_jpy == 0
    assert r.position_after == D("0.01")
    assert inv.to_dict() == before


def test_a_duplicate_is_still_recognised_after_a_restart(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01", exec_id="X1"))
    restored = InventoryManager.from_dict(json.loads(json.dumps(inv.to_dict())), risk())
    assert restored.apply_fill(buy(10_000_000, "0.01", exec_id="X1")).duplicate
    assert restored.position_btc == D("0.01")


def test_float_inputs_are_refused_and_change_nothing(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01"))
    before = inv.to_dict()
    bad = Fill(
        exec_id="F",
        child_order_acceptance_id="",
        side=Side.SELL,
        price=10_000_000.0,  # type: ignore[arg-type]
        size=D("0.01"),
        commission=D(0),
        exec_date=T0,
    )
    with pytest.raises(TypeError, match="Decimal"):
        inv.apply_fill(bad)
    bad_size = Fill(
        exec_id="G",
        child_order_acceptance_id="",
        side=Side.SELL,
        price=D(10_000_000),
        size=0.01,
        commission=D(0),
        exec_date=T0,
    )  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Decimal"):
        inv.apply_fill(bad_size)
    with pytest.raises(TypeError, match="Decimal"):
        inv.mark(10_000_000.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        inv.apply_fill(sell(10_000_000, "0"))
    assert inv.to_dict() == before
    assert not inv.has_seen("F")  # a refused fill can still arrive correctly


def test_every_figure_is_decimal_never_float(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01", commission="1"))
    inv.apply_fill(buy(10_000_001, "0.02"))
    inv.mark(D("10000000.5"))
    s = inv.state()
    for name in (
        "size",
        "position_btc",
        "avg_price",
        "realized_pnl_jpy",
        "realized_today_jpy",
        "unrealized_pnl_jpy",
        "fees_today_jpy",
        "pnl_today_jpy",
        "drawdown_jpy",
        "max_drawdown_jpy",
    ):
        assert type(getattr(s, name)) is Decimal, name
    assert all(type(p) is Decimal and type(q) is Decimal for _, p, q in inv.lots)
    assert "float" not in json.dumps(inv.to_dict())


def test_opened_at_is_set_on_open_kept_while_held_and_cleared_when_flat(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.02"), now=1_000)
    inv.apply_fill(buy(10_000_000, "0.01"), now=2_000)  # adding keeps the opening time
    inv.apply_fill(sell(10_000_000, "0.01"), now=3_000)  # reducing too
    assert inv.opened_at == 1_000
    inv.apply_fill(sell(10_000_000, "0.02"), now=4_000)
    assert inv.opened_at is None and inv.state().opened_at is None
    inv.apply_fill(sell(10_000_000, "0.01"), now=5_000)
    assert inv.opened_at == 5_000


# ---- reconciliation with getpositions ------------------------------------------------------------------


def test_venue_lots_equal_to_ours_change_nothing(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01"))
    inv.apply_fill(buy(10_000_000, "0.02"))  # one order filled in two pieces
    inv.apply_fill(buy(10_000_100, "0.01"))
    # the venue may keep the two same-price pieces as one row: FIFO PnL cannot tell the difference
    assert (
        inv.replace_lots_from_venue(
            [(Side.BUY, D("10000000.0"), D("0.03")), (Side.BUY, D(10_000_100), D("0.01"))]
        )
        is False
    )
    assert len(inv.lots) == 3


def test_venue_lots_that_differ_are_adopted_and_realized_is_kept(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01"), now=1)
    inv.apply_fill(sell(10_000_100, "0.005"), now=2)  # realized +0.5
    inv.mark(D(10_000_000))
    changed = inv.replace_lots_from_venue(
        [(Side.BUY, D(10_000_000), D("0.005")), (Side.BUY, D(9_999_000), D("0.01"))]
    )  # a fill we missed
    assert changed is True
    assert inv.position_btc == D("0.015")
    assert inv.lots == ((Side.BUY, D(10_000_000), D("0.005")), (Side.BUY, D(9_999_000), D("0.01")))
    assert inv.realized_pnl_jpy == D("0.5")
    assert inv.unrealized_pnl_jpy == D(10)  # re-marked with the venue's lots
    assert inv.opened_at == 1  # still the same long


def test_venue_says_flat_or_flipped(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01"), now=1)
    assert inv.replace_lots_from_venue([]) is True
    assert inv.position_btc == 0 and inv.opened_at is None and inv.avg_price is None
    assert inv.replace_lots_from_venue([]) is False
    assert inv.replace_lots_from_venue([(Side.SELL, D(10_000_000), D("0.01"))], now=9) is True
    assert inv.position_btc == D("-0.01") and inv.opened_at == 9


def test_impossible_venue_lots_are_refused_and_change_nothing(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.01"))
    before = inv.to_dict()
    with pytest.raises(ValueError, match="both sides"):
        inv.replace_lots_from_venue([(Side.BUY, D(1), D(1)), (Side.SELL, D(1), D(1))])
    with pytest.raises(ValueError):
        inv.replace_lots_from_venue([(Side.BUY, D(10_000_000), D(0))])
    with pytest.raises(TypeError):
        inv.replace_lots_from_venue([(Side.BUY, 10_000_000.0, D("0.01"))])  # type: ignore[list-item]
    assert inv.to_dict() == before


# ---- persistence -------------------------------------------------------------------------------------------


def test_state_file_round_trip_keeps_today_peak_drawdown_and_day(inv: InventoryManager) -> None:
    inv.apply_fill(buy(10_000_000, "0.1", commission="2"), now=77)
    inv.mark(D(10_010_000))
    inv.mark(D(9_995_000))
    inv.kill_check(None)
    restored = InventoryManager.from_dict(json.loads(json.dumps(inv.to_dict())), risk())
    assert restored.state() == inv.state()
    assert restored.to_dict() == inv.to_dict()
    assert restored.peak_pnl_today_jpy == D(998) and restored.max_drawdown_jpy == D(-1500)


@pytest.mark.parametrize(
    "corrupt",
    [
        {"lots": [["abc", "0.1"]]},
        {"lots": [["10000000", "-1"]]},
        {"side": "UP"},
        {"side": None},  # lots without a side
        {"trading_day": "2026-01-05"},
        {"version": 99},
        {"peak": None},
    ],
)
def test_a_corrupt_state_file_is_refused_with_a_clear_error(inv: InventoryManager, corrupt: dict) -> None:
    inv.apply_fill(buy(10_000_000, "0.1"))
    with pytest.raises(ValueError):
        InventoryManager.from_dict({**inv.to_dict(), **corrupt}, risk())


def test_seen_exec_ids_are_bounded() -> None:
    inv = InventoryManager(risk(), seen_exec_ids_cap=3)
    for i in range(5):
        inv.apply_fill(buy(10_000_000, "0.001", exec_id=f"x{i}"))
    assert [inv.has_seen(f"x{i}") for i in range(5)] == [False, False, True, True, True]
    assert len(inv.to_dict()["seen_exec_ids"]) == 3


# ---- properties against naive ledgers ----------------------------------------------------------------------


def naive_fifo(fills: list[tuple[int, int, int]]) -> tuple[list[list[int]], int]:
    """Per-fill lots in integers: (sign, yen, satoshi) → open lots [sign, yen, sat] and realized in
    yen·sat."""
    lots: list[list[int]] = []
    realized = 0
    for sign, price, sats in fills:
        while sats > 0 and lots and lots[0][0] != sign:
            take = min(lots[0][2], sats)
            realized += (price - lots[0][1]) * take * lots[0][0]
            lots[0][2] -= take
            sats -= take
            if lots[0][2] == 0:
                lots.pop(0)
        if sats > 0:
            lots.append([sign, price, sats])
    return lots, realized


def naive_satoshi_ledger(fills: list[tuple[int, int, int]]) -> tuple[list[tuple[int, int]], int]:
    """One entry per satoshi: each satoshi either closes the oldest opposite satoshi or opens one."""
    book: deque[tuple[int, int]] = deque()
    realized = 0
    for sign, price, sats in fills:
        for _ in range(sats):
            if book and book[0][0] != sign:
                old_sign, old_price = book.popleft()
                realized += (price - old_price) * old_sign
            else:
                book.append((sign, price))
    return list(book), realized


prices = st.integers(min_value=9_990_000, max_value=10_010_000)
sizes_sat = st.one_of(
    st.integers(min_value=1, max_value=5_000_000),  # any size on the 1e-8 grid
    st.integers(min_value=1, max_value=50).map(lambda n: n * 100_000),  # multiples of the 0.001 minimum
)
raw_fills = st.lists(st.tuples(st.sampled_from([1, -1]), prices, sizes_sat), min_size=1, max_size=40)


def to_fill(i: int, sign: int, price: int, sats: int, commission: int = 0, at: datetime = T0) -> Fill:
    return Fill(
        exec_id=f"p{i}",
        child_order_acceptance_id="",
        side=Side.BUY if sign > 0 else Side.SELL,
        price=D(price),
        size=D(sats) * SAT,
        commission=D(commission),
        exec_date=at,
    )


def check_invariants(inv: InventoryManager, applied: list[tuple[int, int, int]]) -> None:
    assert inv.position_btc == sum(D(sign * sats) for sign, _, sats in applied) * SAT
    lots = inv.lots
    assert all(size > 0 for _, _, size in lots)
    assert len({side for side, _, _ in lots}) <= 1
    if lots:
        lo, hi = min(p for _, p, _ in lots), max(p for _, p, _ in lots)
        assert inv.avg_price is not None and lo <= inv.avg_price <= hi
    else:
        assert inv.avg_price is None and inv.position_btc == 0


@settings(max_examples=300, deadline=None)
@given(raw_fills, st.integers(min_value=9_990_000, max_value=10_010_000))
def test_fifo_matches_a_naive_integer_ledger_exactly(fills: list[tuple[int, int, int]], mid: int) -> None:
    inv = InventoryManager(risk())
    for i, (sign, price, sats) in enumerate(fills):
        inv.apply_fill(to_fill(i, sign, price, sats))
        check_invariants(inv, fills[: i + 1])
    lots, realized = naive_fifo(fills)
    assert inv.realized_pnl_jpy == D(realized) * SAT
    assert [(side.sign, p, q) for side, p, q in inv.lots] == [(s, D(p), D(q) * SAT) for s, p, q in lots]
    # whatever the lot order, realized + unrealized at any mark is the fills' cash flow marked at that price
    inv.mark(D(mid))
    cash_flow = sum(D(sign * sats) * (mid - price) for sign, price, sats in fills) * SAT
    assert inv.realized_pnl_jpy + inv.unrealized_pnl_jpy == cash_flow


small_fills = st.lists(
    st.tuples(st.sampled_from([1, -1]), prices, st.integers(min_value=1, max_value=300)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(small_fills)
def test_fifo_matches_a_satoshi_by_satoshi_ledger(fills: list[tuple[int, int, int]]) -> None:
    inv = InventoryManager(risk())
    for i, (sign, price, sats) in enumerate(fills):
        inv.apply_fill(to_fill(i, sign, price, sats))
    book, realized = naive_satoshi_ledger(fills)
    assert inv.realized_pnl_jpy == D(realized) * SAT
    assert inv.position_btc == D(sum(sign for sign, _ in book)) * SAT
    expanded = [(side.sign, p) for side, p, q in inv.lots for _ in range(int(q / SAT))]
    assert expanded == [(s, D(p)) for s, p in book]


# a session: fills (some with commission, some the next day), marks, and a duplicate now and then
ops = st.lists(
    st.one_of(
        st.tuples(st.just("fill"), st.sampled_from([1, -1]), prices, sizes_sat, st.integers(0, 3)),
        st.tuples(st.just("mark"), prices),
        st.tuples(st.just("next_day")),
        st.tuples(st.just("dup")),
    ),
    min_size=1,
    max_size=30,
)


def run_ops(inv: InventoryManager, seq: list[tuple], start: int = 0) -> list[FillResult]:
    """Apply ops deterministically; the i-th op's fill id and time depend only on i (replayable)."""
    out = []
    day = T0 + timedelta(days=sum(1 for op in seq[:start] if op[0] == "next_day"))
    for i, op in enumerate(seq[start:], start):
        if op[0] == "fill":
            _, sign, price, sats, fee = op
            out.append(inv.apply_fill(to_fill(i, sign, price, sats, fee, day), now=i))
        elif op[0] == "mark":
            inv.kill_check(D(op[1]))
        elif op[0] == "next_day":
            day += timedelta(days=1)
            inv.roll_day(day)
        else:
            seen = [j for j in range(i) if seq[j][0] == "fill"]
            if seen:
                _, sign, price, sats, fee = seq[seen[-1]]
                r = inv.apply_fill(to_fill(seen[-1], sign, price, sats, fee, day), now=i)
                assert r.duplicate
                out.append(r)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.data())
def test_state_file_round_trip_at_any_point_is_indistinguishable(
    seq: list[tuple], data: st.DataObject
) -> None:
    k = data.draw(st.integers(min_value=0, max_value=len(seq)), label="restart after op")
    inv = InventoryManager(risk())
    run_ops(inv, seq[:k])
    restored = InventoryManager.from_dict(json.loads(json.dumps(inv.to_dict())), risk())
    assert restored.state() == inv.state()
    assert restored.lots == inv.lots and restored.kill_detail == inv.kill_detail
    # and the two go on to behave identically: same results, same figures, same day handling
    assert run_ops(restored, seq, k) == run_ops(inv, seq, k)
    assert restored.state() == inv.state()
    assert restored.to_dict() == inv.to_dict()
    fills_applied = [(op[1], op[2], op[3]) for op in seq if op[0] == "fill"]
    check_invariants(inv, fills_applied)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_drawdown_is_never_positive_and_max_drawdown_is_its_minimum(seq: list[tuple]) -> None:
    inv = InventoryManager(risk(daily=-(10**9), dd=-(10**9)))
    lowest = D(0)
    day = inv.trading_day
    for i in range(len(seq)):
        run_ops(inv, seq[: i + 1], i)
        if inv.trading_day != day:
            if day:  # a new day: the peak restarts from 0
                assert inv.peak_pnl_today_jpy == max(D(0), inv.pnl_today_jpy)
            day, lowest = inv.trading_day, D(0)
        assert inv.drawdown_jpy <= 0
        assert inv.peak_pnl_today_jpy >= max(D(0), inv.pnl_today_jpy)
        assert inv.drawdown_jpy == inv.pnl_today_jpy - inv.peak_pnl_today_jpy
        lowest = min(lowest, inv.drawdown_jpy)
        assert inv.max_drawdown_jpy == lowest
        s = inv.state()
        assert s.pnl_today_jpy == (
            s.realized_today_jpy + s.unrealized_pnl_jpy - inv.day_open_unrealized_jpy - s.fees_today_jpy
        )


@pytest.mark.parametrize("tz", ["Asia/Tokyo", "Europe/London", "America/Santiago", "UTC"])
def test_the_day_cannot_change_before_the_check_instant_and_has_changed_an_hour_after(tz: str) -> None:
    """A replay calls roll_day only from `next_day_check_at` on (not once per simulated second)."""
    inv = InventoryManager(RiskConfig(daily_pnl_jpy=D(-1), max_dd_jpy=D(-1), trading_day_tz=tz))
    t = datetime(2026, 3, 27, 13, 7, tzinfo=UTC)
    for _ in range(24 * 20):  # every hour of twenty days, across the spring DST changes
        check = inv.next_day_check_at(t)  # in the day's last hour it may be behind t: roll_day now
        if check > t:
            assert inv.trading_day_of(check - timedelta(microseconds=1)) == inv.trading_day_of(t)
        assert inv.trading_day_of(check + timedelta(hours=1)) > inv.trading_day_of(t)
        t += timedelta(hours=1)
