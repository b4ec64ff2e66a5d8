"""OrderExecutor through the real pybotters client and BitflyerHttp against the signature-checking fake venue,
plus the client-side RateBudget it consults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pybotters
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.config.loader import ExchangeConfig
from bot.engine.executor import BackoffPolicy, OrderExecutor
from bot.engine.orders import OrderTracker
from bot.engine.rate_budget import (
    GateBudget,
    RateBudget,
    RateHearing,
    entry_budget,
    entry_budget_grows_at,
    set_gate_budget,
)
from bot.infra.http_bitflyer import (
    CANCEL_ALL_CHILD_ORDERS,
    CANCEL_CHILD_ORDER,
    SEND_CHILD_ORDER,
    BitflyerHttp,
)
from bot.types.dto import (
    Action,
    ActionKind,
    ChildOrderEvent,
    ChildOrderEventType,
    Gate,
    OrderLogRow,
    OrderState,
    Reason,
    Side,
)
from tests.test_http_bitflyer import KEY, SECRET, FakeBitflyer, Reply, bf_error, running_venue

# pybotters 1.11 passes `auth=` to aiohttp, which 3.14 deprecates; harmless here, noisy in every test
pytestmark = pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")

S = 1_000_000_000
MS = 1_000_000
BID = Action(
    ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.BUY, Decimal(13633747), Decimal("0.001"), 800, "stall"
)
ASK = Action(
    ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.SELL, Decimal(13633749), Decimal("0.001"), 800, "stall"
)
CANCEL_STALL = Action(ActionKind.CANCEL_ALL_STALL, Reason.TTL_EXPIRED)
CANCEL_ALL = Action(ActionKind.CANCEL_ALL, Reason.KILL_SWITCH)
CLOSE = Action(ActionKind.CLOSE_MARKET, Reason.REVERSE_STOP, Side.SELL, None, Decimal("0.001"), None, "close")


class ListLog:
    def __init__(self) -> None:
        self.rows: list[OrderLogRow] = []

    def log(self, row: OrderLogRow) -> None:
        self.rows.append(row)


class Clock:
    """A monotonic clock the test moves by hand (backoff and rate windows are long)."""

    def __init__(self) -> None:
        self.t = 1_000 * S

    def __call__(self) -> int:
        return self.t


class Rig:
    def __init__(
        self,
        venue: FakeBitflyer,
        client: pybotters.Client,
        *,
        timeout_s: float = 2.0,
        budget: RateBudget | None = None,
    ) -> None:
        self.venue = venue
        self.clock = Clock()
        self.log = ListLog()
        self.orders = OrderTracker()
        cfg = ExchangeConfig(base_url=venue.base_url)
        self.http = BitflyerHttp(client, cfg, timeout_s=timeout_s)
        self.http.rate_listener = RateHearing(budget, None, self.clock)  # as the runner wires it
        self.ex = OrderExecutor(self.http, cfg, self.log, self.orders, clock=self.clock, budget=budget)

    @property
    def now(self) -> int:
        return self.clock.t

    def sends(self) -> list[dict]:
        return [s.json for s in self.venue.calls(SEND_CHILD_ORDER)]

    def statuses(self, action: str) -> list[str]:
        return [r.status for r in self.log.rows if r.action == action]


@pytest.fixture
async def venue() -> AsyncIterator[FakeBitflyer]:
    async with running_venue() as fake:
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[pybotters.Client]:
    async with pybotters.Client(apis={"bitflyer": [KEY, SECRET]}) as c:
        yield c


@pytest.fixture
async def rig(venue: FakeBitflyer, client: pybotters.Client) -> AsyncIterator[Rig]:
    r = Rig(venue, client)
    yield r
    venue.release.set()
    await r.ex.drain()


async def arrived(venue: FakeBitflyer, path: str) -> None:
    async with asyncio.timeout(5):
        while await venue.arrivals.get() != path:
            pass


# ---- strike ------------------------------------------------------------------------------------------------
async def test_strike_registers_both_orders_at_once_and_sends_them_concurrently(rig: Rig) -> None:
    rig.venue.then(SEND_CHILD_ORDER, Reply(hold=True), Reply(hold=True))
    task = rig.ex.submit([BID, ASK], rig.now)
    # the trading loop gets control back before any answer: both orders already count as live
    assert task is not None and not task.done()
    live = rig.orders.open_orders(tag="stall")
    assert [(o.side, o.state) for o in live] == [
        (Side.BUY, OrderState.PENDING_NEW),
        (Side.SELL, OrderState.PENDING_NEW),
    ]
    assert [o.ttl_ms for o in live] == [800, 800]
    # both requests reach the venue while neither has been answered
    await arrived(rig.venue, SEND_CHILD_ORDER)
    await arrived(rig.venue, SEND_CHILD_ORDER)
    rig.venue.release.set()
    await task
    assert sorted(rig.sends(), key=lambda b: b["side"]) == [
        {
            "product_code": "FX_BTC_JPY",
            "child_order_type": "LIMIT",
            "side": "BUY",
            "price": 13633747,
            "size": 0.001,
            "minute_to_expire": 1,
            "time_in_force": "GTC",
        },
        {
            "product_code": "FX_BTC_JPY",
            "child_order_type": "LIMIT",
            "side": "SELL",
            "price": 13633749,
            "size": 0.001,
            "minute_to_expire": 1,
            "time_in_force": "GTC",
        },
    ]
    assert all(o.state is OrderState.ACTIVE and o.acceptance_id for o in live)
    assert {rig.orders.by_acceptance(o.acceptance_id) is o for o in live} == {True}  # type: ignore[arg-type]
    assert rig.statuses("place") == ["ok", "ok"]
    assert all(
        r.latency_ms is not None and r.order_id.startswith("JRF") and r.tif == "GTC" and r.tag == "stall"
        for r in rig.log.rows
    )
    assert rig.ex.orders_sent == 2 and rig.ex.orders_accepted == 2
    assert rig.venue.bad_signatures == 0


async def test_execute_waits_and_returns_the_orders(rig: Rig) -> None:
    placed = await rig.ex.execute([BID, ASK], rig.now)
    assert [o.state for o in placed] == [OrderState.ACTIVE, OrderState.ACTIVE]
    assert rig.ex.running == 0


# ---- unknown outcomes: never failed, never re-sent ---------------------------------------------------------
async def test_timeout_leaves_the_order_unknown_and_it_is_not_resent(
    venue: FakeBitflyer, client: pybotters.Client
) -> None:
    rig = Rig(venue, client, timeout_s=0.3)
    venue.then(SEND_CHILD_ORDER, Reply(hang=True))
    (order,) = await rig.ex.execute([BID], rig.now)
    assert order.state is OrderState.UNKNOWN and order.state.is_open
    assert order.last_error == "timeout"
    assert rig.statuses("place") == ["timeout"]
    assert rig.ex.error_counts["timeout"] == 1 and rig.ex.orders_unknown == 1
    assert rig.ex.in_backoff(rig.now)
    await rig.ex.drain()
    assert len(rig.sends()) == 1  # nothing re-sent behind our back
    assert rig.orders.open_orders(tag="stall") == [order]  # still counts as live for the strategy
    venue.release.set()


async def test_208_is_unknown_with_exponential_backoff_reset_by_success(rig: Rig) -> None:
    busy = bf_error(-208, "Order is not accepted. Please try again later.", 500)
    rig.venue.then(SEND_CHILD_ORDER, busy)
    (order,) = await rig.ex.execute([BID], rig.now)
    assert order.state is OrderState.UNKNOWN and order.last_error == "-208"
    assert rig.ex.backoff_until(rig.now) == rig.now + 1 * S
    assert rig.ex.last_error is not None and "-208" in rig.ex.last_error

    rig.clock.t += 1 * S  # backoff over: a second -208 doubles it
    rig.venue.then(SEND_CHILD_ORDER, busy)
    await rig.ex.execute([ASK], rig.now)
    assert rig.ex.backoff_until(rig.now) == rig.now + 2 * S
    assert rig.ex.error_counts["-208"] == 2

    rig.clock.t += 2 * S
    (ok,) = await rig.ex.execute([BID], rig.now)
    assert ok.state is OrderState.ACTIVE
    assert rig.ex.backoff_until(rig.now) is None
    rig.venue.then(SEND_CHILD_ORDER, busy)
    await rig.ex.execute([ASK], rig.now)
    assert rig.ex.backoff_until(rig.now) == rig.now + 1 * S  # the streak restarted


async def test_html_502_is_unknown_and_backs_off(rig: Rig) -> None:
    rig.venue.then(
        SEND_CHILD_ORDER, Reply(502, "<html><body>502 Bad Gateway</body></html>", content_type="text/html")
    )
    (order,) = await rig.ex.execute([BID], rig.now)
    assert order.state is OrderState.UNKNOWN
    assert rig.statuses("place") == ["http_502"]
    assert rig.ex.in_backoff(rig.now)


async def test_shutdown_mid_request_leaves_the_order_unknown(rig: Rig) -> None:
    rig.venue.then(SEND_CHILD_ORDER, Reply(hold=True))
    task = rig.ex.submit([BID], rig.now)
    await arrived(rig.venue, SEND_CHILD_ORDER)
    assert task is not None
    task.cancel()
    await rig.ex.drain()
    (order,) = rig.orders.open_orders(tag="stall")
    assert order.state is OrderState.UNKNOWN and order.last_error == "cancelled"
    assert rig.statuses("place") == ["unknown"]


async def test_an_unexpected_failure_below_is_unknown_not_failed() -> None:
    class BrokenHttp:
        async def send_child_order(self, *args: object, **kwargs: object) -> str:
            raise RuntimeError("boom")

    log, orders = ListLog(), OrderTracker()
    ex = OrderExecutor(BrokenHttp(), ExchangeConfig(), log, orders)  # type: ignore[arg-type]
    (order,) = await ex.execute([BID], time.monotonic_ns())
    assert order.state is OrderState.UNKNOWN and order.state.is_open
    assert [r.status for r in log.rows] == ["unknown"] and ex.error_counts["unexpected"] == 1


# ---- definite rejections -----------------------------------------------------------------------------------
async def test_205_rejects_and_blocks_entries_long_without_a_second_send(rig: Rig) -> None:
    rig.venue.then(SEND_CHILD_ORDER, bf_error(-205, "Margin amount is insufficient for this order.", 400))
    (order,) = await rig.ex.execute([BID], rig.now)
    assert order.state is OrderState.REJECTED and not order.state.is_open
    assert order.last_error == "-205"
    assert rig.ex.error_counts["-205"] == 1
    margin_s = BackoffPolicy().margin_s
    assert rig.ex.backoff_until(rig.now) == rig.now + int(margin_s * S)

    # the next strike, a few seconds later, goes nowhere: refused here, logged, no request
    rig.clock.t += 5 * S
    refused = await rig.ex.execute([BID, ASK], rig.now)
    assert [o.state for o in refused] == [OrderState.REJECTED, OrderState.REJECTED]
    assert all(o.last_error == "local:backoff" for o in refused)
    assert len(rig.sends()) == 1
    assert rig.statuses("place") == ["-205", "backoff", "backoff"]

    # a successful cancel does not lift a margin block ...
    rig.orders.on_accepted(
        rig.orders.new_order(
            tag="stall",
            side=Side.BUY,
            order_type="LIMIT",
            price=Decimal(1),
            size=Decimal("0.001"),
            now=rig.now,
        ).client_id,
        "JRF9",
    )
    await rig.ex.execute([CANCEL_STALL], rig.now)
    assert rig.ex.in_backoff(rig.now)
    # ... but a protective close still goes out during it
    (close,) = await rig.ex.execute([CLOSE], rig.now)
    assert close.state is OrderState.ACTIVE
    assert rig.sends()[-1] == {
        "product_code": "FX_BTC_JPY",
        "child_order_type": "MARKET",
        "side": "SELL",
        "size": 0.001,
        "time_in_force": "GTC",
    }

    rig.clock.t += int(margin_s * S)
    (later,) = await rig.ex.execute([BID], rig.now)
    assert later.state is OrderState.ACTIVE


async def test_rate_limit_answer_rejects_and_backs_off_at_least_a_minute(rig: Rig) -> None:
    rig.venue.then(SEND_CHILD_ORDER, Reply(429, "Too Many Requests", content_type="text/plain"))
    (order,) = await rig.ex.execute([BID], rig.now)
    assert order.state is OrderState.REJECTED and order.last_error == "http_429"
    assert rig.ex.backoff_until(rig.now) == rig.now + 60 * S


async def test_plain_rejection_is_counted_without_backoff(rig: Rig) -> None:
    rig.venue.then(SEND_CHILD_ORDER, bf_error(-106, "The price is too low.", 400))
    (order,) = await rig.ex.execute([BID], rig.now)
    assert order.state is OrderState.REJECTED
    assert rig.ex.error_counts["-106"] == 1 and rig.ex.backoff_until(rig.now) is None


async def test_invalid_actions_never_reach_the_venue_or_the_tracker(rig: Rig) -> None:
    half_yen = Action(
        ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.BUY, Decimal("13633747.5"), Decimal("0.001")
    )
    no_price = Action(ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.BUY, None, Decimal("0.001"))
    assert rig.ex.submit([half_yen, no_price], rig.now) is None
    assert list(rig.orders.all_orders()) == [] and rig.sends() == []
    assert rig.statuses("place") == ["invalid", "invalid"]


# ---- cancels -----------------------------------------------------------------------------------------------
def _event(kind: ChildOrderEventType, aid: str) -> ChildOrderEvent:
    from datetime import UTC, datetime

    return ChildOrderEvent(kind, aid, "JFX1", datetime(2026, 9, 23, tzinfo=UTC))


async def test_cancel_before_ack_is_deferred_then_sent_with_the_acceptance_id(rig: Rig) -> None:
    rig.venue.then(SEND_CHILD_ORDER, Reply(hold=True))
    place = rig.ex.submit([BID], rig.now)
    await arrived(rig.venue, SEND_CHILD_ORDER)
    (order,) = rig.orders.open_orders(tag="stall")

    assert rig.ex.submit([CANCEL_STALL], rig.now) is None  # nothing to send yet: no acceptance id
    assert rig.statuses("cancel") == ["deferred"]
    assert rig.venue.calls(CANCEL_CHILD_ORDER) == []

    rig.venue.release.set()
    assert place is not None
    await place
    (cancel,) = rig.venue.calls(CANCEL_CHILD_ORDER)
    assert cancel.json == {"product_code": "FX_BTC_JPY", "child_order_acceptance_id": order.acceptance_id}
    assert order.state is OrderState.PENDING_CANCEL
    assert rig.statuses("cancel") == ["deferred", "ok"]
    rig.orders.on_event(_event(ChildOrderEventType.CANCEL, order.acceptance_id or ""))
    assert order.state is OrderState.CANCELED
    assert rig.ex.orders_cancelled == 1


async def test_cancel_stall_cancels_each_live_order_once(rig: Rig) -> None:
    bid, ask = await rig.ex.execute([BID, ASK], rig.now)
    await rig.ex.execute([CANCEL_STALL], rig.now)
    assert sorted(c.json["child_order_acceptance_id"] for c in rig.venue.calls(CANCEL_CHILD_ORDER)) == sorted(
        [bid.acceptance_id, ask.acceptance_id]
    )
    assert bid.state is ask.state is OrderState.PENDING_CANCEL
    # asked again before the CANCEL events: no duplicate requests
    assert rig.ex.submit([CANCEL_STALL], rig.now) is None
    assert len(rig.venue.calls(CANCEL_CHILD_ORDER)) == 2
    # orders of other tags are left alone
    (close,) = await rig.ex.execute([CLOSE], rig.now)
    assert close.state is OrderState.ACTIVE and len(rig.venue.calls(CANCEL_CHILD_ORDER)) == 2


async def test_cancel_with_unknown_outcome_is_retried_but_not_stormed(rig: Rig) -> None:
    (bid,) = await rig.ex.execute([BID], rig.now)
    rig.venue.then(CANCEL_CHILD_ORDER, bf_error(-208, "Order is not accepted.", 500))
    await rig.ex.execute([CANCEL_STALL], rig.now)
    assert bid.state is OrderState.UNKNOWN and bid.state.is_open
    assert rig.ex.submit([CANCEL_STALL], rig.now + 100 * MS) is None  # too soon to ask again
    rig.clock.t += 1 * S
    await rig.ex.execute([CANCEL_STALL], rig.now)
    assert len(rig.venue.calls(CANCEL_CHILD_ORDER)) == 2
    assert rig.statuses("cancel") == ["-208", "ok"]
    assert bid.state.is_open  # the CANCEL event (or reconciliation) settles it


async def test_definitely_refused_cancel_leaves_the_order_active(rig: Rig) -> None:
    (bid,) = await rig.ex.execute([BID], rig.now)
    rig.venue.then(CANCEL_CHILD_ORDER, bf_error(-1, "Over API limit per minute", 400))
    await rig.ex.execute([CANCEL_STALL], rig.now)
    assert bid.state is OrderState.ACTIVE
    await rig.ex.execute([CANCEL_STALL], rig.now)  # a later action may ask again at once
    assert len(rig.venue.calls(CANCEL_CHILD_ORDER)) == 2


async def test_cancel_all(rig: Rig) -> None:
    bid, ask = await rig.ex.execute([BID, ASK], rig.now)
    await rig.ex.execute([CANCEL_ALL], rig.now)
    assert [c.json for c in rig.venue.calls(CANCEL_ALL_CHILD_ORDERS)] == [{"product_code": "FX_BTC_JPY"}]
    assert bid.state is ask.state is OrderState.PENDING_CANCEL
    assert rig.statuses("cancel_all") == ["ok"] and rig.ex.cancel_all_sent == 1


async def test_cancel_all_also_catches_an_order_still_in_flight(rig: Rig) -> None:
    rig.venue.then(SEND_CHILD_ORDER, Reply(hold=True))
    place = rig.ex.submit([BID], rig.now)
    await arrived(rig.venue, SEND_CHILD_ORDER)
    await rig.ex.execute([CANCEL_ALL], rig.now)
    rig.venue.release.set()
    assert place is not None
    await place
    (order,) = rig.orders.open_orders(tag="stall")
    assert [c.json["child_order_acceptance_id"] for c in rig.venue.calls(CANCEL_CHILD_ORDER)] == [
        order.acceptance_id
    ]


async def test_deferred_cancel_of_an_unknown_send_goes_out_once_reconciliation_learns_its_id(
    venue: FakeBitflyer,
    client: pybotters.Client,
) -> None:
    rig = Rig(venue, client, timeout_s=0.3)
    venue.then(SEND_CHILD_ORDER, Reply(hang=True))
    (order,) = await rig.ex.execute([BID], rig.now)
    assert order.state is OrderState.UNKNOWN
    assert rig.ex.submit([CANCEL_STALL], rig.now) is None
    rig.orders.on_accepted(order.client_id, "JRF20260923-000000-777777")  # what reconciliation does
    task = rig.ex.flush_deferred_cancels(rig.now)
    assert task is not None
    await task
    assert [c.json["child_order_acceptance_id"] for c in venue.calls(CANCEL_CHILD_ORDER)] == [
        "JRF20260923-000000-777777"
    ]
    venue.release.set()
    await rig.ex.drain()


# ---- rate budget -------------------------------------------------------------------------------------------
async def test_executor_respects_the_order_budget_and_the_exchange_count(
    venue: FakeBitflyer, client: pybotters.Client
) -> None:
    budget = RateBudget(limit=3, period_s=60)
    rig = Rig(venue, client, budget=budget)
    await rig.ex.execute([BID, ASK], rig.now)
    (third, fourth) = await rig.ex.execute([BID, ASK], rig.now)
    assert third.state is OrderState.ACTIVE
    assert fourth.state is OrderState.REJECTED and fourth.last_error == "local:rate_budget"
    assert len(rig.sends()) == 3 and rig.statuses("place").count("rate_budget") == 1
    # closes are never refused, but they count
    await rig.ex.execute([CLOSE], rig.now)
    assert len(rig.sends()) == 4 and budget.used(rig.now) == 4

    # the venue's own X-RateLimit-Remaining can only lower the budget
    rig.clock.t += 61 * S
    assert budget.available(rig.now) == 3
    venue.rate_remaining = 1  # the next answer says 0 left
    await rig.ex.execute([BID], rig.now)
    assert budget.available(rig.now) == 0


def test_budget_sliding_window() -> None:
    b = RateBudget(limit=2, period_s=10)
    assert b.take(0) and b.take(1 * S)
    assert not b.take(2 * S) and b.refused == 1
    assert b.next_available_at(2 * S) == 10 * S
    assert b.available(10 * S) == 1 and b.take(10 * S)
    assert not b.take(10 * S, n=2)  # all or nothing
    assert b.available(11 * S) == 1


def test_budget_header_cap_is_conservative() -> None:
    b = RateBudget(limit=100, period_s=60)
    b.update_from_headers(remaining=5, reset_epoch=1_000_030, now_ns=0, wall_now=1_000_000)
    assert b.available(0) == 5
    assert b.take(0, 2) and b.available(0) == 3  # our own requests count against the venue's figure
    b.update_from_headers(remaining=4, reset_epoch=1_000_030, now_ns=S, wall_now=1_000_001)  # a late answer
    assert b.available(S) == 3
    assert b.available(30 * S) == 3  # the reset is whole seconds, rounded down: it may be up to 1 s later
    assert b.available(31 * S) == 98  # the venue's window reset: back to our own count
    b.update_from_headers(remaining=500, reset_epoch=None, now_ns=31 * S)
    assert b.available(31 * S) == 98
    b.update_from_headers(remaining=None, reset_epoch=None, now_ns=31 * S)
    assert b.available(31 * S) == 98


def test_a_reset_that_just_passed_holds_one_second_not_a_whole_period() -> None:
    """Found by the soak: a 429 whose X-RateLimit-Reset (whole seconds, rounded down) read a moment before our
    clock was taken as nonsense and held the budget for a full 5-minute period."""
    b = RateBudget(limit=500, period_s=300)
    b.update_from_headers(remaining=0, reset_epoch=1_000_000, now_ns=0, wall_now=1_000_000.6)
    assert b.available(0) == 0
    assert b.available(S // 2) == 500


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * S), st.integers(1, 3)), max_size=60))
def test_budget_never_allows_more_than_limit_in_any_window(steps: list[tuple[int, int]]) -> None:
    limit, period = 5, 2 * S
    b = RateBudget(limit=limit, period_s=2)
    now = 0
    granted: list[int] = []
    for gap, n in steps:
        now += gap
        if b.take(now, n):
            granted.extend([now] * n)
    for i, t in enumerate(granted):
        in_window = [u for u in granted[: i + 1] if u > t - period]
        assert len(in_window) <= limit


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3 * S), st.integers(1, 3), st.booleans(), st.none() | st.integers(0, 6)),
        max_size=40,
    ),
    st.integers(0, 6 * S),
)
def test_the_entry_budget_grows_no_sooner_than_it_says(
    steps: list[tuple[int, int, bool, int | None]], probe: int
) -> None:
    """A decision held back by the rate budget sleeps until `entry_budget_grows_at`: the budget must not
    grow before then (a strike delayed for nothing), and must have grown at it (no wake-up for nothing)."""
    orders, rest = RateBudget(limit=4, period_s=2), RateBudget(limit=8, period_s=3)
    now = 0
    for gap, n, is_order, venue_left in steps:
        now += gap
        if venue_left is not None:  # the venue's X-RateLimit-Remaining, for one second
            rest.update_from_headers(venue_left, (now + S) / S, now, wall_now=now / S)
        if not is_order or orders.take(now, n):  # every private request counts against the REST window
            rest.force(now, n)
    before = entry_budget(orders, rest, now)
    at = entry_budget_grows_at(orders, rest, now)
    if at is None:  # whole: nothing to wait for
        assert before == orders.limit
        return
    assert at > now
    t = now + probe % (at - now)  # any instant before it: no growth yet
    assert entry_budget(orders, rest, t) == before
    assert entry_budget(orders, rest, at) > before  # and at it, growth: no wake-up for nothing


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3 * S),
            st.sampled_from(["decide", "take", "force", "headers", "reset"]),
            st.integers(1, 3),
            st.integers(0, 6),
        ),
        max_size=60,
    )
)
@example([(0, "headers", 1, 0), (0, "decide", 1, 0), (5 * S // 2, "decide", 1, 0)])  # the venue's cap lifts
@example([(0, "take", 1, 0), (0, "decide", 1, 0), (5 * S // 2, "decide", 1, 0)])  # a request leaves
def test_the_gates_budget_reused_between_changes_is_what_working_it_out_gives(
    steps: list[tuple[int, str, int, int]],
) -> None:
    """`GateBudget` works the gate's budget out again only after a request, a header, a reset or a window
    moving: at every decision the gate must read what `set_gate_budget` gives at that instant."""
    orders, rest = RateBudget(limit=4, period_s=2), RateBudget(limit=8, period_s=3)
    cached, fresh = Gate(), Gate()
    gate_budget = GateBudget(cached, orders, rest)
    now = 0
    for gap, op, n, venue_left in steps:
        now += gap
        if op == "take":
            if orders.take(now, n):
                rest.force(now, n)
        elif op == "force":
            rest.force(now, n)
        elif op == "headers":  # the venue's X-RateLimit-Remaining on either budget, for one second
            (orders if n == 1 else rest).update_from_headers(venue_left, (now + S) / S, now, wall_now=now / S)
        elif op == "reset":
            orders.reset()
        gate_budget.apply(now)
        set_gate_budget(fresh, orders, rest, now)
        assert (cached.order_budget, cached.order_budget_grows_at) == (
            fresh.order_budget,
            fresh.order_budget_grows_at,
        )


# ---- end to end against the project's simulated venue ------------------------------------------------------
@pytest.mark.integration
async def test_strike_cancel_close_against_the_sim_venue_keeps_position_equal_to_the_venue() -> None:
    from bot.infra.bitflyer_parse import net_position, parse_child_order_events, parse_position_rows
    from bot.infra.pyb_auth import register_bitflyer_hosts
    from bot.sim import SimVenue

    async with SimVenue() as sim:
        register_bitflyer_hosts(sim.base_url, sim.ws_url)
        tracker = OrderTracker()
        fills = []
        changed = asyncio.Event()

        def on_message(msg: object, ws: object) -> None:
            if isinstance(msg, dict) and msg.get("params", {}).get("channel") == "child_order_events":
                for ev in parse_child_order_events(msg["params"]["message"]):
                    f = tracker.on_event(ev)
                    if f is not None:
                        fills.append(f)
                changed.set()

        async with pybotters.Client(apis={"bitflyer": [sim.api_key, sim.api_secret]}) as c:
            c.ws_connect(
                sim.ws_url,
                hdlr_json=on_message,
                send_json={"method": "subscribe", "params": {"channel": "child_order_events"}, "id": 1},
            )
            cfg = ExchangeConfig(base_url=sim.base_url)
            http = BitflyerHttp(c, cfg, timeout_s=2)
            ex = OrderExecutor(http, cfg, ListLog(), tracker, budget=RateBudget(60, 60))
            board = (await c.fetch("GET", f"{sim.base_url}/v1/getboard?product_code=FX_BTC_JPY")).data
            bid, ask = int(board["bids"][0]["price"]), int(board["asks"][0]["price"])
            assert ask - bid > 2
            strike = [
                Action(
                    ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.BUY, Decimal(bid + 1), Decimal("0.001"), 800
                ),
                Action(
                    ActionKind.PLACE_LIMIT, Reason.STRIKE, Side.SELL, Decimal(ask - 1), Decimal("0.001"), 800
                ),
            ]
            placed = await ex.execute(strike, time.monotonic_ns())
            assert all(o.acceptance_id for o in placed)
            await ex.execute([CANCEL_STALL], time.monotonic_ns())
            (close,) = await ex.execute([CLOSE], time.monotonic_ns())

            def settled() -> bool:
                return all(not o.state.is_open for o in [*placed, close])

            async with asyncio.timeout(5):
                while not settled():
                    changed.clear()
                    await changed.wait()
            assert {o.state for o in placed} <= {OrderState.CANCELED, OrderState.FILLED}
            assert close.state is OrderState.FILLED
            ours = sum((f.side.sign * f.size for f in fills), Decimal(0))
            venue_net, _ = net_position(parse_position_rows(await http.get_positions()))
            assert ours == venue_net
            assert ex.error_counts == {} and ex.running == 0


async def test_refused_closes_back_off_exponentially_so_retries_never_storm(rig: Rig) -> None:
    """Defect 4: a close refused by the venue was re-sent every 500 ms (121 refused orders in 60 s, past
    bitFlyer's 100/min small-order limit). Now each refusal of a close doubles the wait before the next one
    reaches the wire; the locally held ones are logged and never sent; an accepted close ends the backoff."""
    refuse = bf_error(-204, "Market state is closed.", 400)

    async def close_once() -> int:
        before = len(rig.sends())
        if not rig.venue.script[SEND_CHILD_ORDER]:
            rig.venue.then(SEND_CHILD_ORDER, refuse)
        await rig.ex.execute([CLOSE], rig.now)
        return len(rig.sends()) - before

    assert await close_once() == 1
    assert rig.ex.close_hold_until(rig.now) == rig.now + 1 * S
    rig.clock.t += 500 * MS
    assert await close_once() == 0  # the strategy's paced retry: held here
    assert rig.statuses("close")[-1] == "close_backoff"
    rig.clock.t += 500 * MS
    assert await close_once() == 1  # 1 s later: sent, refused again → 2 s
    assert rig.ex.close_hold_until(rig.now) == rig.now + 2 * S
    sent = 2
    for _ in range(118):  # the rest of a minute, every 500 ms
        rig.clock.t += 500 * MS
        sent += await close_once()
    assert 5 <= sent <= 7  # at 0, 1, 3, 7, 15, 31 s: never 100
    # an accepted close resets it: the next close goes at once
    rig.venue.script[SEND_CHILD_ORDER].clear()
    rig.clock.t += 31 * S
    (ok,) = await rig.ex.execute([CLOSE], rig.now)
    assert ok.acceptance_id and rig.ex.close_hold_until(rig.now) is None
