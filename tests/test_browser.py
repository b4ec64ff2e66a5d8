"""The dashboard in a real browser (Debian's chromium via Playwright) against the real app and bot in sim
mode."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest_server import ROOT, build_app, ensure_state, sim_config, uvicorn_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = ROOT / "docs" / "dashboard.png"

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


def _require_browser() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} not installed (apt-get install -y chromium): browser tests skipped"
    if os.environ.get("STST_REQUIRE_BROWSER") == "1":
        pytest.fail(reason.replace("skipped", "required by STST_REQUIRE_BROWSER=1"))
    pytest.skip(reason)


@dataclass
class Served:
    app: Any
    base: str
    api: httpx.AsyncClient


@dataclass
class Tab:
    page: Any
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    _require_browser()
    log_dir = tmp_path_factory.mktemp("browser-logs")
    app = build_app(sim_config(log_dir), log_dir)
    async with uvicorn_server(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as api:
        yield Served(app, base, api)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(served: Served) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest_asyncio.fixture(loop_scope="module")
async def tab(browser: Any, served: Served) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    t = Tab(page)
    page.on("console", lambda m: t.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: t.console_errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: t.requests.append(r.url))
    yield t
    await context.close()
    # whatever the test did, nothing left this machine
    assert t.requests and all(u.startswith(served.base + "/") for u in t.requests), t.requests


async def _open(tab: Tab, served: Served) -> Any:
    from playwright.async_api import expect

    page = tab.page
    await page.goto(served.base + "/")
    await expect(page.locator("body")).to_have_attribute("data-stream", "open", timeout=30_000)
    await expect(page.locator("#best-bid")).to_have_text(_DIGITS, timeout=30_000)
    return page


_DIGITS = __import__("re").compile(r"\d")


async def test_dashboard_loads_offline_with_no_console_errors(tab: Tab, served: Served) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "RUNNING")
    page = await _open(tab, served)
    await expect(page.locator("#state")).to_have_text("RUNNING")
    await expect(page.locator("#mode")).to_have_text("SIM")
    await expect(page.locator("#ladder tbody tr")).to_have_count(20, timeout=10_000)
    await expect(page.locator("#chart-mid .uplot")).to_have_count(
        1, timeout=10_000
    )  # the chart event arrived
    assert await page.evaluate("typeof htmx === 'object' && typeof uPlot === 'function'")
    await expect(page.locator("#stream-status")).to_be_hidden()
    assert tab.console_errors == []
    vendor = [u for u in tab.requests if "/static/vendor/" in u]
    assert len(vendor) >= 4  # htmx, its SSE extension, uPlot script and css: served by the app itself


async def test_best_age_ticks(tab: Tab, served: Served) -> None:
    page = await _open(tab, served)
    first = await page.locator("#best-age").text_content()
    await page.wait_for_function(
        "first => document.getElementById('best-age').textContent !== first", arg=first, timeout=10_000
    )
    assert await page.locator("#best-age").text_content() != first


async def test_pause_and_resume_buttons(tab: Tab, served: Served) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "RUNNING")
    page = await _open(tab, served)
    await page.click("#pause-btn")
    await expect(page.locator("#state")).to_have_text("PAUSED")
    assert (await served.api.get("/strategy")).json()["state"] == "PAUSED"
    await expect(page.locator("#flash")).to_contain_text("pause: PAUSED")
    await page.click("#resume-btn")
    await expect(page.locator("#state")).to_have_text("RUNNING")
    assert (await served.api.get("/strategy")).json()["state"] == "RUNNING"


async def test_refused_transition_is_explained(tab: Tab, served: Served) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "PAUSED")
    page = await _open(tab, served)
    await expect(page.locator("#start-btn")).to_be_disabled()
    # a page that has not caught up yet (its Start still enabled): the server refuses and the page says why.
    # Enabled and clicked in one script turn: a banner frame arriving in between would disable it again.
    await page.evaluate(
        "(() => { const b = document.getElementById('start-btn'); b.disabled = false; b.click(); })()"
    )
    await expect(page.locator("#flash")).to_contain_text("start refused: PAUSED")
    await expect(page.locator("#state")).to_have_text("PAUSED")
    assert (await served.api.get("/strategy")).json()["state"] == "PAUSED"
    await ensure_state(served.api, "RUNNING")


async def test_config_form_sets_stall_T_ms(tab: Tab, served: Served) -> None:
    from playwright.async_api import expect

    page = await _open(tab, served)
    await page.fill('[name="strategy.stall_T_ms"]', "400")
    await page.click("#config-submit")
    await expect(page.locator("#config-result")).to_contain_text("applied: strategy.stall_T_ms")
    assert (await served.api.get("/config")).json()["strategy"]["stall_T_ms"] == 400
    await expect(page.locator('[data-running-for="strategy.stall_T_ms"]')).to_have_text("400")


async def test_invalid_value_is_refused_inline(tab: Tab, served: Served) -> None:
    from playwright.async_api import expect

    before = (await served.api.get("/config")).json()
    page = await _open(tab, served)
    await page.fill('[name="strategy.stall_T_ms"]', "-5")
    await page.click("#config-submit")
    error = page.locator('[data-error-for="strategy.stall_T_ms"]')
    await expect(error).to_have_text("stall_T_ms must be at least 1 ms")
    await expect(page.locator("#config-result")).to_contain_text("refused")
    await expect(page.locator('[name="strategy.stall_T_ms"]')).to_have_class(_INVALID)
    assert (await served.api.get("/config")).json() == before

    # the next submit clears the old message and marks the field that is wrong now
    await page.fill('[name="strategy.stall_T_ms"]', str(before["strategy"]["stall_T_ms"]))
    await page.fill('[name="risk.trading_day_tz"]', "Mars/Olympus")
    await page.click("#config-submit")
    await expect(page.locator('[data-error-for="risk.trading_day_tz"]')).to_contain_text("unknown time zone")
    await expect(error).to_have_text("")
    assert (await served.api.get("/config")).json() == before


_INVALID = __import__("re").compile(r"\binvalid\b")


async def test_stream_break_is_shown_and_healed(tab: Tab, served: Served) -> None:
    page = await _open(tab, served)
    assert served.app.state.broadcaster.client_count >= 1
    served.app.state.broadcaster.disconnect_all("test: server-side break")
    # the banner shows while the stream is down (about a second: the server asks for a 1 s retry)
    await page.wait_for_function("() => !document.getElementById('stream-status').hidden", timeout=15_000)
    assert "reconnecting" in (await page.locator("#stream-status").text_content() or "")
    await page.wait_for_function("() => document.getElementById('stream-status').hidden", timeout=20_000)
    assert await page.get_attribute("body", "data-stream") == "open"
    first = await page.locator("#best-age").text_content()
    await page.wait_for_function(  # live again
        "first => document.getElementById('best-age').textContent !== first", arg=first, timeout=10_000
    )


async def test_phone_layout_fits_the_screen(browser: Any, served: Served) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "RUNNING")
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    try:
        await page.goto(served.base + "/")
        await expect(page.locator("#best-bid")).to_have_text(_DIGITS, timeout=30_000)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"page is {overflow}px wider than a phone screen"
        for button in ("#kill-btn", "#stop-btn"):
            await expect(page.locator(button)).to_be_visible()
            box = await page.locator(button).bounding_box()
            assert (
                box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] >= 36
            )
        # state, controls and PnL first; the board and the tables after
        tops = {
            name: (await page.locator(f".panel-{name}").bounding_box() or {"y": 1e9})["y"]
            for name in ("banner", "inventory", "board", "fills")
        }
        assert tops["banner"] < tops["inventory"] < tops["board"] < tops["fills"], tops
        assert tops["inventory"] < 844, "position & PnL must be on the first screen"
        if os.environ.get("STST_SCREENSHOT") == "1":  # the README's phone picture, on request only
            await page.screenshot(path=str(SCREENSHOT.with_name("dashboard-phone.png")), full_page=False)
        # a wide table scrolls inside its panel, never past the screen
        for panel in ("fills", "decisions", "orders"):
            box = await page.locator(f"#{panel}").bounding_box()
            assert box is not None and box["x"] + box["width"] <= 390
    finally:
        await context.close()


async def test_kill_limit_meters_say_how_much_is_used_and_left(tab: Tab, served: Served) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "RUNNING")
    page = await _open(tab, served)
    limits = (await served.api.get("/state")).json()["limits"]
    pnl = page.locator("#limit-pnl")
    await expect(pnl).to_contain_text(f"kill at {int(limits['daily_pnl_jpy']):,} JPY")
    await expect(pnl.locator(".limit-used")).to_have_text(__import__("re").compile(r"^\d{1,3} %$"))
    await expect(pnl.locator(".limit-left")).to_have_text(__import__("re").compile(r"^[\d,]+ JPY$"))
    await expect(page.locator("#limit-dd .limit-left")).to_have_text(
        __import__("re").compile(r"^[\d,]+ JPY$")
    )


async def test_times_are_the_trading_days_and_the_chart_legend_shows_the_latest_mid(
    tab: Tab, served: Served
) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "RUNNING")
    page = await _open(tab, served)
    await expect(page.locator("#since")).to_have_text(__import__("re").compile(r"^\d\d:\d\d:\d\d JST$"))
    await expect(page.locator("#chart-note")).to_contain_text("Asia/Tokyo")
    # the mid series' legend value is a number, not uPlot's "--", without the pointer on the chart
    value = page.locator("#chart-mid .u-legend .u-series:nth-child(2) .u-value")
    await expect(value).to_have_text(__import__("re").compile(r"^[\d,]+(\.\d+)?$"), timeout=15_000)


async def test_a_page_that_lost_its_server_dims_and_disables_its_buttons(
    browser: Any, served: Served
) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "RUNNING")
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        await page.goto(served.base + "/")
        await expect(page.locator("body")).to_have_attribute("data-stream", "open", timeout=30_000)
        await expect(page.locator("#kill-btn")).to_be_enabled()
        # the server is gone: its stream ends and no reconnect gets through
        await context.set_offline(True)
        served.app.state.broadcaster.disconnect_all("test: the server goes away")
        await expect(page.locator("body")).to_have_attribute("data-stream", "broken", timeout=30_000)
        for button in ("#kill-btn", "#stop-btn", "#pause-btn"):
            await expect(page.locator(button)).to_be_disabled()
        await expect(page.locator("#controls-hint")).to_contain_text("server unreachable")
        opacity = await page.evaluate("getComputedStyle(document.querySelector('.panel-inventory')).opacity")
        assert float(opacity) < 1
        await context.set_offline(False)
        await expect(page.locator("body")).to_have_attribute("data-stream", "open", timeout=30_000)
        await expect(page.locator("#kill-btn")).to_be_enabled()
    finally:
        await context.close()


async def test_screenshot_for_the_readme(tab: Tab, served: Served, tmp_path: Path) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "RUNNING")
    page = await _open(tab, served)
    await expect(page.locator("#chart-mid .uplot")).to_have_count(1, timeout=10_000)
    # the README's picture is refreshed only on request (STST_SCREENSHOT=1), so a test run leaves the tree
    # clean
    target = SCREENSHOT if os.environ.get("STST_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
    target.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


async def test_config_form_follows_a_curl_patch_and_marks_what_differs_from_the_file(
    tab: Tab, served: Served
) -> None:
    from playwright.async_api import expect

    page = await _open(tab, served)
    in_file = (await served.api.get("/config/file")).json()["strategy"]
    label = page.locator('label[for="cfg-strategy.stall_T_ms"]')
    await expect(label).to_contain_text("(ms)")
    await expect(label).to_contain_text("1 – 3,600,000 ms")
    await expect(page.locator('label[for="cfg-strategy.size_min"]')).to_contain_text("> 0 and ≤ 100 BTC")

    stall = page.locator('[name="strategy.stall_T_ms"]')
    mark = page.locator('[data-differs-for="strategy.stall_T_ms"]')
    target = in_file["stall_T_ms"] + 200
    r = await served.api.patch("/config", json={"strategy": {"stall_T_ms": target}})  # as curl would
    assert r.status_code == 200, r.text
    await expect(stall).to_have_value(str(target), timeout=15_000)  # the config panel's next SSE frame
    await expect(mark).to_be_visible()
    await expect(mark).to_contain_text(f"≠ file ({in_file['stall_T_ms']})")
    await expect(stall).to_have_class(_DIFFERS)

    # a field the user is typing in is left alone: the mark says what runs instead
    ttl = page.locator('[name="strategy.ttl_ms"]')
    await ttl.fill("777")
    r = await served.api.patch("/config", json={"strategy": {"ttl_ms": in_file["ttl_ms"] + 1}})
    assert r.status_code == 200, r.text
    ttl_mark = page.locator('[data-differs-for="strategy.ttl_ms"]')
    await expect(ttl_mark).to_contain_text(f"edited; running {in_file['ttl_ms'] + 1}", timeout=15_000)
    await expect(ttl).to_have_value("777")
    await page.click("#config-revert")  # discard the edit: back to the running value
    await expect(ttl).to_have_value(str(in_file["ttl_ms"] + 1))


_DIFFERS = __import__("re").compile(r"\bdiffers-file\b")


async def test_revert_to_file_restores_the_file_values_and_the_audit_panel_says_who(
    tab: Tab, served: Served
) -> None:
    from playwright.async_api import expect

    in_file = (await served.api.get("/config/file")).json()["strategy"]
    r = await served.api.patch("/config", json={"strategy": {"stall_T_ms": in_file["stall_T_ms"] + 300}})
    assert r.status_code == 200, r.text
    page = await _open(tab, served)
    stall = page.locator('[name="strategy.stall_T_ms"]')
    await expect(stall).to_have_value(str(in_file["stall_T_ms"] + 300), timeout=15_000)
    await expect(page.locator("#audit-rows tr").first).to_contain_text("strategy.stall_T_ms", timeout=15_000)

    page.once("dialog", lambda d: __import__("asyncio").ensure_future(d.accept()))
    await page.click("#config-revert-file")
    await expect(page.locator("#config-result")).to_contain_text("reverted to file")
    await expect(stall).to_have_value(str(in_file["stall_T_ms"]))
    await expect(page.locator('[data-differs-for="strategy.stall_T_ms"]')).to_be_hidden()
    assert (await served.api.get("/config")).json()["strategy"] == in_file
    newest = page.locator('#audit-rows tr[data-audit-field="strategy.stall_T_ms"]').first
    await expect(newest).to_contain_text("dashboard (127.0.0.1")
    await expect(newest).to_contain_text("(revert)")
    await expect(newest.locator("td").nth(4)).to_have_text(str(in_file["stall_T_ms"]))


async def test_history_page_charts_the_days_and_pages_through_filtered_trades(
    tab: Tab, served: Served
) -> None:
    from playwright.async_api import expect

    log_dir = served.app.state.service.log_dir
    write_history(log_dir)
    page = tab.page
    await page.goto(served.base + "/")
    await page.click("#history-link")
    await expect(page.locator('#days-rows tr[data-day="20260105"]')).to_contain_text("2 %")
    await expect(page.locator('#days-rows tr[data-day="20260106"]')).to_contain_text("-310.5")
    await expect(page.locator("#chart-equity .uplot")).to_have_count(1)
    assert int(await page.get_attribute("#chart-equity", "data-points") or 0) >= 2

    await page.select_option("#filter-day", "20260106")
    await page.select_option("#filter-limit", "25")
    await page.click("#filter-apply")
    rows = page.locator("#trade-rows tr")
    await expect(rows).to_have_count(25)
    await expect(rows.first).to_have_attribute("data-exec-id", "20260106-59")
    seen = set()
    for expected_first, count in (("20260106-59", 25), ("20260106-34", 25), ("20260106-9", 10)):
        await expect(rows.first).to_have_attribute("data-exec-id", expected_first)
        await expect(rows).to_have_count(count)
        seen |= {await r.get_attribute("data-exec-id") for r in await rows.all()}
        if count == 25:
            await page.click("#page-older")
    assert len(seen) == 60
    await expect(page.locator("#page-older")).to_be_disabled()
    await expect(page.locator("#page-note")).to_contain_text("(last)")

    await page.select_option("#filter-side", "SELL")
    await page.fill("#filter-tag", "close")
    await page.click("#filter-apply")
    await expect(rows).to_have_count(25)
    assert {await r.locator("td").nth(1).text_content() for r in await rows.all()} == {"SELL"}
    assert {await r.locator("td").nth(5).text_content() for r in await rows.all()} == {"close"}

    assert tab.console_errors == []
    # a filter the server refuses (422; the browser logs the status) is explained beside the filters
    await page.fill("#filter-tag", "no spaces")
    await page.click("#filter-apply")
    await expect(page.locator("#filter-error")).to_contain_text("tag must be 1 to 40 letters")


def write_history(log_dir: Path) -> None:
    """Two past trading days through the project's own loggers (the bot trades today beside them)."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from bot.infra.daily_summary import DailySummaryFile
    from bot.infra.logging_structured import CsvLogWriter, TradeLogger
    from bot.types.dto import Side, TradeLogRow

    def row(day: str, i: int, side: Side, tag: str, pnl: str) -> TradeLogRow:
        start = datetime.strptime(day, "%Y%m%d").replace(hour=10, tzinfo=ZoneInfo("Asia/Tokyo"))
        return TradeLogRow(
            ts=(start + timedelta(seconds=i)).astimezone(UTC),
            order_id=f"JRF-{day}-{i}",
            side=side,
            price=Decimal("13600000"),
            size=Decimal("0.001"),
            fee=Decimal(0),
            strategy="stall_then_strike",
            tag=tag,
            pnl_jpy=Decimal(pnl),
            pnl_cum_jpy=Decimal(0),
            inventory_after=Decimal(0),
            exec_id=f"{day}-{i}",
        )

    rows = [
        row("20260105", i, Side.BUY, "stall", "1" if i == 0 else "-1" if i < 50 else "0") for i in range(51)
    ]
    rows += [
        row("20260106", i, Side.SELL if i % 2 else Side.BUY, "close" if i % 2 else "stall", str(i))
        for i in range(60)
    ]
    writer = CsvLogWriter(linger_s=0)
    log = TradeLogger(log_dir, "stall_then_strike", writer=writer)
    for r in rows:
        log.log(r)
    assert log.close()
    writer.stop()
    DailySummaryFile(log_dir).record_day_sync("20260106", Decimal("-310.5"))


async def test_kill_asks_first_then_flattens(tab: Tab, served: Served) -> None:
    from playwright.async_api import expect

    await ensure_state(served.api, "RUNNING")
    page = await _open(tab, served)
    messages: list[str] = []

    async def dismiss(dialog: Any) -> None:
        messages.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    await page.click("#kill-btn")
    assert messages and "KILL" in messages[0]
    assert (await served.api.get("/strategy")).json()["state"] == "RUNNING"  # said no: nothing happened

    async def accept(dialog: Any) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await page.click("#kill-btn")
    await expect(page.locator("#state")).to_have_text("KILLED", timeout=30_000)
    assert (await served.api.get("/strategy")).json()["state"] == "KILLED"
    # the answer says what the kill did and who did it (not an address), and the banner says why it is idle
    await expect(page.locator("#flash")).to_contain_text("kill: KILLED — kill by dashboard: ")
    await expect(page.locator("#activity")).to_have_attribute("data-activity", "blocked")
    await expect(page.locator("#activity-detail")).to_contain_text("KILLED: killed by dashboard")
    await expect(page.locator("#settle-report")).to_contain_text("kill by dashboard: ")
    await expect(page.locator("#start-btn")).to_be_disabled()
    await expect(page.locator("#controls-hint")).to_contain_text("press Reset")
    service = served.app.state.service
    key = service.cfg.sim.api_key
    assert service.venue.ledger.open_orders(key) == []
    assert service.venue.ledger.position(key) == 0
    await expect(page.locator("#reset-btn")).to_be_visible()
    await expect(page.locator("#kill-btn")).to_be_disabled()


async def test_a_first_paper_start_names_a_hand_position_and_adopts_it_only_when_confirmed(
    browser: Any, tmp_path: Path
) -> None:
    """paper mode, STOPPED: the preflight finds a position opened by hand; Start asks in a confirm box that
    names it; no → still STOPPED; yes → RUNNING."""
    from playwright.async_api import expect

    from bot.sim import SimVenue
    from tests.conftest import make_config
    from tests.conftest_server import wait_until

    public = SimVenue(make_config().sim.model_copy(update={"seed": 11, "activity": 4.0}))
    await public.start()
    log_dir = tmp_path / "logs"
    cfg = sim_config(
        log_dir, env="paper", exchange={"ws_url": public.ws_url}, runner={"start_state": "stopped"}
    )
    app = build_app(cfg, log_dir)
    try:
        async with uvicorn_server(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as api:
            paper = app.state.service.venue

            async def paper_book() -> bool:
                return paper.exchange.book.best_ask() is not None

            await wait_until(paper_book, 30, "the paper venue's first snapshot of the feed")
            paper.hand_order("BUY", "0.002")
            assert paper.ledger.position(paper.api_key) != 0
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            try:
                await page.goto(base + "/")
                await expect(page.locator("body")).to_have_attribute("data-stream", "open", timeout=30_000)
                await expect(page.locator("#state")).to_have_text("STOPPED")
                messages: list[str] = []

                async def dismiss(dialog: Any) -> None:
                    messages.append(dialog.message)
                    await dialog.dismiss()

                page.once("dialog", dismiss)
                await page.click("#start-btn")
                await expect(page.locator("#flash")).to_contain_text(
                    "start cancelled: the position was not adopted"
                )
                assert messages and "long 0.002 BTC" in messages[0] and "Adopt it" in messages[0]
                assert (await api.get("/strategy")).json()["state"] == "STOPPED"

                async def accept(dialog: Any) -> None:
                    await dialog.accept()

                page.once("dialog", accept)
                await page.click("#start-btn")
                await expect(page.locator("#state")).to_have_text("RUNNING", timeout=30_000)
                assert (await api.get("/strategy")).json()["state"] == "RUNNING"
            finally:
                await context.close()
    finally:
        await public.stop()
