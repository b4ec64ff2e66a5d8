"""The runner's restart-safe state (kill latch, today's PnL, drawdown, position lots), written atomically.

A write that fails (disk full, folder unwritable) is reported to the StorageHealth and answered False, never
raised: the caller keeps the state in memory and the next save (housekeeping saves every few seconds) tries
again with the state as it is then."""

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

from bot.infra.storage_health import STATE_FILE, StorageHealth


class StateFile:
    def __init__(self, path: Path, health: StorageHealth | None = None) -> None:
        self.path = path
        self.health = health if health is not None else StorageHealth()
        self._seq = itertools.count(1)
        self._written_seq = 0
        self._unsaved: tuple[int, dict[str, Any]] | None = None  # the latest state the disk refused
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

    def save_sync(self, data: dict[str, Any], seq: int | None = None) -> bool:
        """Write now. A save taken earlier (lower `seq`) never overwrites a later one, whichever finishes
        last. False if the disk refused it (reported to the storage health; the file keeps its last good
        content)."""
        seq = next(self._seq) if seq is None else seq
        with self._io:
            if seq < self._written_seq:
                return True  # a later state is already on disk
            unsaved = self._unsaved
            if unsaved is not None and unsaved[0] > seq:
                seq, data = unsaved  # a later state the disk refused (a kill latch): that one, not this
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1, default=str)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(
                    tmp, self.path
                )  # atomic: a crash leaves the old file or the new one, never half of one
            except OSError as e:
                # the half-written .tmp is left: the next attempt truncates it (removing it could need space)
                self._unsaved = (seq, data)
                self.health.failed(STATE_FILE, self.path, e)
                return False
            self._written_seq = seq
            self._unsaved = None
        self.health.written(STATE_FILE)
        return True

    def save(self, data: dict[str, Any]) -> Coroutine[Any, Any, bool]:
        """Write off the event loop. The order is fixed here, at the call (not when the task runs), so a kill
        latch saved synchronously after this call is never overwritten by this older state."""
        return asyncio.to_thread(self.save_sync, data, next(self._seq))
