"""The last of the hostile-client findings: symlinked downloads, huge and trickled bodies, frames whose
channel is not a name, and a missing scripts folder — each a clear refusal, never a 500 or a crash."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
from loguru import logger

from server import app as app_module
from tests.conftest_server import asgi_client, build_app, sim_config, uvicorn_server


async def test_downloads_refuse_symlinks_inside_and_out(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$not-for-you\n")
    async with asgi_client(build_app(sim_config(log_dir), log_dir)) as client:
        (log_dir / "trades").mkdir(parents=True, exist_ok=True)
        (log_dir / "trades" / "trades-20990101.csv").symlink_to(secret)
        (log_dir / "runtime").mkdir(parents=True, exist_ok=True)
        (log_dir / "runtime" / "leak.log").symlink_to(secret)
        for url in ("/logs/trades/20990101.csv", "/logs/runtime/leak.log"):
            r = await client.get(url)
            assert r.status_code == 404 and "not-for-you" not in r.text, url
        index = (await client.get("/logs")).json()
        assert "20990101" not in index["trades"] and "leak.log" not in index["runtime"]


async def test_a_huge_body_is_refused_before_it_is_read_and_a_trickled_one_at_a_deadline(
    tmp_path: Path,
) -> None:
    app = build_app(sim_config(tmp_path), tmp_path)
    async with uvicorn_server(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        before = (await client.get("/config")).json()
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                f"PATCH /config HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
            ).encode()
            + b"{" * 1024
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # answered without the other 100 MB
        assert head.startswith(b"HTTP/1.1 413")
        writer.close()

        async def chunked() -> object:  # no length: counted as it streams
            yield b'{"strategy": {"stall_T_ms": 500}, "pad": "'
            for _ in range(200):
                yield b"x" * 1024
            yield b'"}'

        with contextlib.suppress(httpx.HTTPError):  # the server may stop reading once it has answered
            r = await client.patch("/config", content=chunked(), headers={"Content-Type": "application/json"})
            assert r.status_code == 413
        assert (await client.get("/config")).json() == before

        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # half a body, then silence
        writer.write(
            (
                f"PATCH /config HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                'Content-Length: 40\r\n\r\n{"strategy":'
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 408")
        writer.close()
        assert (await client.get("/config")).json() == before
        ok = await client.patch("/config", json={"strategy": {"stall_T_ms": 500}})
        assert ok.status_code == 200, ok.text


async def test_a_frame_whose_channel_is_not_a_name_is_skipped_with_a_line(make_service) -> None:
    svc = await make_service()
    runner = svc.runner
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    try:
        for channel in (7, None, ["lightning_board_FX_BTC_JPY"], {"a": 1}):
            frame = {"jsonrpc": "2.0", "method": "channelMessage", "params": {"channel": channel}}
            runner.feed.on_json(frame)
    finally:
        logger.remove(sink)
    assert sum("channel is not a name" in line for line in lines) == 4
    assert not any("Traceback" in line for line in lines)


async def test_missing_dashboard_scripts_are_a_404_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(app_module, "NODE_MODULES", tmp_path / "no-node-modules")
    async with asgi_client(build_app(sim_config(tmp_path), tmp_path)) as client:
        r = await client.get("/static/vendor/htmx/htmx.min.js")
        assert r.status_code == 404 and "make js" in r.json()["detail"]
