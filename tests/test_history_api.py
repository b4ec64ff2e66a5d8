"""GET /history/daily and GET /trades against the real app (the real bot in sim mode, lifespan run for real),
over trades CSVs this test writes through the project's own TradeLogger and a daily summary file written
through DailySummaryFile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio

from bot.infra.daily_summary import DailySummaryFile, KillEvent, summary_path
from bot.infra.logging_structured import CsvLogWriter, TradeLogger, csv_path
from bot.types.dto import Side, TradeLogRow
from tests.conftest_server import asgi_client, build_app, ensure_state, sim_config, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

DAY1, DAY2, DAY_PAGED = "20260105", "20260106", "20260107"
JST = ZoneInfo("Asia/Tokyo")


def at(day: str, minute: int) -> datetime:
    """A time on `day` (JST) as tz-aware UTC, as the bot's rows carry it."""
    start = datetime.strptime(day, "%Y%m%d").replace(hour=10, tzinfo=JST)
    return (start + timedelta(minutes=minute)).astimezone(UTC)


def row(
    day: str,
    minute: int,
    side: Side,
    size: str,
    *,
    tag: str = "stall",
    pnl: str = "0",
    fee: str = "0",
    exec_id: str = "",
) -> TradeLogRow:
    return TradeLogRow(
        ts=at(day, minute),
        order_id=f"JRF{day}-{minute}",
        side=side,
        price=Decimal("13600000"),
        size=Decimal(size),
        fee=Decimal(fee),
        strategy="stall_then_strike",
        tag=tag,
        pnl_jpy=Decimal(pnl),
        pnl_cum_jpy=Decimal(0),
        inventory_after=Decimal(0),
        exec_id=exec_id or f"{day}-{minute}",
    )


def write_trades(log_dir: Path, rows: list[TradeLogRow]) -> None:
    writer = CsvLogWriter(linger_s=0)
    log = TradeLogger(log_dir, "stall_then_strike", writer=writer)
    for r in rows:
        log.log(r)
    assert log.close()
    writer.stop()


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("history-logs")
    write_trades(
        d,
        [
            row(DAY1, 0, Side.BUY, "0.001"),
            row(DAY1, 1, Side.SELL, "0.001", tag="close", pnl="120.5", fee="0.25"),
            row(DAY1, 2, Side.SELL, "0.002"),
            row(DAY1, 3, Side.BUY, "0.002", tag="close", pnl="-40.125"),
            row(DAY1, 4, Side.BUY, "0.003", tag="correction", pnl="7"),
            replace(row(DAY1, 5, Side.BUY, "0", tag="holding_cost", pnl="-12"), side=None),  # funding paid
            row(DAY2, 0, Side.BUY, "0.001"),
            row(DAY2, 1, Side.SELL, "0.001", tag="close", pnl="10"),
            row(DAY2, 2, Side.BUY, "0.001", tag=""),  # a trade by hand: no tag, still a fill
        ]
        + [row(DAY_PAGED, i, Side.BUY if i % 2 else Side.SELL, "0.001") for i in range(7)],
    )
    summary = DailySummaryFile(d)
    summary.record_day_sync(DAY1, Decimal("-310.5"))
    summary.record_day_sync(DAY1, Decimal("-90"), KillEvent("2026-01-05T03:00:00+00:00", "kill switch", "x"))
    # a crash mid-write leaves a torn last line: it is skipped, the whole rows before it count
    with open(csv_path(d, "trades", DAY2), "ab") as f:
        f.write(b"2026-01-06T10:09:00.000+09:00,JRF9,SELL,136000")
    return d


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(log_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(sim_config(log_dir), log_dir)
    async with asgi_client(app) as c:
        yield c


def by_day(days: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["day"]: d for d in days}


async def test_daily_history_sums_each_day_and_adds_the_summary_files_drawdown_and_kills(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/history/daily")
    assert r.status_code == 200
    days = by_day(r.json())
    one = days[DAY1]
    # 120.5 − 40.125 + 7 (the correction's PnL effect counts) − 12 (a holding cost counts)
    assert one["realized_jpy"] == "75.375"
    assert one["fees_jpy"] == "0.25"
    assert one["volume_btc"] == "0.006"  # the correction is no trade
    assert one["fills"] == 4  # neither is the holding cost
    assert one["win_rate"] == 0.5  # of the two fills that realized PnL, one made money
    assert one["max_drawdown_jpy"] == "-310.5"  # the deeper of the two writes
    assert one["kills"] == [{"at": "2026-01-05T03:00:00+00:00", "reason": "kill switch", "who": "x"}]
    two = days[DAY2]
    assert (two["fills"], two["realized_jpy"], two["win_rate"]) == (3, "10", 1.0)  # torn line skipped
    assert two["max_drawdown_jpy"] is None and two["kills"] == []
    assert [d["day"] for d in r.json()] == sorted(days)


async def test_trades_are_pages_newest_first_that_never_repeat_while_rows_are_appended(
    client: httpx.AsyncClient, log_dir: Path
) -> None:
    first = (await client.get("/trades", params={"day": DAY_PAGED, "limit": 3})).json()
    assert [t["ts"][11:16] for t in first["items"]] == ["10:06", "10:05", "10:04"]
    # the bot keeps trading meanwhile: two newer rows on the same day must not shift the next pages
    write_trades(log_dir, [row(DAY_PAGED, 30, Side.BUY, "0.001"), row(DAY_PAGED, 31, Side.SELL, "0.001")])
    seen = list(first["items"])
    cursor = first["next_cursor"]
    while cursor is not None:
        page = (await client.get("/trades", params={"day": DAY_PAGED, "limit": 3, "cursor": cursor})).json()
        seen += page["items"]
        cursor = page["next_cursor"]
    assert [t["ts"][11:16] for t in seen] == [f"10:0{i}" for i in range(6, -1, -1)]
    assert len({t["exec_id"] for t in seen}) == 7
    newest = (await client.get("/trades", params={"day": DAY_PAGED, "limit": 1})).json()
    assert newest["items"][0]["ts"][11:16] == "10:31"


async def test_trades_filter_by_day_side_and_tag_across_days(client: httpx.AsyncClient) -> None:
    closes = (await client.get("/trades", params={"tag": "close", "limit": 500})).json()
    assert [(t["day"], t["side"], t["pnl_jpy"]) for t in closes["items"]] == [
        (DAY2, "SELL", "10"),
        (DAY1, "BUY", "-40.125"),
        (DAY1, "SELL", "120.5"),
    ]
    assert closes["next_cursor"] is None
    sells = (await client.get("/trades", params={"day": DAY1, "side": "sell"})).json()["items"]
    assert [(t["size"], t["tag"]) for t in sells] == [("0.002", "stall"), ("0.001", "close")]
    item = sells[1]
    assert item["price"] == "13600000" and item["fee"] == "0.25" and item["order_id"] == f"JRF{DAY1}-1"


async def test_a_day_without_a_csv_has_no_trades(client: httpx.AsyncClient) -> None:
    r = await client.get("/trades", params={"day": "20250101"})
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"day": "2026-01-05"}, "day must be a trading day as YYYYMMDD"),
        ({"side": "LONG"}, "side must be BUY or SELL"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 500"),
        ({"limit": "501"}, "limit must be a whole number from 1 to 500"),
        ({"limit": "ten"}, "limit must be a whole number from 1 to 500"),
        ({"cursor": "bogus"}, "cursor must be the next_cursor of a previous page"),
        ({"tag": "a b"}, "tag must be 1 to 40 letters"),
    ],
)
async def test_bad_trade_query_parameters_are_refused_with_a_sentence(
    client: httpx.AsyncClient, params: dict[str, str], says: str
) -> None:
    r = await client.get("/trades", params=params)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(says)


async def test_a_kill_is_written_to_the_days_summary_and_shown_in_the_history(
    client: httpx.AsyncClient, log_dir: Path
) -> None:
    today = datetime.now(JST).strftime("%Y%m%d")
    r = await client.post("/strategy/kill")
    assert r.status_code == 200
    try:

        async def kill_listed() -> bool:
            day = by_day((await client.get("/history/daily")).json()).get(today)
            return bool(day and day["kills"])

        await wait_until(kill_listed, what="today's kill in /history/daily")
        day = by_day((await client.get("/history/daily")).json())[today]
        assert day["kills"][0]["reason"] == "killed by api"
        assert day["max_drawdown_jpy"] is not None
        assert summary_path(log_dir, today).is_file()
    finally:
        await ensure_state(client, "STOPPED")


async def test_the_day_roll_writes_the_closing_days_drawdown(tmp_path: Path) -> None:
    """A bot that was down over the day boundary: its restored ledger is of an old day; the first roll writes
    that day's max drawdown to its summary file."""
    from bot.engine.inventory import InventoryManager
    from bot.infra.state_file import StateFile
    from bot.runner import account_id

    cfg = sim_config(tmp_path)
    inv = InventoryManager(cfg.risk, tick_size=cfg.exchange.tick_size)
    inv.roll_day(at("20260102", 0))
    ledger = inv.to_dict()
    ledger["max_drawdown"] = "-123.5"
    StateFile(tmp_path / "state.json").save_sync(
        {"mode": "sim", "account": account_id(cfg.sim.api_key), "state": "STOPPED", "inventory": ledger}
    )
    async with asgi_client(build_app(cfg, tmp_path)) as c:

        async def written() -> bool:
            return summary_path(tmp_path, "20260102").is_file()

        await wait_until(written, what="the closing day's summary file")
        day = by_day((await c.get("/history/daily")).json())["20260102"]
        assert day["max_drawdown_jpy"] == "-123.5" and day["fills"] == 0


async def test_a_fill_after_midnight_that_rolls_the_ledger_first_still_reports_the_closed_day(
    tmp_path: Path,
) -> None:
    """A fill (or a holding cost) dated after midnight rolls the ledger as it lands, before housekeeping
    looks: the closed day's drawdown still reaches its summary file and the phone still hears its figures."""
    from bot.engine.inventory import InventoryManager
    from bot.infra.state_file import StateFile
    from bot.runner import BotRunner, Endpoints, account_id
    from bot.types.dto import Fill
    from tests.test_notify_activity import receiver

    tz = ZoneInfo("Asia/Tokyo")
    yesterday = (datetime.now(tz) - timedelta(days=1)).strftime("%Y%m%d")
    async with receiver() as (phone, url):
        cfg = sim_config(tmp_path, notify={"urls": [url]})
        inv = InventoryManager(cfg.risk, tick_size=cfg.exchange.tick_size)
        inv.roll_day(datetime.strptime(yesterday, "%Y%m%d").replace(hour=12, tzinfo=tz))
        ledger = inv.to_dict()
        ledger["max_drawdown"] = "-77"
        StateFile(tmp_path / "state.json").save_sync(
            {"mode": "sim", "account": account_id(cfg.sim.api_key), "state": "STOPPED", "inventory": ledger}
        )
        runner = BotRunner(
            cfg,
            endpoints=Endpoints("http://127.0.0.1:9", "ws://127.0.0.1:9", None, cfg.sim.api_key, "x"),
            log_dir=tmp_path,
            state_file=tmp_path / "state.json",
            notify_urls=[url],
        )
        assert runner.inventory.trading_day == yesterday
        fill = Fill(
            exec_id="1",
            child_order_acceptance_id="JRF1",
            side=Side.BUY,
            price=Decimal(13_600_000),
            size=Decimal("0.001"),
            commission=Decimal(0),
            exec_date=datetime.now(UTC),
            child_order_id="JFX1",
            tag="stall",
        )
        runner.fills.apply(fill, 0)  # today's fill rolls the ledger before housekeeping's look
        assert runner.inventory.trading_day != yesterday
        runner._roll_day()  # housekeeping's look

        async def reported() -> bool:
            return summary_path(tmp_path, yesterday).is_file() and any(
                f"trading day {yesterday}" in m.get("title", "") for m in phone.messages
            )

        await wait_until(reported, 10, "the closed day's summary file and message")
        for lg in (runner.decision_log, runner.order_log, runner.trade_log, runner.audit_log):
            await lg.aclose()
