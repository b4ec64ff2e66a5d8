"""The Research page: replay and sweep results found under the configured folders, their reports, and the live
session's own markouts beside them — the real app and bot, results made by the real commands."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.conftest_server import ROOT, asgi_client, build_app, sim_config

pytestmark = pytest.mark.integration


def _run(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("research")
    base = str(ROOT / "configs/base.yml")
    _run("bot.sim", "tape", "--seed", "5", "--minutes", "1", "--out", "t.jsonl.gz", cwd=work)
    _run(
        "bot",
        "replay",
        "t.jsonl.gz",
        "--config",
        base,
        "--out",
        "runs/s5",
        cwd=work,
    )
    _run(
        "bot",
        "sweep",
        "t.jsonl.gz",
        "--config",
        base,
        "--grid",
        "strategy.stall_T_ms=150,300",
        "--out",
        "sweeps/stall",
        cwd=work,
    )
    return work


async def test_the_research_page_lists_replays_and_sweeps_beside_the_live_sessions_markouts(
    results: Path, tmp_path: Path
) -> None:
    roots = [str(results / "runs"), str(results / "sweeps")]
    cfg = sim_config(tmp_path, research={"results_dirs": roots})
    app = build_app(cfg, tmp_path)
    async with asgi_client(app) as client:
        runner = app.state.service.runner
        await eventually(lambda: runner.markouts.mean(1) is not None, 90, "a live fill marked 1 s later")

        body = (await client.get("/research/results")).json()
        live = body["live"]
        assert live["fills"] >= 1 and Decimal(live["markout_1s_jpy"]) == runner.markouts.mean(1).quantize(
            Decimal("0.0001")
        )
        kinds = {r["kind"]: r for r in body["results"]}
        assert set(kinds) == {"replay", "sweep"}
        replay, sweep = kinds["replay"], kinds["sweep"]
        assert replay["name"] == "s5" and "markout_1s_jpy" in replay["figures"]
        assert sweep["name"] == "stall" and sweep["label"].startswith("strategy.stall_T_ms=")

        for r in (replay, sweep):
            page = await client.get(r["report"])
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "<html" in page.text.lower()

        html = (await client.get("/research")).text
        assert "this session (live)" in html and "/s5" in html
        assert 'id="live-row"' in html and "strategy.stall_T_ms=" in html

        # only reports inside a result folder: no traversal, no links, no other roots
        (results / "runs" / "evil").mkdir(exist_ok=True)
        link = results / "runs" / "evil" / "report.html"
        if not link.exists():
            link.symlink_to("/etc/hostname")
        for bad in ("/research/report/0/evil", "/research/report/0/..", "/research/report/9/s5"):
            assert (await client.get(bad)).status_code == 404, bad
