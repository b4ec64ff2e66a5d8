"""Client-side rate limiter (SPEC §10): a sliding window over our own requests, capped by what the exchange
says.

Pure: time is passed in (monotonic ns). The window remembers the instant of every request taken in the last
`period_s`, so `available` is exact, not an average. bitFlyer's `X-RateLimit-Remaining` / `X-RateLimit-Reset`
headers can only lower it: the budget is the minimum of our own count and the exchange's, counting requests
made since the headers were seen against the exchange's figure too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from bot.types.dto import Gate
from bot.types.exchange import SEND_CHILD_ORDER, RateLimitInfo

NS_PER_S = 1_000_000_000
_FAR = 1 << 62  # "never" on the monotonic ns clock


def exit_reserve(rest_budget: RateBudget) -> int:
    """REST requests kept for cancels, closes, reconciliation and a kill: no entry or poll takes them."""
    return rest_budget.limit // 4


def entry_budget(order_budget: RateBudget, rest_budget: RateBudget, now_ns: int) -> int:
    """Order sends an entry may spend now: the order budget, but none once the REST budget is down to the
    reserve."""
    if rest_budget.available(now_ns) <= exit_reserve(rest_budget):
        return 0
    return order_budget.available(now_ns)


def entry_budget_grows_at(order_budget: RateBudget, rest_budget: RateBudget, now_ns: int) -> int | None:
    """The instant the entry budget next grows with no new request (requests leaving the windows, the
    exchange's cap lifting); None: it is whole and cannot grow."""
    reserve = exit_reserve(rest_budget)
    if rest_budget.available(now_ns) <= reserve:  # held at 0 by the reserve: until the REST window frees
        return max(rest_budget.available_at(now_ns, reserve + 1), order_budget.available_at(now_ns, 1))
    have = order_budget.available(now_ns)
    if have >= order_budget.limit:
        return None
    return order_budget.available_at(now_ns, have + 1)


def set_gate_budget(gate: Gate, order_budget: RateBudget, rest_budget: RateBudget, now_ns: int) -> None:
    """The gate's order budget now and, when it can hold a strike back (< 2: a strike sends one order a
    side), the instant it next grows; the strategy reads the instant only then."""
    gate.order_budget = budget = entry_budget(order_budget, rest_budget, now_ns)
    gate.order_budget_grows_at = (
        entry_budget_grows_at(order_budget, rest_budget, now_ns) if budget < 2 else None
    )


class GateBudget:
    """`set_gate_budget` for one gate, worked out again only when its figures can have changed: a request
    taken or forced, the venue's headers heard, a reset, or the instant a window moves (a request leaving it,
    the venue's cap lifting). Between those both figures are constant, so reusing them changes no decision;
    it saves the two windows' arithmetic on every decision of a rate-limited strategy."""

    def __init__(self, gate: Gate, order_budget: RateBudget, rest_budget: RateBudget) -> None:
        self._gate = gate
        self._order = order_budget
        self._rest = rest_budget
        self._seen: tuple[int, int] | None = None  # the budgets' change counts when last worked out
        self._until = 0  # ... and the first instant after which a window moves

    def apply(self, now_ns: int) -> None:
        order, rest = self._order, self._rest
        seen = (order.changes, rest.changes)
        if seen == self._seen and now_ns < self._until:
            return
        set_gate_budget(self._gate, order, rest, now_ns)
        self._seen = seen
        self._until = min(order.steady_until(now_ns), rest.steady_until(now_ns))


class RateBudget:
    def __init__(self, limit: int, period_s: float) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if period_s <= 0:
            raise ValueError("period_s must be > 0")
        self.limit = limit
        self.period_ns = int(period_s * NS_PER_S)
        self._taken: deque[int] = deque()  # monotonic ns of each request in the window
        self._cap_remaining: int | None = None  # the exchange's own remaining count ...
        self._cap_until: int = 0  # ... valid until this monotonic ns
        self.refused = 0  # take() calls answered False
        self.changes = 0  # +1 at every request recorded, header heard or reset: what `available` depends on

    # ---- queries -------------------------------------------------------------------------------------
    def _expire(self, now_ns: int) -> None:
        horizon = now_ns - self.period_ns
        taken = self._taken
        while taken and taken[0] <= horizon:
            taken.popleft()
        if self._cap_remaining is not None and now_ns >= self._cap_until:
            self._cap_remaining = None

    def used(self, now_ns: int) -> int:
        self._expire(now_ns)
        return len(self._taken)

    def available(self, now_ns: int) -> int:
        """Requests that may be made right now without exceeding either our window or the exchange's count."""
        self._expire(now_ns)
        left = self.limit - len(self._taken)
        if self._cap_remaining is not None:
            left = min(left, self._cap_remaining)
        return max(0, left)

    def steady_until(self, now_ns: int) -> int:
        """The first instant after `now_ns` at which `available` can change with no new request or header: the
        oldest request leaving the window, or the venue's cap lifting (a far instant when neither can)."""
        self._expire(now_ns)
        until = self._taken[0] + self.period_ns if self._taken else _FAR
        if self._cap_remaining is not None and self._cap_until < until:
            until = self._cap_until
        return until

    def next_available_at(self, now_ns: int) -> int:
        """The earliest monotonic ns at which one request will be available (now if one is)."""
        return self.available_at(now_ns, 1)

    def available_at(self, now_ns: int, n: int) -> int:
        """The earliest monotonic ns at which `n` (≤ limit) requests will be available (now if they are)."""
        if not 1 <= n <= self.limit:
            raise ValueError(f"n must be within 1..{self.limit}")
        if self.available(now_ns) >= n:
            return now_ns
        candidates = []
        leave = len(self._taken) - (self.limit - n)  # requests that must leave the window first
        if leave > 0:
            candidates.append(self._taken[leave - 1] + self.period_ns)
        if self._cap_remaining is not None and self._cap_remaining < n:
            candidates.append(self._cap_until)
        return max([now_ns, *candidates])

    # ---- updates -------------------------------------------------------------------------------------
    def take(self, now_ns: int, n: int = 1) -> bool:
        """Reserve `n` requests at `now_ns` if all fit; otherwise take none and return False."""
        if n < 1:
            raise ValueError("n must be >= 1")
        if self.available(now_ns) < n:
            self.refused += 1
            return False
        self._record(now_ns, n)
        return True

    def force(self, now_ns: int, n: int = 1) -> None:
        """Count requests that are sent whatever the budget says (protective exits): later takes see them."""
        self._expire(now_ns)
        self._record(now_ns, n)

    def _record(self, now_ns: int, n: int) -> None:
        self.changes += 1
        if self._taken and now_ns < self._taken[-1]:
            now_ns = self._taken[-1]  # keep the window ordered even if a caller's clock reading is late
        self._taken.extend([now_ns] * n)
        if self._cap_remaining is not None:
            self._cap_remaining = max(0, self._cap_remaining - n)

    def update_from_headers(
        self,
        remaining: int | None,
        reset_epoch: float | None,
        now_ns: int,
        *,
        wall_now: float | None = None,
    ) -> None:
        """Apply the exchange's `X-RateLimit-Remaining` / `X-RateLimit-Reset` (Unix seconds). With `wall_now`
        (Unix seconds at `now_ns`) the cap lasts until the reset; without it, or when the reset is missing or
        nonsensical, it lasts one full period (conservative). Missing `remaining` changes nothing."""
        if remaining is None:
            return
        self.changes += 1
        remaining = max(0, int(remaining))
        hold_ns = self.period_ns
        if reset_epoch is not None and wall_now is not None:
            # the header is whole seconds, rounded down: the reset falls within the second after it (and a
            # reset "just passed" by less than a second is that second, not a nonsense value)
            until_reset = reset_epoch + 1 - wall_now
            if 0 <= until_reset <= 3601:
                hold_ns = int(until_reset * NS_PER_S)
        self._expire(now_ns)
        until = now_ns + hold_ns
        if (
            self._cap_remaining is not None
            and remaining > self._cap_remaining
            and until <= self._cap_until + NS_PER_S
        ):
            return  # a late answer from an earlier request in the same exchange window: keep the lower count
        self._cap_remaining = remaining
        self._cap_until = until

    def reset(self) -> None:
        self.changes += 1
        self._taken.clear()
        self._cap_remaining = None
        self._cap_until = 0


class RateHearing:
    """The one place the venue's rate limits are heard: the REST client calls it, nothing else reads headers.

    Every request leaving counts against the private REST budget. A `sendchildorder` answer's
    `X-RateLimit-Remaining` can lower the order budget; a private answer saying nothing is left (another
    client on the key, or a trip) holds the REST budget until the venue's reset instead of asking again and
    again. Either budget may be absent (a test of one part). `clock` is the budgets' timeline (monotonic
    ns)."""

    def __init__(
        self, order_budget: RateBudget | None, rest_budget: RateBudget | None, clock: Callable[[], int]
    ) -> None:
        self.order_budget = order_budget
        self.rest_budget = rest_budget
        self._clock = clock

    def on_request(self, path: str) -> None:
        if self.rest_budget is not None:
            self.rest_budget.force(self._clock())

    def on_headers(self, path: str, info: RateLimitInfo) -> None:
        if info.remaining is None:
            return
        now = self._clock()
        if path == SEND_CHILD_ORDER and self.order_budget is not None:
            self.order_budget.update_from_headers(
                info.remaining, info.reset_epoch, now, wall_now=info.seen_at_wall
            )
        if path.startswith("/v1/me/") and info.remaining == 0 and self.rest_budget is not None:
            self.rest_budget.update_from_headers(0, info.reset_epoch, now, wall_now=info.seen_at_wall)
