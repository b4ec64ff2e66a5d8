"""Shared test fixtures: a bot (BotService in sim mode, the real pybotters client over loopback) and
helpers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from bot.config.loader import AppConfig, deep_merge, load_app_config, validate_config

# The suite is reproducible: property and fuzz tests draw the same examples on every run, so a red run is a
# defect that reruns red. `HYPOTHESIS_PROFILE=explore` draws fresh ones (and ten times as many) to hunt.
settings.register_profile("suite", derandomize=True, database=None)
settings.register_profile("explore", max_examples=1000, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

ROOT = Path(__file__).resolve().parent.parent
BASE_YML = ROOT / "configs" / "base.yml"

# A fast market and short timers so integration tests see strikes, fills and cancels within seconds.
FAST_SIM: dict[str, Any] = {
    "env": "sim",
    "pybotters": {"timeout_sec": 1.5},
    "strategy": {"stall_T_ms": 150, "ttl_ms": 600, "stale_after_ms": 1000},
    "runner": {"reconcile_interval_sec": 3},
    "sim": {"activity": 4.0, "seed": 7, "snapshot_interval_ms": 2000},
}


def make_config(overrides: dict[str, Any] | None = None) -> AppConfig:
    base = load_app_config(BASE_YML).model_dump(mode="python")
    base["sim"]["api_secret"] = "SIM_SECRET"
    return validate_config(deep_merge(deep_merge(base, FAST_SIM), overrides or {}), "test")


async def eventually(predicate: Callable[[], bool], within: float = 30.0, what: str = "condition") -> None:
    """Wait until `predicate()` holds (checked on every loop turn, at most every 20 ms); fail after `within`
    seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: start a BotService in sim mode (venue in-process); every service it started is stopped at the
    end."""
    from bot.service import BotService

    started: list[BotService] = []

    async def _make(
        overrides: dict[str, Any] | None = None,
        *,
        state_file: Path | None = None,
        log_dir: Path | None = None,
    ) -> BotService:
        cfg = make_config(overrides)
        svc = BotService(cfg, log_dir=log_dir or tmp_path / "logs", state_file=state_file)
        started.append(svc)
        await svc.start()
        return svc

    yield _make
    for svc in reversed(started):
        try:
            await svc.stop()
        except Exception as e:  # a test that already stopped it, or a venue that died: report, don't mask
            print(f"service stop failed: {e!r}")


@pytest.fixture
async def service(make_service: Callable[..., Any]) -> Any:
    return await make_service()
