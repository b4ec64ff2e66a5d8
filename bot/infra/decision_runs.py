"""DecisionRuns: decisions into the decisions log, where a run of no-action decisions with one reason is
counted, not built.

Most decisions change nothing: the same no-action reason at every board message. Each of those used to cost a
wall-clock read, a row object, its formatted actions and a hand-off to the writer thread. Here a repeat is one
counter increment; the run's row (the first decision's time, the latest decision's figures, the count) is made
when the run ends or, live, once it has lasted `flush_ns` — the writer then merges those parts into the one
collapsed row it writes, so the file reads as before. Replay passes `flush_ns=None`: runs end only on a
change, which keeps its logs deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from bot.infra.logging_structured import DecisionLogger, decision_row
from bot.types.dto import DecisionMeta

NS_PER_S = 1_000_000_000


class DecisionRuns:
    def __init__(
        self, log: DecisionLogger, wall: Callable[[], datetime], *, flush_ns: int | None = NS_PER_S
    ) -> None:
        self._log = log
        self._wall = wall
        self._flush_ns = flush_ns
        self._last: DecisionMeta | None = None  # the open run's latest decision
        self._first_wall: datetime | None = None
        self._since = 0  # monotonic ns the open run (or its current part) began
        self._count = 0

    def record(self, meta: DecisionMeta, now: int) -> datetime | None:
        """One decision at monotonic `now`. Returns the wall time read for it, or None when it was only
        counted into the open run."""
        last = self._last
        if not meta.actions:
            if (
                last is not None
                and last.reason is meta.reason
                and (self._flush_ns is None or now - self._since < self._flush_ns)
            ):
                self._last = meta
                self._count += 1
                return None
            self.flush()
            wall = self._wall()
            self._last, self._first_wall, self._since, self._count = meta, wall, now, 1
            return wall
        self.flush()
        wall = self._wall()
        self._log.log(decision_row(meta, wall))
        return wall

    def flush(self) -> None:
        """Write the open run's row (if any)."""
        last, first = self._last, self._first_wall
        if last is not None and first is not None:
            row = decision_row(last, first)
            self._log.log(row if self._count == 1 else replace(row, count=self._count))
        self._last = self._first_wall = None
        self._count = 0
