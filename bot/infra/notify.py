"""Notifier: alerts to the trader's phone through apprise (Telegram, Discord, Slack, e-mail, webhooks, …).

The user's URLs come from `notify.urls` and `STST_NOTIFY` (commas or spaces between them). `send()` never
waits: it puts the message on a bounded queue and returns; one task hands the queue to apprise, whose plugins
do their network I/O in worker threads, so a slow or dead notification service never delays a decision. Each
kind of message is rate-limited (`min_interval_s`; urgent ones — a kill — always go); a full queue drops and
counts.
The URLs hold tokens: they are registered as secrets (masked in every log line) and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import apprise
from loguru import logger

from bot.infra.logging_runtime import register_secret

QUEUE_SIZE = 100


def split_urls(text: str | None) -> list[str]:
    """`STST_NOTIFY`: URLs separated by commas or whitespace."""
    return [u for u in re.split(r"[\s,]+", text or "") if u]


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    title: str
    body: str
    level: str  # info | warning | failure


_TYPES = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "failure": apprise.NotifyType.FAILURE,
}


class Notifier:
    def __init__(
        self,
        urls: Iterable[str],
        *,
        min_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        logging.getLogger("apprise").setLevel(logging.WARNING)  # its INFO lines would name the services
        self._apprise = apprise.Apprise()
        self.targets = 0
        for url in urls:
            register_secret(url)
            if self._apprise.add(url):
                self.targets += 1
            else:
                scheme = url.split("://", 1)[0] if "://" in url else "?"
                logger.error("notify: a {}:// URL was not understood by apprise; it is ignored", scheme)
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0  # rate-limited or queue full

    @property
    def enabled(self) -> bool:
        return self.targets > 0

    def send(self, kind: str, title: str, body: str, *, level: str = "warning", urgent: bool = False) -> bool:
        """Queue a message; True if it will be sent. Never blocks, never raises."""
        if not self.enabled:
            return False
        now = self._clock()
        last = self._last.get(kind)
        if not urgent and last is not None and now - last < self._min_interval_s:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(Message(kind, title, body, level))
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        self._last[kind] = now
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="notifier")
        return True

    async def _drain(self) -> None:
        while not self._queue.empty():
            msg = self._queue.get_nowait()
            try:
                ok = bool(
                    await self._apprise.async_notify(
                        body=msg.body,
                        title=msg.title,
                        notify_type=_TYPES.get(msg.level, apprise.NotifyType.INFO),
                    )
                )
            except Exception as e:  # a broken plugin must not end the notifier
                ok = False
                logger.warning("notify: {} failed: {}", msg.kind, type(e).__name__)
            if ok:
                self.sent += 1
            else:
                self.failed += 1
                logger.warning("notify: {} could not be delivered to every target", msg.kind)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Let queued messages go (a kill's report at shutdown), then stop."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._task
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
