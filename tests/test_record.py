"""Recording: a running bot writes the public feed it receives to hourly tapes, off the loop, with its own
resting orders marked, and the tape replays with the same code (record → replay)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.infra.tape import read_header, read_tapes
from bot.research.replay import replay_tapes
from tests.conftest import eventually, make_config

pytestmark = pytest.mark.integration


async def test_a_running_bot_records_every_board_frame_marks_its_own_orders_and_the_tape_replays(
    make_service, tmp_path: Path
) -> None:
    tapes = tmp_path / "tapes"
    svc = await make_service({"record": {"dir": str(tapes)}})
    runner = svc.runner
    await eventually(lambda: runner.metrics.orders_sent >= 2, 60, "a strike (our quotes in the book)")
    seen = runner.metrics.board_messages
    await eventually(lambda: runner.metrics.board_messages > seen + 20, 30, "frames with our quotes")
    await svc.stop()  # the recorder's last second reaches the file
    recorder = runner.recorder
    assert recorder is not None and recorder.dropped == 0

    files = sorted(tapes.glob("*.jsonl.gz"))
    assert files and all(len(f.name.split("-")[0]) == 8 for f in files)  # YYYYMMDD-HH, UTC
    header = read_header(files[0])
    assert header.mode == "sim" and header.own_orders_marked and header.product_code == "FX_BTC_JPY"
    frames = list(read_tapes(files))
    board = [f for f in frames if f.channel.startswith("lightning_board_")]
    assert len(board) == runner.metrics.board_messages  # every board frame the bot decided on, none lost
    assert any(f.channel.startswith("lightning_executions_") for f in frames)
    assert all(b.t_mono_ns >= a.t_mono_ns for a, b in zip(frames, frames[1:], strict=False))

    # the bot's own quotes are marked where they rest (replay takes them out of the crowd)
    prices = {o.price for o in runner.tracker.all_orders() if o.tag == "stall" and o.price is not None}
    marked = [f for f in board if f.own]
    assert marked, "no frame marked our resting orders"
    for f in marked:
        for side in ("bids", "asks"):
            for price, size in f.own.get(side, []):
                assert Decimal(str(price)) in prices and Decimal(size) > 0

    summary, _ = replay_tapes(files, make_config({"strategy": {"stall_T_ms": 150}}))
    assert summary["board_messages"] == len(board)
