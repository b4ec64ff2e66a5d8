"""TapeRecorder: the public feed as received, to hourly tapes (`bot/infra/tape.py`), off the event loop.

The WebSocket handler only stamps the frame's receive times and puts a reference on a bounded queue; one
thread encodes, compresses and writes (`HourlyTapeWriter`), flushing about once a second so a killed process
loses at most a second, and deletes tapes older than the retention. A full queue (a disk slower than the
feed) drops frames and counts them — a tape with a hole, never a slower bot. The frames are pybotters' parsed
messages, which nothing in the bot mutates after the handler.

Sim and live tapes carry the bot's own resting orders inside the public book: the caller marks, per board
frame, our own size at the frame's levels (`own`), so replay can take it out of the crowd; paper tapes have
none (our orders never reach bitFlyer's book).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger

from bot.infra.tape import HourlyTapeWriter, TapeHeader, iso_utc

QUEUE_FRAMES = 100_000
FLUSH_S = 1.0
_TAPE_FILE = re.compile(r"^(\d{8})-(\d{2})(?:-\d+)?\.jsonl\.gz$")

PUBLIC_PREFIXES = ("lightning_board_", "lightning_executions_", "lightning_ticker_")
_Item = tuple[int, int, str, Any, Any]  # wall ns, monotonic ns, channel, message, own


class TapeRecorder:
    def __init__(
        self,
        folder: str | Path,
        *,
        mode: str,
        product_code: str,
        own_orders_marked: bool,
        retention_hours: float,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        header = TapeHeader(
            mode=mode,
            product_code=product_code,
            started_at=iso_utc(time.time_ns()),
            own_orders_marked=own_orders_marked,
            extra={"recorder": "stall_then_strike"},
        )
        self._writer = HourlyTapeWriter(self.folder, header)
        self._retention = timedelta(hours=retention_hours)
        self._queue: queue.Queue[tuple[int, int, str, Any, Any] | tuple[()] | None] = queue.Queue(
            QUEUE_FRAMES
        )
        self.frames = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="tape-recorder", daemon=True)
        self._thread.start()

    def record(self, t_mono_ns: int, channel: str, message: Any, own: Any = None) -> None:
        """From the loop: never blocks, never raises."""
        try:
            self._queue.put_nowait((time.time_ns(), t_mono_ns, channel, message, own))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        last_flush = time.monotonic()
        hour: str | None = None
        while True:
            try:
                item = self._queue.get(timeout=FLUSH_S)
            except queue.Empty:
                item = ()  # nothing came: flush what we have
            if item is None:
                break
            try:
                if item:
                    self._writer.write(*item)
                    self.frames += 1
                    path = self._writer.path
                    if path is not None and path.name != hour:
                        hour = path.name
                        self._prune()
                if time.monotonic() - last_flush >= FLUSH_S:
                    last_flush = time.monotonic()
                    self._writer.flush()
            except Exception as e:  # a disk error must not end recording for good, nor reach the bot
                self.dropped += 1
                logger.warning("tape recorder: could not write a frame: {}", e)
        try:
            self._writer.close()
        except Exception as e:
            logger.warning("tape recorder: could not close the tape: {}", e)

    def _prune(self) -> None:
        """Delete tapes whose hour is older than the retention (the folder stays bounded)."""
        horizon = datetime.now(UTC) - self._retention
        for p in self.folder.iterdir():
            m = _TAPE_FILE.match(p.name)
            if m is None or p == self._writer.path:
                continue
            hour = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H").replace(tzinfo=UTC)
            if hour + timedelta(hours=1) < horizon:
                try:
                    p.unlink()
                except OSError as e:
                    logger.warning("tape recorder: could not delete old tape {}: {}", p.name, e)
