"""The runner's restart-safe state (kill latch, today's PnL, drawdown, position lots), written atomically."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from loguru import logger


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def load(self) -> dict[str, Any] | None:
        """The last saved state, or None. A corrupt file is reported and treated as absent — except that the
        caller must then start STOPPED, never RUNNING (see BotRunner)."""
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            logger.error("state file {} unreadable ({}); starting STOPPED", self.path, e)
            return {"corrupt": True}
        return data if isinstance(data, dict) else {"corrupt": True}

    def save_sync(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)  # atomic: a crash leaves the old file or the new one, never half of one

    async def save(self, data: dict[str, Any]) -> None:
        """Write off the event loop; saves are serialised so an older state never overwrites a newer one."""
        async with self._lock:
            await asyncio.to_thread(self.save_sync, data)
