"""Sessions that really end, malformed cookies, throttled guesses and the token length rule, against the real
app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from loguru import logger

from server.security import FailureThrottle
from tests.conftest_server import ROOT, asgi_client, build_app, sim_config

TOKEN = "t0ken-for-tests-6d1f0c2a9b"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def _login(client: httpx.AsyncClient) -> str:
    r = await client.post("/login", data={"token": TOKEN})
    assert r.status_code == 303, r.text
    return r.cookies["stst_session"]


async def test_a_logged_out_session_stays_dead_across_a_restart(tmp_path: Path) -> None:
    async with asgi_client(build_app(sim_config(tmp_path), tmp_path, token=TOKEN)) as client:
        r = await client.post("/logout")  # a stranger cannot churn the list
        assert r.status_code == 401
        cookie = await _login(client)
        client.cookies.clear()
        jar = {"stst_session": cookie}
        assert (await client.get("/state", cookies=jar)).status_code == 200
        r = await client.post("/logout", cookies=jar)
        assert r.status_code == 303
        assert (await client.get("/state", cookies=jar)).status_code == 401
    assert (tmp_path / "revoked-sessions.json").exists()
    async with asgi_client(build_app(sim_config(tmp_path), tmp_path, token=TOKEN)) as client:  # a restart
        assert (await client.get("/state", cookies={"stst_session": cookie})).status_code == 401
        fresh = await _login(client)
        client.cookies.clear()
        assert (await client.get("/state", cookies={"stst_session": fresh})).status_code == 200


@pytest.mark.parametrize(
    "cookie", [b"\xb2.n.s", b"9" * 4000 + b".nonce1234.abc", b"1.2.3", "\u00e9.\u00e9.\u00e9".encode()]
)
async def test_a_malformed_cookie_is_a_401_with_one_short_line(tmp_path: Path, cookie: bytes) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    try:
        async with asgi_client(build_app(sim_config(tmp_path), tmp_path, token=TOKEN)) as client:
            raw = {"Cookie": b"stst_session=" + cookie}
            for path in ("/state", "/static/dashboard.js", "/config"):
                r = await client.get(path, headers=raw)
                assert r.status_code == 401, (path, r.status_code, r.text)
            assert (await client.get("/", headers=raw)).status_code == 303
    finally:
        logger.remove(sink)
    assert not any("Traceback" in line or "failed" in line for line in lines)
    malformed = [line for line in lines if "malformed session cookie" in line]
    assert len(malformed) <= 1 and all(len(line) < 200 for line in malformed)


async def test_wrong_tokens_are_throttled_per_client_and_a_session_still_passes(tmp_path: Path) -> None:
    app = build_app(sim_config(tmp_path), tmp_path, token=TOKEN)
    now = [1000.0]
    app.state.security.throttle = FailureThrottle(limit=10, window=60, clock=lambda: now[0])
    async with asgi_client(app) as client:
        cookie = await _login(client)
        client.cookies.clear()
        for i in range(10):
            r = await client.get("/state", headers={"Authorization": f"Bearer wrong-{i}"})
            assert r.status_code == 401
        r = await client.get("/state", headers=BEARER)  # even the right one: no oracle
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
        r = await client.post("/login", data={"token": TOKEN})
        assert r.status_code == 429 and "Retry-After" in r.headers
        assert (await client.get("/state", cookies={"stst_session": cookie})).status_code == 200
        now[0] += 61
        assert (await client.get("/state", headers=BEARER)).status_code == 200


async def test_wrong_logins_are_throttled(tmp_path: Path) -> None:
    async with asgi_client(build_app(sim_config(tmp_path), tmp_path, token=TOKEN)) as client:
        for i in range(10):
            assert (await client.post("/login", data={"token": f"guess-{i}"})).status_code == 401
        r = await client.post("/login", data={"token": TOKEN})
        assert r.status_code == 429 and "try again in" in r.text
        assert "stst_session" not in r.cookies


@pytest.mark.parametrize("token", [" ", "short-token-15ch"[:15], "               x"])
def test_a_weak_token_is_refused_for_a_public_bind(tmp_path: Path, token: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STST_TOKEN"}
    env.update(PYTHONPATH=str(ROOT), STST_TOKEN=token)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "--override",
            str(ROOT / "configs" / "sim.yml"),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--env-file",
            str(tmp_path / "none.env"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "at least 16 characters" in done.stderr
