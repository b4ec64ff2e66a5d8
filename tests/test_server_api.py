"""The HTTP API against the real app and the real bot in sim mode (ASGITransport, lifespan run for real)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from bot.config import ConfigError, apply_live_patch, redacted_dump
from tests.conftest_server import asgi_client, build_app, ensure_state, sim_config, wait_for_board, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-logs")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app_client(log_dir: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = build_app(sim_config(log_dir), log_dir)
    async with asgi_client(app) as client:
        await wait_for_board(client)
        yield app, client


@pytest.fixture
def client(app_client: tuple[Any, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]


@pytest.fixture
def service(app_client: tuple[Any, httpx.AsyncClient]) -> Any:
    return app_client[0].state.service


@pytest.fixture
def runtime_log() -> Iterator[list[str]]:
    """What the server writes to the runtime log (loguru) during one test."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", format="{message}")
    yield lines
    logger.remove(sink)


async def _state(client: httpx.AsyncClient) -> str:
    return (await client.get("/strategy")).json()["state"]


async def _post(client: httpx.AsyncClient, action: str, **kw: Any) -> httpx.Response:
    return await client.post(f"/strategy/{action}", **kw)


# ---- status and snapshot -----------------------------------------------------------------------------------
async def test_status_says_state_reason_since_and_mode(client: httpx.AsyncClient) -> None:
    await ensure_state(client, "RUNNING")
    body = (await client.get("/strategy")).json()
    assert body["state"] == "RUNNING"
    assert body["mode"] == "sim"
    assert body["reason"]
    assert body["since"][:4].isdigit() and "T" in body["since"]


async def test_state_snapshot_has_everything_the_dashboard_shows(client: httpx.AsyncClient) -> None:
    snap = await wait_for_board(client)
    for key in (
        "state",
        "mode",
        "since",
        "board",
        "orders",
        "inventory",
        "limits",
        "health",
        "counters",
        "decisions",
        "fills",
        "chart",
        "config",
    ):
        assert key in snap, key
    board = snap["board"]
    assert int(board["best_ask"]) > int(board["best_bid"])
    assert board["spread_ticks"] >= 1
    assert 0 < len(board["bids"]) <= 10 and 0 < len(board["asks"]) <= 10
    assert snap["counters"]["board_messages"] > 0
    assert snap["health"]["ws_connected"] is True
    assert set(snap["config"]) == {"strategy", "risk"}
    json.dumps(snap)  # JSON-able all the way down


async def test_healthz_answers(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_api_schema_is_served_locally(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/docs", follow_redirects=True)).json()
    assert {"/strategy/kill", "/config", "/logs/{kind}/{filename}", "/state"} <= set(schema["paths"])
    assert "application/merge-patch+json" in schema["paths"]["/config"]["patch"]["requestBody"]["content"]


async def test_dashboard_page_and_its_assets_come_from_this_app(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert 'sse-connect="/events"' in page
    for panel in ("banner", "board", "orders", "inventory", "decisions", "fills", "health", "config"):
        assert f'sse-swap="{panel}"' in page, panel
    for el in (
        'id="kill-btn"',
        'id="pause-btn"',
        'id="best-age"',
        'name="strategy.stall_T_ms"',
        'id="config-errors"',
    ):
        assert el in page, el
    assert (
        "http://" not in page.replace("http://127.0.0.1", "") and "https://" not in page
    )  # nothing off-site
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    for asset in (
        "/static/vendor/htmx/htmx.min.js",
        "/static/vendor/htmx-ext-sse/sse.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/uPlot.min.css",
        "/static/dashboard.js",
        "/static/app.css",
    ):
        assert f'"{asset}"' in page, asset
        got = await client.get(asset)
        assert got.status_code == 200 and len(got.content) > 500, asset
    for escape in ("/static/vendor/htmx/..%2F..%2Fpackage.json", "/static/..%2Fserver%2Fapp.py"):
        assert (await client.get(escape)).status_code == 404, escape


# ---- life cycle --------------------------------------------------------------------------------------------
async def test_pause_resume_and_idempotent_repeats(client: httpx.AsyncClient, runtime_log: list[str]) -> None:
    await ensure_state(client, "RUNNING")
    r = await _post(client, "pause")
    assert r.status_code == 200
    assert r.json()["state"] == "PAUSED" and r.json()["changed"] is True
    again = await _post(client, "pause")
    assert again.status_code == 200 and again.json() == {**r.json(), "changed": False}
    assert await _state(client) == "PAUSED"

    refused = await _post(client, "start")
    assert refused.status_code == 409
    assert "PAUSED" in refused.json()["detail"]
    assert await _state(client) == "PAUSED"

    r = await _post(client, "resume")
    assert r.status_code == 200 and r.json()["state"] == "RUNNING" and r.json()["changed"] is True
    assert (await _post(client, "resume")).json()["changed"] is False
    r = await _post(client, "start")
    assert r.status_code == 200 and r.json()["state"] == "RUNNING" and r.json()["changed"] is False
    # who / what / old → new in the runtime log
    assert any(
        "control pause by api (127.0.0.1" in line and "RUNNING → PAUSED" in line for line in runtime_log
    )
    assert any("control start by api" in line and "refused in PAUSED" in line for line in runtime_log)


async def test_stop_cancels_everything_and_keeps_running_data(
    client: httpx.AsyncClient, service: Any
) -> None:
    await ensure_state(client, "RUNNING")
    r = await _post(client, "stop")
    assert r.status_code == 200 and r.json()["state"] == "STOPPED" and r.json()["changed"] is True
    key = service.cfg.sim.api_key
    assert service.venue.ledger.open_orders(key) == []  # confirmed before the answer came back
    assert (await _post(client, "stop")).json()["changed"] is False
    paused = await _post(client, "pause")
    assert paused.status_code == 409 and paused.json()["detail"]
    assert (await _post(client, "resume")).status_code == 409
    assert (await _post(client, "reset")).json() == {
        **(await client.get("/strategy")).json(),
        "changed": False,
    }
    snap = (await client.get("/state")).json()
    assert snap["state"] == "STOPPED" and snap["board"]["best_bid"] is not None  # market data keeps flowing
    r = await _post(client, "start")
    assert r.status_code == 200 and r.json()["state"] == "RUNNING"


async def test_kill_flattens_latches_and_only_reset_clears_it(
    client: httpx.AsyncClient, service: Any
) -> None:
    await ensure_state(client, "RUNNING")
    before = (await client.get("/strategy")).json()
    r = await _post(client, "kill")
    assert r.status_code == 200 and r.json()["state"] == "KILLED" and r.json()["changed"] is True
    assert r.json()["since"] != before["since"]
    key = service.cfg.sim.api_key
    assert service.venue.ledger.open_orders(key) == []
    assert service.venue.ledger.position(key) == 0
    assert (await _post(client, "kill")).json()["changed"] is False
    for action in ("start", "stop", "pause", "resume"):
        refused = await _post(client, action)
        assert refused.status_code == 409, action
        assert refused.json()["detail"]
        assert await _state(client) == "KILLED"
    r = await _post(client, "reset")
    assert r.status_code == 200 and r.json()["state"] == "STOPPED" and r.json()["changed"] is True
    assert (await _post(client, "start")).json()["state"] == "RUNNING"


async def test_unknown_action_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert (await _post(client, "explode")).status_code == 404
    assert (await client.get("/strategy/pause")).status_code == 405
    assert await _state(client) == "RUNNING"


async def test_dashboard_calls_are_logged_as_dashboard(
    client: httpx.AsyncClient, runtime_log: list[str]
) -> None:
    await ensure_state(client, "RUNNING")
    await _post(client, "pause", headers={"HX-Request": "true"})
    await _post(client, "resume", headers={"HX-Request": "true"})
    assert any("control pause by dashboard (127.0.0.1" in line for line in runtime_log)


# ---- config ---------------------------------------------------------------------------------------------
async def test_config_is_redacted(client: httpx.AsyncClient, service: Any) -> None:
    cfg = (await client.get("/config")).json()
    assert cfg["env"] == "sim"
    assert cfg["sim"]["api_secret"] == "**********"
    secret = service.cfg.sim.api_secret.get_secret_value()
    for path in ("/config", "/state", "/strategy", "/metrics", "/logs"):
        assert secret not in (await client.get(path)).text, path


async def test_patch_applies_to_the_running_bot(
    client: httpx.AsyncClient, service: Any, runtime_log: list[str]
) -> None:
    r = await client.patch("/config", content=b'{"strategy": {"stall_T_ms": 400}}', headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["changed"]["strategy.stall_T_ms"][1] == 400
    assert (await client.get("/config")).json()["strategy"]["stall_T_ms"] == 400
    assert service.runner.config.strategy.stall_T_ms == 400
    assert (await client.get("/state")).json()["config"]["strategy"]["stall_T_ms"] == 400
    assert any(
        "config change by api" in line and "strategy.stall_T_ms" in line and "→ 400" in line
        for line in runtime_log
    )

    # application/json works too; decimals stay exact
    r = await client.patch("/config", json={"strategy": {"size_min": 0.002}, "risk": {"max_dd_jpy": -15000}})
    assert r.status_code == 200, r.text
    cfg = (await client.get("/config")).json()
    assert cfg["strategy"]["size_min"] == "0.002"
    assert cfg["risk"]["max_dd_jpy"] == "-15000"
    assert (await client.get("/state")).json()["limits"]["max_dd_jpy"] == "-15000"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"strategy": {"stall_T_ms": 300, "ttl_ms": -1}}, "strategy.ttl_ms", "ttl_ms must be at least 1 ms"),
        ({"strategy": {"stall_T_ms": -5}}, "strategy.stall_T_ms", "stall_T_ms must be at least 1 ms"),
        ({"strategy": {"stall_T_ms": "soon"}}, "strategy.stall_T_ms", "must be a whole number of ms"),
        ({"strategy": {"nope": 1}}, "strategy.nope", "unknown"),
        ({"exchange": {"tick_size": 5}}, "exchange", "restart required"),
        ({"env": "live"}, "env", "restart required"),
        ({"risk": {"daily_pnl_jpy": 1000}}, "risk.daily_pnl_jpy", "daily_pnl_jpy must be below 0 JPY"),
        ({"strategy": {"size_min": "0.000000001"}}, "strategy.size_min", "0.00000001"),
    ],
)
async def test_bad_patch_is_refused_whole_with_field_messages(
    client: httpx.AsyncClient, body: dict, field: str, words: str
) -> None:
    before = (await client.get("/config")).json()
    r = await client.patch("/config", content=json.dumps(body), headers=MERGE)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert any(p["field"] == field and words in p["message"] for p in detail), detail
    assert (await client.get("/config")).json() == before


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"strategy": {"stall_T_ms": 4', "application/merge-patch+json", 400),
        (b'{"strategy": {"stall_T_ms": NaN}}', "application/json", 400),
        (b"", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b"{}", "application/json", 422),
        (b'{"strategy": {"stall_T_ms": 400}}', "text/plain", 415),
        (b"stall_T_ms=400", "application/x-www-form-urlencoded", 415),
    ],
)
async def test_malformed_patch_changes_nothing(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int
) -> None:
    before = (await client.get("/config")).json()
    r = await client.patch("/config", content=content, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    assert "detail" in r.json()
    assert (await client.get("/config")).json() == before


_values = st.one_of(
    st.integers(-10_000, 10_000),
    st.sampled_from(["0.001", "0.002", "-1", "x", "", "0.0015", "mid", "inside"]),
    st.booleans(),
    st.none(),
)
_fields = st.sampled_from(
    [
        ("strategy", "stall_T_ms"),
        ("strategy", "ttl_ms"),
        ("strategy", "min_spread_tick"),
        ("strategy", "size_min"),
        ("strategy", "max_inventory_btc"),
        ("strategy", "quote_mode"),
        ("strategy", "cancel_on_best_change"),
        ("risk", "daily_pnl_jpy"),
        ("risk", "max_dd_jpy"),
        ("exchange", "tick_size"),
        ("strategy", "bogus"),
    ]
)


@pytest_asyncio.fixture(loop_scope="module")
async def restore_hot_config(client: httpx.AsyncClient) -> AsyncIterator[None]:
    """Random patches must not leave the shared bot with odd settings for the tests after."""
    before = (await client.get("/config")).json()
    yield
    r = await client.patch("/config", json={"strategy": before["strategy"], "risk": before["risk"]})
    assert r.status_code == 200, r.text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_fields, _values), min_size=1, max_size=4))
async def test_any_patch_is_all_or_nothing(
    client: httpx.AsyncClient, service: Any, restore_hot_config: None, edits: list
) -> None:
    """Whatever the patch, the running config afterwards is exactly what validating it whole gives, or
    unchanged."""
    patch: dict[str, dict[str, Any]] = {}
    for (section, name), value in edits:
        patch.setdefault(section, {})[name] = value
    running = service.runner.config
    before = (await client.get("/config")).json()
    assert before == redacted_dump(running)
    try:
        expected = redacted_dump(
            apply_live_patch(running, json.loads(json.dumps(patch), parse_float=Decimal))
        )
    except ConfigError:
        expected = None
    r = await client.patch("/config", json=patch, headers=MERGE)
    after = (await client.get("/config")).json()
    if expected is None:
        assert r.status_code == 422
        assert r.json()["detail"] and all({"field", "message"} <= set(p) for p in r.json()["detail"])
        assert after == before
    else:
        assert r.status_code == 200, r.text
        assert after == expected == r.json()["config"]


# ---- logs -----------------------------------------------------------------------------------------------
async def test_log_index_and_downloads_equal_the_files(client: httpx.AsyncClient, log_dir: Path) -> None:
    (log_dir / "trades").mkdir(exist_ok=True)
    known = log_dir / "trades" / "trades-20260101.csv"
    known.write_text("ts,order_id,side\n2026-01-01T00:00:00.000+09:00,JRF1,BUY\n", encoding="utf-8")
    (log_dir / "runtime").mkdir(exist_ok=True)
    (log_dir / "runtime" / "app.log").write_text("2026-01-01 started\n", encoding="utf-8")

    index = (await client.get("/logs")).json()
    assert set(index) == {"trades", "orders", "decisions", "audit", "runtime"}
    assert "20260101" in index["trades"]
    assert "app.log" in index["runtime"]

    r = await client.get("/logs/trades/20260101.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="trades-20260101.csv"' in r.headers["content-disposition"]
    assert r.content == known.read_bytes()

    r = await client.get("/logs/runtime/app.log")
    assert r.status_code == 200 and r.content == b"2026-01-01 started\n"

    page = (await client.get("/")).text  # the dashboard links the same downloads
    assert 'href="/logs/trades/20260101.csv"' in page and 'href="/logs/runtime/app.log"' in page

    # today's files are still being written: the download is the file as it was when asked
    await wait_until(lambda: _has_decisions(client), 30, "a decisions CSV")
    for kind in ("decisions", "orders", "trades"):
        for day in (await client.get("/logs")).json()[kind]:
            path = log_dir / kind / f"{kind}-{day}.csv"
            disk_before = path.read_bytes()
            body = (await client.get(f"/logs/{kind}/{day}.csv")).content
            assert body.startswith(disk_before[: len(body)]) and len(body) >= len(disk_before)
            assert path.read_bytes().startswith(body)


async def _has_decisions(client: httpx.AsyncClient) -> bool:
    return bool((await client.get("/logs")).json()["decisions"])


@pytest.mark.parametrize(
    "path",
    [
        "/logs/trades/..%2F..%2Fstate.json",
        "/logs/trades/..%2Fstate.json",
        "/logs/..%2Fstate.json/20260101.csv",
        "/logs/trades/%2E%2E%2Fstate.json",
        "/logs/runtime/..%2Fstate.json",
        "/logs/runtime/%2E%2E",
        "/logs/runtime/.hidden",
        "/logs/secrets/20260101.csv",
        "/logs/state/20260101.csv",
        "/logs/trades/2026011.csv",
        "/logs/trades/20260101.txt",
        "/logs/trades/20260101.csv.bak",
        "/logs/trades/trades-20260101.csv",
        "/logs/trades/19990101.csv",
        "/logs/trades/20260101.csv%00",
    ],
)
async def test_anything_but_a_known_log_is_404(client: httpx.AsyncClient, log_dir: Path, path: str) -> None:
    (log_dir / "trades").mkdir(exist_ok=True)
    (log_dir / "trades" / "trades-20260101.csv").write_text("ts\n", encoding="utf-8")
    (log_dir / "runtime").mkdir(exist_ok=True)
    (log_dir / "runtime" / ".hidden").write_text("x", encoding="utf-8")
    r = await client.get(path)
    assert r.status_code == 404, path
    assert "kill_latch" not in r.text and '"inventory"' not in r.text


# ---- metrics --------------------------------------------------------------------------------------------
async def test_metrics_name_the_series(client: httpx.AsyncClient) -> None:
    await ensure_state(client, "RUNNING")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'stst_state{state="RUNNING"} 1.0' in text
    assert 'stst_state{state="KILLED"} 0.0' in text
    for series in (
        "stst_position_btc ",
        "stst_pnl_today_jpy ",
        "stst_realized_pnl_jpy ",
        "stst_drawdown_jpy ",
        "stst_orders_sent_total ",
        "stst_orders_cancelled_total ",
        "stst_fills_total ",
        "stst_board_messages_total ",
        "stst_event_loop_lag_seconds ",
        "stst_decision_latency_seconds_bucket{",
        "stst_decision_latency_seconds_count ",
        "stst_sse_clients ",
    ):
        assert series in text, series
    assert "# TYPE stst_exchange_errors_total counter" in text
    board_messages = next(line for line in text.splitlines() if line.startswith("stst_board_messages_total "))
    assert float(board_messages.split()[1]) > 0


async def test_each_app_has_its_own_registry(
    app_client: tuple[Any, httpx.AsyncClient], log_dir: Path
) -> None:
    from prometheus_client import REGISTRY, generate_latest

    other = build_app(sim_config(log_dir / "other"), log_dir / "other")  # not started: just built
    assert other.state.metrics_registry is not app_client[0].state.metrics_registry
    assert b"stst_" not in generate_latest(REGISTRY)
