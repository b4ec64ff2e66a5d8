"""The runner's restart-safe state (kill latch, today's PnL, drawdown, position lots), written atomically."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from loguru import logger


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._seq = itertools.count(1)
        self._written_seq = 0
        self._io = (
            threading.Lock()
        )  # background saves (a worker thread) and sync saves (kill, shutdown) serialised

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

    def save_sync(self, data: dict[str, Any], seq: int | None = None) -> None:
        """Write now. A save taken earlier (lower `seq`) never overwrites a later one, whichever finishes
        last."""
        seq = next(self._seq) if seq is None else seq
        with self._io:
            if seq < self._written_seq:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, default=str)
                f.flush()
                os.fsync(f.fileno())
            os.replace(
                tmp, self.path
            )  # atomic: a crash leaves the old file or the new one, never half of one
            self._written_seq = seq

    def save(self, data: dict[str, Any]) -> Coroutine[Any, Any, None]:
        """Write off the event loop. The order is fixed here, at the call (not when the task runs), so a kill
        latch saved synchronously after this call is never overwritten by this older state."""
        return asyncio.to_thread(self.save_sync, data, next(self._seq))
