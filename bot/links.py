"""The bot's connections to the venue, made when the runner opens (none exist before): one record that the
rooms needing them read, instead of each holding a reference that could go stale."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bot.engine.executor import OrderExecutor
from bot.infra.http_bitflyer import BitflyerHttp
from bot.infra.pyb_session import PyBotterSession
from bot.settle import SettleSupervisor


@dataclass
class VenueLinks:
    session: PyBotterSession | None = None
    http: BitflyerHttp | None = None
    executor: OrderExecutor | None = None
    settler: SettleSupervisor | None = None
    closing: bool = False  # shutdown has begun: no new decision, no new reconcile retry

    @property
    def feed_up(self) -> bool:
        return self.session is not None and self.session.feed_up


@dataclass
class RunnerMetrics:
    board_messages: int = 0
    fills: int = 0
    decisions: int = 0
    reconciles: int = 0
    reconcile_failures: int = 0
    reconnects: int = 0
    other_product_events: int = 0  # child_order_events of other products on the account (ignored)
    position_corrections: int = 0  # venue positions adopted after replaying executions still disagreed
    unverified_fills: int = 0  # executions the feed cannot vouch for, held until REST confirms them
    # frame handler (or timer) entry → actions handed to the executor, for decisions on board diffs and on
    # deadlines; the no-action and strike ones again apart; board snapshots (a whole-book resync) apart
    decision_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=20_000))
    no_action_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=20_000))
    strike_decision_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))
    snapshot_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))
    deadline_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))
    # stall deadline → strike handed to the HTTP client (the orders' request task is created)
    strike_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))
    loop_lag_ms: float = 0.0
    loop_lag_max_ms: float = 0.0  # the longest event-loop block seen since start
    executor: OrderExecutor | None = None

    @property
    def orders_sent(self) -> int:
        return self.executor.orders_sent if self.executor else 0

    @property
    def orders_cancelled(self) -> int:
        return self.executor.orders_cancelled if self.executor else 0

    @property
    def exchange_errors(self) -> dict[str, int]:
        return dict(self.executor.error_counts) if self.executor else {}
