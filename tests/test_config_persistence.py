"""Live config changes last across a restart of the real app (saved beside the kill latch), each is audited
(who, when, old, new) in the audit CSV and GET /config/audit, and POST /config/revert returns the hot sections
to the config file's values."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from bot.infra.logging_structured import list_days
from tests.conftest_server import asgi_client, build_app, sim_config

pytestmark = pytest.mark.asyncio
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def runtime_log() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", format="{message}")
    yield lines
    logger.remove(sink)


def audit_csv_rows(log_dir: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for day in list_days(log_dir)["audit"]:
        with open(log_dir / "audit" / f"audit-{day}.csv", newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


async def test_a_live_change_survives_a_restart_and_is_audited(tmp_path: Path) -> None:
    cfg = sim_config(tmp_path)
    async with asgi_client(build_app(cfg, tmp_path)) as c:
        r = await c.patch("/config", content=json.dumps({"strategy": {"stall_T_ms": 450}}), headers=MERGE)
        assert r.status_code == 200, r.text
        # answered 200 = on disk: the audit row is there before any shutdown flush
        rows = audit_csv_rows(tmp_path)
        assert [(a["field"], a["old"], a["new"], a["action"]) for a in rows] == [
            ("strategy.stall_T_ms", "250", "450", "patch")
        ]
        assert rows[0]["who"].startswith("api (127.0.0.1") and rows[0]["ts"][:2] == "20"
        saved = json.loads((tmp_path / "state.json").read_text())
        assert saved["live_config"] == {"strategy": {"stall_T_ms": 450}}

    async with asgi_client(build_app(cfg, tmp_path)) as c:
        assert (await c.get("/config")).json()["strategy"]["stall_T_ms"] == 450
        assert (await c.get("/config/file")).json()["strategy"]["stall_T_ms"] == 250
        audit = (await c.get("/config/audit")).json()["items"]
        assert [(a["field"], a["old"], a["new"]) for a in audit] == [("strategy.stall_T_ms", "250", "450")]


async def test_revert_returns_the_hot_sections_to_the_file_and_is_audited(tmp_path: Path) -> None:
    cfg = sim_config(tmp_path)
    async with asgi_client(build_app(cfg, tmp_path)) as c:
        patch = {"strategy": {"stall_T_ms": 410, "size_min": "0.002"}, "risk": {"max_dd_jpy": "-15000"}}
        assert (await c.patch("/config", json=patch)).status_code == 200
        r = await c.post("/config/revert")
        assert r.status_code == 200, r.text
        assert set(r.json()["changed"]) == {"strategy.stall_T_ms", "strategy.size_min", "risk.max_dd_jpy"}
        running = (await c.get("/config")).json()
        assert running["strategy"] == (await c.get("/config/file")).json()["strategy"]
        assert running["risk"]["max_dd_jpy"] == "-20000"
        audit = (await c.get("/config/audit")).json()["items"]
        reverts = [(a["field"], a["old"], a["new"]) for a in audit if a["action"] == "revert"]
        assert sorted(reverts) == [
            ("risk.max_dd_jpy", "-15000", "-20000"),
            ("strategy.size_min", "0.002", "0.001"),
            ("strategy.stall_T_ms", "410", "250"),
        ]
        assert audit[0]["action"] == "revert"  # newest first
        # nothing left to re-apply after a restart
        assert json.loads((tmp_path / "state.json").read_text())["live_config"] == {}


async def test_a_saved_change_the_new_config_file_forbids_is_refused_at_start(
    tmp_path: Path, runtime_log: list[str]
) -> None:
    async with asgi_client(build_app(sim_config(tmp_path), tmp_path)) as c:
        r = await c.patch("/config", json={"strategy": {"max_inventory_btc": "0.5", "stall_T_ms": 300}})
        assert r.status_code == 200, r.text
    # the operator lowered the cold cap in the file meanwhile: the saved 0.5 no longer fits
    tighter = sim_config(tmp_path, exchange={"max_inventory_btc": "0.3"})
    async with asgi_client(build_app(tighter, tmp_path)) as c:
        strategy: dict[str, Any] = (await c.get("/config")).json()["strategy"]
        assert (strategy["max_inventory_btc"], strategy["stall_T_ms"]) == ("0.2", 250)  # the file's, whole
    assert any("saved live config changes refused" in line for line in runtime_log), runtime_log


async def test_a_refused_patch_writes_no_audit_row(tmp_path: Path) -> None:
    async with asgi_client(build_app(sim_config(tmp_path), tmp_path)) as c:
        r = await c.patch("/config", json={"strategy": {"stall_T_ms": 300, "ttl_ms": -1}})
        assert r.status_code == 422
        assert (await c.get("/config/audit")).json() == {"items": []}
        assert (await c.get("/config")).json()["strategy"]["stall_T_ms"] == 250
