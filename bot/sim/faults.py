"""Faults on demand: errors for the next N calls (or at a rate), added latency, a silent feed. Pure state.

Error kinds: a bitFlyer status ("-208", "-205", "-204", "-500", "-509", "-1", …), "500" (HTTP 500 with a JSON
body), "html502" (an HTML 502 page, not JSON), "timeout" (the request is carried out but no answer comes back:
the caller cannot know whether the order exists), "timeout_before" (no answer and nothing done) and, for
sendchildorder, "order_failed" (accepted, then an ORDER_FAILED event).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_STATUS = re.compile(r"^-\d{1,4}$")
KINDS_OTHER = ("500", "html502", "timeout", "timeout_before", "order_failed")


def valid_error(kind: str) -> bool:
    return kind in KINDS_OTHER or bool(_STATUS.match(kind))


@dataclass(slots=True)
class FailRule:
    error: str
    count: int | None  # next N matching calls; None = until cleared
    rate: float | None  # probability per matching call; None = every call


class Faults:
    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self.latency_ms = 0
        self.silence_until = 0  # monotonic ns
        self._rules: dict[str, list[FailRule]] = {}

    def fail(self, endpoint: str, error: str, count: int | None = 1, rate: float | None = None) -> None:
        if not valid_error(error):
            raise ValueError(f"unknown error kind {error!r}")
        if rate is not None and not 0 <= rate <= 1:
            raise ValueError("rate must be within 0..1")
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        self._rules.setdefault(endpoint, []).append(FailRule(error, count, rate))

    def clear(self) -> None:
        self._rules.clear()
        self.latency_ms = 0
        self.silence_until = 0

    def take(self, endpoint: str) -> str | None:
        """The error this call must get, if any. Rules for the exact endpoint first, then "*"."""
        for key in (endpoint, "*"):
            rules = self._rules.get(key)
            if not rules:
                continue
            for rule in list(rules):
                if rule.count is not None and rule.count <= 0:
                    rules.remove(rule)
                    continue
                if rule.rate is not None and self._rng.random() >= rule.rate:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count == 0:
                        rules.remove(rule)
                return rule.error
        return None

    def silenced(self, now: int) -> bool:
        return now < self.silence_until

    def pending(self) -> dict[str, list[dict[str, object]]]:
        return {
            k: [{"error": r.error, "count": r.count, "rate": r.rate} for r in v]
            for k, v in self._rules.items()
            if v
        }
