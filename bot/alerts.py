"""Alerts: what the trader is told on the phone, and when. It turns the bot's events into messages for the
Notifier (which sends them off the loop): a kill or the kill switch (when it begins, and its report once the
exchange confirms it), a stop that leaves a position open, the feed or the exchange down longer than
`notify.down_after_s`, the market closing and reopening (maintenance), the margin watch's alert starting and
ending (keep rate low, a margin call), an exception in the decision loop, a file the bot cannot write
(storage failing: entries stop) and its recovery, and a summary of the trading day at its roll. It decides
nothing about trading.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from bot.infra.notify import Notifier
from bot.infra.storage_health import StorageEvent, StorageEventKind
from bot.settle import SettleGoal
from bot.settle_report import signed
from bot.types.dto import Reason
from bot.types.snapshot import SettleReport

TITLE = "stall_then_strike"


class Alerts:
    def __init__(self, notifier: Notifier, *, down_after_s: Callable[[], float]) -> None:
        self._notifier = notifier
        self._down_after_s = down_after_s
        self._down_since: float | None = None
        self._down_told = False
        self._market_closed = False
        self._margin_alert: str | None = None

    @property
    def notifier(self) -> Notifier:
        return self._notifier

    # ---------------------------------------------------------------- events
    def settle_began(self, goal: SettleGoal, who: str, reason: str) -> None:
        if goal is SettleGoal.FLAT:
            self._notifier.send(
                "kill", f"{TITLE}: KILLED", f"KILLED by {who}: {reason}", level="failure", urgent=True
            )

    def settle_confirmed(self, report: SettleReport, position: Decimal) -> None:
        if report.goal == SettleGoal.FLAT.value:
            self._notifier.send(
                "kill_report", f"{TITLE}: KILLED", f"KILLED — {report.text}", level="failure", urgent=True
            )
        elif position != 0:
            self._notifier.send(
                "stop_open",
                f"{TITLE}: STOPPED with a position",
                f"STOPPED with an open position of {signed(position)} BTC — {report.text}",
                level="warning",
                urgent=True,
            )

    def loop_error(self, where: str, error: BaseException) -> None:
        self._notifier.send(
            "loop_error",
            f"{TITLE}: error",
            f"{where} raised {type(error).__name__}: {error}"[:500],
            level="failure",
        )

    def storage_changed(self, event: StorageEvent) -> None:
        """Storage going bad (entries stop) and all good again. On the loop: the storage health reports from
        writer threads, the runner hands the event over. Only the first file to fail and the last to recover
        are told, each kind at most once a minute, so a flapping disk does not flood the phone."""
        if event.kind is StorageEventKind.FAILED:
            if event.still_failing == 1:
                self._notifier.send(
                    "storage_failed",
                    f"{TITLE}: storage failing",
                    f"{event.fault.describe(event.tz)} — no new entries; exits and kill still work",
                    level="failure",
                )
        elif event.still_failing == 0:
            self._notifier.send(
                "storage_back",
                f"{TITLE}: storage back",
                f"{event.fault.file} written again; entries allowed again",
                level="info",
            )

    def day_rolled(self, day: str, realized: Decimal, pnl: Decimal, max_dd: Decimal, fills: int) -> None:
        self._notifier.send(
            "daily",
            f"{TITLE}: trading day {day}",
            f"Day {day}: PnL {signed(pnl)} JPY (realized {signed(realized)}), "
            f"max drawdown {signed(max_dd)} JPY, {fills} fill(s)",
            level="info",
            urgent=True,
        )

    # ---------------------------------------------------------------- conditions (housekeeping looks)
    def watch(
        self,
        now_s: float,
        *,
        feed_up: bool,
        block: Reason | None,
        block_detail: str,
        margin_alert: str | None = None,
    ) -> None:
        """Called every few seconds: the feed or exchange down too long, the market closing and reopening, the
        margin watch's alert (told when it starts and when it ends, not while it stands)."""
        if (margin_alert is None) != (self._margin_alert is None):
            if margin_alert is not None:
                self._notifier.send("margin", f"{TITLE}: margin", f"{margin_alert}.", urgent=True)
            else:
                self._notifier.send(
                    "margin",
                    f"{TITLE}: margin ok",
                    "Margin is back: entries allowed.",
                    level="info",
                    urgent=True,
                )
        self._margin_alert = margin_alert
        down = not feed_up or block is Reason.STALE_DATA
        if down:
            if self._down_since is None:
                self._down_since = now_s
            elif not self._down_told and now_s - self._down_since >= self._down_after_s():
                self._down_told = True
                self._notifier.send(
                    "feed_down",
                    f"{TITLE}: market data down",
                    f"No market data for {now_s - self._down_since:.0f} s: {block_detail}. No new orders.",
                )
        else:
            if self._down_told:
                self._notifier.send(
                    "feed_up", f"{TITLE}: market data back", "Market data is back.", level="info"
                )
            self._down_since, self._down_told = None, False
        closed = block is Reason.MARKET_CLOSED
        if closed != self._market_closed:
            self._market_closed = closed
            if closed:
                self._notifier.send(
                    "market_closed", f"{TITLE}: market closed", f"{block_detail}. No new orders."
                )
            else:
                self._notifier.send(
                    "market_open", f"{TITLE}: market open", "The market is open again.", level="info"
                )
