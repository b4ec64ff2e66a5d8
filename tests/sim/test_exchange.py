"""The venue core with time passed in: order life cycle and its events, bitFlyer's REST quirks, validation,
maintenance, determinism, and the market a stall quoter meets (fills on both sides)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bot.config.loader import SimConfig
from bot.sim.exchange import Exchange, Outbound, Private, Public, VenueError
from bot.sim.measure import measure_feed
from bot.types.dto import Side

MS = 1_000_000
SEC = 1_000_000_000
WALL = 1_795_000_000_000_000_000
K = "K"


def exchange(**kw: Any) -> Exchange:
    ex = Exchange(SimConfig.model_validate({"seed": 3, **kw}), 0, WALL)
    ex.add_account(K)
    return ex


def events(outs: list[Outbound], key: str = K) -> list[dict[str, Any]]:
    return [e for o in outs if isinstance(o, Private) and o.api_key == key for e in o.events]


def public(outs: list[Outbound], prefix: str) -> list[Any]:
    return [o.message for o in outs if isinstance(o, Public) and o.channel.startswith(prefix)]


def send(ex: Exchange, now: int = 0, **kw: Any) -> tuple[str, list[Outbound]]:
    body = {"product_code": "FX_BTC_JPY", "child_order_type": "LIMIT", "side": "BUY", "size": 0.001, **kw}
    return ex.send_child_order(K, body, now)


def q(ex: Exchange, key: str = K, **query: str) -> list[dict[str, Any]]:
    return ex.child_orders(key, {"product_code": "FX_BTC_JPY", **query})


def test_resting_limit_order_shows_in_the_book_and_events_and_getchildorders_with_id_0() -> None:
    ex = exchange()
    bid = ex.book.best_bid()
    assert bid is not None
    aid, outs = send(ex, price=bid + 1, size=0.01)
    evs = events(outs)
    assert [e["event_type"] for e in evs] == ["ORDER"]
    assert evs[0]["child_order_acceptance_id"] == aid and evs[0]["price"] == float(bid + 1)
    assert evs[0]["event_date"].endswith("Z") and len(evs[0]["event_date"].split(".")[1]) == 8  # 7 digits + Z
    assert ex.book.best_bid() == bid + 1
    row = q(ex)[0]
    assert row["id"] == 0 and row["child_order_state"] == "ACTIVE" and row["outstanding_size"] == 0.01
    assert [o.acceptance_id for o in ex.ledger.open_orders(K)] == [aid]
    diff = public(ex.advance(ex.next_due()), "lightning_board_FX")
    assert any({"price": float(bid + 1), "size": 0.01} in d["bids"] for d in diff)  # ours in the public board


def test_crossing_limit_takes_partially_then_rests_the_rest() -> None:
    ex = exchange()
    ask = ex.book.best_ask()
    assert ask is not None
    ask_size = ex.book.size_at(Side.SELL, ask)
    want = ask_size + 100_000_000  # more than the best level holds
    aid, outs = send(ex, price=ask, size=want / 100_000_000)
    evs = events(outs)
    assert [e["event_type"] for e in evs] == ["ORDER", "EXECUTION"]
    ex_ev = evs[1]
    assert ex_ev["price"] == float(ask) and ex_ev["size"] == ask_size / 1e8
    assert ex_ev["outstanding_size"] == 1.0 and ex_ev["commission"] == 0 and ex_ev["sfd"] == 0
    trades = public(outs, "lightning_executions")[0]
    assert trades[0]["side"] == "BUY" and trades[0]["buy_child_order_acceptance_id"] == aid
    assert ex.book.best_bid() == ask  # the rest rests at its price
    assert ex.ledger.position(K) == Decimal(ask_size) / 100_000_000


def test_market_ioc_fok() -> None:
    ex = exchange()
    _, outs = send(ex, child_order_type="MARKET", side="SELL", size=0.5)
    assert [e["event_type"] for e in events(outs)][0] == "ORDER"
    assert sum(e["size"] for e in events(outs) if e["event_type"] == "EXECUTION") == pytest.approx(0.5)
    assert ex.ledger.position(K) == Decimal("-0.5")
    ask = ex.book.best_ask()
    assert ask is not None
    # IOC below the ask: nothing crosses → cancelled at once, nothing rests
    aid, outs = send(ex, price=ask - 1, time_in_force="IOC")
    assert [e["event_type"] for e in events(outs)] == ["ORDER", "CANCEL"]
    assert not ex.book.has_order(aid)
    # FOK larger than what is offered up to its price → nothing trades
    size = ex.book.size_at(Side.SELL, ask)
    aid, outs = send(ex, price=ask, size=(size + 1_000_000) / 1e8, time_in_force="FOK")
    assert [e["event_type"] for e in events(outs)] == ["ORDER", "CANCEL"]
    assert ex.book.size_at(Side.SELL, ask) == size
    # FOK that fits fills whole
    aid, outs = send(ex, price=ask, size=size / 1e8, time_in_force="FOK")
    assert [e["event_type"] for e in events(outs)] == ["ORDER", "EXECUTION"]
    assert q(ex, child_order_acceptance_id=aid)[0]["child_order_state"] == "COMPLETED"


def test_minute_to_expire_expires_the_order_with_an_event_and_hides_it() -> None:
    ex = exchange(minute_ms=1000)  # a "minute" lasts 1 s here
    bid = ex.book.best_bid()
    assert bid is not None
    aid, _ = send(ex, price=bid - 5000, minute_to_expire=2)
    out = ex.advance(1900 * MS)
    assert not any(e["event_type"] == "EXPIRE" for e in events(out))
    out = ex.advance(2000 * MS)
    exp = [e for e in events(out) if e["event_type"] == "EXPIRE"]
    assert exp and exp[0]["child_order_acceptance_id"] == aid and exp[0]["size"] == 0.001
    assert not ex.book.has_order(aid) and ex.ledger.open_orders(K) == []
    assert q(ex) == []  # expired with no execution: not returned
    order_ev = events(send(ex, price=bid - 5000, minute_to_expire=1)[1])[0]
    assert order_ev["expire_date"].count(":") == 2 and not order_ev["expire_date"].endswith("Z")


def test_cancel_gives_cancel_event_then_cancel_failed_and_cancelled_orders_vanish() -> None:
    ex = exchange()
    bid = ex.book.best_bid()
    assert bid is not None
    crowd_there = ex.book.size_at(Side.BUY, bid - 100)
    aid, _ = send(ex, price=bid - 100)
    body = {"product_code": "FX_BTC_JPY", "child_order_acceptance_id": aid}
    assert [e["event_type"] for e in events(ex.cancel_child_order(K, body, 0))] == ["CANCEL"]
    assert [e["event_type"] for e in events(ex.cancel_child_order(K, body, 0))] == ["CANCEL_FAILED"]
    assert ex.cancel_child_order(K, {**body, "child_order_acceptance_id": "JRF-unknown"}, 0) == []
    assert q(ex) == [] and ex.book.size_at(Side.BUY, bid - 100) == crowd_there  # cancelled, no fill: gone
    a1, _ = send(ex, price=bid - 100)
    a2, _ = send(ex, price=bid - 200, side="BUY")
    outs = ex.cancel_all(K, {"product_code": "FX_BTC_JPY"}, 0)
    assert sorted(e["child_order_acceptance_id"] for e in events(outs)) == sorted([a1, a2])
    assert ex.ledger.open_orders(K) == []


def test_partially_filled_then_cancelled_order_is_listed_as_canceled() -> None:
    ex = exchange()
    ask = ex.book.best_ask()
    assert ask is not None
    size = ex.book.size_at(Side.SELL, ask)
    aid, _ = send(ex, price=ask, size=(size + 200_000) / 1e8)
    ex.cancel_child_order(K, {"product_code": "FX_BTC_JPY", "child_order_acceptance_id": aid}, 0)
    row = q(ex)[0]
    assert row["child_order_state"] == "CANCELED" and row["id"] > 0
    assert row["executed_size"] == size / 1e8 and row["cancel_size"] == 0.002
    assert ex.executions(K, {"child_order_acceptance_id": aid})[0]["size"] == size / 1e8
    assert q(ex, child_order_state="ACTIVE") == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"product_code": "ETH_JPY"}, -100),
        ({"size": 0.0009}, -110),
        ({"price": 0}, -106),
        ({"price": -5}, -106),
        ({"side": "HOLD"}, -101),
        ({"child_order_type": "STOP"}, -101),
        ({"minute_to_expire": 0}, -101),
        ({"time_in_force": "GTD"}, -101),
        ({"price": 13_000_000.5}, -101),
        ({"size": "abc"}, -101),
    ],
)
def test_invalid_orders_are_refused_with_bitflyer_statuses(body: dict[str, Any], status: int) -> None:
    ex = exchange()
    with pytest.raises(VenueError) as e:
        send(ex, **{"price": 13_000_000, **body})
    assert e.value.status == status and e.value.http_status == 400
    assert ex.ledger.open_orders(K) == []


def test_margin_shortage_is_minus_205_but_reducing_orders_pass() -> None:
    ex = exchange(collateral_jpy=100_000)  # 0.0147 BTC at 2× leverage
    with pytest.raises(VenueError) as e:
        send(ex, child_order_type="MARKET", size=0.02)
    assert e.value.status == -205
    send(ex, child_order_type="MARKET", size=0.01)
    send(ex, child_order_type="MARKET", side="SELL", size=0.01)  # closing is always allowed
    assert ex.ledger.position(K) == 0


def test_self_trade_gives_both_orders_an_execution_with_the_same_exec_id_and_nets_to_zero() -> None:
    """Like bitFlyer (no self-trade prevention): one execution, two EXECUTION events sharing its exec_id.
    A client that dedupes fills by exec_id alone would lose one side of it."""
    ex = exchange()
    ask = ex.book.best_ask()
    assert ask is not None
    resting, _ = send(ex, price=ask - 1, side="SELL", size=0.002)
    taker, outs = send(ex, child_order_type="MARKET", side="BUY", size=0.002)
    execs = [e for e in events(outs) if e["event_type"] == "EXECUTION"]
    assert {e["child_order_acceptance_id"] for e in execs} == {resting, taker}
    assert len({e["exec_id"] for e in execs}) == 1
    assert ex.ledger.position(K) == 0 and ex.ledger.realized_pnl(K) == 0


def test_expiry_heap_does_not_grow_with_cancelled_orders() -> None:
    ex = exchange()
    bid = ex.book.best_bid()
    assert bid is not None
    for _ in range(3000):
        aid, _ = send(ex, price=bid - 3000)
        ex.cancel_child_order(K, {"product_code": "FX_BTC_JPY", "child_order_acceptance_id": aid}, 0)
    assert len(ex._expiries) <= 1001


def test_order_failed_event() -> None:
    ex = exchange()
    aid, outs = ex.send_child_order(
        K,
        {"product_code": "FX_BTC_JPY", "child_order_type": "MARKET", "side": "BUY", "size": 0.001},
        0,
        fail_reason="MARGIN_SHORTAGE",
    )
    assert events(outs) == [{**events(outs)[0], "event_type": "ORDER_FAILED", "reason": "MARGIN_SHORTAGE"}]
    assert ex.ledger.position(K) == 0 and q(ex) == []


def test_maintenance_closes_then_preopen_with_itayose_then_running() -> None:
    ex = exchange()
    ex.start_maintenance(0, seconds=2, preopen_seconds=3)
    assert ex.board_state()["state"] == "CLOSED"
    with pytest.raises(VenueError) as e:
        send(ex, price=13_000_000)
    assert e.value.status == -204
    assert public(ex.advance(1900 * MS), "lightning_board_FX") == []  # no trading, no diffs while closed
    outs = ex.advance(4 * SEC)
    assert ex.board_state()["state"] == "PREOPEN" and ex.ticker(4 * SEC)["preopen_end"] is not None
    diffs = public(outs, "lightning_board_FX")
    assert any(lv["price"] == 0.0 for d in diffs for lv in d["bids"] + d["asks"])  # itayose entries
    _, outs = send(ex, 4 * SEC, child_order_type="MARKET", size=0.01)
    assert public(outs, "lightning_executions")[0][0]["side"] == ""
    ex.advance(5 * SEC)
    assert ex.board_state() == {"health": "NORMAL", "state": "RUNNING"}


def test_getpositions_rows_are_lots_and_collateral_has_the_fields() -> None:
    ex = exchange()
    send(ex, child_order_type="MARKET", size=0.01)
    send(ex, child_order_type="MARKET", size=0.02)
    rows = ex.positions(K)
    assert len(rows) >= 2 and sum(r["size"] for r in rows) == pytest.approx(0.03)
    assert set(rows[0]) == {
        "product_code",
        "side",
        "price",
        "size",
        "commission",
        "swap_point_accumulate",
        "require_collateral",
        "open_date",
        "leverage",
        "pnl",
        "sfd",
    }
    assert set(ex.collateral(K)) == {
        "collateral",
        "open_position_pnl",
        "require_collateral",
        "keep_rate",
        "margin_call_amount",
        "margin_call_due_date",
    }


def _stream(seed: int, n: int) -> list[tuple[str, Any]]:
    ex = exchange(seed=seed)
    out: list[tuple[str, Any]] = []
    while len(out) < n:
        for o in ex.advance(ex.next_due()):
            if isinstance(o, Public) and not o.channel.startswith("lightning_ticker"):
                msg = (
                    o.message
                    if "board" in o.channel
                    else [(t["side"], t["price"], t["size"]) for t in o.message]
                )
                out.append((o.channel, msg))
    return out[:n]


def test_same_seed_same_messages_other_seed_other_messages() -> None:
    assert _stream(11, 300) == _stream(11, 300)
    assert _stream(11, 50) != _stream(12, 50)


def quoter_fills(seed: int, activity: float, seconds: int) -> tuple[dict[str, int], int]:
    """A stall-then-strike quoter (stall 250 ms, mid±1, TTL 800 ms, cancel on best change), own orders
    excluded from the best it watches. Returns fills per side and strikes."""
    ex = exchange(seed=seed, activity=activity)
    now, last, changed, live, placed, struck = 0, None, 0, [], 0, False
    fills = {"BUY": 0, "SELL": 0}
    strikes = 0

    def handle(outs: list[Outbound]) -> None:
        for e in events(outs):
            if e["event_type"] == "EXECUTION":
                fills[e["side"]] += 1

    def cancel_all() -> None:
        for aid in live:
            handle(
                ex.cancel_child_order(
                    K, {"product_code": "FX_BTC_JPY", "child_order_acceptance_id": aid}, now
                )
            )
        live.clear()

    while now < seconds * SEC:
        now += 5 * MS
        handle(ex.advance(now))
        b, a = ex.book.crowd_best(Side.BUY), ex.book.crowd_best(Side.SELL)
        assert b is not None and a is not None
        if (b, a) != last:
            last, changed, struck = (b, a), now, False
            cancel_all()
        if live and now - placed >= 800 * MS:
            cancel_all()
        if not live and not struck and now - changed >= 250 * MS and a - b >= 2:
            strikes, struck, placed = strikes + 1, True, now
            for side, price in (("BUY", (a + b - 2) // 2), ("SELL", -(-(a + b + 2) // 2))):
                aid, outs = send(ex, now, side=side, price=price)
                handle(outs)
                live.append(aid)
    return fills, strikes


@pytest.mark.parametrize("activity", [3.0, 5.0])
def test_a_mid_plus_minus_one_quoter_gets_filled_on_both_sides(activity: float) -> None:
    fills, strikes = quoter_fills(seed=5, activity=activity, seconds=45)
    assert strikes >= 10
    assert fills["BUY"] >= 3 and fills["SELL"] >= 3, fills


def test_market_cadence_and_shape_over_ten_simulated_minutes() -> None:
    """Diffs ≈7/s with 3–5 levels, a spread usually hundreds+ of ticks and sometimes tight, stalls of varied
    length so stall_T_ms matters, executions 0.3–0.6 frames/s, depth kept, 300-level snapshots."""
    st = measure_feed(seed=1, activity=1.0, seconds=600)
    assert 6.8 <= st.diffs_per_s <= 7.8 and st.max_diff_gap_ms < 600
    assert 2 <= st.levels_per_diff_median <= 5
    assert st.spread_ticks_pcts["p50"] >= 300 and st.spread_ticks_pcts["p95"] >= 1000  # usually wide
    assert 0.02 <= st.tight_share <= 0.3  # sometimes tight
    assert st.stall_ms_pcts["p10"] < 250 < st.stall_ms_pcts["p90"] and st.stall_ms_pcts["max"] >= 3000
    assert 0.5 <= st.share_of_time_stalled_over_250ms <= 0.95
    assert 0.25 <= st.exec_frames_per_s <= 0.8
    assert 0.8 * 540 <= st.depth_bid <= 1.2 * 540 and 0.8 * 540 <= st.depth_ask <= 1.2 * 540
    assert st.snapshot_levels == 300 and st.missed_deletes > 0


def test_a_days_history_neither_slows_getchildorders_nor_grows_without_bound(monkeypatch: Any) -> None:
    """Defect 9: getchildorders sorted every order the account ever placed (143 ms at 100k orders) and orders
    were never forgotten. The ACTIVE listing reads only the active ones; finished orders past the kept window
    are forgotten (bitFlyer pages its history too), and the answers stay the same."""
    import bot.sim.exchange as exchange_mod
    import bot.sim.ledger as ledger_mod

    monkeypatch.setattr(ledger_mod, "FINISHED_KEPT", 300)
    monkeypatch.setattr(exchange_mod, "FINISHED_KEPT", 300)
    ex = exchange()
    bid = ex.book.best_bid()
    assert bid is not None
    resting, _ = send(ex, price=bid - 1_000_000, size=0.002)  # far below anything that trades here
    for _ in range(2_000):  # cancelled ones (never listed)...
        aid, _ = send(ex, price=bid - 2_000_000)
        ex.cancel_child_order(K, {"product_code": "FX_BTC_JPY", "child_order_acceptance_id": aid}, 0)
    for _ in range(100):  # ...and filled ones (COMPLETED, listed)
        send(ex, child_order_type="MARKET", side="BUY")
        send(ex, child_order_type="MARKET", side="SELL")
    acct = ex.ledger.account(K)
    assert len(acct.orders) <= 300 + len(acct.active) and len(ex._orders) <= 4 * 300 + 1
    active = q(ex, child_order_state="ACTIVE")
    assert [r["child_order_acceptance_id"] for r in active] == [resting]
    newest = q(ex, count="5")
    assert len(newest) == 5 and all(r["child_order_state"] == "COMPLETED" for r in newest)
    assert [r["id"] for r in newest] == sorted((r["id"] for r in newest), reverse=True)
    assert q(ex, child_order_acceptance_id=resting)[0]["child_order_state"] == "ACTIVE"
    assert ex.ledger.position(K) == 0
