"""bitFlyer's request limits, per API key (and per IP), as fixed windows. Pure: `now` is monotonic ns.

- 500 requests / 5 min per IP, 500 / 5 min for the private API per key;
- 300 / 5 min for sendchildorder, sendparentorder and cancelallchildorders together;
- orders of size ≤ 0.1 BTC: 100 / min; going over drops the key to 10 / min for an hour.
"""

from __future__ import annotations

from dataclasses import dataclass

SEC = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    limit: int
    period_s: int


IP = Limit("ip", 500, 300)
PRIVATE = Limit("private", 500, 300)
ORDERS = Limit("orders", 300, 300)
SMALL_ORDERS = Limit("small_orders", 100, 60)
SMALL_ORDERS_PENALTY = Limit("small_orders", 10, 60)
PENALTY_NS = 3600 * SEC
SMALL_ORDER_MAX_SAT = 10_000_000  # 0.1 BTC


@dataclass(slots=True)
class Window:
    limit: int
    period_ns: int
    start: int
    count: int = 0

    def roll(self, now: int) -> None:
        if now >= self.start + self.period_ns:
            self.start = now
            self.count = 0

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def reset_at(self) -> int:
        return self.start + self.period_ns


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    window: Window  # the window the headers describe (the one that refused, if any)
    limit: Limit


class RateLimiter:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._windows: dict[tuple[str, str], Window] = {}
        self._penalty_until: dict[str, int] = {}
        # api key -> (its private window, that window's start, the count it really had before the trip)
        self._tripped: dict[str, tuple[Window, int, int]] = {}

    def _window(self, lim: Limit, who: str, now: int) -> Window:
        w = self._windows.get((lim.name, who))
        if w is None or w.limit != lim.limit:
            w = self._windows[(lim.name, who)] = Window(lim.limit, lim.period_s * SEC, now)
        w.roll(now)
        return w

    def hit(
        self, now: int, ip: str, api_key: str | None = None, order: bool = False, small_order: bool = False
    ) -> Verdict:
        """Count one request against every limit it falls under; refuse at the first one that is used up."""
        checks: list[tuple[Limit, str]] = [(IP, ip)]
        if api_key is not None:
            checks.append((PRIVATE, api_key))
            if order:
                checks.append((ORDERS, api_key))
            if small_order:
                penalised = self._penalty_until.get(api_key, 0) > now
                checks.append((SMALL_ORDERS_PENALTY if penalised else SMALL_ORDERS, api_key))
        shown: Verdict | None = None
        for lim, who in checks:
            w = self._window(lim, who, now)
            if self.enabled and w.count >= w.limit:
                if lim is SMALL_ORDERS:
                    self._penalty_until[who] = now + PENALTY_NS
                return Verdict(False, w, lim)
            w.count += 1
            if shown is None or lim is PRIVATE:
                shown = Verdict(True, w, lim)  # headers show the private window when there is one
        assert shown is not None
        return shown

    def trip(self, now: int, api_key: str, seconds: float | None = None) -> None:
        """Use up the key's private window (a fault on demand). With `seconds`, the window is made to end that
        soon (and its X-RateLimit-Reset says so), as when the limit is hit near the end of a window."""
        w = self._window(PRIVATE, api_key, now)
        earlier = self._tripped.get(api_key)
        before = earlier[2] if earlier is not None and earlier[1] == w.start else w.count  # tripped twice
        w.count = w.limit
        if seconds is not None:
            w.start = min(w.start, now - w.period_ns + int(seconds * SEC))
        self._tripped[api_key] = (w, w.start, before)

    def lift_trips(self) -> None:
        """Undo `trip`: each tripped window gets back the count of requests it really had (none were counted
        while it refused). A window that has rolled since is left as it is."""
        for w, start, before in self._tripped.values():
            if w.start == start:
                w.count = before
        self._tripped.clear()
