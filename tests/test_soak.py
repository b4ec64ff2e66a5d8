"""The chaos harness's short form (`make soak` runs the long one): a trading bot under a seeded schedule of
faults, control calls, live config patches and hard restarts keeps every invariant and ends equal to the
venue's ledger."""

from __future__ import annotations

import pytest

from bench.soak import soak

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("seed", [11, 12])
async def test_a_minute_of_chaos_keeps_every_invariant_and_ends_equal_to_the_venue(
    seed: int, tmp_path
) -> None:
    result = await soak(1.0, seed, tmp_path)
    assert result["invariant_violations"] == 0, (
        f"reproduce: make soak MINUTES=1 SEED={seed}",
        result["violations"],
    )
    assert result["position_diff_btc"] == 0 and result["realized_diff_jpy"] == 0
    assert result["holding_costs_diff_jpy"] == 0 and result["trades_csv_holding_costs_diff_jpy"] == 0
    assert result["unknown_orders_at_end"] == 0 and result["refused_for_size"] == 0
    assert result["orders_sent"] > 0 and sum(result["faults_injected"].values()) >= 10
