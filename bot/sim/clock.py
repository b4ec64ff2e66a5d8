"""Clocks for the venue. The core never reads one: the edge reads it and passes `now` (monotonic ns) in."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic_ns(self) -> int: ...
    def time_ns(self) -> int: ...


class SystemClock:
    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock tests move by hand. Wall time starts at `wall_start_ns` and moves with monotonic time."""

    def __init__(self, start_ns: int = 1_000_000_000, wall_start_ns: int = 1_795_000_000_000_000_000) -> None:
        self._mono = start_ns
        self._offset = wall_start_ns - start_ns

    def monotonic_ns(self) -> int:
        return self._mono

    def time_ns(self) -> int:
        return self._mono + self._offset

    def advance(self, ns: int) -> int:
        self._mono += ns
        return self._mono
