"""The preflight before a live start: `python -m bot preflight` as a user runs it (its own process, the real
pybotters client over loopback) against the simulated venue, one problem at a time; the venue's additions it
relies on (per-key permissions, the clock-offset fault); and the pure verdicts."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pybotters
import pytest

from bot.config.loader import PreflightConfig
from bot.infra.http_bitflyer import BitflyerHttp
from bot.infra.pyb_auth import register_bitflyer_hosts
from bot.preflight import (
    clock_verdict,
    collateral_verdict,
    maintenance_verdict,
    position_verdict,
    rate_verdict,
    state_file_check,
)
from bot.sim import SimVenue
from bot.types.dto import Side
from bot.types.exchange import SEND_CHILD_ORDER, ErrorKind, ExchangeError, RateLimitInfo
from bot.types.preflight import PreflightReport
from tests.conftest import ROOT, make_config

pytestmark = pytest.mark.integration

LIVE_YML = ROOT / "configs" / "live.yml"


@pytest.fixture
async def venue() -> Any:
    v = SimVenue(make_config().sim)
    await v.start()
    yield v
    await v.stop()


async def preflight_cli(venue_url: str, log_dir: Path, *extra: str) -> tuple[int, str, dict[str, Any]]:
    """`python -m bot preflight --override configs/live.yml --venue URL` in its own process, while this loop
    serves the venue. Returns the exit status, the whole output and the last line's JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "preflight",
        "--override",
        str(LIVE_YML),
        "--venue",
        venue_url,
        "--log-dir",
        str(log_dir),
        *extra,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert text.strip(), f"no output; stderr: {err.decode()}"
    report = json.loads(text.strip().splitlines()[-1])
    assert proc.returncode is not None
    return proc.returncode, text, report


def check_of(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == name)


def only_errors(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["checks"] if not c["ok"] and c["level"] == "error"]


async def admin(venue: SimVenue, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{venue.base_url}/_sim/{path}", json=body)
        assert r.status_code == 200, r.text
        return r.json()


async def hand_trade(venue: SimVenue, side: str, size: str) -> None:
    await admin(venue, "order", {"side": side, "size": size})
    assert venue.ledger.position(venue.api_key) != 0  # a MARKET order fills at once on the crowd's book


# ---------------------------------------------------------------- the CLI against the venue
async def test_preflight_on_a_clean_account_is_ready_exits_0_and_prints_a_table_then_the_json(
    venue, tmp_path
):
    rc, text, report = await preflight_cli(venue.base_url, tmp_path / "logs")
    assert rc == 0, text
    assert report["ready"] is True
    names = [c["name"] for c in report["checks"]]
    assert names == [
        "keys",
        "clock",
        "permissions",
        "collateral",
        "position",
        "board",
        "maintenance",
        "rate_limit",
        "storage",
        "state_file",
    ]
    assert all(set(c) == {"name", "ok", "level", "detail"} for c in report["checks"])
    assert "READY" in text.splitlines()[-2]
    assert "may call all 7 endpoints" in check_of(report, "permissions")["detail"]


async def test_a_key_without_trade_permission_is_named_and_the_preflight_fails(venue, tmp_path):
    allowed = [p for p in (await admin(venue, "permissions", {"endpoints": None}))["permissions"]]
    await admin(venue, "permissions", {"endpoints": [p for p in allowed if p != SEND_CHILD_ORDER]})
    rc, text, report = await preflight_cli(venue.base_url, tmp_path / "logs")
    assert rc != 0 and report["ready"] is False
    assert only_errors(report) == ["permissions"], text
    assert check_of(report, "permissions")["detail"].startswith("key lacks /v1/me/sendchildorder")


async def test_a_ten_minute_clock_offset_is_named_and_the_preflight_fails(venue, tmp_path):
    await admin(venue, "clock_offset", {"seconds": 600})
    rc, text, report = await preflight_cli(venue.base_url, tmp_path / "logs")
    assert rc != 0 and report["ready"] is False
    clock = check_of(report, "clock")
    assert not clock["ok"] and clock["level"] == "error"
    assert "clock is 600 s behind the exchange's" in clock["detail"], text
    # and the venue, on its own clock, refuses the signature exactly as bitFlyer does
    assert "refused this key" in check_of(report, "permissions")["detail"]
    assert "Timestamp is out of range" in check_of(report, "permissions")["detail"]


async def test_a_position_opened_by_hand_is_named_and_the_preflight_fails(venue, tmp_path):
    await hand_trade(venue, "BUY", "0.003")
    rc, text, report = await preflight_cli(venue.base_url, tmp_path / "logs")
    assert rc != 0 and report["ready"] is False
    assert only_errors(report) == ["position"], text
    assert check_of(report, "position")["detail"].startswith("long 0.003 BTC at ")


async def test_a_keep_rate_under_the_threshold_is_named_and_the_preflight_fails(tmp_path):
    # 60,000 JPY of collateral; 0.008 BTC at ≈13.6M JPY and leverage 2 takes ≈54,400: keep rate ≈110 % < 150 %
    small = SimVenue(make_config({"sim": {"collateral_jpy": 60_000}}).sim)
    await small.start()
    try:
        await hand_trade(small, "BUY", "0.008")
        rc, text, report = await preflight_cli(small.base_url, tmp_path / "logs")
    finally:
        await small.stop()
    assert rc != 0 and report["ready"] is False
    collateral = check_of(report, "collateral")
    assert not collateral["ok"] and collateral["level"] == "error", text
    assert "keep rate 1" in collateral["detail"] and "under the 150.0 % minimum" in collateral["detail"]


async def test_an_unwritable_log_folder_is_named_and_the_preflight_fails(venue, tmp_path):
    # the suite runs as root, whom chmod does not stop: a folder under a regular file cannot exist at all
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    log_dir = blocker / "logs"
    rc, text, report = await preflight_cli(venue.base_url, log_dir)
    assert rc != 0 and report["ready"] is False
    assert only_errors(report) == ["storage"], text
    assert check_of(report, "storage")["detail"] == f"log folder {log_dir} is not writable: Not a directory"


# ---------------------------------------------------------------- what the venue does for it
async def test_the_venue_refuses_an_order_from_a_key_without_trade_permission(venue):
    others = [p for p in venue.permissions_of(venue.api_key) if p != SEND_CHILD_ORDER]
    venue.set_permissions(venue.api_key, others)
    register_bitflyer_hosts(venue.base_url, venue.ws_url)
    async with pybotters.Client(
        apis={"bitflyer": ["SIM_KEY", "SIM_SECRET"]}, base_url=venue.base_url
    ) as client:
        http = BitflyerHttp(client, make_config().exchange.model_copy(update={"base_url": venue.base_url}))
        assert SEND_CHILD_ORDER not in await http.get_permissions()
        with pytest.raises(ExchangeError) as refused:
            await http.send_child_order(Side.BUY, Decimal("0.001"), order_type="MARKET")
        assert await http.get_positions() == []  # the other calls still work
    assert refused.value.kind is ErrorKind.AUTH and refused.value.code == -500
    assert refused.value.http_status == 401 and refused.value.message == "Permission denied"
    assert venue.ledger.account(venue.api_key).orders == {}


async def test_the_clock_offset_fault_moves_the_venues_date_header():
    v = SimVenue(make_config().sim)
    await v.start()
    try:
        v.set_clock_offset(-3600)
        register_bitflyer_hosts(v.base_url, v.ws_url)
        async with pybotters.Client(base_url=v.base_url) as client:
            http = BitflyerHttp(client, make_config().exchange.model_copy(update={"base_url": v.base_url}))
            clock = await http.venue_clock()
    finally:
        await v.stop()
    assert -3602 < clock.skew_s < -3598


async def test_a_venue_that_never_answers_is_reported_check_by_check_not_raised(venue, tmp_path):
    from bot.preflight import PreflightInputs, run_preflight

    venue.fail("*", "timeout_before", count=None)  # every private call hangs
    cfg = make_config()
    register_bitflyer_hosts(venue.base_url, venue.ws_url)
    async with pybotters.Client(
        apis={"bitflyer": ["SIM_KEY", "SIM_SECRET"]}, base_url=venue.base_url
    ) as client:
        http = BitflyerHttp(
            client, cfg.exchange.model_copy(update={"base_url": venue.base_url}), timeout_s=1.0
        )
        inputs = PreflightInputs(
            mode="live",
            account="test",
            keys_present=True,
            keys_source="test",
            product_code="FX_BTC_JPY",
            log_dir=tmp_path / "logs",
            state_file=tmp_path / "logs" / "state.json",
            thresholds=cfg.preflight,
            min_keep_rate=cfg.risk.min_keep_rate,
        )
        report = await run_preflight(http, inputs)
    assert not report.ready
    assert [c.name for c in report.failing()] == ["permissions", "collateral", "position"]
    for c in report.failing():
        assert c.detail.startswith("could not read ") and c.detail.endswith("(timeout): no answer within 1s")
    board = report.check("board")
    assert board is not None and board.ok  # public calls still answer


# ---------------------------------------------------------------- pure verdicts
def test_the_clock_verdict_says_which_way_and_how_far():
    behind = clock_verdict(600.2, 5)
    assert not behind.ok and behind.level == "error"
    assert behind.detail.startswith("this machine's clock is 600 s behind the exchange's (limit 5 s)")
    assert "ahead of the exchange's" in clock_verdict(-42, 5).detail
    assert clock_verdict(1.2, 5).ok


def test_the_maintenance_verdict_counts_minutes_to_four_oclock_tokyo():
    # 03:45 JST = 18:45 UTC the day before
    soon = maintenance_verdict(datetime(2026, 12, 6, 18, 45, tzinfo=UTC), warn_min=30)
    assert not soon.ok and soon.level == "warning" and "in 15 min (04:00–04:10 JST)" in soon.detail
    now = maintenance_verdict(datetime(2026, 12, 6, 19, 5, tzinfo=UTC), warn_min=30)
    assert not now.ok and "in the daily maintenance now" in now.detail
    later = maintenance_verdict(datetime(2026, 12, 6, 19, 10, tzinfo=UTC), warn_min=30)
    assert later.ok and "in 1430 min" in later.detail


def test_a_margin_call_or_a_low_keep_rate_is_an_error_and_no_margin_in_use_is_fine():
    row = {"collateral": 100000, "open_position_pnl": 0, "require_collateral": 0, "keep_rate": 0}
    assert collateral_verdict(row, Decimal("1.5")).ok
    called = collateral_verdict(
        {**row, "margin_call_amount": 5000, "margin_call_due_date": "2026-12-07T09:00:00"}, Decimal("1.5")
    )
    assert not called.ok and "margin call of 5,000 JPY" in called.detail
    low = collateral_verdict({**row, "require_collateral": 80000, "keep_rate": 1.25}, Decimal("1.5"))
    assert not low.ok and low.detail.startswith("keep rate 125.0 % is under the 150.0 % minimum")
    odd = collateral_verdict({**row, "keep_rate": "NaN"}, Decimal("1.5"))
    assert not odd.ok and "answered oddly" in odd.detail


def test_only_an_open_position_may_be_overruled_by_a_human():
    position = position_verdict(Decimal("-0.002"), Decimal("13600000"), 1, "FX_BTC_JPY")
    assert position.detail.startswith("short 0.002 BTC at 13,600,000 JPY average and 1 open order")
    report = PreflightReport.of([position])
    assert not report.ready
    assert "position: short 0.002 BTC" in (report.start_refusal(adopt=False) or "")
    assert report.start_refusal(adopt=True) is None
    both = PreflightReport.of([position, clock_verdict(600, 5)])
    refusal = both.start_refusal(adopt=True) or ""
    assert refusal.startswith("preflight not ready — clock: ") and "position" not in refusal


def test_a_used_up_rate_limit_is_an_error_unless_its_window_has_already_reset():
    now = 1_800_000_000.0
    used_up = RateLimitInfo(300, 0, now + 120, 0, now)
    check = rate_verdict(
        {"/v1/me/getcollateral": used_up, "/v1/gethealth": RateLimitInfo(300, 480, now + 9, 0, now)}, 50, now
    )
    assert not check.ok and check.level == "error"
    assert check.detail == "rate limit used up on /v1/me/getcollateral: 0 requests left, resets in 120 s"
    low = rate_verdict({"/v1/me/getpositions": RateLimitInfo(300, 20, now + 9, 0, now)}, 50, now)
    assert not low.ok and low.level == "warning" and low.detail.startswith("only 20 requests left")
    assert rate_verdict({"/v1/me/getcollateral": used_up}, 50, now + 121).ok  # a window gone by


def test_a_state_file_of_another_mode_or_account_or_unreadable_is_an_error_and_a_kill_latch_a_warning(
    tmp_path,
):
    path = tmp_path / "state.json"
    assert state_file_check(path, "live", "abc").ok  # none yet
    path.write_text(json.dumps({"mode": "sim", "account": "abc", "state": "RUNNING"}))
    other = state_file_check(path, "live", "abc")
    assert not other.ok and other.level == "error" and "belongs to mode sim, account abc" in other.detail
    path.write_text(json.dumps({"mode": "live", "account": "abc", "state": "KILLED"}))
    latched = state_file_check(path, "live", "abc")
    assert not latched.ok and latched.level == "warning" and "kill latch" in latched.detail
    path.write_text('{"mode": "live", "acc')
    torn = state_file_check(path, "live", "abc")
    assert not torn.ok and torn.level == "error" and "unreadable" in torn.detail


def test_the_preflight_thresholds_have_ranges():
    with pytest.raises(ValueError):
        PreflightConfig(max_clock_skew_sec=301)


# ---------------------------------------------------------------- the start gate, through the real app
@pytest.fixture
async def paper_app(tmp_path: Path) -> Any:
    """The real app in paper mode, STOPPED at start: bitFlyer's public feed played by one simulated venue,
    our orders matched by the local paper venue (whose keys the preflight checks)."""
    from tests.conftest_server import asgi_client, build_app, sim_config

    public = SimVenue(make_config().sim.model_copy(update={"seed": 11, "activity": 4.0}))
    await public.start()
    log_dir = tmp_path / "logs"
    cfg = sim_config(
        log_dir, env="paper", exchange={"ws_url": public.ws_url}, runner={"start_state": "stopped"}
    )
    app = build_app(cfg, log_dir)
    try:
        async with asgi_client(app) as client:
            paper = app.state.service.venue
            assert paper is not None and paper is not public
            yield client, paper
    finally:
        await public.stop()


async def test_a_first_paper_start_the_preflight_refuses_answers_409_with_the_reason_and_stays_stopped(
    paper_app,
):
    client, paper = paper_app
    everything = paper.permissions_of(paper.api_key)
    paper.set_permissions(paper.api_key, [p for p in everything if p != SEND_CHILD_ORDER])
    r = await client.post("/strategy/start")
    assert r.status_code == 409, r.text
    assert r.json()["detail"].startswith("preflight not ready — permissions: key lacks /v1/me/sendchildorder")
    assert "X-Preflight-Adopt" not in r.headers  # nothing a confirmation could overrule
    assert (await client.get("/strategy")).json()["state"] == "STOPPED"
    report = (await client.get("/preflight")).json()
    assert report["ready"] is False and only_errors(report) == ["permissions"]
    paper.set_permissions(paper.api_key, None)  # the trader fixes the key
    r = await client.post("/strategy/start")
    assert r.status_code == 200 and r.json()["state"] == "RUNNING", r.text


async def test_a_position_already_on_the_account_is_adopted_only_after_a_human_confirms(paper_app):
    client, paper = paper_app

    async def paper_book() -> bool:
        return paper.exchange.book.best_ask() is not None

    from tests.conftest_server import wait_until

    await wait_until(paper_book, 30, "the paper venue's first snapshot of the feed")
    await hand_trade(paper, "BUY", "0.002")
    r = await client.post("/strategy/start")
    assert r.status_code == 409, r.text
    assert r.headers["X-Preflight-Adopt"] == "needed"
    detail = r.json()["detail"]
    assert detail.startswith("preflight not ready — position: long 0.002 BTC at ") and "confirm" in detail
    assert (await client.get("/strategy")).json()["state"] == "STOPPED"
    r = await client.post("/strategy/start", params={"adopt": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "RUNNING" and r.json()["changed"] is True


async def test_the_preflight_never_spends_the_rest_requests_kept_for_a_kill(tmp_path):
    from tests.conftest_server import asgi_client, build_app, sim_config

    cfg = sim_config(tmp_path)
    app = build_app(cfg, tmp_path)
    async with asgi_client(app) as client:
        runner = app.state.service.runner
        assert (await client.get("/preflight")).status_code == 200
        budget, reserve = runner.rest_budget, runner.decisions.rest_reserve
        budget.force(runner._clock(), budget.available(runner._clock()) - reserve)  # down to the reserve
        r = await client.get("/preflight")  # refused before its first call: the reserve stays a kill's
        assert r.status_code == 503 and "reserve" in r.json()["detail"] and "Retry-After" in r.headers
