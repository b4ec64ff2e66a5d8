"""LiveConfig: the running config and the config files' values beside it. A live patch of `strategy.*` /
`risk.*` (or a revert to the files, the same path) is validated whole (a ConfigError changes nothing), applied
between decisions, written as one audit row per field changed, and saved beside the kill latch in the state
file; the call answers once both are on disk. At start, the change saved before a restart is validated again
against today's files: one that no longer validates is refused whole and the files' values run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from bot.config.loader import HOT_SECTIONS, AppConfig, ConfigError, apply_live_patch
from bot.infra.logging_structured import AuditLogger, format_cell
from bot.run_state import RunStateMachine
from bot.types.dto import AuditLogRow

PERSIST_TIMEOUT_S = 10.0  # a config change answers once its audit rows and the state file are on disk


def hot_changes(old: AppConfig, new: AppConfig) -> list[tuple[str, str, str]]:
    """(dotted field, old, new) for every hot field whose value differs, values as they read in a CSV."""
    out = []
    for section in HOT_SECTIONS:
        a = getattr(old, section).model_dump(mode="json")
        b = getattr(new, section).model_dump(mode="json")
        out += [(f"{section}.{k}", format_cell(a[k]), format_cell(b[k])) for k in a if a[k] != b[k]]
    return out


def live_patch(file_cfg: AppConfig, running: AppConfig) -> dict[str, dict[str, object]]:
    """The merge patch that takes the config file's hot sections to the running ones (what is saved)."""
    out: dict[str, dict[str, object]] = {}
    for section in HOT_SECTIONS:
        a = getattr(file_cfg, section).model_dump(mode="json")
        b = getattr(running, section).model_dump(mode="json")
        changed = {k: b[k] for k in b if a.get(k) != b[k]}
        if changed:
            out[section] = changed
    return out


class LiveConfig:
    def __init__(self, file_config: AppConfig, *, run_state: RunStateMachine, audit_log: AuditLogger) -> None:
        self.file = file_config  # what "revert to file" returns the hot sections to
        self.current = file_config
        self._run_state = run_state
        self._audit_log = audit_log
        self.on_change: Callable[[AppConfig], None] = lambda cfg: None  # the rooms that read hot fields

    def reapply_saved(self) -> AppConfig:
        """The live changes saved beside the kill latch, validated again against today's config file."""
        saved = self._run_state.saved_live_patch
        if not saved:
            return self.current
        try:
            new = apply_live_patch(self.file, saved)
        except ConfigError as e:
            logger.error("saved live config changes refused, the config file's values apply: {}", e)
            return self.current
        for name, a, b in hot_changes(self.file, new):
            logger.warning("config {}: {} → {} (a live change saved before the restart)", name, a, b)
        self._run_state.live_patch = live_patch(self.file, new)
        self.current = new
        return new

    async def patch(self, patch: Any, who: str = "api", action: str = "patch") -> AppConfig:
        """Apply a merge patch whole (ConfigError: nothing changed), audit each field changed, and return once
        the audit rows and the state file are on disk."""
        new = apply_live_patch(self.current, patch)  # raises ConfigError; nothing changed
        changes = hot_changes(self.current, new)
        for name, a, b in changes:
            logger.warning("config {}: {} → {} by {} ({})", name, a, b, who, action)
        self.current = new  # one assignment between decisions: atomic on this loop
        self._run_state.live_patch = live_patch(self.file, new)
        self.on_change(new)
        now = datetime.now(UTC)
        for name, a, b in changes:
            self._audit_log.log(AuditLogRow(ts=now, who=who, action=action, field=name, old=a, new=b))
        if changes:
            await self._persist()
        return new

    async def revert(self, who: str = "api") -> AppConfig:
        """The hot sections back to the config file's values (audited like any change)."""
        patch = {s: getattr(self.file, s).model_dump(mode="json") for s in HOT_SECTIONS}
        return await self.patch(patch, who, action="revert")

    async def _persist(self) -> None:
        """Both on disk before the call answers; what the disk refused is said (storage health says why)."""
        try:
            async with asyncio.timeout(PERSIST_TIMEOUT_S):
                await self._audit_log.aflush()
                saved = await self._run_state.store.save(self._run_state.persisted())
        except TimeoutError:
            saved = False
        if not saved:
            logger.error(
                "config change applied but the state file was not saved: it will not survive a restart"
            )
        if self._audit_log.rows_held:
            logger.error("config change applied; its audit rows are held until the disk takes them")
