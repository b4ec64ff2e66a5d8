"""The venue's holding costs and collateral: funding and leverage points charged to open positions (on the
wall clock's schedule and on demand), each a getcollateralhistory row; collateral and margin calls set by the
admin API, reflected in getcollateral's keep_rate."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.config.loader import SimConfig
from bot.sim.exchange import Exchange
from bot.types.exchange import CollateralReason
from tests.sim.conftest import KEY, Api

SEC = 1_000_000_000
K = "K"
D = Decimal


def exchange(wall: datetime = datetime(2026, 1, 5, 4, 59, 50, tzinfo=UTC), **kw: Any) -> Exchange:
    ex = Exchange(SimConfig.model_validate({"seed": 3, **kw}), 0, int(wall.timestamp()) * SEC)
    ex.add_account(K)
    return ex


def market(ex: Exchange, side: str, size: float = 0.01) -> None:
    body = {"product_code": "FX_BTC_JPY", "child_order_type": "MARKET", "side": side, "size": size}
    ex.send_child_order(K, body, 0)


def test_funding_is_debited_from_a_long_as_a_history_row_and_counts_in_realized() -> None:
    ex = exchange()
    market(ex, "BUY")
    before = ex.ledger.collateral(K)
    trading = ex.ledger.realized_pnl(K)
    ((key, row),) = ex.charge("funding", 0, rate=D("0.001"))
    expected = -(ex.mid() * D("0.01") * D("0.001")).quantize(D(1))
    assert key == K and row.change == expected < 0 and row.reason_code == CollateralReason.FUNDING
    assert ex.ledger.collateral(K) == before + expected == row.amount
    assert ex.ledger.holding_costs(K) == -expected
    assert ex.ledger.realized_pnl(K) == trading + expected
    rep = ex.ledger_report(K)
    assert D(rep["holding_costs"]) == -expected and rep["holding_cost_rows"] == 1
    assert D(rep["realized_pnl"]) == D(rep["trading_pnl"]) - D(rep["holding_costs"])


def test_a_short_receives_positive_funding_and_pays_leverage_points() -> None:
    ex = exchange()
    market(ex, "SELL")
    ((_, funding),) = ex.charge("funding", 0, rate=D("0.001"))
    ((_, points),) = ex.charge("leverage_points", 0, rate=D("0.001"))
    assert funding.change > 0 and points.change < 0 and points.reason_code == CollateralReason.LEVERAGE_POINTS


def test_a_flat_account_is_never_charged() -> None:
    ex = exchange()
    assert ex.charge("funding", 0) == [] and ex.ledger.collateral_history(K) == []


def test_funding_is_charged_at_the_settlement_hour_on_the_venues_wall_clock() -> None:
    ex = exchange(funding_rate="0.001")  # wall clock 04:59:50 UTC: funding at 05:00
    market(ex, "BUY")
    ex.advance(9 * SEC)
    assert not any(r.reason_code == CollateralReason.FUNDING for r in ex.ledger.collateral_history(K))
    ex.advance(11 * SEC)
    funding = [r for r in ex.ledger.collateral_history(K) if r.reason_code == CollateralReason.FUNDING]
    assert len(funding) == 1
    assert datetime.fromtimestamp(funding[0].wall_ns / SEC, tz=UTC) == datetime(2026, 1, 5, 5, 0, tzinfo=UTC)
    ex.advance(12 * SEC)  # once per settlement
    assert len([r for r in ex.ledger.collateral_history(K) if r.reason_code == CollateralReason.FUNDING]) == 1


def test_getcollateralhistory_pages_newest_first_in_bitflyers_shape() -> None:
    ex = exchange()
    market(ex, "BUY")
    rows = [ex.charge("leverage_points", 0, rate=D("0.01"))[0][1] for _ in range(3)]
    page = ex.collateral_history(K, {"count": "2"})
    assert [r["id"] for r in page] == [rows[2].row_id, rows[1].row_id]
    assert set(page[0]) == {"id", "currency_code", "change", "amount", "reason_code", "date"}
    assert page[0]["currency_code"] == "JPY" and page[0]["change"] == float(rows[2].change)
    older = ex.collateral_history(K, {"count": "2", "before": str(rows[1].row_id)})
    assert [r["id"] for r in older] == [rows[0].row_id]


async def test_admin_charge_and_collateral_over_http(api: Api) -> None:
    assert (await api.order(child_order_type="MARKET", size=0.01)).status == 200
    r = await api.post("/_sim/charge", {"kind": "funding", "rate": "0.001"})
    charged = (await r.json())["charged"]
    assert r.status == 200 and len(charged) == 1 and D(charged[0]["change"]) < 0
    hist = await (await api.get("/v1/me/getcollateralhistory?count=10")).json()
    assert any(h["id"] == charged[0]["id"] and h["reason_code"] == "CFD_FUNDING" for h in hist)
    rep = await (await api.get(f"/_sim/ledger?api_key={KEY}", signed=False)).json()
    assert D(rep["holding_costs"]) == -D(charged[0]["change"])

    r = await api.post("/_sim/collateral", {"collateral": 20000, "margin_call_amount": 12345})
    coll = await r.json()
    assert r.status == 200 and coll["collateral"] == 20000.0 and coll["margin_call_amount"] == 12345.0
    assert coll["margin_call_due_date"] and 0 < coll["keep_rate"] < 1.5
    got = await (await api.get("/v1/me/getcollateral")).json()
    assert got["keep_rate"] == coll["keep_rate"] and got["margin_call_amount"] == 12345.0
    cleared = await (await api.post("/_sim/collateral", {"margin_call_amount": 0})).json()
    assert cleared["margin_call_amount"] == 0 and cleared["margin_call_due_date"] is None
    # setting collateral is a deposit, not PnL
    rep2 = await (await api.get(f"/_sim/ledger?api_key={KEY}", signed=False)).json()
    assert rep2["realized_pnl"] == rep["realized_pnl"]


async def test_admin_charge_and_collateral_refuse_bad_input(api: Api) -> None:
    for path, bad in [
        ("/_sim/charge", {"kind": "interest"}),
        ("/_sim/charge", {"kind": "funding", "rate": "x"}),
        ("/_sim/charge", {"kind": "funding", "rate": 2}),
        ("/_sim/charge", {"kind": "funding", "api_key": "nobody"}),
        ("/_sim/collateral", {"collateral": -1}),
        ("/_sim/collateral", {"collateral": True}),
        ("/_sim/collateral", {"margin_call_amount": "NaN"}),
        ("/_sim/collateral", {"margin_call_due_date": 5}),
    ]:
        r = await api.post(path, bad)
        assert r.status == 400, (path, bad)
        assert "error" in await r.json()
