"""The state file keeps the kill latch: a background save of an older state never overwrites a newer one."""

from __future__ import annotations

import asyncio
import json

from bot.infra.state_file import StateFile


async def test_older_background_save_never_overwrites_a_later_sync_save(tmp_path):
    sf = StateFile(tmp_path / "state.json")
    older = sf.save({"state": "RUNNING"})  # queued first (e.g. after a fill) ...
    sf.save_sync({"state": "KILLED"})  # ... then the kill latch is written at once
    await older  # the older save lands last in time
    assert json.loads((tmp_path / "state.json").read_text())["state"] == "KILLED"


async def test_saves_land_in_call_order_and_a_corrupt_file_reads_as_corrupt(tmp_path):
    sf = StateFile(tmp_path / "state.json")
    await asyncio.gather(*(sf.save({"n": i}) for i in range(20)))
    assert sf.load() == {"n": 19}
    (tmp_path / "state.json").write_text("{torn")
    assert sf.load() == {"corrupt": True}
    assert StateFile(tmp_path / "missing.json").load() is None
