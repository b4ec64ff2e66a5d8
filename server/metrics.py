"""GET /metrics: Prometheus text from a per-app registry whose collector reads the runner when scraped."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from pydantic import BaseModel

from bot.types.dto import RunState
from server.events import Broadcaster
from server.routes.common import runner_in

# decision latency buckets in seconds: 50 µs … 100 ms
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


def _gauges(source: BaseModel, table: tuple[tuple[str, str, str], ...]) -> Iterator[GaugeMetricFamily]:
    """One gauge per (field, metric name, help) whose value on `source` is present."""
    for key, name, doc in table:
        value = getattr(source, key)
        if value is not None:
            # exposition only: the bot's own arithmetic stays Decimal
            yield GaugeMetricFamily(name, doc, value=float(value))


def _quantile(sorted_samples: list[int], q: float) -> float:
    idx = min(len(sorted_samples) - 1, max(0, int(q * len(sorted_samples) + 0.5) - 1))
    return sorted_samples[idx] / 1e9


def latency_histogram(samples_ns: Iterable[int]) -> tuple[list[tuple[str, float]], float, int]:
    """Cumulative buckets (le, count), sum in seconds, count — of the recent samples."""
    samples = sorted(samples_ns)
    buckets, i = [], 0
    for bound in LATENCY_BUCKETS:
        while i < len(samples) and samples[i] / 1e9 <= bound:
            i += 1
        buckets.append((repr(bound), float(i)))
    buckets.append(("+Inf", float(len(samples))))
    return buckets, sum(samples) / 1e9, len(samples)


class RunnerCollector(Collector):
    def __init__(self, service: Any, broadcaster: Broadcaster) -> None:
        self._service = service
        self._broadcaster = broadcaster

    def collect(self) -> Iterator[Metric]:
        runner = runner_in(self._service)
        m = runner.metrics
        snap = runner.snapshot()

        state = GaugeMetricFamily("stst_state", "1 for the bot's current run state", labels=["state"])
        for s in RunState:
            state.add_metric([s.value], 1.0 if snap.state == s.value else 0.0)
        yield state
        mode = GaugeMetricFamily("stst_mode", "1 for the running mode", labels=["mode"])
        mode.add_metric([snap.mode], 1.0)
        yield mode

        yield from _gauges(
            snap.inventory,
            (
                ("position_btc", "stst_position_btc", "net position, signed BTC (the bot's view)"),
                ("avg_price", "stst_avg_price_jpy", "average entry price of the position"),
                ("realized_pnl_jpy", "stst_realized_pnl_jpy", "realized PnL since start of records"),
                ("unrealized_pnl_jpy", "stst_unrealized_pnl_jpy", "unrealized PnL marked at mid"),
                ("pnl_today_jpy", "stst_pnl_today_jpy", "today's PnL: realized + unrealized - fees"),
                ("fees_today_jpy", "stst_fees_today_jpy", "fees paid today"),
                (
                    "holding_costs_today_jpy",
                    "stst_holding_costs_today_jpy",
                    "funding and leverage points booked today (paid: positive)",
                ),
                ("drawdown_jpy", "stst_drawdown_jpy", "today's drawdown from the day's PnL peak (<= 0)"),
                ("max_drawdown_jpy", "stst_max_drawdown_jpy", "worst drawdown today (<= 0)"),
            ),
        )
        venue = snap.venue_position_btc
        if venue is not None:
            yield GaugeMetricFamily(
                "stst_venue_position_btc", "position according to the venue", value=float(venue)
            )

        for attr, name, doc in (
            ("orders_sent", "stst_orders_sent", "order requests sent"),
            ("orders_cancelled", "stst_orders_cancelled", "cancel requests sent"),
            ("fills", "stst_fills", "executions of our orders"),
            ("board_messages", "stst_board_messages", "board messages received"),
        ):
            yield CounterMetricFamily(name, doc, value=float(getattr(m, attr)))
        errors = CounterMetricFamily("stst_exchange_errors", "exchange errors by code", labels=["code"])
        for code, n in sorted(m.exchange_errors.items(), key=lambda kv: str(kv[0])):
            errors.add_metric([str(code)], float(n))
        yield errors

        yield GaugeMetricFamily(
            "stst_event_loop_lag_seconds",
            "latest measured event-loop lag",
            value=m.loop_lag_ms / 1000,
        )
        samples = list(m.decision_latency_ns)
        buckets, total, _count = latency_histogram(samples)
        yield HistogramMetricFamily(
            "stst_decision_latency_seconds",
            "board diff / deadline to decision (full-book snapshots apart), "
            "over the runner's window of recent decisions (not cumulative)",
            buckets=buckets,
            sum_value=total,
        )
        snap_buckets, snap_total, _ = latency_histogram(list(m.snapshot_latency_ns))
        yield HistogramMetricFamily(
            "stst_snapshot_latency_seconds",
            "board snapshot (a whole-book resync) to decision, over the recent window (not cumulative)",
            buckets=snap_buckets,
            sum_value=snap_total,
        )
        quantiles = GaugeMetricFamily(
            "stst_decision_latency_quantile_seconds",
            "decision latency quantiles over the same window",
            labels=["quantile"],
        )
        if samples:
            ordered = sorted(samples)
            for q in (0.5, 0.99, 0.999):
                quantiles.add_metric([str(q)], _quantile(ordered, q))
        yield quantiles

        health = snap.health
        yield GaugeMetricFamily(
            "stst_ws_connected", "1 when the feed is up", value=1.0 if health.ws_connected else 0.0
        )
        yield from _gauges(
            health,
            (
                (
                    "order_budget_left",
                    "stst_order_budget_left",
                    "order requests the client-side limiter allows now",
                ),
                (
                    "private_budget_left",
                    "stst_private_budget_left",
                    "private REST calls the limiter allows now",
                ),
                ("last_message_age_ms", "stst_last_message_age_ms", "since the last feed message"),
                ("rest_latency_ms", "stst_rest_latency_ms", "latest REST round trip"),
            ),
        )

        storage = snap.storage
        yield GaugeMetricFamily(
            "stst_storage_ok",
            "1 while the state file and the CSV logs can be written; 0 stops entries (fail-closed)",
            value=1.0 if storage.ok else 0.0,
        )
        failing = GaugeMetricFamily(
            "stst_storage_failing", "1 for each file the bot cannot write now", labels=["file"]
        )
        for fault in storage.faults:
            failing.add_metric([fault.file], 1.0)
        yield failing
        yield GaugeMetricFamily(
            "stst_csv_rows_held", "CSV rows kept in memory until the disk takes them", value=storage.rows_held
        )
        yield CounterMetricFamily(
            "stst_csv_rows_dropped", "CSV rows given up (held past the bound)", value=storage.rows_dropped
        )

        yield GaugeMetricFamily(
            "stst_sse_clients", "connected dashboard streams", value=self._broadcaster.client_count
        )
        yield CounterMetricFamily(
            "stst_sse_dropped_clients",
            "dashboard streams dropped for being too slow",
            value=float(self._broadcaster.dropped_total),
        )
        yield GaugeMetricFamily(
            "stst_sse_tick_seconds",
            "time of the latest dashboard tick (snapshot + render + fan-out)",
            value=self._broadcaster.last_tick_ms / 1000,
        )


def build_registry(service: Any, broadcaster: Broadcaster) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunnerCollector(service, broadcaster))
    return registry
