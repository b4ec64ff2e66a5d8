"""Holding costs (funding, leverage points) in the ledger: booked once, in the trading day of their date, seen
by today's PnL, the drawdown and the kill switch, kept across a restart; the collateral-history parser and the
reading of its reason codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from loguru import logger

from bot.account_watch import classify_row
from bot.config.loader import AppConfig, RiskConfig, validate_config
from bot.engine.inventory import InventoryManager
from bot.infra.bitflyer_parse import (
    CollateralHistoryRow,
    ParseError,
    parse_collateral,
    parse_collateral_history,
)
from bot.types.dto import Fill, Reason, Side
from bot.types.exchange import CollateralReason, HoldingCostKind

D = Decimal
T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # 12:00 JST, trading day 20260105


def inv_with(daily: int = -30000, dd: int = -20000) -> InventoryManager:
    return InventoryManager(RiskConfig(daily_pnl_jpy=D(daily), max_dd_jpy=D(dd)))


def buy(price: int, size: str, exec_id: str = "1", at: datetime = T0) -> Fill:
    return Fill(
        exec_id=exec_id,
        child_order_acceptance_id="JRF1",
        side=Side.BUY,
        price=D(price),
        size=D(size),
        commission=D(0),
        exec_date=at,
    )


# ---- the ledger ------------------------------------------------------------------------------------------


def test_a_funding_charge_lowers_realized_and_todays_pnl_by_exactly_its_amount() -> None:
    inv = inv_with()
    inv.apply_fill(buy(10_000_000, "0.01"))
    inv.mark(D(10_000_000))
    r = inv.apply_holding_cost(70_000_001, D("-14"), T0 + timedelta(hours=2))
    assert not r.duplicate and r.today and r.cost_jpy == D(14) and r.trading_day == "20260105"
    assert inv.realized_pnl_jpy == D(-14) and inv.realized_today_jpy == D(-14)
    assert inv.pnl_today_jpy == D(-14)
    assert inv.holding_costs_today_jpy == inv.holding_costs_total_jpy == D(14)
    assert inv.drawdown_jpy == D(-14)  # the peak of the day was 0


def test_a_funding_credit_raises_pnl_and_counts_as_a_negative_cost() -> None:
    inv = inv_with()
    inv.apply_holding_cost(5, D("7"), T0)
    assert inv.realized_pnl_jpy == inv.pnl_today_jpy == D(7)
    assert inv.holding_costs_today_jpy == D(-7)


def test_a_cost_dated_after_midnight_tokyo_rolls_the_day_and_lands_in_the_new_one() -> None:
    inv = inv_with()
    inv.apply_holding_cost(1, D(-3), T0)
    next_day = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # 00:00 JST on the 6th: leverage points
    r = inv.apply_holding_cost(2, D(-5), next_day)
    assert r.trading_day == "20260106" and r.today
    assert inv.trading_day == "20260106"
    assert inv.realized_today_jpy == D(-5) and inv.holding_costs_today_jpy == D(5)
    assert inv.realized_pnl_jpy == D(-8) and inv.holding_costs_total_jpy == D(8)


def test_a_cost_of_a_past_day_learnt_late_changes_the_record_but_not_today() -> None:
    inv = inv_with()
    inv.roll_day(T0)
    yesterday = T0 - timedelta(days=1)
    r = inv.apply_holding_cost(9, D(-40), yesterday)
    assert r.trading_day == "20260104" and not r.today
    assert inv.trading_day == "20260105"  # never rolled back
    assert inv.realized_pnl_jpy == D(-40) and inv.holding_costs_total_jpy == D(40)
    assert inv.pnl_today_jpy == 0 and inv.realized_today_jpy == 0 and inv.holding_costs_today_jpy == 0


def test_the_kill_switch_fires_on_a_cost_that_crosses_the_daily_limit() -> None:
    inv = inv_with(daily=-1000, dd=-5000)
    inv.apply_fill(buy(10_000_000, "0.01"))
    inv.apply_holding_cost(1, D(-999), T0)
    assert inv.kill_check(D(10_000_000)) is None
    inv.apply_holding_cost(2, D(-1), T0)
    assert inv.kill_check(D(10_000_000)) is Reason.KILL_SWITCH
    assert "incl. holding costs -1,000" in inv.kill_detail


def test_the_kill_switch_fires_on_a_cost_that_crosses_the_drawdown_limit() -> None:
    inv = inv_with(daily=-100_000, dd=-500)
    inv.apply_fill(buy(10_000_000, "0.01"))
    inv.mark(D(10_100_000))  # +1,000 open: the peak
    inv.apply_holding_cost(1, D(-500), T0)
    assert inv.kill_check(D(10_100_000)) is Reason.KILL_SWITCH
    assert "drawdown -500" in inv.kill_detail


def test_a_cost_row_is_booked_once_however_often_it_is_read() -> None:
    inv = inv_with()
    assert not inv.apply_holding_cost(3, D(-10), T0).duplicate
    again = inv.apply_holding_cost(3, D(-10), T0)
    assert again.duplicate and again.cost_jpy == 0
    assert inv.realized_pnl_jpy == D(-10)


def test_rows_at_or_below_the_baseline_are_never_booked() -> None:
    inv = inv_with()
    inv.baseline_costs(100)
    assert inv.apply_holding_cost(100, D(-10), T0).duplicate
    assert inv.apply_holding_cost(42, D(-10), T0).duplicate
    assert not inv.apply_holding_cost(101, D(-10), T0).duplicate
    assert inv.realized_pnl_jpy == D(-10) and inv.cost_watermark == 101


def test_holding_costs_and_their_watermark_survive_the_state_file() -> None:
    inv = inv_with()
    inv.apply_fill(buy(10_000_000, "0.01"))
    inv.apply_holding_cost(7, D("-12.5"), T0)
    restored = InventoryManager.from_dict(json.loads(json.dumps(inv.to_dict())), inv.risk)
    assert restored.holding_costs_today_jpy == D("12.5") and restored.holding_costs_total_jpy == D("12.5")
    assert restored.realized_pnl_jpy == D("-12.5") and restored.cost_watermark == 7
    assert restored.apply_holding_cost(7, D("-12.5"), T0).duplicate
    assert restored.realized_pnl_jpy == D("-12.5")


def test_a_state_file_from_before_holding_costs_loads_with_none_and_no_watermark() -> None:
    inv = inv_with()
    inv.apply_fill(buy(10_000_000, "0.01"))
    old = inv.to_dict()
    for key in ("holding_costs_total", "holding_costs_today", "seen_cost_ids", "cost_watermark"):
        old.pop(key)
    restored = InventoryManager.from_dict(old, inv.risk)
    assert restored.holding_costs_total_jpy == 0 and restored.cost_watermark is None


def test_a_float_cost_is_refused_and_changes_nothing() -> None:
    inv = inv_with()
    with pytest.raises(TypeError):
        inv.apply_holding_cost(1, -10.0, T0)  # type: ignore[arg-type]
    assert inv.realized_pnl_jpy == 0 and inv.cost_watermark is None


# ---- the parser ------------------------------------------------------------------------------------------


def row(**kw: Any) -> dict[str, Any]:
    base = {
        "id": 70_000_010,
        "currency_code": "JPY",
        "change": -14.0,
        "amount": 9_999_986.0,
        "reason_code": "CFD_FUNDING",
        "date": "2026-01-05T05:00:00.000",
    }
    base.update(kw)
    return base


def test_collateral_history_rows_parse_to_exact_decimals_in_utc() -> None:
    (r,) = parse_collateral_history([row(change=-0.1)])
    assert r.row_id == 70_000_010 and r.change == D("-0.1") and r.amount == D(9_999_986)
    assert r.date == datetime(2026, 1, 5, 5, 0, tzinfo=UTC) and r.reason_code == "CFD_FUNDING"


@pytest.mark.parametrize(
    "junk",
    [
        "not a row",
        row(id="abc"),
        row(id=True),
        row(id=-1),
        row(change="lots"),
        row(change=float("nan")),
        row(date="yesterday"),
        {k: v for k, v in row().items() if k != "change"},
    ],
)
def test_a_junk_collateral_history_row_is_skipped_with_one_line_and_the_rest_kept(junk: Any) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        rows = parse_collateral_history([row(id=1), junk, row(id=2)])
    finally:
        logger.remove(sink)
    assert [r.row_id for r in rows] == [1, 2]
    assert len(lines) == 1 and "row skipped" in lines[0]


def test_a_collateral_history_that_is_not_a_list_is_an_error_not_an_empty_history() -> None:
    with pytest.raises(ParseError):
        parse_collateral_history({"status": -1})


def test_getcollateral_parses_keep_rate_and_a_margin_call() -> None:
    st = parse_collateral(
        {
            "collateral": 100000.0,
            "open_position_pnl": -715.0,
            "require_collateral": 19857.0,
            "keep_rate": 5.000340708,
            "margin_call_amount": 12345.0,
            "margin_call_due_date": "2026-01-06T06:00:00",
        }
    )
    assert st.keep_rate == D("5.000340708") and st.margin_call_amount == D(12345)
    assert st.margin_call_due_date == "2026-01-06T06:00:00"
    with pytest.raises(ParseError):
        parse_collateral({"collateral": 1.0})  # no keep_rate: unknown, not "fine"


# ---- reason codes ----------------------------------------------------------------------------------------


def cfg(**exchange: Any) -> AppConfig:
    return validate_config({"ws": {"channels": ["x"]}, "exchange": exchange})


def hist(code: str, change: str, currency: str = "JPY") -> CollateralHistoryRow:
    return CollateralHistoryRow(1, currency, D(change), None, code, T0)


def test_the_venues_codes_read_as_funding_leverage_points_trade_and_deposit() -> None:
    c = cfg()
    assert classify_row(hist(CollateralReason.FUNDING, "-1"), c) == (HoldingCostKind.FUNDING, False)
    assert classify_row(hist(CollateralReason.LEVERAGE_POINTS, "-1"), c)[0] is HoldingCostKind.LEVERAGE_POINTS
    assert classify_row(hist(CollateralReason.TRADE_PNL, "-100"), c)[0] is HoldingCostKind.TRADE
    assert classify_row(hist(CollateralReason.DEPOSIT, "500"), c)[0] is HoldingCostKind.IGNORE


def test_an_unknown_code_is_named_and_not_booked_unless_configured() -> None:
    # an unmapped debit may be trading PnL the ledger already holds: booking it would count a loss twice
    assert classify_row(hist("SWAP", "-3"), cfg()) == (HoldingCostKind.IGNORE, True)
    assert classify_row(hist("GIFT", "3"), cfg()) == (HoldingCostKind.IGNORE, True)
    booked = cfg(unknown_collateral_debit="holding_cost", unknown_collateral_credit="holding_cost")
    assert classify_row(hist("SWAP", "-3"), booked)[0] is HoldingCostKind.OTHER_COST
    assert classify_row(hist("GIFT", "3"), booked)[0] is HoldingCostKind.OTHER_COST


def test_a_configured_mapping_overrides_the_built_in_one() -> None:
    c = cfg(collateral_reasons={"SWAP": "leverage_points", CollateralReason.FUNDING.value: "ignore"})
    assert classify_row(hist("SWAP", "-3"), c) == (HoldingCostKind.LEVERAGE_POINTS, False)
    assert classify_row(hist(CollateralReason.FUNDING, "-3"), c)[0] is HoldingCostKind.IGNORE


def test_a_row_in_another_currency_is_never_booked_in_yen() -> None:
    assert classify_row(hist(CollateralReason.FUNDING, "-0.001", "BTC"), cfg())[0] is HoldingCostKind.IGNORE


# ---- the phone -------------------------------------------------------------------------------------------


class _Phone:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, kind: str, title: str, body: str, **_: Any) -> bool:
        self.sent.append((kind, body))
        return True


def test_the_phone_hears_a_margin_alert_when_it_starts_and_when_it_ends_not_while_it_stands() -> None:
    from bot.alerts import Alerts

    phone = _Phone()
    alerts = Alerts(phone, down_after_s=lambda: 60.0)  # type: ignore[arg-type]
    low = "keep rate 1.1800 below 1.5: entries blocked"
    for t, alert in enumerate([None, low, low, low, None, None]):
        alerts.watch(float(t), feed_up=True, block=None, block_detail="", margin_alert=alert)
    assert phone.sent == [("margin", f"{low}."), ("margin", "Margin is back: entries allowed.")]
