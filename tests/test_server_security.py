"""SPEC §12 against the real app: Host and Origin checks, the token (Bearer and login cookie), the loopback
rule."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from loguru import logger

from server.dotenv import load_env_file, parse_env
from server.security import is_loopback_bind, split_host_header
from tests.conftest_server import ASGI_PORT, ROOT, asgi_client, build_app, ensure_state, sim_config

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")  # the two apps live for the whole module
TOKEN = "t0ken-for-tests-6d1f0c2a9b"
ORIGIN = f"http://127.0.0.1:{ASGI_PORT}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def open_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    log_dir = tmp_path_factory.mktemp("sec-open")
    async with asgi_client(build_app(sim_config(log_dir), log_dir)) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def token_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    log_dir = tmp_path_factory.mktemp("sec-token")
    app = build_app(sim_config(log_dir), log_dir, token=TOKEN)
    async with asgi_client(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture(autouse=True)
def fresh_throttle(request: pytest.FixtureRequest) -> None:
    """Each test guesses from a clean slate: the wrong-token throttle has its own tests."""
    if "token_app" in request.fixturenames:
        from server.security import FailureThrottle

        request.getfixturevalue("token_app").app.state.security.throttle = FailureThrottle()


@pytest.fixture
def runtime_log() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)


async def _state(client: httpx.AsyncClient, **kw: Any) -> str:
    return (await client.get("/strategy", **kw)).json()["state"]


# ---- cross-origin requests ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://127.0.0.1:{ASGI_PORT + 1}"},
        {"Origin": f"https://evil.example:{ASGI_PORT}"},
        {"Referer": "http://evil.example/attack.html"},
        {"Origin": "http://evil.example", "Referer": f"{ORIGIN}/"},
    ],
)
@MODULE_LOOP
async def test_cross_origin_post_is_refused_and_changes_nothing(
    open_app: httpx.AsyncClient, headers: dict
) -> None:
    await ensure_state(open_app, "RUNNING")
    r = await open_app.post("/strategy/pause", headers=headers)
    assert r.status_code == 403
    assert await _state(open_app) == "RUNNING"
    r = await open_app.post("/strategy/kill", headers=headers)
    assert r.status_code == 403
    assert await _state(open_app) == "RUNNING"


@MODULE_LOOP
async def test_cross_origin_config_patch_is_refused(open_app: httpx.AsyncClient) -> None:
    before = (await open_app.get("/config")).json()
    r = await open_app.patch(
        "/config", json={"strategy": {"stall_T_ms": 999}}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    assert (await open_app.get("/config")).json() == before


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl: no Origin, no Referer
        {"Origin": ORIGIN},
        {"Origin": f"http://localhost:{ASGI_PORT}"},
        {"Referer": f"{ORIGIN}/"},
    ],
)
@MODULE_LOOP
async def test_same_origin_and_scripts_are_allowed(open_app: httpx.AsyncClient, headers: dict) -> None:
    await ensure_state(open_app, "RUNNING")
    r = await open_app.post("/strategy/pause", headers=headers)
    assert r.status_code == 200 and r.json()["state"] == "PAUSED"
    r = await open_app.post("/strategy/resume", headers=headers)
    assert r.status_code == 200 and r.json()["state"] == "RUNNING"


# ---- DNS rebinding: Host header ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        f"evil.example:{ASGI_PORT}",
        f"127.0.0.1:{ASGI_PORT + 1}",
        f"127.0.0.2:{ASGI_PORT}",
        f"localhost.evil.example:{ASGI_PORT}",
        "",
        f"127.0.0.1:{ASGI_PORT}@evil.example",
    ],
)
@MODULE_LOOP
async def test_foreign_host_is_400(open_app: httpx.AsyncClient, host: str) -> None:
    await ensure_state(open_app, "RUNNING")
    assert (await open_app.get("/state", headers={"Host": host})).status_code == 400
    assert (await open_app.post("/strategy/pause", headers={"Host": host})).status_code == 400
    assert await _state(open_app) == "RUNNING"


@pytest.mark.parametrize("host", [f"127.0.0.1:{ASGI_PORT}", f"localhost:{ASGI_PORT}", f"[::1]:{ASGI_PORT}"])
@MODULE_LOOP
async def test_own_host_names_are_accepted(open_app: httpx.AsyncClient, host: str) -> None:
    assert (await open_app.get("/strategy", headers={"Host": host})).status_code == 200


# ---- token --------------------------------------------------------------------------------------------
PROTECTED = [
    "/",
    "/state",
    "/strategy",
    "/config",
    "/events",
    "/logs",
    "/metrics",
    "/openapi.json",
    "/static/app.css",
    "/static/vendor/htmx/htmx.min.js",
    "/logs/runtime/app.log",
]


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer ", TOKEN])
@MODULE_LOOP
async def test_without_the_token_nothing_is_served(
    token_app: httpx.AsyncClient, path: str, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    r = await token_app.get(path, headers=headers, follow_redirects=False)
    if path == "/":
        assert r.status_code == 303 and r.headers["location"] == "/login"
    else:
        assert r.status_code == 401, path


@MODULE_LOOP
async def test_without_the_token_no_control(token_app: httpx.AsyncClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    await ensure_state_with(token_app, bearer)
    for headers in ({}, {"Authorization": "Bearer nope"}):
        assert (await token_app.post("/strategy/kill", headers=headers)).status_code == 401
        assert (
            await token_app.patch("/config", json={"strategy": {"stall_T_ms": 7}}, headers=headers)
        ).status_code == 401
    assert await _state(token_app, headers=bearer) == "RUNNING"
    assert (await token_app.get("/config", headers=bearer)).json()["strategy"]["stall_T_ms"] != 7


async def ensure_state_with(client: httpx.AsyncClient, headers: dict) -> None:
    client.headers.update(headers)
    try:
        await ensure_state(client, "RUNNING")
    finally:
        for k in headers:
            client.headers.pop(k)


@MODULE_LOOP
async def test_bearer_token_works(token_app: httpx.AsyncClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await token_app.get("/state", headers=bearer)).status_code == 200
    r = await token_app.post("/strategy/pause", headers=bearer)
    assert r.status_code == 200 and r.json()["state"] == "PAUSED"
    assert (await token_app.post("/strategy/resume", headers=bearer)).json()["state"] == "RUNNING"
    assert (await token_app.get("/static/app.css", headers=bearer)).status_code == 200


@MODULE_LOOP
async def test_healthz_and_login_page_need_no_token(token_app: httpx.AsyncClient) -> None:
    assert (await token_app.get("/healthz")).status_code == 200
    r = await token_app.get("/login")
    assert r.status_code == 200 and 'name="token"' in r.text


@MODULE_LOOP
async def test_cookie_login(token_app: httpx.AsyncClient, runtime_log: list[str]) -> None:
    token_app.cookies.clear()
    bad = await token_app.post("/login", data={"token": "guess"}, follow_redirects=False)
    assert bad.status_code == 401 and "wrong token" in bad.text
    assert "stst_session" not in bad.headers.get("set-cookie", "")

    ok = await token_app.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"].lower()
    assert "stst_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert TOKEN.lower() not in cookie  # the cookie is a session id, not the token

    page = await token_app.get("/")
    assert page.status_code == 200 and 'id="state"' in page.text
    assert (await token_app.get("/state")).status_code == 200
    assert (await token_app.post("/strategy/pause", headers={"Origin": ORIGIN})).json()["state"] == "PAUSED"
    assert (await token_app.post("/strategy/resume", headers={"Origin": ORIGIN})).json()["state"] == "RUNNING"

    # cross-origin stays refused even with a valid session: the cookie alone is not consent
    assert (
        await token_app.post("/strategy/kill", headers={"Origin": "http://evil.example"})
    ).status_code == 403
    assert await _state(token_app) == "RUNNING"

    assert (await token_app.post("/logout", follow_redirects=False)).status_code == 303
    token_app.cookies.clear()
    assert (await token_app.get("/state")).status_code == 401
    assert not any(TOKEN in line for line in runtime_log)


@MODULE_LOOP
async def test_token_is_never_in_a_response(token_app: httpx.AsyncClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in (
        "/",
        "/state",
        "/config",
        "/strategy",
        "/metrics",
        "/logs",
        "/openapi.json",
        "/login",
        "/healthz",
    ):
        assert TOKEN not in (await token_app.get(path, headers=bearer)).text, path


# ---- the command line -------------------------------------------------------------------------------------
def _run_server_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STST_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "--config",
            str(ROOT / "configs" / "base.yml"),
            "--override",
            str(ROOT / "configs" / "sim.yml"),
            "--env-file",
            str(tmp_path / "none.env"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_cli_refuses_a_public_bind_without_token(tmp_path: Path, host: str) -> None:
    done = _run_server_cli(["--host", host, "--port", "0"], tmp_path)
    assert done.returncode == 2
    assert "STST_TOKEN" in done.stderr and host in done.stderr


def test_cli_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("strategy:\n  stall_T_ms: -1\n", encoding="utf-8")
    done = _run_server_cli(["--override", str(bad)], tmp_path)
    assert done.returncode == 1 and "strategy.stall_T_ms" in done.stderr


# ---- small pure parts ---------------------------------------------------------------------------------
def test_env_file_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "# secrets\nexport STST_TOKEN='abc def'\n"
        "BITFLYER_API_KEY=key # comment\nBROKEN\nBITFLYER_API_SECRET=\n"
    )
    assert parse_env(text) == {"STST_TOKEN": "abc def", "BITFLYER_API_KEY": "key", "BITFLYER_API_SECRET": ""}
    env = tmp_path / ".env"
    env.write_text(text, encoding="utf-8")
    monkeypatch.delenv("STST_TOKEN", raising=False)
    monkeypatch.setenv("BITFLYER_API_KEY", "from-environment")
    assert load_env_file(env) == ["STST_TOKEN"]  # the real environment wins; empty values are skipped
    assert os.environ["STST_TOKEN"] == "abc def" and os.environ["BITFLYER_API_KEY"] == "from-environment"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("[::1]:8000", ("[::1]", 8000)),
        ("LocalHost", ("localhost", None)),
        ("a:b", None),
        ("[::1", None),
        ("x/y:80", None),
        ("", None),
        ("h:80:81", None),
    ],
)
def test_host_header_parsing(value: str, parsed: tuple | None) -> None:
    assert split_host_header(value) == parsed


def test_loopback_binds() -> None:
    assert all(is_loopback_bind(h) for h in ("127.0.0.1", "localhost", "::1", "127.1.2.3"))
    assert not any(is_loopback_bind(h) for h in ("0.0.0.0", "::", "192.168.1.20", "example.com"))


def test_cli_live_without_keys_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("BITFLYER_API_KEY", "BITFLYER_API_SECRET"):
        monkeypatch.delenv(key, raising=False)
    done = _run_server_cli(
        [
            "--override",
            str(ROOT / "configs" / "live.yml"),
            "--port",
            "0",
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        tmp_path,
    )
    assert done.returncode != 0
    assert "BITFLYER_API_KEY" in done.stderr and "refusing to start" in done.stderr


def test_sessions_are_signed_expire_and_survive_a_restart() -> None:
    from server.security import SESSION_MAX_AGE, Security

    now = 1_800_000_000.0
    sec = Security.build(TOKEN, ports=[8000], hosts=[])
    value = sec.new_session(now=now)
    assert TOKEN not in value
    assert sec.session_valid(value, now=now + 60)
    assert Security.build(TOKEN, ports=[8000], hosts=[]).session_valid(
        value, now=now + 60
    )  # a restarted server
    assert not Security.build("another-token", ports=[8000], hosts=[]).session_valid(value, now=now)
    assert not sec.session_valid(value, now=now + SESSION_MAX_AGE + 1)
    issued, nonce, sig = value.split(".")
    flipped = sig[:-1] + ("1" if sig[-1] == "0" else "0")
    for forged in (
        f"{int(issued) + 1}.{nonce}.{sig}",
        f"{issued}.x{nonce}.{sig}",
        f"{issued}.{nonce}.{flipped}",
        "",
        "..",
        f"{issued}.{nonce}",
    ):
        assert not sec.session_valid(forged, now=now), forged
    assert sec.end_session(value, now=now + 60)
    assert not sec.session_valid(value, now=now + 60)
