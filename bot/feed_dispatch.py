"""FeedDispatch: the WebSocket's frames to the rooms that use them — board channels to the board store and a
decision, child_order_events through the order tracker to the fill path (an execution the feed cannot vouch
for is verified over REST instead) — and the feed's connects and drops to reconciliation. Bad frames are
skipped with one log line; nothing here raises into pybotters' handler."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from loguru import logger

from bot.decision_loop import DecisionLoop
from bot.engine.orders import OrderTracker, SuspectFill
from bot.fill_path import FillPath
from bot.infra.bitflyer_parse import parse_child_order_events
from bot.infra.board_store import BoardStore
from bot.infra.logging_structured import OrderLogger
from bot.infra.pyb_session import FeedLink
from bot.infra.tape_recorder import PUBLIC_PREFIXES, TapeRecorder
from bot.links import RunnerMetrics
from bot.types.dto import ChildOrderEventType, Fill, OrderLogRow, Side
from bot.types.tasks import BackgroundTasks
from bot.venue_sync import VenueSync


class FeedDispatch:
    def __init__(
        self,
        *,
        product_code: str,
        clock: Any,
        store: BoardStore,
        tracker: OrderTracker,
        fills: FillPath,
        decisions: DecisionLoop,
        sync: VenueSync,
        order_log: OrderLogger,
        metrics: RunnerMetrics,
        tasks: BackgroundTasks,
        recorder: TapeRecorder | None = None,
        mark_own: bool = False,
    ) -> None:
        self._recorder = recorder
        self._mark_own = mark_own
        self._product = product_code
        self._clock = clock
        self._store = store
        self._tracker = tracker
        self._fills = fills
        self._decisions = decisions
        self._sync = sync
        self._order_log = order_log
        self._metrics = metrics
        self._tasks = tasks

    # ---------------------------------------------------------------- the socket's life
    def on_connect(self, link: FeedLink) -> None:
        if link.connects > 1:
            self._metrics.reconnects += 1
        self._sync.needed = True
        self._tasks.spawn(self._sync.reconcile(f"{link.name} connect #{link.connects}"), "reconcile")

    def on_disconnect(self, link: FeedLink) -> None:
        self._sync.feed_lost()
        self._store.mark_disconnected()
        self._decisions.decide(self._clock(), None)

    # ---------------------------------------------------------------- frames
    def on_json(self, msg: Any) -> None:
        now = self._clock()
        try:
            params = msg["params"]
            channel = params["channel"]
        except (KeyError, TypeError, IndexError):
            logger.warning("ws: skipped a malformed frame: {!r}", str(msg)[:200])
            return
        if not isinstance(channel, str):
            logger.warning("ws: skipped a frame whose channel is not a name: {!r}", str(msg)[:200])
            return
        if self._recorder is not None and channel.startswith(PUBLIC_PREFIXES):
            message = params.get("message")
            own = own_levels(message, self._tracker) if self._mark_own else None
            self._recorder.record(now, channel, message, own)
        if channel.startswith("lightning_board_"):
            self._store.onmessage(msg)
            self._decisions.on_board(now, channel.startswith("lightning_board_snapshot_"))
        elif channel == "child_order_events":
            self.on_child_order_events(params.get("message"), now)

    def on_child_order_events(self, message: Any, now: int) -> None:
        events = parse_child_order_events(message if isinstance(message, list) else [])
        wall = datetime.now(UTC)
        tracker = self._tracker
        for ev in events:
            if ev.product_code and ev.product_code != self._product:
                # the channel covers the whole account: another product's orders are not ours to count
                self._metrics.other_product_events += 1
                continue
            order = tracker.by_acceptance(ev.child_order_acceptance_id)
            fill = tracker.on_event(ev)
            if ev.event_type is not ChildOrderEventType.EXECUTION and order is not None:
                self._order_log.log(
                    OrderLogRow(
                        ts=wall,
                        action=ev.event_type.value.lower(),
                        order_id=ev.child_order_acceptance_id,
                        client_order_id=order.client_id,
                        side=order.side,
                        price=order.price,
                        size=ev.size or order.size,
                        tif="GTC",
                        ttl_ms=order.ttl_ms,
                        tag=order.tag,
                        reason=ev.reason or "",
                        status="event",
                    )
                )
            if isinstance(fill, SuspectFill):
                self._verify(fill.fill, fill.why)
                continue
            if fill is not None:
                if order is None:
                    in_flight = [
                        o for o in tracker.open_orders() if o.acceptance_id is None and o.side is fill.side
                    ]
                    if not in_flight:
                        self._verify(fill, "an order we did not send")
                        continue
                    # our own fill often beats the send's answer: it is the in-flight order's
                    tags = {o.tag for o in in_flight}
                    fill = replace(fill, tag=tags.pop() if len(tags) == 1 else fill.tag)
                self._fills.apply(fill, now)
        if events:
            self._decisions.decide(now, None)

    def _verify(self, fill: Fill, why: str) -> None:
        """An execution the feed cannot vouch for (a hand trade, a forged or corrupt frame) is evidence, not a
        fill: REST's executions apply it if it is real, with its PnL."""
        self._metrics.unverified_fills += 1
        logger.warning(
            "execution {} ({}): {}; verifying over REST", fill.exec_id, fill.child_order_acceptance_id, why
        )
        self._sync.soon("an execution the feed cannot vouch for")


def own_levels(message: Any, tracker: OrderTracker) -> dict[str, list[list[Any]]] | None:
    """Our own resting size at the levels a board frame carries (a marked tape's `own`), or None: replay takes
    it out of the crowd, so our past quotes never count as someone else's liquidity."""
    ours = tracker.resting_levels()  # what the board view subtracts too
    if not ours or not isinstance(message, dict):
        return None
    out: dict[str, list[list[Any]]] = {}
    for key, side in (("bids", Side.BUY), ("asks", Side.SELL)):
        for level in message.get(key) or ():
            try:
                size = ours.get((side, Decimal(str(level["price"]))))
            except (KeyError, TypeError, ArithmeticError, ValueError):
                continue
            if size:
                out.setdefault(key, []).append([level["price"], str(size)])
    return out or None
