"""Markouts: what each fill was worth a while later, the adverse-selection figure a market maker reads. Pure.

Per fill and horizon h, in JPY for the fill's size, positive = good for us:
buy (mid(t+h) − price) × size, sell (price − mid(t+h)) × size, where mid(t+h) is the market's mid as of the
last board message at or before t+h. A fill whose horizon runs past the tape's end has no markout at that
horizon.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from decimal import Decimal

from bot.types.dto import Side

NS_PER_S = 1_000_000_000
SUMMARY_HORIZONS_S = (1, 5, 30)
CURVE_HORIZONS_S = (0.25, 0.5, 1, 2, 5, 10, 30, 60)


@dataclass(frozen=True, slots=True)
class _Fill:
    side: Side
    price: Decimal
    size: Decimal


class Markouts:
    def __init__(self, horizons_s: tuple[float, ...] = CURVE_HORIZONS_S) -> None:
        self.horizons_s = tuple(sorted(set(horizons_s) | set(SUMMARY_HORIZONS_S)))
        self._horizons_ns = [int(h * NS_PER_S) for h in self.horizons_s]
        self._fills: list[_Fill] = []
        self._due: list[tuple[int, int, int]] = []  # (due ns, fill index, horizon index)
        self._values: list[list[Decimal]] = [[] for _ in self.horizons_s]

    def on_fill(self, t: int, side: Side, price: Decimal, size: Decimal) -> None:
        i = len(self._fills)
        self._fills.append(_Fill(side, price, size))
        for k, h in enumerate(self._horizons_ns):
            heapq.heappush(self._due, (t + h, i, k))

    def due_before(self, t: int) -> bool:
        """Is any horizon due before `t`? (The caller makes the mid only then.)"""
        return bool(self._due) and self._due[0][0] < t

    def settle_before(self, t: int, mid: Decimal | None) -> None:
        """The market is about to change at `t`: every horizon due before it is marked at `mid`, the mid in
        force until then."""
        due = self._due
        while due and due[0][0] < t:
            _, i, k = heapq.heappop(due)
            if mid is None:
                continue
            f = self._fills[i]
            edge = (mid - f.price) if f.side is Side.BUY else (f.price - mid)
            self._values[k].append(edge * f.size)

    def mean(self, horizon_s: float) -> Decimal | None:
        vals = self._values[self.horizons_s.index(horizon_s)]
        return sum(vals, Decimal(0)) / len(vals) if vals else None

    def curve(self) -> list[tuple[float, Decimal | None, int]]:
        """(horizon s, mean markout JPY, fills counted) for each horizon."""
        return [(h, self.mean(h), len(self._values[k])) for k, h in enumerate(self.horizons_s)]
