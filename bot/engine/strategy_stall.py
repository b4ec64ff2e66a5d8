"""Stall-then-strike: when the (own-excluded) best bid and ask have not moved for `stall_T_ms`, quote both
sides once; cancel on TTL or best change; close on an adverse move or hold timeout; latch on the kill switch.

Pure: no clock reads, no I/O. Time (`now`, monotonic ns) and the market (`BoardSnapshot`, already excluding
our own resting orders) are passed in; our orders are read from the OrderTracker the executor keeps up to
date.

Decision order (first match decides the reason; SPEC §5, §7, §10), and why:
  1. KILLED gate or our own kill latch -> nothing at all. The runner owns the kill flatten; a second source of
     market orders could over-close.
  2. STOPPED -> nothing at all: in STOPPED the bot sends no order (SPEC §7).
  3. Kill switch (RUNNING/PAUSED), before anything else that could add risk: CANCEL_ALL + CLOSE_MARKET, latch.
  4. Protective exits (RUNNING/PAUSED): adverse move, then hold timeout -> cancel stall orders + close all.
     They come before entry logic because a loss limit must not wait behind a quote decision. Held back
     (reason = the block) only while RECONCILING (our position may be wrong: a close could flip it) or
     MARKET_CLOSED (the venue refuses orders; re-sending at every board message would be a reject storm).
     STALE_DATA and EXCHANGE_BACKOFF do not hold them back: a close only reduces risk, and the executor paces
     requests. Never a second close while one is live (CLOSE_PENDING), and at most one per CLOSE_RETRY_MS, so
     a refused close is retried at a bounded rate (bitFlyer cuts an account to 10 orders/min for an hour past
     100/min).
  5. Cancels of live stall orders: STALE_DATA, PAUSED, TTL expiry, best change. Only orders that still need a
     cancel count (not PENDING_CANCEL, not asked within CANCEL_RETRY_MS): no cancel storms.
  6. Entry gates, cheapest and most general first: PAUSED, CLOSE_PENDING, block reason, stale board, NO_BOOK,
     ORDERS_LIVE, ALREADY_STRUCK, NOT_STALLED, SPREAD_TOO_NARROW, then per-side inventory / crossing checks,
     then RATE_BUDGET (a skipped strike does not use up the stall), then STRIKE.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol

from bot.config.loader import RiskConfig, StallStrategyConfig
from bot.engine.orders import OrderTracker
from bot.types.dto import (
    NS_PER_MS,
    Action,
    ActionKind,
    BoardSnapshot,
    DecisionMeta,
    Gate,
    OrderState,
    OwnOrder,
    Reason,
    RunState,
    Side,
)

# enum members read through the class cost ~70 ns each; the hot path reads these names instead
_RUNNING, _PAUSED, _KILLED, _STOPPED = RunState.RUNNING, RunState.PAUSED, RunState.KILLED, RunState.STOPPED
_R_NOT_STALLED, _R_ALREADY_STRUCK, _R_ORDERS_LIVE = (
    Reason.NOT_STALLED,
    Reason.ALREADY_STRUCK,
    Reason.ORDERS_LIVE,
)
_R_KILL_SWITCH, _R_RATE_BUDGET, _R_DUST = Reason.KILL_SWITCH, Reason.RATE_BUDGET, Reason.DUST
_R_STALE_DATA = Reason.STALE_DATA
# no-action reasons that only wait: the same inputs give the same decision until a deadline (see _repeat_of);
# a strike the rate budget holds back waits too (the budget is one of the inputs)
_REPEATABLE = frozenset(
    {
        Reason.NOT_STALLED,
        Reason.ALREADY_STRUCK,
        Reason.SPREAD_TOO_NARROW,
        Reason.NO_BOOK,
        Reason.RATE_BUDGET,
    }
)

STALL_TAG = "stall"
CLOSE_TAG = "close"
CANCEL_RETRY_MS = 1000  # ask again for a cancel the venue has not confirmed after this long
RATE_RETRY_MS = 100  # re-try a strike the rate budget held back this soon, if the gate cannot say when
CLOSE_RETRY_MS = 500  # at most one protective close per this long: a refused close must not become a storm

_ZERO = Decimal(0)
# Blocks under which protective closes are held back (see module docstring, step 4).
_EXIT_BLOCKS = (Reason.RECONCILING, Reason.MARKET_CLOSED)


class InventoryView(Protocol):
    """The part of InventoryManager the strategy reads."""

    @property
    def position_btc(self) -> Decimal: ...
    @property
    def avg_price(self) -> Decimal | None: ...
    @property
    def opened_at(self) -> int | None: ...
    @property
    def kill_detail(self) -> str: ...
    def kill_check(self, mid: Decimal | None) -> Reason | None: ...


# ---- pure helpers ---------------------------------------------------------------------------------------
def floor_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """Largest multiple of `tick` <= price (a bid never rounds towards the ask)."""
    return (price / tick).to_integral_value(rounding=ROUND_FLOOR) * tick


def ceil_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """Smallest multiple of `tick` >= price (an ask never rounds towards the bid)."""
    return (price / tick).to_integral_value(rounding=ROUND_CEILING) * tick


def is_stalled(board: BoardSnapshot, now: int, stall_T_ms: int) -> bool:  # noqa: N803 - config's own name
    """THE stall rule (SPEC §5): a fresh two-sided book whose best bid and best ask prices (own orders
    excluded) have not changed for at least `stall_T_ms`, on the local monotonic clock."""
    return board.has_both_sides and not board.stale and now - board.best_changed_at >= stall_T_ms * NS_PER_MS


def stall_deadline(board: BoardSnapshot, stall_T_ms: int) -> int:  # noqa: N803
    """The instant `is_stalled` becomes true if nothing changes."""
    return board.best_changed_at + stall_T_ms * NS_PER_MS


def quote_ticks(best_bid: int, best_ask: int, mode: str, offset_ticks: int) -> tuple[int, int]:
    """Raw (bid, ask) quotes in ticks, before any crossing check: around the mid, a bid rounds down and an
    ask up (never towards each other); or `offset_ticks` inside the bests."""
    if mode == "mid":
        twice_mid = best_bid + best_ask
        return (twice_mid - 2 * offset_ticks) // 2, -((-twice_mid - 2 * offset_ticks) // 2)
    return best_bid + offset_ticks, best_ask - offset_ticks


def is_dust(position: Decimal, min_size: Decimal) -> bool:
    """A non-zero position the venue would refuse to close in one order (below its minimum order size)."""
    return position != 0 and abs(position) < min_size


def side_keeps_inventory(position: Decimal, side: Side, size: Decimal, max_inventory: Decimal) -> bool:
    """A full fill keeps |position| within the limit, or the side reduces the position (always allowed)."""
    after = position + side.sign * size
    return abs(after) <= max_inventory or abs(after) < abs(position)


@dataclass(frozen=True, slots=True)
class _Quote:
    side: Side
    price: Decimal


class GateView(Protocol):
    """What the runner knows that the strategy must obey, read-only here (the runner's `Gate` is one)."""

    @property
    def run_state(self) -> RunState: ...

    @property
    def block_reason(self) -> Reason | None: ...

    @property
    def order_budget(self) -> int: ...

    @property
    def order_budget_grows_at(self) -> int | None: ...


class StallThenStrikeStrategy:
    def __init__(
        self,
        cfg: StallStrategyConfig,
        tick_size: Decimal,
        inventory: InventoryView,
        *,
        orders: OrderTracker,
        risk: RiskConfig | None = None,
        min_size: Decimal = Decimal("0.001"),
        gate: GateView | None = None,
        reuse_repeats: bool = True,
    ) -> None:
        if tick_size <= 0:
            raise ValueError("tick_size must be > 0")
        self._min_size = min_size  # exchange.min_size: a smaller close is refused by the venue (-110)
        self._cfg = cfg
        self._risk = risk
        self._tick = tick_size
        self.inventory = inventory  # public: the runner swaps in the one restored from the state file
        self._orders = orders
        self.gate: GateView = gate if gate is not None else Gate()  # a lone strategy (tests) runs ungated
        self._killed = False
        self._saw_killed_gate = False
        self._struck_stall: int | None = None  # best_changed_at of the stall we struck
        self._last_strike_at: int | None = None  # `now` of our last strike
        self._last_close_at: int | None = None  # `now` of our last protective close
        self._cancel_asked: dict[str, int] = {}  # client_id -> when we last asked for its cancel
        self._last_board: BoardSnapshot | None = None
        self._last_now: int | None = None
        self._last_reason: Reason | None = None
        self._seen_state: RunState | None = None  # the gate at the last decision
        self._seen_block: Reason | None = None
        self._config_dirty = False
        self._dust_note = ""
        self._mark_key: tuple[int | None, int | None, bool] | None = None  # the board the mark was taken of
        self._mark: Decimal | None = None
        self._mark_board: BoardSnapshot | None = None
        # a repeat (see `_repeat_of`): the last decision when it may be reused, its inputs, its deadline
        self._reuse_repeats = reuse_repeats
        self._repeatable: DecisionMeta | None = None
        self._seen_budget = 0
        self._seen_ledger: tuple[int, int] | None = None
        self._due_of: int | None = None  # `_last_now` the cached deadline was worked out for
        self._due: int | None = None
        self._repeated = False  # the last on_board reused its decision: the deadline worked out stands
        self._reverse_key: tuple[Decimal, int, str] | None = None  # what the reverse-stop lines were made of
        self._reverse_lines = (0, 0)  # long stops at <= the first, short at >= the second (see _exit_due)

    # ---- public surface -------------------------------------------------------------------------------
    @property
    def cfg(self) -> StallStrategyConfig:
        return self._cfg

    @property
    def risk(self) -> RiskConfig | None:
        """Kept for the runner/dashboard; the kill limits themselves live in the inventory."""
        return self._risk

    @property
    def killed(self) -> bool:
        """The kill switch fired in this strategy; it stays true until `reset_kill()` (or a human reset seen
        as the gate leaving KILLED)."""
        return self._killed

    def reset_kill(self) -> None:
        """Human reset (SPEC §7 POST /strategy/reset): clear the latch."""
        self._killed = False
        self._saw_killed_gate = False

    def update_config(self, cfg: StallStrategyConfig, risk: RiskConfig | None = None) -> None:
        """Live config: used from the next decision; `next_deadline` reflects it at once."""
        self._cfg = cfg
        if risk is not None:
            self._risk = risk
        self._config_dirty = True

    def on_board(self, board: BoardSnapshot, now: int) -> tuple[list[Action], DecisionMeta]:
        repeat = self._repeat_of(board, now)
        if repeat is not None:
            # decided again at `now`, as far as the deadline goes: only the rate budget's retry runs from the
            # decision's instant (no other deadline lies between the last decision and `now`)
            self._last_now = now
            if repeat.reason is _R_RATE_BUDGET:
                self._repeated = False
            else:
                self._repeated = True
                self._due_of = now
            return [], repeat
        self._repeated = False
        self._dust_note = ""
        actions, reason, detail, entry = self._decide(board, now)
        if self._dust_note:
            if not actions and reason is _R_NOT_STALLED:
                reason = _R_DUST
            detail = f"{detail}; {self._dust_note}" if detail else self._dust_note
        self._last_board = board
        self._last_now = now
        self._last_reason = reason
        gate = self.gate
        self._seen_state, self._seen_block = gate.run_state, gate.block_reason
        self._seen_budget = gate.order_budget
        self._seen_ledger = self._ledger_version()
        self._config_dirty = False
        meta = DecisionMeta(
            ts=now,
            reason=reason,
            best_age_ms=board.best_age_ms(now),
            spread_ticks=board.spread_ticks,
            inventory_btc=self.inventory.position_btc,
            entry_bid_px=entry.get(Side.BUY) if entry else None,
            entry_ask_px=entry.get(Side.SELL) if entry else None,
            actions=tuple(actions) if actions else (),
            detail=detail,
        )
        self._repeatable = meta if not actions and reason in _REPEATABLE else None
        return actions, meta

    def _ledger_version(self) -> tuple[int, int] | None:
        """Which ledger, at which change: None for an inventory that does not count its changes."""
        version = getattr(self.inventory, "version", None)
        return None if version is None else (id(self.inventory), version)

    def _repeat_of(self, board: BoardSnapshot, now: int) -> DecisionMeta | None:
        """The last decision again, without deciding, when nothing it read can have changed: the same board
        as far as the strategy reads one (best prices, when they last changed, stale; not the sizes), the
        same gate (its order budget included), no config change, no order of ours open, the same ledger (its
        version), and none of the strategy's deadlines reached. Only the waiting reasons qualify (not stalled
        yet, already struck, spread too narrow, no book, a strike the rate budget holds back): each is a pure
        function of those inputs. None: decide."""
        last = self._repeatable
        if last is None or self._config_dirty or not self._reuse_repeats:
            return None
        seen = self._last_board
        if board is not seen and (
            seen is None
            or board.bid != seen.bid
            or board.ask != seen.ask
            or board.best_changed_at != seen.best_changed_at
            or board.stale is not seen.stale
        ):
            return None  # what the strategy reads of a board (sizes at the touch it does not read)
        gate = self.gate
        if (
            gate.run_state is not self._seen_state
            or gate.block_reason is not self._seen_block
            or gate.order_budget != self._seen_budget
            or self._orders.may_have_open()
            or self._seen_ledger is None
            or self._ledger_version() != self._seen_ledger
            or self._due_of != self._last_now
            or (self._due is not None and now >= self._due)
        ):
            return None
        return self.repeat_meta(board, now)

    def repeat_meta(self, board: BoardSnapshot, now: int) -> DecisionMeta | None:
        """The row of the last decision reused at `now` (its reason, figures and detail; the age of `board`'s
        best), or None when the last decision is not one that may be reused. Whether it may be reused now is
        `_repeat_of`'s question (or a runner's that knows none of its inputs changed)."""
        last = self._repeatable
        if last is None:
            return None
        return DecisionMeta(
            ts=now,
            reason=last.reason,
            best_age_ms=board.best_age_ms(now),
            spread_ticks=last.spread_ticks,
            inventory_btc=last.inventory_btc,
            detail=last.detail,
        )

    def next_deadline(self, now: int) -> int | None:
        """Earliest instant a decision could change with no new market data, never earlier than `now`
        (== now: decide at once, e.g. after a config or gate change, or a deadline the runner woke late for).
        None: nothing pending. Deadlines already decided at the last `on_board` are not repeated."""
        board = self._last_board
        if board is None or self._last_now is None:
            return None
        gate = self.gate
        if (
            self._config_dirty
            or gate.run_state is not self._seen_state
            or gate.block_reason is not self._seen_block
        ):
            # inputs changed since the last decision (a shorter stall_T_ms, a lifted block, a tighter
            # max_reverse_ticks...): decide at once, the next call then names the real deadline
            return now
        last = self._last_now
        if self._repeated and self._due_of == last:
            # nothing the deadline reads changed since it was worked out (what `_repeat_of` checked)
            cached = self._due
            return None if cached is None else max(cached, now)
        cands: list[int] = []
        acting = not self._killed and gate.run_state in (_RUNNING, _PAUSED)
        if acting and gate.run_state is _RUNNING and gate.block_reason is None:
            if board.has_both_sides and not board.stale and board.best_changed_at != self._struck_stall:
                cands.append(stall_deadline(board, self._cfg.stall_T_ms))
            if self._last_reason is _R_RATE_BUDGET:
                # when the budget can grow; a runner that cannot tell has us try again soon
                grows_at = gate.order_budget_grows_at
                cands.append(last + RATE_RETRY_MS * NS_PER_MS if grows_at is None else grows_at)
        if acting:
            if self._last_strike_at is not None:
                # the TTL of the last strike's orders, even if the executor has not registered them yet
                cands.append(self._last_strike_at + self._cfg.ttl_ms * NS_PER_MS)
            live = self._orders.open_orders(tag=STALL_TAG) if self._orders.may_have_open() else ()
            for o in live:
                if o.state is OrderState.PENDING_CANCEL:
                    continue  # the venue's answer arrives as an event, not at a time we know
                asked = self._cancel_asked.get(o.client_id)
                if asked is not None:
                    cands.append(asked + CANCEL_RETRY_MS * NS_PER_MS)
                elif o.expires_at is not None:
                    cands.append(o.expires_at)
            position = self.inventory.position_btc
            if position:  # flat: no hold timeout, no close to retry
                hold = self._hold_deadline()
                if hold is not None:
                    cands.append(hold)
                retry_at = self._close_retry_at()
                if retry_at is not None and not is_dust(position, self._min_size):
                    cands.append(retry_at)
        due: int | None = None
        for d in cands:  # earlier ones were decided at `last`: no busy loop
            if d > last and (due is None or d < due):
                due = d
        self._due_of, self._due = last, due  # a repeat of the last decision is valid until then
        return None if due is None else max(due, now)

    # ---- the decision ---------------------------------------------------------------------------------
    def _decide(
        self, board: BoardSnapshot, now: int
    ) -> tuple[list[Action], Reason, str, dict[Side, Decimal]]:
        gate = self.gate
        state = gate.run_state
        if state is _KILLED:
            self._saw_killed_gate = True
        elif self._saw_killed_gate:
            # KILLED -> anything else only happens by a human reset (SPEC §7)
            self.reset_kill()
        if state is _KILLED or self._killed:
            return [], Reason.KILLED, "kill switch latched; the runner flattens", {}
        if state is _STOPPED:
            return [], Reason.STOPPED, "", {}

        orders = self._orders
        if orders.may_have_open():
            live_stall = orders.open_orders(tag=STALL_TAG)
            close_live = bool(orders.open_orders(tag=CLOSE_TAG))
        else:
            live_stall, close_live = [], False
        if self._cancel_asked:
            live_ids = {o.client_id for o in live_stall}
            self._cancel_asked = {cid: t for cid, t in self._cancel_asked.items() if cid in live_ids}
        position = self.inventory.position_btc

        # 3. kill switch
        mid = self._mark_of(board)
        if self.inventory.kill_check(mid) is _R_KILL_SWITCH:
            self._killed = True
            actions = [Action(ActionKind.CANCEL_ALL, _R_KILL_SWITCH, tag="")]
            detail = getattr(self.inventory, "kill_detail", "") or "kill switch"
            if position != 0 and not close_live:
                if is_dust(position, self._min_size):
                    detail += f" | dust {position} BTC: the runner's flatten handles it"
                elif gate.block_reason in _EXIT_BLOCKS:
                    detail += f" | close left to the runner ({gate.block_reason})"
                else:
                    actions.append(self._close(position, _R_KILL_SWITCH))
            return actions, _R_KILL_SWITCH, detail, {}

        # 4. protective exits
        exit_reason, exit_detail = self._exit_due(board, now, position)
        dust_note = ""
        if exit_reason is not None and is_dust(position, self._min_size):
            # the venue refuses an order this small: the exit is skipped (and said so), trading goes on
            dust_note = (
                f"dust: {exit_reason} skipped, position {position} BTC is below min size {self._min_size}"
            )
            exit_reason = None
        self._dust_note = dust_note
        if exit_reason is not None:
            cancel = self._stall_cancel(live_stall, now, exit_reason)
            retry_at = self._close_retry_at()
            held: Reason | None = None
            if close_live:
                held, why = Reason.CLOSE_PENDING, "a close order is live"
            elif gate.block_reason in _EXIT_BLOCKS:
                held, why = gate.block_reason, f"held back while {gate.block_reason}"
            elif retry_at is not None and now < retry_at:
                held, why = Reason.CLOSE_PENDING, f"next close allowed in {(retry_at - now) // NS_PER_MS} ms"
            if held is not None:
                # stall orders still go; a decision without actions is named after what holds the close back
                return cancel, exit_reason if cancel else held, f"{exit_reason}: {exit_detail}; {why}", {}
            self._last_close_at = now
            return [*cancel, self._close(position, exit_reason)], exit_reason, exit_detail, {}

        # 5. cancels of live stall orders
        cancel_reason, cancel_detail = self._cancel_due(board, now, live_stall)
        if cancel_reason is not None:
            return self._stall_cancel(live_stall, now, cancel_reason), cancel_reason, cancel_detail, {}

        # 6. entry
        if state is _PAUSED:
            return [], Reason.PAUSED, "", {}
        if close_live:
            return [], Reason.CLOSE_PENDING, "a close order is live", {}
        if gate.block_reason is not None:
            return [], gate.block_reason, "", {}
        if board.stale:
            return [], _R_STALE_DATA, "board is stale", {}
        if board.bid is None or board.ask is None:
            return [], Reason.NO_BOOK, "one side of the book is empty", {}
        if live_stall:
            return [], _R_ORDERS_LIVE, f"{len(live_stall)} stall order(s) live", {}
        if board.best_changed_at == self._struck_stall:
            return [], _R_ALREADY_STRUCK, "one strike per stall: waiting for the best to move", {}
        cfg = self._cfg
        if not is_stalled(board, now, cfg.stall_T_ms):
            return [], _R_NOT_STALLED, "", {}
        spread = board.ask - board.bid
        if spread < cfg.min_spread_tick:
            return [], Reason.SPREAD_TOO_NARROW, f"spread {spread} < {cfg.min_spread_tick} ticks", {}
        return self._strike(board, now, position)

    def _strike(
        self, board: BoardSnapshot, now: int, position: Decimal
    ) -> tuple[list[Action], Reason, str, dict[Side, Decimal]]:
        cfg = self._cfg
        tick = self._tick
        bid_t, ask_t = board.bid, board.ask
        assert bid_t is not None and ask_t is not None
        bid_q, ask_q = quote_ticks(bid_t, ask_t, cfg.quote_mode, cfg.quote_offset_ticks)
        # from here on, a strike: Decimal prices for the order requests, the logs and the sentences
        best_bid, best_ask = bid_t * tick, ask_t * tick
        bid_px, ask_px = bid_q * tick, ask_q * tick
        quotes: list[_Quote] = []
        skipped: list[str] = []
        crossed = inventory_blocked = False
        for side, px in ((Side.BUY, bid_px), (Side.SELL, ask_px)):
            if not side_keeps_inventory(position, side, cfg.size_min, cfg.max_inventory_btc):
                inventory_blocked = True
                skipped.append(
                    f"{side} skipped: position {position} + {cfg.size_min} would pass "
                    f"max_inventory_btc {cfg.max_inventory_btc}"
                )
            elif side is Side.BUY and px >= best_ask:
                crossed = True
                skipped.append(f"BUY skipped: bid {px:,} would cross best ask {best_ask:,}")
            elif side is Side.SELL and px <= best_bid:
                crossed = True
                skipped.append(f"SELL skipped: ask {px:,} would cross best bid {best_bid:,}")
            elif px <= 0:
                crossed = True
                skipped.append(f"{side} skipped: price {px:,} is not positive")
            else:
                quotes.append(_Quote(side, px))
        if len(quotes) == 2 and bid_px >= ask_px:
            # our own bid and ask would trade with each other
            crossed = True
            skipped.append(f"both skipped: bid {bid_px:,} >= ask {ask_px:,}")
            quotes = []
        detail = "; ".join(skipped)
        if not quotes:
            why = Reason.INVENTORY_LIMIT if inventory_blocked and not crossed else Reason.WOULD_CROSS
            return [], why, detail, {}
        if self.gate.order_budget < len(quotes):
            return (
                [],
                _R_RATE_BUDGET,
                (f"strike needs {len(quotes)} order(s), rate budget allows {self.gate.order_budget}"),
                {},
            )
        self._struck_stall = board.best_changed_at
        self._last_strike_at = now
        actions = [
            Action(
                ActionKind.PLACE_LIMIT,
                Reason.STRIKE,
                side=q.side,
                price=q.price,
                size=cfg.size_min,
                ttl_ms=cfg.ttl_ms,
                tag=STALL_TAG,
            )
            for q in quotes
        ]
        return actions, Reason.STRIKE, detail, {q.side: q.price for q in quotes}

    # ---- pieces ---------------------------------------------------------------------------------------
    def _exit_due(self, board: BoardSnapshot, now: int, position: Decimal) -> tuple[Reason | None, str]:
        if position == 0:
            return None, ""
        avg = self.inventory.avg_price
        if avg is not None:
            by_mid = self._cfg.reverse_ref == "mid"
            long_line, short_line = self._reverse_stop_lines(avg, by_mid)
            b, a = board.bid, board.ask
            if by_mid:
                # the mark: a fill at mid inside a wide spread is not "adverse" just because the far best is;
                # in half ticks (bid + ask = twice the mid), so the comparison stays in integers
                if board.stale or b is None or a is None:
                    b = a = None
                else:
                    b = a = b + a
            if (position > 0 and b is not None and b <= long_line) or (
                position < 0 and a is not None and a >= short_line
            ):
                return Reason.REVERSE_STOP, self._reverse_detail(board, position, avg, by_mid)
        hold = self._hold_deadline()
        if hold is not None and now >= hold:
            held_ms = (now - (self.inventory.opened_at or 0)) // NS_PER_MS
            return Reason.HOLD_TIMEOUT, f"position {position} held {held_ms} ms >= {self._cfg.max_hold_ms} ms"
        return None, ""

    def _reverse_stop_lines(self, avg: Decimal, by_mid: bool) -> tuple[int, int]:
        """The reverse stop in integers: long stops when the best bid (or twice the mid, in half ticks) is <=
        the first line, short when the best ask (or twice the mid) is >= the second. Worked out once per
        average price and setting, not per message."""
        limit = self._cfg.max_reverse_ticks
        key = (avg, limit, "mid" if by_mid else "best")
        if key != self._reverse_key:
            scale = 2 if by_mid else 1
            avg_ticks = avg / self._tick
            down = (avg_ticks - limit) * scale  # long: stop at or below this
            up = (avg_ticks + limit) * scale  # short: stop at or above this
            self._reverse_lines = (
                int(down.to_integral_value(rounding=ROUND_FLOOR)),
                int(up.to_integral_value(rounding=ROUND_CEILING)),
            )
            self._reverse_key = key
        return self._reverse_lines

    def _reverse_detail(self, board: BoardSnapshot, position: Decimal, avg: Decimal, by_mid: bool) -> str:
        limit = self._cfg.max_reverse_ticks * self._tick
        if position > 0:
            what, px = ("mid", board.mid_price) if by_mid else ("best bid", board.best_bid_price)
            return f"long {position} @ {avg:,}: {what} {px:,} <= {avg - limit:,}"
        what, px = ("mid", board.mid_price) if by_mid else ("best ask", board.best_ask_price)
        return f"short {position} @ {avg:,}: {what} {px:,} >= {avg + limit:,}"

    def _mark_of(self, board: BoardSnapshot) -> Decimal | None:
        """`board_mid`, made once per distinct best: the same Decimal object lets the inventory skip a
        re-mark that would change nothing."""
        if board is self._mark_board:  # the view hands back the same snapshot while the touch holds
            return self._mark
        self._mark_board = board
        key = (board.bid, board.ask, board.stale)
        if key != self._mark_key:
            self._mark_key = key
            self._mark = board_mid(board)
        return self._mark

    def _close_retry_at(self) -> int | None:
        return None if self._last_close_at is None else self._last_close_at + CLOSE_RETRY_MS * NS_PER_MS

    def _hold_deadline(self) -> int | None:
        opened = self.inventory.opened_at
        if self._cfg.max_hold_ms <= 0 or opened is None or self.inventory.position_btc == 0:
            return None
        return opened + self._cfg.max_hold_ms * NS_PER_MS

    def _needs_cancel(self, o: OwnOrder, now: int) -> bool:
        if o.state is OrderState.PENDING_CANCEL:
            return False
        asked = self._cancel_asked.get(o.client_id)
        return asked is None or now - asked >= CANCEL_RETRY_MS * NS_PER_MS

    def _cancel_due(self, board: BoardSnapshot, now: int, live: list[OwnOrder]) -> tuple[Reason | None, str]:
        if not live:
            return None, ""
        pending = [o for o in live if self._needs_cancel(o, now)]
        if not pending:
            return None, ""
        if board.stale or self.gate.block_reason is _R_STALE_DATA:
            return _R_STALE_DATA, "stale market data: pulling stall orders"
        if self.gate.run_state is _PAUSED:
            return Reason.PAUSED, "paused: pulling stall orders"
        expired = [o for o in pending if o.expires_at is not None and o.expires_at <= now]
        if expired:
            return Reason.TTL_EXPIRED, f"{len(expired)} stall order(s) past ttl_ms"
        if self._cfg.cancel_on_best_change:
            changed = [o for o in pending if board.best_changed_at > self._placed_ref(o)]
            if changed:
                return Reason.BEST_CHANGED, "best bid/ask moved since the strike"
        return None, ""

    def _placed_ref(self, o: OwnOrder) -> int:
        """When the market was last seen unchanged for this order: the strike decision that made it (the
        executor stamps placed_at a little later), or its placed_at for orders from an earlier strike."""
        if self._last_strike_at is None:
            return o.placed_at
        return min(o.placed_at, self._last_strike_at)

    def _stall_cancel(self, live: list[OwnOrder], now: int, reason: Reason) -> list[Action]:
        pending = [o for o in live if self._needs_cancel(o, now)]
        if not pending:
            return []
        for o in pending:
            self._cancel_asked[o.client_id] = now
        return [Action(ActionKind.CANCEL_ALL_STALL, reason, tag=STALL_TAG)]

    def _close(self, position: Decimal, reason: Reason) -> Action:
        side = Side.SELL if position > 0 else Side.BUY
        return Action(ActionKind.CLOSE_MARKET, reason, side=side, size=abs(position), tag=CLOSE_TAG)


def board_mid(board: BoardSnapshot) -> Decimal | None:
    """Mid of the own-excluded best for marking; None when stale or one-sided (the inventory keeps its last
    mark then, so a missing book cannot hide a loss)."""
    if board.stale or board.bid is None or board.ask is None:
        return None
    return board.mid_price
