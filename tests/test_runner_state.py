"""What a restart restores (BotRunner built without sockets): the state file belongs to one mode and account,
and the hold timer survives a reboot."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

from bot.runner import BotRunner, Endpoints, account_id
from bot.types.dto import RunState
from tests.conftest import make_config

D = Decimal


def runner(tmp_path: Path, *, env: str = "sim", key: str = "SIM_KEY", clock=time.monotonic_ns) -> BotRunner:
    cfg = make_config({"env": env})
    ep = Endpoints("http://127.0.0.1:1", "ws://127.0.0.1:1/json-rpc", None, key, "secret")
    return BotRunner(
        cfg, endpoints=ep, log_dir=tmp_path / "logs", state_file=tmp_path / "state.json", clock=clock
    )


def killed_state(tmp_path: Path, mode: str, account: str) -> None:
    (tmp_path / "state.json").write_text(
        json.dumps(
            {"mode": mode, "account": account, "state": "KILLED", "reason": "kill switch", "inventory": None}
        )
    )


def test_a_kill_latch_of_another_mode_or_account_is_never_restored(tmp_path: Path) -> None:
    """A sim kill latch or sim PnL must never reach a live start, where a latched KILLED would flatten the
    real account at boot."""
    killed_state(tmp_path, "sim", account_id("SIM_KEY"))
    assert runner(tmp_path, env="live", key="REAL_KEY").state is RunState.STOPPED
    assert runner(tmp_path, env="sim", key="OTHER_KEY").state is RunState.RUNNING  # another account
    assert runner(tmp_path, env="sim", key="SIM_KEY").state is RunState.KILLED  # its own: restored
    (tmp_path / "state.json").write_text(json.dumps({"state": "KILLED", "inventory": None}))  # no owner
    assert runner(tmp_path).state is RunState.RUNNING


def test_the_account_is_named_by_a_hash_never_the_key() -> None:
    name = account_id("MY_SECRET_API_KEY")
    assert "MY_SECRET" not in name and len(name) == 16 and name == account_id("MY_SECRET_API_KEY")


def test_the_hold_timer_survives_a_restart_on_another_monotonic_clock(tmp_path: Path) -> None:
    """Suspected: opened_at was saved on the monotonic clock, which restarts at a reboot; a position opened
    10 s before the restart must count as held 10 s, not as opened at some random instant."""
    from tests.test_inventory import buy

    first = runner(tmp_path, clock=lambda: 5_000_000_000_000)
    first.inventory.apply_fill(buy(10_000_000, "0.001"), now=5_000_000_000_000 - 10_000_000_000)
    first.run_state.save_now()
    after_reboot = runner(tmp_path, clock=lambda: 42_000_000_000)  # a fresh monotonic clock
    held_ns = 42_000_000_000 - after_reboot.inventory.opened_at  # type: ignore[operator]
    assert 10_000_000_000 <= held_ns < 12_000_000_000
